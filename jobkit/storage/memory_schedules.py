"""Internal: the in-process store's capability ``schedules``: states and runs in dicts.

:class:`MemorySchedules` is the :class:`~jobkit.storage.capabilities.KeepsSchedules` of
:class:`~jobkit.storage.memory.MemoryStorage`: a state per schedule name and a run per tick
fired, behind the store's lock, with the same rules as the SQL stores.
"""

from __future__ import annotations

import abc
import builtins
from datetime import datetime

import attrs

from jobkit.records import JobRecord, JobStatus, NewJob
from jobkit.schedules import Schedule, ScheduleState
from jobkit.storage.capabilities import KeepsSchedules
from jobkit.storage.memory_rows import MemoryPart

#: The statuses of a run's job that make ``overlap: skip`` drop a new tick.
ACTIVE = frozenset({JobStatus.PENDING, JobStatus.RETRYING, JobStatus.RUNNING})


class MemorySchedules(MemoryPart, KeepsSchedules):
    """Schedule states and runs in dicts, behind the store's lock.

    The store calls :meth:`_start_scheduling` when it is made, :meth:`_forget_runs` when it
    deletes jobs, and supplies its lock, clock, jobs and a way to store one job.
    """

    _schedule_states: dict[str, ScheduleState]
    #: schedule name -> tick -> job id
    _schedule_runs: dict[str, dict[datetime, int]]

    def _start_scheduling(self) -> None:
        """Start with no schedule seen."""
        self._schedule_states = {}
        self._schedule_runs = {}

    @abc.abstractmethod
    def _store_new(self, job: NewJob, params: str, policy: str) -> tuple[JobRecord, bool]:
        """Store one job unless it is a duplicate (under the lock); its record, whether new."""

    def _state(self, name: str, now: datetime) -> ScheduleState:
        """The state of schedule ``name``, made (first seen now) when there is none."""
        state = self._schedule_states.get(name)
        if state is None:
            state = self._schedule_states[name] = ScheduleState(name, since=now)
        return state

    def _active_run(self, name: str) -> bool:
        """Whether a run of schedule ``name`` is pending, retrying or running."""
        return any((row := self._jobs.get(job_id)) is not None and row.status in ACTIVE
                   for job_id in self._schedule_runs.get(name, {}).values())

    def fire_schedule(self, schedule: Schedule, job: NewJob) -> builtins.list[JobRecord]:
        """Fire ``schedule``'s due ticks (see :class:`KeepsSchedules`); the jobs stored."""
        params, policy = self._encode_new(job)

        def work() -> builtins.list[JobRecord]:
            now = self.now()
            state = self._state(schedule.name, now)
            plan = schedule.plan(state.after(now), now)
            if plan.newest is None:
                return []
            ticks = plan.ticks
            if state.paused or (schedule.overlap == "skip" and self._active_run(schedule.name)):
                ticks = ()
            stored: builtins.list[JobRecord] = []
            runs = self._schedule_runs.setdefault(schedule.name, {})
            last_run = state.last_run_at
            for tick in ticks:
                if tick in runs:  # fired already (never, past the newest tick: kept for safety)
                    continue
                record, new = self._store_new(job, params, policy)
                if new:
                    runs[tick] = int(record.id)
                    stored.append(record)
                    last_run = tick
                    if schedule.overlap == "skip":
                        break  # its run is pending now: the later ticks would overlap it
            self._schedule_states[schedule.name] = attrs.evolve(
                state, last_tick=plan.newest, last_run_at=last_run)
            return stored

        return self._locked(f"fire schedule {schedule.name!r}", work)

    def _set_schedule_paused(self, name: str, paused: bool) -> bool:
        def work() -> bool:
            now = self.now()
            state = self._state(name, now)
            if state.paused == paused:
                return False
            # resumed: every tick up to now is handled (the pause's are not run later)
            last_tick = state.last_tick if paused else max(state.after(now), now)
            self._schedule_states[name] = attrs.evolve(state, paused=paused, last_tick=last_tick)
            return True

        return self._locked(f"{'pause' if paused else 'resume'} schedule {name!r}", work)

    def pause_schedule(self, name: str) -> bool:
        """Pause schedule ``name``; whether it was not paused before."""
        return self._set_schedule_paused(name, True)

    def resume_schedule(self, name: str) -> bool:
        """Resume schedule ``name``; whether it was paused before."""
        return self._set_schedule_paused(name, False)

    def schedule_states(self) -> dict[str, ScheduleState]:
        """Every schedule seen, by name, with the job of its last run (if still stored)."""

        def work() -> dict[str, ScheduleState]:
            found = {}
            for name, state in self._schedule_states.items():
                runs = self._schedule_runs.get(name, {})
                job_id = None if state.last_run_at is None else runs.get(state.last_run_at)
                found[name] = attrs.evolve(
                    state, last_job_id=None if job_id is None else str(job_id))
            return found

        return self._locked("read the schedules", work)

    def schedule_runs(self, name: str, limit: int = 20) -> builtins.list[tuple[datetime, str]]:
        """``(tick, job id)`` of schedule ``name``'s runs, newest first, at most ``limit``."""

        def work() -> builtins.list[tuple[datetime, str]]:
            runs = sorted(self._schedule_runs.get(name, {}).items(), reverse=True)
            return [(tick, str(job_id)) for tick, job_id in runs[:max(limit, 0)]]

        return self._locked(f"read the runs of schedule {name!r}", work)

    def _forget_runs(self, job_ids: set[int]) -> None:
        """Drop the runs of these deleted jobs (under the lock)."""
        for runs in self._schedule_runs.values():
            for tick in [tick for tick, job_id in runs.items() if job_id in job_ids]:
                del runs[tick]
