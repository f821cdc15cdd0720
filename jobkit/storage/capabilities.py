"""The optional capabilities of a job store, beyond the :class:`~jobkit.storage.base.Storage` core.

A capability is a small abstract mixin: a backend has it when it inherits the mixin, and the
mixin's abstract methods make sure it implements the whole of it (a backend that keeps workers
in part cannot be built). The worker and the dashboard ask :func:`supports` or call the helpers
below, which fall back to what the core can do: a store with the core alone runs jobs with
every CLI command, and the dashboard says what it does not keep.

The built-in backends have every capability (memory has neither ``wake``, ``ends`` nor
``upkeep``: it has nothing to wait on or to look after).
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from jobkit.records import (
    WAITING_STATUSES,
    JobLogLine,
    JobRecord,
    Lease,
    NewJob,
    NewStep,
    WorkerInfo,
    WorkflowRecord,
)

if TYPE_CHECKING:
    from jobkit.flow import Flow, Limit, QueueState
    from jobkit.schedules import Schedule, ScheduleState
    from jobkit.storage.base import Storage
    from jobkit.storage.search import Count, JobQuery, SearchPage

#: What a batch returns: the completed records (``None`` where the lease was lost) and the
#: jobs claimed, in claim order.
Settled = tuple[list[JobRecord | None], list[JobRecord]]


class Searches(abc.ABC):
    """Capability ``search``: the dashboard's search, count and oldest wait, served by indexes.

    Without it the dashboard reads every job and filters them in Python.
    """

    @abc.abstractmethod
    def search(self, query: JobQuery) -> SearchPage:
        """The page of jobs ``query`` finds, in its order, after its cursor."""

    @abc.abstractmethod
    def count_matching(
        self, query: JobQuery, cap: int = 10_000, budget: float | None = None
    ) -> Count:
        """How many jobs ``query`` finds (its cursor and limit aside), up to ``cap``.

        A backend may stop after ``budget`` seconds and say "at least".
        """

    @abc.abstractmethod
    def oldest_waiting(self) -> datetime | None:
        """When the job that has waited longest became due (pending or retrying, due now).

        ``None`` when nothing waits.
        """


class KeepsWorkers(abc.ABC):
    """Capability ``workers``: the roster of worker processes the dashboard lists."""

    @abc.abstractmethod
    def register_worker(self, worker: WorkerInfo) -> None:
        """Record a worker process that has started (or update it)."""

    @abc.abstractmethod
    def beat_workers(self, worker_ids: list[str]) -> None:
        """Mark these worker processes as seen now."""

    @abc.abstractmethod
    def remove_worker(self, worker_id: str) -> None:
        """Forget a worker process that has stopped."""

    @abc.abstractmethod
    def forget_workers(self, seen_before: datetime) -> int:
        """Forget worker processes not seen since ``seen_before``; how many.

        Their supervisor died without saying so.
        """

    @abc.abstractmethod
    def list_workers(self) -> list[WorkerInfo]:
        """The worker processes known, by host, supervisor and id."""


class KeepsJobLogs(abc.ABC):
    """Capability ``job_logs``: the lines a job logged, shown on its page."""

    @abc.abstractmethod
    def add_job_logs(self, job_id: str, lines: list[JobLogLine]) -> None:
        """Keep lines the job logged (the caller caps them per attempt); they go with the job."""

    @abc.abstractmethod
    def job_logs(self, job_id: str) -> list[JobLogLine]:
        """The lines the job logged, oldest first (attempt by attempt)."""


class KeepsThroughput(abc.ABC):
    """Capability ``throughput``: attempts per minute, the dashboard's chart."""

    @abc.abstractmethod
    def add_throughput(self, minute: datetime, succeeded: int, failed: int) -> None:
        """Add attempts that succeeded and failed to the counts of ``minute`` (its start)."""

    @abc.abstractmethod
    def throughput(self, since: datetime) -> list[tuple[datetime, int, int]]:
        """``(minute, succeeded, failed)`` for every minute from ``since`` that has counts."""

    @abc.abstractmethod
    def forget_throughput(self, before: datetime) -> None:
        """Forget the counts of minutes before ``before``."""


