"""Internal: jobs finished per minute, counted for the dashboard's chart.

Worker processes report how their attempts ended; their supervisor adds the counts to the
store's minute once a second.

Counting where the outcome is recorded (a worker process) and writing once a second per
supervisor costs a busy worker nothing measurable, where a write per job would cost a commit,
and an index on finishing times would slow every completion (5-8 % of a SQLite drain). The
counts cover the attempts that workers record (:mod:`jobkit.transitions` counts them): jobs
taken back after their lease ran out (failed past ``max_crashes``) are not in the chart.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from loguru import logger

from jobkit.exceptions import StorageError
from jobkit.records import EventKind
from jobkit.storage.capabilities import throughput_of

if TYPE_CHECKING:
    from jobkit.storage.base import Storage

#: Minutes kept in the store.
KEEP = timedelta(days=7)
#: The events counted as succeeded, and as failed attempts.
SUCCEEDED = frozenset({EventKind.SUCCEEDED.value})
FAILED = frozenset({EventKind.FAILED.value, EventKind.RETRYING.value})


def minute_of(when: datetime) -> datetime:
    """The start of ``when``'s minute."""
    return when.replace(second=0, microsecond=0)


class Tally:
    """A supervisor's counts, flushed to the store's current minute by :meth:`flush`."""

    def __init__(self, store: Callable[[], Storage]) -> None:
        self._store = store
        self._pending: collections.Counter[str] = collections.Counter()
        self._last_prune: datetime | None = None

    def add(self, outcomes: Mapping[str, int]) -> None:
        """Counts a worker process reported (event kind -> attempts)."""
        self._pending.update(outcomes)

    def flush(self) -> None:
        """Add what was counted to the store (the supervisor does this every second).

        What cannot be written now is kept for the next flush.
        """
        succeeded = sum(self._pending[kind] for kind in SUCCEEDED)
        failed = sum(self._pending[kind] for kind in FAILED)
        storage = self._store()
        try:
            now = storage.now()
            if succeeded or failed:
                throughput_of(storage).add_throughput(minute_of(now), succeeded, failed)
                self._pending.clear()
            if self._last_prune is None or now - self._last_prune > timedelta(hours=1):
                self._last_prune = now
                throughput_of(storage).forget_throughput(now - KEEP)
        except StorageError as exc:
            logger.warning("could not record the throughput: {error}", error=str(exc))
