"""Worker processes that die: killed at random, dead between a job's side effect and its commit,
and killed by the job itself every time (a poison job). Nothing is lost, nothing runs twice
except what a dead worker was running, and a poison job stops after ``max_crashes``."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from sample_jobs import read_ledger

from jobkit import AttemptOutcome, JobKit, JobStatus
from reliability.conftest import counted_attempts, runs_per_job, store_config

pytestmark = pytest.mark.slow

CRASHES = 200

FINAL = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


def count(app: JobKit, *statuses: JobStatus) -> int:
    """How many jobs are in any of ``statuses``."""
    return sum(app.storage.count(status=status) for status in statuses)


def test_kill_storm_loses_nothing(tmp_path: Path, store_url: str, ledger: str,
                                  start_worker: Any) -> None:
    """2,000 jobs of 20-200 ms on 4 worker processes, one SIGKILLed at random every 2 s for
    30 s: every job ends completed; a job ran twice only when its worker was killed while
    running it; no job stays running once its lease has passed (plus a few seconds)."""
    lease = 2.0
    config = store_config(tmp_path, store_url, worker={"lease": lease, "heartbeat": 0.2})
    rng = random.Random(5)
    with JobKit.from_config(config, load_entrypoints=False) as app:
        ids = {
            app.run_background_job(
                "Recorder", "sleep", {"seconds": rng.uniform(0.02, 0.2), "ledger": ledger}
            )
            for _ in range(2000)
        }
        worker = start_worker(config, "-n", "4")
        killed: set[int] = set()
        overdue: list[str] = []
        storm_ends = time.monotonic() + 30
        while time.monotonic() < storm_ends:
            time.sleep(2)
            children = worker.children()
            if children:
                victim = rng.choice(children)
                killed.add(victim.pid)
                victim.kill()
            now = app.storage.now()
            overdue += [  # running well past the lease: nobody took it back
                record.id
                for record in app.storage.list(status=JobStatus.RUNNING, limit=100)
                if record.lease_expires_at is not None
                and now > record.lease_expires_at + timedelta(seconds=3)
            ]
        wait_for(lambda: count(app, *FINAL) == len(ids), timeout=120, what="every job final")
        assert worker.process.poll() is None, worker.text()
        assert count(app, JobStatus.COMPLETED) == len(ids)
        assert len(killed) == 15 and not overdue
        starts: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for entry in read_ledger(ledger):
            if entry["tag"] == "start":
                starts[entry["job"]].append(entry)
        assert set(starts) == ids  # none lost
        duplicated = {job_id for job_id, runs in starts.items() if len(runs) > 1}
        for job_id in duplicated:
            # every run but the last was in a process killed before the store recorded its end
            # (killed mid-job, or after the job's code returned but before the commit)
            assert {run["pid"] for run in starts[job_id][:-1]} <= killed, starts[job_id]
            *lost, last = counted_attempts(app.get_attempts(job_id), app.get_job(job_id).attempts)
            assert {a.outcome for a in lost} == {AttemptOutcome.LOST}, lost
            assert {int((a.worker_id or "").split(":")[1]) for a in lost} <= killed, lost
            assert last.outcome == AttemptOutcome.SUCCEEDED
    print(f"{len(killed)} kills, {len(duplicated)} jobs ran again")


def test_crash_between_side_effect_and_commit(tmp_path: Path, store_url: str, ledger: str,
                                              start_worker: Any) -> None:
    """200 jobs each kill their process after their side effect, before jobkit commits the
    result: each job ends completed with exactly one extra attempt (even without retries)."""
    config = store_config(tmp_path, store_url, defaults={"retry_attempts": 0})
    with JobKit.from_config(config, load_entrypoints=False) as app:
        ids = [
            app.run_background_job("Recorder", "crash_after_effect", {"ledger": ledger})
            for _ in range(CRASHES)
        ]
        start_worker(config, "-n", "4")
        wait_for(lambda: count(app, *FINAL) == len(ids), timeout=240, what="every job final")
        records = [app.get_job(job_id) for job_id in ids]
        assert {r.status for r in records} == {JobStatus.COMPLETED}
        assert {(r.attempts, r.crashes) for r in records} == {(2, 1)}
        outcomes = {tuple(a.outcome for a in app.get_attempts(job_id)) for job_id in ids[:20]}
        assert outcomes == {(AttemptOutcome.LOST, AttemptOutcome.SUCCEEDED)}
    assert runs_per_job(ledger, "effect") == dict.fromkeys(ids, 2)


def test_poison_jobs_fail_after_max_crashes(tmp_path: Path, store_url: str, ledger: str,
                                            start_worker: Any) -> None:
    """Jobs that end their process every time (os._exit, SIGKILL as the OOM killer sends) are
    failed at their third crash, whatever their retries; the other jobs all complete once."""
    config = store_config(tmp_path, store_url, defaults={"retry_attempts": 5})
    with JobKit.from_config(config, load_entrypoints=False) as app:
        poison = [
            app.run_background_job("Recorder", "die", {"how": how, "ledger": ledger}, priority=1)
            for how in ("exit", "kill", "exit", "kill")
        ]
        normal = [
            app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "ok"})
            for _ in range(40)
        ]
        worker = start_worker(config, "-n", "2")
        wait_for(lambda: count(app, *FINAL) == len(poison) + len(normal), timeout=90,
                 what="every job final")
        assert worker.process.poll() is None, worker.text()
        for job_id in poison:
            record = app.get_job(job_id)
            assert (record.status, record.crashes, record.attempts) == (JobStatus.FAILED, 3, 3)
            assert (record.error or "").endswith("failed after 3 crashes (max_crashes)")
            assert [a.outcome for a in app.get_attempts(job_id)] == [AttemptOutcome.LOST] * 3
        assert {app.get_job(job_id).status for job_id in normal} == {JobStatus.COMPLETED}
    assert runs_per_job(ledger, "die") == dict.fromkeys(poison, 3)
    assert runs_per_job(ledger, "ok") == dict.fromkeys(normal, 1)
    assert "died (status -9); taking the job back" in worker.text()


def test_a_poison_job_in_a_batch_loses_no_neighbour(tmp_path: Path, store_url: str, ledger: str,
                                                    start_worker: Any) -> None:
    """A worker process claims short jobs in batches and commits their completions together. A
    job that ends its process in the middle of a batch: the jobs it ran before the poison job
    are recorded as completed from its journal (not run again), the ones it had claimed but
    not started go back uncounted, and only the poison job counts a crash."""
    config = store_config(tmp_path, store_url, defaults={"retry_attempts": 5})
    with JobKit.from_config(config, load_entrypoints=False) as app:
        before = [app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "ok"},
                                         priority=3) for _ in range(40)]
        poison = app.run_background_job("Recorder", "die", {"how": "exit", "ledger": ledger},
                                        priority=2)
        after = [app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "ok"},
                                        priority=1) for _ in range(40)]
        worker = start_worker(config, "-n", "1")
        wait_for(lambda: count(app, *FINAL) == 81, timeout=90, what="every job final")
        assert worker.process.poll() is None, worker.text()
        record = app.get_job(poison)
        assert (record.status, record.crashes) == (JobStatus.FAILED, 3)
        for job_id in before + after:
            job = app.get_job(job_id)
            assert (job.status, job.crashes) == (JobStatus.COMPLETED, 0)
            outcomes = [attempt.outcome for attempt in app.get_attempts(job_id)]
            assert outcomes.count(AttemptOutcome.SUCCEEDED) == 1
            assert set(outcomes) <= {AttemptOutcome.SUCCEEDED, AttemptOutcome.HANDED_BACK}
        handed_back = sum(
            [a.outcome for a in app.get_attempts(job_id)].count(AttemptOutcome.HANDED_BACK)
            for job_id in after
        )
    assert runs_per_job(ledger, "ok") == dict.fromkeys(before + after, 1)
    assert runs_per_job(ledger, "die") == {poison: 3}
    assert handed_back > 0  # the poison job's batch held jobs it had not started
