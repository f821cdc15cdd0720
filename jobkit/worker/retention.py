"""Internal: retention, the deletion of old finished jobs by a worker, in the background.

Each ``jobkit worker`` (its supervisor, not each process) runs one :class:`Retainer` thread.
Every few minutes it deletes, for each final status whose ``retention:`` is not ``forever``,
the jobs that finished longer ago, with their attempts and log lines (``Storage.prune``, one
status at a time). It deletes in small batches, each its own short transaction, and pauses
after each one so that batches take at most :data:`SHARE` of the time (19 times as long as
the batch took, at least :data:`PAUSE`): claims (SQLite has one writer) wait for one batch at
most, and a worker beside a pass over a million old jobs kept its rate within the measure's
noise (medians 0.92 and 1.04 on SQLite, 1.03 on PostgreSQL: ``bench/retention_drain.py``; a
pause of just the batch's length cost 16 % on SQLite).

Several workers pruning at once are harmless: each batch deletes the rows that still match,
and a row deleted by another worker is simply not counted. Their passes are spread at random.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from loguru import logger

from jobkit.exceptions import StorageError

if TYPE_CHECKING:
    from jobkit.config import Retention
    from jobkit.storage.base import Storage

#: Seconds between two passes of one worker (spread by up to a fifth either way).
INTERVAL = 300.0
#: Seconds after the worker starts before its first pass (spread by up to a half).
FIRST_PASS = 30.0
#: Jobs deleted per transaction.
BATCH_SIZE = 500
#: The shortest pause between two batches, in seconds.
PAUSE = 0.05
#: The most of the time a pass spends in its batches (each a write transaction): after a batch
#: it pauses until the batch is this share of the batch and the pause together.
SHARE = 0.05


class _Stopped(Exception):
    """The worker is stopping: the pass ends after the batch it was in."""


class Retainer:
    """Deletes the finished jobs that ``retention`` no longer keeps, from a thread of its own."""

    def __init__(
        self,
        storage: Callable[[], Storage],
        retention: Retention,
        *,
        interval: float = INTERVAL,
        first_pass: float = FIRST_PASS,
        batch_size: int = BATCH_SIZE,
        pause: float = PAUSE,
        share: float = SHARE,
    ) -> None:
        self._storage = storage
        self.retention = retention
        self.interval, self.first_pass = interval, first_pass
        self.batch_size, self.pause, self.share = batch_size, pause, share
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._batch_started = 0.0

    def start(self) -> None:
        """Start the thread (nothing to do when every status is kept forever)."""
        if not self.retention.cutoffs(datetime.now(timezone.utc)):  # the store is not asked
            return
        self._thread = threading.Thread(target=self._loop, name="jobkit-retention", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread: a pass ends after its current batch."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_once(self) -> int:
        """One pass: delete what the retention no longer keeps, status by status; how many."""
        storage = self._storage()
        deleted = {}
        for status, cutoff in self.retention.cutoffs(storage.now()).items():
            self._batch_started = time.monotonic()
            deleted[status] = storage.prune(cutoff, batch_size=self.batch_size,
                                            progress=self._between_batches, statuses={status})
        total = sum(deleted.values())
        if total:
            logger.info("retention: deleted {total} finished job(s) ({detail}; kept: {kept})",
                        total=total, kept=self.retention.describe(),
                        detail=", ".join(f"{n} {status.value}"
                                         for status, n in deleted.items() if n))
        return total

    def _between_batches(self, _total: int) -> None:
        """Pause after a batch so that batches take ``share`` of the time; stop when asked to."""
        took = time.monotonic() - self._batch_started
        if self._stop.wait(max(self.pause, took * (1 - self.share) / self.share)):
            raise _Stopped
        self._batch_started = time.monotonic()

    def _loop(self) -> None:
        wait = self.first_pass * random.uniform(0.5, 1.5)
        while not self._stop.wait(wait):
            try:
                self.run_once()
            except _Stopped:
                return
            except StorageError as exc:
                logger.warning("retention: could not delete old jobs: {error}", error=str(exc))
            except Exception:  # a bug here must not end the thread for good
                logger.opt(exception=True).error("retention: deleting old jobs failed")
            wait = self.interval * random.uniform(0.8, 1.2)
