"""Internal: the worker process's event loop, where ``async def`` job methods run.

A worker process runs its sync jobs one at a time in its main thread
(:class:`~jobkit.worker.executor.Executor`). When the first ``async def`` job arrives it starts
an asyncio event loop in a thread of its own, and from then on runs each coroutine job there as
a task, up to ``worker.async_concurrency`` of them at once, beside its sync work.

A keeper thread watches those tasks as the monitor (:mod:`jobkit.worker.monitor`) watches the
sync job: it beats their leases, writes their log lines, cancels the task of an attempt that
must stop (its timeout, a cancel, a lost lease, the worker's hand-back) and ends the process when
one will not stop within ``kill_grace`` seconds. It records how each attempt ended, the
completions of several in one commit, and so keeps the store's writes off the loop. It also
watches the loop itself: a coroutine that holds it longer than :data:`BLOCKED` seconds (a
blocking call in an ``async def``) is reported in the log with its job's id.
"""

from __future__ import annotations

import asyncio
import collections
import sys
import threading
import time
from collections.abc import Coroutine
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

import attrs
from loguru import logger

from jobkit.exceptions import StorageError
from jobkit.factory import json_problem
from jobkit.records import JobRecord, Lease
from jobkit.worker.monitor import (
    LOG_FLUSH,
    TICK,
    Runner,
    StopReason,
    Watch,
    announce_stop,
    check,
    end_process,
)

if TYPE_CHECKING:
    from jobkit.joblog import AttemptLog
    from jobkit.transitions import Transitions

class Executes(Runner, Protocol):
    """What the keeper needs of its process's executor (:class:`jobkit.worker.executor.Executor`).

    The monitor's :class:`~jobkit.worker.monitor.Runner` and more. A protocol rather than an
    import: the executor starts the keeper, so importing it here would make the two modules
    import each other.
    """

    worker_id: str
    transitions: Transitions

    def record_outcome(self, lease: Lease, record: JobRecord, reason: StopReason | None,
                       error: BaseException | None, result: Any = None,
                       retry: bool = True) -> None:
        """Record how an attempt ended (see ``Executor.record_outcome``)."""

    def snapshot(self, result: Any) -> Any:
        """``result`` as JSON reads it back (see ``Executor.snapshot``)."""


#: Seconds a coroutine may hold the event loop before it is reported as blocking it.
BLOCKED = 0.5
#: Seconds between two beats of the loop's watchdog (the lag it measures is over this).
PULSE = 0.1


@attrs.define(eq=False)
class Attempt:
    """One coroutine job's attempt, from its start to its recorded outcome."""

    watch: Watch
    task: asyncio.Task[None] | None = None
    #: The frame of the task's coroutine, to tell which job blocks the loop.
    frame: FrameType | None = None
    #: Whether a cancel reached the task while it ran (then it ends as its stop says).
    cancelled: bool = False
    #: When (monotonic) a stopped attempt must have ended, before its process is.
    stop_by: float = 0.0
    result: Any = None
    error: BaseException | None = None


