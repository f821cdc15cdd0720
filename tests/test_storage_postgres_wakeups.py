"""PostgreSQL wake-ups: every way a job becomes due now sends ``NOTIFY jobkit_jobs``.

Since schema 11 jobkit's enqueue statement sends its own notification and the schema's insert
trigger skips jobkit's connections (they set ``jobkit.notifies_inserts``); updates, and rows
inserted by another program, still go through the trigger. Each test listens on a plain
connection of its own and counts what arrives, so it sees what an idle worker would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest

from jobkit.exceptions import StorageError
from jobkit.records import AttemptOutcome, JobStatus, NewStep
from jobkit.storage.postgres import PostgresStorage
from jobkit.storage.postgres_pool import NOTIFIES_INSERTS
from jobkit.testing.conformance import lease_of, new_job

#: How long a test waits for a notification that must come (it comes within milliseconds).
COMES = 10.0
#: How long a test waits to be sure that none comes.
NONE = 0.3

_INSERT = (b"INSERT INTO jobkit_jobs (name, method, params, status, max_attempts, policy,"
           b" created_at, available_at) VALUES ('Email', 'send', '{}', 'pending', 1, '{}',"
           b" now(), now())")


class Listener:
    """A connection that ``LISTEN``s on ``jobkit_jobs``, as an idle worker does."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute(b"LISTEN jobkit_jobs")

    def woken(self, timeout: float) -> bool:
        """Whether a notification arrives within ``timeout`` seconds (one is taken)."""
        return any(True for _ in self.conn.notifies(timeout=timeout, stop_after=1))

    def drain(self) -> None:
        """Forget every notification sent so far."""
        while self.woken(NONE):
            pass


@pytest.fixture
def store(empty_postgres_url: str) -> Iterator[PostgresStorage]:
    with PostgresStorage(empty_postgres_url) as opened:
        yield opened


@pytest.fixture
def listener(empty_postgres_url: str) -> Iterator[Listener]:
    listening = Listener(empty_postgres_url)
    try:
        yield listening
    finally:
        listening.conn.close()


def _failed(store: PostgresStorage) -> str:
    """A job that failed for good; its id."""
    store.enqueue(new_job(store.now(), max_attempts=1))
    claimed = store.claim("w1", 30.0)
    assert claimed is not None
    store.settle(lease_of(claimed), AttemptOutcome.FAILED, error="boom")
    return claimed.id


def _running(store: PostgresStorage) -> Any:
    """A job claimed by worker w1; its lease."""
    store.enqueue(new_job(store.now()))
    claimed = store.claim("w1", 30.0)
    assert claimed is not None
    return lease_of(claimed)


class TestEveryDuePathWakes:
    """Each store operation that makes a job due now wakes a listening worker."""

    def test_enqueue(self, store: PostgresStorage, listener: Listener) -> None:
        store.enqueue(new_job(store.now()))
        assert listener.woken(COMES)

    def test_enqueue_many(self, store: PostgresStorage, listener: Listener) -> None:
        store.enqueue_many([new_job(store.now()) for _ in range(3)])
        assert listener.woken(COMES)
        assert not listener.woken(NONE), "one transaction sends its notification once"

    def test_a_unique_enqueue(self, store: PostgresStorage, listener: Listener) -> None:
        store.enqueue(attrs.evolve(new_job(store.now()), unique_key="invoice-7"))
        assert listener.woken(COMES)

    def test_retry(self, store: PostgresStorage, listener: Listener) -> None:
        job_id = _failed(store)
        listener.drain()
        retried = store.retry(job_id)
        assert retried is not None and retried.status is JobStatus.PENDING
        assert listener.woken(COMES)

    def test_a_lease_taken_back(self, store: PostgresStorage, listener: Listener) -> None:
        lease = _running(store)
        assert store.abandon(lease)
        listener.drain()
        assert [job.status for job in store.requeue_expired()] == [JobStatus.RETRYING]
        assert listener.woken(COMES)

    def test_a_job_handed_back(self, store: PostgresStorage, listener: Listener) -> None:
        lease = _running(store)
        listener.drain()
        store.settle(lease, AttemptOutcome.HANDED_BACK)
        assert listener.woken(COMES)

    def test_a_step_released(self, store: PostgresStorage, listener: Listener) -> None:
        """The completion of a step's last parent makes it due: the release's UPDATE wakes."""
        store.enqueue_steps([NewStep(new_job(store.now())),
                             NewStep(new_job(store.now()), parents=(0,))])
        claimed = store.claim("w1", 30.0)
        assert claimed is not None
        listener.drain()
        store.settle(lease_of(claimed), AttemptOutcome.SUCCEEDED, result=None)
        assert listener.woken(COMES)

    def test_a_row_inserted_by_another_program(self, empty_postgres_url: str,
                                               store: PostgresStorage,
                                               listener: Listener) -> None:
        """The trigger still wakes workers for a row jobkit did not write."""
        import psycopg

        with psycopg.connect(empty_postgres_url, autocommit=True) as conn:
            conn.execute(_INSERT)
        assert listener.woken(COMES)