class KeepsSessions(abc.ABC):
    """Capability ``sessions``.

    Dashboard sessions signed out, known to every process that opens the store. Without it a
    sign-out is known only to the process that made it.
    """

    @abc.abstractmethod
    def revoke_session(self, session_id: str, expires_at: datetime) -> None:
        """Remember that the dashboard session ``session_id`` has ended (signed out).

        At least until ``expires_at``; later it may be forgotten.
        """

    @abc.abstractmethod
    def session_revoked(self, session_id: str) -> bool:
        """Whether :meth:`revoke_session` ended the dashboard session ``session_id``."""


class KeepsProgress(abc.ABC):
    """Capability ``progress``: a running attempt's progress, shown on the dashboard."""

    @abc.abstractmethod
    def set_progress(self, lease: Lease, fraction: float, message: str | None) -> bool:
        """Record the running attempt's progress (0..1); ``False`` when the lease is lost."""


class WakesWorkers(abc.ABC):
    """Capability ``wake``: a waiting worker hears of a new job instead of polling."""

    @abc.abstractmethod
    def wait_for_jobs(self, timeout: float, stop: threading.Event | None = None) -> None:
        """Block until a job may have become due, ``timeout`` seconds pass or ``stop`` is set."""


class SignalsEnds(abc.ABC):
    """Capability ``ends``: a caller that waits for jobs to end hears of each end.

    What :meth:`JobKit.await_job <jobkit.JobKit.await_job>` waits on instead of reading the
    job again and again (PostgreSQL's ``LISTEN``, SQLite's watch on its ``-wal`` file).
    """

    @abc.abstractmethod
    def wait_for_ends(self, timeout: float, stop: threading.Event | None = None
                      ) -> set[str] | None:
        """Block until a job may have ended, ``timeout`` seconds pass or ``stop`` is set.

        The ids of the jobs that ended, when the store knows them; ``None`` when any job may
        have ended (the caller reads every job it waits for): after ``timeout``, on the first
        call of a thread, and whenever an end may have been missed (a connection opened again).
        """


class NeedsUpkeep(abc.ABC):
    """Capability ``upkeep``: a store the worker's supervisor checks and looks after."""

    @abc.abstractmethod
    def check_health(self) -> None:
        """Raise ``StoreLost`` when the store this object opened is gone for good.

        SQLite: its file was deleted or replaced. A store merely down raises ``StorageError`` or
        nothing.
        """

    @abc.abstractmethod
    def housekeep(self) -> None:
        """Upkeep run about once a second, off the jobs' path (SQLite: checkpoint the WAL)."""


class ClaimsInBatches(abc.ABC):
    """Capability ``batches``, the worker's fast path.

    A batch of completions and the next claims in one transaction. Without it
    :func:`complete_and_claim_many` calls the core.
    """

    @abc.abstractmethod
    def complete_and_claim_many(self, completions: Sequence[tuple[Lease, Any]], worker_id: str,
                                lease_seconds: float, limit: int,
                                flow: Flow | None = None) -> Settled:
        """Complete each ``(lease, result)``, then claim up to ``limit`` jobs, in one transaction.

        ``limit`` ``0`` claims none. Returns the completed records (``None`` where the lease was
        lost) and the claimed ones in claim order. ``flow`` is given only to a store that has
        ``flow`` too, and then narrows the claims as :meth:`ControlsFlow.claim_from` does.
        """


