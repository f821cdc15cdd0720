"""A worker's drain rate while retention prunes a million finished jobs, against none (SQLite).

Run with `.venv/bin/python bench/retention_drain.py` (jobkit's own virtualenv; `--quick` for a
small store), or as the `retention` section of `bench/run.py`. A store of ``rows`` completed
jobs, each with its attempt and one log line, all finished 30 days ago, is built once. Each
pair of runs then drains ``jobs`` new jobs with `jobkit worker -n processes --burst` from a copy
of it twice: once alone, and once while a retention pass (:class:`jobkit.worker.retention.
Retainer`, the worker supervisor's, with its batch size and pauses, ``completed: 7d``) deletes
the old jobs beside it, from another process as a supervisor does. The worker's own retention
is off (``JOBKIT_RETENTION__COMPLETED=forever``) so that only the pass measured runs. Prints
each pair's rates and the ratio of the medians (with / without); a ratio near 1 is the goal.
Also reported: how many rows the pass deleted during the drain, how long its batches took
(the write lock each held) and whether it was still running at the end (it must be, for the
drain to have run beside it all along).
"""

from __future__ import annotations

import argparse
import math
import os
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import median
from jobkit_side import drain, scale_template

from jobkit import JobKit
from jobkit.config import Retention
from jobkit.worker.retention import BATCH_SIZE, PAUSE, Retainer

#: How long ago the store's old jobs finished (retention ``completed: 7d`` deletes them all).
AGE_DAYS = 30
#: The retention the pass applies.
KEEP = Retention(completed=7 * 86400.0, failed=math.inf, cancelled=math.inf)


def template(workdir: str, rows: int) -> dict[str, Any]:
    """A store of ``rows`` completed jobs finished ``AGE_DAYS`` ago, each with a log line.

    :func:`jobkit_side.scale_template`'s jobs and attempts, their times moved back, plus one
    log line per job (retention deletes jobs with their attempts and log lines)."""
    started = time.perf_counter()
    built = scale_template(workdir, rows)
    conn = sqlite3.connect(built["path"], isolation_level=None)
    try:
        age = {"age": AGE_DAYS * 86400}
        conn.execute("BEGIN")
        conn.execute("UPDATE jobkit_jobs SET created_at = created_at - :age, "
                     "available_at = available_at - :age, started_at = started_at - :age, "
                     "finished_at = finished_at - :age", age)
        conn.execute("UPDATE jobkit_attempts SET started_at = started_at - :age, "
                     "finished_at = finished_at - :age", age)
        conn.execute("INSERT INTO jobkit_job_logs (job_id, attempt, at, level, message) "
                     "SELECT id, 1, finished_at, 'INFO', 'sent the monthly report to ' || id "
                     "FROM jobkit_jobs")
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    path = Path(built["path"])
    return {**built, "seconds": time.perf_counter() - started, "mb": path.stat().st_size / 2**20}


class _Watched(Retainer):
    """The supervisor's retention, noting what each batch deleted and how long it took."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deleted = 0
        self.batch_seconds: list[float] = []

    def _between_batches(self, total: int) -> None:
        self.batch_seconds.append(time.monotonic() - self._batch_started)
        self.deleted = total  # one status (completed): the running total of the pass
        super()._between_batches(total)


def _pruning(batch_size: int, pause: float) -> Callable[[Path], Callable[[], dict[str, Any]]]:
    """What starts a retention pass beside a drain (``jobkit_side.drain``'s ``beside``)."""

    def start(config: Path) -> Callable[[], dict[str, Any]]:
        app = JobKit.from_config(config)
        storage = app.storage
        retainer = _Watched(lambda: storage, KEEP, batch_size=batch_size, pause=pause)
        finished: list[bool] = []

        def run() -> None:
            try:
                retainer.run_once()
                finished.append(True)
            except Exception:  # stopped between two batches (or failed: reported as unfinished)
                finished.append(False)

        thread = threading.Thread(target=run, name="bench-retention")
        began = time.perf_counter()
        thread.start()

        def stop() -> dict[str, Any]:
            seconds = time.perf_counter() - began
            retainer.stop()
            thread.join(120)
            app.close()
            batches = sorted(retainer.batch_seconds) or [0.0]
            return {
                "deleted": retainer.deleted,
                "seconds": seconds,
                "rows_per_s": retainer.deleted / seconds,
                "batches": len(retainer.batch_seconds),
                "batch_ms_median": statistics.median(batches) * 1000,
                "batch_ms_max": batches[-1] * 1000,
                "still_running": finished == [False],
            }

        return stop

    return start


def drain_pair(workdir: str, seed: str, jobs: int, processes: int, order: int = 0,
               batch_size: int = BATCH_SIZE, pause: float = PAUSE) -> dict[str, Any]:
    """Two drains from copies of ``seed``: alone, and beside a retention pass.

    ``order`` odd runs the one with the pass first. Returns both rates, their ratio
    (with / without) and the pass's report."""
    os.environ["JOBKIT_RETENTION__COMPLETED"] = "forever"  # the worker's own pass stays off
    found: dict[str, Any] = {}
    kinds = ["without", "with"] if order % 2 == 0 else ["with", "without"]
    for kind in kinds:
        beside = _pruning(batch_size, pause) if kind == "with" else None
        result = drain(str(Path(workdir) / kind), "sqlite", jobs, processes, seed=seed,
                       beside=beside)
        found[kind] = result["rate"]
        if beside is not None:
            found["prune"] = result["beside"]
    found["ratio"] = found["with"] / found["without"]
    return found


def shown(result: dict[str, Any]) -> str:
    """One pair of drains, for the progress lines."""
    prune = result["prune"]
    return (f"{result['without']:.0f} jobs/s alone, {result['with']:.0f} beside the pass: "
            f"ratio {result['ratio']:.2f}; the pass deleted {prune['deleted']:,} rows "
            f"({prune['rows_per_s']:.0f}/s, batches of {prune['batch_ms_median']:.0f} ms, "
            f"at most {prune['batch_ms_max']:.0f} ms; "
            f"{'still running' if prune['still_running'] else 'FINISHED before the drain'})")


def main(rows: int, jobs: int, processes: int, runs: int, batch_size: int, pause: float) -> None:
    """Build the store, run ``runs`` pairs, print each and the ratio of the medians."""
    with tempfile.TemporaryDirectory() as tmp:
        print(f"building a store of {rows:,} completed jobs ...", end=" ", flush=True)
        built = template(str(Path(tmp) / "template"), rows)
        print(f"{built['mb']:.0f} MB in {built['seconds']:.1f} s", flush=True)
        pairs = []
        for index in range(runs):
            result = drain_pair(str(Path(tmp) / f"run-{index}"), built["path"], jobs, processes,
                                order=index, batch_size=batch_size, pause=pause)
            print(f"pair {index + 1}: {shown(result)}", flush=True)
            pairs.append(result)
    alone = median(pair["without"] for pair in pairs)
    beside = median(pair["with"] for pair in pairs)
    print(f"drain of {jobs:,} jobs, {processes} process(es), SQLite: median {alone:.0f} jobs/s "
          f"alone, {beside:.0f} jobs/s beside a retention pass over {rows:,} rows: "
          f"ratio {beside / alone:.2f} (batch {batch_size}, pause >= {pause:g} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--pause", type=float, default=PAUSE)
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 2,000 jobs, 1 run")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.jobs, args.runs = 100_000, 2_000, 1
    main(args.rows, args.jobs, args.processes, args.runs, args.batch_size, args.pause)
