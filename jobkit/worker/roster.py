"""Internal: the supervisor's worker processes, as the job store lists them for the dashboard.

A process is registered once it says it is ready, beaten every second (with the supervisor's
other upkeep) and removed when it stops; the rows of a supervisor that died without a word stop
being beaten and are forgotten after :data:`FORGET_AFTER`. The store being down never stops the
supervisor: each failure is logged and the next beat tries again.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from loguru import logger

from jobkit.exceptions import StorageError
from jobkit.records import WorkerInfo
from jobkit.storage.capabilities import workers_of

if TYPE_CHECKING:
    from jobkit.storage.base import Storage

#: Rows not beaten for this long are forgotten (their supervisor died without removing them).
FORGET_AFTER = timedelta(days=1)
#: Seconds between two sweeps for such rows.
SWEEP_INTERVAL = 60.0


class Roster:
    """Registers, beats and removes one supervisor's worker processes in the store."""

    def __init__(self, store: Callable[[], Storage]) -> None:
        self._store = store  # the app's store, opened when first needed
        self.hostname = socket.gethostname()
        self._registered: set[str] = set()
        self._next_sweep = 0.0

    @property
    def storage(self) -> Storage:
        """The store the processes are listed in."""
        return self._store()

    def joined(self, worker_id: str, pid: int) -> bool:
        """A worker process is ready: list it; whether that worked (else try again later)."""

        def register() -> None:
            now = self.storage.now()  # PostgreSQL's clock: a query, that may fail too
            info = WorkerInfo(worker_id, self.hostname, pid, os.getpid(), now, now)
            workers_of(self.storage).register_worker(info)

        if self._try(f"register worker process {worker_id}", register):
            self._registered.add(worker_id)
            return True
        return False

    def left(self, worker_id: str) -> None:
        """A worker process has stopped (or died)."""
        if worker_id in self._registered and self._try(
            f"remove worker process {worker_id}",
            lambda: workers_of(self.storage).remove_worker(worker_id),
        ):
            self._registered.discard(worker_id)

    def beat(self, alive: list[str]) -> None:
        """Every second: the live processes were seen now; now and then, forget lost rows."""
        ids = [worker_id for worker_id in alive if worker_id in self._registered]
        if ids:
            self._try("beat worker processes", lambda: workers_of(self.storage).beat_workers(ids))
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + SWEEP_INTERVAL
            self._try("forget lost worker processes",
                      lambda: workers_of(self.storage).forget_workers(
                          self.storage.now() - FORGET_AFTER))

    def _try(self, what: str, action: Callable[[], object]) -> bool:
        try:
            action()
            return True
        except StorageError as exc:
            logger.warning("could not {what}: {error}", what=what, error=str(exc))
            return False
