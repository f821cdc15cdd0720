"""The reliability suite's fixtures: every scenario runs on SQLite and on PostgreSQL.

A scenario writes a ``jobs.yaml`` for its backend with :func:`store_config`, starts real
`jobkit worker` processes with ``start_worker`` and counts what ran in the ledger
(``sample_jobs.append``): one line per run of a job, written outside the job store.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import config_data
from sample_jobs import read_ledger

from jobkit import Attempt, AttemptOutcome

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty job store: a SQLite file in tmp_path, or the run's PostgreSQL database emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobkit.db'}"
    url: str = request.getfixturevalue("empty_postgres_url")
    return url


def store_config(tmp_path: Path, url: str, **overrides: Any) -> Path:
    """tmp_path/jobs.yaml on ``url`` (see ``conftest.config_data`` for the overrides)."""
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump(config_data(tmp_path, storage=url, **overrides)))
    return path


def runs_per_job(ledger: str, tag: str | None = None) -> Counter[str]:
    """How many times the ledger says each job ran (only entries with ``tag``, if given)."""
    return Counter(
        str(entry["job"]) for entry in read_ledger(ledger) if tag is None or entry.get("tag") == tag
    )


def counted_attempts(attempts: list[Attempt], expected: int) -> list[Attempt]:
    """The attempts that count, checked to be numbered 1 to ``expected``, oldest first.

    A job may have more rows in ``jobkit_attempts`` than ``record.attempts``: a worker process
    hands back the jobs of its batch it has not started when the batch is held more than 0.2 s
    (a job of the batch runs long, or on a loaded machine the process waits that long for a
    CPU: docs/worker.md, "Short jobs in batches"), and at a graceful stop. ``release`` closes
    such an attempt as ``handed_back`` and gives its number back, which the next claim uses
    again (docs/storage.md). Those rows must be closed, and numbered as an attempt that
    counts; every other row counts."""
    counted = [a for a in attempts if a.outcome is not AttemptOutcome.HANDED_BACK]
    numbers = [a.attempt for a in counted]
    assert numbers == list(range(1, expected + 1)), "\n".join(map(repr, attempts))
    for attempt in attempts:
        if attempt.outcome is AttemptOutcome.HANDED_BACK:
            assert attempt.finished_at is not None and 1 <= attempt.attempt <= expected, (
                "\n".join(map(repr, attempts))
            )
    return counted
