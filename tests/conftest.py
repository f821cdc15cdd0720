"""Shared fixtures: a fresh app per test on a real SQLite file, and no leaked global state."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pg_server import PostgresServer, find_bin_dir, missing, reset
from workers import WorkerProcess, subprocess_env

import jobkit
from jobkit.app import JobKit
from jobkit.config import Config

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(autouse=True)
def _reset_default_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts without a default app and without JOBKIT_* variables."""
    for key in list(os.environ):
        if key.startswith("JOBKIT_"):
            monkeypatch.delenv(key)
    jobkit.reset_default_app()
    yield
    jobkit.reset_default_app()


def config_data(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """jobs.yaml's content for a SQLite store in tmp_path, fast worker timings and the sample
    jobs; each override replaces a key, or updates it when both are mappings."""
    data: dict[str, Any] = {
        "storage": f"sqlite:///{tmp_path / 'jobkit.db'}",
        "defaults": {"retry_attempts": 0, "retry_delay": 0},
        "logging": {"dir": str(tmp_path / "logs")},
        "worker": {
            "poll_interval": 0.02,
            "heartbeat": 0.1,
            "lease": 2.0,
            "kill_grace": 0.5,
            "shutdown_grace": 5.0,
            "requeue_interval": 0.2,
        },
        "jobs": {
            "Recorder": {"class": "sample_jobs:Recorder"},
            "Slow": {"class": "sample_jobs:Slow"},
        },
    }
    for key, value in overrides.items():
        both_maps = isinstance(value, dict) and isinstance(data.get(key), dict)
        data[key] = {**data[key], **value} if both_maps else value
    return data


def make_config(tmp_path: Path, **overrides: Any) -> Config:
    """A Config built from :func:`config_data`."""
    return Config.from_dict(config_data(tmp_path, **overrides))


def write_config(tmp_path: Path, name: str = "jobs.yaml", **overrides: Any) -> Path:
    """tmp_path/<name> written from :func:`config_data`."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config_data(tmp_path, **overrides)))
    return path


def jobkit_process(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `python -m jobkit ARGS` as a real process and wait for it."""
    return subprocess.run(
        [sys.executable, "-m", "jobkit", *args],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 15, what: str = "") -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def ledger(tmp_path: Path) -> str:
    """A ledger file the sample jobs append to."""
    return str(tmp_path / "ledger.jsonl")


@pytest.fixture
def app(tmp_path: Path) -> Iterator[JobKit]:
    """An app on a SQLite file with the sample jobs registered through jobs.yaml's class:."""
    application = JobKit(make_config(tmp_path), load_entrypoints=False)
    yield application
    application.close()


@pytest.fixture
def start_worker() -> Iterator[Callable[..., Any]]:
    """Start `jobkit worker` processes (:class:`workers.WorkerProcess`); each is stopped, and its
    worker processes killed, at the end of the test."""
    started: list[WorkerProcess] = []

    def start(config: Path, *args: str) -> WorkerProcess:
        worker = WorkerProcess(config, *args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throw-away PostgreSQL server for the whole run (skips, or fails under CI=true, when
    the server binaries or psycopg are missing)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        missing("the PostgreSQL server binaries (pg_ctl, initdb) are not installed")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing("psycopg is not installed (pip install 'jobkit[postgres]')")
    assert bin_dir is not None
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a database made for this run."""
    return postgres_server.create_database("jobkit_test")


@pytest.fixture
def empty_postgres_url(postgres_url: str) -> str:
    """The run's database with jobkit's tables emptied."""
    reset(postgres_url)
    return postgres_url
