"""Internal: starting worker processes, ahead of the supervisor's own set-up if asked.

A worker process is started *blank* (``multiprocessing``'s spawn method, :func:`boot`): it
imports jobkit and the worker's modules, then waits on its control pipe for its
:class:`~jobkit.worker.process.ChildSpec` (the configuration it rebuilds the app from), which
the supervisor sends once its own set-up is done. ``jobkit worker`` starts its processes this way
right after reading the configuration (:meth:`Starter.prestart`), so that their interpreters
start and import while the supervisor builds its app, sets up logging, checks the configuration
and opens the store, instead of after all that. A process that gets no spec (the supervisor
stopped at a start-up error) exits without doing anything.

This module imports only the standard library: ``jobkit worker`` imports it before anything else
of the worker.
"""

from __future__ import annotations

import multiprocessing
import os
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


def boot(logs: Connection, control: Connection) -> None:
    """The target of a worker process: its body, imported in the process, not before."""
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
        self._context = multiprocessing.get_context("spawn")
        self._waiting: dict[int, Started] = {}

    def prestart(self, count: int) -> None:
        """Start the processes of indexes ``0 .. count - 1`` now; :meth:`take` hands them out."""
        for index in range(count):
            if index not in self._waiting:
                self._waiting[index] = self._start(index)

    def take(self, index: int) -> Started:
        """The process started ahead for ``index``, else a new one."""
        started = self._waiting.pop(index, None)
        return started if started is not None else self._start(index)

    def _start(self, index: int) -> Started:
        ours, theirs = self._context.Pipe()
        logs, child_logs = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=boot, args=(child_logs, theirs), name=process_name(index), daemon=False
        )
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
