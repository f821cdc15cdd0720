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
