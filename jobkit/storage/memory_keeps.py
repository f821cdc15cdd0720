"""Internal: what the in-process store keeps beside its jobs, for the worker and the dashboard.

The worker roster, the jobs' log lines, the throughput counts per minute and the revoked
dashboard sessions of :class:`~jobkit.storage.memory.MemoryStorage`: its optional
capabilities :class:`~jobkit.storage.capabilities.KeepsWorkers`,
:class:`~jobkit.storage.capabilities.KeepsJobLogs`,
:class:`~jobkit.storage.capabilities.KeepsThroughput` and
:class:`~jobkit.storage.capabilities.KeepsSessions`, each a dict behind the store's lock.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import attrs

from jobkit.exceptions import JobNotFoundInStorage
from jobkit.records import JobLogLine, WorkerInfo
from jobkit.storage.capabilities import (
    KeepsJobLogs,
    KeepsSessions,
    KeepsThroughput,
    KeepsWorkers,
)

T = TypeVar("T")


class MemoryKeeps(KeepsWorkers, KeepsJobLogs, KeepsThroughput, KeepsSessions):
    """The roster, log lines, throughput and revoked sessions, in dicts.

    The store calls :meth:`_start_keeping` when it is made and supplies its lock
    (:meth:`_locked`), its clock (:meth:`now`) and its jobs (:meth:`_row`).
    """

    _workers: dict[str, WorkerInfo]
    _throughput: dict[datetime, tuple[int, int]]
    _job_logs: dict[int, builtins.list[JobLogLine]]
    _revoked: dict[str, datetime]

    def _start_keeping(self) -> None:
        """Start with no workers, log lines, counts or revoked sessions."""
        self._workers = {}
        self._throughput = {}
        self._job_logs = {}
        self._revoked = {}

    @abc.abstractmethod
    def _locked(self, operation: str, work: Callable[[], T]) -> T:
        """Run ``work`` under the store's lock; ``StorageError`` once the store is closed."""

    @abc.abstractmethod
    def now(self) -> datetime:
        """The store's clock."""

    @abc.abstractmethod
    def _row(self, job_id: str) -> Any:
        """The stored job with this id (its ``id`` the row's key); ``JobNotFoundInStorage``."""

    def register_worker(self, worker: WorkerInfo) -> None:
        """Record a worker process that has started (or update it)."""
        self._locked("register a worker",
                     lambda: self._workers.__setitem__(worker.worker_id, worker))

    def beat_workers(self, worker_ids: builtins.list[str]) -> None:
        """Mark these worker processes as seen now."""

        def work() -> None:
            for worker_id in worker_ids:
                if worker_id in self._workers:
                    self._workers[worker_id] = attrs.evolve(
                        self._workers[worker_id], last_seen_at=self.now())

        self._locked("beat workers", work)

    def remove_worker(self, worker_id: str) -> None:
        """Forget a worker process that has stopped."""
        self._locked("remove a worker", lambda: self._workers.pop(worker_id, None))

    def forget_workers(self, seen_before: datetime) -> int:
        """Forget worker processes not seen since ``seen_before``."""

        def work() -> int:
            lost = [key for key, w in self._workers.items() if w.last_seen_at < seen_before]
            for key in lost:
                del self._workers[key]
            return len(lost)

        return self._locked("forget lost workers", work)

    def add_job_logs(self, job_id: str, lines: builtins.list[JobLogLine]) -> None:
        """Keep lines the job logged (nothing for an unknown id)."""

        def work() -> None:
            try:
                row = self._row(job_id)
            except JobNotFoundInStorage:
                return
            self._job_logs.setdefault(row.id, []).extend(lines)

        self._locked("keep log lines", work)

    def job_logs(self, job_id: str) -> builtins.list[JobLogLine]:
        """The lines the job logged, oldest first."""

        def work() -> builtins.list[JobLogLine]:
            try:
                return builtins.list(self._job_logs.get(self._row(job_id).id, []))
            except JobNotFoundInStorage:
                return []

        return self._locked("read log lines", work)

    def add_throughput(self, minute: datetime, succeeded: int, failed: int) -> None:
        """Add to the counts of ``minute``."""

        def work() -> None:
            done, bad = self._throughput.get(minute, (0, 0))
            self._throughput[minute] = (done + succeeded, bad + failed)

        self._locked("record the throughput", work)

    def throughput(self, since: datetime) -> builtins.list[tuple[datetime, int, int]]:
        """``(minute, succeeded, failed)`` from ``since``, oldest first."""
        return self._locked("read the throughput", lambda: [
            (minute, done, bad) for minute, (done, bad) in sorted(self._throughput.items())
            if minute >= since])

    def forget_throughput(self, before: datetime) -> None:
        """Forget the counts of minutes before ``before``."""

        def work() -> None:
            for minute in [m for m in self._throughput if m < before]:
                del self._throughput[minute]

        self._locked("forget old throughput", work)

    def revoke_session(self, session_id: str, expires_at: datetime) -> None:
        """Keep the ended session until ``expires_at`` (the store is this object)."""

        def work() -> None:
            now = self.now()
            for ended in [key for key, until in self._revoked.items() if until < now]:
                del self._revoked[ended]
            self._revoked[session_id] = max(expires_at, self._revoked.get(session_id, expires_at))

        self._locked("revoke a dashboard session", work)

    def session_revoked(self, session_id: str) -> bool:
        """Whether the session was ended."""
        return self._locked("check a dashboard session", lambda: session_id in self._revoked)

    def list_workers(self) -> builtins.list[WorkerInfo]:
        """The worker processes known, by host, supervisor and id."""
        return self._locked("list workers", lambda: sorted(
            self._workers.values(), key=lambda w: (w.hostname, w.supervisor_pid, w.worker_id)))