class ControlsFlow(abc.ABC):
    """Capability ``flow``: named queues, claimed from as a :class:`~jobkit.flow.Flow` says.

    A store with it keeps each job's ``queue``, keeps which queues are paused (for every
    worker on every machine), and never hands out a job of a paused queue, from any claim:
    the core's :meth:`~jobkit.storage.base.Storage.claim` and ``batches`` included.
    """

    @abc.abstractmethod
    def claim_from(
        self, flow: Flow, worker_id: str, lease_seconds: float, limit: int = 1
    ) -> list[JobRecord]:
        """Claim up to ``limit`` due jobs of ``flow``'s queues, none paused, in claim order.

        As :meth:`~jobkit.storage.base.Storage.claim` does one job: each becomes ``running``
        under a lease of ``lease_seconds`` with its attempt opened.
        """

    @abc.abstractmethod
    def enqueue_unique(self, jobs: list[NewJob]) -> list[tuple[JobRecord, bool]]:
        """Store each job unless a job of its ``unique_key`` makes it a duplicate.

        In order, atomically against every other enqueue of the same key: each job's record
        and whether it was stored. A duplicate is a job of the same key that is pending,
        retrying or running, or was enqueued less than the new job's ``unique_for`` seconds
        ago; its record is returned and nothing is stored. A job without a key is stored.
        The store's plain ``enqueue`` and ``enqueue_many`` keep the same rule.
        """

    @abc.abstractmethod
    def pause_queue(self, queue: str) -> bool:
        """Pause ``queue`` (a queue name); whether it was not paused before.

        Jobs running go on; no claim takes another job of the queue until it is resumed. A
        queue that holds no job may be paused ahead of its jobs.
        """

    @abc.abstractmethod
    def resume_queue(self, queue: str) -> bool:
        """Resume ``queue``; whether it was paused before."""

    @abc.abstractmethod
    def limit_usage(self, limit: Limit) -> dict[str | None, tuple[int, datetime | None]]:
        """What ``limit`` has used now, per value of its key (``None`` without a key).

        The jobs it covers running now (a concurrency limit) or started in its last window (a
        rate limit, with the oldest of those starts). A read: it takes no lock.
        """

    @abc.abstractmethod
    def paused_queues(self) -> set[str]:
        """The queues paused now (one cheap read)."""

    @abc.abstractmethod
    def queue_states(self) -> list[QueueState]:
        """Every queue that holds a waiting or running job, or was ever paused, by name."""


class KeepsSchedules(abc.ABC):
    """Capability ``schedules``: the ticks of ``schedules:`` fired once each, without a leader.

    Every worker's supervisor calls :meth:`fire_schedule` for each enabled schedule about when
    its next tick is due; the store fires each tick at most once however many workers race. It
    keeps, per schedule name, a state (paused, the newest tick handled, when it was first seen)
    and a run per tick fired (schedule, tick, job), keyed by (schedule, tick). A run goes with
    its job when the job is deleted (prune, retention); the state keeps the newest tick.
    """

    @abc.abstractmethod
    def fire_schedule(self, schedule: Schedule, job: NewJob) -> list[JobRecord]:
        """Fire ``schedule``'s due ticks, storing ``job`` once per tick run; the jobs stored.

        In one transaction: lock the schedule's state (made on first sight, with no tick due
        before now); find the due ticks after the newest handled one
        (:meth:`~jobkit.schedules.Schedule.plan`, on the store's clock); run none when the
        schedule is paused, or when ``overlap`` is ``skip`` and a run of it is pending,
        retrying or running; store the job and a run for each tick run (with ``skip``, the first
        tick's only: its run is pending, the later ones would overlap it); record the newest
        tick due as handled. A ``job`` whose unique key a stored job holds is not stored again (its
        tick runs no job).
        """

    @abc.abstractmethod
    def pause_schedule(self, name: str) -> bool:
        """Pause schedule ``name`` for every worker; whether it was not paused before.

        Ticks due while it is paused are handled without running.
        """

    @abc.abstractmethod
    def resume_schedule(self, name: str) -> bool:
        """Resume schedule ``name``; whether it was paused before.

        A resume handles every tick due up to now (the last tick handled becomes at least
        now): ticks of the pause are not run later, even when no worker fired them meanwhile.
        """

    @abc.abstractmethod
    def schedule_states(self) -> dict[str, ScheduleState]:
        """What the store keeps of every schedule it has seen, by name."""

    @abc.abstractmethod
    def schedule_runs(self, name: str, limit: int = 20) -> list[tuple[datetime, str]]:
        """``(tick, job id)`` of schedule ``name``'s runs, newest tick first, at most ``limit``.

        Runs whose job was deleted are gone.
        """


