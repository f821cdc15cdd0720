"""Huey's side of the SQLite comparison: ``SqliteHuey`` and its consumer, ``huey_consumer
huey_tasks.huey -w N -k process`` (process workers; every other consumer option at its default:
polling delay 0.1 s growing by 1.15x up to 10 s while idle, periodic tasks on, health checks on).

Huey keeps no history: a task is deleted when a worker dequeues it, and a task returning
``None`` stores no result. It has no bulk enqueue API.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from common import (
    StampReader,
    bench_env,
    pickup_loop,
    settle,
    spawn,
    stop,
    tree_cpu_seconds,
    watch_drain,
)


def _environment(workdir: str, fsync: str) -> dict[str, str]:
    Path(workdir).mkdir(parents=True, exist_ok=True)
    return {"BENCH_HUEY_DB": str(Path(workdir) / "huey.db"), "BENCH_HUEY_FSYNC": fsync}


def _tasks(workdir: str, fsync: str) -> ModuleType:
    """Import ``huey_tasks`` for the store in ``workdir`` (in this fresh child process)."""
    os.environ.update(_environment(workdir, fsync))
    import huey_tasks

    return huey_tasks


def synchronous(workdir: str, fsync: str = "default") -> dict[str, Any]:
    """The journal mode and ``PRAGMA synchronous`` of Huey's own connection."""
    tasks = _tasks(workdir, fsync)
    conn = tasks.huey.storage.conn
    names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    return {
        "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
        "synchronous": names[conn.execute("PRAGMA synchronous").fetchone()[0]],
    }


def enqueue_one(workdir: str, jobs: int, fsync: str = "default") -> dict[str, Any]:
    """Enqueue throughput, one task call at a time (jobs/s)."""
    tasks = _tasks(workdir, fsync)
    tasks.noop(-1)  # opens the connection
    started = time.perf_counter()
    for n in range(jobs):
        tasks.noop(n)
    seconds = time.perf_counter() - started
    return {"rate": jobs / seconds, "seconds": seconds}


def _consumer(workdir: str, fsync: str, workers: int, **env: str) -> tuple[Any, Path]:
    log = Path(workdir) / f"consumer-{time.monotonic_ns()}.out"
    command = [sys.executable, "-m", "huey.bin.huey_consumer", "huey_tasks.huey",
               "-w", str(workers), "-k", "process"]
    return spawn(command, log, bench_env(**_environment(workdir, fsync), **env),
                 cwd=Path(workdir)), log


def drain(workdir: str, jobs: int, processes: int, fsync: str = "default",
          timeout: float = 1800) -> dict[str, Any]:
    """Drain throughput of a consumer with ``processes`` process workers.

    Over ``jobs`` pre-enqueued tasks (enqueued one at a time: Huey has no bulk API).
    ``cpu_per_job_us``: the CPU (user + system) of the consumer's processes between the first
    poll that sees a task taken and the poll that sees none left, per task timed."""
    tasks = _tasks(workdir, fsync)
    for n in range(jobs):
        tasks.noop(n)
    tasks.huey.storage.close()
    settle()
    conn = sqlite3.connect(Path(workdir) / "huey.db", isolation_level=None)
    try:
        spawned = time.perf_counter()
        consumer, log = _consumer(workdir, fsync, processes)
        try:
            result = watch_drain(
                lambda: int(conn.execute("SELECT count(*) FROM task").fetchone()[0]),
                jobs, [consumer], spawned, log, timeout,
                cpu=lambda: tree_cpu_seconds(consumer.pid),
            )
            if result["jobs_timed"] and "cpu_at_end" in result:
                result["cpu_per_job_us"] = (
                    (result["cpu_at_end"] - result["cpu_at_first"]) / result["jobs_timed"] * 1e6)
        finally:
            stop(consumer, signal.SIGINT)  # Huey's graceful stop
    finally:
        conn.close()
    errors = [line for line in log.read_text().splitlines() if "ERROR" in line]
    if errors:
        raise RuntimeError("the consumer logged errors:\n" + "\n".join(errors[:20]))
    return result


def pickup(workdir: str, samples: int, idle_seconds: float,
           fsync: str = "default") -> dict[str, Any]:
    """Pick-up latency and idle CPU of an idle consumer with one process worker."""
    tasks = _tasks(workdir, fsync)
    stamps = StampReader(Path(workdir) / "stamps.txt")
    consumer, log = _consumer(workdir, fsync, 1, BENCH_STAMP_FILE=str(stamps.path))
    try:
        return pickup_loop(
            lambda n: tasks.stamp(n), stamps, samples=samples, idle_pid=consumer.pid,
            idle_seconds=idle_seconds, alive=lambda: consumer.poll() is None,
        )
    except Exception as exc:
        raise RuntimeError(f"{exc}\n{log.read_text()[-3000:]}") from exc
    finally:
        stop(consumer, signal.SIGINT)
