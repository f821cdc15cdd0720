"""A jobkit app that finds ``Invoice`` through its installed entry point."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from jobkit import JobKit


@pytest.fixture(params=["memory", "sqlite"])
def make_invoice_app(
    request: pytest.FixtureRequest, jobkit_app_factory: Callable[..., JobKit]
) -> Callable[..., JobKit]:
    """A factory: ``make_invoice_app(jobs={...})`` builds a JobKit on memory:// or SQLite."""
    storage = "memory://" if request.param == "memory" else None
    return lambda jobs=None: jobkit_app_factory(jobs, storage=storage)
