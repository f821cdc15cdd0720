"""Internal: the one place where a stored job changes state, is announced and is counted.

Each transition writes the outcome through the store, emits the ``jobkit_job_event`` event and
counts the attempt for throughput.

Who calls what:

- the executor (:mod:`jobkit.worker.executor`): :meth:`Transitions.started` (claimed),
  :meth:`~Transitions.complete_and_claim` and :meth:`~Transitions.succeeded` (succeeded, the
  next jobs claimed in the same transaction), :meth:`~Transitions.failed` (failed or
  retrying), :meth:`~Transitions.handed_back` (claimed, not started);
- the monitor (:mod:`jobkit.worker.monitor`), through the executor's ``record_stop``:
  :meth:`~Transitions.timed_out`, :meth:`~Transitions.handed_back` at shutdown,
  :meth:`~Transitions.stopped_cancelled`, :meth:`~Transitions.refused` (the lease was lost);
- the supervisor (:mod:`jobkit.worker.supervisor`), reading a dead process's journal:
  :meth:`~Transitions.recovered_completion`, :meth:`~Transitions.handed_back`,
  :meth:`~Transitions.crashed`, :meth:`~Transitions.timed_out` (a process it killed), and
  :meth:`~Transitions.recover_expired` (leases that ran out);
- ``JobKit.cancel_job`` and ``JobKit.retry_job``: :meth:`~Transitions.cancel`,
  :meth:`~Transitions.retry_by_hand`.

Counted (``outcomes``, which the worker adds to the store's throughput): the attempts that a
worker records as succeeded, failed, retrying or timed out. Jobs taken back after their lease ran
out, cancels and retries by hand are not attempts that ended, and are not counted.
"""

from __future__ import annotations

import collections
import traceback as tb
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from jobkit import limits
from jobkit.exceptions import Retry
from jobkit.lazylog import logger
from jobkit.masking import has_secrets, mask_secrets
from jobkit.records import AttemptOutcome, EventKind, JobEvent, JobRecord, JobStatus, Lease
from jobkit.retries import retry_delay
from jobkit.storage.capabilities import RunsWorkflows, complete_and_claim_many

if TYPE_CHECKING:
    from jobkit.events import EventDispatcher
    from jobkit.flow import Flow
    from jobkit.storage.base import Storage

#: The most of a job's error message, and of its traceback, that jobkit stores, logs and
#: reports, in characters: an exception may carry megabytes (a response body, a data dump).
MAX_ERROR_CHARS = 8 * 1024
MAX_TRACEBACK_CHARS = 64 * 1024


