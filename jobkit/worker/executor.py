"""Internal: the executor, which claims jobs, runs each and records how it ended.

It claims a batch of jobs at a time while they are short. A monitor thread
(:mod:`jobkit.worker.monitor`) watches each running attempt: it beats the lease and stops the job
when its timeout passes, when it was cancelled or lost its lease, or when the worker hands jobs
back at shutdown. Completions are kept in the crash journal
(:mod:`jobkit.worker.journal`) and committed in one transaction with the next claim.
"""

from __future__ import annotations

import collections
import inspect
import json
import threading
import time
from typing import TYPE_CHECKING, Any

from loguru import logger

from jobkit.exceptions import InvalidParameters, JobNotFound, MethodNotAllowed, StorageError
from jobkit.factory import json_problem
from jobkit.flow import Flow
from jobkit.job import Job, JobContext
from jobkit.joblog import AttemptLog
from jobkit.records import EventKind, JobRecord, Lease
from jobkit.shield import shielded
from jobkit.storage.capabilities import set_progress
from jobkit.transitions import Transitions
from jobkit.worker.monitor import HOLD, Monitor, StopReason

if TYPE_CHECKING:
    from jobkit.app import JobKit
    from jobkit.config import WorkerSettings
    from jobkit.worker.coroutines import Coroutines
    from jobkit.worker.interrupt import Interrupter
    from jobkit.worker.journal import Journal


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
        #: The queues it claims from (``worker.queues``; a paused one never), and the limits.
        self.flow: Flow = app.flow(settings.queues)
        #: The most jobs claimed at once (``worker.prefetch``; 1 without a journal).
        self.prefetch = settings.prefetch if journal is not None else 1
        #: How many the next claim asks for: doubles while jobs are short, back to 1 after a
        #: long one.
        self._batch = 1
        self._ran = 0  # jobs run since the last claim
        self._slow = False  # one of them ran longer than SHORT_JOB
        #: Jobs claimed and not started yet, in claim order.
        self._queue: collections.deque[JobRecord] = collections.deque()
        #: Completions of jobs that ran, not committed yet (written to the journal), in order.
        self._done: dict[Lease, Any] = {}
        #: The job whose code runs now (its start is in the journal).
        self._running: Lease | None = None
        #: When (monotonic) the jobs in the queue were claimed: none waits longer than HOLD.
        self._claimed_at = 0.0
        #: Guards ``_queue``, ``_done``, ``_running`` and the journal: the monitor settles them
        #: while a job runs long.
        self._lock = threading.Lock()
        #: Attempts ended since the worker last reported them, by event (for throughput).
        self.outcomes: collections.Counter[EventKind] = collections.Counter()
        #: Writes, announces and counts (in ``outcomes``) how each attempt ends.
        self.transitions = Transitions(app, self.outcomes)
        #: A job's own lines under this level are not kept (the job log's configured level).
        self._log_level = logger.level(app.config.logging.level).no
        #: The event loop of ``async def`` jobs, started by the first of them.
        self.coroutines: Coroutines | None = None

    def close(self) -> None:
        """Settle the batch and stop the monitor's thread, when done with the executor.

        Commits the completions not committed yet and hands back the jobs claimed but not
        started; call it between attempts.
        """
        try:
            self.settle()
        except StorageError as exc:  # the leases will expire: the jobs are taken back then
            logger.warning("could not record the last completions or hand back claimed jobs: "
                           "{error}", error=str(exc))
        finally:
            self.monitor.close()
            if self.coroutines is not None:  # its running jobs end first
                self.coroutines.close()

    def run_next(self) -> bool:
        """Run the next claimed job, claiming more first if none is left; ``False`` if none is due.

        The next job is one claimed with the last commit; when none is left, the completions
        are committed and more jobs claimed in one transaction. A batch claimed more than
        :data:`HOLD` ago is settled first (what ran is committed, the rest handed back): the
        leases of the jobs it holds are not renewed while they wait.
        """
        with self._lock:
            late = bool(self._queue) and time.monotonic() - self._claimed_at > HOLD
        if late:
            self.settle()
        with self._lock:
            record = self._queue.popleft() if self._queue else None
        if record is None:
            if self.coroutines is not None:  # a full loop: a job may end soon and make room
                self.coroutines.wait_room(self.settings.poll_interval)
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
        """Commit the completions not committed yet, then emit their events.

        With ``claim``, the next claim (of ``_batch`` jobs) is made in the same transaction.
        """
        with self._lock:
            done, self._done = list(self._done.items()), {}
        limit = self._next_batch() if claim and self._keeps_claiming() else 0
        if limit and self.coroutines is not None:  # an async job claimed has room to start
            limit = min(limit, self.coroutines.room())
        if not done and not limit:
            return
        try:
            records, claimed = self.transitions.complete_and_claim(
                done, self.worker_id, self.settings.lease, limit,
                self.flow if self.flow.restricted else None,
            )
        except BaseException:
            with self._lock:  # nothing was recorded: they wait for the next try
                self._done = {**dict(done), **self._done}
            raise
        with self._lock:
            self._queue.extend(claimed)
            if claimed:
                self._claimed_at = time.monotonic()
            # all the journal says is in the store, unless a job runs (the monitor commits
            # while one does) or finished since: its lines stay
            if self.journal is not None and not self._done and self._running is None:
                self.journal.committed(self._async_running())
        self.transitions.succeeded(done, records)

    def _async_running(self) -> list[Lease]:
        """The attempts running on the event loop (their starts stay in the journal)."""
        return [] if self.coroutines is None else self.coroutines.running()

    def _next_batch(self) -> int:
        """How many jobs the next claim asks for, from how long the last ones ran.

        One after a job that ran longer than :data:`SHORT_JOB`, twice the last batch after
        short ones (up to ``prefetch``).
        """
        if self._slow:
            self._batch = 1
        elif self._ran:
            self._batch = min(self._batch * 2, self.prefetch)
        self._ran, self._slow = 0, False
        return self._batch

    def settle(self) -> None:
        """Commit the completions not committed yet and hand back the jobs claimed but not started.

        Called between jobs when the executor ends, and by the monitor when a job runs longer
        than :data:`HOLD` (the jobs of its batch must not wait for it).
        """
        self._commit(claim=False)
        with self._lock:
            queued = list(self._queue)
            self._queue.clear()
        self._batch = 1
        for position, record in enumerate(queued):
            try:
                self.transitions.handed_back(Lease(record.id, self.worker_id, record.attempts))
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
        self.transitions.started(record)
        lines = AttemptLog(self.app.storage, record.id, record.attempts, self._log_level)
        watch = self.monitor.begin(lease, record, lines)
        error: BaseException | None = None
        result: Any = None
        received = False  # whether the job's code got the monitor's interrupt
        built = handed_off = False
        try:
            instance, function, kwargs = self.app.factory.build(
                record.name, record.method, record.params
            )
            built = True
            self._bind(instance, record, lease, lines)
            if inspect.iscoroutinefunction(function):  # runs on the event loop from here
                self._start_coroutine(record, lease, lines, function(**kwargs))
                handed_off = True
                return
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
            if not handed_off:
                lines.flush(final=True)  # the job's lines are in the store before its outcome
        # a row that no longer fits the registry or its params is never run again
        retry = built or not isinstance(error, (JobNotFound, MethodNotAllowed, InvalidParameters))
        with watch.outcome_lock:
            if watch.outcome_written:
                return
            watch.outcome_written = True
            self.record_outcome(lease, record, reason if received else None, error, result, retry)

    def _start_coroutine(self, record: JobRecord, lease: Lease, lines: AttemptLog,
                         coroutine: Any) -> None:
        """Run an ``async def`` job's coroutine on the event loop (started by the first)."""
        if self.coroutines is None:
            from jobkit.worker.coroutines import Coroutines

            self.coroutines = Coroutines(self)
        self._ran += 1
        with self._lock:  # its start stays in the journal while it runs
            self.coroutines.start(record, lease, lines, coroutine)

    def record_outcome(
        self, lease: Lease, record: JobRecord, reason: StopReason | None,
        error: BaseException | None, result: Any = None, retry: bool = True,
    ) -> None:
        """Record how an attempt ended (its stop, its error or its result), patiently.

        A failure to record it that is not the store's fails the job: it never stays running.
        """
        try:
            self._record_patiently(lease, record, reason, result, error, retry)
        except StorageError:
            raise  # the store stayed down: the lease decides what becomes of the job
        except Exception as exc:  # never leave the job running because recording failed
            logger.opt(exception=True).error(
                "job {job_id}: could not record its outcome", job_id=record.id
            )
            self.transitions.not_recorded(lease, exc)

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
        """Record the outcome, trying again while the store is unreachable, for half a lease.

        :meth:`_record`, tried again while the store is unreachable (a database restart), for
        up to half a lease: the lease, renewed a heartbeat ago, still holds the job, so the
        work done is not run again. Fenced writes make a repeat harmless.
        """
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
        """Record how the attempt ended: stopped, failed, or completed with ``result``.

        ``reason`` is given only when the job's code received the stop: then the attempt ends
        as the stop says, whatever the job did with the interrupt; a stop that came too late
        to reach the job's code leaves its result or error standing.
        """
        if reason is not None:
            self.record_stop(lease, record, reason)
        elif error is not None:
            self.transitions.failed(lease, record, error, retry=retry)
        elif problem := json_problem(result, "result"):
            self.transitions.failed(lease, record, TypeError(problem), retry=True)
        else:
            self._completed(lease, result)

    def _completed(self, lease: Lease, result: Any) -> None:
        """Keep the completion (journalled) for the batch's commit.

        The batch is committed when it is done, in one transaction with the next claim
        (:meth:`run_next` settles a batch held too long). Called again for the same lease when
        a commit failed: the completion is kept once.
        """
        with self._lock:
            if lease not in self._done:
                # the result as it is now: a later job of the batch may change the object
                text = "null" if result is None else _ENCODER.encode(result)
                if self.journal is not None:
                    self.journal.done(lease.job_id, lease.attempt, text)
                self._done[lease] = None if result is None else json.loads(text)
            more = bool(self._queue)
        if not more or not self._keeps_claiming():
            self._commit(claim=True)

    @staticmethod
    def snapshot(result: Any) -> Any:
        """``result`` as JSON reads it back: a copy the job can no longer change."""
        return None if result is None else json.loads(_ENCODER.encode(result))

    def record_stop(self, lease: Lease, record: JobRecord, reason: StopReason) -> None:
        """Record an attempt the monitor stopped (called by the monitor too, before an exit)."""
        if reason is StopReason.TIMEOUT:
            self.transitions.timed_out(lease, record)
        elif reason is StopReason.SHUTDOWN:
            self.transitions.handed_back(lease, at_shutdown=True)
        elif reason is StopReason.CANCELLED:
            self.transitions.stopped_cancelled(lease)
        else:
            self.transitions.refused(lease, "the attempt")

    def _progress(self, lease: Lease, fraction: float, message: str | None) -> None:
        with shielded():  # the job's own call: never interrupted halfway through the write
            set_progress(self.app.storage, lease, fraction, message)


#: A job whose code runs longer than this (seconds) is not short: the next claim is of one job.
SHORT_JOB = 0.005

#: ``json.dumps(result, ensure_ascii=False)`` without making an encoder per job.
_ENCODER = json.JSONEncoder(ensure_ascii=False)
