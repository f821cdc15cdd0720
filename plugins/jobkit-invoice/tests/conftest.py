"""A jobkit app that finds ``Invoice`` through its installed entry point."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jobkit import JobKit
from jobkit.config import Config


@pytest.fixture(params=["memory", "sqlite"])
def make_invoice_app(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., JobKit]]:
    """A factory: ``make_invoice_app(jobs={...})`` builds a JobKit on memory:// or SQLite."""
    storage = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'jobkit.db'}"
    apps: list[JobKit] = []

    def build(jobs: dict[str, Any] | None = None) -> JobKit:
        logs = str(tmp_path / "logs")
        config = {"storage": storage, "logging": {"dir": logs}, "jobs": jobs or {}}
        app = JobKit(Config.from_dict(config))
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.close()
