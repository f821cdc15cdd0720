"""PostgreSQL workflows: two parents ending at once release their child exactly once.

SQLite has one writer at a time; PostgreSQL settles a blocked child after locking its row
(``blocked_children``: ``FOR UPDATE``, in id order), so the second of two transactions that end
the child's parents waits for the first to commit, then reads the parents as they are now.
The test holds the first transaction open until the second waits on the child's lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from jobkit.records import JobStatus, NewStep
from jobkit.storage.postgres import PostgresStorage
from jobkit.testing.conformance import new_job

#: How long the test waits for what must happen (it happens within milliseconds).
COMES = 30.0


@pytest.fixture
def store(empty_postgres_url: str) -> Iterator[PostgresStorage]:
    with PostgresStorage(empty_postgres_url) as opened:
        yield opened


def _waiting_on_a_lock(url: str) -> bool:
    """Whether a session of the database waits for a row lock now."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(b"SELECT count(*) FROM pg_stat_activity"
                           b" WHERE datname = current_database()"
                           b" AND wait_event_type = 'Lock'").fetchone()
    return row is not None and row[0] > 0


def _end(store: PostgresStorage, key: int, ready: threading.Event,
         hold: threading.Event) -> None:
    """Complete job ``key`` by hand and settle its children, in one transaction.

    It sets ``ready`` once its children are settled, then waits for ``hold`` to commit.
    """

    def work(cur: Any) -> None:
        cur.execute(b"UPDATE jobkit_jobs SET status = 'completed', finished_at = now()"
                    b" WHERE id = %s", (key,))
        store._job_ended_in(cur, key, None)
        ready.set()
        assert hold.wait(COMES)

    store._transaction(f"end job {key}", work)


def test_two_parents_ending_at_once_release_the_child_once(
        store: PostgresStorage, empty_postgres_url: str) -> None:
    """The second parent's end waits for the first's commit and then sees it: released."""
    _, (left, right, child) = store.enqueue_steps([
        NewStep(new_job(store.now())), NewStep(new_job(store.now())),
        NewStep(new_job(store.now()), parents=(0, 1))])
    ready, hold, go_on = threading.Event(), threading.Event(), threading.Event()
    go_on.set()
    first = threading.Thread(target=_end, args=(store, int(left.id), ready, hold))
    second = threading.Thread(target=_end, args=(store, int(right.id), threading.Event(), go_on))
    first.start()
    assert ready.wait(COMES), "the first end settled the child (it still waits for right)"
    second.start()
    deadline = time.monotonic() + COMES
    while not _waiting_on_a_lock(empty_postgres_url) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _waiting_on_a_lock(empty_postgres_url), "the second end waits on the child's row"
    hold.set()
    first.join(COMES)
    second.join(COMES)
    assert store.get(child.id).status is JobStatus.PENDING
