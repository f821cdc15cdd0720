"""Internal: a worker process, the loop that runs jobs one at a time until told to stop.

The supervisor (:mod:`jobkit.worker.supervisor`) starts each process blank, forked or spawned
(:mod:`jobkit.worker.launch`), and either way the worker runs the same on Linux, macOS and
Windows (:func:`process_main`): the process rebuilds the app from the supervisor's
configuration and registrations and runs its :class:`~jobkit.worker.executor.Executor`.
:func:`run_until_empty` runs the same executor in the calling thread, for tests and scripts.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import threading
import time
from typing import TYPE_CHECKING

import attrs
from loguru import logger

from jobkit.config import Config
from jobkit.exceptions import StorageError
from jobkit.flow import EVERY_QUEUE, Flow
from jobkit.imports import import_string
from jobkit.records import JobStatus
from jobkit.storage.capabilities import ControlsFlow, wait_for_jobs
from jobkit.transitions import Transitions
from jobkit.worker.executor import Executor
from jobkit.worker.interrupt import Interrupter
from jobkit.worker.journal import Journal

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from jobkit.app import JobKit

#: Seconds between two reports of a worker process's outcomes to its supervisor.
REPORT_INTERVAL = 1.0

_WAITING = (JobStatus.PENDING, JobStatus.RETRYING, JobStatus.RUNNING)


def worker_id() -> str:
    """``host:pid:token``, how one executor is named in leases and attempts.

    The random token makes every executor's leases its own, even when a process runs several
    executors one after another (a hand-back followed by a re-claim never looks like one lease).
    """
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def nothing_left(app: JobKit, flow: Flow = EVERY_QUEUE) -> bool:
    """True when no job is pending, retrying (delayed ones included) or running.

    Of ``flow``'s queues, when the store has ``flow``: there, a paused queue's waiting jobs do
    not count (no worker may take them), its running ones do. The store's counts by status
    answer first, where they settle it (none at all; or one running, for a worker of every
    queue): the queues' states count the attempts ended in the last minute too, a read that
    grows with the throughput (8 ms of CPU after a drain of 20,000 jobs on SQLite), and a
    ``--burst`` worker asks at every idle poll.
    """
    storage = app.storage
    pending, retrying, running = (storage.count(status=status) for status in _WAITING)
    if not (pending or retrying or running):
        return True
    if not isinstance(storage, ControlsFlow) or (running and flow.queues is None):
        return False
    return not any(
        state.running or (state.waiting and not state.paused)
        for state in storage.queue_states() if flow.takes(state.name)
    )


def requeue_expired(app: JobKit) -> int:
    """Take back the jobs whose lease expired and report each as retrying or failed."""
    return Transitions(app).recover_expired()


def run_until_empty(app: JobKit, *, timeout: float = 60.0) -> int:
    """Run jobs in this thread until none is pending, retrying or running; return how many ran.

    Of the queues of ``worker.queues`` (all by default), none paused (see :func:`nothing_left`).

    For tests and scripts: waits for delayed jobs and retries, and raises ``TimeoutError`` after
    ``timeout`` seconds. A job that will not stop after a timeout or a cancel cannot be killed
    in-process; use ``jobkit worker`` for that.
    """
    settings = app.config.worker
    executor = Executor(app, worker_id(), settings, Interrupter())
    deadline = time.monotonic() + timeout
    ran = 0
    try:
        while True:
            requeue_expired(app)
            if executor.run_next():
                ran += 1
                continue
            if nothing_left(app, executor.flow):
                app.events.flush()
                return ran
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs still waiting after {timeout:g} s")
            time.sleep(settings.poll_interval)
    finally:
        executor.close()


@attrs.frozen
class ChildSpec:
    """What a worker process needs to rebuild the app: plain, picklable data."""

    config: Config
    registrations: tuple[tuple[str, str], ...]
    burst: bool
    #: The path of the process's crash journal (:mod:`jobkit.worker.journal`).
    journal: str = ""


def _listen(control: Connection, stop: threading.Event, hand_back: threading.Event) -> None:
    """Turn the supervisor's messages into this process's events; its death means stop."""
    while True:
        try:
            message = control.recv()
        except (EOFError, OSError):
            stop.set()  # the supervisor is gone: finish the current job, then exit
            return
        if message == "hand_back":
            hand_back.set()
        stop.set()


def process_main(logs: Connection, control: Connection) -> None:
    """The body of one worker process.

    Started blank (:mod:`jobkit.worker.launch`), it imports what it needs, then waits for its
    :class:`ChildSpec` on ``control``; without one (the pipe closed, or a stop instead) it exits
    having done nothing. It then listens to the supervisor on that pipe, and sends its log
    records on ``logs`` (:func:`jobkit.worker.logpipe.forward_to`): a shared
    ``multiprocessing.Event`` or queue would hang every process once one of them was killed
    while waiting on it or holding its lock.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which decides
    from jobkit.app import JobKit
    from jobkit.worker.logpipe import flush_forwarded, forward_events, forward_to

    _warm_up()
    try:
        spec = control.recv()  # sent once the supervisor is set up
    except (EOFError, OSError):
        return  # the supervisor stopped at a start-up error
    if not isinstance(spec, ChildSpec):
        return  # told to stop before it started
    stop, hand_back = threading.Event(), threading.Event()
    terminated: list[int] = []  # a plain list: a handler must not take the Event's lock
    signal.signal(signal.SIGTERM, lambda signum, frame: terminated.append(signum))
    threading.Thread(target=_listen, args=(control, stop, hand_back), daemon=True).start()
    forward_to(logs)
    app = JobKit(spec.config)
    forward_events(app.events)
    for name, path in spec.registrations:
        app.register(name, import_string(path))
    settings = spec.config.worker
    executor = Executor(
        app, worker_id(), settings, Interrupter(), hand_back=hand_back, may_exit=True, stop=stop,
        journal=Journal(spec.journal),
    )
    control.send(("ready", executor.worker_id))  # start-up is over: exits are no longer its
    logger.info("worker process {worker} started", worker=executor.worker_id)
    failing = False  # the last round ended in an error: say so when the store is back
    report_at = time.monotonic() + REPORT_INTERVAL
    try:
        while not (stop.is_set() or terminated):
            try:
                ran = executor.run_next()
                if time.monotonic() >= report_at:
                    report_at = time.monotonic() + REPORT_INTERVAL
                    _report(control, executor)
                if failing:
                    logger.info("worker {id}: the store answers again", id=executor.worker_id)
                    failing = False
                if ran:
                    continue
                if spec.burst and nothing_left(app, executor.flow):
                    break
                # idle: sleep, or (PostgreSQL) until a new job is announced
                wait_for_jobs(app.storage, settings.poll_interval, stop)
            except Exception as exc:  # the store is down, or a bug: log it, keep the process
                logger.opt(exception=not isinstance(exc, StorageError)).error(
                    "worker error: {error}; going on in 1 s", error=str(exc)
                )
                failing = True
                stop.wait(1.0)
    finally:
        _report(control, executor)
        executor.close()
        app.close()
        logger.info("worker process {worker} stopped", worker=executor.worker_id)
        logger.complete()
        flush_forwarded()


def _warm_up() -> None:
    """Load the installed plugins and jobs (entry points) while the supervisor sets up.

    What building the app will do first, done while the process waits for its spec: the
    entry points are read and their modules imported (20-35 ms of CPU in the default install),
    so that the app built from the spec finds them loaded. Nothing is kept but the imports and
    the metadata's caches; any error is left for the app's own build to report.
    """
    from jobkit.plugins import get_plugin_manager
    from jobkit.registry import Registry

    with contextlib.suppress(BaseException):  # a plugin's sys.exit() too: the build repeats it
        get_plugin_manager()
        Registry().load_entry_points()


def _report(control: Connection, executor: Executor) -> None:
    """Tell the supervisor how the attempts since the last report ended (for throughput)."""
    if executor.outcomes:
        counts = {kind.value: n for kind, n in executor.outcomes.items()}
        executor.outcomes.clear()
        with contextlib.suppress(OSError, ValueError):  # the supervisor is gone
            control.send(("outcomes", counts))
