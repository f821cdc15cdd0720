"""A worker's drain rate beside a retention pass over a million old jobs, against none (SQLite).

Run with `make bench-retention` (jobkit's own virtualenv; `--quick` for a small store), or as
the `retention` section of `bench/run.py`. A store of ``rows`` completed jobs, each with its
attempt and one log line, all finished 30 days ago, is built once. Each pair then runs two
sides at once, each in a process of its own on its own copy of that store with ``jobs`` new
jobs enqueued: a `jobkit worker -n processes` alone, and one beside a retention pass
(:class:`jobkit.worker.retention.Retainer`, the supervisor's, with its batch size and pauses,
``completed: 7d``) run in another process, as a supervisor runs it beside its worker
processes. Both start together and count the jobs they finish in ``window`` seconds, so the
load of a shared machine falls on both alike: the ratio of their rates (with / without) is the
cost of the pass, near 1 when it holds no lock long. The workers' own retention is off
(``JOBKIT_RETENTION__COMPLETED=forever``). Also reported: the rows the pass deleted in the
window, its CPU per row, how long its batches took (each one write transaction) and that it
was still running at the end.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import POLL, median, settle, stop, tail
from jobkit_side import _remaining, _worker, prefill, scale_template, setup

from jobkit import JobKit
from jobkit.config import Retention
from jobkit.worker.retention import BATCH_SIZE, PAUSE, SHARE, Retainer

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


def pg_template(workdir: str, url: str, rows: int) -> dict[str, Any]:
    """:func:`template` in the PostgreSQL database at ``url`` (to copy with ``TEMPLATE``)."""
    import psycopg

    from jobkit.worker import run_until_empty

    started = time.perf_counter()
    with JobKit.from_config(setup(workdir, url)) as app:
        app.run_background_job("Noop", "run", {"n": 0})
        run_until_empty(app)
    with psycopg.connect(url, autocommit=True) as conn:
        def columns(table: str) -> list[str]:
            return [row[0] for row in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                "AND column_name <> 'id' ORDER BY ordinal_position", (table,))]

        ago = f"interval '{AGE_DAYS} days'"
        timed = {"created_at", "available_at", "started_at", "finished_at"}
        jobs = {column: (f"t.{column} - {ago} - seq.i * interval '1 ms'" if column in timed
                         else "json_build_object('n', seq.i)" if column == "params"
                         else f"t.{column}") for column in columns("jobkit_jobs")}
        attempts = {column: ("j.id" if column == "job_id"
                             else f"j.{column}" if column in ("started_at", "finished_at")
                             else f"a.{column}") for column in columns("jobkit_attempts")}
        with conn.transaction():
            conn.execute(f"INSERT INTO jobkit_jobs ({', '.join(jobs)}) "
                         f"SELECT {', '.join(jobs.values())} FROM generate_series(1, %s) AS "
                         f"seq(i), jobkit_jobs AS t", (rows - 1,))
            conn.execute(f"INSERT INTO jobkit_attempts ({', '.join(attempts)}) "
                         f"SELECT {', '.join(attempts.values())} FROM jobkit_jobs AS j, "
                         "jobkit_attempts AS a WHERE a.job_id = (SELECT min(id) FROM "
                         "jobkit_jobs) AND j.id <> a.job_id")
            conn.execute(f"DELETE FROM jobkit_jobs WHERE finished_at > now() - {ago}")
            conn.execute("INSERT INTO jobkit_job_logs (job_id, attempt, at, level, message) "
                         "SELECT id, 1, finished_at, 'INFO', 'sent the monthly report to ' "
                         "|| id FROM jobkit_jobs")
        conn.execute("VACUUM ANALYZE")
        (count,) = conn.execute("SELECT count(*) FROM jobkit_jobs").fetchone() or (0,)
        (size,) = conn.execute("SELECT pg_database_size(current_database())").fetchone() or (0,)
    return {"rows": count, "seconds": time.perf_counter() - started, "mb": size / 2**20}


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


class _Pass:
    """A retention pass run in a thread of this process, as a worker's supervisor runs it."""

    def __init__(self, config: Path, batch_size: int, pause: float, share: float) -> None:
        self.app = JobKit.from_config(config)
        storage = self.app.storage
        self.retainer = _Watched(lambda: storage, KEEP, batch_size=batch_size, pause=pause,
                                 share=share)
        self.finished: list[bool] = []
        self.thread = threading.Thread(target=self._run, name="bench-retention")
        self.began = time.perf_counter()
        self.cpu = time.thread_time()  # of the caller: replaced by the pass's own below
        self.thread.start()

    def _run(self) -> None:
        began = time.thread_time()
        try:
            self.retainer.run_once()
            self.finished.append(True)
        except Exception:  # stopped between two batches
            self.finished.append(False)
        self.cpu = time.thread_time() - began

    def stop(self) -> dict[str, Any]:
        """Stop the pass after its batch; what it did."""
        seconds = time.perf_counter() - self.began
        self.retainer.stop()
        self.thread.join(120)
        self.app.close()
        batches = sorted(self.retainer.batch_seconds) or [0.0]
        deleted = self.retainer.deleted
        return {
            "deleted": deleted,
            "rows_per_s": deleted / seconds,
            "cpu_us_per_row": self.cpu / deleted * 1e6 if deleted else math.nan,
            "batches": len(self.retainer.batch_seconds),
            "batch_ms_median": statistics.median(batches) * 1000,
            "batch_ms_p95": batches[int(0.95 * (len(batches) - 1))] * 1000,
            "batch_ms_max": batches[-1] * 1000,
            "still_running": self.finished == [False],
        }


