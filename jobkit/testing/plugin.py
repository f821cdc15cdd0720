"""jobkit's pytest plugin (entry point ``pytest11``): fixtures for testing your own jobs.

- ``jobkit_app``: a :class:`~jobkit.JobKit` on an in-memory store, made the default app for the
  test (so ``jobkit.run_background_job`` uses it), closed and reset afterwards.
- ``jobkit_run``: runs the app's jobs in the test's thread until none is left
  (:func:`jobkit.worker.run_until_empty`) and returns how many ran.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

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
