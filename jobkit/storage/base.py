"""The ``Storage`` contract every job store implements.

The interface is small on purpose (procrastinate's lesson): each method is one atomic transition
of the job store, and anything that must be atomic happens inside the backend, in one transaction.
Backends know records, never the worker. Every write made on behalf of a running attempt carries a
:class:`~jobkit.records.Lease` and is *fenced*: it changes nothing unless that lease still owns the
job (same worker, same attempt, status ``running``), so a worker that lost its lease can never
overwrite the result of the worker that took the job over.
"""

from __future__ import annotations

import abc
import builtins
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, ClassVar, TypeVar

import attrs

from jobkit.records import (
    WAITING_STATUSES,
    Attempt,
    AttemptOutcome,
    JobLogLine,
    JobRecord,
    JobStatus,
    Lease,
    NewJob,
    WorkerInfo,
    utcnow,
)
from jobkit.storage.search import Count, JobQuery, SearchPage, matches, page_of, search_in

Clock = Callable[[], datetime]
#: Guards the sessions a backend without a table of its own keeps in memory.
_REVOKED_LOCK = threading.Lock()
S = TypeVar("S", bound="Storage")

#: The optional capabilities of a store and the methods that make up each. A backend has one
#: when it overrides its methods; the defaults keep nothing, and the dashboard says so.
OPTIONAL_CAPABILITIES: dict[str, tuple[str, ...]] = {
    "workers": ("register_worker", "beat_workers", "remove_worker", "forget_workers",
                "list_workers"),
    "job_logs": ("add_job_logs", "job_logs"),
    "throughput": ("add_throughput", "throughput", "forget_throughput"),
}


