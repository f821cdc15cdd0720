"""An in-process job store for tests and experiments: dicts behind one lock.

It follows the SQLite store's semantics exactly (the conformance suite checks both). Params,
results and policies are kept as JSON text, so what comes out is a fresh copy of what went in
and anything SQLite would refuse is refused here too. It lives and dies with its process.
"""

from __future__ import annotations

import builtins
import itertools
import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import attrs

from jobkit.exceptions import ConfigError, JobNotFoundInStorage, StorageError
from jobkit.flow import EVERY_QUEUE, Flow, Limit, QueueState, check_queue_name
from jobkit.records import (
    FINAL_STATUSES,
    WAITING_STATUSES,
    Attempt,
    AttemptOutcome,
    JobRecord,
    JobStatus,
    Lease,
    NewJob,
    utcnow,
)
from jobkit.storage import capabilities
from jobkit.storage.base import Clock, Storage, check_claim, check_new_jobs
from jobkit.storage.cascades import Cascades
from jobkit.storage.flow_claim import Candidate, Exclusions, Usage, claim_limited, usage
from jobkit.storage.memory_keeps import MemoryKeeps
from jobkit.storage.memory_rows import Row
from jobkit.storage.memory_schedules import MemorySchedules
from jobkit.storage.memory_workflows import MemoryWorkflows
from jobkit.storage.search import Count, JobQuery, SearchPage
from jobkit.storage.sql import to_json, unique_retry_error

T = TypeVar("T")

#: The statuses in which a job holds its unique key whatever its age.
ACTIVE = frozenset({JobStatus.PENDING, JobStatus.RETRYING, JobStatus.RUNNING})
#: The outcomes :meth:`MemoryStorage.queue_states` counts as done (as the SQL stores do).
ENDED = frozenset({AttemptOutcome.SUCCEEDED, AttemptOutcome.FAILED, AttemptOutcome.TIMEOUT})


