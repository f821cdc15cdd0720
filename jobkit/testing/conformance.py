"""The conformance suite every ``Storage`` backend passes (fsspec's pattern).

A backend's test module subclasses :class:`CoreConformance`, :class:`ConcurrencyTests` for a
store shared by processes and the class of each capability it has, and supplies the fixtures::

    class TestRedisStorage(CoreConformance, ConcurrencyTests, WorkersConformance):
        @pytest.fixture
        def storage(self, clock):
            store = RedisStorage(..., clock=clock)  # fresh and empty
            yield store
            store.close()

        @pytest.fixture
        def storage_url(self, storage):
            return storage.url  # or None: the multi-process test is skipped

The tests move time with the :class:`FakeClock` of the ``clock`` fixture and never sleep, except
the one that claims from several processes at once. :class:`CoreConformance` holds the rules of
the ``Storage`` core; each optional capability
(:data:`~jobkit.storage.capabilities.OPTIONAL_CAPABILITIES`) has its class, whose tests skip for
a backend without it (those of ``search``, ``sessions`` and ``batches`` check the fallback over
the core instead). :class:`StorageConformance` is all of them.
"""

from __future__ import annotations

import multiprocessing
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import pytest

from jobkit.exceptions import JobNotFoundInStorage, StorageError
from jobkit.records import (
    NEEDS_ENDED,
    AttemptOutcome,
    JobLogLine,
    JobRecord,
    JobStatus,
    Lease,
    NewJob,
    NewStep,
    RetryPolicy,
    WorkerInfo,
)
from jobkit.storage.base import Storage
from jobkit.storage.capabilities import (
    OPTIONAL_CAPABILITIES,
    ControlsFlow,
    KeepsSchedules,
    RunsWorkflows,
    complete_and_claim_many,
    count_matching,
    job_logs_of,
    methods_of,
    oldest_waiting,
    revoke_session,
    search,
    session_revoked,
    set_progress,
    supports,
    throughput_of,
    workers_of,
)
from jobkit.storage.search import MAX_LIMIT, Count, JobQuery, search_in

#: Not a round number, so a backend that drops microseconds or the offset fails loudly.
EPOCH = datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
LEASE = 30.0
#: The outcomes a test settles attempts with.
SUCCEEDED, FAILED, TIMEOUT, HANDED_BACK = (AttemptOutcome.SUCCEEDED, AttemptOutcome.FAILED,
                                           AttemptOutcome.TIMEOUT, AttemptOutcome.HANDED_BACK)


class FakeClock:
    """A clock for ``Storage(clock=...)`` that stands still until told to move."""

    def __init__(self, start: datetime = EPOCH) -> None:
        if start.tzinfo is None:
            raise ValueError(f"FakeClock needs a timezone-aware start, got {start!r}")
        self.current = start.astimezone(timezone.utc)

    def __call__(self) -> datetime:
        return self.current

    def advance(self, seconds: float | timedelta) -> datetime:
        """Move the clock forward and return the new time."""
        step = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        self.current += step
        return self.current

    def __repr__(self) -> str:
        return f"FakeClock({self.current.isoformat()})"


def new_job(
    at: datetime,
    *,
    name: str = "Email",
    method: str = "send",
    params: dict[str, Any] | list[Any] | None = None,
    priority: int = 0,
    delay: float = 0.0,
    max_attempts: int = 3,
    max_crashes: int = 3,
    policy: RetryPolicy | None = None,
) -> NewJob:
    """A job to enqueue, due ``delay`` seconds after ``at``."""
    return NewJob(
        name=name,
        method=method,
        params={"to": "ana@example.com"} if params is None else params,
        priority=priority,
        max_attempts=max_attempts,
        max_crashes=max_crashes,
        policy=policy or RetryPolicy(),
        available_at=at + timedelta(seconds=delay),
    )


def lease_of(record: JobRecord) -> Lease:
    """The lease a claim handed out."""
    assert record.worker_id is not None
    return Lease(record.id, record.worker_id, record.attempts)


def require(storage: Storage, capability: str, what: str) -> None:
    """Skip a test of an optional capability the backend does not have.

    It does not inherit the capability's mixin
    (:data:`~jobkit.storage.capabilities.OPTIONAL_CAPABILITIES`).
    """
    if not supports(storage, capability):
        mixin = OPTIONAL_CAPABILITIES[capability].__name__
        pytest.skip(f"{type(storage).__name__} keeps no {what} (optional capability "
                    f"{capability!r}: inherit {mixin} and write {', '.join(methods_of(capability))}"
                    " to keep them)")


def flow_store(storage: Storage) -> ControlsFlow:
    """The store as :class:`ControlsFlow`; the test is skipped for a store without ``flow``."""
    require(storage, "flow", "queues")
    assert isinstance(storage, ControlsFlow)
    return storage


def claim(storage: Storage, worker_id: str = "w1") -> JobRecord:
    """Claim the next job, which the test expects to exist."""
    record = storage.claim(worker_id, LEASE)
    assert record is not None, "expected a due job"
    return record


def taken_over(
    storage: Storage, clock: FakeClock, worker_id: str
) -> tuple[JobRecord, Lease, JobRecord]:
    """Make a job whose first lease expired and which ``worker_id`` then claimed again.

    Returns the job as enqueued, the stale lease of ``w1``'s first attempt, and the new claim.
    """
    job = storage.enqueue(new_job(clock()))
    stale = lease_of(claim(storage, "w1"))
    clock.advance(LEASE + 1)
    storage.requeue_expired()
    return job, stale, claim(storage, worker_id)


def assert_left_alone(
    storage: Storage, change: Callable[[str], JobRecord | None], jobs: Iterable[JobRecord]
) -> None:
    """Check that ``change`` (a cancel or a manual retry) refuses each job and changes nothing.

    Refusing is returning ``None``; the job reads the same before and after.
    """
    for job in jobs:
        before = storage.get(job.id)
        assert change(job.id) is None
        assert storage.get(job.id) == before


class StorageFixtures:
    """The fixtures a backend's subclass supplies: ``storage`` always, ``storage_url`` if it can."""

    @pytest.fixture
    def clock(self) -> FakeClock:
        """The store's clock; tests advance it instead of sleeping."""
        return FakeClock()

    @pytest.fixture
    def storage(self, clock: FakeClock) -> Iterator[Storage]:
        """A fresh, empty store built with ``clock``; the subclass must override this."""
        pytest.fail(
            f"{type(self).__name__} must define a 'storage' fixture: a fresh, empty store "
            "built with clock=clock",
            pytrace=False,
        )
        yield  # pragma: no cover - makes this a generator like the real fixtures

    @pytest.fixture
    def storage_url(self, storage: Storage) -> str | None:
        """A URL that opens the same store in another process, or ``None``.

        ``type(storage).from_url`` opens it; ``None`` for a store that lives in one process only
        (multi-process tests skip).
        """
        return None

    @pytest.fixture
    def spoil_row(self, storage: Storage) -> Callable[[str], str] | None:
        """A way to spoil a row, for a backend whose rows can hold what it cannot read.

        A SQL table written by hand can. A function that, behind the store's back, puts such a
        value in one column of the job with this id (past the schema's checks) and returns the
        column's name. ``None`` by default: a store of Python objects has no such rows, and only
        a test class that adds :class:`SpoiledRowConformance` needs one.
        """
        return None


