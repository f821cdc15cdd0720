"""A kill storm on a workflow (issue 20): 1,000 steps, 4 worker processes, one killed every 2 s.

50 layers of 20 steps, each step of a layer waiting for every step of the layer before it
(fan-out and fan-in), run by `jobkit worker -n 4` while one of its processes is SIGKILLed every
2 s. From the ledger (each run's start and end, written by the step) and from the store: every
step ran after all its parents ended, no step is lost, and each group callback ran once per
attempt that counts, its last attempt the one that succeeded."""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from fault_jobs import worker_processes
from sample_jobs import read_ledger

from jobkit import Attempt, AttemptOutcome, JobKit, JobStatus, chain, group, step
from jobkit.workflows import Chain, Step
from reliability.conftest import counted_attempts, store_config

pytestmark = pytest.mark.slow

#: 50 layers of 20 steps: 25 groups of 20 members, each with a group of 20 callbacks.
GROUPS, WIDTH = 25, 20


def layered_flow(ledger: str, rng: random.Random) -> Chain:
    """The storm's DAG: a chain of 25 groups, each with a group of callbacks.

    Group ``i``'s members are layer ``2i`` and its callback is a group of ``WIDTH`` steps
    (layer ``2i + 1``), each given the members' results.
    A group waits for the callbacks of the group before it. Each step pauses 20-100 ms: the
    storm lasts long enough for a dozen kills, some in the middle of a step."""

    def work(layer: int, index: int, **options: Any) -> Step:
        pause = rng.uniform(0.02, 0.1)
        params = {"ledger": ledger, "label": f"L{layer}.{index}", "pause": pause}
        return step("Stepper", "work", params, **options)

    return chain(*(
        group(*(work(2 * i, j) for j in range(WIDTH)),
              then=group(*(work(2 * i + 1, j, result_as="results") for j in range(WIDTH))))
        for i in range(GROUPS)
    ))


def test_kill_storm_on_a_workflow(tmp_path: Path, store_url: str, ledger: str,
                                  start_worker: Any) -> None:
    """Every step completes once, after its parents, even as worker processes are killed.

    Each run of a step starts after every run of its parents ended, each callback is given
    every member's result, and a step ran more than once only when a
    killed process ran it (those attempts lost, the last one succeeded)."""
    config = store_config(
        tmp_path, store_url, worker={"lease": 1.5, "heartbeat": 0.2},
        defaults={"retry_attempts": 0, "max_crashes": 100},
        jobs={"Stepper": {"class": "fault_jobs:Stepper"}},
    )
    rng = random.Random(20)
    began = time.monotonic()
    with JobKit.from_config(config, load_entrypoints=False) as app:
        workflow_id = app.run_workflow(layered_flow(ledger, rng))
        worker = start_worker(config, "-n", "4")
        killed: set[int] = set()
        deadline = time.monotonic() + 240
        while not app.get_workflow(workflow_id).finished and time.monotonic() < deadline:
            time.sleep(2)
            victims = worker_processes(worker)
            if victims and not app.get_workflow(workflow_id).finished:
                victim = rng.choice(victims)
                killed.add(victim.pid)
                victim.kill()
        workflow = app.get_workflow(workflow_id)
        statuses = Counter(s.status for s in workflow.steps)
        assert statuses == {JobStatus.COMPLETED: GROUPS * WIDTH * 2}, statuses  # none lost
        assert worker.process.poll() is None, worker.text()
        assert killed
        by_job = {s.job_id: s for s in workflow.steps}
        records = {job_id: app.get_job(job_id) for job_id in by_job}
        attempts = {job_id: app.get_attempts(job_id) for job_id in by_job}
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    ends: dict[str, list[float]] = defaultdict(list)
    for entry in read_ledger(ledger):
        if entry["tag"] == "start":
            runs[entry["job"]].append(entry)
        else:
            ends[entry["job"]].append(entry["at"])
    assert set(runs) == set(ends) == set(by_job)
    label_of = {job_id: runs[job_id][0]["label"] for job_id in by_job}
    callbacks = 0
    succeeded: dict[str, Attempt] = {}
    for job_id, found in by_job.items():
        layer = int(label_of[job_id][1:].split(".")[0])
        parents = found.parents
        assert len(parents) == (WIDTH if layer else 0), found
        assert all(int(label_of[p][1:].split(".")[0]) == layer - 1 for p in parents)
        for run in runs[job_id]:  # after every run of every parent ended (the ledger's times)
            assert all(run["at"] >= end for p in parents for end in ends[p]), (run, found)
        if layer % 2:  # a group's callback: every member's result, in the flow's order
            callbacks += 1
            expected = [label_of[p] for p in parents]
            assert expected == [f"L{layer - 1}.{j}" for j in range(WIDTH)]
            assert all(run["results"] == expected for run in runs[job_id]), runs[job_id]
        # ran again only in place of a run whose process was killed before its end was stored
        assert {run["pid"] for run in runs[job_id][:-1]} <= killed, runs[job_id]
        *lost, last = counted_attempts(attempts[job_id], records[job_id].attempts)
        assert len(runs[job_id]) <= records[job_id].attempts, (runs[job_id], attempts[job_id])
        assert {a.outcome for a in lost} <= {AttemptOutcome.LOST}, lost
        assert last.outcome == AttemptOutcome.SUCCEEDED and last.finished_at is not None
        assert {int((a.worker_id or "").split(":")[1]) for a in lost} <= killed, lost
        succeeded[job_id] = last
    # The store's times: a step's attempt opened after its parents' ended. On SQLite a claim
    # reads its time inside the write lock, after the commit that released the step; on
    # PostgreSQL a claim and an end are stamped with the statement's time, not the
    # transaction's start (a claim whose transaction waited on the child's row lock, until the
    # release committed, was stamped before the parent's end when it was now()).
    ended = {job_id: attempt.finished_at for job_id, attempt in succeeded.items()}
    inverted = [(parent, job_id) for job_id, found in by_job.items() for parent in found.parents
                if succeeded[job_id].started_at < (ended[parent] or succeeded[job_id].started_at)]
    assert not inverted, [(succeeded[p], succeeded[c]) for p, c in inverted[:3]]
    assert callbacks == GROUPS * WIDTH
    again = sum(len(r) > 1 for r in runs.values())
    print(f"{len(killed)} kills, {again} steps ran again, {len(inverted)} store times before a "
          f"parent's end, {time.monotonic() - began:.1f} s")