class RunsWorkflows(abc.ABC):
    """Capability ``workflows``: jobs that wait for others, released in the same transaction.

    A job that waits is stored ``blocked`` with the ids of the jobs it waits for (its
    parents), what it needs of them (``completed``, or ``ended`` succeeded or not) and the
    parameter that receives their results. Whenever a job ends (completed, failed, cancelled:
    by a worker, a cancel, a lease that expired for the last time), the same transaction looks
    at its blocked children: a child whose parents have all ended as it needs becomes
    ``pending``, due now, with the results in its params; a child that needs ``completed`` and
    has a parent that failed or was cancelled is cancelled, and so on down the graph. A manual
    retry of a failed or cancelled job makes the children cancelled that way ``blocked`` again
    (and theirs), so they go on once it succeeds; a manual retry of a step whose parents have
    not all completed makes it ``blocked``, not ``pending``. ``retrying`` is no end: children
    wait. A released step keeps a due time later than its release (a delay given when stored).
    """

    @abc.abstractmethod
    def enqueue_steps(self, steps: list[NewStep],
                      workflow: bool = True) -> tuple[str | None, list[JobRecord]]:
        """Store ``steps`` in one transaction, in order; the new workflow's id and their records.

        A step without parents (nor ``depends_on``) is ``pending``; the others are ``blocked``
        and released or cancelled at once when what they wait for has ended already.
        ``workflow`` ``False`` stores them under no workflow (a job with ``depends_on``): the
        id is ``None``. Raises ``JobNotFoundInStorage`` for an unknown id of ``depends_on``.
        Unique keys are not looked at: a step is never a duplicate.
        """

    @abc.abstractmethod
    def get_workflow(self, workflow_id: str) -> WorkflowRecord:
        """The workflow with this id, each step with its job's status now.

        Raises ``WorkflowNotFound`` (a ``JobNotFoundInStorage``) for an unknown id. Steps whose
        job was deleted (prune) are left out.
        """

    @abc.abstractmethod
    def cancel_workflow(self, workflow_id: str) -> list[JobRecord]:
        """Cancel every step of the workflow that has not ended, in one transaction.

        Running ones too (their lease is taken away, as :meth:`Storage.cancel` does); the
        records changed. Raises ``WorkflowNotFound`` for an unknown id.
        """

    @abc.abstractmethod
    def workflow_of(self, job_id: str) -> str | None:
        """The id of the workflow the job is a step of; ``None`` for a job of none."""

    @abc.abstractmethod
    def take_cascaded(self) -> list[JobRecord]:
        """The jobs this thread's committed writes changed in passing, in order; taken once.

        The children a cascade cancelled (a parent failed or was cancelled, a workflow was
        cancelled with jobs outside it waiting for its steps, a step was stored after its
        parent failed) and the children a manual retry made ``blocked`` again: the store's
        calls return only the job they were asked about. The app takes them after each call
        that can end a job and announces them (``cancelled``, ``enqueued``) after that job's
        own event. Kept per thread until taken; a rolled-back transaction adds none.
        """


#: The optional capabilities by name, each the mixin a backend inherits to have it.
OPTIONAL_CAPABILITIES: dict[str, type[abc.ABC]] = {
    "search": Searches,
    "workers": KeepsWorkers,
    "job_logs": KeepsJobLogs,
    "throughput": KeepsThroughput,
    "sessions": KeepsSessions,
    "progress": KeepsProgress,
    "wake": WakesWorkers,
    "ends": SignalsEnds,
    "upkeep": NeedsUpkeep,
    "batches": ClaimsInBatches,
    "flow": ControlsFlow,
    "schedules": KeepsSchedules,
    "workflows": RunsWorkflows,
}


