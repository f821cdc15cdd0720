"""Volume: many jobs and many claimers at once, and nothing is lost or run twice (issue 5,
scenarios 1 and 2), on SQLite and on PostgreSQL.

Scenario 1 runs 2,000 no-op jobs through a real `jobkit worker -n 4 --burst` and counts the runs
in the ledger, outside the store. Scenario 2 races eight spawned processes, each with its own
store, calling ``Storage.claim`` as fast as they can behind a barrier, five rounds of 1,000 jobs.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from claim_race import claim_racer
from sample_jobs import read_ledger

from jobkit import AttemptOutcome, JobKit, JobStatus
from reliability.conftest import counted_attempts, store_config

pytestmark = pytest.mark.slow

JOBS = 2_000
WORKERS = 4

RACE_JOBS = 1_000
RACERS = 8
ROUNDS = 5
#: Long enough that no claimed job's lease expires during a round (nobody requeues them anyway).
RACE_LEASE = 600.0
#: How long a barrier or a result may take before the race is declared stuck.
RACE_TIMEOUT = 120.0


def test_2000_jobs_on_4_processes_each_run_exactly_once(
    tmp_path: Path, store_url: str, ledger: str, start_worker: Any
) -> None:
    """2,000 no-op jobs, `jobkit worker -n 4 --burst`: the worker exits 0, every job is
    completed with exactly one attempt that counts (closed, succeeded; a loaded machine may make
    a batch hand some back first, which leaves handed_back rows), the ledger has exactly 2,000
    rows, one per job id, and no job is left pending, retrying or running."""
    config = store_config(tmp_path, store_url, defaults={"retry_attempts": 5, "retry_delay": 0})
    with JobKit.from_config(config, load_entrypoints=False) as app:
        ids = [
            app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "volume"})
            for _ in range(JOBS)
        ]
        assert len(set(ids)) == JOBS, "two enqueues returned the same id"

        code, out = start_worker(config, "-n", str(WORKERS), "--burst").wait(timeout=120)
        assert code == 0, out

        entries = read_ledger(ledger)
        assert len(entries) == JOBS, f"{len(entries)} ledger rows for {JOBS} jobs"
        runs = Counter(str(entry["job"]) for entry in entries)
        assert set(runs) == set(ids), (
            f"{len(set(ids) - set(runs))} job(s) never ran, "
            f"{len(set(runs) - set(ids))} unknown id(s) ran"
        )
        assert [job for job, n in runs.items() if n != 1] == [], "a job ran more than once"
        assert {entry["attempt"] for entry in entries} == {1}
        assert len({entry["pid"] for entry in entries}) > 1, "one process did all the work"

        storage = app.storage
        handed_back = 0
        for status in (JobStatus.PENDING, JobStatus.RETRYING, JobStatus.RUNNING):
            assert storage.count(status=status) == 0, f"jobs left {status.value}"
        assert storage.count(status=JobStatus.COMPLETED) == JOBS
        assert storage.count() == JOBS
        for job_id in ids:
            record = storage.get(job_id)
            assert (record.status, record.attempts, record.result) == (
                JobStatus.COMPLETED, 1, "volume"
            ), record
            assert record.worker_id is None and record.lease_expires_at is None, record
            # a job its batch handed back (a loaded machine) has a handed_back row too
            attempts = storage.attempts(job_id)
            (attempt,) = counted_attempts(attempts, 1)
            assert attempt.finished_at is not None, f"attempt of job {job_id} left open"
            assert attempt.outcome == AttemptOutcome.SUCCEEDED, attempt
            handed_back += len(attempts) - 1
        print(f"{handed_back} attempt(s) handed back")


def collect_round(results: Any, round_number: int) -> dict[int, list[str]]:
    """Every racer's report of one round: racer number -> the ids it claimed. Fails naming the
    racer's traceback when one failed, or the missing racers when they are stuck."""
    claims: dict[int, list[str]] = {}
    deadline = time.monotonic() + RACE_TIMEOUT
    while len(claims) < RACERS:
        try:
            found, number, claimed = results.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(
                f"round {round_number}: only racers {sorted(claims)} reported"
            ) from None
        assert isinstance(claimed, list), f"racer {number} failed:\n{claimed}"
        assert found == round_number, (found, round_number)
        claims[number] = claimed
    return claims


def check_round(
    app: JobKit, round_number: int, ids: set[str], claims: dict[int, list[str]]
) -> None:
    """Every job of the round claimed exactly once, by two racers or more; the store agrees."""
    every = [job_id for claimed in claims.values() for job_id in claimed]
    twice = [job_id for job_id, n in Counter(every).items() if n > 1]
    assert twice == [], f"round {round_number}: claimed more than once: {twice[:10]}"
    assert set(every) == ids, (
        f"round {round_number}: {len(ids - set(every))} job(s) never claimed, "
        f"{len(set(every) - ids)} claimed job(s) not of this round"
    )
    sharing = [number for number, claimed in claims.items() if claimed]
    assert len(sharing) >= 2, f"round {round_number}: only racer(s) {sharing} claimed"

    storage = app.storage
    assert storage.count(status=JobStatus.PENDING) == 0
    assert storage.count(status=JobStatus.RUNNING) == RACE_JOBS * (round_number + 1)
    owner = {job_id: f"racer-{n}" for n, claimed in claims.items() for job_id in claimed}
    for job_id in _sample(sorted(ids, key=int)):
        record = storage.get(job_id)
        assert (record.status, record.attempts, record.worker_id) == (
            JobStatus.RUNNING, 1, owner[job_id]
        ), record
        attempts = storage.attempts(job_id)
        assert [(a.attempt, a.worker_id, a.finished_at) for a in attempts] == [
            (1, owner[job_id], None)
        ], attempts


def _sample(ids: list[str], every: int = 10) -> list[str]:
    """Every ``every``-th id, plus the first and the last: a cheap but spread check."""
    return sorted({*ids[::every], ids[0], ids[-1]}, key=int)


def test_8_processes_racing_for_1000_jobs_never_claim_one_twice(
    tmp_path: Path, store_url: str
) -> None:
    """Eight spawned processes, each with its own store, released together by a barrier, claim
    1,000 due jobs as fast as they can, five rounds: every job is claimed exactly once per round
    (no id from two claimers, or twice from one, none missed), its record is running with one
    attempt and one open attempt row owned by its claimer, and the work is shared (the race
    really happened)."""
    config = store_config(tmp_path, store_url)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(RACERS + 1)
    results = context.Queue()
    racers = [
        context.Process(
            target=claim_racer,
            args=(store_url, number, ROUNDS, RACE_LEASE, RACE_TIMEOUT, barrier, results),
            name=f"claim-racer-{number}",
        )
        for number in range(RACERS)
    ]
    for racer in racers:
        racer.start()
    try:
        with JobKit.from_config(config, load_entrypoints=False) as app:
            for round_number in range(ROUNDS):
                ids = {
                    app.run_background_job("Recorder", "record", {"ledger": "", "tag": "race"})
                    for _ in range(RACE_JOBS)
                }
                assert len(ids) == RACE_JOBS
                barrier.wait(timeout=RACE_TIMEOUT)
                check_round(app, round_number, ids, collect_round(results, round_number))
        for racer in racers:
            racer.join(timeout=30)
            assert racer.exitcode == 0, f"{racer.name} exited with {racer.exitcode}"
    finally:
        barrier.abort()
        for racer in racers:
            if racer.is_alive():
                racer.kill()
            racer.join(timeout=5)
        results.close()
        results.join_thread()
