"""A store with the ``Storage`` core alone, made from any store.

What a third party's minimal backend offers, to check that an app, a worker or a page works without
the optional capabilities (:mod:`jobkit.storage.capabilities`).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from datetime import datetime
from typing import Any

from jobkit.exceptions import ConfigError
from jobkit.records import Attempt, AttemptOutcome, JobRecord, JobStatus, Lease, NewJob
from jobkit.storage.base import Storage


class CoreOnlyStorage(Storage):
    """The core of ``inner`` and nothing else.

    Every hook is the inner store's public method, and no capability mixin is inherited, so the
    callers fall back to what the core can do.
    """

    scheme = "coreonly"

    def __init__(self, inner: Storage) -> None:
        super().__init__(clock=inner.now)
        self.inner = inner

    @classmethod
    def from_url(cls, url: str, **options: Any) -> CoreOnlyStorage:
        """``coreonly+<url>``: the core of the store ``<url>`` opens.

        Built-in schemes only, e.g. ``coreonly+sqlite:///jobs.db``.
        """
        from jobkit.plugins import StorageRegistry
        from jobkit.storage import plugin

        prefix = f"{cls.scheme}+"
        if not url.startswith(prefix):
            raise ConfigError(f"storage: {url!r} is not a URL like {prefix}sqlite:///jobs.db")
        registry = StorageRegistry()
        plugin.jobkit_register_storage(registry)
        return cls(registry.build(url[len(prefix):], **options))

    @property
    def url(self) -> str:
        """The URL that opens this store again."""
        inner = getattr(self.inner, "url", None)  # not part of the core: built-ins have it
        if not isinstance(inner, str):
            raise AttributeError(f"{type(self.inner).__name__} has no url to open it again")
        return f"{self.scheme}+{inner}"

    def migrate(self) -> int:
        """The inner store's schema."""
        return self.inner.migrate()

    def close(self) -> None:
        """Close the inner store."""
        self.inner.close()

    def _enqueue_many(self, jobs: builtins.list[NewJob]) -> builtins.list[JobRecord]:
        return self.inner.enqueue_many(jobs)

    def _cancel(self, job_id: str) -> JobRecord | None:
        return self.inner.cancel(job_id)

    def _retry(self, job_id: str) -> JobRecord | None:
        return self.inner.retry(job_id)

    def _prune(
        self, finished_before: datetime, batch_size: int, progress: Callable[[int], None] | None,
        statuses: frozenset[JobStatus],
    ) -> int:
        return self.inner.prune(finished_before, batch_size=batch_size, progress=progress,
                                statuses=statuses)

    def _claim(self, worker_id: str, lease_seconds: float) -> JobRecord | None:
        return self.inner.claim(worker_id, lease_seconds)

    def _heartbeat(self, lease: Lease, lease_seconds: float) -> bool:
        if lease_seconds < 0:
            return self.inner.abandon(lease)
        return self.inner.heartbeat(lease, lease_seconds)

    def _settle(self, lease: Lease, outcome: AttemptOutcome, result: Any, error: str | None,
                traceback: str | None, retry_at: datetime | None) -> JobRecord | None:
        return self.inner.settle(lease, outcome, result=result, error=error,
                                 traceback=traceback, retry_at=retry_at)

    def _requeue_expired(self) -> builtins.list[JobRecord]:
        return self.inner.requeue_expired()

    def _get(self, job_id: str) -> JobRecord:
        return self.inner.get(job_id)

    def _list(
        self, status: JobStatus | None, name: str | None, limit: int, offset: int
    ) -> builtins.list[JobRecord]:
        return self.inner.list(status=status, name=name, limit=limit, offset=offset)

    def _count(self, status: JobStatus | None, name: str | None) -> int:
        return self.inner.count(status=status, name=name)

    def _attempts_of(self, job_id: str) -> builtins.list[Attempt]:
        return self.inner.attempts(job_id)