def capability(name: str) -> type[abc.ABC]:
    """The mixin of the optional capability ``name``; ``ValueError`` naming the known ones."""
    try:
        return OPTIONAL_CAPABILITIES[name]
    except KeyError:
        known = ", ".join(OPTIONAL_CAPABILITIES)
        raise ValueError(f"no optional storage capability {name!r} (known: {known})") from None


def methods_of(name: str) -> tuple[str, ...]:
    """The methods that make up the optional capability ``name``, in their order."""
    return tuple(sorted(capability(name).__abstractmethods__,
                        key=list(vars(capability(name))).index))


def supports(storage: Storage | type[Storage], name: str) -> bool:
    """Whether the store (or backend class) has the optional capability ``name``."""
    kind = storage if isinstance(storage, type) else type(storage)
    return issubclass(kind, capability(name))


# -- what the worker and the dashboard call: the capability, or what the core can do ----------


def _every_job(storage: Storage) -> list[JobRecord]:
    found: list[JobRecord] = []
    while page := storage.list(limit=1000, offset=len(found)):
        found.extend(page)
    return found


def scan_search(storage: Storage, query: JobQuery) -> SearchPage:
    """The page of jobs ``query`` finds, by reading every job through the core."""
    from jobkit.storage.search import page_of, search_in  # only a search needs it

    return page_of(query, search_in(query, _every_job(storage), limit=query.limit + 1))


def scan_count(storage: Storage, query: JobQuery, cap: int = 10_000) -> Count:
    """How many jobs ``query`` finds (up to ``cap``), by reading every job through the core."""
    from jobkit.storage.search import Count, matches

    unbounded = attrs.evolve(query, after=None, limit=1)
    n = sum(1 for record in _every_job(storage) if matches(unbounded, record))
    return Count(cap, over=True) if n > cap else Count(n)


def scan_oldest_waiting(storage: Storage) -> datetime | None:
    """When the longest-waiting due job became due, by reading every job through the core."""
    now = storage.now()
    due = [job.available_at for job in _every_job(storage)
           if job.status in WAITING_STATUSES and job.available_at <= now]
    return min(due, default=None)


def search(storage: Storage, query: JobQuery) -> SearchPage:
    """The page of jobs ``query`` finds; without ``search``, every job read and filtered."""
    if isinstance(storage, Searches):
        return storage.search(query)
    return scan_search(storage, query)


def count_matching(
    storage: Storage, query: JobQuery, cap: int = 10_000, budget: float | None = None
) -> Count:
    """How many jobs ``query`` finds, up to ``cap``; without ``search``, by reading them all."""
    if isinstance(storage, Searches):
        return storage.count_matching(query, cap, budget)
    return scan_count(storage, query, cap)


def oldest_waiting(storage: Storage) -> datetime | None:
    """When the longest-waiting due job became due; without ``search``, by reading them all."""
    if isinstance(storage, Searches):
        return storage.oldest_waiting()
    return scan_oldest_waiting(storage)


def wait_for_jobs(storage: Storage, timeout: float, stop: threading.Event | None = None) -> None:
    """Wait for a new job; without ``wake``, ``timeout`` seconds (or until ``stop``)."""
    if isinstance(storage, WakesWorkers):
        storage.wait_for_jobs(timeout, stop)
    else:
        (stop or threading.Event()).wait(timeout)


#: Seconds between two reads of a job waited for in a store without ``ends`` (memory's reads
#: cost a dictionary look-up).
POLL_ENDS = 0.05


def wait_for_ends(storage: Storage, timeout: float, stop: threading.Event | None = None
                  ) -> set[str] | None:
    """Wait for jobs to end; without ``ends``, :data:`POLL_ENDS` seconds (any may have ended)."""
    if isinstance(storage, SignalsEnds):
        return storage.wait_for_ends(timeout, stop)
    (stop or threading.Event()).wait(min(timeout, POLL_ENDS))
    return None


