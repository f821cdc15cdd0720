"""jobkit's pytest plugin (entry point ``pytest11``): fixtures for testing your own jobs.

- ``jobkit_app``: a :class:`~jobkit.JobKit` on an in-memory store, made the default app for the
  test (so ``jobkit.run_background_job`` uses it), closed and reset afterwards.
- ``jobkit_run``: runs the app's jobs in the test's thread until none is left
  (:func:`jobkit.worker.run_until_empty`) and returns how many ran.
- ``jobkit_app_factory``: ``jobkit_app_factory(jobs={...}, storage=...)`` builds apps with the
  given ``jobs:`` (options, retries...) on SQLite in ``tmp_path`` (or ``storage``), with installed
  jobs and plugins, logs in ``tmp_path/logs``; each is closed after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jobkit.app import JobKit, reset_default_app, set_default_app
from jobkit.config import Config


@pytest.fixture
def jobkit_app() -> Iterator[JobKit]:
    """An app on ``memory://`` with installed jobs, set as the default app for the test."""
    app = JobKit(Config.from_dict({"storage": "memory://"}))
    set_default_app(app)
    yield app
    reset_default_app()


@pytest.fixture
def jobkit_run(jobkit_app: JobKit) -> Callable[[], int]:
    """Run the queued jobs of ``jobkit_app`` until none is left; returns how many ran."""
    from jobkit.worker import run_until_empty

    return lambda: run_until_empty(jobkit_app)


@pytest.fixture
def jobkit_app_factory(tmp_path: Path) -> Iterator[Callable[..., JobKit]]:
    """Build apps from ``jobs:`` entries (and optionally a storage URL); closed afterwards."""
    apps: list[JobKit] = []

    def build(
        jobs: dict[str, Any] | None = None, *, storage: str | None = None, **config: Any
    ) -> JobKit:
        data = {
            "storage": storage or f"sqlite:///{tmp_path / 'jobkit.db'}",
            "logging": {"dir": str(tmp_path / "logs")},
            "jobs": jobs or {},
            **config,
        }
        app = JobKit(Config.from_dict(data))
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.close()