class RoundTripTests(StorageFixtures):
    """What goes in comes out."""

    def test_enqueue_stores_a_pending_job(self, storage: Storage, clock: FakeClock) -> None:
        """enqueue returns a pending record with no attempts, created now."""
        record = storage.enqueue(new_job(clock(), priority=4, max_attempts=5))
        assert record.status is JobStatus.PENDING
        assert (record.name, record.method) == ("Email", "send")
        assert record.params == {"to": "ana@example.com"}
        assert (record.priority, record.attempts, record.max_attempts) == (4, 0, 5)
        assert record.created_at == clock() and record.available_at == clock()
        assert record.started_at is None and record.finished_at is None
        assert record.result is None and record.error is None
        assert record.worker_id is None and record.lease_expires_at is None
        assert record.progress is None and record.progress_message is None

    def test_ids_are_increasing_integers_as_strings(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """Job ids are strings of increasing integers."""
        ids = [storage.enqueue(new_job(clock())).id for _ in range(3)]
        assert all(isinstance(job_id, str) and job_id.isdigit() for job_id in ids)
        assert [int(job_id) for job_id in ids] == sorted(int(job_id) for job_id in ids)
        assert len(set(ids)) == 3

    def test_a_job_due_now_is_stamped_by_the_store(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """available_at=None means now, on the store's clock; such a job is claimable at once."""
        record = storage.enqueue(attrs.evolve(new_job(clock()), available_at=None))
        assert record.available_at == record.created_at == clock()
        assert claim(storage).id == record.id

    def test_enqueue_many_stores_in_order(self, storage: Storage, clock: FakeClock) -> None:
        """enqueue_many returns one pending record per job, in order, with increasing ids."""
        first = storage.enqueue(new_job(clock()))
        records = storage.enqueue_many(
            [new_job(clock(), params={"n": n}, priority=n % 3) for n in range(50)]
        )
        assert [record.params for record in records] == [{"n": n} for n in range(50)]
        ids = [int(first.id)] + [int(record.id) for record in records]
        assert ids == sorted(set(ids))
        assert all(storage.get(record.id) == record for record in records)
        assert {record.status for record in records} == {JobStatus.PENDING}
        assert storage.enqueue_many([]) == []

    def test_enqueue_many_of_mixed_jobs_matches_what_is_read(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """A batch of mixed jobs is read back as enqueue_many returned it.

        Runs of alike jobs and odd ones out, due now or later, with awkward params, after the
        newest jobs were pruned: every record equals what get reads, and ids are never reused.
        """
        for _ in range(3):
            storage.cancel(storage.enqueue(new_job(clock())).id)
        newest = max(int(record.id) for record in storage.list())
        clock.advance(1)
        assert storage.prune(clock()) == 3
        awkward = {"text": 'quo"te \\ back \n é ✓ \u2028', "nested": [{"a": [1, 2.5, None]}],
                   "big": 10**30, "neg": -0.0}
        jobs = (
            [attrs.evolve(new_job(clock(), params={"n": n}), available_at=None) for n in range(5)]
            + [new_job(clock(), name="Other", params=awkward, delay=30)]
            + [new_job(clock(), params={"n": n}, priority=7) for n in range(4)]
            + [new_job(clock(), params=[1, "two"], max_attempts=9, max_crashes=1)]
            + [attrs.evolve(new_job(clock()), available_at=None)]
        )
        records = storage.enqueue_many(jobs)
        assert [int(record.id) for record in records] == sorted(
            {int(record.id) for record in records}
        )
        assert int(records[0].id) > newest
        for job, record in zip(jobs, records, strict=True):
            assert storage.get(record.id) == record
            assert (record.name, record.params, record.priority) == (
                job.name, job.params, job.priority
            )
            assert (record.max_attempts, record.max_crashes) == (job.max_attempts, job.max_crashes)
            assert record.available_at == (job.available_at or record.created_at)

    def test_enqueue_many_stores_nothing_when_one_is_not_json(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """A job whose params are not JSON in the middle of a batch: nothing is stored."""
        jobs = [new_job(clock()), new_job(clock(), params={"bad": {1, 2}}), new_job(clock())]
        with pytest.raises(StorageError, match="not JSON"):
            storage.enqueue_many(jobs)
        assert storage.count() == 0

    def test_get_returns_what_enqueue_returned(self, storage: Storage, clock: FakeClock) -> None:
        """get returns the same record enqueue returned."""
        record = storage.enqueue(new_job(clock(), delay=60))
        assert storage.get(record.id) == record

    def test_unicode_params_round_trip(self, storage: Storage, clock: FakeClock) -> None:
        """Non-ASCII text, emoji and escapes survive storage."""
        params = {"subject": "Grüße, 東京 🚀", "body": "line\nbreak \"quoted\" \\ \u0000 tab\t"}
        record = storage.enqueue(new_job(clock(), params=params))
        assert storage.get(record.id).params == params

    def test_nested_params_round_trip(self, storage: Storage, clock: FakeClock) -> None:
        """Nested lists and dicts, numbers, booleans and nulls survive storage."""
        params = {"a": [1, 2.5, {"b": [None, True, False]}], "c": {"d": {"e": -(2**53)}}}
        record = storage.enqueue(new_job(clock(), params=params))
        assert storage.get(record.id).params == params

    def test_positional_params_round_trip(self, storage: Storage, clock: FakeClock) -> None:
        """A list of positional params stays a list."""
        record = storage.enqueue(new_job(clock(), params=["x", 1, [2]]))
        assert storage.get(record.id).params == ["x", 1, [2]]

    def test_large_params_round_trip(self, storage: Storage, clock: FakeClock) -> None:
        """A megabyte of params survives storage."""
        params = {"blob": "é" * 500_000, "rows": [{"n": n} for n in range(10_000)]}
        record = storage.enqueue(new_job(clock(), params=params))
        assert storage.get(record.id).params == params

    def test_policy_round_trips(self, storage: Storage, clock: FakeClock) -> None:
        """The retry policy is stored with the job."""
        policy = RetryPolicy(retry_delay=2.5, backoff="exponential", max_delay=60.0, jitter=0.1,
                             timeout=30.0)
        record = storage.enqueue(new_job(clock(), policy=policy))
        assert storage.get(record.id).policy == policy

    def test_stored_params_are_a_copy(self, storage: Storage, clock: FakeClock) -> None:
        """Mutating the caller's params or a returned record never changes the stored job."""
        params: dict[str, Any] = {"items": [1]}
        record = storage.enqueue(new_job(clock(), params=params))
        params["items"].append(2)
        assert isinstance(record.params, dict)
        record.params["items"].append(3)
        assert storage.get(record.id).params == {"items": [1]}

    def test_params_that_are_not_json_are_refused(self, storage: Storage, clock: FakeClock) -> None:
        """Params JSON cannot hold (a set, NaN) raise StorageError and store nothing."""
        with pytest.raises(StorageError):
            storage.enqueue(new_job(clock(), params={"s": {1, 2}}))
        with pytest.raises(StorageError):
            storage.enqueue(new_job(clock(), params={"n": float("nan")}))
        assert storage.count() == 0

    def test_times_come_back_as_utc(self, storage: Storage, clock: FakeClock) -> None:
        """A time given in another zone comes back as the same instant in UTC."""
        paris = timezone(timedelta(hours=2))
        job = new_job(clock().astimezone(paris), delay=90)
        record = storage.get(storage.enqueue(job).id)
        assert record.available_at == clock() + timedelta(seconds=90)
        assert record.available_at.utcoffset() == timedelta(0)
        assert record.created_at.utcoffset() == timedelta(0)

    @pytest.mark.parametrize("job_id", ["999999", "abc", "", "-1", "1.0", " 1", "01"])
    def test_get_of_an_unknown_id_raises(
        self, storage: Storage, clock: FakeClock, job_id: str
    ) -> None:
        """get raises JobNotFoundInStorage for unknown and malformed ids."""
        storage.enqueue(new_job(clock()))
        with pytest.raises(JobNotFoundInStorage) as info:
            storage.get(job_id)
        assert info.value.data == {"job_id": job_id}


class ClaimTests(StorageFixtures):
    """Which job a worker gets, and what claiming it records."""

    def test_claim_on_an_empty_store_returns_none(self, storage: Storage) -> None:
        """claim returns None when nothing is stored."""
        assert storage.claim("w1", LEASE) is None

    def test_claim_starts_the_job(self, storage: Storage, clock: FakeClock) -> None:
        """claim makes the job running, counts the attempt and hands out a lease."""
        job = storage.enqueue(new_job(clock()))
        clock.advance(5)
        record = claim(storage, "w1")
        assert record.id == job.id
        assert record.status is JobStatus.RUNNING
        assert record.attempts == 1 and record.worker_id == "w1"
        assert record.started_at == clock()
        assert record.lease_expires_at == clock() + timedelta(seconds=LEASE)
        assert storage.get(job.id) == record

    def test_claim_opens_an_attempt(self, storage: Storage, clock: FakeClock) -> None:
        """claim opens an attempt row numbered like the job's attempts."""
        job = storage.enqueue(new_job(clock()))
        claim(storage, "w1")
        [attempt] = storage.attempts(job.id)
        assert (attempt.job_id, attempt.attempt, attempt.worker_id) == (job.id, 1, "w1")
        assert attempt.started_at == clock()
        assert attempt.finished_at is None and attempt.outcome is None and attempt.error is None

    def test_higher_priority_first(self, storage: Storage, clock: FakeClock) -> None:
        """Jobs are claimed by priority, highest first, negative last."""
        low = storage.enqueue(new_job(clock(), priority=-1))
        mid = storage.enqueue(new_job(clock(), priority=0))
        high = storage.enqueue(new_job(clock(), priority=9))
        assert [claim(storage).id for _ in range(3)] == [high.id, mid.id, low.id]

    def test_earlier_available_at_first_within_a_priority(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """Within a priority, the job due earliest is claimed first."""
        later = storage.enqueue(new_job(clock(), delay=-10))
        earlier = storage.enqueue(new_job(clock(), delay=-20))
        assert [claim(storage).id for _ in range(2)] == [earlier.id, later.id]

    def test_enqueue_order_breaks_ties(self, storage: Storage, clock: FakeClock) -> None:
        """Jobs with equal priority and due time are claimed in enqueue order."""
        ids = [storage.enqueue(new_job(clock())).id for _ in range(5)]
        assert [claim(storage).id for _ in range(5)] == ids

    def test_a_delayed_job_is_invisible_until_due(self, storage: Storage, clock: FakeClock) -> None:
        """A job is claimed no earlier than its available_at, and exactly then."""
        job = storage.enqueue(new_job(clock(), delay=60))
        assert storage.claim("w1", LEASE) is None
        clock.advance(59.999)
        assert storage.claim("w1", LEASE) is None
        clock.advance(0.001)
        assert claim(storage).id == job.id

    def test_a_delayed_urgent_job_does_not_block_a_due_one(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """A high-priority job that is not due yet lets a due low-priority job run."""
        storage.enqueue(new_job(clock(), priority=10, delay=60))
        due = storage.enqueue(new_job(clock(), priority=0))
        assert claim(storage).id == due.id
        assert storage.claim("w1", LEASE) is None

    def test_a_claimed_job_is_not_claimed_again(self, storage: Storage, clock: FakeClock) -> None:
        """A running job is never handed to a second worker."""
        storage.enqueue(new_job(clock()))
        claim(storage, "w1")
        assert storage.claim("w2", LEASE) is None

    def test_finished_jobs_are_never_claimed(self, storage: Storage, clock: FakeClock) -> None:
        """Completed, failed and cancelled jobs stay where they are."""
        for _ in range(2):
            storage.enqueue(new_job(clock(), max_attempts=1))
        storage.settle(lease_of(claim(storage)), SUCCEEDED, result="ok")
        storage.settle(lease_of(claim(storage)), FAILED, error="boom", traceback=None)
        storage.cancel(storage.enqueue(new_job(clock())).id)
        assert storage.claim("w1", LEASE) is None


class LeaseTests(StorageFixtures):
    """Heartbeats, progress, expiry and the fence that guards every write of a worker."""

    def test_heartbeat_extends_the_lease(self, storage: Storage, clock: FakeClock) -> None:
        """heartbeat moves lease_expires_at to now + lease_seconds."""
        record = storage.enqueue(new_job(clock()))
        lease = lease_of(claim(storage))
        clock.advance(10)
        assert storage.heartbeat(lease, 60) is True
        assert storage.get(record.id).lease_expires_at == clock() + timedelta(seconds=60)

    def test_heartbeats_keep_a_job_from_expiring(self, storage: Storage, clock: FakeClock) -> None:
        """A job whose worker keeps beating is never requeued."""
        record = storage.enqueue(new_job(clock()))
        lease = lease_of(claim(storage))
        for _ in range(5):
            clock.advance(LEASE - 1)
            assert storage.heartbeat(lease, LEASE)
            assert storage.requeue_expired() == []
        assert storage.get(record.id).status is JobStatus.RUNNING

    def test_a_lease_is_valid_until_it_has_passed(self, storage: Storage, clock: FakeClock) -> None:
        """A lease expiring exactly now is not yet expired."""
        storage.enqueue(new_job(clock()))
        claim(storage)
        clock.advance(LEASE)
        assert storage.requeue_expired() == []

    def test_an_expired_job_is_retried(self, storage: Storage, clock: FakeClock) -> None:
        """A lost lease closes the attempt as lost and makes the job retrying, due now.

        The crash is counted and gives its attempt back.
        """
        job = storage.enqueue(new_job(clock(), max_attempts=2))
        claim(storage, "w1")
        clock.advance(LEASE + 1)
        [record] = storage.requeue_expired()
        message = "lease expired: worker w1 stopped heartbeating"
        assert record.id == job.id and record.status is JobStatus.RETRYING
        assert record.error == message and record.available_at == clock()
        assert record.attempts == 1 and record.finished_at is None
        assert (record.crashes, record.max_crashes, record.max_attempts) == (1, 3, 3)
        assert record.worker_id is None and record.lease_expires_at is None
        assert storage.get(job.id) == record
        [attempt] = storage.attempts(job.id)
        assert attempt.outcome is AttemptOutcome.LOST and attempt.error == message
        assert attempt.finished_at == clock()
        assert storage.requeue_expired() == []

    def test_a_crash_does_not_use_up_a_retry(self, storage: Storage, clock: FakeClock) -> None:
        """A job without retries whose worker died runs again; a later failure is final."""
        storage.enqueue(new_job(clock(), max_attempts=1))
        claim(storage, "w1")
        clock.advance(LEASE + 1)
        [record] = storage.requeue_expired()
        assert record.status is JobStatus.RETRYING and record.max_attempts == 2
        second = claim(storage, "w2")
        assert (second.attempts, second.crashes) == (2, 1)
        failed = storage.settle(lease_of(second), FAILED, error="boom", traceback=None)
        assert failed is not None and failed.status is JobStatus.FAILED

    def test_the_last_allowed_crash_fails_the_job(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """At ``max_crashes`` lost leases the job fails, saying so, whatever its retries."""
        job = storage.enqueue(new_job(clock(), max_attempts=10, max_crashes=2))
        for worker, status in (("w1", JobStatus.RETRYING), ("w2", JobStatus.FAILED)):
            claim(storage, worker)
            clock.advance(LEASE + 1)
            [record] = storage.requeue_expired()
            assert record.status is status
        assert record.finished_at == clock() and record.crashes == 2
        assert record.error == (
            "lease expired: worker w2 stopped heartbeating; failed after 2 crashes (max_crashes)"
        )
        assert storage.claim("w3", LEASE) is None
        assert storage.get(job.id) == record
        outcomes = [attempt.outcome for attempt in storage.attempts(job.id)]
        assert outcomes == [AttemptOutcome.LOST, AttemptOutcome.LOST]

    def test_a_manual_retry_resets_the_crashes(self, storage: Storage, clock: FakeClock) -> None:
        """A job failed by crashes and retried by hand gets its whole crash budget again."""
        job = storage.enqueue(new_job(clock(), max_crashes=1))
        claim(storage)
        clock.advance(LEASE + 1)
        [record] = storage.requeue_expired()
        assert record.status is JobStatus.FAILED
        retried = storage.retry(job.id)
        assert retried is not None and retried.crashes == 0

    def test_abandon_ends_a_lease_at_once(self, storage: Storage, clock: FakeClock) -> None:
        """A dead worker's lease, abandoned, is taken back without waiting; a stale one is not."""
        job = storage.enqueue(new_job(clock()))
        lease = lease_of(claim(storage, "w1"))
        assert storage.abandon(Lease(job.id, "w1", lease.attempt + 1)) is False
        assert storage.requeue_expired() == []
        assert storage.abandon(lease) is True
        [record] = storage.requeue_expired()
        assert record.id == job.id and record.status is JobStatus.RETRYING
        assert storage.abandon(lease) is False

    def test_requeue_leaves_live_leases_alone(self, storage: Storage, clock: FakeClock) -> None:
        """Only the expired leases are taken back."""
        old = storage.enqueue(new_job(clock()))
        storage.enqueue(new_job(clock()))
        claim(storage, "w1")
        clock.advance(20)
        fresh = claim(storage, "w2")
        clock.advance(LEASE - 10)
        assert [record.id for record in storage.requeue_expired()] == [old.id]
        assert storage.get(fresh.id) == fresh

    def test_a_stale_lease_is_refused_after_a_takeover(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """After expiry and a new claim, the old worker's writes change nothing."""
        job, stale, current = taken_over(storage, clock, "w2")
        progress = supports(storage, "progress")
        assert not progress or set_progress(storage, lease_of(current), 0.5, "halfway")
        before = storage.get(job.id)
        assert storage.heartbeat(stale, LEASE) is False
        assert not progress or set_progress(storage, stale, 0.9, "stale") is False
        assert storage.settle(stale, SUCCEEDED, result="stale result") is None
        assert storage.settle(stale, FAILED, error="stale", traceback=None) is None
        assert storage.settle(stale, FAILED, error="stale", traceback=None,
                              retry_at=clock()) is None
        assert storage.settle(stale, HANDED_BACK) is None
        assert storage.get(job.id) == before
        done = storage.settle(lease_of(current), SUCCEEDED, result="fresh result")
        assert done is not None and done.result == "fresh result"
        outcomes = [attempt.outcome for attempt in storage.attempts(job.id)]
        assert outcomes == [AttemptOutcome.LOST, AttemptOutcome.SUCCEEDED]

    def test_the_same_worker_cannot_use_an_old_attempts_lease(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """A lease names its attempt: the same worker's lease of attempt 1 fails in attempt 2."""
        job, stale, current = taken_over(storage, clock, "w1")
        assert current.attempts == 2
        assert storage.settle(stale, SUCCEEDED, result="stale") is None
        assert storage.get(job.id).status is JobStatus.RUNNING

    def test_fenced_writes_to_unknown_jobs_change_nothing(self, storage: Storage) -> None:
        """Leases of unknown or malformed job ids are refused, not errors."""
        for job_id in ("424242", "abc"):
            lease = Lease(job_id, "w1", 1)
            assert storage.heartbeat(lease, LEASE) is False
            if supports(storage, "progress"):
                assert set_progress(storage, lease, 0.5, None) is False
            assert storage.settle(lease, SUCCEEDED, result=None) is None
            assert storage.settle(lease, FAILED, error="x", traceback=None) is None
            assert storage.settle(lease, HANDED_BACK) is None

class OutcomeTests(StorageFixtures):
    """How an attempt ends: complete, fail, retry later, hand back."""

    def test_complete_finishes_job_and_attempt(self, storage: Storage, clock: FakeClock) -> None:
        """complete stores the result, finishes the job and closes the attempt as succeeded."""
        job = storage.enqueue(new_job(clock()))
        lease = lease_of(claim(storage))
        clock.advance(3)
        record = storage.settle(lease, SUCCEEDED, result={"sent": True, "id": "msg-1"})
        assert record is not None and record.status is JobStatus.COMPLETED
        assert record.result == {"sent": True, "id": "msg-1"}
        assert record.finished_at == clock() and record.error is None
        assert record.worker_id is None and record.lease_expires_at is None
        assert storage.get(job.id) == record
        [attempt] = storage.attempts(job.id)
        assert attempt.outcome is AttemptOutcome.SUCCEEDED and attempt.finished_at == clock()

    @pytest.mark.parametrize("result", [None, 0, 1.5, "ünï", [1, [2]], {"a": {"b": None}}])
    def test_results_round_trip(self, storage: Storage, clock: FakeClock, result: Any) -> None:
        """Any JSON value is a result."""
        job = storage.enqueue(new_job(clock()))
        storage.settle(lease_of(claim(storage)), SUCCEEDED, result=result)
        assert storage.get(job.id).result == result

    def test_a_result_that_is_not_json_is_refused(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """complete raises StorageError for a non-JSON result and the job stays running."""
        job = storage.enqueue(new_job(clock()))
        lease = lease_of(claim(storage))
        with pytest.raises(StorageError):
            storage.settle(lease, SUCCEEDED, result={"when": clock()})
        assert storage.get(job.id).status is JobStatus.RUNNING
        assert storage.settle(lease, SUCCEEDED, result="fine") is not None

    def test_a_completed_job_cannot_be_completed_again(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """A second complete with the same lease is refused."""
        job = storage.enqueue(new_job(clock()))
        lease = lease_of(claim(storage))
        storage.settle(lease, SUCCEEDED, result=1)
        assert storage.settle(lease, SUCCEEDED, result=2) is None
        assert storage.get(job.id).result == 1

    def test_fail_without_retry_fails_the_job(self, storage: Storage, clock: FakeClock) -> None:
        """fail without retry_at finishes the job as failed and records the error."""
        job = storage.enqueue(new_job(clock()))
        lease = lease_of(claim(storage))
        clock.advance(2)
        record = storage.settle(lease, FAILED, error="ValueError: bad", traceback="Traceback ...")
        assert record is not None and record.status is JobStatus.FAILED
        assert record.error == "ValueError: bad" and record.finished_at == clock()
        assert record.worker_id is None and record.lease_expires_at is None
        [attempt] = storage.attempts(job.id)
        assert attempt.outcome is AttemptOutcome.FAILED and attempt.finished_at == clock()
        assert (attempt.error, attempt.traceback) == ("ValueError: bad", "Traceback ...")

    def test_fail_records_the_given_outcome(self, storage: Storage, clock: FakeClock) -> None:
        """The attempt keeps the outcome it was failed with (a timeout, say)."""
        job = storage.enqueue(new_job(clock()))
        storage.settle(lease_of(claim(storage)), TIMEOUT, error="TimeoutError", traceback=None)
        assert storage.attempts(job.id)[0].outcome is AttemptOutcome.TIMEOUT

    def test_fail_with_retry_at_schedules_the_next_attempt(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """fail with retry_at makes the job retrying, due then, its error kept."""
        job = storage.enqueue(new_job(clock()))
        retry_at = clock() + timedelta(seconds=10)
        record = storage.settle(lease_of(claim(storage)), FAILED, error="boom", traceback="tb",
                                retry_at=retry_at)
        assert record is not None and record.status is JobStatus.RETRYING
        assert record.available_at == retry_at and record.error == "boom"
        assert record.finished_at is None and record.worker_id is None
        clock.advance(9)
        assert storage.claim("w1", LEASE) is None
        clock.advance(1)
        second = claim(storage, "w2")
        assert second.id == job.id and second.attempts == 2
        numbers = [(attempt.attempt, attempt.outcome) for attempt in storage.attempts(job.id)]
        assert numbers == [(1, AttemptOutcome.FAILED), (2, None)]

    def test_release_hands_the_job_back(self, storage: Storage, clock: FakeClock) -> None:
        """A release makes the job pending in its place in the queue; the attempt is not counted."""
        job = storage.enqueue(new_job(clock(), delay=-5))
        lease = lease_of(claim(storage, "w1"))
        clock.advance(4)
        record = storage.settle(lease, HANDED_BACK)
        assert record is not None and record.status is JobStatus.PENDING
        assert record.attempts == 0 and record.available_at == job.available_at
        assert record.worker_id is None and record.lease_expires_at is None
        [attempt] = storage.attempts(job.id)
        assert attempt.outcome is AttemptOutcome.HANDED_BACK and attempt.finished_at == clock()
        assert storage.settle(lease, HANDED_BACK) is None
        again = claim(storage, "w2")
        assert again.id == job.id and again.attempts == 1
        assert len(storage.attempts(job.id)) == 2


class CancelTests(StorageFixtures):
    """Cancelling jobs in every status."""

    def test_cancel_a_pending_job(self, storage: Storage, clock: FakeClock) -> None:
        """A cancelled pending job is final and never claimed."""
        job = storage.enqueue(new_job(clock()))
        clock.advance(1)
        record = storage.cancel(job.id)
        assert record is not None and record.status is JobStatus.CANCELLED
        assert record.finished_at == clock()
        assert storage.get(job.id) == record
        assert storage.claim("w1", LEASE) is None
        assert storage.attempts(job.id) == []

    def test_cancel_a_retrying_job(self, storage: Storage, clock: FakeClock) -> None:
        """A job waiting for its retry can be cancelled."""
        job = storage.enqueue(new_job(clock()))
        storage.settle(lease_of(claim(storage)), FAILED, error="boom", traceback=None,
                       retry_at=clock())
        record = storage.cancel(job.id)
        assert record is not None and record.status is JobStatus.CANCELLED
        assert storage.claim("w1", LEASE) is None

    def test_cancel_a_running_job_takes_its_lease(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """Cancelling a running job closes its attempt as cancelled and refuses its worker."""
        job = storage.enqueue(new_job(clock()))
        lease = lease_of(claim(storage))
        clock.advance(2)
        record = storage.cancel(job.id)
        assert record is not None and record.status is JobStatus.CANCELLED
        assert record.finished_at == clock()
        assert record.worker_id is None and record.lease_expires_at is None
        [attempt] = storage.attempts(job.id)
        assert attempt.outcome is AttemptOutcome.CANCELLED and attempt.finished_at == clock()
        assert storage.heartbeat(lease, LEASE) is False
        assert storage.settle(lease, SUCCEEDED, result="too late") is None
        assert storage.settle(lease, FAILED, error="late", traceback=None) is None
        assert storage.get(job.id) == record

    def test_cancel_a_finished_job_returns_none(self, storage: Storage, clock: FakeClock) -> None:
        """Completed, failed and cancelled jobs are left as they are."""
        jobs = [storage.enqueue(new_job(clock(), max_attempts=1)) for _ in range(3)]
        storage.settle(lease_of(claim(storage)), SUCCEEDED, result="ok")
        storage.settle(lease_of(claim(storage)), FAILED, error="boom", traceback=None)
        storage.cancel(jobs[2].id)
        assert_left_alone(storage, storage.cancel, jobs)

    def test_cancel_an_unknown_job_raises(self, storage: Storage) -> None:
        """cancel raises JobNotFoundInStorage for an unknown id."""
        with pytest.raises(JobNotFoundInStorage):
            storage.cancel("424242")
        with pytest.raises(JobNotFoundInStorage):
            storage.cancel("nope")


class ManualRetryTests(StorageFixtures):
    """Running failed and cancelled jobs again."""

    def test_retry_a_failed_job(self, storage: Storage, clock: FakeClock) -> None:
        """A failed job is pending again, due now, with an attempt left and its error cleared."""
        job = storage.enqueue(new_job(clock(), max_attempts=1))
        storage.settle(lease_of(claim(storage)), FAILED, error="boom", traceback=None)
        clock.advance(60)
        record = storage.retry(job.id)
        assert record is not None and record.status is JobStatus.PENDING
        assert record.available_at == clock() and record.finished_at is None
        assert record.error is None
        assert (record.attempts, record.max_attempts) == (1, 2)
        assert claim(storage).attempts == 2

    def test_retry_keeps_a_higher_max_attempts(self, storage: Storage, clock: FakeClock) -> None:
        """max_attempts only grows when no attempt would be left."""
        job = storage.enqueue(new_job(clock(), max_attempts=5))
        storage.settle(lease_of(claim(storage)), FAILED, error="boom", traceback=None)
        record = storage.retry(job.id)
        assert record is not None and record.max_attempts == 5

    def test_retry_a_cancelled_job(self, storage: Storage, clock: FakeClock) -> None:
        """A cancelled job can be run again."""
        job = storage.enqueue(new_job(clock()))
        storage.cancel(job.id)
        record = storage.retry(job.id)
        assert record is not None and record.status is JobStatus.PENDING
        assert claim(storage).id == job.id

    def test_retry_other_statuses_returns_none(self, storage: Storage, clock: FakeClock) -> None:
        """Pending, running, retrying and completed jobs are not retried by hand."""
        pending = storage.enqueue(new_job(clock(), delay=60))
        completed = storage.enqueue(new_job(clock()))
        storage.settle(lease_of(claim(storage)), SUCCEEDED, result=None)
        retrying = storage.enqueue(new_job(clock()))
        storage.settle(lease_of(claim(storage)), FAILED, error="x", traceback=None,
                       retry_at=clock() + timedelta(hours=1))
        running = storage.enqueue(new_job(clock()))
        claim(storage)
        assert_left_alone(storage, storage.retry, [pending, completed, retrying, running])

    def test_retry_an_unknown_job_raises(self, storage: Storage) -> None:
        """retry raises JobNotFoundInStorage for an unknown id."""
        with pytest.raises(JobNotFoundInStorage):
            storage.retry("424242")


class ReadTests(StorageFixtures):
    """Listing, counting and the attempt history."""

    def test_list_is_newest_first(self, storage: Storage, clock: FakeClock) -> None:
        """list returns the newest job first."""
        ids = [storage.enqueue(new_job(clock())).id for _ in range(3)]
        assert [record.id for record in storage.list()] == ids[::-1]

    def test_list_and_count_filter(self, storage: Storage, clock: FakeClock) -> None:
        """list and count filter by status, by name and by both."""
        email = storage.enqueue(new_job(clock(), name="Email"))
        invoice = storage.enqueue(new_job(clock(), name="Invoice"))
        running = storage.enqueue(new_job(clock(), name="Invoice", priority=1))
        claim(storage)

        def ids(**filters: Any) -> list[str]:
            return [record.id for record in storage.list(**filters)]

        assert ids(status=JobStatus.PENDING) == [invoice.id, email.id]
        assert ids(name="Invoice") == [running.id, invoice.id]
        assert ids(status=JobStatus.RUNNING, name="Invoice") == [running.id]
        assert ids(status=JobStatus.RUNNING, name="Email") == []
        assert ids(status=JobStatus.FAILED) == []
        assert storage.count() == 3
        assert storage.count(status=JobStatus.PENDING) == 2
        assert storage.count(name="Invoice") == 2
        assert storage.count(status=JobStatus.PENDING, name="Email") == 1
        assert storage.count(name="Nothing") == 0

    def test_list_paginates(self, storage: Storage, clock: FakeClock) -> None:
        """limit and offset page through the newest-first list."""
        ids = [storage.enqueue(new_job(clock())).id for _ in range(7)][::-1]
        pages = [[r.id for r in storage.list(limit=3, offset=offset)] for offset in (0, 3, 6, 9)]
        assert pages == [ids[0:3], ids[3:6], ids[6:7], []]
        assert storage.list(limit=0) == []

    def test_attempts_are_oldest_first(self, storage: Storage, clock: FakeClock) -> None:
        """attempts lists every try of the job in order."""
        job = storage.enqueue(new_job(clock()))
        storage.settle(lease_of(claim(storage, "w1")), FAILED, error="one", traceback="tb1",
                       retry_at=clock())
        storage.settle(lease_of(claim(storage, "w2")), FAILED, error="two", traceback="tb2",
                       retry_at=clock())
        storage.settle(lease_of(claim(storage, "w3")), SUCCEEDED, result="done")
        history = [(a.attempt, a.worker_id, a.outcome, a.error) for a in storage.attempts(job.id)]
        assert history == [
            (1, "w1", AttemptOutcome.FAILED, "one"),
            (2, "w2", AttemptOutcome.FAILED, "two"),
            (3, "w3", AttemptOutcome.SUCCEEDED, None),
        ]

    def test_attempts_of_an_unknown_job_raise(self, storage: Storage) -> None:
        """attempts raises JobNotFoundInStorage for an unknown id."""
        with pytest.raises(JobNotFoundInStorage):
            storage.attempts("424242")


class PruneTests(StorageFixtures):
    """Deleting old finished jobs."""

    def test_prune_deletes_old_finished_jobs_only(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """prune deletes final jobs finished before the cutoff, with their attempts."""
        old = [storage.enqueue(new_job(clock(), max_attempts=1)) for _ in range(3)]
        waiting = storage.enqueue(new_job(clock(), delay=3600))
        storage.settle(lease_of(claim(storage)), SUCCEEDED, result="ok")
        storage.settle(lease_of(claim(storage)), FAILED, error="boom", traceback=None)
        storage.cancel(old[2].id)
        running = storage.enqueue(new_job(clock()))
        claim(storage)
        clock.advance(100)
        recent = storage.enqueue(new_job(clock()))
        storage.settle(lease_of(claim(storage)), SUCCEEDED, result="ok")
        assert storage.prune(clock() - timedelta(seconds=50)) == 3
        for job in old:
            with pytest.raises(JobNotFoundInStorage):
                storage.get(job.id)
            with pytest.raises(JobNotFoundInStorage):
                storage.attempts(job.id)
        assert {record.id for record in storage.list()} == {waiting.id, running.id, recent.id}

    def test_prune_works_in_batches(self, storage: Storage, clock: FakeClock) -> None:
        """prune deletes every match whatever the batch size."""
        for _ in range(5):
            storage.cancel(storage.enqueue(new_job(clock())).id)
        clock.advance(1)
        totals: list[int] = []
        assert storage.prune(clock(), batch_size=2, progress=totals.append) == 5
        assert totals and totals[-1] == 5, "progress is called with the running total"
        assert totals == sorted(totals)
        assert storage.count() == 0
        assert storage.prune(clock()) == 0

    def test_prune_deletes_the_statuses_asked_only(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """prune(statuses=...) deletes finished jobs of those statuses; others are refused."""
        done, failed, cancelled = (storage.enqueue(new_job(clock(), max_attempts=1))
                                   for _ in range(3))
        storage.settle(lease_of(claim(storage)), SUCCEEDED, result="ok")
        storage.settle(lease_of(claim(storage)), FAILED, error="boom", traceback=None)
        storage.cancel(cancelled.id)
        clock.advance(10)
        assert storage.prune(clock(), statuses=()) == 0
        assert storage.prune(clock(), statuses={"failed"}) == 1
        with pytest.raises(JobNotFoundInStorage):
            storage.attempts(failed.id)
        assert storage.prune(clock(), statuses=[JobStatus.CANCELLED, "failed"]) == 1
        assert [record.id for record in storage.list()] == [done.id]
        for bad in (["pending"], ["running"], ["done"], "failed"):
            with pytest.raises(ValueError):
                storage.prune(clock(), statuses=bad)
        assert storage.prune(clock(), statuses=[JobStatus.COMPLETED]) == 1
        assert storage.count() == 0

    def test_prune_finds_old_jobs_among_newer_ones_in_every_batch(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """Jobs that finished after the cutoff, between old ones, neither stop nor join a prune.

        Batches of one: the second and fourth jobs finished long ago, the first and third
        (enqueued before them) only now."""
        jobs = [storage.enqueue(new_job(clock())) for _ in range(4)]
        storage.cancel(jobs[1].id)
        storage.cancel(jobs[3].id)
        clock.advance(100)
        storage.cancel(jobs[0].id)
        storage.cancel(jobs[2].id)
        totals: list[int] = []
        assert storage.prune(clock() - timedelta(seconds=50), batch_size=1,
                             progress=totals.append) == 2
        assert totals[-1] == 2
        assert sorted(record.id for record in storage.list()) == sorted([jobs[0].id, jobs[2].id])


class ClosedStoreTests(StorageFixtures):
    """A closed store refuses to work."""

    def test_a_closed_store_raises(self, storage: Storage, clock: FakeClock) -> None:
        """Every call on a closed store raises StorageError saying so; close is idempotent."""
        job = storage.enqueue(new_job(clock()))
        storage.close()
        storage.close()
        calls: list[Callable[[], object]] = [
            lambda: storage.get(job.id),
            lambda: storage.enqueue(new_job(clock())),
            lambda: storage.claim("w1", LEASE),
            lambda: storage.list(),
            lambda: storage.count(),
            lambda: storage.requeue_expired(),
        ]
        for call in calls:
            with pytest.raises(StorageError, match="closed"):
                call()


class ConcurrencyTests(StorageFixtures):
    """Many processes claiming from one store."""

    workers = 4
    jobs = 300

    def test_processes_never_claim_a_job_twice(
        self, storage: Storage, storage_url: str | None, clock: FakeClock
    ) -> None:
        """Processes claiming at once take every job exactly once."""
        assert storage_url is not None, (
            f"{type(storage).__name__}: a store shared by processes supplies storage_url; "
            "a store that lives in one process uses InProcessStorageConformance"
        )
        ids = {storage.enqueue(new_job(clock(), params={"n": n})).id for n in range(self.jobs)}
        claimed = run_in_processes(
            claim_until_empty, type(storage), storage_url, self.workers
        )
        flat = [job_id for batch in claimed for job_id in batch]
        assert len(flat) == len(set(flat)), "a job was claimed twice"
        assert set(flat) == ids
        assert storage.count(status=JobStatus.COMPLETED) == self.jobs


    def test_processes_run_a_workflow_each_step_once_after_its_parents(
        self, storage: Storage, storage_url: str | None, clock: FakeClock
    ) -> None:
        """A fan-out and fan-in run by processes at once (capability ``workflows``).

        Twenty members, a callback with every member's result, ten steps after it and a last
        callback: each step claimed once, after every parent it waits for completed, each
        callback with every result.
        """
        store = workflow_store(storage)
        assert storage_url is not None
        members = [waiting_step(clock, params={"n": n}) for n in range(20)]
        callback = waiting_step(clock, *range(20), needs=NEEDS_ENDED, result_as="got",
                                collect=True, params={})
        after = [waiting_step(clock, 20, params={"n": n}) for n in range(10)]
        last = waiting_step(clock, *range(21, 31), needs=NEEDS_ENDED, result_as="got",
                            collect=True, params={})
        _, records = store.enqueue_steps([*members, callback, *after, last])
        claimed = run_in_processes(claim_until_empty, type(storage), storage_url, self.workers)
        flat = [job_id for batch in claimed for job_id in batch]
        assert sorted(flat, key=int) == [record.id for record in records]
        jobs = {record.id: storage.get(record.id) for record in records}
        assert all(job.status is JobStatus.COMPLETED for job in jobs.values())
        for index, child in ((20, records[20]), *((i, records[i]) for i in range(21, 32))):
            parents = range(20) if index == 20 else (20,) if index < 31 else range(21, 31)
            started = jobs[child.id].started_at
            assert started is not None
            for parent in parents:
                finished = jobs[records[parent].id].finished_at
                assert finished is not None and finished <= started
        for index in (20, 31):
            got = jobs[records[index].id].params["got"]  # type: ignore[call-overload]
            assert len(got) == (20 if index == 20 else 10) and None not in got


def claim_until_empty(storage_class: type[Storage], url: str, worker_id: str) -> list[str]:
    """Claim and complete jobs until none is due; the ids claimed (runs in a child process)."""
    claimed = []
    with storage_class.from_url(url) as store:
        while (record := store.claim(worker_id, 60.0)) is not None:
            claimed.append(record.id)
            if store.settle(lease_of(record), SUCCEEDED, result={"by": worker_id}) is None:
                raise AssertionError(f"{worker_id} lost job {record.id} it had just claimed")
    return claimed


def run_in_processes(
    target: Any, storage_class: type[Storage], url: str, count: int, timeout: float = 60.0
) -> list[Any]:
    """Run ``target`` in ``count`` spawned processes that start together; their results.

    Each runs ``target(storage_class, url, worker_id)``. A child's exception fails the test with
    its traceback.
    """
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(count)
    results = context.Queue()
    processes = [
        context.Process(
            target=_child, args=(target, storage_class, url, f"worker-{n}", start, results),
            daemon=True,
        )
        for n in range(count)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=timeout) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    errors = [error for _, error in outcomes if error is not None]
    assert not errors, "a child process failed:\n" + "\n".join(errors)
    return [value for value, _ in outcomes]


def _child(
    target: Any,
    storage_class: type[Storage],
    url: str,
    worker_id: str,
    start: Any,
    results: Any,
) -> None:
    try:
        start.wait(timeout=60)
        results.put((target(storage_class, url, worker_id), None))
    except BaseException:
        results.put((None, f"{worker_id}:\n{traceback.format_exc()}"))


class SearchConformance(StorageFixtures):
    """Capability ``search`` (or its fallback over the core).

    ``search`` and ``count_matching`` find what :func:`jobkit.storage.search.matches` says, in
    order, page after page.
    """

    @pytest.fixture
    def mixed(self, storage: Storage, clock: FakeClock) -> list[JobRecord]:
        """30 jobs: three names, two methods, priorities 0-2, created a second apart.

        Some completed, failed or cancelled; one with a secret.
        """
        made = []
        for n in range(30):
            params: dict[str, Any] = {"n": n, "tag": f"t{n % 4}"}
            if n == 7:
                params["password"] = "hunter2-t3"
            made.append(storage.enqueue(new_job(
                clock(), name=("Email", "Invoice", "Report")[n % 3],
                method=("send", "make")[n % 2], priority=n % 3, params=params,
            )))
            clock.advance(1)
        for _ in range(8):  # the 8 due first: priority 2 then 1...
            record = claim(storage)
            clock.advance(1)
            if int(record.id) % 2:
                storage.settle(lease_of(record), SUCCEEDED, result="ok")
            else:
                storage.settle(lease_of(record), FAILED, error="boom", traceback=None)
            clock.advance(1)
        storage.cancel(made[-1].id)
        return [storage.get(record.id) for record in made]

    QUERIES: tuple[dict[str, Any], ...] = (
        {},
        {"statuses": (JobStatus.PENDING,)},
        {"statuses": (JobStatus.FAILED, JobStatus.CANCELLED)},
        {"name": "Invoice"},
        {"name": "Invoice", "method": "make"},
        {"priority": 2},
        {"text": '"tag": "t3"'},
        {"text": "hunter2"},  # only in a secret: never found
        {"sort": "oldest", "name": "Email"},
        {"sort": "next"},
        {"sort": "next", "name": "Report"},
    )

    @pytest.mark.parametrize("given", QUERIES)
    def test_search_finds_what_matches_says_page_by_page(
        self, storage: Storage, mixed: list[JobRecord], given: dict[str, Any]
    ) -> None:
        """Every filter and sort, pages of 4 joined: the reference answer, in order."""
        expected = search_in(JobQuery(**given, limit=MAX_LIMIT), mixed)
        pages: list[JobRecord] = []
        after = None
        while True:
            page = search(storage, JobQuery(**given, limit=4, after=after))
            assert len(page.jobs) <= 4 and page.complete
            pages.extend(page.jobs)
            if page.next is None:
                break
            after = page.next
        assert [r.id for r in pages] == [r.id for r in expected]
        assert count_matching(storage, JobQuery(**given)) == Count(len(expected))
        capped = Count(2, over=True) if len(expected) > 2 else Count(len(expected))
        assert count_matching(storage, JobQuery(**given), cap=2) == capped
        assert count_matching(storage, JobQuery(**given), budget=10) == Count(len(expected))
        assert count_matching(storage, JobQuery(**given), cap=2, budget=10) == capped

    def test_time_range_and_the_secret_stay_masked(
        self, storage: Storage, mixed: list[JobRecord]
    ) -> None:
        """since/until bound the creation time; a job found shows its params as stored."""
        since, until = mixed[5].created_at, mixed[9].created_at
        found = search(storage, JobQuery(since=since, until=until, sort="oldest")).jobs
        assert [r.id for r in found] == [r.id for r in mixed[5:9]]
        assert search(storage, JobQuery(text="hunter2")).jobs == []
        assert search(storage, JobQuery(text='"***"')).jobs == [mixed[7]]  # as shown
        keys = search(storage, JobQuery(text='"password": '))  # keys are shown
        assert keys.jobs == [mixed[7]] and keys.next is None

    def test_a_foreign_cursor_is_refused(self, storage: Storage) -> None:
        """A cursor the store did not make is a ValueError, never a query."""
        with pytest.raises(ValueError, match="not a cursor"):
            search(storage, JobQuery(after="12; DROP TABLE jobkit_jobs"))
        with pytest.raises(ValueError, match="not a cursor"):
            search(storage, JobQuery(sort="next", after="1|yesterday|3"))
        with pytest.raises(ValueError, match="not a cursor"):
            search(storage, JobQuery(sort="next", after="5"))

    def test_the_oldest_waiting_job(self, storage: Storage, clock: FakeClock) -> None:
        """oldest_waiting is when the longest-waiting due job became due."""
        assert oldest_waiting(storage) is None
        first = storage.enqueue(new_job(clock()))
        clock.advance(5)
        storage.enqueue(new_job(clock(), delay=3600))  # not due: not waiting yet
        storage.enqueue(new_job(clock(), priority=9))
        assert oldest_waiting(storage) == first.available_at
        claim(storage)  # the priority-9 job
        claim(storage)  # the first one
        clock.advance(1)
        assert oldest_waiting(storage) is None


class WorkersConformance(StorageFixtures):
    """Capability ``workers``: the roster of worker processes (skipped for a store without)."""

    def test_workers_are_registered_beaten_and_forgotten(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """Worker processes are listed, beaten, replaced, removed and forgotten.

        Listed by host, supervisor and id; forgotten when not seen.
        """
        require(storage, "workers", "worker processes")
        roster = workers_of(storage)
        started = clock()
        for n, host in enumerate(["b-host", "a-host", "a-host"]):
            roster.register_worker(WorkerInfo(f"{host}:{n}", host, 100 + n, 99, started,
                                               started))
        assert [w.worker_id for w in roster.list_workers()] == ["a-host:1", "a-host:2",
                                                                 "b-host:0"]
        clock.advance(30)
        roster.beat_workers(["a-host:1", "nobody"])
        seen = {w.worker_id: w.last_seen_at for w in roster.list_workers()}
        assert seen == {"a-host:1": clock(), "a-host:2": started, "b-host:0": started}
        roster.register_worker(WorkerInfo("a-host:2", "a-host", 101, 99, started, clock()))
        assert {w.worker_id: w.last_seen_at for w in roster.list_workers()}["a-host:2"] == clock()
        roster.remove_worker("a-host:1")
        assert roster.forget_workers(clock() - timedelta(seconds=10)) == 1  # b-host:0
        assert [w.worker_id for w in roster.list_workers()] == ["a-host:2"]
        assert roster.list_workers()[0].started_at == started

class JobLogsConformance(StorageFixtures):
    """Capability ``job_logs``: the lines a job logged (skipped for a store without)."""

    def test_job_log_lines_are_kept_with_their_job(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """Log lines are kept in order with their job (none for an unknown job), pruned with it."""
        require(storage, "job_logs", "job log lines")
        logs = job_logs_of(storage)
        job = storage.enqueue(new_job(clock()))
        lines = [JobLogLine(1, clock(), "INFO", "first <b>"), JobLogLine(1, clock(), "ERROR",
                                                                         "second\nline")]
        logs.add_job_logs(job.id, lines[:1])
        logs.add_job_logs(job.id, lines[1:])
        logs.add_job_logs("999999", lines)  # an unknown job: nothing
        assert logs.job_logs(job.id) == lines
        assert logs.job_logs("999999") == []
        storage.cancel(job.id)
        clock.advance(10)
        assert storage.prune(clock()) == 1
        assert logs.job_logs(job.id) == []

class ThroughputConformance(StorageFixtures):
    """Capability ``throughput``: attempts per minute (skipped for a store without)."""

    def test_throughput_adds_up_per_minute(self, storage: Storage, clock: FakeClock) -> None:
        """Counts add up per minute, are read from a time on and forgotten before one."""
        require(storage, "throughput", "throughput")
        counts = throughput_of(storage)
        start = clock().replace(second=0, microsecond=0)
        later = start + timedelta(minutes=3)
        counts.add_throughput(start, 5, 1)
        counts.add_throughput(start, 2, 0)
        counts.add_throughput(later, 0, 4)
        assert counts.throughput(start) == [(start, 7, 1), (later, 0, 4)]
        assert counts.throughput(start + timedelta(minutes=1)) == [(later, 0, 4)]
        counts.forget_throughput(later)
        assert counts.throughput(start - timedelta(days=1)) == [(later, 0, 4)]

class UnreadableRowTests(StorageFixtures):
    """What a store wrote reads back whole: nothing in it is marked unreadable (issue 15)."""

    def test_what_the_store_wrote_reads_whole(self, storage: Storage, clock: FakeClock) -> None:
        """Every record and attempt read back from what the store wrote has nothing unreadable."""
        job = storage.enqueue(new_job(clock()))
        storage.settle(lease_of(claim(storage)), SUCCEEDED, result={"ok": True})
        assert storage.get(job.id).unreadable == {}
        assert [record.unreadable for record in storage.list()] == [{}]
        assert [attempt.unreadable for attempt in storage.attempts(job.id)] == [{}]


class SpoiledRowConformance(StorageFixtures):
    """A row the store cannot read never stops the queue and can still be read (issue 15).

    For a backend whose rows can hold what it cannot read (a SQL table written by hand can; a
    store of Python objects cannot): add this class to its test class with a ``spoil_row``
    fixture.
    """

    @pytest.fixture
    def spoil(self, spoil_row: Callable[[str], str] | None) -> Callable[[str], str]:
        """``spoil_row``, which a backend that adds this class must supply."""
        if spoil_row is None:
            pytest.fail("SpoiledRowConformance needs a spoil_row fixture that returns a function")
        return spoil_row

    def test_a_claim_sets_an_unreadable_row_aside(
        self, storage: Storage, clock: FakeClock, spoil: Callable[[str], str]
    ) -> None:
        """The claim fails the unreadable job and returns the next one.

        The job and its attempt are failed, naming the column; the unreadable job is never handed
        out.
        """
        bad = storage.enqueue(new_job(clock(), priority=5))
        column = spoil(bad.id)
        good = storage.enqueue(new_job(clock()))
        record = claim(storage)
        assert record.id == good.id and record.unreadable == {}
        failed = storage.get(bad.id)
        assert failed.status is JobStatus.FAILED
        assert (failed.error or "").startswith("jobkit could not read the stored job")
        assert f"{column}: " in (failed.error or "")
        assert [a.outcome for a in storage.attempts(bad.id)] == [AttemptOutcome.FAILED]
        assert storage.claim("w1", LEASE) is None

    def test_a_row_set_aside_ends_what_waits_for_it(
        self, storage: Storage, clock: FakeClock, spoil: Callable[[str], str]
    ) -> None:
        """A step set aside by the claim as failed cancels its chain's next step (``workflows``).

        In the claim's own transaction: nothing stays blocked behind a row nobody can read.
        """
        store = workflow_store(storage)
        _, (a, b) = store.enqueue_steps([waiting_step(clock), waiting_step(clock, 0)])
        spoil(a.id)
        assert storage.claim("w1", LEASE) is None
        assert storage.get(a.id).status is JobStatus.FAILED
        after = storage.get(b.id)
        assert after.status is JobStatus.CANCELLED
        assert after.error == f"cancelled: job {a.id}, which it waits for, is failed"

    def test_a_completion_stands_when_its_claim_meets_an_unreadable_row(
        self, storage: Storage, clock: FakeClock, spoil: Callable[[str], str]
    ) -> None:
        """complete_and_claim_many commits its completions and claims past the bad row."""
        done_job = storage.enqueue(new_job(clock()))
        lease = lease_of(claim(storage))
        bad = storage.enqueue(new_job(clock()))
        spoil(bad.id)
        behind = storage.enqueue(new_job(clock()))
        done, claimed = complete_and_claim_many(storage, [(lease, "ok")], "w1", LEASE, 2)
        assert done[0] is not None and done[0].status is JobStatus.COMPLETED
        assert [record.id for record in claimed] == [behind.id]
        assert storage.get(done_job.id).result == "ok"
        assert storage.get(bad.id).status is JobStatus.FAILED

    def test_reads_and_cancel_show_an_unreadable_row(
        self, storage: Storage, clock: FakeClock, spoil: Callable[[str], str]
    ) -> None:
        """get, list, search and cancel answer for the row, naming the unreadable column."""
        bad = storage.enqueue(new_job(clock()))
        column = spoil(bad.id)
        assert column in storage.get(bad.id).unreadable
        assert [record.unreadable.keys() for record in storage.list()] == [{column}]
        assert [record.id for record in search(storage, JobQuery()).jobs] == [bad.id]
        cancelled = storage.cancel(bad.id)
        assert cancelled is not None and cancelled.status is JobStatus.CANCELLED
        assert column in cancelled.unreadable


class SessionsConformance(StorageFixtures):
    """Capability ``sessions`` (or its fallback, this process).

    Dashboard sessions signed out, revoked for every dashboard over a store that has it.
    """

    def test_a_revoked_session_stays_revoked(
        self, storage: Storage, clock: FakeClock, storage_url: str | None
    ) -> None:
        expires = clock() + timedelta(hours=8)
        assert not session_revoked(storage, "s1")
        revoke_session(storage, "s1", expires)
        revoke_session(storage, "s1", expires)  # twice is once
        assert session_revoked(storage, "s1")
        assert not session_revoked(storage, "s2")
        clock.advance(3600)
        revoke_session(storage, "s2", clock() + timedelta(hours=8))
        assert session_revoked(storage, "s1") and session_revoked(storage, "s2")
        kept_in_the_store = supports(storage, "sessions")
        if storage_url is not None and kept_in_the_store:  # another process sees it
            with type(storage).from_url(storage_url) as other:
                assert session_revoked(other, "s1")


class ProgressConformance(StorageFixtures):
    """Capability ``progress``: a running attempt's progress (skipped for a store without)."""

    def test_progress_is_stored_and_reset_by_the_next_claim(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """set_progress stores fraction and message; a new attempt starts without progress."""
        require(storage, "progress", "progress")
        job = storage.enqueue(new_job(clock()))
        lease = lease_of(claim(storage))
        assert set_progress(storage, lease, 0.25, "a quarter")
        record = storage.get(job.id)
        assert (record.progress, record.progress_message) == (0.25, "a quarter")
        storage.settle(lease, FAILED, error="boom", traceback=None, retry_at=clock())
        record = claim(storage)
        assert (record.progress, record.progress_message) == (None, None)

    def test_progress_outside_zero_to_one_is_refused(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """set_progress raises ValueError for a fraction outside 0..1."""
        require(storage, "progress", "progress")
        storage.enqueue(new_job(clock()))
        lease = lease_of(claim(storage))
        for fraction in (-0.1, 1.5, float("nan")):
            with pytest.raises(ValueError):
                set_progress(storage, lease, fraction, None)


class BatchesConformance(StorageFixtures):
    """Capability ``batches`` (or its fallback over the core).

    A batch of completions and the next claims, what a worker does after each batch.
    """

    def test_complete_and_claim(self, storage: Storage, clock: FakeClock) -> None:
        """A completion with a claim of one completes the attempt and claims the next job.

        The claim follows the claim rules; a stale lease's completion is refused but the claim
        still happens.
        """
        first = storage.enqueue(new_job(clock()))
        low = storage.enqueue(new_job(clock(), priority=0))
        high = storage.enqueue(new_job(clock(), priority=5))
        lease = lease_of(claim(storage, "w1"))
        assert lease.job_id == high.id
        [done], [following] = complete_and_claim_many(storage, [(lease, "ok")], "w1", LEASE, 1)
        assert done is not None and (done.status, done.result) == (JobStatus.COMPLETED, "ok")
        assert following is not None and following.id == first.id
        assert following.status is JobStatus.RUNNING and following.worker_id == "w1"
        assert storage.get(high.id) == done
        [stale], [after] = complete_and_claim_many(storage, [(lease, "again")], "w1", LEASE, 1)
        assert stale is None and after is not None and after.id == low.id
        assert complete_and_claim_many(storage, [(lease_of(after), None)], "w1", LEASE, 1)[1] == []
        [attempt] = storage.attempts(first.id)
        assert attempt.outcome is None and attempt.worker_id == "w1"

    def test_complete_and_claim_many(self, storage: Storage, clock: FakeClock) -> None:
        """complete_and_claim_many completes each attempt, then claims up to ``limit`` jobs.

        A stale lease's completion is refused, the others are not; the claims are in claim order.
        """
        jobs = [storage.enqueue(new_job(clock(), priority=p)) for p in (0, 9, 0, 5, 0)]
        first = lease_of(claim(storage, "w1"))
        second = lease_of(claim(storage, "w1"))
        assert (first.job_id, second.job_id) == (jobs[1].id, jobs[3].id)
        # stale by the batch's commit
        assert storage.settle(second, SUCCEEDED, result="early") is not None
        done, claimed = complete_and_claim_many(storage,
            [(first, {"n": 1}), (second, "late")], "w1", LEASE, 2
        )
        assert done[0] is not None and (done[0].status, done[0].result) == (
            JobStatus.COMPLETED, {"n": 1})
        assert done[1] is None and storage.get(jobs[3].id).result == "early"
        assert [record.id for record in claimed] == [jobs[0].id, jobs[2].id]
        assert all(r.status is JobStatus.RUNNING and r.worker_id == "w1" for r in claimed)
        leases = [lease_of(record) for record in claimed]
        done, rest = complete_and_claim_many(storage, [(lease, None) for lease in leases],
                                                     "w1", LEASE, 5)
        assert all(record is not None for record in done)
        assert [record.id for record in rest] == [jobs[4].id]
        assert complete_and_claim_many(storage, [], "w1", LEASE, 0) == ([], [])
        assert storage.get(jobs[4].id).status is JobStatus.RUNNING  # limit 0 claimed nothing
        more = storage.enqueue(new_job(clock()))
        done, none = complete_and_claim_many(storage, [(lease_of(rest[0]), None)], "w1", LEASE, -1)
        assert done[0] is not None and none == []  # a negative limit claims nothing either
        assert storage.get(more.id).status is JobStatus.PENDING

    def test_a_batch_is_claimed_in_claim_order_with_its_attempts(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """A claim of several jobs takes them in claim order, each with its attempt opened.

        The order one-at-a-time claims would take (highest priority, then the earliest due, then
        the oldest); jobs not due yet are left.
        """
        later = storage.enqueue(new_job(clock(), delay=60))
        due_late = storage.enqueue(new_job(clock(), delay=-5))
        low = storage.enqueue(new_job(clock(), priority=-1, delay=-20))
        high = storage.enqueue(new_job(clock(), priority=7, delay=-1))
        due_early = storage.enqueue(new_job(clock(), delay=-10))
        same_time = storage.enqueue(new_job(clock(), delay=-10))
        _, claimed = complete_and_claim_many(storage, [], "w1", LEASE, 10)
        assert [record.id for record in claimed] == [
            high.id, due_early.id, same_time.id, due_late.id, low.id]
        for record in claimed:
            (attempt,) = storage.attempts(record.id)
            assert (attempt.attempt, attempt.worker_id, attempt.finished_at) == (1, "w1", None)
        assert storage.get(later.id).status is JobStatus.PENDING
        assert storage.attempts(later.id) == []


class FlowConformance(StorageFixtures):
    """Capability ``flow``: named queues, claims narrowed to some, paused queues skipped.

    Skipped for a store without it.
    """

    def test_a_job_keeps_its_queue(self, storage: Storage, clock: FakeClock) -> None:
        """Each job is stored with its queue (``default`` unless given), alone or in a batch."""
        require(storage, "flow", "queues")
        alone = storage.enqueue(attrs.evolve(new_job(clock()), queue="mail"))
        plain = storage.enqueue(new_job(clock()))
        batch = storage.enqueue_many([attrs.evolve(new_job(clock()), queue=name)
                                      for name in ("a", "b", "a", "default")])
        assert (alone.queue, plain.queue) == ("mail", "default")
        assert [record.queue for record in batch] == ["a", "b", "a", "default"]
        assert storage.get(alone.id) == alone and storage.get(batch[1].id) == batch[1]
        assert claim(storage).queue in ("mail", "default")

    def test_a_claim_takes_only_the_flows_queues(self, storage: Storage,
                                                 clock: FakeClock) -> None:
        """``claim_from`` takes jobs of its queues only, in claim order; ``Flow()`` takes all."""
        from jobkit.flow import Flow

        store = flow_store(storage)
        mail = [storage.enqueue(attrs.evolve(new_job(clock(), priority=p), queue="mail"))
                for p in (0, 3)]
        report = storage.enqueue(attrs.evolve(new_job(clock(), priority=9), queue="reports"))
        other = storage.enqueue(new_job(clock(), priority=5))
        taken = store.claim_from(Flow(["mail", "nothing"]), "w1", LEASE, 5)
        assert [record.id for record in taken] == [mail[1].id, mail[0].id]
        assert all(record.status is JobStatus.RUNNING for record in taken)
        assert store.claim_from(Flow(["mail"]), "w1", LEASE) == []
        assert [r.id for r in store.claim_from(Flow(), "w1", LEASE, 5)] == [report.id, other.id]
        with pytest.raises(ValueError):
            store.claim_from(Flow(), "w1", LEASE, 0)

    def test_no_claim_takes_a_job_of_a_paused_queue(self, storage: Storage,
                                                    clock: FakeClock) -> None:
        """Paused, a queue's jobs wait through every kind of claim; resumed, they are taken.

        A job of the queue already running goes on: its lease still holds.
        """
        from jobkit.flow import Flow

        store = flow_store(storage)
        running = storage.enqueue(attrs.evolve(new_job(clock()), queue="mail"))
        lease = lease_of(claim(storage))
        waiting = storage.enqueue(attrs.evolve(new_job(clock(), priority=9), queue="mail"))
        other = storage.enqueue(new_job(clock()))
        assert store.paused_queues() == set()
        assert store.pause_queue("mail") is True
        assert store.pause_queue("mail") is False
        assert store.paused_queues() == {"mail"}
        assert storage.heartbeat(lease, LEASE)
        assert claim(storage).id == other.id
        assert storage.claim("w1", LEASE) is None
        assert store.claim_from(Flow(["mail"]), "w1", LEASE) == []
        assert complete_and_claim_many(storage, [(lease, "ok")], "w1", LEASE, 5)[1] == []
        assert storage.get(running.id).status is JobStatus.COMPLETED
        assert storage.get(waiting.id).status is JobStatus.PENDING
        assert storage.get(waiting.id).attempts == 0
        assert store.resume_queue("mail") is True
        assert store.resume_queue("mail") is False
        assert store.paused_queues() == set()
        assert claim(storage).id == waiting.id

    def test_a_queue_can_be_paused_before_it_holds_a_job(self, storage: Storage,
                                                         clock: FakeClock) -> None:
        """A pause of an empty queue holds for the jobs that come later; a bad name is refused."""
        store = flow_store(storage)
        assert store.pause_queue("later") is True
        storage.enqueue(attrs.evolve(new_job(clock()), queue="later"))
        assert storage.claim("w1", LEASE) is None
        for bad in ("", "a b", "-x", "x" * 65):
            with pytest.raises(ValueError):
                store.pause_queue(bad)

    def test_queue_states_count_each_queues_jobs(self, storage: Storage,
                                                 clock: FakeClock) -> None:
        """Waiting (due or not), running, attempts ended in the last minute, paused; by name."""
        from jobkit.flow import QueueState

        store = flow_store(storage)
        assert store.queue_states() == []
        for delay in (0, 0, 600):
            storage.enqueue(attrs.evolve(new_job(clock(), delay=delay), queue="mail"))
        storage.enqueue(new_job(clock()))
        first = lease_of(claim(storage))  # a mail job (enqueued first)
        second = lease_of(claim(storage))
        storage.settle(first, SUCCEEDED, result=None)
        storage.settle(second, FAILED, error="boom", retry_at=clock() + timedelta(seconds=5))
        store.pause_queue("idle")
        running = lease_of(claim(storage))
        assert store.queue_states() == [
            QueueState("default", waiting=0, running=1),
            QueueState("idle", paused=True),
            QueueState("mail", waiting=2, running=0, done_last_minute=2),
        ]
        assert storage.heartbeat(running, LEASE)
        clock.advance(61)
        assert [state.done_last_minute for state in store.queue_states()] == [0, 0, 0]


class LimitConformance(StorageFixtures):
    """Capability ``flow``: concurrency and rate limits, enforced by ``claim_from``.

    Skipped for a store without it.
    """

    def test_a_concurrency_limit_holds_across_claims(self, storage: Storage,
                                                     clock: FakeClock) -> None:
        """At most ``limit`` of the job run at once; others go on; a claim takes one of them.

        The jobs held back stay pending with no attempt spent; a completion frees a place.
        """
        from jobkit.flow import Flow, Limit

        store = flow_store(storage)
        flow = Flow(limits=[Limit("job", "Email", "concurrency", 2)])
        emails = [storage.enqueue(new_job(clock(), priority=5)) for _ in range(4)]
        other = storage.enqueue(new_job(clock(), name="Report"))
        first = store.claim_from(flow, "w1", LEASE, 10)
        assert [record.id for record in first] == [emails[0].id, other.id]
        second = store.claim_from(flow, "w2", LEASE, 10)
        assert [record.id for record in second] == [emails[1].id]
        assert store.claim_from(flow, "w3", LEASE, 10) == []
        assert [storage.get(job.id).attempts for job in emails[2:]] == [0, 0]
        assert store.limit_usage(flow.limits[0]) == {None: (2, None)}
        storage.settle(lease_of(first[0]), SUCCEEDED, result=None)
        assert [record.id for record in store.claim_from(flow, "w1", LEASE, 10)] == [
            emails[2].id]

    def test_a_keyed_limit_holds_per_value(self, storage: Storage, clock: FakeClock) -> None:
        """``key``: one running per value of the parameter; other values are not held back."""
        from jobkit.flow import Flow, Limit

        store = flow_store(storage)
        flow = Flow(limits=[Limit("job", "Email", "concurrency", 1, key="to")])
        jobs = [storage.enqueue(new_job(clock(), params={"to": to}))
                for to in ("ana", "ana", "bo", "ana", "bo")]
        taken = [store.claim_from(flow, f"w{n}", LEASE, 5) for n in range(4)]
        assert [[record.id for record in found] for found in taken] == [
            [jobs[0].id], [jobs[2].id], [], []]
        assert store.limit_usage(flow.limits[0]) == {'"ana"': (1, None), '"bo"': (1, None)}

    def test_a_full_key_holds_back_its_jobs_not_the_others(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """Many jobs of a full key value ahead in the queue do not hide a job of another value.

        Values of every JSON kind (a boolean, a list, a float, null) are grouped as the store
        reads them.
        """
        from jobkit.flow import Flow, Limit

        store = flow_store(storage)
        flow = Flow(limits=[Limit("job", "Email", "concurrency", 1, key="k")])
        for value in (True, [1, 2], 1e20, None):
            first = storage.enqueue(new_job(clock(), params={"k": value}, priority=9))
            for _ in range(40):
                storage.enqueue(new_job(clock(), params={"k": value}, priority=5))
            free = storage.enqueue(new_job(clock(), params={"k": "other"}, priority=0))
            assert [job.id for job in store.claim_from(flow, "w1", LEASE, 1)] == [first.id]
            assert [job.id for job in store.claim_from(flow, "w2", LEASE, 1)] == [free.id]
            for job in storage.list(status=JobStatus.RUNNING):
                storage.settle(lease_of(job), SUCCEEDED, result=None)
            for job in storage.list(status=JobStatus.PENDING, limit=1000):
                storage.cancel(job.id)

    def test_a_queue_limit_holds_for_all_its_jobs(self, storage: Storage,
                                                  clock: FakeClock) -> None:
        """A queue's concurrency counts every job of the queue, whatever its name."""
        from jobkit.flow import Flow, Limit

        store = flow_store(storage)
        flow = Flow(limits=[Limit("queue", "reports", "concurrency", 1)])
        report, export = (storage.enqueue(attrs.evolve(new_job(clock(), name=name),
                                                       queue="reports"))
                          for name in ("Report", "Export"))
        free = storage.enqueue(new_job(clock()))
        assert [record.id for record in store.claim_from(flow, "w1", LEASE, 5)] == [
            report.id, free.id]
        assert store.claim_from(flow, "w2", LEASE, 5) == []
        assert storage.get(export.id).status is JobStatus.PENDING

    def test_a_rate_limit_holds_over_any_window(self, storage: Storage,
                                                clock: FakeClock) -> None:
        """At most ``limit`` starts in any ``per`` seconds: the window slides with the clock."""
        from jobkit.flow import Flow, Limit

        store = flow_store(storage)
        flow = Flow(limits=[Limit("job", "Email", "rate", 3, per=1.0)])
        for _ in range(8):
            storage.enqueue(new_job(clock()))

        def starts() -> int:  # claims until none is allowed (one job under a limit a claim)
            taken = 0
            while store.claim_from(flow, "w1", LEASE, 10):
                taken += 1
            return taken

        started = clock()
        assert len(store.claim_from(flow, "w1", LEASE, 10)) == 1
        assert len(store.claim_from(flow, "w1", LEASE, 10)) == 1
        clock.advance(0.5)
        assert starts() == 1
        assert store.limit_usage(flow.limits[0]) == {None: (3, started)}
        clock.advance(0.4)
        assert starts() == 0
        clock.advance(0.1)  # the first two started a second ago: out of the window
        assert starts() == 2
        clock.advance(0.5)  # the third: out too
        assert starts() == 1

    def test_a_keyed_rate_limit_holds_per_value(self, storage: Storage,
                                                clock: FakeClock) -> None:
        """A rate per value of the key: one partner's starts do not use up another's."""
        from jobkit.flow import Flow, Limit

        store = flow_store(storage)
        flow = Flow(limits=[Limit("job", "Email", "rate", 1, per=60.0, key="to")])
        for to in ("ana", "ana", "bo", "bo"):
            storage.enqueue(new_job(clock(), params={"to": to}))
        found = [*store.claim_from(flow, "w1", LEASE, 10), *store.claim_from(flow, "w1", LEASE, 10)]
        assert sorted(str(record.params) for record in found) == [
            "{'to': 'ana'}", "{'to': 'bo'}"]
        assert store.claim_from(flow, "w1", LEASE, 10) == []
        clock.advance(60)
        assert len(store.claim_from(flow, "w1", LEASE, 10)) == 1
        assert len(store.claim_from(flow, "w1", LEASE, 10)) == 1


class UniqueConformance(StorageFixtures):
    """Capability ``flow``: unique jobs, a duplicate enqueue stores nothing.

    Skipped for a store without it.
    """

    def test_a_duplicate_of_a_waiting_or_running_job_is_not_stored(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """Same key while the first waits or runs: its record comes back; once it ended, not."""
        store = flow_store(storage)
        job = attrs.evolve(new_job(clock()), unique_key="Email:ana")
        [(first, new)] = store.enqueue_unique([job])
        assert new and first.unique_key == "Email:ana" and storage.get(first.id) == first
        assert store.enqueue_unique([job]) == [(first, False)]
        assert storage.enqueue(job) == first  # the plain enqueue keeps the rule
        running = claim(storage)
        assert store.enqueue_unique([job])[0] == (running, False)
        storage.settle(lease_of(running), SUCCEEDED, result=None)
        [(second, new)] = store.enqueue_unique([job])
        assert new and second.id != first.id
        other = attrs.evolve(new_job(clock()), unique_key="Email:bo")
        assert store.enqueue_unique([other])[0][1] is True
        assert storage.count() == 3

    def test_a_period_holds_the_key_whatever_became_of_the_job(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """With ``unique_for``, a job enqueued less than that many seconds ago holds its key."""
        store = flow_store(storage)
        job = attrs.evolve(new_job(clock()), unique_key="Report:11", unique_for=300.0)
        [(first, _)] = store.enqueue_unique([job])
        storage.cancel(first.id)
        clock.advance(299)
        assert store.enqueue_unique([job]) == [(storage.get(first.id), False)]
        clock.advance(2)
        assert store.enqueue_unique([job])[0][1] is True

    def test_a_retry_never_makes_two_jobs_of_one_key_wait(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        """Retrying a job whose key another waiting job holds is refused, naming that job."""
        store = flow_store(storage)
        job = attrs.evolve(new_job(clock()), unique_key="Invoice:7")
        [(first, _)] = store.enqueue_unique([job])
        storage.cancel(first.id)
        [(second, new)] = store.enqueue_unique([job])
        assert new
        with pytest.raises(StorageError, match=f"job {first.id} cannot be retried: job "
                                               f"{second.id} has the same unique key"):
            storage.retry(first.id)
        assert storage.get(first.id).status is JobStatus.CANCELLED
        storage.cancel(second.id)
        assert storage.retry(first.id) is not None

    def test_duplicates_within_one_batch_get_the_first(self, storage: Storage,
                                                       clock: FakeClock) -> None:
        """A job duplicating an earlier one of the same call gets it; the others are stored."""
        store = flow_store(storage)
        keys = ["a", None, "a", "b"]
        found = store.enqueue_unique([attrs.evolve(new_job(clock()), unique_key=key)
                                      for key in keys])
        assert [new for _, new in found] == [True, True, False, True]
        assert found[2][0] == found[0][0]
        assert [record.unique_key for record, _ in found] == ["a", None, "a", "b"]
        assert storage.count() == 3


def schedule_store(storage: Storage) -> KeepsSchedules:
    """The store as :class:`KeepsSchedules`; the test is skipped for a store without it."""
    require(storage, "schedules", "schedules")
    assert isinstance(storage, KeepsSchedules)
    return storage


def scheduled(name: str = "tick", **fields: Any) -> Any:
    """A schedule of the test job (``every: 1m`` unless given)."""
    from jobkit.schedules import Schedule

    if "cron" not in fields:
        fields.setdefault("every", "1m")
    return Schedule(name=name, job="Email", method="send", **fields)


def tick_job(clock: FakeClock, **fields: Any) -> NewJob:
    """The job a tick stores: due when stored."""
    return attrs.evolve(new_job(clock()), available_at=None, **fields)


def minute_after(moment: datetime, minutes: int = 1) -> datetime:
    """The start of the ``minutes``-th whole minute after ``moment`` (an ``every: 1m`` tick)."""
    start = moment.replace(second=0, microsecond=0)
    return start + timedelta(minutes=minutes)


class ScheduleConformance(StorageFixtures):
    """Capability ``schedules``: each tick fired once, catch-up, overlap, pauses, runs.

    Skipped for a store without it.
    """

    def test_a_new_schedule_fires_from_its_first_tick_on_once_each(
            self, storage: Storage, clock: FakeClock) -> None:
        """First seen: nothing due; then each tick stores the job once, however often fired."""
        store = schedule_store(storage)
        schedule, job = scheduled(), tick_job(clock, params={"n": 1}, queue="q", priority=4)
        assert store.fire_schedule(schedule, job) == []
        first = minute_after(clock())
        clock.current = first - timedelta(microseconds=1)
        assert store.fire_schedule(schedule, job) == []
        clock.current = first
        (record,) = store.fire_schedule(schedule, job)
        assert (record.name, record.method, record.params, record.queue, record.priority) == (
            "Email", "send", {"n": 1}, "q", 4)
        assert record.status is JobStatus.PENDING and storage.get(record.id) == record
        assert store.fire_schedule(schedule, job) == []
        clock.advance(59)
        assert store.fire_schedule(schedule, job) == []
        state = store.schedule_states()["tick"]
        assert (state.last_tick, state.last_run_at, state.last_job_id, state.paused) == (
            first, first, record.id, False)
        assert store.schedule_runs("tick") == [(first, record.id)]
        assert store.schedule_runs("other") == []

    def test_missed_ticks_latest_none_and_all(self, storage: Storage, clock: FakeClock) -> None:
        """Ten missed ticks of ``every: 5m``: ``latest`` runs one, ``none`` none, ``all`` ten.

        ``latest`` runs the newest once, ``none`` none (the newest is over a minute late),
        ``all`` each of the ten, oldest first; every one records the newest tick as handled.
        """
        store = schedule_store(storage)
        modes = {mode: scheduled(mode, every="5m", catch_up=mode, overlap="allow")
                 for mode in ("latest", "none", "all")}
        for schedule in modes.values():
            store.fire_schedule(schedule, tick_job(clock))
        start = clock()
        newest = minute_after(start, 50)
        clock.current = newest + timedelta(seconds=90)
        fired = {mode: store.fire_schedule(schedule, tick_job(clock))
                 for mode, schedule in modes.items()}
        assert [len(fired[mode]) for mode in modes] == [1, 0, 10]
        assert [tick for tick, _ in store.schedule_runs("all", limit=100)] == [
            minute_after(start, 5 * n) for n in range(10, 0, -1)]
        assert store.schedule_runs("latest") == [(newest, fired["latest"][0].id)]
        states = store.schedule_states()
        assert all(states[mode].last_tick == newest for mode in modes)
        assert states["none"].last_run_at is None and states["none"].last_job_id is None
        clock.current = minute_after(start, 55) + timedelta(seconds=30)
        assert len(store.fire_schedule(modes["none"], tick_job(clock))) == 1  # within the grace

    def test_overlap_skip_drops_ticks_while_a_run_is_active(
            self, storage: Storage, clock: FakeClock) -> None:
        """``skip`` drops ticks while a run is active; ``allow`` runs every tick.

        ``skip``: no tick runs while the last run is pending, retrying or running; it is
        dropped, not kept for later.
        """
        store = schedule_store(storage)
        skip, allow = scheduled("skip"), scheduled("allow", overlap="allow")
        for schedule in (skip, allow):
            store.fire_schedule(schedule, tick_job(clock))
        start = clock()
        counts = {"skip": 0, "allow": 0}
        for minute in (1, 2, 3):
            clock.current = minute_after(start, minute)
            if minute == 2:
                claim(storage)  # the skip run, now running
            for schedule in (skip, allow):
                counts[schedule.name] += len(store.fire_schedule(schedule, tick_job(clock)))
        assert counts == {"skip": 1, "allow": 3}
        assert store.schedule_states()["skip"].last_tick == minute_after(start, 3)
        (running,) = storage.list(status=JobStatus.RUNNING)
        storage.settle(lease_of(running), SUCCEEDED, result=None)
        clock.current = minute_after(start, 4)
        assert len(store.fire_schedule(skip, tick_job(clock))) == 1

    def test_overlap_skip_runs_one_missed_tick_under_catch_up_all(
            self, storage: Storage, clock: FakeClock) -> None:
        """``skip`` with ``catch_up: all``: one job for five missed ticks, not five at once.

        The oldest tick runs; its job is pending, so the later ones would overlap it and are
        dropped (handled). ``allow`` runs all five.
        """
        store = schedule_store(storage)
        skip = scheduled("skip", catch_up="all")
        allow = scheduled("allow", catch_up="all", overlap="allow")
        for schedule in (skip, allow):
            store.fire_schedule(schedule, tick_job(clock))
        start = clock()
        clock.current = minute_after(start, 5) + timedelta(seconds=1)
        (record,) = store.fire_schedule(skip, tick_job(clock))
        assert len(store.fire_schedule(allow, tick_job(clock))) == 5
        assert store.schedule_runs("skip") == [(minute_after(start, 1), record.id)]
        assert store.schedule_states()["skip"].last_tick == minute_after(start, 5)
        assert storage.count(status=JobStatus.PENDING) == 6

    def test_a_paused_schedule_skips_its_ticks(self, storage: Storage, clock: FakeClock) -> None:
        """A paused schedule's ticks are handled without running; resumed, it runs again.

        A pause holds for every worker, also before the schedule was ever fired; resumed, it
        runs from its next tick. Each call says whether it changed anything.
        """
        store = schedule_store(storage)
        schedule = scheduled()
        assert store.pause_schedule("tick") is True and store.pause_schedule("tick") is False
        assert store.schedule_states()["tick"].paused is True
        assert store.fire_schedule(schedule, tick_job(clock)) == []
        start = clock()
        clock.current = minute_after(start, 3)
        assert store.fire_schedule(schedule, tick_job(clock)) == []
        assert store.resume_schedule("tick") is True and store.resume_schedule("tick") is False
        assert store.fire_schedule(schedule, tick_job(clock)) == []
        clock.current = minute_after(start, 4)
        assert len(store.fire_schedule(schedule, tick_job(clock))) == 1
        assert store.resume_schedule("never-seen") is False
        assert store.schedule_states()["never-seen"].paused is False

    def test_ticks_of_a_pause_no_worker_fired_are_not_run_on_resume(
            self, storage: Storage, clock: FakeClock) -> None:
        """Ticks due while paused are not run after the resume, though no worker fired them.

        Paused (seen or never seen before), then no firing for ten minutes (the workers were
        down), then resumed: the schedule runs from its next tick on, under every
        ``catch_up``.
        """
        store = schedule_store(storage)
        fired = scheduled("fired", catch_up="all", overlap="allow")
        store.fire_schedule(fired, tick_job(clock))
        unseen = scheduled("unseen", overlap="allow")
        start = clock()
        for schedule in (fired, unseen):
            assert store.pause_schedule(schedule.name) is True
        clock.current = minute_after(start, 10) + timedelta(seconds=30)
        for schedule in (fired, unseen):
            assert store.resume_schedule(schedule.name) is True
            assert store.fire_schedule(schedule, tick_job(clock)) == []
            assert store.schedule_runs(schedule.name) == []
        clock.current = minute_after(start, 11)
        for schedule in (fired, unseen):
            assert len(store.fire_schedule(schedule, tick_job(clock))) == 1

    def test_a_deleted_job_takes_its_run_but_not_the_last_tick(
            self, storage: Storage, clock: FakeClock) -> None:
        """A pruned run is gone from the runs and the state's job, the tick stays handled."""
        store = schedule_store(storage)
        schedule = scheduled(overlap="allow")
        store.fire_schedule(schedule, tick_job(clock))
        first = minute_after(clock())
        clock.current = first
        (old,) = store.fire_schedule(schedule, tick_job(clock))
        clock.current = minute_after(first)
        (new,) = store.fire_schedule(schedule, tick_job(clock))
        storage.cancel(old.id)
        storage.cancel(new.id)
        storage.prune(clock() + timedelta(seconds=1))
        assert store.schedule_runs("tick") == []
        state = store.schedule_states()["tick"]
        assert (state.last_tick, state.last_run_at, state.last_job_id) == (
            minute_after(first), minute_after(first), None)
        assert store.fire_schedule(schedule, tick_job(clock)) == []

    def test_cron_ticks_in_a_time_zone(self, storage: Storage, clock: FakeClock) -> None:
        """A cron schedule fires at its expression's times in its zone."""
        store = schedule_store(storage)
        schedule = scheduled("nightly", cron="0 3 * * *", timezone="Europe/Berlin")
        clock.current = datetime(2024, 7, 1, 0, 0, tzinfo=timezone.utc)
        store.fire_schedule(schedule, tick_job(clock))
        clock.current = datetime(2024, 7, 1, 0, 59, tzinfo=timezone.utc)
        assert store.fire_schedule(schedule, tick_job(clock)) == []
        clock.current = datetime(2024, 7, 1, 1, 0, 5, tzinfo=timezone.utc)  # 03:00:05 in Berlin
        assert len(store.fire_schedule(schedule, tick_job(clock))) == 1
        assert store.schedule_states()["nightly"].last_run_at == datetime(
            2024, 7, 1, 1, 0, tzinfo=timezone.utc)

    def test_firings_racing_in_threads_store_each_tick_once(
            self, storage: Storage, clock: FakeClock) -> None:
        """Six threads firing the same ticks at once: each tick is stored once.

        The first round races on the schedule's first sight (its state made once, no error).
        """
        import threading

        store = schedule_store(storage)
        schedule = scheduled(every="1s", catch_up="all", overlap="allow")
        errors: list[BaseException] = []
        start = threading.Barrier(6)

        def fire() -> None:
            try:
                start.wait()
                for _ in range(5):
                    store.fire_schedule(schedule, tick_job(clock))
            except BaseException as exc:
                errors.append(exc)

        for round_ in range(5):
            if round_:
                clock.advance(3)
            threads = [threading.Thread(target=fire) for _ in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert errors == []
        ticks = [tick for tick, _ in store.schedule_runs("tick", limit=100)]
        assert len(ticks) == len(set(ticks)) == 12
        assert storage.count() == 12


def workflow_store(storage: Storage) -> RunsWorkflows:
    """The store as :class:`RunsWorkflows`; the test is skipped for a store without it."""
    require(storage, "workflows", "workflows")
    assert isinstance(storage, RunsWorkflows)
    return storage


def waiting_step(clock: FakeClock, *parents: int, **fields: Any) -> NewStep:
    """A step of the test job (``params`` ``{"n": ...}`` unless given) after ``parents``."""
    params = fields.pop("params", {"n": len(parents)})
    return NewStep(new_job(clock(), params=params), parents=parents, **fields)


def ended(storage: Storage, job_id: str, outcome: AttemptOutcome = SUCCEEDED,
          result: Any = None) -> JobRecord:
    """Claim the job (it must be the next due) and settle it with ``outcome``."""
    record = claim(storage)
    assert record.id == job_id, f"expected job {job_id} to be claimed, got {record.id}"
    if outcome is SUCCEEDED:
        settled = storage.settle(lease_of(record), outcome, result=result)
    else:
        settled = storage.settle(lease_of(record), outcome, error="boom", traceback=None)
    assert settled is not None
    return settled


def statuses(storage: Storage, records: Iterable[JobRecord]) -> list[str]:
    """The status of each job now, as text."""
    return [str(storage.get(record.id).status) for record in records]


class WorkflowConformance(StorageFixtures):
    """Capability ``workflows``: jobs released in the change that ends their last parent.

    Skipped for a store without it.
    """

    def test_a_chain_is_released_step_by_step_with_its_results(
            self, storage: Storage, clock: FakeClock) -> None:
        """Each completion makes the next step pending, in the same change, with its result.

        Only the first step is due at first; the result is given as ``result_as``.
        """
        store = workflow_store(storage)
        workflow_id, (a, b, c) = store.enqueue_steps([
            waiting_step(clock), waiting_step(clock, 0, result_as="got"),
            waiting_step(clock, 1, result_as="got")])
        assert workflow_id is not None
        assert [a.status, b.status, c.status] == [JobStatus.PENDING, JobStatus.BLOCKED,
                                                  JobStatus.BLOCKED]
        clock.advance(5)
        ended(storage, a.id, result={"rows": 3})
        assert storage.claim("w2", LEASE) is not None  # b, released by a's completion
        released = storage.get(b.id)
        assert released.status is JobStatus.RUNNING
        assert released.params == {"n": 1, "got": {"rows": 3}}
        assert storage.get(c.id).status is JobStatus.BLOCKED
        assert storage.settle(lease_of(released), SUCCEEDED, result=[1, 2]) is not None
        assert storage.get(c.id).params == {"n": 1, "got": [1, 2]}
        assert storage.get(c.id).available_at == clock()
        steps = store.get_workflow(workflow_id).steps
        assert [(step.job_id, step.label, step.parents) for step in steps] == [
            (a.id, "", ()), (b.id, "", (a.id,)), (c.id, "", (b.id,))]
        assert store.workflow_of(c.id) == workflow_id

    def test_no_release_before_every_parent_ended(
            self, storage: Storage, clock: FakeClock) -> None:
        """A callback waits for both members to end; one failed, it runs with ``None`` for it.

        A member that is ``retrying`` has not ended.
        """
        store = workflow_store(storage)
        _, (one, two, then) = store.enqueue_steps([
            waiting_step(clock), waiting_step(clock),
            waiting_step(clock, 0, 1, needs=NEEDS_ENDED, result_as="got", collect=True)])
        ended(storage, one.id, result="first")
        assert storage.get(then.id).status is JobStatus.BLOCKED
        lease = lease_of(claim(storage))
        storage.settle(lease, FAILED, error="boom", retry_at=clock() + timedelta(seconds=1))
        assert storage.get(then.id).status is JobStatus.BLOCKED  # retrying: not ended
        clock.advance(1)
        ended(storage, two.id, FAILED)
        callback = storage.get(then.id)
        assert callback.status is JobStatus.PENDING
        assert callback.params == {"n": 2, "got": ["first", None]}

    def test_a_failure_cancels_what_waits_for_it_and_a_retry_revives_it(
            self, storage: Storage, clock: FakeClock) -> None:
        """a -> b -> c: a fails, b and c are cancelled; retrying a makes them wait again.

        Their error says why; they go on once a succeeds. Retrying b first makes it (and c)
        wait: its parent has not completed.
        """
        store = workflow_store(storage)
        _, (a, b, c) = store.enqueue_steps([
            waiting_step(clock), waiting_step(clock, 0), waiting_step(clock, 1)])
        ended(storage, a.id, FAILED)
        assert statuses(storage, [a, b, c]) == ["failed", "cancelled", "cancelled"]
        assert f"job {a.id}" in (storage.get(b.id).error or "")
        assert storage.claim("w1", LEASE) is None
        retried = storage.retry(b.id)  # its parent has not completed: it waits again
        assert retried is not None and retried.status is JobStatus.BLOCKED
        assert statuses(storage, [a, b, c]) == ["failed", "blocked", "blocked"]
        assert storage.retry(a.id) is not None
        assert statuses(storage, [a, b, c]) == ["pending", "blocked", "blocked"]
        ended(storage, a.id)
        ended(storage, b.id)
        assert storage.get(c.id).status is JobStatus.PENDING

    def test_what_a_cascade_changed_is_taken_once_in_order(
            self, storage: Storage, clock: FakeClock) -> None:
        """``take_cascaded``: the jobs a failure cancelled, then those a retry revived; once.

        In the order changed, as they were then; not another thread's, nor a release.
        """
        store = workflow_store(storage)
        _, (a, b, c) = store.enqueue_steps([
            waiting_step(clock), waiting_step(clock, 0), waiting_step(clock, 1)])
        assert store.take_cascaded() == []
        ended(storage, a.id, FAILED)
        other: list[list[JobRecord]] = []
        thread = threading.Thread(target=lambda: other.append(store.take_cascaded()))
        thread.start()
        thread.join()
        assert other == [[]]
        taken = store.take_cascaded()
        assert [(job.id, job.status) for job in taken] == [
            (b.id, JobStatus.CANCELLED), (c.id, JobStatus.CANCELLED)]
        assert f"job {a.id}" in (taken[0].error or "") and f"job {b.id}" in (taken[1].error or "")
        assert store.take_cascaded() == []
        assert storage.retry(a.id) is not None
        assert [(job.id, job.status) for job in store.take_cascaded()] == [
            (b.id, JobStatus.BLOCKED), (c.id, JobStatus.BLOCKED)]
        ended(storage, a.id)  # releases b: nothing to take
        assert store.take_cascaded() == []

    def test_a_step_whose_released_params_are_too_large_fails(
            self, storage: Storage, clock: FakeClock) -> None:
        """Over its ``max_params_bytes`` with the results written in, a step fails, unrun.

        In the release's change: its error names its label, job, size and limit; its params
        stay as stored; what needs it completed is cancelled; ``take_cascaded`` has both. A
        step whose params fit, or that has no limit, is released.
        """
        store = workflow_store(storage)
        _, (a, big, after, fits, free) = store.enqueue_steps([
            waiting_step(clock),
            waiting_step(clock, 0, result_as="got", label="1", max_params_bytes=30),
            waiting_step(clock, 1),
            waiting_step(clock, 0, result_as="got", max_params_bytes=60),
            waiting_step(clock, 0, result_as="got")])
        store.take_cascaded()
        ended(storage, a.id, result="r" * 20)  # {"n": 1, "got": "rrr..."}: 39 bytes
        assert statuses(storage, [big, after, fits, free]) == [
            "failed", "cancelled", "pending", "pending"]
        failed = storage.get(big.id)
        assert failed.params == {"n": 1} and failed.attempts == 0
        assert failed.finished_at == clock()
        assert failed.error == (
            f"step 1 ({failed.name}.{failed.method}): its params, with the results it waits "
            "for given as got, are 39 bytes of JSON, over max_params_bytes (30); it was not run")
        assert [(job.id, job.status) for job in store.take_cascaded()] == [
            (big.id, JobStatus.FAILED), (after.id, JobStatus.CANCELLED)]
        assert f"job {big.id}" in (storage.get(after.id).error or "")

    def test_on_failure_run_runs_after_a_failed_parent(
            self, storage: Storage, clock: FakeClock) -> None:
        """A step that needs its parents ended runs after one failed.

        One that needs them completed is cancelled; a cancel by hand is an end too.
        """
        store = workflow_store(storage)
        _, (a, anyway, only_if, after_cancel) = store.enqueue_steps([
            waiting_step(clock), waiting_step(clock, 0, needs=NEEDS_ENDED),
            waiting_step(clock, 0), waiting_step(clock, 2, needs=NEEDS_ENDED)])
        ended(storage, a.id, FAILED)
        assert statuses(storage, [anyway, only_if, after_cancel]) == [
            "pending", "cancelled", "pending"]

    def test_a_cancel_by_hand_and_a_last_crash_end_a_parent(
            self, storage: Storage, clock: FakeClock) -> None:
        """Cancelling a step cancels what needs it completed; so does its last lost lease."""
        store = workflow_store(storage)
        _, (a, b, c, d) = store.enqueue_steps([
            waiting_step(clock), waiting_step(clock, 0),
            attrs.evolve(waiting_step(clock), job=new_job(clock(), max_crashes=1)),
            waiting_step(clock, 2)])
        storage.cancel(b.id)
        assert statuses(storage, [a, b]) == ["pending", "cancelled"]
        storage.cancel(a.id)
        claim(storage)  # c
        clock.advance(LEASE + 1)
        storage.requeue_expired()
        assert statuses(storage, [c, d]) == ["failed", "cancelled"]

    def test_depends_on_stored_jobs(self, storage: Storage, clock: FakeClock) -> None:
        """A job after stored ones is released or cancelled at once when they have ended.

        Released when they completed, cancelled when one failed, refused (nothing stored)
        when one is unknown; under no workflow.
        """
        store = workflow_store(storage)
        done = storage.enqueue(new_job(clock()))
        ended(storage, done.id, result=7)
        failed = storage.enqueue(new_job(clock(), max_attempts=1))
        ended(storage, failed.id, FAILED)
        waits = storage.enqueue(new_job(clock()))
        workflow_id, (after_done,) = store.enqueue_steps(
            [NewStep(new_job(clock(), params={}), depends_on=(done.id,), result_as="got")],
            workflow=False)
        assert workflow_id is None and store.workflow_of(after_done.id) is None
        assert after_done.status is JobStatus.PENDING and after_done.params == {"got": 7}
        _, (after_failed, after_waits) = store.enqueue_steps(
            [NewStep(new_job(clock()), depends_on=(failed.id,)),
             NewStep(new_job(clock()), depends_on=(waits.id, done.id))], workflow=False)
        assert [after_failed.status, after_waits.status] == [JobStatus.CANCELLED,
                                                            JobStatus.BLOCKED]
        before = storage.count()
        with pytest.raises(JobNotFoundInStorage):
            store.enqueue_steps([NewStep(new_job(clock()), depends_on=("987654",))])
        assert storage.count() == before
        ended(storage, waits.id)
        assert storage.get(after_waits.id).status is JobStatus.PENDING

    def test_a_child_stored_while_its_parent_runs_is_released(
            self, storage: Storage, clock: FakeClock) -> None:
        """A job stored to wait for a running one is released when that one completes.

        The parent was claimed before it had children: its completion still finds the child
        (a store that skips the look-up for a job without children must see the new link).
        """
        store = workflow_store(storage)
        parent = storage.enqueue(new_job(clock()))
        running = claim(storage)
        assert running.id == parent.id
        _, (child,) = store.enqueue_steps(
            [NewStep(new_job(clock(), params={}), depends_on=(parent.id,), result_as="got")],
            workflow=False)
        assert child.status is JobStatus.BLOCKED
        assert storage.settle(lease_of(running), SUCCEEDED, result=5) is not None
        released = storage.get(child.id)
        assert released.status is JobStatus.PENDING and released.params == {"got": 5}

    def test_jobs_stored_at_once_to_wait_for_one_running_job_are_all_released(
            self, storage: Storage, clock: FakeClock) -> None:
        """Six threads store children of one running job at once; its completion releases all.

        None of them may fail: on PostgreSQL each locks the parent's row and the first link sets
        the row's ``has_children``, so a lock two of them shared and both upgraded would
        deadlock.
        """
        import threading

        store = workflow_store(storage)
        parent = storage.enqueue(new_job(clock()))
        running = claim(storage)
        assert running.id == parent.id
        start, children, errors = threading.Barrier(6), [], []

        def add() -> None:
            try:
                start.wait(10)
                for _ in range(5):
                    children.extend(store.enqueue_steps(
                        [NewStep(new_job(clock()), depends_on=(parent.id,))],
                        workflow=False)[1])
            except Exception as exc:  # reported below, by the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=add) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors and len(children) == 30
        assert storage.settle(lease_of(running), SUCCEEDED, result=None) is not None
        assert {storage.get(child.id).status for child in children} == {JobStatus.PENDING}

    def test_members_ending_at_once_release_the_callback_once(
            self, storage: Storage, clock: FakeClock) -> None:
        """Six members settled by six threads at once: the callback is released once.

        With every member's result: no member may see "another is still running" for ever.
        """
        import threading

        store = workflow_store(storage)
        members = [waiting_step(clock, params={"n": n}) for n in range(6)]
        callback = waiting_step(clock, *range(6), needs=NEEDS_ENDED, result_as="got",
                                collect=True, params={})
        _, records = store.enqueue_steps([*members, callback])
        leases = {record.params["n"]: lease_of(record)  # type: ignore[call-overload]
                  for record in (claim(storage) for _ in range(6))}
        errors: list[BaseException] = []
        start = threading.Barrier(6)

        def settle(n: int) -> None:
            try:
                start.wait()
                storage.settle(leases[n], SUCCEEDED, result=n * 10)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=settle, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        released = claim(storage)
        assert released.id == records[-1].id
        assert released.params == {"got": [0, 10, 20, 30, 40, 50]}
        assert storage.claim("w1", LEASE) is None

    def test_a_batched_completion_releases_in_its_own_commit(
            self, storage: Storage, clock: FakeClock) -> None:
        """The completions of a batch release what waits for them before its claims.

        The claim of the same call already finds the released step, with the result.
        """
        store = workflow_store(storage)
        _, (_, b) = store.enqueue_steps([waiting_step(clock),
                                         waiting_step(clock, 0, result_as="got")])
        first = claim(storage)
        done, claimed = complete_and_claim_many(storage, [(lease_of(first), 7)], "w1", LEASE, 1)
        assert done[0] is not None and done[0].status is JobStatus.COMPLETED
        assert [(job.id, job.params) for job in claimed] == [(b.id, {"n": 1, "got": 7})]

    def test_a_parent_pruned_before_the_release_counts_as_ended(
            self, storage: Storage, clock: FakeClock) -> None:
        """A member deleted by prune before the callback's release gives ``None``, not a hang."""
        store = workflow_store(storage)
        _, (a, b, callback) = store.enqueue_steps([
            waiting_step(clock, params={"n": 0}), waiting_step(clock, params={"n": 1}),
            waiting_step(clock, 0, 1, needs=NEEDS_ENDED, result_as="got", collect=True,
                         params={})])
        ended(storage, a.id, result="a")
        clock.advance(1)
        assert storage.prune(clock(), statuses=[JobStatus.COMPLETED]) == 1
        ended(storage, b.id, result="b")
        released = storage.get(callback.id)
        assert released.status is JobStatus.PENDING
        assert released.params == {"got": [None, "b"]}

    def test_a_released_step_keeps_a_later_due_time(
            self, storage: Storage, clock: FakeClock) -> None:
        """A step stored with a delay is released pending but not due before its time."""
        store = workflow_store(storage)
        _, (a, b) = store.enqueue_steps([
            waiting_step(clock), NewStep(new_job(clock(), delay=60), parents=(0,))])
        due = clock() + timedelta(seconds=60)
        ended(storage, a.id)
        released = storage.get(b.id)
        assert (released.status, released.available_at) == (JobStatus.PENDING, due)
        assert storage.claim("w1", LEASE) is None

    def test_cancel_a_workflow(self, storage: Storage, clock: FakeClock) -> None:
        """Every step not ended is cancelled, a running one's lease taken away.

        Ended ones and other jobs are left alone.
        """
        store = workflow_store(storage)
        workflow_id, (a, b, c, d) = store.enqueue_steps([
            waiting_step(clock), waiting_step(clock), waiting_step(clock, 0),
            waiting_step(clock, 1, 2, needs=NEEDS_ENDED)])
        other = storage.enqueue(new_job(clock()))
        assert workflow_id is not None
        ended(storage, a.id)
        running = claim(storage)
        assert running.id == b.id
        cancelled = store.cancel_workflow(workflow_id)
        assert sorted(record.id for record in cancelled) == sorted([b.id, c.id, d.id])
        assert statuses(storage, [a, b, c, d, other]) == [
            "completed", "cancelled", "cancelled", "cancelled", "pending"]
        assert storage.settle(lease_of(running), SUCCEEDED) is None
        assert store.cancel_workflow(workflow_id) == []
        assert store.get_workflow(workflow_id).finished
        with pytest.raises(JobNotFoundInStorage, match="no workflow with id '987654'"):
            store.get_workflow("987654")

class CoreConformance(
    RoundTripTests,
    ClaimTests,
    LeaseTests,
    OutcomeTests,
    CancelTests,
    ManualRetryTests,
    ReadTests,
    PruneTests,
    ClosedStoreTests,
    UnreadableRowTests,
):
    """Every rule of the ``Storage`` core that one process can check.

    What a backend that implements the core alone passes. Add :class:`ConcurrencyTests` for a store
    shared by processes, and the class of each optional capability it has.
    """


#: The tests of each optional capability, by name (:data:`OPTIONAL_CAPABILITIES`).
CAPABILITY_CONFORMANCE: dict[str, type[StorageFixtures]] = {
    "search": SearchConformance,
    "workers": WorkersConformance,
    "job_logs": JobLogsConformance,
    "throughput": ThroughputConformance,
    "sessions": SessionsConformance,
    "progress": ProgressConformance,
    "batches": BatchesConformance,
    "flow": FlowConformance,
    "schedules": ScheduleConformance,
    "workflows": WorkflowConformance,
}


class InProcessStorageConformance(
    CoreConformance,
    SearchConformance,
    WorkersConformance,
    JobLogsConformance,
    ThroughputConformance,
    SessionsConformance,
    ProgressConformance,
    BatchesConformance,
    FlowConformance,
    LimitConformance,
    UniqueConformance,
    ScheduleConformance,
    WorkflowConformance,
):
    """The core and every optional capability that one process can check.

    For stores that live in one process (``memory://``). Shared stores use
    :class:`StorageConformance`.
    """


class StorageConformance(InProcessStorageConformance, ConcurrencyTests):
    """The core and every optional capability, processes included.

    Subclass it and supply the ``storage`` and ``storage_url`` fixtures.
    """
