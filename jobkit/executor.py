"""Running one attempt of one job: build it, run it under a lease, record how it ended.

A monitor thread beats the lease while the job runs. It stops the job (through the
:class:`~jobkit.interrupt.Interrupter`) when its timeout passes, when it was cancelled or lost its
lease (the heartbeat is refused), or when the worker hands jobs back at shutdown. A job that does
not stop within ``kill_grace`` seconds is ended with its process, when the executor may do that
(worker processes); the monitor records the outcome first.
"""

from __future__ import annotations

import collections
import enum
import os
import threading
import time
import traceback as tb
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import attrs
from loguru import logger

from jobkit.exceptions import (
    InvalidParameters,
    JobNotFound,
    MethodNotAllowed,
    Retry,
    StorageError,
)
from jobkit.factory import json_problem
from jobkit.job import Job, JobContext
from jobkit.joblog import AttemptLog
from jobkit.logpipe import flush_forwarded
from jobkit.records import AttemptOutcome, EventKind, JobRecord, Lease
from jobkit.retries import retry_delay

if TYPE_CHECKING:
    from jobkit.app import JobKit
    from jobkit.config import WorkerSettings
    from jobkit.interrupt import Interrupter

#: Exit status of a worker process that ended a job which would not stop.
EXIT_KILLED_JOB = 75


#: The most of a job's error message, and of its traceback, that jobkit stores, logs and
#: reports, in characters: an exception may carry megabytes (a response body, a data dump).
MAX_ERROR_CHARS = 8 * 1024
MAX_TRACEBACK_CHARS = 64 * 1024


