"""Internal: the ``schedules`` capability of the SQL backends: ticks fired once, by a key.

:class:`SQLSchedules` writes :class:`~jobkit.storage.capabilities.KeepsSchedules` once for
SQLite and PostgreSQL, each step a named query of the backend's ``.sql`` file. A firing is one
transaction: the schedule's state row is locked (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL:
``SELECT ... FOR UPDATE``), the due ticks after its newest handled one are planned, and each
tick run stores its job and a run row keyed ``(schedule, tick)``: a primary key, so that even
a firing that somehow read a stale state could not store a tick twice (it fails, and stores
nothing).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from jobkit.records import JobRecord, NewJob
from jobkit.schedules import Schedule, ScheduleState
from jobkit.storage.capabilities import KeepsSchedules
from jobkit.storage.sql_keeps import NamedQueries

T = TypeVar("T")


class SQLSchedules(NamedQueries, KeepsSchedules):
    """Schedule states and runs as named queries (``schedule_state``, ``add_schedule_run`` ...).

    A backend supplies its transaction (:meth:`_transaction`), a named query inside it
    (:meth:`_one`), its clock inside it (:meth:`_now_in`), how times are bound and read, and the
    inserts of :class:`~jobkit.storage.sql.SQLStorage` (:meth:`_new_job`, :meth:`_insert_in`,
    :meth:`_unique_holder_in`).
    """

    @abc.abstractmethod
    def _transaction(self, operation: str, work: Callable[[Any], T]) -> T:
        """Run ``work(connection or cursor)`` in one transaction."""

    @abc.abstractmethod
    def _one(self, db: Any, name: str, params: Mapping[str, Any]) -> Any:
        """The first row of the named query, run inside the caller's transaction."""

    @abc.abstractmethod
    def _now_in(self, db: Any) -> datetime:
        """The store's clock, read inside the caller's transaction (aware, UTC)."""

    @abc.abstractmethod
    def _read_time(self, value: Any) -> datetime:
        """A stored time as a datetime."""

    @abc.abstractmethod
    def _new_job(self, job: NewJob) -> dict[str, Any]:
        """The parameters of the ``enqueue`` query (all but ``now``)."""

    @abc.abstractmethod
    def _insert_in(self, db: Any, job: NewJob, row: dict[str, Any], now: Any) -> JobRecord:
        """Insert one job inside the caller's transaction."""

    @abc.abstractmethod
    def _unique_holder_in(self, db: Any, unique_key: str, within: float | None,
                          now: Any) -> JobRecord | None:
        """The job holding ``unique_key``, if any (the backend locks the key first)."""

    def _stored_time(self, value: Any) -> datetime | None:
        return None if value is None else self._read_time(value)

    def fire_schedule(self, schedule: Schedule, job: NewJob) -> list[JobRecord]:
        """Fire ``schedule``'s due ticks in one transaction (see :class:`KeepsSchedules`)."""
        row = self._new_job(job)
        name = schedule.name

        def work(db: Any) -> list[JobRecord]:
            now = self._now_in(db)
            bound_now = self._time(now)
            self._one(db, "schedule_seen", {"name": name, "now": bound_now})
            state = self._one(db, "schedule_state", {"name": name})
            handled = self._stored_time(state["last_tick"]) or self._read_time(state["since"])
            plan = schedule.plan(handled, now)
            if plan.newest is None:
                return []
            ticks = plan.ticks
            if state["paused"] or (schedule.overlap == "skip" and ticks and self._one(
                    db, "schedule_busy", {"name": name}) is not None):
                ticks = ()
            stored: list[JobRecord] = []
            last_run = self._stored_time(state["last_run_at"])
            for tick in ticks:
                if job.unique_key is not None and self._unique_holder_in(
                        db, job.unique_key, job.unique_for, bound_now) is not None:
                    continue
                record = self._insert_in(db, job, dict(row), bound_now)
                self._one(db, "add_schedule_run", {
                    "name": name, "tick": self._time(tick), "job_id": int(record.id)})
                stored.append(record)
                last_run = tick
                if schedule.overlap == "skip":
                    break  # its run is pending now: the later ticks would overlap it
            self._one(db, "schedule_handled", {
                "name": name, "last_tick": self._time(plan.newest),
                "last_run_at": None if last_run is None else self._time(last_run)})
            return stored

        return self._transaction(f"fire schedule {name!r}", work)

    def _set_schedule_paused(self, name: str, paused: bool) -> bool:
        def work(db: Any) -> bool:
            now = self._time(self._now_in(db))
            self._one(db, "schedule_seen", {"name": name, "now": now})
            changed = self._one(db, "set_schedule_paused",
                                {"name": name, "paused": paused, "now": now})
            return changed is not None

        return self._transaction(f"{'pause' if paused else 'resume'} schedule {name!r}", work)

    def pause_schedule(self, name: str) -> bool:
        """Pause schedule ``name``; whether it was not paused before."""
        return self._set_schedule_paused(name, True)

    def resume_schedule(self, name: str) -> bool:
        """Resume schedule ``name``; whether it was paused before."""
        return self._set_schedule_paused(name, False)

    def schedule_states(self) -> dict[str, ScheduleState]:
        """Every schedule seen, by name, with the job of its last run (if still stored)."""
        rows = self._named("read the schedules", "schedule_states", {})
        return {row["name"]: ScheduleState(
            name=row["name"], paused=bool(row["paused"]),
            last_tick=self._stored_time(row["last_tick"]),
            last_run_at=self._stored_time(row["last_run_at"]),
            last_job_id=None if row["job_id"] is None else str(row["job_id"]),
            since=self._read_time(row["since"])) for row in rows}

    def schedule_runs(self, name: str, limit: int = 20) -> list[tuple[datetime, str]]:
        """``(tick, job id)`` of schedule ``name``'s runs, newest first, at most ``limit``."""
        rows = self._named(f"read the runs of schedule {name!r}", "schedule_runs",
                           {"name": name, "limit": max(limit, 0)})
        return [(self._read_time(row["tick"]), str(row["job_id"])) for row in rows]