def check_health(storage: Storage) -> None:
    """The store's :meth:`~NeedsUpkeep.check_health`; without ``upkeep``, nothing to find."""
    if isinstance(storage, NeedsUpkeep):
        storage.check_health()


def housekeep(storage: Storage) -> None:
    """The store's :meth:`~NeedsUpkeep.housekeep`; without ``upkeep``, nothing to do."""
    if isinstance(storage, NeedsUpkeep):
        storage.housekeep()


def set_progress(storage: Storage, lease: Lease, fraction: float, message: str | None) -> bool:
    """Record progress; without ``progress``, whether the lease still holds (nothing kept)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"progress fraction must be between 0 and 1, got {fraction!r}")
    if isinstance(storage, KeepsProgress):
        return storage.set_progress(lease, fraction, message)
    return True


def flow_store(storage: Storage, what: str) -> ControlsFlow:
    """The store as :class:`ControlsFlow`; ``StorageError`` saying it cannot do ``what``."""
    if isinstance(storage, ControlsFlow):
        return storage
    from jobkit.exceptions import StorageError

    raise StorageError(f"cannot {what}: storage {type(storage).__name__} has no 'flow' "
                       "capability (named queues; see docs/queues.md)")


def schedules_store(storage: Storage, what: str) -> KeepsSchedules:
    """The store as :class:`KeepsSchedules`; ``StorageError`` saying it cannot do ``what``."""
    if isinstance(storage, KeepsSchedules):
        return storage
    from jobkit.exceptions import StorageError

    raise StorageError(f"cannot {what}: storage {type(storage).__name__} has no 'schedules' "
                       "capability (schedules: in jobs.yaml; see docs/scheduling.md)")


def workflows_store(storage: Storage, what: str) -> RunsWorkflows:
    """The store as :class:`RunsWorkflows`; ``StorageError`` saying it cannot do ``what``."""
    if isinstance(storage, RunsWorkflows):
        return storage
    from jobkit.exceptions import StorageError

    raise StorageError(f"cannot {what}: storage {type(storage).__name__} has no 'workflows' "
                       "capability (jobs that wait for others; see docs/decisions.md)")


def check_flow(storage: Storage, flow: Flow | None) -> None:
    """``StorageError`` when ``flow`` narrows the claims and the store lacks ``flow``."""
    if flow is not None and flow.restricted:
        wanted = []
        if flow.queues is not None:
            wanted.append(f"take jobs from queues {', '.join(flow.queues)} only")
        if flow.limits:
            wanted.append(f"enforce {'; '.join(str(limit) for limit in flow.limits)}")
        flow_store(storage, " and ".join(wanted))


def claim(storage: Storage, worker_id: str, lease_seconds: float, limit: int,
          flow: Flow | None = None) -> list[JobRecord]:
    """Claim up to ``limit`` jobs ``flow`` allows: the store's ``flow``, else the core."""
    if isinstance(storage, ControlsFlow):
        from jobkit.flow import EVERY_QUEUE

        return storage.claim_from(flow or EVERY_QUEUE, worker_id, lease_seconds, limit)
    check_flow(storage, flow)
    claimed: list[JobRecord] = []
    while len(claimed) < limit:
        record = storage.claim(worker_id, lease_seconds)
        if record is None:
            break
        claimed.append(record)
    return claimed