class TestWhatDoesNotWake:
    """Jobs not due now wake nobody."""

    @pytest.mark.parametrize("bulk", [False, True], ids=["enqueue", "enqueue_many"])
    def test_a_delayed_job(self, store: PostgresStorage, listener: Listener,
                           bulk: bool) -> None:
        job = new_job(store.now(), delay=3600)
        enqueue: Callable[[], object] = (
            (lambda: store.enqueue_many([job])) if bulk else (lambda: store.enqueue(job)))
        enqueue()
        assert not listener.woken(NONE)


class TestTheInsertTrigger:
    """The insert trigger skips a session that sends its own notifications (schema 11)."""

    def test_it_skips_a_session_that_notifies_itself(self, empty_postgres_url: str,
                                                     store: PostgresStorage,
                                                     listener: Listener) -> None:
        """jobkit's enqueue notifies in its statement: the trigger's plpgsql call is not paid.

        A session with ``jobkit.notifies_inserts`` on inserts a due row without a
        notification from the trigger; a session without it gets one.
        """
        import psycopg

        with psycopg.connect(empty_postgres_url, autocommit=True) as conn:
            conn.execute(NOTIFIES_INSERTS)
            conn.execute(_INSERT)
            assert not listener.woken(NONE)
            conn.execute(b"RESET jobkit.notifies_inserts")
            conn.execute(_INSERT)
            assert listener.woken(COMES)

    def test_jobkit_connections_notify_themselves(self, store: PostgresStorage) -> None:
        """The store's pooled connections say so; its enqueue statement sends the NOTIFY."""

        def setting(cur: Any) -> Any:
            cur.execute(b"SELECT current_setting('jobkit.notifies_inserts', true) AS value")
            return cur.fetchone()["value"]

        assert store._transaction("read the setting", setting) == "on"


class TestTheEnqueueStatement:
    """jobkit's enqueue runs a statement it prepares itself on each connection."""

    def test_it_is_prepared_again_after_deallocate_all(self, store: PostgresStorage) -> None:
        """An enqueue after ``DEALLOCATE ALL`` prepares its statement again.

        psycopg deallocates a connection's prepared statements after a rollback; the next
        enqueue must not fail for it."""
        first = store.enqueue(new_job(store.now()))
        store._connected("deallocate", lambda conn: conn.execute(b"DEALLOCATE ALL"))
        second = store.enqueue(new_job(store.now()))
        assert int(second.id) == int(first.id) + 1
        assert store.get(second.id) == second

    def test_a_refused_row_is_a_storage_error(self, store: PostgresStorage) -> None:
        """The server's refusal (a CHECK) is a StorageError naming the operation.

        The connection serves the next enqueue."""
        from datetime import datetime, timezone

        late = datetime(9999, 12, 31, 12, tzinfo=timezone.utc)
        with pytest.raises(StorageError, match=r"enqueue job 'Email' failed.*available_at"):
            store.enqueue(attrs.evolve(new_job(store.now()), available_at=late))
        assert store.get(store.enqueue(new_job(store.now())).id).status is JobStatus.PENDING
