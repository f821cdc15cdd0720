"""A kill storm on a mixed drain (issue 21): 600 sync and 600 async jobs, 2 processes, kills.

`jobkit worker -n 2` drains 600 sync jobs of 20-60 ms and 600 ``async def`` jobs that await
20-200 ms (60 of them failing their first attempt, retried), enqueued interleaved, while one of
its processes is SIGKILLed every 1-2 s until every job has ended. A killed process loses its
sync job and every coroutine it was running at once. From the ledger (each run's start and
end, written by the job) and from the store: every job completed, its successful run is in the
ledger, and a job ran more than once only in place of attempts lost with a killed process (or
for the planned failure of a flaky job's first attempt)."""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from fault_jobs import worker_processes
from sample_jobs import read_ledger

from jobkit import Attempt, AttemptOutcome, JobKit, JobStatus
from reliability.conftest import counted_attempts, store_config

pytestmark = pytest.mark.slow

#: Jobs of each kind, enqueued in chunks of CHUNK sync then CHUNK async (the last of which
#: fails its first attempt).
EACH, CHUNK = 600, 10
FINAL = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


def enqueue(app: JobKit, ledger: str, rng: random.Random) -> tuple[set[str], set[str], set[str]]:
    """The storm's jobs, sync and async interleaved in the queue: (sync, async, flaky) ids."""
    sync: set[str] = set()
    coroutines: set[str] = set()
    flaky: set[str] = set()
    for _ in range(EACH // CHUNK):
        sync.update(app.enqueue_many("Mixed", "work", [
            {"ledger": ledger, "pause": rng.uniform(0.02, 0.06)} for _ in range(CHUNK)
        ]))
        params = [{"ledger": ledger, "pause": rng.uniform(0.02, 0.2)} for _ in range(CHUNK)]
        *steady, last = params
        coroutines.update(app.enqueue_many("Mixed", "wait", steady))
        ids = app.enqueue_many("Mixed", "wait", [{**last, "flaky": True}], retry_attempts=2)
        coroutines.update(ids)
        flaky.update(ids)
    return sync, coroutines, flaky


def pid_of(attempt: Attempt) -> int:
    """The pid of the worker process that made ``attempt`` (its worker id is host:pid:...)."""
    return int((attempt.worker_id or "").split(":")[1])


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most of ``intervals`` (start, end) open at one moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = running = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def test_kill_storm_on_a_mixed_drain(tmp_path: Path, store_url: str, ledger: str,
                                     start_worker: Any) -> None:
    """Every sync and async job completes, none lost, run again only for a killed process.

    The coroutines of a process really ran side by side: more than one at once, by the ledger.
    """
    config = store_config(
        tmp_path, store_url, worker={"lease": 1.5, "heartbeat": 0.2},
        defaults={"retry_attempts": 0, "retry_delay": 0, "max_crashes": 100},
        jobs={"Mixed": {"class": "fault_jobs:Mixed"}},
    )
    rng = random.Random(21)
    began = time.monotonic()
    with JobKit.from_config(config, load_entrypoints=False) as app:
        sync, coroutines, flaky = enqueue(app, ledger, rng)
        everything = sync | coroutines

        def ended() -> int:
            return sum(app.storage.count(status=status) for status in FINAL)

        worker = start_worker(config, "-n", "2")
        killed: set[int] = set()
        deadline = time.monotonic() + 90
        while ended() < len(everything) and time.monotonic() < deadline:
            time.sleep(rng.uniform(1.0, 2.0))
            victims = worker_processes(worker)
            if victims and ended() < len(everything):
                victim = rng.choice(victims)
                killed.add(victim.pid)
                victim.kill()
        records = {job_id: app.get_job(job_id) for job_id in everything}
        statuses = Counter(record.status for record in records.values())
        assert statuses == {JobStatus.COMPLETED: len(everything)}, statuses  # none lost
        assert worker.process.poll() is None, worker.text()
        assert killed
        attempts = {job_id: app.get_attempts(job_id) for job_id in everything}
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    ends: dict[tuple[str, int], dict[str, Any]] = {}
    failed: set[tuple[str, int]] = set()
    for entry in read_ledger(ledger):
        key = (entry["job"], entry["attempt"])
        if entry["tag"] == "start":
            runs[entry["job"]].append(entry)
        elif entry["tag"] == "end":
            ends[key] = entry
        else:
            failed.add(key)
    assert set(runs) == everything  # every job ran
    assert failed <= {(job_id, 1) for job_id in flaky}  # a first attempt not lost first
    for job_id, record in records.items():
        *before, last = counted_attempts(attempts[job_id], record.attempts)
        assert last.outcome == AttemptOutcome.SUCCEEDED and last.finished_at is not None
        # the successful run is in the ledger: its start and its end, in one process
        success = ends.get((job_id, last.attempt))
        assert success is not None, (runs[job_id], attempts[job_id])
        assert success["pid"] == runs[job_id][-1]["pid"] == pid_of(last)
        planned = {(job_id, 1)} & failed
        lost = [a for a in before if (job_id, a.attempt) not in planned]
        assert {a.outcome for a in lost} <= {AttemptOutcome.LOST}, attempts[job_id]
        assert {pid_of(a) for a in lost} <= killed, lost
        # ran again only in place of a run whose process was killed before its end was stored
        assert len(runs[job_id]) <= record.attempts, (runs[job_id], attempts[job_id])
        assert {run["pid"] for run in runs[job_id][:-1]
                if (job_id, run["attempt"]) not in planned} <= killed, runs[job_id]
    by_process: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for job_id in coroutines:
        for run in runs[job_id]:
            end = ends.get((job_id, run["attempt"]))
            if end is not None and end["pid"] == run["pid"]:
                by_process[run["pid"]].append((run["at"], end["at"]))
    overlap = max(most_at_once(intervals) for intervals in by_process.values())
    assert overlap > 1, by_process
    again = Counter("async" if job_id in coroutines else "sync" for job_id, r in runs.items()
                    if len(r) > 1 + ((job_id, 1) in failed))
    # the kills caught coroutines in flight (4 to 40 of them in 15 runs): the storm tests them
    assert again["async"], again
    print(f"{len(killed)} kills, {again['sync']} sync and {again['async']} async jobs ran again "
          f"(lost), up to {overlap} coroutines at once in a process, "
          f"{time.monotonic() - began:.1f} s")
