"""Workflows (issue 20): storing a big group, and how soon a released step starts.

Two measurements, each run by the harness (``run.py --only workflows``) in a fresh interpreter,
on SQLite (a file in the folder) or PostgreSQL (a ``postgresql://`` URL):

- :func:`store_group`: ``app.run_workflow(group(<members> steps, then=<callback>))``, the whole
  call timed (check, plan, store in one transaction), the callback given the members' results
  (``result_as``); beside it, in the same process and taking turns, ``enqueue_many`` of the same
  number of jobs, so the workflow's overhead reads as a ratio. The issue's target: 10,000
  members in under 1 s on SQLite.
- :func:`big_release`: the same from the callback of one such group of 10,000, stored before
  a worker drains it (its release reads and writes every member's result).
- :func:`release_latency`: a real ``jobkit worker -n N`` runs small groups (members and a
  callback) and chains submitted one at a time, a short random gap apart (so no backlog: what
  is timed is the release, not a queue). From the store's own times (each step's attempts):
  a callback's start minus the last finish of its members, and a chain step's start minus its
  parent's finish; the same from the jobs' own clock (stamps written by the methods' first
  and last lines), which also counts the parent's completion and the worker's hand-over.
  The issue's target: p50 within 50 ms.

``python bench/workflows.py`` runs both on SQLite in this interpreter (a quick look; ``--help``).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from common import percentile, settle, stop, tail
from jobkit_side import _app, _asker, _worker, setup

from jobkit import JobKit
from jobkit.workflows import Flow, chain, group, step

#: The jobs of the workflows (``bench/jobkit_jobs.py``).
JOBS = {"Flow": {"class": "jobkit_jobs:Flow"}}
#: Statuses of a job that has not ended, a step waiting for others included.
UNENDED = "('pending', 'retrying', 'running', 'blocked')"


def big_group(members: int, first: int = 0) -> Flow:
    """``members`` no-op steps and a callback given their results, ``n`` from ``first`` on."""
    return group(*[step("Flow", "member", {"n": first + n}) for n in range(members)],
                 then=step("Flow", "collect", {"n": first + members}, result_as="results"))


def store_group(workdir: str, storage: str, members: int, repeats: int,
                notifier: bool = False) -> dict[str, Any]:
    """Seconds (and CPU) to store a group of ``members`` with a callback, and the same jobs.

    ``repeats`` turns in one process and store, the order of the two swapped each turn; the
    medians, and every turn's numbers. ``enqueue_many`` stores ``members + 1`` jobs of one
    method: what the workflow stores, without the links, the checks of the results' types and
    the callback's block.
    """
    config = setup(workdir, storage, notifier=notifier, jobs=JOBS)
    params = [{"n": n} for n in range(members + 1)]
    found: dict[str, list[float]] = {"workflow_s": [], "workflow_cpu_s": [],
                                     "enqueue_many_s": [], "enqueue_many_cpu_s": []}

    def timed(key: str, work: Any) -> None:
        settle()
        cpu, began = time.process_time(), time.perf_counter()
        work()
        found[f"{key}_s"].append(time.perf_counter() - began)
        found[f"{key}_cpu_s"].append(time.process_time() - cpu)

    with _app(config) as app:
        app.run_workflow(big_group(2))  # opens (and migrates) the store, imports the checks
        app.enqueue_many("Flow", "member", params[:2])
        for turn in range(repeats):
            flow = big_group(members)  # the caller's part: built before the clock starts
            pair = [("workflow", lambda flow=flow: app.run_workflow(flow)),
                    ("enqueue_many", lambda: app.enqueue_many("Flow", "member", params))]
            for key, work in (pair if turn % 2 == 0 else pair[::-1]):
                timed(key, work)
        stored = len(app.get_workflow(app.run_workflow(big_group(members))).steps)
    if stored != members + 1:
        raise RuntimeError(f"the workflow has {stored} steps, expected {members + 1}")
    medians = {key: statistics.median(values) for key, values in found.items()}
    return {**medians, "runs": found, "members": members, "repeats": repeats,
            "ratio": medians["workflow_s"] / medians["enqueue_many_s"],
            "rate": (members + 1) / medians["workflow_s"]}


def _flows(groups: int, members: int, chains: int, length: int) -> list[tuple[str, Flow]]:
    """The workflows to submit, groups and chains taking turns: ``(kind, flow)``.

    Every step has an ``n`` of its own (its stamps').
    """
    numbers = iter(range(groups * (members + 1) + chains * length))
    made: list[tuple[str, Flow]] = [
        ("group", group(*[step("Flow", "member", {"n": next(numbers)}) for _ in range(members)],
                        then=step("Flow", "collect", {"n": next(numbers)},
                                  result_as="results")))
        for _ in range(groups)]
    links = [("chain", chain(step("Flow", "member", {"n": next(numbers)}),
                             *[step("Flow", "then", {"n": next(numbers)}, result_as="previous")
                               for _ in range(1, length)]))
             for _ in range(chains)]
    mixed = []
    for position in range(max(groups, chains)):
        mixed += made[position:position + 1] + links[position:position + 1]
    return mixed


def _succeeded(app: JobKit, job_id: str) -> tuple[datetime, datetime]:
    """The start and finish of the job's succeeded attempt (the store's times)."""
    for attempt in app.get_attempts(job_id):
        if attempt.outcome is not None and attempt.outcome.value == "succeeded":
            assert attempt.finished_at is not None
            return attempt.started_at, attempt.finished_at
    raise RuntimeError(f"job {job_id} has no succeeded attempt")


def _gaps(app: JobKit, workflow_ids: dict[str, str],
          stamps: dict[int, float]) -> dict[str, list[float]]:
    """For each released step: its start minus its parents' last finish, in ms, by kind.

    ``group`` and ``chain`` from the store's times: the step's succeeded attempt's start, its
    parents' finish (read with every job in one list: a job that ran once finished when its
    attempt did; another is read from its attempts); ``group_job``, ``chain_job`` from the
    jobs' own clock (``stamps``: the method's first line in the step, its last in the parents).
    """
    records = {record.id: record for record in app.list_jobs(name="Flow", limit=10**7)}

    def finished(job_id: str) -> datetime:
        record = records[job_id]
        if record.attempts == 1 and record.finished_at is not None:
            return record.finished_at
        return _succeeded(app, job_id)[1]

    gaps: dict[str, list[float]] = {"group": [], "chain": [], "group_job": [], "chain_job": []}
    for workflow_id, kind in workflow_ids.items():
        for one in app.get_workflow(workflow_id).steps:
            if not one.parents:
                continue
            last = max(finished(parent) for parent in one.parents)
            started = _succeeded(app, one.job_id)[0]
            gaps[kind].append((started - last).total_seconds() * 1000)
            ended = max(stamps[2 * records[parent].params["n"] + 1] for parent in one.parents)
            gaps[f"{kind}_job"].append(
                (stamps[2 * records[one.job_id].params["n"]] - ended) * 1000)
    return gaps


def _read_stamps(path: Path) -> dict[int, float]:
    found = {}
    for line in path.read_text().splitlines():
        n, at = line.split()
        found[int(n)] = float(at)
    return found


def _summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    return {"count": len(values), "p50_ms": statistics.median(values),
            "p95_ms": percentile(values, 0.95), "max_ms": max(values), "min_ms": min(values),
            "negative": sum(value < 0 for value in values)}


def release_latency(workdir: str, storage: str, groups: int, members: int, chains: int,
                    length: int, processes: int = 2, gap: tuple[float, float] = (0.02, 0.06),
                    timeout: float = 600) -> dict[str, Any]:
    """How soon a released step starts, under ``jobkit worker -n processes`` (store's times).

    ``groups`` groups of ``members`` no-op members and a callback given their results, and
    ``chains`` chains of ``length`` steps each given the previous one's result, submitted one
    at a time (groups and chains taking turns), each ``gap`` seconds (random) after the
    previous one, while the worker runs; then the worker runs until none has a step left.
    ``group``: each callback's start minus its members' last finish; ``chain``: each step's
    start minus its parent's finish (ms; on PostgreSQL a time is its transaction's start, so a
    step claimed in the transaction that completed its parent may read a little negative).
    """
    flows = _flows(groups, members, chains, length)
    found = _run_and_measure(workdir, storage, flows, processes, gap, timeout)
    return {**found, "groups": groups, "members": members, "chains": chains,
            "length": length, "processes": processes}


def big_release(workdir: str, storage: str, members: int, processes: int = 2,
                timeout: float = 600) -> dict[str, Any]:
    """How soon the callback of one group of ``members`` starts after its last member ended.

    The group of :func:`store_group`, stored before the worker starts, then drained by
    ``jobkit worker -n processes``: its release reads every member's result and writes them
    all into the callback's params, in the last member's completion. ``group_ms``: the store's
    times; ``group_job_ms``: the jobs' clock (as :func:`release_latency`).
    """
    found = _run_and_measure(workdir, storage, [("group", big_group(members, first=0))],
                             processes, (0.0, 0.0), timeout, before=True)
    return {"group_ms": found["group_p50_ms"], "group_job_ms": found["group_job_p50_ms"],
            "members": members, "processes": processes}


def _run_and_measure(workdir: str, storage: str, flows: list[tuple[str, Flow]],
                     processes: int, gap: tuple[float, float], timeout: float,
                     before: bool = False) -> dict[str, Any]:
    """Run ``flows`` under a worker; the summaries of :func:`_gaps`, their p50 and p95 flat.

    The flows are stored ``before`` the worker starts, else one at a time while it runs,
    ``gap`` seconds apart.
    """
    config = setup(workdir, storage, jobs=JOBS)
    ask, close = _asker(storage, workdir,
                        f"SELECT count(*) FROM jobkit_jobs WHERE status IN {UNENDED}")
    stamps = Path(workdir) / "stamps.txt"
    submitted: dict[str, str] = {}
    worker = None
    try:
        with _app(config) as app:
            if before:
                submitted = {app.run_workflow(flow): kind for kind, flow in flows}
                settle()
            worker, log = _worker(config, workdir, processes, BENCH_STAMP_FILE=str(stamps))
            if not before:
                app.run_background_job("Flow", "member", {"n": -1})
                _wait_until_none_left(ask, worker, log, timeout)  # the worker is up
                for kind, flow in flows:
                    submitted[app.run_workflow(flow)] = kind
                    time.sleep(random.uniform(*gap))
            _wait_until_none_left(ask, worker, log, timeout)
    finally:
        if worker is not None:
            stop(worker)
        close()
    with _app(config) as app:
        gaps = _gaps(app, submitted, _read_stamps(stamps))
    found: dict[str, Any] = {kind: _summary(values) for kind, values in gaps.items()}
    for kind, summary in list(found.items()):
        found |= {f"{kind}_{key}": summary.get(key) for key in ("p50_ms", "p95_ms")}
    return found


def _wait_until_none_left(ask: Any, worker: Any, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while ask()[0]:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited:\n{tail(log)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"steps left after {timeout:g} s:\n{tail(log)}")
        time.sleep(0.02)


def shown_store(result: dict[str, Any]) -> str:
    """A :func:`store_group` result, for the progress lines."""
    return (f"{result['workflow_s'] * 1000:.0f} ms ({result['workflow_cpu_s'] * 1000:.0f} ms "
            f"CPU), enqueue_many {result['enqueue_many_s'] * 1000:.0f} ms: "
            f"{result['ratio']:.2f}x")


def shown_latency(result: dict[str, Any]) -> str:
    """A :func:`release_latency` result, for the progress lines."""
    return "; ".join(
        f"{what} p50 {result[f'{kind}_p50_ms']:.1f} ms p95 {result[f'{kind}_p95_ms']:.1f} ms"
        for kind, what in (("group", "callback"), ("chain", "chain step"),
                           ("group_job", "callback (jobs' clock)"),
                           ("chain_job", "chain step (jobs' clock)")))


def shown_big(result: dict[str, Any]) -> str:
    """A :func:`big_release` result, for the progress lines."""
    return (f"callback of {result['members']:,} members {result['group_ms']:.1f} ms after the "
            f"last one (jobs' clock {result['group_job_ms']:.1f} ms)")


def main(argv: list[str] | None = None) -> None:
    """Both measurements on SQLite, in this interpreter, printed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--chains", type=int, default=100)
    parser.add_argument("--storage", default="sqlite")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args(argv)
    folder = tempfile.mkdtemp(prefix="jobkit-workflows-")
    print("store:", shown_store(store_group(f"{folder}/store", args.storage, args.members,
                                            args.repeats)), flush=True)
    if not args.skip_latency:
        print("latency:", shown_latency(release_latency(
            f"{folder}/latency", args.storage, args.groups, 5, args.chains, 5)))


if __name__ == "__main__":
    main()
