"""Internal: a schedule as people and scripts read it, in ``jobkit schedules`` and the dashboard.

:func:`schedule_json` is the one JSON shape of ``jobkit schedules --json`` and of the dashboard's
``/api/schedules``; :func:`state_of` and :func:`job_of` are the words both show.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from jobkit.masking import mask_secrets

if TYPE_CHECKING:
    from jobkit.schedules import ScheduleView


def state_of(view: ScheduleView) -> str:
    """``disabled`` (``enabled: false`` in jobs.yaml), ``paused`` (in the store) or ``active``."""
    if not view.schedule.enabled:
        return "disabled"
    return "paused" if view.paused else "active"


def job_of(view: ScheduleView) -> str:
    """What the schedule runs: ``Report.build``."""
    return f"{view.schedule.job}.{view.schedule.method}"


def iso(when: datetime | None) -> str | None:
    """A time as ISO 8601 text, or ``None``."""
    return None if when is None else when.isoformat()


def schedule_json(view: ScheduleView) -> dict[str, Any]:
    """One schedule as JSON-ready data: its settings (params' secrets masked) and its state.

    ``every_seconds`` is ``null`` for a cron schedule, ``cron`` for an interval; times are ISO
    8601 in UTC, ``null`` when there is none (never run; paused or disabled: no next run).
    """
    schedule = view.schedule
    every = schedule.every
    return {
        "name": schedule.name,
        "job": schedule.job,
        "method": schedule.method,
        "params": mask_secrets(dict(schedule.params)),
        "when": schedule.describe(),
        "cron": schedule.cron,
        "every_seconds": None if every is None else int(every.total_seconds()),
        "timezone": schedule.timezone,
        "queue": schedule.queue,
        "priority": schedule.priority,
        "enabled": schedule.enabled,
        "catch_up": schedule.catch_up,
        "overlap": schedule.overlap,
        "state": state_of(view),
        "paused": view.paused,
        "last_run_at": iso(view.last_run_at),
        "next_run_at": iso(view.next_run_at),
        "last_job_id": view.last_job_id,
    }