def complete_and_claim_many(storage: Storage, completions: Sequence[tuple[Lease, Any]],
                            worker_id: str, lease_seconds: float, limit: int,
                            flow: Flow | None = None) -> Settled:
    """What a worker does after a batch.

    The fast path of ``batches``, or each completion settled and up to ``limit`` claims through
    :func:`claim` (a failed claim after completions that were recorded is no claim: the
    completions must not be written again). ``flow`` narrows the claims (see :func:`check_flow`).
    """
    from jobkit.exceptions import StorageError
    from jobkit.records import AttemptOutcome

    check_flow(storage, flow)
    if isinstance(storage, ClaimsInBatches):
        if flow is not None and isinstance(storage, ControlsFlow):
            return storage.complete_and_claim_many(completions, worker_id, lease_seconds, limit,
                                                   flow)
        return storage.complete_and_claim_many(completions, worker_id, lease_seconds, limit)
    done = [storage.settle(lease, AttemptOutcome.SUCCEEDED, result=result)
            for lease, result in completions]
    try:
        claimed = claim(storage, worker_id, lease_seconds, limit, flow) if limit > 0 else []
    except StorageError:
        claimed = []
    return done, claimed


#: Guards the sign-outs of stores without ``sessions``, kept in the store object itself.
_REVOKED_LOCK = threading.Lock()
_REVOKED = "_jobkit_revoked_sessions"


def revoke_session(storage: Storage, session_id: str, expires_at: datetime) -> None:
    """Remember a signed-out dashboard session.

    In the store with ``sessions``, else in this process, with the store object (a sign-out then
    holds only for this dashboard).
    """
    if isinstance(storage, KeepsSessions):
        storage.revoke_session(session_id, expires_at)
        return
    with _REVOKED_LOCK:
        revoked: dict[str, datetime] = vars(storage).setdefault(_REVOKED, {})
        now = storage.now()
        for ended in [key for key, until in revoked.items() if until < now]:
            del revoked[ended]
        revoked[session_id] = max(expires_at, revoked.get(session_id, expires_at))


def session_revoked(storage: Storage, session_id: str) -> bool:
    """Whether :func:`revoke_session` ended the dashboard session ``session_id``."""
    if isinstance(storage, KeepsSessions):
        return storage.session_revoked(session_id)
    with _REVOKED_LOCK:
        return session_id in vars(storage).get(_REVOKED, {})


# -- null objects: a store without the capability keeps nothing, and says nothing -------------


class _NoWorkers(KeepsWorkers):
    """The roster of a store without ``workers``: nothing kept, none listed."""

    def register_worker(self, worker: WorkerInfo) -> None:
        """Keep nothing."""

    def beat_workers(self, worker_ids: list[str]) -> None:
        """Keep nothing."""

    def remove_worker(self, worker_id: str) -> None:
        """Keep nothing."""

    def forget_workers(self, seen_before: datetime) -> int:
        """Nothing to forget."""
        return 0

    def list_workers(self) -> list[WorkerInfo]:
        """None kept."""
        return []


class _NoJobLogs(KeepsJobLogs):
    """The job logs of a store without ``job_logs``: no line kept."""

    def add_job_logs(self, job_id: str, lines: list[JobLogLine]) -> None:
        """Keep nothing."""

    def job_logs(self, job_id: str) -> list[JobLogLine]:
        """None kept."""
        return []


class _NoThroughput(KeepsThroughput):
    """The throughput of a store without ``throughput``: no count kept."""

    def add_throughput(self, minute: datetime, succeeded: int, failed: int) -> None:
        """Keep nothing."""

    def throughput(self, since: datetime) -> list[tuple[datetime, int, int]]:
        """None kept."""
        return []

    def forget_throughput(self, before: datetime) -> None:
        """Nothing to forget."""


def workers_of(storage: Storage) -> KeepsWorkers:
    """The store's roster of worker processes, or one that keeps nothing."""
    return storage if isinstance(storage, KeepsWorkers) else _NoWorkers()


def job_logs_of(storage: Storage) -> KeepsJobLogs:
    """The store's job logs, or logs that keep nothing."""
    return storage if isinstance(storage, KeepsJobLogs) else _NoJobLogs()


def throughput_of(storage: Storage) -> KeepsThroughput:
    """The store's throughput counts, or counts that keep nothing."""
    return storage if isinstance(storage, KeepsThroughput) else _NoThroughput()
