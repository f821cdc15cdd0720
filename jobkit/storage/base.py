"""The ``Storage`` core every job store implements: the job store alone.

The interface is small on purpose (procrastinate's lesson): 18 public methods that check their
arguments over 12 protected hooks a backend writes; what only the dashboard and operations need
are the optional capabilities of :mod:`jobkit.storage.capabilities`. Each method is one
atomic transition of the job store, and anything that must be atomic happens inside the
backend, in one transaction. Backends know records, never the worker. Every write made on
behalf of a running attempt carries a :class:`~jobkit.records.Lease` and is *fenced*: it
changes nothing unless that lease still owns the job (same worker, same attempt, status
``running``), so a worker that lost its lease can never overwrite the result of the worker that
took the job over.
"""

from __future__ import annotations

import abc
import builtins
import math
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from jobkit.records import Attempt, AttemptOutcome, JobRecord, JobStatus, Lease, NewJob, utcnow

Clock = Callable[[], datetime]
S = TypeVar("S", bound="Storage")

#: The outcomes :meth:`Storage.settle` closes an attempt with (``lost`` is
#: :meth:`Storage.requeue_expired`'s, ``cancelled`` :meth:`Storage.cancel`'s).
SETTLED = frozenset({AttemptOutcome.SUCCEEDED, AttemptOutcome.FAILED, AttemptOutcome.TIMEOUT,
                     AttemptOutcome.HANDED_BACK})


def _check_lease(lease: Lease) -> None:
    if not isinstance(lease, Lease):
        raise TypeError(f"expected a Lease, got {type(lease).__name__}: {lease!r}")


def _check_seconds(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")


def _check_time(name: str, value: datetime) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")


def final_statuses(statuses: Collection[JobStatus | str] | None) -> frozenset[JobStatus]:
    """``statuses`` as final :class:`JobStatus` values (None: all of them); else ``ValueError``.

    Internal: :meth:`Storage.prune` checks its ``statuses`` with it."""
    final = frozenset(status for status in JobStatus if status.is_final)
    if statuses is None:
        return final
    if isinstance(statuses, str):  # "failed" is not a collection of statuses
        raise ValueError(f"statuses must be a collection of statuses, got {statuses!r}")
    chosen = set()
    for status in statuses:
        found = next((known for known in final if known.value == status), None)
        if found is None:
            raise ValueError(f"prune deletes finished jobs only: {status!r} is not one of "
                             f"{', '.join(sorted(known.value for known in final))}")
        chosen.add(found)
    return frozenset(chosen)


def check_claim(worker_id: str, lease_seconds: float, limit: int = 1) -> None:
    """``ValueError`` unless a claim's worker id, lease and ``limit`` (at least 1) are sound."""
    if not isinstance(worker_id, str) or not worker_id:
        raise ValueError(f"worker_id must be a non-empty str, got {worker_id!r}")
    _check_seconds("lease_seconds", lease_seconds)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"a claim takes at least 1 job, got limit={limit!r}")


def check_new_jobs(jobs: builtins.list[NewJob], what: str) -> None:
    """``TypeError`` naming the first item of ``jobs`` that is not a :class:`NewJob`."""
    for position, job in enumerate(jobs):
        if not isinstance(job, NewJob):
            raise TypeError(f"{what} takes NewJobs; item {position} is a {type(job).__name__}")


def _check_job_id(job_id: str) -> None:
    if not isinstance(job_id, str):
        raise TypeError(f"a job id is a str, got {type(job_id).__name__}: {job_id!r}")