def _wait_for(path: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.01)


def side(workdir: str, seed: str, jobs: int, processes: int, prune: bool, meet: str,
         window: float, batch_size: int = BATCH_SIZE, pause: float = PAUSE,
         share: float = SHARE) -> dict[str, Any]:
    """One side of a pair: a worker's rate over ``window`` seconds, with or without the pass.

    Copies ``seed`` (a SQLite file; a ``postgresql://`` URL is the side's database, a copy
    already), enqueues ``jobs`` and waits at ``meet`` (a folder) for the other side; then
    starts the pass (``prune``) and `jobkit worker -n processes`, and counts the jobs finished
    in ``window`` seconds from the first poll that sees one started."""
    folder = Path(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    storage = seed if seed.startswith("postgresql://") else "sqlite"
    if storage == "sqlite":
        shutil.copyfile(seed, folder / "jobkit.db")
    config = setup(workdir, storage)
    with JobKit.from_config(config) as app:
        prefill(app, jobs)
    settle()
    kind = "with" if prune else "without"
    (Path(meet) / kind).touch()
    _wait_for(Path(meet) / ("without" if prune else "with"))
    remaining, close = _remaining(storage, workdir)
    beside = _Pass(config, batch_size, pause, share) if prune else None
    # the worker's own retention stays off: only the pass measured runs
    worker, log = _worker(config, workdir, processes, JOBKIT_RETENTION__COMPLETED="forever")
    try:
        while (first := remaining()) == jobs:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited:\n{tail(log)}")
            time.sleep(POLL)
        began = time.perf_counter()
        time.sleep(window)
        left = remaining()
        seconds = time.perf_counter() - began
        if left == 0:
            raise RuntimeError(f"{jobs} jobs ran out within the window: enqueue more")
        report = beside.stop() if beside is not None else {}
        beside = None
    finally:
        if beside is not None:
            beside.stop()
        stop(worker)
        close()
    return {"rate": (first - left) / seconds, "prune": report}


def pair(workdir: str, seed: str, jobs: int, processes: int, window: float,
         batch_size: int = BATCH_SIZE, pause: float = PAUSE, share: float = SHARE
         ) -> dict[str, Any]:
    """Both sides at once, each in a process of its own: their rates and the ratio."""
    from child import run_child

    meet = Path(workdir) / "meet"
    meet.mkdir(parents=True)
    found: dict[str, Any] = {}
    seeds = {"with": seed, "without": seed}
    if seed.startswith("postgresql://"):  # the template database: one copy per side
        seeds = {kind: _copy_database(seed, f"retention_{kind}") for kind in seeds}

    def run(prune: bool) -> None:
        kind = "with" if prune else "without"
        found[kind] = run_child("retention_drain:side", Path(workdir) / f"{kind}.log",
                                workdir=str(Path(workdir) / kind), seed=seeds[kind], jobs=jobs,
                                processes=processes, prune=prune, meet=str(meet),
                                window=window, batch_size=batch_size, pause=pause,
                                share=share)

    threads = [threading.Thread(target=run, args=(prune,)) for prune in (False, True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if set(found) != {"with", "without"}:
        raise RuntimeError(f"a side failed: see {workdir}/*.log")
    return {"without": found["without"]["rate"], "with": found["with"]["rate"],
            "ratio": found["with"]["rate"] / found["without"]["rate"],
            "prune": found["with"]["prune"]}


def _copy_database(url: str, name: str) -> str:
    """A new database ``name`` made from the one at ``url`` (``CREATE DATABASE ... TEMPLATE``)."""
    import psycopg

    base, _, template = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'.encode())
    return f"{base}/{name}"


def shown(result: dict[str, Any]) -> str:
    """One pair, for the progress lines."""
    prune = result["prune"]
    return (f"{result['without']:.0f} jobs/s alone, {result['with']:.0f} beside the pass: "
            f"ratio {result['ratio']:.2f}; the pass deleted {prune['deleted']:,} rows "
            f"({prune['rows_per_s']:.0f}/s, {prune['cpu_us_per_row']:.0f} us CPU a row; "
            f"batches {prune['batch_ms_median']:.0f} ms median, p95 "
            f"{prune['batch_ms_p95']:.0f}, max {prune['batch_ms_max']:.0f}; "
            f"{'still running' if prune['still_running'] else 'FINISHED within the window'})")


def main(rows: int, jobs: int, processes: int, runs: int, window: float, batch_size: int,
         pause: float, share: float, keep: str | None = None, postgres: bool = False) -> None:
    """Build the store, run ``runs`` pairs, print each and the median ratio."""
    server = None
    with tempfile.TemporaryDirectory(dir=keep) as tmp:
        print(f"building a store of {rows:,} completed jobs ...", end=" ", flush=True)
        if postgres:
            from pg import BenchServer, find_bin_dir

            bin_dir = find_bin_dir()
            if bin_dir is None:
                raise SystemExit("no PostgreSQL server binaries")
            server = BenchServer(bin_dir)
            server.start()
            url = server.create_database("retention_template")
            built = {**pg_template(str(Path(tmp) / "template"), url, rows), "path": url}
        else:
            built = template(str(Path(tmp) / "template"), rows)
        print(f"{built['mb']:.0f} MB in {built['seconds']:.1f} s", flush=True)
        pairs = []
        try:
            for index in range(runs):
                result = pair(str(Path(tmp) / f"run-{index}"), built["path"], jobs, processes,
                              window, batch_size, pause, share)
                print(f"pair {index + 1}: {shown(result)}", flush=True)
                pairs.append(result)
        finally:
            if server is not None:
                server.cleanup()
    ratios = [p["ratio"] for p in pairs]
    print(f"{'PostgreSQL' if postgres else 'SQLite'}, two `jobkit worker -n {processes}` at "
          f"once for {window:g} s each, one "
          f"beside a retention pass over {rows:,} old jobs (batch {batch_size}, pause >= "
          f"{pause:g} s, batches {share:.0%} of the time): drain rate ratio (with / "
          f"without), median of {runs} pairs: {median(ratios):.2f} "
          f"({', '.join(f'{ratio:.2f}' for ratio in ratios)})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="old jobs in the store")
    parser.add_argument("--jobs", type=int, default=60_000, help="jobs enqueued for each side")
    parser.add_argument("--processes", type=int, default=1, help="of each side's worker")
    parser.add_argument("--runs", type=int, default=3, help="pairs")
    parser.add_argument("--window", type=float, default=8.0, help="seconds counted")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--pause", type=float, default=PAUSE)
    parser.add_argument("--share", type=float, default=SHARE)
    parser.add_argument("--keep", metavar="DIR", help="work in DIR (kept) instead of /tmp")
    parser.add_argument("--postgres", action="store_true",
                        help="on a throw-away PostgreSQL server (PostgreSQL's durable defaults)")
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 1 pair of 3 s")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.jobs, args.runs, args.window = 100_000, 30_000, 1, 3.0
    main(args.rows, args.jobs, args.processes, args.runs, args.window, args.batch_size,
         args.pause, args.share, args.keep, args.postgres)
