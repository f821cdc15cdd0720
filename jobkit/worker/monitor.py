"""Internal: the monitor, the thread that watches a running attempt and stops it when it must.

It beats the attempt's lease while the job runs, and stops the job (through the worker's
:class:`~jobkit.worker.interrupt.Interrupter`) when its timeout passes, when it was cancelled or
lost its lease (the heartbeat is refused), or when the worker hands jobs back at shutdown. A job
that does not stop within ``kill_grace`` seconds is ended with its process, when the runner may
do that (worker processes); the monitor records the outcome first. It also writes the running
job's log lines to the store every :data:`LOG_FLUSH` seconds, and, when a job runs long, has the
runner settle the jobs claimed with it (:data:`HOLD`).
"""

from __future__ import annotations

import enum
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

import attrs
from loguru import logger

from jobkit.exceptions import StorageError
from jobkit.records import JobRecord, Lease
from jobkit.worker.logpipe import flush_forwarded

if TYPE_CHECKING:
    from jobkit.app import JobKit
    from jobkit.config import WorkerSettings
    from jobkit.joblog import AttemptLog
    from jobkit.worker.interrupt import Interrupter

#: Exit status of a worker process that ended a job which would not stop.
EXIT_KILLED_JOB = 75


class StopReason(str, enum.Enum):
    """Why the monitor stopped a running job."""

    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    LOST = "lease lost"
    SHUTDOWN = "worker shutdown"


class Runner(Protocol):
    """What the monitor needs of the executor whose attempts it watches."""

    app: JobKit
    settings: WorkerSettings
    interrupter: Interrupter
    #: Set when the worker hands its jobs back (shutdown): the running one is stopped.
    hand_back: threading.Event | Any | None
    #: Whether the monitor may end the process when a job will not stop.
    may_exit: bool

    def holding(self) -> bool:
        """Whether completions wait to be committed, or claimed jobs to be started."""

    def settle(self) -> None:
        """Commit the completions not committed yet and hand back the claimed jobs not started."""

    def record_stop(self, lease: Lease, record: JobRecord, reason: StopReason) -> None:
        """Record an attempt the monitor stopped."""


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
    #: True once the job's code has returned: the monitor leaves the attempt alone. (A plain
    #: flag: an Event per job cost a Condition and a lock; the monitor waits on its own.)
    done: bool = False
    #: Held by the monitor while it acts on the attempt (heartbeat, stop).
    acting: threading.Lock = attrs.Factory(threading.Lock)
    #: Whoever writes the attempt's outcome first (the executor, or the monitor before it ends
    #: the process) sets ``outcome_written`` under this lock.
    outcome_lock: threading.Lock = attrs.Factory(threading.Lock)
    outcome_written: bool = False


#: Seconds between two looks of the monitor at the running attempt when nothing is due sooner.
TICK = 0.05
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

    def __init__(self, executor: Runner) -> None:
        self.executor = executor
        self._current: Watch | None = None
        self._closed = threading.Event()
        #: Set by :meth:`finish` when the attempt it ends is being stopped (:meth:`_stop` waits).
        self._returned = threading.Event()
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
        watch.done = True
        if watch.reason is not None:  # after done: a stop that begins later sees done
            self._returned.set()
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
            if watch is None or watch.done or watch.reason is not None:
                time.sleep(TICK)  # nothing to watch (a stopped attempt is stopped once)
                continue
            now = time.monotonic()
            due = min(now + TICK, watch.next_beat, watch.deadline or now + TICK)
            if due > now:
                time.sleep(due - now)
            if self._current is not watch:
                continue
            with watch.acting:
                if watch.done:
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
        """Settle the batch of a long job: ``False`` when the store failed.

        The jobs claimed with the long job go back, the completions before it are committed;
        when the store fails they stay for the next try.
        """
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
        return check(self.executor, watch)

    def _stop(self, watch: Watch, reason: StopReason) -> None:
        self._returned.clear()  # before the reason: finish() sets it only after it reads one
        watch.reason = reason
        announce_stop(watch.lease, reason)
        deadline = time.monotonic() + self.executor.settings.kill_grace
        while True:  # again and again: a job (or a library it calls) may swallow one
            self.executor.interrupter.interrupt(reason.value)
            if watch.done or self._returned.wait(max(0.0, min(0.1, deadline - time.monotonic()))):
                return
            if time.monotonic() >= deadline:
                break
        end_process(self.executor, watch, reason)


def announce_stop(lease: Lease, reason: StopReason) -> None:
    """Say in the log that the attempt ``lease`` holds is being stopped, and why."""
    logger.bind(job_id=lease.job_id).info(
        "stopping job {job_id} (attempt {attempt}): {reason}",
        job_id=lease.job_id,
        attempt=lease.attempt,
        reason=reason.value,
    )


def check(runner: Runner, watch: Watch) -> StopReason | None:
    """Why the attempt ``watch`` must stop now, if it must; beats its lease when a beat is due.

    Its timeout passed, the worker hands its jobs back, or the heartbeat was refused (the job
    was cancelled, or its lease lost). A store that fails keeps the job: the lease decides.
    """
    if watch.deadline is not None and time.monotonic() >= watch.deadline:
        return StopReason.TIMEOUT
    hand_back = runner.hand_back
    if hand_back is not None and hand_back.is_set():
        return StopReason.SHUTDOWN
    if time.monotonic() < watch.next_beat:
        return None
    storage = runner.app.storage
    try:
        if storage.heartbeat(watch.lease, runner.settings.lease):
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


def end_process(runner: Runner, watch: Watch, reason: StopReason) -> None:
    """Record the stop of an attempt that would not stop, then end the process (if it may).

    The attempt's last lines are written first, and the events sent; a runner that may not
    end its process (a test's :func:`~jobkit.worker.process.run_until_empty`) leaves it be.
    """
    if not runner.may_exit:
        return
    lease = watch.lease
    with watch.outcome_lock:  # the job ignored the interrupt: record, then end the process
        if watch.outcome_written:
            return
        watch.outcome_written = True
        logger.bind(job_id=lease.job_id).error(
            "job {job_id} did not stop within {grace:g} s of {reason}; ending its process",
            job_id=lease.job_id,
            grace=runner.settings.kill_grace,
            reason=reason.value,
        )
        try:
            if watch.lines is not None:  # its last lines are the ones most worth having
                watch.lines.flush(final=True)
            runner.record_stop(lease, watch.record, reason)
        finally:
            runner.app.events.flush(timeout=1.0)
            logger.complete()
            flush_forwarded()  # a no-op outside a worker process
            os._exit(EXIT_KILLED_JOB)