def cap_text(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, its head and tail kept.

    ``text`` if it has at most ``limit`` characters, else its head and its tail around a
    marker saying how much jobkit cut (the whole at most ``limit`` characters)."""
    if len(text) <= limit:
        return text
    room = limit - 80  # the marker takes less
    head, tail = room // 2, room - room // 2
    cut = len(text) - head - tail
    return f"{text[:head]}\n[... {cut} characters cut by jobkit ...]\n{text[len(text) - tail:]}"


def describe_error(error: BaseException) -> str:
    """``Type: message`` of an exception, capped to :data:`MAX_ERROR_CHARS`.

    ``Type: message``, even when the exception's ``__str__`` itself raises; capped to
    :data:`MAX_ERROR_CHARS`."""
    try:
        text = str(error)
    except Exception:
        text = "<the exception's message could not be built>"
    return cap_text(f"{type(error).__name__}: {text}", MAX_ERROR_CHARS)


def format_traceback(error: BaseException) -> str:
    """The traceback of an exception as text, capped to :data:`MAX_TRACEBACK_CHARS`.

    The traceback as text, capped to :data:`MAX_TRACEBACK_CHARS`, or a note when it cannot
    be formatted."""
    try:
        text = "".join(tb.format_exception(type(error), error, error.__traceback__))
    except Exception:
        return f"{describe_error(error)}\n(the traceback could not be formatted)\n"
    return cap_text(text, MAX_TRACEBACK_CHARS)


def job_event(
    kind: EventKind, job: JobRecord, error: str | None = None, traceback: str | None = None
) -> JobEvent:
    """The event of a committed state change, with the secrets in the job's params masked."""
    if has_secrets(job.params):  # most params hold none: the record is kept as it is
        job = attrs.evolve(job, params=mask_secrets(job.params))
    return JobEvent(kind=kind, job=job, error=error, traceback=traceback)


#: The event of a job a cascade changed, by its status then (``blocked`` again: ``enqueued``).
_CASCADED = {JobStatus.CANCELLED: EventKind.CANCELLED, JobStatus.FAILED: EventKind.FAILED}


def cascaded_events(storage: Storage) -> list[JobEvent]:
    """The events of the jobs this thread's last writes to ``storage`` changed in passing.

    ``cancelled`` (with the job's error, naming the parent) for a child a workflow's cascade
    cancelled, ``failed`` for one whose params with its parents' results were over its
    ``max_params_bytes``, ``enqueued`` for one a manual retry of its parent made ``blocked``
    again, in the order the store changed them. A release (``blocked`` to ``pending``) has
    none, as a delayed job that comes due has none. Empty for a store without the capability
    ``workflows``.
    """
    records = storage.take_cascaded() if isinstance(storage, RunsWorkflows) else None
    if not records:
        return []
    return [job_event(_CASCADED.get(record.status, EventKind.ENQUEUED), record, record.error)
            for record in records]


class Host(Protocol):
    """What the transitions need of the app: its store and its event dispatcher.

    ``JobKit`` is a ``Host`` by name, and so inherits :meth:`emit`, the one way an app
    announces a change.
    """

    #: Delivers events to jobkit's listeners and to the plugins.
    events: EventDispatcher

    @property
    def storage(self) -> Storage:
        """The job store."""

    def emit(
        self,
        kind: EventKind,
        job: JobRecord,
        error: str | None = None,
        traceback: str | None = None,
    ) -> None:
        """Report a committed state change to jobkit's listeners and every ``jobkit_job_event``.

        Delivered by the app's :class:`~jobkit.events.EventDispatcher` (to plugins on its event
        thread), with secrets in the params masked.
        """
        self.events.emit(job_event(kind, job, error, traceback))

    def emit_cascaded(self) -> None:
        """Report what this thread's last writes changed in passing (:func:`cascaded_events`).

        Called after the event of the change that caused it, so that listeners hear of a
        parent's end before its children's cancels.
        """
        events = cascaded_events(self.storage)
        if events:
            self.events.emit_all(events)


class Transitions:
    """A job's changes of state, written, announced and counted in one place."""

    def __init__(
        self, app: Host, outcomes: collections.Counter[EventKind] | None = None
    ) -> None:
        self.app = app
        #: Attempts ended, by event, since the owner last reported them (for throughput).
        self.outcomes: collections.Counter[EventKind] = (
            collections.Counter() if outcomes is None else outcomes
        )

    # -- claimed ------------------------------------------------------------------------------

    def started(self, record: JobRecord) -> None:
        """A claimed job's code is about to run."""
        self.app.emit(EventKind.STARTED, record)

    # -- succeeded ----------------------------------------------------------------------------

    def complete_and_claim(
        self, done: Sequence[tuple[Lease, Any]], worker_id: str, lease_seconds: float, limit: int,
        flow: Flow | None = None,
    ) -> tuple[list[JobRecord | None], list[JobRecord]]:
        """Record the completions ``done`` and claim up to ``limit`` jobs, in one transaction.

        The completed records (``None`` where the lease was gone) and the jobs claimed (of
        ``flow``'s queues). The caller keeps the claimed jobs, then announces the completions
        (:meth:`succeeded`)."""
        return complete_and_claim_many(self.app.storage, done, worker_id, lease_seconds, limit,
                                       flow)

    def succeeded(
        self, done: Sequence[tuple[Lease, Any]], records: Sequence[JobRecord | None]
    ) -> None:
        """Announce and count the completions :meth:`complete_and_claim` recorded."""
        for (lease, _), record in zip(done, records, strict=True):
            if record is None:
                self.refused(lease, "completion")
            else:
                self.app.emit(self._counted(EventKind.SUCCEEDED), record)
        self.app.emit_cascaded()  # a claimed row nobody could read, set aside, cancels too

    def recovered_completion(self, lease: Lease, result: Any) -> JobRecord | None:
        """A dead process finished this attempt (its journal says) but could not record it."""
        record = self.app.storage.settle(lease, AttemptOutcome.SUCCEEDED, result=result)
        if record is not None:
            self.app.emit(self._counted(EventKind.SUCCEEDED), record)
            self.app.emit_cascaded()
        return record

    # -- failed, retrying, timed out ----------------------------------------------------------

    def failed(
        self,
        lease: Lease,
        record: JobRecord,
        error: BaseException,
        *,
        retry: bool,
        outcome: AttemptOutcome = AttemptOutcome.FAILED,
    ) -> None:
        """The attempt raised ``error``: the job is retried later or fails.

        The attempt raised ``error``: the job is retried later when ``retry`` and attempts
        remain (after ``Retry(delay)`` or the job's retry delay), else it fails."""
        message = describe_error(error)
        trace = format_traceback(error)
        retry_at = None
        storage = self.app.storage
        if retry and record.attempts < record.max_attempts:
            delay = (
                error.delay  # checked by Retry(), but a job may change it: clamped below
                if isinstance(error, Retry) and error.delay is not None
                else (retry_delay(record.policy, record.attempts))
            )
            seconds = limits.clamp(limits.DELAY, delay, 0.0) or 0.0
            retry_at = storage.now() + timedelta(seconds=seconds)
        done = storage.settle(
            lease, outcome, error=message, traceback=trace, retry_at=retry_at
        )
        if done is None:
            self.refused(lease, "the failure")
            return
        kind = EventKind.RETRYING if retry_at is not None else EventKind.FAILED
        self.app.emit(self._counted(kind), done, error=message, traceback=trace)
        self.app.emit_cascaded()

    def timed_out(self, lease: Lease, record: JobRecord) -> None:
        """The attempt ran past its timeout: it fails as a timeout, retried if attempts remain.

        The attempt ran past its timeout (stopped by the monitor, or killed with its
        process by the supervisor)."""
        error = TimeoutError(f"timed out after {record.policy.timeout:g} s")
        self.failed(lease, record, error, retry=True, outcome=AttemptOutcome.TIMEOUT)

    def not_recorded(self, lease: Lease, problem: BaseException) -> None:
        """Fail the job whose attempt's outcome could not be recorded (a bug).

        Recording the attempt's outcome itself failed (a bug): fail the job rather than
        leave it running."""
        self.app.storage.settle(
            lease,
            AttemptOutcome.FAILED,
            error=f"jobkit could not record the outcome: {describe_error(problem)}",
            traceback=format_traceback(problem),
        )
        self.app.emit_cascaded()

    # -- handed back, cancelled, lost ---------------------------------------------------------

    def handed_back(self, lease: Lease, *, at_shutdown: bool = False) -> JobRecord | None:
        """A claimed job goes back to the queue, its attempt uncounted.

        A claimed job goes back to the queue, its attempt uncounted (not started yet, or
        stopped by the worker's shutdown: ``at_shutdown`` says so in the log)."""
        record = self.app.storage.settle(lease, AttemptOutcome.HANDED_BACK)
        if record is not None and at_shutdown:
            logger.bind(job_id=lease.job_id).warning(
                "job {job_id} handed back at shutdown", job_id=lease.job_id
            )
        return record

    def stopped_cancelled(self, lease: Lease) -> None:
        """The running attempt stopped because its job was cancelled (recorded by the cancel)."""
        logger.bind(job_id=lease.job_id).info(
            "job {job_id} stopped: cancelled", job_id=lease.job_id
        )

    def refused(self, lease: Lease, what: str) -> None:
        """The store refused to record ``what`` of the attempt: its lease is gone."""
        logger.bind(job_id=lease.job_id).warning(
            "job {job_id}: {what} of attempt {attempt} was not recorded: this worker no longer "
            "holds the job's lease (cancelled, or expired and taken over)",
            job_id=lease.job_id,
            what=what,
            attempt=lease.attempt,
        )

    def cancel(self, job_id: str) -> bool:
        """Cancel a pending, retrying or running job; ``False`` when it had already finished."""
        return self._by_hand(EventKind.CANCELLED, self.app.storage.cancel(job_id))

    # -- recovered after a crash, retried by hand ---------------------------------------------

    def crashed(self, lease: Lease, process: str, code: int | None) -> bool:
        """The worker process running the attempt died: take the job back and count the crash.

        The worker process running the attempt died: the job is taken back now, the crash
        counted against ``max_crashes``."""
        if not self.app.storage.abandon(lease):
            return False
        logger.warning(
            "job {job_id}: its worker process {name} died (status {code}); taking the job back",
            job_id=lease.job_id,
            name=process,
            code=code,
        )
        return True

    def recover_expired(self) -> int:
        """Take back the jobs whose lease expired and report each as retrying or failed."""
        records = self.app.storage.requeue_expired()
        for record in records:
            kind = EventKind.FAILED if record.status == JobStatus.FAILED else EventKind.RETRYING
            self.app.emit(kind, record, error=record.error)
        self.app.emit_cascaded()
        return len(records)

    def retry_by_hand(self, job_id: str) -> bool:
        """Run a failed or cancelled job again; ``False`` when it is in another status."""
        return self._by_hand(EventKind.ENQUEUED, self.app.storage.retry(job_id))

    def _by_hand(self, kind: EventKind, record: JobRecord | None) -> bool:
        """Announce a change asked for by hand as ``kind``; ``False`` when the store made none."""
        if record is None:
            return False
        self.app.emit(kind, record)
        self.app.emit_cascaded()  # the children it cancelled, or made wait again
        return True

    def _counted(self, kind: EventKind) -> EventKind:
        """``kind``, counted as one more attempt that ended so."""
        self.outcomes[kind] += 1
        return kind