def cap_text(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its head and its tail around a
    marker saying how much jobkit cut (the whole at most ``limit`` characters)."""
    if len(text) <= limit:
        return text
    room = limit - 80  # the marker takes less
    head, tail = room // 2, room - room // 2
    cut = len(text) - head - tail
    return f"{text[:head]}\n[... {cut} characters cut by jobkit ...]\n{text[len(text) - tail:]}"


def describe_error(error: BaseException) -> str:
    """``Type: message``, even when the exception's ``__str__`` itself raises; capped to
    :data:`MAX_ERROR_CHARS`."""
    try:
        text = str(error)
    except Exception:
        text = "<the exception's message could not be built>"
    return cap_text(f"{type(error).__name__}: {text}", MAX_ERROR_CHARS)


def format_traceback(error: BaseException) -> str:
    """The traceback as text, capped to :data:`MAX_TRACEBACK_CHARS`, or a note when it cannot
    be formatted."""
    try:
        text = "".join(tb.format_exception(type(error), error, error.__traceback__))
    except Exception:
        return f"{describe_error(error)}\n(the traceback could not be formatted)\n"
    return cap_text(text, MAX_TRACEBACK_CHARS)


class StopReason(str, enum.Enum):
    """Why the monitor stopped a running job."""

    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    LOST = "lease lost"
    SHUTDOWN = "worker shutdown"


class Executor:
    """Claims and runs jobs one at a time in the calling thread."""

    def __init__(
        self,
        app: JobKit,
        worker_id: str,
        settings: WorkerSettings,
        interrupter: Interrupter,
        *,
        hand_back: threading.Event | Any | None = None,
        may_exit: bool = False,
        stop: threading.Event | None = None,
    ) -> None:
        self.app = app
        self.worker_id = worker_id
        self.settings = settings
        self.interrupter = interrupter
        self.hand_back = hand_back
        self.may_exit = may_exit
        #: Set when the worker stops claiming: no next job is claimed with a completion then.
        self.stop = stop
        #: Watches each running attempt (one thread, started by the first attempt).
        self.monitor = Monitor(self)
        #: The next job, claimed with the last completion (Storage.complete_and_claim).
        self._claimed: JobRecord | None = None
        #: Attempts ended since the worker last reported them, by event (for throughput).
        self.outcomes: collections.Counter[EventKind] = collections.Counter()
        #: A job's own lines under this level are not kept (the job log's configured level).
        self._log_level = logger.level(app.config.logging.level).no

    def close(self) -> None:
        """Hand back a job claimed but not started, and stop the monitor's thread (call it
        between attempts, when done with the executor)."""
        claimed, self._claimed = self._claimed, None
        try:
            if claimed is not None:
                self.app.storage.release(Lease(claimed.id, self.worker_id, claimed.attempts))
        except StorageError as exc:  # its lease will expire: the job is taken back then
            logger.warning("job {job_id} could not be handed back: {error}",
                           job_id=claimed.id if claimed else "?", error=str(exc))
        finally:
            self.monitor.close()

    def run_next(self) -> bool:
        """Run the job claimed with the last completion, or claim the next due job and run it;
        ``False`` when nothing was due."""
        record, self._claimed = self._claimed, None
        if record is None:
            record = self.app.storage.claim(self.worker_id, self.settings.lease)
        if record is None:
            return False
        self.run(record)
        return True

    def _keeps_claiming(self) -> bool:
        """Whether a completion may claim the next job too (not while stopping)."""
        stopping = self.stop is not None and self.stop.is_set()
        return not stopping and not (self.hand_back is not None and self.hand_back.is_set())

    def run(self, record: JobRecord) -> None:
        """Run one claimed attempt to its end and record the outcome.

        The monitor (lease, timeout, cancel) starts at once, so building the job counts
        towards its timeout, as it does for the supervisor.
        """
        lease = Lease(record.id, self.worker_id, record.attempts)
        self.app.emit(EventKind.STARTED, record)
        lines = AttemptLog(self.app.storage, record.id, record.attempts, self._log_level)
        watch = self.monitor.begin(lease, record, lines)
        error: BaseException | None = None
        result: Any = None
        received = False  # whether the job's code got the monitor's interrupt
        built = False
        try:
            instance, function, kwargs = self.app.factory.build(
                record.name, record.method, record.params
            )
            built = True
            self._bind(instance, record, lease, lines)
            self.interrupter.arm()
            try:
                result = function(**kwargs)
            finally:
                received = self.interrupter.disarm()
        except (Exception, SystemExit) as exc:  # a job's sys.exit() fails the job, not the worker
            error = exc
        finally:
            reason = self.monitor.finish(watch)
            lines.flush(final=True)  # the job's lines are in the store before its outcome
        # a row that no longer fits the registry or its params is never run again
        retry = built or not isinstance(error, (JobNotFound, MethodNotAllowed, InvalidParameters))
        with watch.outcome_lock:
            if watch.outcome_written:
                return
            watch.outcome_written = True
            try:
                self._record_patiently(
                    lease, record, reason if received else None, result, error, retry
                )
            except StorageError:
                raise  # the store stayed down: the lease decides what becomes of the job
            except Exception as exc:  # never leave the job running because recording failed
                logger.opt(exception=True).error(
                    "job {job_id}: could not record its outcome", job_id=record.id
                )
                self.app.storage.fail(
                    lease,
                    error=f"jobkit could not record the outcome: {describe_error(exc)}",
                    traceback=format_traceback(exc),
                )

    def _bind(self, instance: Job, record: JobRecord, lease: Lease, lines: AttemptLog) -> None:
        options = self.app.job_options(record.name)
        instance.bind(
            JobContext(
                job_id=record.id,
                name=record.name,
                method=record.method,
                attempt=record.attempts,
                max_attempts=record.max_attempts,
                log=lines.logger(logger).bind(
                    job_id=record.id,
                    job_name=record.name,
                    method=record.method,
                    attempt=record.attempts,
                ),
                report_progress=lambda f, m: self._progress(lease, f, m),
            ),
            options,
        )

    def _record_patiently(self, lease: Lease, record: JobRecord, *outcome: Any) -> None:
        """:meth:`_record`, tried again while the store is unreachable (a database restart),
        for up to half a lease: the lease, renewed a heartbeat ago, still holds the job, so the
        work done is not run again. Fenced writes make a repeat harmless."""
        deadline = time.monotonic() + self.settings.lease / 2
        pause = 0.1
        while True:
            try:
                self._record(lease, record, *outcome)
                return
            except StorageError as exc:
                if time.monotonic() + pause > deadline:
                    raise
                logger.bind(job_id=record.id).warning(
                    "job {job_id}: recording its outcome failed ({error}); again in {pause:.1f} s",
                    job_id=record.id,
                    error=str(exc),
                    pause=pause,
                )
                time.sleep(pause)
                pause = min(pause * 2, 2.0)

    def _record(
        self,
        lease: Lease,
        record: JobRecord,
        reason: StopReason | None,
        result: Any,
        error: BaseException | None,
        retry: bool,
    ) -> None:
        """``reason`` is given only when the job's code received the stop: then the attempt
        ends as the stop says, whatever the job did with the interrupt; a stop that came too
        late to reach the job's code leaves its result or error standing."""
        if reason is not None:
            self.record_stop(lease, record, reason)
        elif error is not None:
            self._finish_failed(lease, record, error, retry=retry)
        elif problem := json_problem(result, "result"):
            self._finish_failed(lease, record, TypeError(problem), retry=True)
        elif self._keeps_claiming():  # one transaction for this job's end and the next's start
            done, self._claimed = self.app.storage.complete_and_claim(
                lease, result, self.worker_id, self.settings.lease
            )
            self._succeeded(lease, done)
        else:
            self._succeeded(lease, self.app.storage.complete(lease, result))

    def _succeeded(self, lease: Lease, done: JobRecord | None) -> None:
        if done is None:
            self._refused(lease, "completion")
        else:
            self.outcomes[EventKind.SUCCEEDED] += 1
            self.app.emit(EventKind.SUCCEEDED, done)

    def record_stop(self, lease: Lease, record: JobRecord, reason: StopReason) -> None:
        """Record an attempt the monitor stopped (called by the monitor too, before an exit)."""
        if reason is StopReason.TIMEOUT:
            error = TimeoutError(f"timed out after {record.policy.timeout:g} s")
            self._finish_failed(lease, record, error, retry=True, outcome=AttemptOutcome.TIMEOUT)
        elif reason is StopReason.SHUTDOWN:
            handed = self.app.storage.release(lease)
            if handed is not None:
                logger.bind(job_id=record.id).warning(
                    "job {job_id} handed back at shutdown", job_id=record.id
                )
        elif reason is StopReason.CANCELLED:
            logger.bind(job_id=record.id).info("job {job_id} stopped: cancelled", job_id=record.id)
        else:
            self._refused(lease, "the attempt")

    def _finish_failed(
        self,
        lease: Lease,
        record: JobRecord,
        error: BaseException,
        *,
        retry: bool,
        outcome: AttemptOutcome = AttemptOutcome.FAILED,
    ) -> None:
        message = describe_error(error)
        trace = format_traceback(error)
        retry_at = None
        if retry and record.attempts < record.max_attempts:
            delay = (
                error.delay
                if isinstance(error, Retry) and error.delay is not None
                else (retry_delay(record.policy, record.attempts))
            )
            retry_at = self.app.storage.now() + timedelta(seconds=delay)
        done = self.app.storage.fail(
            lease, error=message, traceback=trace, outcome=outcome, retry_at=retry_at
        )
        if done is None:
            self._refused(lease, "the failure")
            return
        kind = EventKind.RETRYING if retry_at is not None else EventKind.FAILED
        self.outcomes[kind] += 1
        self.app.emit(kind, done, error=message, traceback=trace)

    def _refused(self, lease: Lease, what: str) -> None:
        logger.bind(job_id=lease.job_id).warning(
            "job {job_id}: {what} of attempt {attempt} was not recorded: this worker no longer "
            "holds the job's lease (cancelled, or expired and taken over)",
            job_id=lease.job_id,
            what=what,
            attempt=lease.attempt,
        )

    def _progress(self, lease: Lease, fraction: float, message: str | None) -> None:
        self.app.storage.set_progress(lease, fraction, message)