class MemoryStorage(Storage, capabilities.Searches, MemoryKeeps, capabilities.KeepsProgress,
                    capabilities.ControlsFlow, MemorySchedules, MemoryWorkflows):
    """Jobs in this process's memory (``memory://``); thread-safe, lost when the process ends.

    Same rules as :class:`~jobkit.storage.sqlite.SQLiteStorage`: ``worker_id`` and
    ``lease_expires_at`` are set only while a job is ``running``; a completion and a manual
    :meth:`retry` clear ``error``, a scheduled retry keeps it.
    """

    scheme = "memory"

    def __init__(self, *, clock: Clock = utcnow) -> None:
        super().__init__(clock=clock)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._jobs: dict[int, Row] = {}
        self._attempts: dict[int, builtins.list[Attempt]] = {}
        #: Queues ever paused or resumed: whether each is paused now.
        self._paused: dict[str, bool] = {}
        #: The starts of rate-limited jobs: ``(limit group, when)`` (jobkit/storage/flow_claim.py).
        self._flow_starts: builtins.list[tuple[str, datetime]] = []
        self._start_keeping()
        self._start_scheduling()
        self._start_workflows()
        self._cascades = Cascades()
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryStorage:
        """A new, empty store for ``memory://``.

        ``options`` go to the constructor (``durability`` means nothing here: a memory store is
        lost with its process).
        """
        scheme, sep, rest = url.partition("://")
        if not (sep and scheme) or rest:  # any scheme: a subclass may be registered under its own
            raise ConfigError(f"storage: {url!r} is not the memory store's URL 'memory://'")
        options.pop("durability", None)
        return cls(**options)

    @property
    def url(self) -> str:
        """``memory://`` (opening it gives a new, empty store)."""
        return "memory://"

    def now(self) -> datetime:
        """The store's clock, in UTC like every time the SQLite store returns."""
        return self._clock().astimezone(timezone.utc)

    def _locked(self, operation: str, work: Callable[[], T]) -> T:
        with self._lock:
            if self._closed:
                raise StorageError(f"memory storage: {operation}: the store is closed")
            try:
                return work()
            finally:  # a change made under the lock stays made, even when work raised after it
                self._cascades.committed()

    def _row(self, job_id: str) -> Row:
        row = self._jobs.get(int(job_id)) if job_id.isascii() and job_id.isdigit() else None
        if row is None or str(row.id) != job_id:
            raise JobNotFoundInStorage(job_id)
        return row

    def _leased(self, lease: Lease) -> Row | None:
        """The job when ``lease`` still owns it (the fence of every write of a worker)."""
        try:
            row = self._row(lease.job_id)
        except JobNotFoundInStorage:
            return None
        owned = (
            row.status is JobStatus.RUNNING
            and row.worker_id == lease.worker_id
            and row.attempts == lease.attempt
        )
        return row if owned else None

    def _close_attempt(
        self,
        job_id: int,
        now: datetime,
        outcome: AttemptOutcome,
        error: str | None = None,
        traceback: str | None = None,
    ) -> None:
        attempts = self._attempts[job_id]
        for index, attempt in enumerate(attempts):
            if attempt.finished_at is None:
                attempts[index] = attrs.evolve(
                    attempt, finished_at=now, outcome=outcome, error=error, traceback=traceback
                )

    # -- writes of the app ---------------------------------------------------------------------

    def _enqueue_many(self, jobs: builtins.list[NewJob]) -> builtins.list[JobRecord]:
        """Store the jobs at once (all or nothing), in order; their records.

        A job with a ``unique_key`` that a stored job holds is not stored: its record is that
        job's (see :meth:`enqueue_unique`).
        """
        return [record for record, _ in self.enqueue_unique(jobs)]

    def enqueue_unique(self, jobs: builtins.list[NewJob]) -> builtins.list[tuple[JobRecord, bool]]:
        """Store each job unless a job of its ``unique_key`` makes it a duplicate (``flow``)."""
        check_new_jobs(jobs, "enqueue_unique")
        encoded = [(job, *self._encode_new(job)) for job in jobs]

        def work() -> builtins.list[tuple[JobRecord, bool]]:
            return [self._store_new(job, params, policy) for job, params, policy in encoded]

        what = f"enqueue job {jobs[0].name!r}" if len(jobs) == 1 else f"enqueue {len(jobs)} jobs"
        return self._locked(what, work)

    def _encode_new(self, job: NewJob) -> tuple[str, str]:
        """The job's params and policy as JSON text (``StorageError`` when they are not JSON)."""
        return (to_json(job.params, f"job {job.name!r}: params"),
                to_json(attrs.asdict(job.policy), f"job {job.name!r}: policy"))

    def _store_new(self, job: NewJob, params: str, policy: str) -> tuple[JobRecord, bool]:
        """Store one job (params and policy as JSON) unless it is a duplicate (under the lock).

        Its record and whether it was stored; a duplicate's is the job that holds its key."""
        holder = None if job.unique_key is None else self._unique_holder(job)
        if holder is not None:
            return holder.record(), False
        return self._add_row(job, params, policy, JobStatus.PENDING).record(), True

    def _add_row(self, job: NewJob, params: str, policy: str, status: JobStatus) -> Row:
        """Store one job in ``status``, whatever its unique key (under the lock)."""
        row = Row(
            id=next(self._ids),
            name=job.name,
            method=job.method,
            params=params,
            status=status,
            priority=job.priority,
            attempts=0,
            max_attempts=job.max_attempts,
            max_crashes=job.max_crashes,
            policy=policy,
            created_at=self.now(),
            available_at=(job.available_at or self.now()).astimezone(timezone.utc),
            queue=job.queue,
            unique_key=job.unique_key,
        )
        self._jobs[row.id] = row
        self._attempts[row.id] = []
        return row

    def _unique_holder(self, job: NewJob) -> Row | None:
        """The stored job that makes ``job`` a duplicate, the newest (under the lock)."""
        since = None if job.unique_for is None else self.now() - timedelta(seconds=job.unique_for)
        holders = [row for row in self._jobs.values() if row.unique_key == job.unique_key and (
            row.status in ACTIVE or (since is not None and row.created_at > since))]
        return max(holders, key=lambda row: (row.created_at, row.id), default=None)

    def _cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a pending, retrying or running job (see :meth:`Storage.cancel`)."""

        def work() -> JobRecord | None:
            row = self._row(job_id)
            if row.status in FINAL_STATUSES:
                return None
            now = self.now()
            self._cancel_row(row, now)
            self._ended(row.id, now)
            return row.record()

        return self._locked(f"cancel job {job_id}", work)

    def _cancel_row(self, row: Row, now: datetime) -> None:
        """Cancel a job that has not ended, closing a running attempt (under the lock)."""
        row.leave_running(JobStatus.CANCELLED)
        row.finished_at = now
        self._close_attempt(row.id, now, AttemptOutcome.CANCELLED)

    def _retry(self, job_id: str) -> JobRecord | None:
        """Put a ``failed`` or ``cancelled`` job back to ``pending``, available now.

        Its error is cleared and ``max_attempts`` raised to allow one more attempt if needed.
        ``None`` for other statuses; ``JobNotFoundInStorage`` for an unknown id. A workflow's
        step whose parents have not all completed goes back to ``blocked`` instead, and the
        steps a failure of it cancelled wait again (capability ``workflows``).
        """

        def work() -> JobRecord | None:
            row = self._row(job_id)
            if row.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
                return None
            if row.unique_key is not None:
                holders = [other for other in self._jobs.values() if other.id != row.id
                           and other.unique_key == row.unique_key and other.status in ACTIVE]
                if holders:
                    raise unique_retry_error(row.record(), holders[0].record())
            row.status = JobStatus.BLOCKED if self._back_to_waiting(row) else JobStatus.PENDING
            row.available_at = self.now()
            row.error = None
            row.finished_at = None
            row.max_attempts = max(row.max_attempts, row.attempts + 1)
            row.crashes = 0
            self._release_retried(row)
            self._revived(row.id)
            return row.record()

        return self._locked(f"retry job {job_id}", work)

    # -- writes of the worker ------------------------------------------------------------------

    def _claim(self, worker_id: str, lease_seconds: float) -> JobRecord | None:
        """Atomically take the next due job (see :meth:`Storage.claim`)."""
        claimed = self.claim_from(EVERY_QUEUE, worker_id, lease_seconds)
        return claimed[0] if claimed else None

    def claim_from(
        self, flow: Flow, worker_id: str, lease_seconds: float, limit: int = 1
    ) -> builtins.list[JobRecord]:
        """Claim up to ``limit`` due jobs of ``flow``'s queues, none paused, in claim order."""
        check_claim(worker_id, lease_seconds, limit)

        def work() -> builtins.list[JobRecord]:
            now = self.now()
            if flow.limits:
                limited = MemoryLimited(self, worker_id, lease_seconds, now)
                return claim_limited(limited, flow, limit, now)
            return [self._start(row, worker_id, lease_seconds, now)
                    for row in self._due(flow, now)[:limit]]

        return self._locked(f"claim a job for worker {worker_id}", work)

    def _due(self, flow: Flow, now: datetime) -> builtins.list[Row]:
        """The due jobs of ``flow``'s queues, none paused, in claim order (under the lock)."""
        due = [
            row for row in self._jobs.values()
            if row.status in WAITING_STATUSES and row.available_at <= now
            and flow.takes(row.queue) and not self._paused.get(row.queue, False)
        ]
        due.sort(key=lambda row: (-row.priority, row.available_at, row.id))
        return due

    def _start(self, row: Row, worker_id: str, lease_seconds: float, now: datetime) -> JobRecord:
        """Make ``row`` running under a new lease and open its attempt (under the lock)."""
        row.status = JobStatus.RUNNING
        row.attempts += 1
        row.worker_id = worker_id
        row.started_at = now
        row.lease_expires_at = now + timedelta(seconds=lease_seconds)
        row.progress = None
        row.progress_message = None
        self._attempts[row.id].append(
            Attempt(job_id=str(row.id), attempt=row.attempts, worker_id=worker_id, started_at=now)
        )
        return row.record()

    # -- queues (capability ``flow``) ----------------------------------------------------------

    def _set_paused(self, queue: str, paused: bool) -> bool:
        check_queue_name(queue)
        with self._lock:
            changed = self._paused.get(queue, False) != paused or queue not in self._paused
            self._paused[queue] = paused
            return changed

    def pause_queue(self, queue: str) -> bool:
        """Pause ``queue``: no claim takes its jobs; whether it was running before."""
        return self._set_paused(queue, True)

    def resume_queue(self, queue: str) -> bool:
        """Resume ``queue``; whether it was paused before."""
        return self._set_paused(queue, False)

    def limit_usage(self, limit: Limit) -> Usage:
        """What ``limit`` has used now, per key value (capability ``flow``)."""
        with self._lock:
            now = self.now()
            return usage(MemoryLimited(self, "", 0.0, now, prune=False), limit, now)

    def paused_queues(self) -> set[str]:
        """The queues paused now."""
        with self._lock:
            return {name for name, paused in self._paused.items() if paused}

    def queue_states(self) -> builtins.list[QueueState]:
        """Every queue that holds a waiting or running job or was ever paused, by name."""
        with self._lock:
            since = self.now() - timedelta(seconds=60)
            names = set(self._paused)
            waiting: dict[str, int] = {}
            running: dict[str, int] = {}
            done: dict[str, int] = {}
            for row in self._jobs.values():
                if row.status in WAITING_STATUSES:
                    waiting[row.queue] = waiting.get(row.queue, 0) + 1
                elif row.status is JobStatus.RUNNING:
                    running[row.queue] = running.get(row.queue, 0) + 1
                ended = sum(1 for attempt in self._attempts[row.id]
                            if attempt.finished_at is not None and attempt.finished_at >= since
                            and attempt.outcome in ENDED)
                if ended:
                    done[row.queue] = done.get(row.queue, 0) + ended
            names |= set(waiting) | set(running) | set(done)
            return [QueueState(name, self._paused.get(name, False), waiting.get(name, 0),
                               running.get(name, 0), done.get(name, 0)) for name in sorted(names)]

    def _heartbeat(self, lease: Lease, lease_seconds: float) -> bool:
        """Extend the lease; ``False`` when it no longer owns the job."""

        def work() -> bool:
            row = self._leased(lease)
            if row is None:
                return False
            row.lease_expires_at = self.now() + timedelta(seconds=lease_seconds)
            return True

        return self._locked(f"heartbeat job {lease.job_id}", work)

    def set_progress(self, lease: Lease, fraction: float, message: str | None) -> bool:
        """Record the running attempt's progress (0..1); ``False`` when the lease is lost."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress fraction must be between 0 and 1, got {fraction!r}")

        def work() -> bool:
            row = self._leased(lease)
            if row is None:
                return False
            row.progress = float(fraction)
            row.progress_message = message
            return True

        return self._locked(f"set progress of job {lease.job_id}", work)

    def _leave_running(
        self,
        operation: str,
        lease: Lease,
        status: JobStatus,
        outcome: AttemptOutcome,
        change: Callable[[Row, datetime], None],
        error: str | None = None,
        traceback: str | None = None,
    ) -> JobRecord | None:
        """Settle the leased job: move it to ``status`` and close its attempt with ``outcome``.

        ``change(row, now)`` sets the rest of the row. Fenced: ``None`` when the lease no
        longer owns the job.
        """

        def work() -> JobRecord | None:
            row = self._leased(lease)
            if row is None:
                return None
            now = self.now()
            row.leave_running(status)
            change(row, now)
            self._close_attempt(row.id, now, outcome, error, traceback)
            if status in FINAL_STATUSES:
                self._ended(row.id, now)
            return row.record()

        return self._locked(operation, work)

    def _succeeded(self, lease: Lease, result: Any) -> JobRecord | None:
        """Finish the attempt as succeeded and the job as ``completed``; fenced."""
        encoded = to_json(result, f"job {lease.job_id}: result")

        def change(row: Row, now: datetime) -> None:
            row.result = encoded
            row.error = None
            row.finished_at = now

        return self._leave_running(f"complete job {lease.job_id}", lease, JobStatus.COMPLETED,
                                   AttemptOutcome.SUCCEEDED, change)

    def _failed(
        self,
        lease: Lease,
        error: str,
        traceback: str | None,
        outcome: AttemptOutcome,
        retry_at: datetime | None,
    ) -> JobRecord | None:
        """Finish the attempt with ``outcome``.

        The job is ``retrying`` at ``retry_at`` (its error kept) or ``failed``; fenced.
        """

        def change(row: Row, now: datetime) -> None:
            row.error = error
            if retry_at is None:
                row.finished_at = now
            else:
                row.available_at = retry_at.astimezone(timezone.utc)

        status = JobStatus.FAILED if retry_at is None else JobStatus.RETRYING
        return self._leave_running(f"fail job {lease.job_id}", lease, status, outcome, change,
                                   error, traceback)

    def _handed_back(self, lease: Lease) -> JobRecord | None:
        """Hand a running job back: the attempt is ``handed_back`` and does not count; fenced."""

        def change(row: Row, now: datetime) -> None:
            row.attempts -= 1  # available_at is kept: the job keeps its place in the queue

        return self._leave_running(f"release job {lease.job_id}", lease, JobStatus.PENDING,
                                   AttemptOutcome.HANDED_BACK, change)

    def _settle(self, lease: Lease, outcome: AttemptOutcome, result: Any, error: str | None,
                traceback: str | None, retry_at: datetime | None) -> JobRecord | None:
        """Close the attempt with ``outcome`` (see :meth:`Storage.settle`); fenced."""
        if outcome is AttemptOutcome.SUCCEEDED:
            return self._succeeded(lease, result)
        if outcome is AttemptOutcome.HANDED_BACK:
            return self._handed_back(lease)
        return self._failed(lease, error or "", traceback, outcome, retry_at)

    def _requeue_expired(self) -> builtins.list[JobRecord]:
        """Take back running jobs whose lease expired (see :meth:`Storage.requeue_expired`)."""

        def work() -> builtins.list[JobRecord]:
            now = self.now()
            changed = []
            for row in sorted(self._jobs.values(), key=lambda row: row.id):
                if row.status is not JobStatus.RUNNING or row.lease_expires_at is None:
                    continue
                if row.lease_expires_at >= now:
                    continue
                error = f"lease expired: worker {row.worker_id} stopped heartbeating"
                self._close_attempt(row.id, now, AttemptOutcome.LOST, error)
                row.crashes += 1
                if row.crashes < row.max_crashes:
                    row.error = error
                    row.max_attempts += 1  # a lost attempt does not use up a retry
                    row.leave_running(JobStatus.RETRYING)
                    row.available_at = now
                else:
                    row.error = f"{error}; failed after {row.crashes} crashes (max_crashes)"
                    row.leave_running(JobStatus.FAILED)
                    row.finished_at = now
                    self._ended(row.id, now)
                changed.append(row.record())
            return changed

        return self._locked("requeue expired leases", work)

    def _prune(
        self, finished_before: datetime, batch_size: int, progress: Callable[[int], None] | None,
        statuses: frozenset[JobStatus],
    ) -> int:
        """Delete jobs of ``statuses`` (and attempts) that finished before ``finished_before``."""

        def work() -> int:
            old = [
                row.id for row in self._jobs.values()
                if row.status in statuses
                and row.finished_at is not None
                and row.finished_at < finished_before
            ]
            for job_id in old:
                del self._jobs[job_id]
                del self._attempts[job_id]
                self._job_logs.pop(job_id, None)
            self._forget_runs(set(old))
            self._forget_links(old)
            return len(old)

        deleted = self._locked("prune finished jobs", work)
        if progress is not None:
            progress(deleted)
        return deleted

    # -- capability "search": every job read, as the core would -----------------------------

    def search(self, query: JobQuery) -> SearchPage:
        """The page of jobs ``query`` finds (see :class:`Searches`)."""
        return capabilities.scan_search(self, query)

    def count_matching(
        self, query: JobQuery, cap: int = 10_000, budget: float | None = None
    ) -> Count:
        """How many jobs ``query`` finds, up to ``cap`` (see :class:`Searches`)."""
        return capabilities.scan_count(self, query, cap)

    def oldest_waiting(self) -> datetime | None:
        """When the longest-waiting due job became due (see :class:`Searches`)."""
        return capabilities.scan_oldest_waiting(self)

    # -- reads -----------------------------------------------------------------------------

    def _get(self, job_id: str) -> JobRecord:
        """The job with this id. Raises ``JobNotFoundInStorage``."""
        return self._locked(f"get job {job_id}", lambda: self._row(job_id).record())

    def _attempts_of(self, job_id: str) -> builtins.list[Attempt]:
        """Every attempt of the job, oldest first. Raises ``JobNotFoundInStorage``."""
        return self._locked(
            f"read the attempts of job {job_id}",
            lambda: builtins.list(self._attempts[self._row(job_id).id]),
        )

    def _matching(self, status: JobStatus | None, name: str | None) -> builtins.list[Row]:
        wanted = None if status is None else JobStatus(status)
        return [
            row for row in self._jobs.values()
            if (wanted is None or row.status is wanted) and (name is None or row.name == name)
        ]

    def _list(
        self, status: JobStatus | None, name: str | None, limit: int, offset: int
    ) -> builtins.list[JobRecord]:
        """Jobs, newest first, filtered by status and job name."""

        def work() -> builtins.list[JobRecord]:
            rows = sorted(self._matching(status, name), key=lambda row: row.id, reverse=True)
            return [row.record() for row in rows[offset : offset + limit]]

        return self._locked("list jobs", work)

    def _count(self, status: JobStatus | None, name: str | None) -> int:
        """How many jobs match the filter."""
        return self._locked("count jobs", lambda: len(self._matching(status, name)))

    def close(self) -> None:
        """Forget every job; the store must not be used afterwards."""
        with self._lock:
            self._closed = True
            self._jobs.clear()
            self._attempts.clear()


class MemoryLimited:
    """:class:`~jobkit.storage.flow_claim.LimitedClaim` under the memory store's lock."""

    def __init__(self, store: MemoryStorage, worker_id: str, lease_seconds: float,
                 now: datetime, *, prune: bool = True) -> None:
        self.store, self.worker_id, self.lease_seconds, self.now = (
            store, worker_id, lease_seconds, now)
        self.prune = prune

    def running_jobs(self) -> builtins.list[tuple[str, str, Any]]:
        """``(name, queue, params)`` of every running job."""
        return [(row.name, row.queue, json.loads(row.params))
                for row in self.store._jobs.values() if row.status is JobStatus.RUNNING]

    def recent_starts(self, low: str, high: str,
                      since: datetime) -> dict[str, tuple[int, datetime]]:
        """Starts after ``since`` by group name in ``[low, high)``; older ones forgotten."""
        starts = self.store._flow_starts
        if self.prune:
            starts[:] = [(key, at) for key, at in starts
                         if not (low <= key < high and at <= since)]
        found: dict[str, tuple[int, datetime]] = {}
        for key, at in starts:
            if low <= key < high and at > since:
                count, oldest = found.get(key, (0, at))
                found[key] = (count + 1, min(oldest, at))
        return found

    def candidates(self, flow: Flow, exclusions: Exclusions,
                   count: int) -> builtins.list[Candidate]:
        """Due jobs of the flow's queues, none paused or excluded, in claim order."""
        found = []
        for row in self.store._due(flow, self.now):
            candidate = Candidate(row.id, row.name, row.queue, json.loads(row.params))
            if not exclusions.excludes(candidate, flow.limits):
                found.append(candidate)
                if len(found) == count:
                    break
        return found

    def take(self, ids: builtins.list[int]) -> builtins.list[JobRecord]:
        """Claim these jobs; their records."""
        return [self.store._start(self.store._jobs[key], self.worker_id, self.lease_seconds,
                                  self.now) for key in ids]

    def add_starts(self, groups: builtins.list[str]) -> None:
        """Record a start now under each group name."""
        self.store._flow_starts.extend((group, self.now) for group in groups)

    def held(self, until: datetime | None) -> None:
        """Nothing to note: this store has no cheap look to skip claims with."""
