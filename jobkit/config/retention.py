"""Internal: ``retention:`` of ``jobs.yaml``: how long finished jobs are kept, by status.

``retention: {completed: 7d, failed: 30d, cancelled: 7d}``: each a duration (``30s``, ``15m``,
``12h``, ``7d``, ``2w``) or ``forever``; 14 days when left out. Workers delete the jobs kept
longer (:mod:`jobkit.worker.retention`). Import :class:`Retention` from :mod:`jobkit.config`.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import attrs

from jobkit import limits
from jobkit.config_yaml import Rule, setting
from jobkit.durations import parse_duration, shown
from jobkit.records import JobStatus

#: The retention that keeps jobs for good.
FOREVER = "forever"
#: How long a finished job is kept unless ``retention:`` says otherwise: 14 days.
DEFAULT_RETENTION = 14 * 86400.0
#: A retention: more than 0 seconds, at most 100 years.
RETENTION = limits.Bound(0, limits.PRUNE_AGE.high, above=True, span="100 years")


def _seconds(value: Any) -> float | None:
    """A retention in seconds (``math.inf``: forever), or None when it is none."""
    if isinstance(value, str):
        if value.strip().lower() == FOREVER:
            return math.inf
        try:
            value = parse_duration(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if value == math.inf or RETENTION.accepts(value) else None


#: A retention as the file gives it (a duration or ``forever``), kept in seconds.
RETENTION_RULE = Rule(
    "a duration like 7d, 12h, 30m or 2w (more than 0, at most 100 years), or forever",
    lambda value: _seconds(value) is not None,
    _seconds,
)


@attrs.frozen
class Retention:
    """``retention:``: how long jobs are kept after they finished, by final status.

    Seconds; ``math.inf`` (``forever`` in the file) keeps them. Workers delete older ones in
    the background; ``jobkit prune`` deletes at once."""

    completed: float = setting(DEFAULT_RETENTION, RETENTION_RULE)
    failed: float = setting(DEFAULT_RETENTION, RETENTION_RULE)
    cancelled: float = setting(DEFAULT_RETENTION, RETENTION_RULE)

    def cutoffs(self, now: datetime) -> dict[JobStatus, datetime]:
        """For each status not kept forever: jobs that finished before this time are expired."""
        kept = {JobStatus.COMPLETED: self.completed, JobStatus.FAILED: self.failed,
                JobStatus.CANCELLED: self.cancelled}
        return {status: now - timedelta(seconds=seconds)
                for status, seconds in kept.items() if seconds != math.inf}

    def describe(self) -> str:
        """``completed 7d, failed 30d, cancelled forever``: as the file would say it."""
        return ", ".join(f"{field.name} {_shown(getattr(self, field.name))}"
                         for field in attrs.fields(Retention))


def _shown(seconds: float) -> str:
    """``7d``, ``36h``, ``forever``: a retention as the file would say it."""
    return FOREVER if seconds == math.inf else shown(seconds)