class Storage(abc.ABC):
    """The abstract job store: the core every backend implements.

    The public methods check their arguments and call the backend's protected hooks
    (``_enqueue_many``, ``_claim``, ``_settle``...), the way Dramatiq's result backends
    implement ``_get``/``_store``. What only the dashboard and operations need are optional
    capabilities (:mod:`jobkit.storage.capabilities`) a backend adds by inheriting their mixins.
    Subclasses are built from a URL by :meth:`from_url`."""

    #: The URL scheme this backend serves, e.g. ``"sqlite"``; the registry sets it on a
    #: subclass registered under a scheme of its own, which :meth:`from_url` then accepts.
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

    # -- writes of the app ---------------------------------------------------------------------

    def enqueue(self, job: NewJob) -> JobRecord:
        """Store a validated job as ``pending`` and return its record with the new id."""
        if not isinstance(job, NewJob):
            raise TypeError(f"enqueue takes a NewJob, got {type(job).__name__}")
        return self._enqueue(job)

    def enqueue_many(self, jobs: builtins.list[NewJob]) -> builtins.list[JobRecord]:
        """Store validated jobs as ``pending``, in order, all or nothing; their records."""
        check_new_jobs(jobs, "enqueue_many")
        return self._enqueue_many(builtins.list(jobs)) if jobs else []

    def cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a job that is pending, retrying or running.

        A running job's open attempt is closed as ``cancelled`` in the same transaction, which also
        takes the lease away from its worker (its later writes are refused). Returns the new record,
        or ``None`` when the job had already finished. Raises ``JobNotFoundInStorage``.
        """
        _check_job_id(job_id)
        return self._cancel(job_id)

    def retry(self, job_id: str) -> JobRecord | None:
        """Put a ``failed`` or ``cancelled`` job back to ``pending``, available now.

        It gets at least one attempt left, and its ``error`` is cleared. Returns ``None`` when the
        job is not in one of those statuses; raises ``JobNotFoundInStorage`` for an unknown id.
        """
        _check_job_id(job_id)
        return self._retry(job_id)

    def prune(
        self,
        finished_before: datetime,
        *,
        batch_size: int = 1000,
        progress: Callable[[int], None] | None = None,
        statuses: Collection[JobStatus | str] | None = None,
    ) -> int:
        """Delete finished jobs (and their attempts) that finished before the given time.

        In batches of ``batch_size`` rows per transaction, calling ``progress`` with the running
        total after each batch. Only jobs of ``statuses`` (final ones: ``completed``, ``failed``,
        ``cancelled``), every final status when it is None. Returns how many were deleted.
        """
        _check_time("finished_before", finished_before)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
        chosen = final_statuses(statuses)
        return self._prune(finished_before, batch_size, progress, chosen) if chosen else 0

    # -- writes of the worker ------------------------------------------------------------------

    def claim(self, worker_id: str, lease_seconds: float) -> JobRecord | None:
        """Atomically take the next due job.

        Highest priority first, then earliest ``available_at``, then enqueue order. The job becomes
        ``running`` with ``attempts + 1`` and a lease that expires ``lease_seconds`` from now, and
        an attempt row is opened. Returns ``None`` when nothing is due. The lease is ``Lease(id,
        worker_id, attempts)``. (A worker claims in batches through the ``batches`` capability when
        the store has it.)
        """
        check_claim(worker_id, lease_seconds)
        return self._claim(worker_id, lease_seconds)

    def heartbeat(self, lease: Lease, lease_seconds: float) -> bool:
        """Extend the lease; ``False`` when it no longer owns the job.

        It no longer does when the job was cancelled, expired and taken over, or finished.
        """
        _check_lease(lease)
        _check_seconds("lease_seconds", lease_seconds)
        return self._heartbeat(lease, lease_seconds)

    def abandon(self, lease: Lease) -> bool:
        """End a lease now, because its worker is known to be dead.

        The next :meth:`requeue_expired` takes the job back as if the lease had expired. Fenced;
        ``False`` when the lease no longer holds the job.
        """
        _check_lease(lease)
        return self._heartbeat(lease, -1.0)

    def settle(
        self,
        lease: Lease,
        outcome: AttemptOutcome,
        *,
        result: Any = None,
        error: str | None = None,
        traceback: str | None = None,
        retry_at: datetime | None = None,
    ) -> JobRecord | None:
        """Close the running attempt with ``outcome``.

        Fenced: returns ``None`` and changes nothing when the lease no longer owns the job; else
        the new record.

        - ``succeeded``: the job is ``completed`` with ``result`` (JSON).
        - ``failed`` or ``timeout``: the job is ``retrying`` (available at ``retry_at``) or,
          when ``retry_at`` is ``None``, ``failed``; ``error`` (required) and ``traceback`` kept.
        - ``handed_back`` (graceful shutdown): the attempt does not count; the job is
          ``pending`` again, in its old place in the queue (its ``available_at`` is kept).
        """
        _check_lease(lease)
        if not isinstance(outcome, AttemptOutcome) or outcome not in SETTLED:
            allowed = ", ".join(sorted(str(o) for o in SETTLED))
            raise ValueError(f"job {lease.job_id}: settle takes an outcome of {allowed}, "
                             f"got {outcome!r}")
        failing = outcome in (AttemptOutcome.FAILED, AttemptOutcome.TIMEOUT)
        if failing and not isinstance(error, str):
            raise ValueError(f"job {lease.job_id}: a {outcome} attempt needs an error (a str), "
                             f"got {error!r}")
        if not failing and (error is not None or traceback is not None or retry_at is not None):
            raise ValueError(f"job {lease.job_id}: a {outcome} attempt takes no error, "
                             "traceback or retry_at")
        if outcome is not AttemptOutcome.SUCCEEDED and result is not None:
            raise ValueError(f"job {lease.job_id}: only a succeeded attempt has a result")
        if retry_at is not None:
            _check_time("retry_at", retry_at)
        return self._settle(lease, outcome, result, error, traceback, retry_at)

    def requeue_expired(self) -> builtins.list[JobRecord]:
        """Take back running jobs whose lease expired (their worker died or froze).

        The attempt is closed as ``lost`` and ``crashes`` goes up by one. Below ``max_crashes`` the
        job is ``retrying``, available now, and ``max_attempts`` goes up by one (a crash does not
        use up a retry); at ``max_crashes`` it is ``failed``, its error saying so. Returns the
        changed records.
        """
        return self._requeue_expired()

    # -- reads -----------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord:
        """The job with this id. Raises ``JobNotFoundInStorage``."""
        _check_job_id(job_id)
        return self._get(job_id)

    def list(
        self,
        *,
        status: JobStatus | None = None,
        name: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[JobRecord]:
        """Jobs, newest first, filtered by status and job name."""
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be >= 0, got {limit!r} and {offset!r}")
        return self._list(status, name, limit, offset)

    def count(self, *, status: JobStatus | None = None, name: str | None = None) -> int:
        """How many jobs match the filter."""
        return self._count(status, name)

    def attempts(self, job_id: str) -> builtins.list[Attempt]:
        """Every attempt of the job, oldest first. Raises ``JobNotFoundInStorage``."""
        _check_job_id(job_id)
        return self._attempts_of(job_id)

    # -- schema and resources ----------------------------------------------------------------

    def migrate(self) -> int:
        """Create or upgrade the store's schema; return its version (0: a store without one).

        Backends run it when they open; ``jobkit migrate`` runs it on purpose.
        """
        return 0

    def close(self) -> None:  # noqa: B027 - a backend without resources needs no close
        """Release connections and files. The store must not be used afterwards."""

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the hooks a backend implements (arguments already checked) ------------------------------

    def _enqueue(self, job: NewJob) -> JobRecord:
        """Store one job; by default :meth:`_enqueue_many` of one."""
        return self._enqueue_many([job])[0]

    @abc.abstractmethod
    def _enqueue_many(self, jobs: builtins.list[NewJob]) -> builtins.list[JobRecord]:
        """Store the jobs (at least one) in one transaction, in order; their records."""

    @abc.abstractmethod
    def _cancel(self, job_id: str) -> JobRecord | None:
        """See :meth:`cancel`."""

    @abc.abstractmethod
    def _retry(self, job_id: str) -> JobRecord | None:
        """See :meth:`retry`."""

    @abc.abstractmethod
    def _prune(
        self, finished_before: datetime, batch_size: int, progress: Callable[[int], None] | None,
        statuses: frozenset[JobStatus],
    ) -> int:
        """See :meth:`prune` (``batch_size`` is at least 1, ``statuses`` final ones, not none)."""

    @abc.abstractmethod
    def _claim(self, worker_id: str, lease_seconds: float) -> JobRecord | None:
        """See :meth:`claim`."""

    @abc.abstractmethod
    def _heartbeat(self, lease: Lease, lease_seconds: float) -> bool:
        """Set the lease to expire ``lease_seconds`` from now (negative: it has expired); fenced."""

    @abc.abstractmethod
    def _settle(self, lease: Lease, outcome: AttemptOutcome, result: Any, error: str | None,
                traceback: str | None, retry_at: datetime | None) -> JobRecord | None:
        """See :meth:`settle` (the arguments fit the outcome)."""

    @abc.abstractmethod
    def _requeue_expired(self) -> builtins.list[JobRecord]:
        """See :meth:`requeue_expired`."""

    @abc.abstractmethod
    def _get(self, job_id: str) -> JobRecord:
        """See :meth:`get`."""

    @abc.abstractmethod
    def _list(
        self, status: JobStatus | None, name: str | None, limit: int, offset: int
    ) -> builtins.list[JobRecord]:
        """See :meth:`list` (``limit`` and ``offset`` are not negative)."""

    def _count(self, status: JobStatus | None, name: str | None) -> int:
        """See :meth:`count`; by default it pages through :meth:`_list` (override it)."""
        total = 0
        while page := self._list(status, name, 1000, total):
            total += len(page)
        return total

    @abc.abstractmethod
    def _attempts_of(self, job_id: str) -> builtins.list[Attempt]:
        """See :meth:`attempts`."""
