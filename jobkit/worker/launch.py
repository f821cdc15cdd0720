"""Internal: starting worker processes, ahead of the supervisor's own set-up if asked.

A worker process is started *blank* (:func:`boot`): it imports the worker's modules, then
waits on its control pipe for its :class:`~jobkit.worker.process.ChildSpec` (the configuration
it rebuilds the app from), which the supervisor sends once its own set-up is done. ``jobkit
worker`` starts spawned processes this way right after reading the configuration
(:meth:`Starter.prestart`), so that they start and import while the supervisor builds its app,
sets up logging, checks the configuration and opens the store, instead of after all that. A
process that gets no spec (the supervisor stopped at a start-up error) exits without doing
anything.

How it starts (:func:`start_method`): started ahead on Linux, while the supervisor runs one
thread and has opened nothing (``jobkit worker`` starts them so once its app is built), it is
*forked*: it has jobkit, the worker and the app's plugins and jobs imported already and no
interpreter to start, about 150 ms of CPU less per process. Else, and on macOS and Windows
always, it is *spawned*, a new interpreter that imports what it needs (forking a process that
runs threads can leave a lock held for ever in the child, a SQLite connection must not cross a
fork, macOS's system libraries do not support forking without exec, and Windows cannot fork); a
process started again later is always spawned. See docs/decisions.md, "Worker processes: forked
on Linux while the supervisor is one thread".

This module imports only the standard library: ``jobkit worker`` imports it before anything else
of the worker.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from jobkit.config import WorkerSettings


def process_count(concurrency: int | None, settings: WorkerSettings) -> int:
    """How many worker processes: ``concurrency``, else ``worker.concurrency``, else CPUs."""
    return concurrency or settings.concurrency or os.cpu_count() or 1


def process_name(index: int) -> str:
    """The name of worker process ``index`` (in the supervisor's log lines)."""
    return f"jobkit-worker-{index}"


#: The supervisor's ends of the pipes of the processes it started: a forked process inherits
#: them and closes them first (:func:`boot`), or the supervisor's death would not close its
#: control pipe (nor would another process's).
_SUPERVISOR_ENDS: list[Connection] = []


def start_method() -> str:
    """How a process started ahead starts: ``fork`` on Linux while this process is one thread.

    ``spawn`` otherwise (see the module's docstring).
    """
    if sys.platform == "linux" and threading.active_count() == 1:
        return "fork"
    return "spawn"


def boot(logs: Connection, control: Connection) -> None:
    """The target of a worker process: its body, imported in the process, not before.

    A forked process first closes the supervisor's ends of every pipe it inherited (a spawned
    one inherits none).
    """
    inherited, _SUPERVISOR_ENDS[:] = list(_SUPERVISOR_ENDS), []
    for end in inherited:
        end.close()
    from jobkit.worker.process import process_main

    process_main(logs, control)


class Started(NamedTuple):
    """A worker process started and waiting for its spec, as its supervisor holds it."""

    process: BaseProcess
    #: Both ways: the spec, then stop and hand-back messages; ready and outcome reports back.
    control: Connection
    #: The process's log records (read by :func:`jobkit.worker.logpipe.relay`).
    logs: Connection


class Starter:
    """Starts blank worker processes, at once (:meth:`prestart`) or when asked (:meth:`take`)."""

    def __init__(self) -> None:
        self._waiting: dict[int, Started] = {}

    def prestart(self, count: int) -> None:
        """Start the processes of indexes ``0 .. count - 1`` now; :meth:`take` hands them out.

        Called before this process opens anything (a store, a log file): such a process
        forks them where it may (:func:`start_method`).
        """
        for index in range(count):
            if index not in self._waiting:
                self._waiting[index] = self._start(index, start_method())

    def take(self, index: int) -> Started:
        """The process started ahead for ``index``, else a new one (spawned).

        A new one is never forked: the supervisor has its store open by then (a SQLite
        connection must not cross a fork), and threads running.
        """
        started = self._waiting.pop(index, None)
        return started if started is not None else self._start(index, "spawn")

    def _start(self, index: int, method: str) -> Started:
        context = (multiprocessing.get_context("fork") if method == "fork"
                   else multiprocessing.get_context("spawn"))
        ours, theirs = context.Pipe()
        logs, child_logs = context.Pipe(duplex=False)
        process = context.Process(
            target=boot, args=(child_logs, theirs), name=process_name(index), daemon=False
        )
        # before the fork, its own ends too (a closed one closes nothing: it is left out)
        _SUPERVISOR_ENDS[:] = [end for end in _SUPERVISOR_ENDS if not end.closed]
        _SUPERVISOR_ENDS.extend((ours, logs))
        process.start()
        theirs.close()
        child_logs.close()  # the process holds the only writing end: its death ends the relay
        return Started(process, ours, logs)

    def close(self, timeout: float = 5.0) -> None:
        """End the processes started ahead that were never taken (the supervisor did not start).

        Closing its pipe tells a process waiting for its spec to exit; one still starting is
        ended with SIGTERM, before it has done anything.
        """
        waiting, self._waiting = list(self._waiting.values()), {}
        for started in waiting:
            started.control.close()
            started.logs.close()
            started.process.terminate()
        for started in waiting:
            started.process.join(timeout)
            if started.process.is_alive():
                started.process.kill()
                started.process.join(timeout)
