"""A SQLite file deleted or replaced under a running `jobkit worker`: the worker says so in its
log and error log, and exits non-zero within about a heartbeat, instead of serving the deleted
file while new jobs go to a new one that nobody serves. Real worker processes, real files."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_config, wait_for
from loguru import logger
from sample_jobs import read_ledger

from jobkit import JobKit, JobStatus
from jobkit.storage import SQLiteStorage
from reliability.conftest import store_config

pytestmark = pytest.mark.slow


def serving(tmp_path: Path, ledger: str, start_worker: Callable[..., Any]) -> tuple[Path, Any]:
    """A worker with two processes on tmp_path/data/jobkit.db, seen running one job."""
    config = store_config(tmp_path, f"sqlite:///{tmp_path / 'data' / 'jobkit.db'}")
    with JobKit.from_config(config, load_entrypoints=False) as app:
        app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "before"})
    worker = start_worker(config, "-n", "2")
    wait_for(lambda: len(read_ledger(ledger)) == 1, what="the first job to run")
    # both processes up: one still starting would make a new file when the first is deleted
    wait_for(lambda: len(re.findall(r"worker process \S+ started", worker.text())) == 2,
             what="both worker processes")
    return config, worker


def stopped_for(worker: Any, tmp_path: Path, words: str) -> str:
    """Wait for the worker to say ``words`` (within about a heartbeat) and exit 1; its output."""
    started = time.monotonic()
    wait_for(lambda: words in worker.text(), timeout=10, what=f"the worker to say {words!r}")
    noticed = time.monotonic() - started
    code, out = worker.wait(timeout=15)
    assert code == 1, out
    assert noticed < 2.0, f"noticed after {noticed:.2f} s (heartbeat 0.1 s)"
    assert "stopping the worker" in out and "restart it" in out
    errors = (tmp_path / "logs" / "background_jobs_errors.log").read_text()
    assert words in errors
    return out


class TestLostStore:
    def test_deleting_the_data_folder_stops_the_worker_and_a_new_one_serves_the_new_store(
        self, tmp_path: Path, ledger: str, start_worker: Callable[..., Any]
    ) -> None:
        """rm -r of the folder holding the database: logged as an error, exit status 1; the
        worker started again serves the jobs enqueued into the new store."""
        config, worker = serving(tmp_path, ledger, start_worker)
        shutil.rmtree(tmp_path / "data")
        stopped_for(worker, tmp_path, f"{tmp_path / 'data' / 'jobkit.db'}: the database file "
                                      "was deleted")
        with JobKit.from_config(config, load_entrypoints=False) as app:
            job_id = app.run_background_job("Recorder", "record",
                                            {"ledger": ledger, "tag": "after"})
            code, out = start_worker(config, "-n", "1", "--burst").wait(timeout=30)
            assert code == 0, out
            assert app.get_job(job_id).status == JobStatus.COMPLETED
        assert [entry["tag"] for entry in read_ledger(ledger)] == ["before", "after"]

    def test_a_replaced_file_stops_the_worker(
        self, tmp_path: Path, ledger: str, start_worker: Callable[..., Any]
    ) -> None:
        """Another file moved to the path (a backup restored in place) stops the worker too."""
        _, worker = serving(tmp_path, ledger, start_worker)
        fresh = tmp_path / "fresh.db"
        SQLiteStorage(fresh).close()
        os.replace(fresh, tmp_path / "data" / "jobkit.db")
        stopped_for(worker, tmp_path, "the database file was replaced")

    def test_an_untouched_file_keeps_the_worker_running(
        self, tmp_path: Path, ledger: str, start_worker: Callable[..., Any]
    ) -> None:
        """The check finds nothing wrong with a healthy store: the worker runs on."""
        _, worker = serving(tmp_path, ledger, start_worker)
        time.sleep(1.0)  # ten heartbeats
        assert worker.process.poll() is None, worker.text()
        assert "database file" not in worker.text()


class TestCheckOutcomes:
    """What the supervisor makes of each outcome of Storage.check_health."""

    @pytest.fixture
    def sink(self) -> Iterator[list[str]]:
        """The supervisor's log lines, as levels and messages."""
        seen: list[str] = []
        handler = logger.add(seen.append, level="INFO", format="{level} {message}")
        logger.enable("jobkit")
        yield seen
        logger.disable("jobkit")
        logger.remove(handler)

    def test_a_check_that_cannot_tell_is_said_once_and_ignored(
        self, tmp_path: Path, sink: list[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A check that fails (a store that is down) is a warning, once, and no stop; the
        store lost is an error and a stop with exit status 1."""
        from jobkit.exceptions import StorageError, StoreLost
        from jobkit.worker import Worker

        with JobKit(make_config(tmp_path), load_entrypoints=False) as app:
            worker = Worker(app, concurrency=1)
            outcome: list[Exception] = [StorageError("the server is down")]

            def check() -> None:
                raise outcome[0]

            monkeypatch.setattr(app.storage, "check_health", check)
            for _ in range(3):
                worker._check_store()
            assert sink == ["WARNING could not check the store: the server is down\n"]
            assert (worker._exit_code, worker._stop_requests) == (0, 0)
            outcome[0] = StoreLost("sqlite storage x: the database file was deleted")
            worker._check_store()
            assert sink[-1].startswith("ERROR sqlite storage x: the database file was deleted; "
                                       "stopping the worker (exit status 1)")
            assert (worker._exit_code, worker._stop_requests) == (1, 1)