class Storage(abc.ABC):
    """The abstract job store. Subclasses are built from a URL by :meth:`from_url`."""

    #: The URL scheme this backend serves, e.g. ``"sqlite"``.
    scheme: ClassVar[str]

    def __init__(self, *, clock: Clock = utcnow) -> None:
        self._clock = clock

    @classmethod
    @abc.abstractmethod
    def from_url(cls, url: str, **options: Any) -> Storage:
        """Build the backend from its URL (``sqlite:///path``, ``memory://`` ...)."""

    def now(self) -> datetime:
        """The store's clock (UTC). Tests replace it to move time without sleeping."""
        return self._clock()

    @classmethod
    def supports(cls, capability: str) -> bool:
        """Whether this backend has the optional ``capability`` (a key of
        :data:`OPTIONAL_CAPABILITIES`): it overrides at least one of its methods."""
        return bool(cls.overrides(capability))

    @classmethod
    def overrides(cls, capability: str) -> builtins.list[str]:
        """The methods of the optional ``capability`` this backend overrides, in the order of
        :data:`OPTIONAL_CAPABILITIES`; ``ValueError`` for an unknown capability."""
        try:
            methods = OPTIONAL_CAPABILITIES[capability]
        except KeyError:
            known = ", ".join(OPTIONAL_CAPABILITIES)
            raise ValueError(f"no optional storage capability {capability!r} (known: {known})"
                             ) from None
        return [name for name in methods if getattr(cls, name) is not getattr(Storage, name)]

    # -- writes of the app ---------------------------------------------------------------------

    @abc.abstractmethod
    def enqueue(self, job: NewJob) -> JobRecord:
        """Store a validated job as ``pending`` and return its record with the new id."""

    def enqueue_many(self, jobs: builtins.list[NewJob]) -> builtins.list[JobRecord]:
        """Store validated jobs as ``pending``, in order; their records. A backend that can
        stores them all in one transaction (all or nothing) and should override this default,
        which calls :meth:`enqueue` for each."""
        return [self.enqueue(job) for job in jobs]

    @abc.abstractmethod
    def cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a job that is pending, retrying or running.

        A running job's open attempt is closed as ``cancelled`` in the same transaction, which also
        takes the lease away from its worker (its later writes are refused). Returns the new record,
        or ``None`` when the job had already finished. Raises ``JobNotFoundInStorage``.
        """

    @abc.abstractmethod
    def retry(self, job_id: str) -> JobRecord | None:
        """Put a ``failed`` or ``cancelled`` job back to ``pending``, available now, with at least
        one attempt left, and its ``error`` cleared. Returns ``None`` when the job is not in one of
        those statuses; raises ``JobNotFoundInStorage`` for an unknown id."""

    # -- writes of the worker ------------------------------------------------------------------

    @abc.abstractmethod
    def claim(self, worker_id: str, lease_seconds: float) -> JobRecord | None:
        """Atomically take the next due job: highest priority first, then earliest
        ``available_at``, then enqueue order. The job becomes ``running`` with ``attempts + 1``
        and a lease that expires ``lease_seconds`` from now, and an attempt row is opened.
        Returns ``None`` when nothing is due. The lease is ``Lease(id, worker_id, attempts)``."""

    def complete_and_claim(
        self, lease: Lease, result: Any, worker_id: str, lease_seconds: float
    ) -> tuple[JobRecord | None, JobRecord | None]:
        """:meth:`complete` the attempt, then :meth:`claim` the next job for ``worker_id``: what
        a busy worker does after each job. Both follow their own rules (a refused completion
        still claims); a backend may do both in one transaction, as SQLite does. The default
        calls the two; a failed claim after a completion that was recorded is no claim (the
        completion must not be written again)."""
        from jobkit.exceptions import StorageError

        done = self.complete(lease, result)
        try:
            return done, self.claim(worker_id, lease_seconds)
        except StorageError:
            return done, None

    def complete_and_claim_many(
        self,
        completions: Sequence[tuple[Lease, Any]],
        worker_id: str,
        lease_seconds: float,
        limit: int,
    ) -> tuple[builtins.list[JobRecord | None], builtins.list[JobRecord]]:
        """:meth:`complete` each ``(lease, result)``, then :meth:`claim` up to ``limit`` jobs
        for ``worker_id`` (``0``: none): what a worker process that runs short jobs in batches
        does after a batch. Returns the completed records (``None`` where the lease no longer
        held the job), and the claimed ones in claim order. A backend may do it all in one
        transaction (SQLite and PostgreSQL do: one commit for the batch); the default calls the
        two, and a failed claim after completions that were recorded is no claim."""
        from jobkit.exceptions import StorageError

        done = [self.complete(lease, result) for lease, result in completions]
        claimed: builtins.list[JobRecord] = []
        try:
            while len(claimed) < limit:
                record = self.claim(worker_id, lease_seconds)
                if record is None:
                    break
                claimed.append(record)
        except StorageError:
            pass
        return done, claimed

    @abc.abstractmethod
    def heartbeat(self, lease: Lease, lease_seconds: float) -> bool:
        """Extend the lease; ``False`` when it no longer owns the job (cancelled, expired and
        taken over, or finished)."""

    @abc.abstractmethod
    def set_progress(self, lease: Lease, fraction: float, message: str | None) -> bool:
        """Record the running attempt's progress; ``False`` when the lease is lost."""

    @abc.abstractmethod
    def complete(self, lease: Lease, result: Any) -> JobRecord | None:
        """Finish the attempt as succeeded and the job as ``completed`` with ``result`` (JSON).
        Fenced: returns ``None`` and changes nothing when the lease is lost."""

    @abc.abstractmethod
    def fail(
        self,
        lease: Lease,
        *,
        error: str,
        traceback: str | None,
        outcome: AttemptOutcome = AttemptOutcome.FAILED,
        retry_at: datetime | None = None,
    ) -> JobRecord | None:
        """Finish the attempt with ``outcome``; the job becomes ``retrying`` (available at
        ``retry_at``) or, when ``retry_at`` is ``None``, ``failed``. Fenced like ``complete``."""

    @abc.abstractmethod
    def release(self, lease: Lease) -> JobRecord | None:
        """Hand a running job back (graceful shutdown): the attempt is closed as ``handed_back``
        and does not count; the job is ``pending`` again, in its old place in the queue (its
        ``available_at`` is kept). Fenced."""

    @abc.abstractmethod
    def requeue_expired(self) -> builtins.list[JobRecord]:
        """Take back running jobs whose lease expired (their worker died or froze): the attempt is
        closed as ``lost`` and ``crashes`` goes up by one. Below ``max_crashes`` the job is
        ``retrying``, available now, and ``max_attempts`` goes up by one (a crash does not use up
        a retry); at ``max_crashes`` it is ``failed``, its error saying so. Returns the changed
        records."""

    def abandon(self, lease: Lease) -> bool:
        """End a lease now, because its worker is known to be dead: the next
        :meth:`requeue_expired` takes the job back as if the lease had expired. Fenced; ``False``
        when the lease no longer holds the job. A backend may override it; the default expires
        the lease through :meth:`heartbeat`."""
        return self.heartbeat(lease, -1.0)

    @abc.abstractmethod
    def prune(
        self,
        finished_before: datetime,
        *,
        batch_size: int = 1000,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete finished jobs (and their attempts) that finished before the given time, in
        batches of ``batch_size`` rows per transaction, calling ``progress`` with the running total
        after each batch. Returns how many were deleted."""

    # -- reads -----------------------------------------------------------------------------

    @abc.abstractmethod
    def get(self, job_id: str) -> JobRecord:
        """The job with this id. Raises ``JobNotFoundInStorage``."""

    @abc.abstractmethod
    def list(
        self,
        *,
        status: JobStatus | None = None,
        name: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobRecord]:
        """Jobs, newest first, filtered by status and job name."""

    @abc.abstractmethod
    def count(self, *, status: JobStatus | None = None, name: str | None = None) -> int:
        """How many jobs match the filter."""

    def search(self, query: JobQuery) -> SearchPage:
        """The page of jobs ``query`` finds, in its order, after its cursor (see
        :mod:`jobkit.storage.search`). This default reads every job and filters them in Python;
        a backend with indexes should override it."""
        return page_of(query, search_in(query, self._every_job(), limit=query.limit + 1))

    def count_matching(
        self, query: JobQuery, cap: int = 10_000, budget: float | None = None
    ) -> Count:
        """How many jobs ``query`` finds (its cursor and limit aside), counting no further than
        ``cap``; a backend may stop after ``budget`` seconds and say "at least"."""
        unbounded = attrs.evolve(query, after=None, limit=1)
        n = sum(1 for record in self._every_job() if matches(unbounded, record))
        return Count(cap, over=True) if n > cap else Count(n)

    def _every_job(self) -> builtins.list[JobRecord]:
        found: builtins.list[JobRecord] = []
        while page := self.list(limit=1000, offset=len(found)):
            found.extend(page)
        return found

    @abc.abstractmethod
    def attempts(self, job_id: str) -> builtins.list[Attempt]:
        """Every attempt of the job, oldest first. Raises ``JobNotFoundInStorage``."""

    # -- waiting and schema ------------------------------------------------------------------

    def wait_for_jobs(self, timeout: float, stop: threading.Event | None = None) -> None:
        """Block until a job may have become due, ``timeout`` seconds pass or ``stop`` is set.

        The default simply waits (workers poll); a backend that can be told about new jobs
        (PostgreSQL's ``LISTEN``) returns as soon as one is enqueued."""
        (stop or threading.Event()).wait(timeout)

    def migrate(self) -> int:
        """Create or upgrade the store's schema; return its version (0: a store without one).
        Backends run it when they open; ``jobkit migrate`` runs it on purpose."""
        return 0

    # -- optional capability "workers": a backend without it lists no workers ---------------

    def register_worker(self, worker: WorkerInfo) -> None:  # noqa: B027
        """Record a worker process that has started (or update it)."""

    def beat_workers(self, worker_ids: builtins.list[str]) -> None:  # noqa: B027
        """Mark these worker processes as seen now."""

    def remove_worker(self, worker_id: str) -> None:  # noqa: B027
        """Forget a worker process that has stopped."""

    def forget_workers(self, seen_before: datetime) -> int:
        """Forget worker processes not seen since ``seen_before`` (their supervisor died
        without saying); how many."""
        return 0

    def list_workers(self) -> builtins.list[WorkerInfo]:
        """The worker processes known, by host, supervisor and id."""
        return []

    # -- optional capability "job_logs": a backend without it keeps no lines --------------

    def add_job_logs(self, job_id: str, lines: builtins.list[JobLogLine]) -> None:  # noqa: B027
        """Keep lines the job logged (the caller caps them per attempt); they go with the job."""

    def job_logs(self, job_id: str) -> builtins.list[JobLogLine]:
        """The lines the job logged, oldest first (attempt by attempt)."""
        return []

    # -- optional capability "throughput", the dashboard's chart: without it, none is drawn

    def add_throughput(self, minute: datetime, succeeded: int, failed: int) -> None:  # noqa: B027
        """Add attempts that succeeded and failed to the counts of ``minute`` (its start)."""

    def throughput(self, since: datetime) -> builtins.list[tuple[datetime, int, int]]:
        """``(minute, succeeded, failed)`` for every minute from ``since`` that has counts."""
        return []

    def forget_throughput(self, before: datetime) -> None:  # noqa: B027
        """Forget the counts of minutes before ``before``."""

    # -- dashboard sessions signed out (optional: a backend without them keeps them in this
    # -- object, so a sign-out is known only to the dashboard process that made it) ---------

    def revoke_session(self, session_id: str, expires_at: datetime) -> None:
        """Remember that the dashboard session ``session_id`` has ended (signed out): from now
        on :meth:`session_revoked` says so, in every process that uses this store, at least
        until ``expires_at`` (when its cookie is refused anyway); later it may be forgotten."""
        with _REVOKED_LOCK:
            revoked: dict[str, datetime] = self.__dict__.setdefault("_revoked_sessions", {})
            now = self.now()
            for ended in [key for key, until in revoked.items() if until < now]:
                del revoked[ended]
            revoked[session_id] = max(expires_at, revoked.get(session_id, expires_at))

    def session_revoked(self, session_id: str) -> bool:
        """Whether :meth:`revoke_session` ended the dashboard session ``session_id``."""
        with _REVOKED_LOCK:
            return session_id in self.__dict__.get("_revoked_sessions", {})

    def oldest_waiting(self) -> datetime | None:
        """When the job that has waited longest became due (pending or retrying, due now);
        ``None`` when nothing waits. The default reads every job."""
        now = self.now()
        due = [job.available_at for job in self._every_job()
               if job.status in WAITING_STATUSES and job.available_at <= now]
        return min(due, default=None)

    def check_health(self) -> None:  # noqa: B027 - most backends have nothing to check
        """Raise ``StoreLost`` when the store this object opened is gone for good, so that
        going on would lose jobs without a word (SQLite: its file was deleted or replaced). A
        worker's supervisor calls it every heartbeat and stops when it raises. Optional: the
        default finds nothing. A store that is merely down is not lost: the check returns (or
        raises ``StorageError``, which the worker logs once and ignores), and the worker waits
        for the store as usual."""

    def housekeep(self) -> None:  # noqa: B027 - most backends have no upkeep
        """Upkeep a worker's supervisor runs about once a second, off the jobs' path (SQLite:
        checkpoint the write-ahead log). Raises ``StorageError``; the default does nothing."""

    def close(self) -> None:  # noqa: B027 - a backend without resources needs no close
        """Release connections and files. The store must not be used afterwards."""

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
