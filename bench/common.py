"""Helpers shared by every side of the benchmark: processes, timing, stamps, drain watching.

Only the standard library and psutil: ``bench/pickup.py`` imports the jobkit side (and so this
module) from jobkit's own virtualenv, where the peers are not installed.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import psutil
from stamps import write_stamp as write_stamp  # the jobs import it from stamps

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

#: How often a drain watcher asks the store how many jobs are left (seconds).
POLL = 0.02


# -- statistics ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile (0..1) by the nearest-rank method."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def median(values: Iterable[float]) -> float:
    """The median of ``values`` (of the runs, usually three)."""
    return float(statistics.median(list(values)))


# -- processes ---------------------------------------------------------------------------------


def bench_env(extra_paths: Iterable[str | Path] = (), **variables: str) -> dict[str, str]:
    """The environment of a benchmark subprocess.

    ``bench/`` (and ``extra_paths``) importable, plus ``variables``.
    ``PYTHONDONTWRITEBYTECODE`` is dropped: with it (some shells and CI images set it), an
    editable jobkit has no ``__pycache__`` and every process compiles jobkit's sources again on
    import (about 30 ms of a worker's start-up), which no installed jobkit does. The harness
    compiles the sources once before measuring (``run.py``).
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    paths = [str(BENCH), *(str(path) for path in extra_paths)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(variables)
    return env


def spawn(
    command: Sequence[str],
    log: Path,
    env: dict[str, str],
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a session of its own (so :func:`stop` can end what it started),
    its output going to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(command), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 30.0) -> None:
    """Ask ``process`` to stop with ``sig``; kill its whole session if it has not after
    ``grace`` seconds (and anything it left behind in any case)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # the session we started: its leftovers only
    process.wait(10)


def settle() -> None:
    """Write every dirty page to disk (``sync``), so that a measurement's fsyncs do not pay for
    the writes of what ran before it (on ext4, an fsync commits the journal, and with it other
    files' pending data)."""
    os.sync()


def tail(path: Path, size: int = 3000) -> str:
    """The end of a log file, for error messages."""
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants, now."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(processes: Iterable[psutil.Process]) -> float:
    """User plus system CPU time of ``processes`` (those still alive)."""
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def tree_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the process tree of ``pid`` so far.

    Each live process's own time and that of the children it has reaped (multiprocessing's
    resource tracker, a helper that is no worker, left out).
    """
    total = 0.0
    for process in process_tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if "resource_tracker" in " ".join(process.cmdline()):
                continue
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def children_cpu_seconds() -> float:
    """User plus system CPU time of this process's ended children (``RUSAGE_CHILDREN``).

    Those waited for, with their own waited-for descendants.
    """
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def idle_cpu_percent(pid: int, seconds: float) -> tuple[float, int]:
    """The CPU the process tree of ``pid`` uses over ``seconds``, in % of one core, and how
    many processes the tree has."""
    tree = process_tree(pid)
    before = cpu_seconds(tree)
    time.sleep(seconds)
    return (cpu_seconds(tree) - before) / seconds * 100, len(tree)


# -- stamps: when did a job start ------------------------------------------------------------------


class StampReader:
    """Reads the stamps that jobs append to one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()
        self._offset = 0
        self._seen: dict[int, float] = {}
        self._pending = ""

    def _read(self) -> None:
        with open(self.path) as source:
            source.seek(self._offset)
            chunk = source.read()
            self._offset = source.tell()
        self._pending += chunk
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            number, stamp = line.split()
            self._seen[int(number)] = float(stamp)

    def wait(
        self, n: int, timeout: float = 60.0, alive: Callable[[], bool] = lambda: True
    ) -> float:
        """The time job ``n`` started, waiting for its stamp (``TimeoutError``, or
        ``RuntimeError`` when ``alive()`` turns false)."""
        deadline = time.monotonic() + timeout
        while True:
            self._read()
            if n in self._seen:
                return self._seen[n]
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {n} did not start within {timeout:g} s")
            if not alive():
                raise RuntimeError("the worker exited")
            time.sleep(0.0005)


def pickup_loop(
    enqueue: Callable[[int], None],
    stamps: StampReader,
    *,
    samples: int,
    idle_pid: int,
    idle_seconds: float,
    alive: Callable[[], bool],
    gap: tuple[float, float] = (0.05, 0.15),
) -> dict[str, Any]:
    """The pick-up measurement, the same for every system, once its worker runs with one
    process.

    A first stamp job proves the worker is up; it then idles for a second, and for
    ``idle_seconds`` while its CPU is measured. The first job after that idle time gives the
    "after idle" latency; then ``samples`` jobs go one at a time, each ``gap`` seconds (random)
    after the previous one started. A latency is the job's start minus the moment its enqueue
    call returned (the job is committed then; the enqueue's own cost is the enqueue metric).
    """
    import random

    enqueue(-1)
    stamps.wait(-1, timeout=120, alive=alive)
    time.sleep(1.0)
    cpu, processes = idle_cpu_percent(idle_pid, idle_seconds)
    latencies: list[float] = []
    calls: list[float] = []
    for n in range(samples + 1):
        before = time.time()
        enqueue(n)
        after = time.time()
        started = stamps.wait(n, alive=alive)
        latencies.append((started - after) * 1000)
        calls.append((after - before) * 1000)
        time.sleep(random.uniform(*gap))
    after_idle, rest = latencies[0], latencies[1:]
    return {
        "idle_cpu_percent": cpu,
        "idle_processes": processes,
        "after_idle_ms": after_idle,
        "p50_ms": median(rest),
        "p95_ms": percentile(rest, 0.95),
        "max_ms": max(rest),
        "enqueue_call_ms": percentile(calls, 0.5),
        "samples": len(rest),
    }


# -- drains ----------------------------------------------------------------------------------------


def watch_drain(
    remaining: Callable[[], int],
    total: int,
    processes: Sequence[subprocess.Popen[bytes]],
    spawned_at: float,
    log: Path,
    timeout: float,
    cpu: Callable[[], float] | None = None,
    server_cpu: Callable[[], float] | None = None,
) -> dict[str, float]:
    """Follow a drain of ``total`` pre-enqueued jobs; its rate, start-up and CPU readings.

    The store is asked every :data:`POLL` seconds how many are left (``remaining``, the same
    question for every system). Start-up is the time from the worker's spawn (``spawned_at``,
    ``perf_counter``) to the first poll that sees fewer than ``total`` left; the drain rate counts
    the jobs left at that poll and the time until a poll sees none left, so the start-up is excluded
    alike for all. ``cpu`` (the workers' CPU seconds so far) is read at that first poll
    (``cpu_at_first``) and at the poll that sees none left (``cpu_at_end``, while the workers still
    live); ``worker_cpu_us``: their difference per job timed. ``server_cpu`` (the database
    server's CPU seconds so far) likewise: ``server_cpu_at_first``, ``server_cpu_at_end``,
    ``server_cpu_us``.
    """
    first: tuple[float, int] | None = None
    extra: dict[str, float] = {}
    while True:
        left = remaining()
        now = time.perf_counter()
        if first is None and left < total:
            first = (now, left)
            extra |= _read_cpu(cpu, server_cpu, "at_first")
        if left == 0:
            extra |= _read_cpu(cpu, server_cpu, "at_end")
            break
        if any(process.poll() is not None for process in processes):
            left = remaining()  # a burst worker exits once the last job is done
            if left == 0:
                now = time.perf_counter()
                break
            codes = [process.returncode for process in processes]
            raise RuntimeError(
                f"a worker exited (status {codes}) with {left} jobs left:\n{tail(log)}"
            )
        if now - spawned_at > timeout:
            raise TimeoutError(f"{left} jobs still left after {timeout:g} s:\n{tail(log)}")
        time.sleep(POLL)
    started, counted = first if first is not None else (now, 0)
    seconds = now - started
    for prefix, name in (("cpu", "worker_cpu_us"), ("server_cpu", "server_cpu_us")):
        if counted and f"{prefix}_at_end" in extra and f"{prefix}_at_first" in extra:
            used = extra[f"{prefix}_at_end"] - extra[f"{prefix}_at_first"]
            extra[name] = used / counted * 1e6
    return {
        **extra,
        "startup_s": started - spawned_at,
        "drain_s": seconds,
        "jobs_timed": counted,
        "rate": counted / seconds if seconds > 0 and counted > 0 else float("nan"),
        "total_s": now - spawned_at,
    }


def _read_cpu(cpu: Callable[[], float] | None, server_cpu: Callable[[], float] | None,
              when: str) -> dict[str, float]:
    """The readings of :func:`watch_drain` at one poll (``when``: ``at_first`` or ``at_end``)."""
    found = {}
    if cpu is not None:
        found[f"cpu_{when}"] = cpu()
    if server_cpu is not None:
        found[f"server_cpu_{when}"] = server_cpu()
    return found


def chunks(total: int, size: int) -> list[list[dict[str, int]]]:
    """``[{"n": 0}, {"n": 1}, ...]`` for ``total`` jobs, in lists of at most ``size``."""
    return [
        [{"n": n} for n in range(start, min(total, start + size))]
        for start in range(0, total, size)
    ]


def timed(work: Callable[[], object]) -> float:
    """Seconds ``work()`` took."""
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def python() -> str:
    """The interpreter the benchmark runs under (the bench virtualenv's)."""
    return sys.executable
