"""Internal: a job as the in-process store keeps it, params, result and policy as JSON text.

Kept as text, what comes out of :class:`~jobkit.storage.memory.MemoryStorage` is a fresh copy
of what went in, and what SQLite would refuse is refused here too.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import attrs

from jobkit.records import DEFAULT_QUEUE, JobRecord, JobStatus, NewJob, RetryPolicy

T = TypeVar("T")


@attrs.define
class Row:
    """One stored job: the record's fields, with params, result and policy as JSON text."""

    id: int
    name: str
    method: str
    params: str
    status: JobStatus
    priority: int
    attempts: int
    max_attempts: int
    policy: str
    created_at: datetime
    available_at: datetime
    result: str | None = None
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker_id: str | None = None
    lease_expires_at: datetime | None = None
    progress: float | None = None
    progress_message: str | None = None
    crashes: int = 0
    max_crashes: int = 3
    queue: str = DEFAULT_QUEUE
    unique_key: str | None = None

    def record(self) -> JobRecord:
        """A fresh public record of this row: its fields, the JSON texts decoded."""
        return JobRecord(**{
            **attrs.asdict(self, recurse=False),
            "id": str(self.id),
            "params": json.loads(self.params),
            "result": None if self.result is None else json.loads(self.result),
            "policy": RetryPolicy(**json.loads(self.policy)),
        })

    def leave_running(self, status: JobStatus) -> None:
        """Move out of ``running``: the worker and its lease go with it."""
        self.status = status
        self.worker_id = None
        self.lease_expires_at = None



class MemoryPart(abc.ABC):
    """What a capability of the in-process store needs of it: its jobs, lock and clock."""

    _jobs: dict[int, Row]

    @abc.abstractmethod
    def _locked(self, operation: str, work: Callable[[], T]) -> T:
        """Run ``work`` under the store's lock; ``StorageError`` once the store is closed."""

    @abc.abstractmethod
    def now(self) -> datetime:
        """The store's clock."""

    @abc.abstractmethod
    def _encode_new(self, job: NewJob) -> tuple[str, str]:
        """The job's params and policy as JSON text (``StorageError`` when they are not JSON)."""
