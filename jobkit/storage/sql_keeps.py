"""Internal: what the SQL backends keep beside the jobs: the worker roster, log lines, counts.

:class:`SQLKeeps` writes the optional capabilities
:class:`~jobkit.storage.capabilities.KeepsWorkers`,
:class:`~jobkit.storage.capabilities.KeepsJobLogs` and
:class:`~jobkit.storage.capabilities.KeepsThroughput` once for SQLite and PostgreSQL: each
method runs a named query of the backend's ``.sql`` file.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from jobkit.records import JobLogLine, WorkerInfo
from jobkit.storage.capabilities import KeepsJobLogs, KeepsThroughput, KeepsWorkers
from jobkit.storage.rows import job_key


class NamedQueries(abc.ABC):
    """What the SQL capabilities run on: the store's clock, its bound times, its named queries."""

    @abc.abstractmethod
    def now(self) -> datetime:
        """The store's clock."""

    @abc.abstractmethod
    def _time(self, value: datetime) -> Any:
        """A time as the backend binds it."""

    @abc.abstractmethod
    def _named(self, operation: str, name: str, params: Mapping[str, Any]) -> list[Any]:
        """Run the named query of the backend's ``.sql`` file in one transaction.

        Its rows (none for a write).
        """


class SQLKeeps(NamedQueries, KeepsWorkers, KeepsJobLogs, KeepsThroughput):
    """The worker roster, the jobs' log lines and the throughput counts, as named queries.

    A backend supplies how a named query runs (:meth:`_named`, :meth:`_named_many`) and how
    a time is bound (:meth:`_time`) and read back (:meth:`_read_time`).
    """

    @abc.abstractmethod
    def _read_time(self, value: Any) -> datetime:
        """A stored time as a datetime."""

    def _worker_params(self, worker: WorkerInfo) -> dict[str, Any]:
        return {**attrs.asdict(worker), "started_at": self._time(worker.started_at),
                "last_seen_at": self._time(worker.last_seen_at)}

    def register_worker(self, worker: WorkerInfo) -> None:
        """Record a worker process that has started (or update it)."""
        self._named(f"register worker {worker.worker_id}", "register_worker",
                    self._worker_params(worker))

    def beat_workers(self, worker_ids: list[str]) -> None:
        """Mark these worker processes as seen now."""
        now = self._time(self.now())
        for worker_id in worker_ids:  # a handful per supervisor
            self._named("beat workers", "beat_worker", {"worker_id": worker_id, "now": now})

    def remove_worker(self, worker_id: str) -> None:
        """Forget a worker process that has stopped."""
        self._named(f"remove worker {worker_id}", "remove_worker", {"worker_id": worker_id})

    def forget_workers(self, seen_before: datetime) -> int:
        """Forget worker processes not seen since ``seen_before``."""
        before = len(self.list_workers())
        self._named("forget lost workers", "forget_workers",
                    {"seen_before": self._time(seen_before)})
        return before - len(self.list_workers())

    def list_workers(self) -> list[WorkerInfo]:
        """The worker processes known, by host, supervisor and id."""
        return [
            WorkerInfo(
                worker_id=row["worker_id"], hostname=row["hostname"], pid=row["pid"],
                supervisor_pid=row["supervisor_pid"],
                started_at=self._read_time(row["started_at"]),
                last_seen_at=self._read_time(row["last_seen_at"]),
            )
            for row in self._named("list workers", "list_workers", {})
        ]

    @abc.abstractmethod
    def _named_many(self, operation: str, name: str, rows: list[Mapping[str, Any]]) -> None:
        """Run the named write once per row, in one transaction."""

    def add_job_logs(self, job_id: str, lines: list[JobLogLine]) -> None:
        """Keep lines the job logged, in one transaction (nothing for an unknown id)."""
        key = job_key(job_id)
        if key is None or not lines:
            return
        self._named_many(f"keep the log lines of job {job_id}", "add_job_log", [
            {"job_id": key, "attempt": line.attempt, "at": self._time(line.at),
             "level": line.level, "message": line.message} for line in lines])

    def job_logs(self, job_id: str) -> list[JobLogLine]:
        """The lines the job logged, oldest first."""
        key = job_key(job_id)
        if key is None:
            return []
        rows = self._named(f"read the log lines of job {job_id}", "job_logs", {"job_id": key})
        return [JobLogLine(row["attempt"], self._read_time(row["at"]), row["level"],
                           row["message"]) for row in rows]

    def add_throughput(self, minute: datetime, succeeded: int, failed: int) -> None:
        """Add to the counts of ``minute`` (one upsert)."""
        self._named("record the throughput", "add_throughput",
                    {"minute": self._time(minute), "succeeded": succeeded, "failed": failed})

    def throughput(self, since: datetime) -> list[tuple[datetime, int, int]]:
        """``(minute, succeeded, failed)`` from ``since``, oldest first."""
        rows = self._named("read the throughput", "throughput", {"since": self._time(since)})
        return [(self._read_time(row["minute"]), row["succeeded"], row["failed"])
                for row in rows]

    def forget_throughput(self, before: datetime) -> None:
        """Forget the counts of minutes before ``before``."""
        self._named("forget old throughput", "forget_throughput", {"before": self._time(before)})
