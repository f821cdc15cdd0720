"""Internal: the supervisor's scheduler thread, which fires the schedules of ``jobs.yaml``.

There is no leader: every ``jobkit worker`` (its supervisor, one thread per worker, not per
process) fires every enabled schedule when its next tick is due, through the store's
``schedules`` capability, which stores each tick once however many workers race
(:class:`~jobkit.storage.capabilities.KeepsSchedules`). A worker that was down, or killed,
loses nothing: the store keeps the newest tick handled, and the next firing by any worker
catches up as the schedule's ``catch_up`` says.

The thread sleeps until the next due tick, :data:`MAX_SLEEP` seconds at most (or the poll
interval, when longer), so that a machine clock set forward is noticed soon. It reads the
store's clock (the database's, for PostgreSQL) only when a tick is due by its own clock
corrected by the last difference it saw, so an idle scheduler costs the store nothing. A store
that fails (down, or its clock unreadable) is said once, then tried again every
:data:`RETRY_AFTER` seconds; nothing that fails ends the thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from loguru import logger

from jobkit.records import utcnow
from jobkit.storage.capabilities import schedules_store

if TYPE_CHECKING:
    from jobkit.app import JobKit
    from jobkit.schedules import Schedule

#: Seconds before a schedule whose firing failed (the store is down) is fired again.
RETRY_AFTER = 1.0
#: Seconds the thread sleeps at most, when no tick is due sooner (unless the poll is longer).
MAX_SLEEP = 1.0


def check_schedules(app: JobKit) -> list[Schedule]:
    """The enabled schedules of ``app``; ``StorageError`` if its store cannot fire them."""
    enabled = [schedule for _, schedule in sorted(app.config.schedules.items())
               if schedule.enabled]
    if enabled:
        names = ", ".join(schedule.name for schedule in enabled)
        schedules_store(app.storage, f"fire the schedules of the configuration ({names})")
    return enabled


class Scheduler:
    """Fires ``schedules`` through ``app`` in a thread of its own until stopped."""

    def __init__(self, app: JobKit, schedules: list[Schedule], poll_interval: float, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.app = app
        #: This machine's clock (tests give the store's).
        self.clock = clock
        self.schedules = schedules
        self.poll_interval = poll_interval
        #: When each schedule is next due, on the store's clock (absent: fire at once).
        self._next: dict[str, datetime] = {}
        #: The store's clock minus this machine's, as last read.
        self._offset = timedelta(0)
        #: What failed the last time it was tried (a schedule's name; None: the store's clock).
        self._failing: set[str | None] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (nothing to do without a schedule)."""
        if self.schedules and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="jobkit-scheduler",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Fire nothing more; wait up to ``timeout`` seconds for a firing under way."""
        self._stop.set()
        if self._thread is not None and timeout:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.fire_due()
            except Exception:  # a bug here must not end the thread and every schedule
                logger.opt(exception=True).error("firing the schedules failed")
                wait = RETRY_AFTER
            self._stop.wait(wait)

    def fire_due(self) -> float:
        """Fire each schedule due now; the seconds until the next is due (bounded)."""
        estimate = self.clock() + self._offset
        due = [schedule for schedule in self.schedules
               if schedule.name not in self._next or self._next[schedule.name] <= estimate]
        if due:
            try:
                now = self.app.storage.now()
            except Exception as exc:  # the store is down: said once, tried again
                self._failed(None, "schedules: could not read the store's clock: {error}", exc)
                return RETRY_AFTER
            self._failing.discard(None)
            self._offset = now - self.clock()
            for schedule in due:
                if self._stop.is_set():
                    break
                self._next[schedule.name] = self._fire(schedule, now)
            estimate = self.clock() + self._offset
        soonest = min(self._next.values(), default=estimate)
        longest = max(self.poll_interval, MAX_SLEEP)
        return max(0.0, min(longest, (soonest - estimate).total_seconds()))

    def _failed(self, key: str | None, message: str, exc: Exception) -> None:
        """Log ``message`` (with ``{error}``) unless ``key`` failed the last time too."""
        if key not in self._failing:
            logger.warning(message, error=str(exc))
        self._failing.add(key)

    def _fire(self, schedule: Schedule, now: datetime) -> datetime:
        """Fire one schedule; when to fire it next."""
        try:
            records = self.app.fire_schedule(schedule)
        except Exception as exc:  # the store is down, or the job cannot be made: said once
            self._failed(schedule.name, f"schedule {schedule.name}: could not fire: {{error}}",
                         exc)
            return now + timedelta(seconds=RETRY_AFTER)
        self._failing.discard(schedule.name)
        for record in records:
            logger.debug("schedule {name}: stored job {id}", name=schedule.name, id=record.id)
        return schedule.next_tick(now)
