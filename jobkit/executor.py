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
import json
import os
import threading
import time
import traceback as tb
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import attrs
from loguru import logger

from jobkit import limits
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
from jobkit.journal import Journal
from jobkit.logpipe import flush_forwarded
from jobkit.records import AttemptOutcome, EventKind, JobRecord, Lease
from jobkit.retries import retry_delay
from jobkit.storage.capabilities import complete_and_claim_many, set_progress

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
        journal: Journal | None = None,
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
        #: Where completions not yet committed are written, so that the supervisor can
        #: record them if this process dies; without one, every completion is committed at
        #: once (one claim at a time).
        self.journal = journal
        #: The most jobs claimed at once (``worker.prefetch``; 1 without a journal).
        self.prefetch = settings.prefetch if journal is not None else 1
        #: How many the next claim asks for: doubles while jobs are short, back to 1 after a
        #: long one.
        self._batch = 1
        self._ran = 0  # jobs run since the last claim
        self._slow = False  # one of them ran longer than SHORT_JOB
        #: Jobs claimed and not started yet, in claim order.
        self._queue: collections.deque[JobRecord] = collections.deque()
        #: Completions of jobs that ran, not committed yet (written to the journal).
        self._done: list[tuple[Lease, Any]] = []
        #: The job whose code runs now (its start is in the journal).
        self._running: Lease | None = None
        #: When (monotonic) the jobs in the queue were claimed: none waits longer than HOLD.
        self._claimed_at = 0.0
        #: Guards ``_queue``, ``_done``, ``_running`` and the journal: the monitor settles them
        #: while a job runs long.
        self._lock = threading.Lock()
        #: Attempts ended since the worker last reported them, by event (for throughput).
        self.outcomes: collections.Counter[EventKind] = collections.Counter()
        #: A job's own lines under this level are not kept (the job log's configured level).
        self._log_level = logger.level(app.config.logging.level).no

    def close(self) -> None:
        """Commit the completions not committed yet, hand back the jobs claimed but not
        started, and stop the monitor's thread (call it between attempts, when done with the
        executor)."""
        try:
            self.settle()
        except StorageError as exc:  # the leases will expire: the jobs are taken back then
            logger.warning("could not record the last completions or hand back claimed jobs: "
                           "{error}", error=str(exc))
        finally:
            self.monitor.close()

    def run_next(self) -> bool:
        """Run the next job claimed with the last commit, or commit and claim more and run the
        first; ``False`` when nothing was due. A batch claimed more than :data:`HOLD` ago is
        settled first (what ran is committed, the rest handed back): the leases of the jobs it
        holds are not renewed while they wait."""
        with self._lock:
            late = bool(self._queue) and time.monotonic() - self._claimed_at > HOLD
        if late:
            self.settle()
        with self._lock:
            record = self._queue.popleft() if self._queue else None
        if record is None:
            self._commit(claim=True)
            with self._lock:
                record = self._queue.popleft() if self._queue else None
        if record is None:
            return False
        self.run(record)
        return True

    def holding(self) -> bool:
        """Whether completions wait to be committed, or claimed jobs to be started."""
        return bool(self._done or self._queue)

    def _commit(self, *, claim: bool) -> None:
        """Commit the completions not committed yet, in one transaction with the next claim
        (of ``_batch`` jobs) when ``claim``; then emit their events."""
        with self._lock:
            done, self._done = self._done, []
        limit = self._next_batch() if claim and self._keeps_claiming() else 0
        if not done and not limit:
            return
        try:
            records, claimed = complete_and_claim_many(
                self.app.storage, done, self.worker_id, self.settings.lease, limit
            )
        except BaseException:
            with self._lock:  # nothing was recorded: they wait for the next try
                self._done[:0] = done
            raise
        with self._lock:
            self._queue.extend(claimed)
            if claimed:
                self._claimed_at = time.monotonic()
            # all the journal says is in the store, unless a job runs (the monitor commits
            # while one does) or finished since: its lines stay
            if self.journal is not None and not self._done and self._running is None:
                self.journal.committed()
        for (lease, _), record in zip(done, records, strict=True):
            self._succeeded(lease, record)

    def _next_batch(self) -> int:
        """How many jobs the next claim asks for: one after a job that ran longer than
        :data:`SHORT_JOB`, twice the last batch after short ones (up to ``prefetch``)."""
        if self._slow:
            self._batch = 1
        elif self._ran:
            self._batch = min(self._batch * 2, self.prefetch)
        self._ran, self._slow = 0, False
        return self._batch

    def settle(self) -> None:
        """Commit the completions not committed yet and hand back the jobs claimed but not
        started: called between jobs when the executor ends, and by the monitor when a job runs
        longer than :data:`HOLD` (they must not wait for it)."""
        self._commit(claim=False)
        with self._lock:
            queued = list(self._queue)
            self._queue.clear()
        self._batch = 1
        for position, record in enumerate(queued):
            try:
                self.app.storage.settle(Lease(record.id, self.worker_id, record.attempts),
                                         AttemptOutcome.HANDED_BACK)
            except BaseException:
                with self._lock:  # those not handed back are still this executor's
                    self._queue.extendleft(reversed(queued[position:]))
                raise

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
        with self._lock:
            self._running = lease
            if self.journal is not None:
                self.journal.started(record.id, record.attempts)
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
            began = time.monotonic()
            try:
                result = function(**kwargs)
            finally:
                received = self.interrupter.disarm()
                self._ran += 1
                if time.monotonic() - began > SHORT_JOB:
                    self._slow = True
        except (Exception, SystemExit) as exc:  # a job's sys.exit() fails the job, not the worker
            error = exc
        finally:
            reason = self.monitor.finish(watch)
            with self._lock:
                self._running = None
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
                self.app.storage.settle(
                    lease, AttemptOutcome.FAILED,
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
        else:
            self._completed(lease, result)

    def _completed(self, lease: Lease, result: Any) -> None:
        """Keep the completion (journalled) for the batch's commit; commit when the batch is
        done, in one transaction with the next claim (:meth:`run_next` settles a batch held too
        long). Called again for the same lease when a commit failed: the completion is kept
        once."""
        with self._lock:
            if lease not in (kept for kept, _ in self._done):
                # the result as it is now: a later job of the batch may change the object
                text = "null" if result is None else json.dumps(result, ensure_ascii=False)
                if self.journal is not None:
                    self.journal.done(lease.job_id, lease.attempt, text)
                self._done.append((lease, None if result is None else json.loads(text)))
            more = bool(self._queue)
        if not more or not self._keeps_claiming():
            self._commit(claim=True)

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
            handed = self.app.storage.settle(lease, AttemptOutcome.HANDED_BACK)
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
                error.delay  # checked by Retry(), but a job may change it: clamped below
                if isinstance(error, Retry) and error.delay is not None
                else (retry_delay(record.policy, record.attempts))
            )
            seconds = limits.clamp(limits.DELAY, delay, 0.0) or 0.0
            retry_at = self.app.storage.now() + timedelta(seconds=seconds)
        done = self.app.storage.settle(
            lease, outcome, error=message, traceback=trace, retry_at=retry_at
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
        set_progress(self.app.storage, lease, fraction, message)


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
    #: When (monotonic) the monitor settles the executor's other jobs if this one still runs.
    hold_until: float = 0.0
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
#: A job whose code runs longer than this (seconds) is not short: the next claim is of one job.
SHORT_JOB = 0.005
#: Seconds a job runs before the monitor commits the completions before it and hands back the
#: jobs claimed after it, which must not wait for it.
HOLD = 0.2
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
            hold_until=now + HOLD,
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
                    if watch.hold_until and time.monotonic() >= watch.hold_until:
                        # once per attempt; again in a second if the store failed
                        watch.hold_until = 0.0 if self._settle() else time.monotonic() + 1.0
                    if reason is not None:
                        self._stop(watch, reason)
                except Exception:  # a bug here must not leave later attempts unwatched
                    logger.opt(exception=True).error(
                        "monitor of job {job_id}: unexpected error", job_id=watch.lease.job_id
                    )
                    watch.next_beat = time.monotonic() + settings.heartbeat

    def _settle(self) -> bool:
        """A long job: the jobs claimed with it go back, the completions before it are
        committed; ``False`` when the store failed (they stay for the next try)."""
        if not self.executor.holding():
            return True
        try:
            self.executor.settle()
        except StorageError as exc:
            logger.warning("could not commit completions or hand back claimed jobs while a "
                           "long job runs: {error}", error=str(exc))
            return False
        return True

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
