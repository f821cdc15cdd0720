"""procrastinate's side of the PostgreSQL comparison: ``App(connector=PsycopgConnector(...))``
(psycopg 3), deferring from synchronous code (``app.open()``: procrastinate's sync psycopg pool),
and workers run as ``procrastinate --app=procrastinate_tasks.app worker``, one process each,
every option at its default (concurrency 1, LISTEN/NOTIFY on, 5 s polling fallback, jobs kept
after they finish).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from common import (
    StampReader,
    bench_env,
    chunks,
    pickup_loop,
    settle,
    spawn,
    stop,
    tree_cpu_seconds,
    watch_drain,
)

RESET = (
    b"TRUNCATE procrastinate_jobs, procrastinate_events, procrastinate_periodic_defers, "
    b"procrastinate_workers RESTART IDENTITY CASCADE"
)


def _tasks(url: str) -> ModuleType:
    """Import ``procrastinate_tasks`` for the database at ``url`` and open its app."""
    os.environ["BENCH_PG_URL"] = url
    import procrastinate_tasks

    procrastinate_tasks.app.open()
    return procrastinate_tasks


def apply_schema(url: str) -> dict[str, Any]:
    """``procrastinate schema --apply``, from Python."""
    tasks = _tasks(url)
    tasks.app.schema_manager.apply_schema()
    tasks.app.close()
    return {}


def reset(url: str) -> None:
    """Empty procrastinate's tables."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(RESET)


def enqueue_one(url: str, jobs: int) -> dict[str, Any]:
    """Enqueue throughput, one ``defer`` at a time (jobs/s); ``cpu_us``: CPU per defer."""
    tasks = _tasks(url)
    tasks.noop.defer(n=-1)
    cpu = time.process_time()
    started = time.perf_counter()
    for n in range(jobs):
        tasks.noop.defer(n=n)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    tasks.app.close()
    return {"rate": jobs / seconds, "seconds": seconds, "cpu_us": cpu / jobs * 1e6}


def enqueue_bulk(url: str, jobs: int, batch: int) -> dict[str, Any]:
    """Bulk enqueue throughput (jobs/s): ``batch_defer`` with ``batch`` jobs per call."""
    tasks = _tasks(url)
    tasks.noop.defer(n=-1)
    parts = chunks(jobs, batch)
    started = time.perf_counter()
    for part in parts:
        tasks.noop.batch_defer(*part)
    seconds = time.perf_counter() - started
    tasks.app.close()
    return {"rate": jobs / seconds, "seconds": seconds, "api": "batch_defer"}


def _workers(workdir: str, url: str, processes: int, *args: str,
             **env: str) -> tuple[list[Any], Path]:
    Path(workdir).mkdir(parents=True, exist_ok=True)
    log = Path(workdir) / f"worker-{time.monotonic_ns()}.out"
    command = [sys.executable, "-m", "procrastinate", "--app=procrastinate_tasks.app", "worker",
               *args]
    environment = bench_env(BENCH_PG_URL=url, **env)
    return [spawn(command, log, environment, cwd=Path(workdir)) for _ in range(processes)], log


def _count(url: str, statuses: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            f"SELECT count(*) FROM procrastinate_jobs WHERE status IN {statuses}".encode()
        ).fetchone()
    return int(row[0]) if row else 0


def drain(workdir: str, url: str, jobs: int, processes: int, timeout: float = 1800,
          concurrency: int | None = None, wait: float | None = None,
          server_pid: int | None = None) -> dict[str, Any]:
    """Drain throughput of ``processes`` worker processes over ``jobs`` pre-deferred jobs.

    No-op jobs, or with ``wait`` jobs of the ``async def`` task ``wait`` awaiting ``wait``
    seconds; ``concurrency``: the workers' ``--concurrency`` (default 1). ``worker_cpu_us``:
    the workers' CPU per job, and with ``server_pid`` (the PostgreSQL server's postmaster)
    ``server_cpu_us``, the server's (see :func:`common.watch_drain`).
    """
    import psycopg

    tasks = _tasks(url)
    for part in chunks(jobs, 1000):
        if wait is None:
            tasks.noop.batch_defer(*part)
        else:
            tasks.wait.batch_defer(*[params | {"seconds": wait} for params in part])
    tasks.app.close()
    settle()
    query = b"SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
    with psycopg.connect(url, autocommit=True) as conn:

        def remaining() -> int:
            row = conn.execute(query).fetchone()
            return int(row[0]) if row else 0

        spawned = time.perf_counter()
        options = ["--concurrency", str(concurrency)] if concurrency else []
        workers, log = _workers(workdir, url, processes, *options)
        try:
            result = watch_drain(
                remaining, jobs, workers, spawned, log, timeout,
                cpu=lambda: sum(tree_cpu_seconds(worker.pid) for worker in workers),
                server_cpu=(lambda: tree_cpu_seconds(server_pid)) if server_pid else None)
        finally:
            for worker in workers:
                stop(worker, signal.SIGTERM)
    done = _count(url, "('succeeded')")
    if done != jobs:
        raise RuntimeError(f"{done} jobs succeeded, expected {jobs}:\n{log.read_text()[-3000:]}")
    return result


def pickup(workdir: str, url: str, samples: int, idle_seconds: float) -> dict[str, Any]:
    """Pick-up latency and idle CPU of one idle worker process."""
    tasks = _tasks(url)
    Path(workdir).mkdir(parents=True, exist_ok=True)
    stamps = StampReader(Path(workdir) / "stamps.txt")
    [worker], log = _workers(workdir, url, 1, BENCH_STAMP_FILE=str(stamps.path))
    try:
        return pickup_loop(
            lambda n: tasks.stamp.defer(n=n), stamps, samples=samples, idle_pid=worker.pid,
            idle_seconds=idle_seconds, alive=lambda: worker.poll() is None,
        )
    except Exception as exc:
        raise RuntimeError(f"{exc}\n{log.read_text()[-3000:]}") from exc
    finally:
        stop(worker, signal.SIGTERM)
        tasks.app.close()
