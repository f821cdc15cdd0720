"""jobkit's side of the benchmark. Each public function is one measurement, run in a fresh
interpreter by the harness (``child.py``), in a folder of its own.

``storage`` is ``"sqlite"`` (a new file in the folder) or a ``postgresql://`` URL (the harness
empties the database between runs). Workers are real ``jobkit worker`` processes (a supervisor
and ``-n`` spawned processes) with default worker settings; the configuration written here
changes only where the store and the logs go.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import yaml
from common import (
    BENCH,
    StampReader,
    bench_env,
    chunks,
    pickup_loop,
    settle,
    spawn,
    stop,
    tail,
    watch_drain,
)

from jobkit import JobKit
from jobkit.records import JobStatus

#: Statuses of a job that is not finished yet.
UNFINISHED = "('pending', 'retrying', 'running')"


def setup(
    workdir: str,
    storage: str,
    durability: str = "default",
    poll_interval: float | None = None,
) -> Path:
    """Write ``jobs.yaml`` into ``workdir`` and put ``bench/`` on this process's import path;
    the file's path. ``durability="full"`` sets ``durability: full`` (SQLite fsyncs every
    commit); the default leaves it out."""
    folder = Path(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "storage": storage if storage != "sqlite" else f"sqlite:///{folder / 'jobkit.db'}",
        "logging": {"dir": str(folder / "logs")},
        "jobs": {"Noop": {"class": "jobkit_jobs:Noop"}},
    }
    if durability != "default":
        config["durability"] = durability
    if poll_interval is not None:
        config["worker"] = {"poll_interval": poll_interval}
    path = folder / "jobs.yaml"
    path.write_text(yaml.safe_dump(config))
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return path


def _app(config: Path) -> JobKit:
    return JobKit.from_config(config)


def _enqueue_many(app: JobKit) -> tuple[Callable[[list[dict[str, int]]], object], str]:
    """``app.enqueue_many`` if jobkit has it yet, else a loop of ``run_background_job``."""
    bulk = getattr(app, "enqueue_many", None)
    if bulk is not None:
        return (lambda batch: bulk("Noop", "run", batch)), "enqueue_many"
    warnings.warn(
        "JobKit.enqueue_many does not exist yet: bulk enqueue falls back to a loop of "
        "run_background_job", stacklevel=2,
    )

    def loop(batch: list[dict[str, int]]) -> None:
        for params in batch:
            app.run_background_job("Noop", "run", params)

    return loop, "loop (no enqueue_many yet)"


def prefill(app: JobKit, jobs: int, batch: int = 1000) -> str:
    """Enqueue ``jobs`` no-op jobs, as fast as jobkit can; which API did it."""
    bulk, api = _enqueue_many(app)
    for part in chunks(jobs, batch):
        bulk(part)
    return api


# -- measurements ----------------------------------------------------------------------------------


def enqueue_one(
    workdir: str, storage: str, jobs: int, durability: str = "default"
) -> dict[str, Any]:
    """Enqueue throughput, one ``run_background_job`` call at a time (jobs/s)."""
    config = setup(workdir, storage, durability)
    with _app(config) as app:
        app.run_background_job("Noop", "run", {"n": -1})  # opens (and migrates) the store
        started = time.perf_counter()
        for n in range(jobs):
            app.run_background_job("Noop", "run", {"n": n})
        seconds = time.perf_counter() - started
    return {"rate": jobs / seconds, "seconds": seconds}


def enqueue_bulk(workdir: str, storage: str, jobs: int, batch: int) -> dict[str, Any]:
    """Bulk enqueue throughput (jobs/s): ``enqueue_many`` with ``batch`` jobs per call."""
    config = setup(workdir, storage)
    with _app(config) as app:
        app.run_background_job("Noop", "run", {"n": -1})
        bulk, api = _enqueue_many(app)
        parts = chunks(jobs, batch)
        started = time.perf_counter()
        for part in parts:
            bulk(part)
        seconds = time.perf_counter() - started
    return {"rate": jobs / seconds, "seconds": seconds, "api": api}


def _remaining(storage: str, workdir: str) -> tuple[Callable[[], int], Callable[[], None]]:
    """A function that counts the unfinished jobs, and one that closes its connection."""
    query = f"SELECT count(*) FROM jobkit_jobs WHERE status IN {UNFINISHED}"
    if storage == "sqlite":
        conn = sqlite3.connect(Path(workdir) / "jobkit.db", isolation_level=None)
        return (lambda: int(conn.execute(query).fetchone()[0])), conn.close
    import psycopg

    pg = psycopg.connect(storage, autocommit=True)

    def count() -> int:
        row = pg.execute(query.encode()).fetchone()
        return int(row[0]) if row else 0

    return count, pg.close


def _worker(config: Path, workdir: str, processes: int, *args: str,
            **env: str) -> tuple[Any, Path]:
    log = Path(workdir) / f"worker-{time.monotonic_ns()}.out"
    command = [sys.executable, "-m", "jobkit", "--config", str(config), "--path", str(BENCH),
               "worker", "-n", str(processes), *args]
    return spawn(command, log, bench_env(**env), cwd=Path(workdir)), log


def drain(
    workdir: str,
    storage: str,
    jobs: int,
    processes: int,
    durability: str = "default",
    seed: str | None = None,
    timeout: float = 1800,
) -> dict[str, Any]:
    """Drain throughput of ``jobkit worker -n processes --burst`` over ``jobs`` pre-enqueued
    jobs (``seed``: a store file to start from, e.g. one with a million finished jobs)."""
    before = 0
    if seed is not None:
        before = completed_in(seed)
        Path(workdir).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(seed, Path(workdir) / "jobkit.db")
    config = setup(workdir, storage, durability)
    with _app(config) as app:
        api = prefill(app, jobs)
    settle()
    remaining, close = _remaining(storage, workdir)
    try:
        spawned = time.perf_counter()
        worker, log = _worker(config, workdir, processes, "--burst")
        try:
            result: dict[str, Any] = watch_drain(remaining, jobs, [worker], spawned, log, timeout)
            worker.wait(120)
            result["exit_s"] = time.perf_counter() - spawned
            result["exit_code"] = worker.returncode
        finally:
            stop(worker)
    finally:
        close()
    with _app(config) as app:
        done = app.storage.count(status=JobStatus.COMPLETED)
    if done != jobs + before:
        raise RuntimeError(f"{done} jobs completed, expected {jobs + before}:\n{tail(log)}")
    result["prefill_api"] = api
    return result


def completed_in(seed: str) -> int:
    """How many completed jobs a seed store holds."""
    conn = sqlite3.connect(seed)
    try:
        return int(conn.execute(
            "SELECT count(*) FROM jobkit_jobs WHERE status = 'completed'").fetchone()[0])
    finally:
        conn.close()


def pickup(
    workdir: str,
    storage: str,
    samples: int,
    idle_seconds: float,
    poll_interval: float | None = None,
) -> dict[str, Any]:
    """Pick-up latency and idle CPU of an idle ``jobkit worker -n 1`` (see
    :func:`common.pickup_loop`)."""
    config = setup(workdir, storage, poll_interval=poll_interval)
    stamps = StampReader(Path(workdir) / "stamps.txt")
    worker, log = _worker(config, workdir, 1, BENCH_STAMP_FILE=str(stamps.path))
    try:
        with _app(config) as app:

            def enqueue(n: int) -> None:
                app.run_background_job("Noop", "stamp", {"n": n})

            result = pickup_loop(
                enqueue, stamps, samples=samples, idle_pid=worker.pid,
                idle_seconds=idle_seconds, alive=lambda: worker.poll() is None,
            )
    except Exception as exc:
        raise RuntimeError(f"{exc}\n{tail(log)}") from exc
    finally:
        stop(worker)
    result["poll_interval"] = poll_interval if poll_interval is not None else "default"
    return result


def _worker_processes(supervisor: int) -> list[psutil.Process]:
    """The spawned worker processes of a supervisor (not multiprocessing's resource tracker)."""
    found = []
    for child in psutil.Process(supervisor).children():
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "resource_tracker" not in cmdline:
            found.append(child)
    return found


def rss(workdir: str, jobs: int, early: int, timeout: float = 3600) -> dict[str, Any]:
    """RSS of a worker process (``jobkit worker -n 1`` on SQLite) after ``early`` jobs and after
    ``jobs`` jobs, in MB."""
    config = setup(workdir, "sqlite")
    with _app(config) as app:
        api = prefill(app, jobs, batch=5000)
    settle()
    remaining, close = _remaining("sqlite", workdir)
    worker, log = _worker(config, workdir, 1)
    samples: dict[str, float] = {}
    started = time.monotonic()
    try:
        while True:
            done = jobs - remaining()
            if "early_mb" not in samples and done >= early:
                [process] = _worker_processes(worker.pid)
                samples["early_mb"] = process.memory_info().rss / 2**20
                samples["early_done"] = done
                supervisor = psutil.Process(worker.pid)
                samples["early_supervisor_mb"] = supervisor.memory_info().rss / 2**20
            if done >= jobs:
                [process] = _worker_processes(worker.pid)
                samples["late_mb"] = process.memory_info().rss / 2**20
                supervisor = psutil.Process(worker.pid)
                samples["late_supervisor_mb"] = supervisor.memory_info().rss / 2**20
                break
            if worker.poll() is not None or time.monotonic() - started > timeout:
                raise RuntimeError(f"worker gone or too slow with {jobs - done} jobs left:\n"
                                   f"{tail(log)}")
            time.sleep(0.01 if "early_mb" not in samples else 0.2)
    finally:
        close()
        stop(worker, signal.SIGTERM)
    samples["ratio"] = samples["late_mb"] / samples["early_mb"]
    return {**samples, "jobs": jobs, "early": early, "prefill_api": api}


def scale_template(workdir: str, rows: int) -> dict[str, Any]:
    """A store file holding ``rows`` completed jobs (each with its succeeded attempt), built by
    SQL from one job that a real worker loop ran (so every column is as jobkit writes it)."""
    from jobkit.worker import run_until_empty

    config = setup(workdir, "sqlite")
    path = Path(workdir) / "jobkit.db"
    started = time.perf_counter()
    with _app(config) as app:
        app.run_background_job("Noop", "run", {"n": 0})
        run_until_empty(app)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        [template] = conn.execute("SELECT id FROM jobkit_jobs").fetchone()
        job_columns = [row[1] for row in conn.execute("PRAGMA table_info(jobkit_jobs)")]
        attempt_columns = [row[1] for row in conn.execute("PRAGMA table_info(jobkit_attempts)")]
        timed = {"created_at", "available_at", "started_at", "finished_at"}
        job_values = {
            column: (
                f"t.{column} - (:rows - seq.i) * 0.001" if column in timed
                else "'{\"n\": ' || seq.i || '}'" if column == "params"
                else f"t.{column}"
            )
            for column in job_columns if column != "id"
        }
        attempt_values = {
            column: (
                "j.id" if column == "job_id"
                else f"j.{column}" if column in ("started_at", "finished_at")
                else f"a.{column}"
            )
            for column in attempt_columns if column != "id"
        }
        conn.execute("BEGIN")
        conn.execute(
            f"WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < :rows) "
            f"INSERT INTO jobkit_jobs ({', '.join(job_values)}) "
            f"SELECT {', '.join(job_values.values())} FROM seq, jobkit_jobs AS t "
            f"WHERE t.id = :template",
            {"rows": rows - 1, "template": template},
        )
        conn.execute(
            f"INSERT INTO jobkit_attempts ({', '.join(attempt_values)}) "
            f"SELECT {', '.join(attempt_values.values())} FROM jobkit_jobs AS j, "
            f"jobkit_attempts AS a WHERE a.job_id = :template AND j.id > :template",
            {"template": template},
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        count = conn.execute("SELECT count(*) FROM jobkit_jobs").fetchone()[0]
    finally:
        conn.close()
    return {
        "path": str(path),
        "rows": count,
        "seconds": time.perf_counter() - started,
        "mb": path.stat().st_size / 2**20,
    }
