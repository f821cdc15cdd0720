"""The JSON-ready form of a ``JobEvent`` that notifiers send."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jobkit.records import JobEvent, JobRecord


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def job_payload(job: JobRecord) -> dict[str, Any]:
    """The public fields of a job record; params are already masked by jobkit."""
    return {
        "id": job.id,
        "name": job.name,
        "method": job.method,
        "params": job.params,
        "status": str(job.status),
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "result": job.result,
        "error": job.error,
        "created_at": _iso(job.created_at),
        "available_at": _iso(job.available_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
    }


def event_payload(event: JobEvent) -> dict[str, Any]:
    """``{"kind", "at", "error", "job": {...}}`` for one event."""
    return {
        "kind": str(event.kind),
        "at": event.at.isoformat(),
        "error": event.error,
        "job": job_payload(event.job),
    }
