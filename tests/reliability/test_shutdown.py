"""Stopping and freezing workers: SIGTERM drains what runs and claims nothing new; jobs longer
than the grace period are handed back and run elsewhere; a worker frozen past its lease loses
its job to another and its late completion is refused."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from sample_jobs import read_ledger

from jobkit import AttemptOutcome, JobKit, JobStatus
from reliability.conftest import runs_per_job, store_config

pytestmark = pytest.mark.slow

RERUN = {"Rerun": {"class": "sample_jobs:Rerun"}}


def running(app: JobKit) -> int:
    """How many jobs are running now."""
    return app.storage.count(status=JobStatus.RUNNING)


def test_sigterm_drains_the_jobs_in_flight(tmp_path: Path, store_url: str, ledger: str,
                                           start_worker: Any) -> None:
    """SIGTERM with 20 jobs of 2 s in flight: no claim after the signal, the 20 finish, and the
    worker exits 0 within the grace period + 2 s."""
    grace = 5.0
    config = store_config(tmp_path, store_url, worker={"shutdown_grace": grace})
    with JobKit.from_config(config, load_entrypoints=False) as app:
        worker = start_worker(config, "-n", "20")
        # every process ready (not just alive: spawned processes take a while to import on 2
        # busy cores), or the first jobs would be done before the last process claims one
        wait_for(lambda: len(re.findall(r"worker process \S+ started", worker.text())) == 20,
                 timeout=120, what="20 worker processes ready")
        in_flight = [
            app.run_background_job("Recorder", "sleep", {"seconds": 2.0, "ledger": ledger},
                                   priority=1)
            for _ in range(20)
        ]
        wait_for(lambda: running(app) == 20, timeout=10, what="20 jobs running")
        waiting = [
            app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "after"})
            for _ in range(20)
        ]
        signalled = time.monotonic()
        worker.process.send_signal(signal.SIGTERM)
        code, output = worker.wait(timeout=grace + 10)
        took = time.monotonic() - signalled
        assert code == 0, output
        assert took < grace + 2, f"exit {took:.1f} s after SIGTERM"
        assert [app.get_job(job_id).status for job_id in in_flight] == [JobStatus.COMPLETED] * 20
        assert [app.get_job(job_id).attempts for job_id in waiting] == [0] * 20
    assert runs_per_job(ledger, "end") == dict.fromkeys(in_flight, 1)
    assert not runs_per_job(ledger, "after")  # nothing was claimed after the signal


def test_jobs_longer_than_the_grace_are_handed_back_and_run_elsewhere(
    tmp_path: Path, store_url: str, ledger: str, start_worker: Any
) -> None:
    """Jobs still running when the grace period ends are handed back (their attempt does not
    count), the worker exits 0, and another worker runs them to completion."""
    config = store_config(tmp_path, store_url, worker={"shutdown_grace": 1.0}, jobs=RERUN)
    with JobKit.from_config(config, load_entrypoints=False) as app:
        ids = [app.run_background_job("Rerun", "long_once", {"seconds": 60, "ledger": ledger})
               for _ in range(4)]
        first = start_worker(config, "-n", "4")
        wait_for(lambda: running(app) == 4, timeout=30, what="4 jobs running")
        first.process.send_signal(signal.SIGTERM)
        code, output = first.wait(timeout=1.0 + 10)
        assert code == 0, output
        for job_id in ids:
            record = app.get_job(job_id)
            assert (record.status, record.attempts) == (JobStatus.PENDING, 0)
            assert [a.outcome for a in app.get_attempts(job_id)] == [AttemptOutcome.HANDED_BACK]
        start_worker(config, "-n", "2")
        wait_for(
            lambda: all(app.get_job(job_id).status == JobStatus.COMPLETED for job_id in ids),
            timeout=30,
            what="the handed-back jobs completed elsewhere",
        )
    first_pids = {e["pid"] for e in read_ledger(ledger) if e["tag"] == "start"} - {
        e["pid"] for e in read_ledger(ledger) if e["tag"] == "end"
    }
    finishers = {e["pid"] for e in read_ledger(ledger) if e["tag"] == "end"}
    assert runs_per_job(ledger, "end") == dict.fromkeys(ids, 1)
    assert first_pids and not first_pids & finishers


def test_a_frozen_worker_loses_its_job_and_its_late_completion_is_refused(
    tmp_path: Path, store_url: str, ledger: str, start_worker: Any
) -> None:
    """A worker (supervisor and process, as when its machine freezes) stopped with SIGSTOP past
    its lease: another worker takes the job and completes it; resumed, the frozen one's
    completion is refused and logged, and the job is completed exactly once."""
    config = store_config(tmp_path, store_url, worker={"lease": 2.0, "heartbeat": 0.2})
    with JobKit.from_config(config, load_entrypoints=False) as app:
        job_id = app.run_background_job("Recorder", "sleep", {"seconds": 3.0, "ledger": ledger})
        frozen = start_worker(config, "-n", "1")
        wait_for(lambda: app.get_job(job_id).status == JobStatus.RUNNING, what="running")
        stale_worker = app.get_job(job_id).worker_id
        frozen.signal_group(signal.SIGSTOP)
        try:
            rescuer = start_worker(config, "-n", "1")
            wait_for(lambda: app.get_job(job_id).status == JobStatus.COMPLETED, timeout=30,
                     what="the job completed by the other worker")
            done = app.get_job(job_id)
            assert done.worker_id is None and done.crashes == 1
        finally:
            frozen.signal_group(signal.SIGCONT)
        errors = tmp_path / "logs" / "background_jobs.log"
        wait_for(lambda: "no longer holds the job's lease" in errors.read_text(), timeout=15,
                 what="the stale worker's refusal in the log")
        time.sleep(1)  # room for a wrong second completion to land
        assert app.get_job(job_id) == done
        outcomes = [a.outcome for a in app.get_attempts(job_id)]
        assert outcomes == [AttemptOutcome.LOST, AttemptOutcome.SUCCEEDED]
        assert app.get_attempts(job_id)[0].worker_id == stale_worker
        assert frozen.process.poll() is None and rescuer.process.poll() is None
    log = errors.read_text()
    assert log.count("event=succeeded") == 1
