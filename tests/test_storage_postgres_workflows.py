"""PostgreSQL workflows: two parents ending at once release their child exactly once.

SQLite has one writer at a time; PostgreSQL settles a blocked child after locking its row
(``blocked_children``: ``FOR UPDATE``, in id order), so the second of two transactions that end
the child's parents waits for the first to commit, then reads the parents as they are now.
The test holds the first transaction open until the second waits on the child's lock. Two
batched completions that lock two children in opposite orders deadlock; the store runs the
transaction PostgreSQL broke off again, and both commit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from jobkit.records import AttemptOutcome, JobStatus, Lease, NewStep
from jobkit.storage.postgres import PostgresStorage
from jobkit.testing.conformance import new_job

#: How long the test waits for what must happen (it happens within milliseconds).
COMES = 30.0
FAILED = AttemptOutcome.FAILED


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


def _pausing_after_the_first_settle(store: PostgresStorage, ready: dict[str, threading.Event],
                                    go: threading.Event) -> None:
    """Make each named thread's first settle of children set its ``ready`` and wait for ``go``.

    Only the first: a transaction run again after a deadlock goes straight on.
    """
    settle, paused = store._job_ended_in, set()

    def pausing(cur: Any, key: int, now: Any) -> None:
        settle(cur, key, now)
        name = threading.current_thread().name
        if name in ready and name not in paused:
            paused.add(name)
            ready[name].set()
            assert go.wait(COMES)

    store._job_ended_in = pausing  # type: ignore[method-assign]


def test_two_batches_crossing_over_shared_children_both_commit(
        store: PostgresStorage) -> None:
    """Two batched completions lock two children in opposite orders: both commit, once each.

    x waits for a and d, y for b and c. One worker completes a then b, the other c then d:
    the first holds x (a's child) and wants y, the second holds y and wants x, a deadlock
    PostgreSQL breaks by failing one transaction. The store runs that one again.
    """
    _, (a, b, c, d, x, y) = store.enqueue_steps([
        *(NewStep(new_job(store.now())) for _ in range(4)),
        NewStep(new_job(store.now()), parents=(0, 3)),
        NewStep(new_job(store.now()), parents=(1, 2))])
    leases = {}
    for worker in ("w1", "w1", "w2", "w2"):
        claimed = store.claim(worker, 60)
        assert claimed is not None
        leases[claimed.id] = Lease(claimed.id, worker, claimed.attempts)
    assert sorted(leases) == sorted([a.id, b.id, c.id, d.id])
    ready = {"first": threading.Event(), "second": threading.Event()}
    go = threading.Event()
    _pausing_after_the_first_settle(store, ready, go)
    done: dict[str, Any] = {}

    def complete(name: str, ids: tuple[str, str]) -> None:
        try:
            done[name] = store.complete_and_claim_many(
                [(leases[job_id], "ok") for job_id in ids], "w", 60, 0)
        except Exception as exc:  # the test reports it
            done[name] = exc

    threads = [threading.Thread(target=complete, name="first", args=("first", (a.id, b.id))),
               threading.Thread(target=complete, name="second", args=("second", (c.id, d.id)))]
    for thread in threads:
        thread.start()
    assert ready["first"].wait(COMES) and ready["second"].wait(COMES)
    go.set()
    for thread in threads:
        thread.join(COMES)
    assert not any(isinstance(found, Exception) for found in done.values()), done
    assert all(record is not None for found in done.values() for record in found[0]), done
    assert [store.get(job.id).status for job in (a, b, c, d, x, y)] == [
        JobStatus.COMPLETED] * 4 + [JobStatus.PENDING] * 2


def test_a_retry_racing_its_last_parents_end_does_not_leave_it_blocked(
        store: PostgresStorage, empty_postgres_url: str) -> None:
    """A step cancelled by hand is retried while its parent completes: it ends up pending.

    The retry reads the parent's status to decide that the step waits again; read while the
    parent's end is not committed, the step went back to ``blocked``, and the end, which had
    looked for blocked children before the retry committed, never released it. The retry now
    locks the parents first (``FOR SHARE``): it waits for that end, and sees it.
    """
    _, (parent, child) = store.enqueue_steps([
        NewStep(new_job(store.now())), NewStep(new_job(store.now()), parents=(0,))])
    assert store.cancel(child.id) is not None
    ready, hold = threading.Event(), threading.Event()
    ending = threading.Thread(target=_end, args=(store, int(parent.id), ready, hold))
    ending.start()
    assert ready.wait(COMES), "the parent's end holds its row, not committed"
    retried: list[Any] = []
    retry = threading.Thread(target=lambda: retried.append(store.retry(child.id)))
    retry.start()
    deadline = time.monotonic() + 2.0
    while (retry.is_alive() and not _waiting_on_a_lock(empty_postgres_url)
           and time.monotonic() < deadline):
        time.sleep(0.01)
    hold.set()
    ending.join(COMES)
    retry.join(COMES)
    assert retried and retried[0] is not None
    assert store.get(child.id).status is JobStatus.PENDING


def test_two_retries_of_a_childs_two_failed_parents_at_once_revive_it(
        store: PostgresStorage) -> None:
    """Each retry read the other parent still failed and left the child cancelled: no more.

    Both retries are held after their own job's update, and again before they commit (for at
    most 3 s), so that each reads the other's parent before the other commits. Each now locks
    the child and its parents before reading them: the two cross (a deadlock PostgreSQL
    breaks), and the one run again sees the other's retry.
    """
    _, (one, two, child) = store.enqueue_steps([
        NewStep(new_job(store.now())), NewStep(new_job(store.now())),
        NewStep(new_job(store.now()), parents=(0, 1))])
    for _ in range(2):
        claimed = store.claim("w", 60)
        assert claimed is not None
        store.settle(Lease(claimed.id, "w", claimed.attempts), FAILED, error="boom")
    assert store.get(child.id).status is JobStatus.CANCELLED
    names = ("first", "second")
    ready = {name: threading.Event() for name in names}
    read = {name: threading.Event() for name in names}
    go = threading.Event()
    retried_in, paused = store._retried_in, set()

    def pausing(cur: Any, key: int, row: Any) -> Any:
        name = threading.current_thread().name
        first_time = name not in paused
        if first_time:
            paused.add(name)
            ready[name].set()
            assert go.wait(COMES)
        found = retried_in(cur, key, row)
        if first_time:
            read[name].set()
            read[names[1 - names.index(name)]].wait(3.0)  # hold the commit a little
        return found

    store._retried_in = pausing  # type: ignore[method-assign]
    threads = [threading.Thread(target=store.retry, name=name, args=(job.id,))
               for name, job in zip(names, (one, two), strict=True)]
    for thread in threads:
        thread.start()
    assert ready["first"].wait(COMES) and ready["second"].wait(COMES)
    go.set()
    for thread in threads:
        thread.join(COMES)
    assert [store.get(job.id).status for job in (one, two, child)] == [
        JobStatus.PENDING, JobStatus.PENDING, JobStatus.BLOCKED]
