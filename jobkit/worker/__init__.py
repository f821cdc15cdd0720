"""The worker: a supervisor, its worker processes, and what runs one job in them.

Import from this package: :class:`Worker` (what ``jobkit worker`` runs) and
:func:`run_until_empty` (runs jobs in this thread until none is left, for tests and scripts); its
modules are internal. ``worker_id``, ``nothing_left`` and ``requeue_expired`` stay importable
from here, as they were before the package was split, but are internal helpers.

Parts, one file each: :mod:`~jobkit.worker.supervisor` (starts, watches and stops the processes),
:mod:`~jobkit.worker.launch` (starts a process, ahead of the supervisor's set-up if asked),
:mod:`~jobkit.worker.process` (the loop of one worker process, and :func:`run_until_empty`),
:mod:`~jobkit.worker.executor` (claims and runs jobs), :mod:`~jobkit.worker.monitor` (watches a
running attempt), :mod:`~jobkit.worker.interrupt` (stops a job's code),
:mod:`~jobkit.worker.journal` (a process's crash journal), :mod:`~jobkit.worker.logpipe` (a
process's log lines to the supervisor), :mod:`~jobkit.worker.roster` (the processes as the store
lists them) and :mod:`~jobkit.worker.throughput` (jobs finished per minute).

The names are imported on first use (PEP 562): ``jobkit worker`` starts its processes from
:mod:`~jobkit.worker.launch` before it imports the rest of the worker, and a process it starts
imports only what it runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobkit.worker.process import nothing_left, requeue_expired, run_until_empty, worker_id
    from jobkit.worker.supervisor import Worker

__all__ = ["Worker", "nothing_left", "requeue_expired", "run_until_empty", "worker_id"]

#: Where each name of :data:`__all__` is defined.
_HOMES = {
    "Worker": "jobkit.worker.supervisor",
    "nothing_left": "jobkit.worker.process",
    "requeue_expired": "jobkit.worker.process",
    "run_until_empty": "jobkit.worker.process",
    "worker_id": "jobkit.worker.process",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module the first time it is asked for."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