@attrs.define(eq=False)
class Watch:
    """One running attempt as the monitor watches it."""

    lease: Lease
    record: JobRecord
    deadline: float | None  # time.monotonic() of its timeout
    next_beat: float
    #: The lines the job logs, written to the store by the monitor every LOG_FLUSH seconds.
    lines: AttemptLog | None = None
    next_flush: float = 0.0
    reason: StopReason | None = None
    #: Set when the job's code has returned: the monitor leaves the attempt alone.
    done: threading.Event = attrs.Factory(threading.Event)
    #: Held by the monitor while it acts on the attempt (heartbeat, stop).
    acting: threading.Lock = attrs.Factory(threading.Lock)
    #: Whoever writes the attempt's outcome first (the executor, or the monitor before it ends
    #: the process) sets ``outcome_written`` under this lock.
    outcome_lock: threading.Lock = attrs.Factory(threading.Lock)
    outcome_written: bool = False


#: Seconds between two looks of the monitor at the running attempt when nothing is due sooner.
TICK = 0.05
#: Seconds between two writes of a running job's log lines to the store.
LOG_FLUSH = 1.0


class Monitor:
    """The thread that beats the running attempt's lease and stops it when it must stop.

    One per executor, kept from one attempt to the next: starting and joining a thread per job
    cost more than a short job itself. :meth:`begin` hands it an attempt, :meth:`finish` takes
    it back once the job's code has returned; the monitor never acts on an attempt after that.
    It is never woken per job either (a wake-up makes the job's thread wait for the GIL): it
    looks at the current attempt every :data:`TICK` seconds, or at its next beat or timeout if
    sooner.
    """

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self._current: Watch | None = None
        self._closed = threading.Event()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def begin(self, lease: Lease, record: JobRecord, lines: AttemptLog | None = None) -> Watch:
        """Start watching the attempt that ``lease`` holds (and writing the lines it logs)."""
        now = time.monotonic()
        timeout = record.policy.timeout
        watch = Watch(
            lease,
            record,
            deadline=now + timeout if timeout else None,
            next_beat=now + self.executor.settings.heartbeat,
            lines=lines,
            next_flush=now + LOG_FLUSH,
        )
        self._current = watch
        if self._thread is None or not self._thread.is_alive():
            with self._start_lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name="jobkit-monitor", daemon=True
                    )
                    self._thread.start()
        return watch

    def finish(self, watch: Watch) -> StopReason | None:
        """The job's code has returned: stop watching it; return why it was stopped, if it was."""
        watch.done.set()
        with watch.acting:  # a heartbeat or stop under way ends first
            pass
        if self._current is watch:
            self._current = None
        return watch.reason

    def close(self) -> None:
        """End the thread (between attempts)."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        settings = self.executor.settings
        while not self._closed.is_set():
            watch = self._current
            if watch is None or watch.done.is_set() or watch.reason is not None:
                time.sleep(TICK)  # nothing to watch (a stopped attempt is stopped once)
                continue
            now = time.monotonic()
            due = min(now + TICK, watch.next_beat, watch.deadline or now + TICK)
            if due > now:
                time.sleep(due - now)
            if self._current is not watch:
                continue
            with watch.acting:
                if watch.done.is_set():
                    continue
                try:
                    reason = self._check(watch)
                    if time.monotonic() >= watch.next_beat:
                        watch.next_beat = time.monotonic() + settings.heartbeat
                    if watch.lines is not None and time.monotonic() >= watch.next_flush:
                        watch.next_flush = time.monotonic() + LOG_FLUSH
                        watch.lines.flush()  # a running job's page shows its lines live
                    if reason is not None:
                        self._stop(watch, reason)
                except Exception:  # a bug here must not leave later attempts unwatched
                    logger.opt(exception=True).error(
                        "monitor of job {job_id}: unexpected error", job_id=watch.lease.job_id
                    )
                    watch.next_beat = time.monotonic() + settings.heartbeat

    def _check(self, watch: Watch) -> StopReason | None:
        if watch.deadline is not None and time.monotonic() >= watch.deadline:
            return StopReason.TIMEOUT
        hand_back = self.executor.hand_back
        if hand_back is not None and hand_back.is_set():
            return StopReason.SHUTDOWN
        if time.monotonic() < watch.next_beat:
            return None
        storage = self.executor.app.storage
        try:
            if storage.heartbeat(watch.lease, self.executor.settings.lease):
                return None
            current = storage.get(watch.lease.job_id)
        except StorageError as exc:  # the store is down: keep the job; the lease decides later
            logger.warning(
                "heartbeat of job {job_id} failed: {error}",
                job_id=watch.lease.job_id,
                error=str(exc),
            )
            return None
        return StopReason.CANCELLED if current.status == "cancelled" else StopReason.LOST

    def _stop(self, watch: Watch, reason: StopReason) -> None:
        watch.reason = reason
        lease = watch.lease
        logger.bind(job_id=lease.job_id).info(
            "stopping job {job_id} (attempt {attempt}): {reason}",
            job_id=lease.job_id,
            attempt=lease.attempt,
            reason=reason.value,
        )
        deadline = time.monotonic() + self.executor.settings.kill_grace
        while True:  # again and again: a job (or a library it calls) may swallow one
            self.executor.interrupter.interrupt(reason.value)
            if watch.done.wait(max(0.0, min(0.1, deadline - time.monotonic()))):
                return
            if time.monotonic() >= deadline:
                break
        if not self.executor.may_exit:
            return
        with watch.outcome_lock:  # the job ignored the interrupt: record, then end the process
            if watch.outcome_written:
                return
            watch.outcome_written = True
            logger.bind(job_id=lease.job_id).error(
                "job {job_id} did not stop within {grace:g} s of {reason}; ending its process",
                job_id=lease.job_id,
                grace=self.executor.settings.kill_grace,
                reason=reason.value,
            )
            try:
                if watch.lines is not None:  # its last lines are the ones most worth having
                    watch.lines.flush(final=True)
                self.executor.record_stop(lease, watch.record, reason)
            finally:
                self.executor.app.events.flush(timeout=1.0)
                logger.complete()
                flush_forwarded()  # a no-op outside a worker process
                os._exit(EXIT_KILLED_JOB)
