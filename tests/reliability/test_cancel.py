"""Scenario 11: cancelling 500 pending and 20 running jobs, through the API and the CLI.

Twenty jobs that would sleep for a minute are claimed and running in twenty worker processes
(two `jobkit worker -n 10` supervisors: one process runs one job at a time, so twenty running
jobs take twenty processes), and 500 more jobs wait behind them. All are cancelled, a few with
`jobkit cancel ID`, the rest with ``JobKit.cancel_job``; the pending ones first, so that no
worker process is free while they could still be claimed. Then twenty "probe" jobs wait to be
claimed, and each running job is cancelled.

Pending jobs never run (no ledger line, no attempt), though every worker process is free soon
after and claims whatever is due. A running job is stopped within 2 s of its cancel (the time
the store gives its ``finished_at``): its ledger has a start and no end, its one attempt ends
``cancelled``, and its worker process, the same process and not a replacement, has claimed a
probe within 2 s. Cancelling a finished job changes nothing and says so: the API returns
``False``, the CLI exits 1 with "has already finished".
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import jobkit_process, wait_for
from fault_jobs import worker_pids
from sample_jobs import read_ledger

from jobkit import JobKit, JobStatus
from jobkit.records import AttemptOutcome
from reliability.conftest import store_config

pytestmark = pytest.mark.slow

RUNNING = 20
PENDING = 500
SUPERVISORS = 2  # of RUNNING // SUPERVISORS worker processes each
#: A running job's worker process must be free again this long after the cancel.
STOP_WITHIN = 2.0
LONG = 60.0  # a running job would sleep this long if it were not stopped


def entries(ledger: str, tag: str) -> list[dict[str, Any]]:
    """The ledger's entries with ``tag``."""
    return [entry for entry in read_ledger(ledger) if entry["tag"] == tag]


def nap(app: JobKit, ledger: str, tag: str, seconds: float) -> str:
    """Enqueue one Sleeper job; its id."""
    return app.run_background_job(
        "Sleeper", "nap", {"ledger": ledger, "seconds": seconds, "tag": tag}
    )


def cli_cancel(config: Path, job_id: str) -> tuple[int, str, str]:
    """`jobkit --config CONFIG cancel JOB_ID` as a real process: exit code, stdout, stderr."""
    done = jobkit_process(config.parent, "--config", str(config), "cancel", job_id)
    return done.returncode, done.stdout, done.stderr


def test_cancelled_pending_jobs_never_run_and_running_ones_stop_within_2_s(
    tmp_path: Path, store_url: str, ledger: str, start_worker: Callable[..., Any]
) -> None:
    """500 pending and 20 running jobs cancelled (API, and `jobkit cancel` for a few): no
    pending one runs; each running one stops within 2 s, never reaches its end, and ends
    cancelled with its attempt cancelled, its worker process (not a replacement) free for a
    new job within 2 s; cancelling a completed job returns False, and the CLI exits 1 saying
    it has already finished, the job unchanged."""
    config = store_config(
        tmp_path,
        store_url,
        worker={"poll_interval": 0.1, "heartbeat": 0.2, "lease": 3.0},
        jobs={"Sleeper": {"class": "fault_jobs:Sleeper"}},
    )
    with JobKit.from_config(config, load_entrypoints=False) as app:
        running = [nap(app, ledger, "run", LONG) for _ in range(RUNNING)]
        workers = [
            start_worker(config, "-n", str(RUNNING // SUPERVISORS)) for _ in range(SUPERVISORS)
        ]
        wait_for(
            lambda: len(entries(ledger, "run:start")) == RUNNING,
            timeout=60,
            what=f"{RUNNING} jobs to be running",
        )
        assert app.storage.count(status=JobStatus.RUNNING) == RUNNING
        pids = {entry["job"]: entry["pid"] for entry in entries(ledger, "run:start")}
        assert set(pids) == set(running) and len(set(pids.values())) == RUNNING
        assert set(pids.values()) == {pid for w in workers for pid in worker_pids(w)}

        # every worker process is busy: these stay pending until cancelled
        pending = [nap(app, ledger, "pending", 0.0) for _ in range(PENDING)]
        assert app.storage.count(status=JobStatus.PENDING) == PENDING
        for job in pending[:2]:
            code, out, err = cli_cancel(config, job)
            assert (code, out.strip()) == (0, f"cancelled {job}"), err
        assert all(app.cancel_job(job) for job in pending[2:])

        probes = [nap(app, ledger, "probe", LONG) for _ in range(RUNNING)]
        for job in running[:2]:
            code, out, err = cli_cancel(config, job)
            assert (code, out.strip()) == (0, f"cancelled {job}"), err
        assert all(app.cancel_job(job) for job in running[2:])
        wait_for(
            lambda: len(entries(ledger, "probe:start")) == RUNNING,
            timeout=20,
            what="every freed worker process to claim a probe",
        )

        # the running jobs: stopped, never at their end, cancelled; their processes free
        probe_start = {entry["pid"]: entry["at"] for entry in entries(ledger, "probe:start")}
        assert set(probe_start) == set(pids.values()), "a worker process was replaced"
        assert not entries(ledger, "run:end"), "a cancelled job ran to its end"
        for job in running:
            record = app.get_job(job)
            assert record.status is JobStatus.CANCELLED and record.finished_at is not None
            (attempt,) = app.get_attempts(job)
            assert attempt.outcome is AttemptOutcome.CANCELLED, attempt
            cancelled_at = record.finished_at.timestamp()
            free_after = probe_start[pids[job]] - cancelled_at
            assert 0 < free_after <= STOP_WITHIN, f"job {job}: process free after {free_after}"

        # the pending jobs: never run, never claimed
        assert not entries(ledger, "pending:start"), "a cancelled pending job ran"
        assert app.storage.count(status=JobStatus.CANCELLED) == PENDING + RUNNING
        for job in pending[:5] + pending[-5:]:
            record = app.get_job(job)
            assert (record.status, record.attempts) == (JobStatus.CANCELLED, 0), record
            assert app.get_attempts(job) == []

        # a finished job: cancelling changes nothing and says so
        assert all(app.cancel_job(job) for job in probes)  # free the processes again
        done = nap(app, ledger, "done", 0.0)
        wait_for(lambda: app.get_job(done).status is JobStatus.COMPLETED, what="a job to finish")
        before, attempts_before = app.get_job(done), app.get_attempts(done)
        assert app.cancel_job(done) is False
        code, out, err = cli_cancel(config, done)
        assert code == 1 and out == "", (code, out, err)
        assert f"job {done} has already finished" in err
        assert app.get_job(done) == before and app.get_attempts(done) == attempts_before
        assert app.cancel_job(pending[0]) is False  # cancelled is finished too