class Coroutines:
    """The event loop of one worker process, its coroutine jobs and the thread that keeps them."""

    def __init__(self, executor: Executes) -> None:
        self.executor = executor
        #: The most coroutine jobs at once (``worker.async_concurrency``).
        self.limit = executor.settings.async_concurrency
        self._loop = asyncio.new_event_loop()
        #: The attempts started and not recorded yet.
        self._attempts: dict[Lease, Attempt] = {}
        #: Attempts whose task has ended, for the keeper to record.
        self._ended: collections.deque[Attempt] = collections.deque()
        #: Guards ``_attempts``; notified when one is recorded (room for another).
        self._room = threading.Condition()
        self._wake = threading.Event()
        self._closing = False
        self._ending = False  # the process ends for a task that will not stop: no more claims
        #: When (monotonic) the loop last ran its watchdog; the loop is blocked when it is old.
        self._pulse = time.monotonic()
        self._reported = 0.0  # the pulse of the block last reported
        self._loop_thread = threading.Thread(
            target=self._run_loop, name="jobkit-event-loop", daemon=True
        )
        self._keeper = threading.Thread(target=self._keep, name="jobkit-async-keeper", daemon=True)
        self._loop_thread.start()
        self._keeper.start()

    # -- the executor's side --------------------------------------------------------------------

    def room(self) -> int:
        """How many more coroutine jobs may start now."""
        return 0 if self._ending else self.limit - len(self._attempts)

    def running(self) -> list[Lease]:
        """The leases of the attempts started and not recorded yet."""
        with self._room:
            return list(self._attempts)

    def wait_room(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for room for one more job; whether there is."""
        with self._room:
            return self._room.wait_for(lambda: self.room() > 0, timeout)

    def start(self, record: JobRecord, lease: Lease, lines: AttemptLog,
              coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run the job's ``coroutine`` as a task on the loop; the keeper records its end."""
        now = time.monotonic()
        timeout = record.policy.timeout
        watch = Watch(
            lease, record, deadline=now + timeout if timeout else None,
            next_beat=now + self.executor.settings.heartbeat, lines=lines,
            next_flush=now + LOG_FLUSH,
        )
        attempt = Attempt(watch)
        with self._room:
            self._attempts[lease] = attempt
        self._loop.call_soon_threadsafe(self._begin, attempt, coroutine)

    def close(self) -> None:
        """Wait for the running attempts to end and be recorded, then stop both threads."""
        self._closing = True
        self._wake.set()
        # a task that will not stop ends a worker process; in a test's run_until_empty it
        # would hold the caller for ever
        self._keeper.join(None if self.executor.may_exit else self.executor.settings.kill_grace + 5)
        self._loop.call_soon_threadsafe(self._stop_loop)
        self._loop_thread.join(timeout=5)
        if not self._loop_thread.is_alive():
            self._loop.close()

    # -- the loop's thread ----------------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.create_task(self._watchdog())
        self._loop.run_forever()

    def _stop_loop(self) -> None:
        """Cancel what is left on the loop (the watchdog), then stop it once they have ended."""
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        self._loop.call_soon(self._loop.stop)

    async def _watchdog(self) -> None:
        """Beat every :data:`PULSE` seconds: the keeper sees a blocked loop by a late beat."""
        while True:
            self._pulse = time.monotonic()
            await asyncio.sleep(PULSE)

    def _begin(self, attempt: Attempt, coroutine: Coroutine[Any, Any, Any]) -> None:
        wrapper = self._run(attempt, coroutine)
        attempt.frame = getattr(wrapper, "cr_frame", None)
        attempt.task = self._loop.create_task(wrapper)

    async def _run(self, attempt: Attempt, coroutine: Coroutine[Any, Any, Any]) -> None:
        try:
            attempt.result = await coroutine
        except BaseException as exc:  # a job's sys.exit() fails the job too
            attempt.error = exc
        finally:
            attempt.watch.done = True
            self._ended.append(attempt)
            self._wake.set()

    def _cancel(self, attempt: Attempt) -> None:
        if attempt.task is not None and not attempt.task.done():
            attempt.cancelled = attempt.task.cancel() or attempt.cancelled

    # -- the keeper's thread --------------------------------------------------------------------

    def _keep(self) -> None:
        while True:
            self._wake.wait(TICK)
            self._wake.clear()
            try:
                self._record_ended()
                with self._room:
                    attempts = list(self._attempts.values())
                if self._closing and not attempts:
                    return
                for attempt in attempts:
                    if not attempt.watch.done:
                        self._watch(attempt)
                self._watch_loop()
            except Exception:  # a bug here must not leave the running jobs unwatched
                logger.opt(exception=True).error("the keeper of async jobs: unexpected error")
                time.sleep(TICK)

    def _watch(self, attempt: Attempt) -> None:
        """Beat, flush and stop ``attempt`` as the monitor does a sync job's."""
        watch, settings = attempt.watch, self.executor.settings
        if watch.reason is not None:  # being stopped: again (it may swallow one), or end
            if time.monotonic() < attempt.stop_by:
                self._loop.call_soon_threadsafe(self._cancel, attempt)
                return
            if self.executor.may_exit:  # the others' ends are recorded, the rest handed back
                self._record_ended()
                self._hand_back_others(attempt)
            end_process(self.executor, watch, watch.reason)
            attempt.stop_by = float("inf")  # a runner that may not exit: said once
            logger.bind(job_id=watch.lease.job_id).error(
                "job {job_id} did not stop within {grace:g} s of {reason}; its task runs on",
                job_id=watch.lease.job_id, grace=settings.kill_grace, reason=watch.reason.value,
            )
            return
        reason = check(self.executor, watch)
        if time.monotonic() >= watch.next_beat:
            watch.next_beat = time.monotonic() + settings.heartbeat
        if watch.lines is not None and time.monotonic() >= watch.next_flush:
            watch.next_flush = time.monotonic() + LOG_FLUSH
            watch.lines.flush()
        if reason is not None:
            watch.reason = reason
            announce_stop(watch.lease, reason)
            attempt.stop_by = time.monotonic() + settings.kill_grace
            self._loop.call_soon_threadsafe(self._cancel, attempt)

    def _hand_back_others(self, attempt: Attempt) -> None:
        """Before the process ends for ``attempt``: hand the other running ones back, uncounted.

        The executor claims nothing from then on (the loop has no room): a job handed back
        must not be claimed again by the process about to end.
        """
        self._ending = True
        with self._room:
            others = [a for a in self._attempts.values() if a is not attempt]
        for other in others:
            watch = other.watch
            with watch.outcome_lock:
                if watch.outcome_written:
                    continue
                watch.outcome_written = True
                try:
                    self.executor.transitions.handed_back(watch.lease)
                except StorageError:  # the supervisor takes it back, as its journal says
                    continue

    def _watch_loop(self) -> None:
        """Report a coroutine that holds the loop longer than :data:`BLOCKED` seconds."""
        pulse = self._pulse
        lag = time.monotonic() - pulse - PULSE
        if lag < BLOCKED or pulse == self._reported:
            return
        self._reported = pulse
        job_id = self._blocking_job()
        if job_id is None:
            logger.warning("the event loop of async jobs has been blocked for {lag:.1f} s",
                           lag=lag)
            return
        logger.bind(job_id=job_id).warning(
            "job {job_id} has blocked the event loop of async jobs for {lag:.1f} s (a blocking "
            "call in an async def?); the other async jobs of this process wait",
            job_id=job_id, lag=lag,
        )

    def _blocking_job(self) -> str | None:
        """The id of the job whose coroutine runs on the loop's thread now, if one does."""
        with self._room:
            by_frame = {id(a.frame): a for a in self._attempts.values() if a.frame is not None}
        frame = sys._current_frames().get(self._loop_thread.ident or 0)
        while frame is not None:
            attempt = by_frame.get(id(frame))
            if attempt is not None and attempt.frame is frame:
                return attempt.watch.lease.job_id
            frame = frame.f_back
        return None

    def _record_ended(self) -> None:
        """Record how the ended attempts went: the completions together, in one commit."""
        ended: list[Attempt] = []
        while self._ended:
            ended.append(self._ended.popleft())
        if not ended:
            return
        completed: list[tuple[Lease, Any]] = []
        for attempt in ended:
            watch = attempt.watch
            if watch.lines is not None:
                watch.lines.flush(final=True)  # the job's lines are in the store before its end
            outcome = self._outcome(attempt)
            if outcome is None:
                completed.append((watch.lease, self.executor.snapshot(attempt.result)))
            else:
                self._settle_one(attempt, *outcome)
        try:
            if completed:
                self._settle_completed(completed)
        finally:
            with self._room:
                for attempt in ended:
                    self._attempts.pop(attempt.watch.lease, None)
                self._room.notify_all()

    def _outcome(self, attempt: Attempt) -> tuple[StopReason | None, BaseException] | None:
        """The stop or error the attempt ended with; ``None`` when it completed."""
        reason = attempt.watch.reason if attempt.cancelled else None
        if reason is not None:
            return reason, asyncio.CancelledError(reason.value)
        if attempt.error is not None:
            return None, attempt.error
        if problem := json_problem(attempt.result, "result"):
            return None, TypeError(problem)
        return None

    def _settle_one(
        self, attempt: Attempt, reason: StopReason | None, error: BaseException
    ) -> None:
        watch = attempt.watch
        with watch.outcome_lock:
            if watch.outcome_written:
                return
            watch.outcome_written = True
            self.executor.record_outcome(watch.lease, watch.record, reason, error)

    def _settle_completed(self, completed: list[tuple[Lease, Any]]) -> None:
        """Commit the completions together, trying again for half a lease if the store fails."""
        executor = self.executor
        deadline = time.monotonic() + executor.settings.lease / 2
        pause = 0.1
        while True:
            try:
                records, _ = executor.transitions.complete_and_claim(
                    completed, executor.worker_id, executor.settings.lease, 0
                )
                break
            except StorageError as exc:
                if time.monotonic() + pause > deadline:  # the leases expire: they run again
                    logger.error("could not record the completions of {n} async jobs: {error}",
                                 n=len(completed), error=str(exc))
                    return
                time.sleep(pause)
                pause = min(pause * 2, 2.0)
        executor.transitions.succeeded(completed, records)
