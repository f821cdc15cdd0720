"""Where a worker's CPU goes per job: ``python bench/profile_worker.py``.

Enqueues ``--jobs`` no-op jobs into a new SQLite store, then runs ``jobkit worker -n 1 --burst``
on them once under cProfile (every process profiles its main thread from start to exit through
``bench/profiling/sitecustomize.py``) and prints the top functions by own time of the supervisor
and of the spawned process, per job; with ``--py-spy``, runs it again under ``py-spy record
--subprocesses`` (every thread, sampled) and prints each process's costliest functions by own
samples. The CPU of the whole run (``RUSAGE_CHILDREN``) is printed without any profiler too.

Run it with the interpreter of the virtualenv to look at, e.g. ``.venv-bench/bin/python``.
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BENCH, bench_env, children_cpu_seconds
from jobkit_side import _app, prefill, setup

#: ``--notifier``: configure the default install's webhook (jobkit-notify must be installed).
NOTIFIER = {"on": False}


def fresh_store(folder: Path, jobs: int) -> Path:
    """A store in ``folder`` holding ``jobs`` pending no-op jobs; its ``jobs.yaml``."""
    if folder.exists():
        shutil.rmtree(folder)
    config = setup(str(folder), "sqlite", notifier=NOTIFIER["on"])
    with _app(config) as app:
        prefill(app, jobs)
    return config


def worker_command(config: Path) -> list[str]:
    """``jobkit worker -n 1 --burst`` on ``config``."""
    return [sys.executable, "-m", "jobkit", "--config", str(config), "--path", str(BENCH),
            "worker", "-n", "1", "--burst"]


def cpu_split(folder: Path, jobs: int) -> dict[str, float]:
    """The drain without a profiler: wall seconds, and CPU seconds of each process.

    The supervisor's and its spawned process's are read every 20 ms while they live; that of
    all of them from ``RUSAGE_CHILDREN``.
    """
    import psutil

    config = fresh_store(folder, jobs)
    before = children_cpu_seconds()
    started = time.perf_counter()
    worker = subprocess.Popen(worker_command(config), env=bench_env(), cwd=folder,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict[str, float] = {"supervisor": 0.0, "spawned": 0.0}
    supervisor = psutil.Process(worker.pid)
    while worker.poll() is None:
        try:
            times = supervisor.cpu_times()
            seen["supervisor"] = times.user + times.system
            for child in supervisor.children():
                if "resource_tracker" not in " ".join(child.cmdline()):
                    times = child.cpu_times()
                    seen["spawned"] = max(seen["spawned"], times.user + times.system)
        except psutil.Error:
            pass
        time.sleep(0.02)
    seen["wall"] = time.perf_counter() - started
    seen["all"] = children_cpu_seconds() - before
    return seen


def plain(folder: Path, jobs: int) -> str:
    """CPU per job without a profiler, start-up taken out.

    A drain of ``jobs`` less a drain of none, per process.
    """
    empty = cpu_split(folder / "none", 0)
    full = cpu_split(folder / "all", jobs)
    lines = [f"no profiler, jobkit worker -n 1 --burst: {jobs:,} jobs in {full['wall']:.2f} s "
             f"wall; with no job: {empty['wall']:.2f} s wall"]
    for key, label in (("all", "all processes (RUSAGE_CHILDREN)"),
                       ("supervisor", "supervisor (last reading, 20 ms before its exit)"),
                       ("spawned", "spawned process (last reading before its exit)")):
        per_job = (full[key] - empty[key]) / jobs * 1e6
        lines.append(f"  {label}: {full[key]:.2f} s CPU, {empty[key]:.2f} s with no job: "
                     f"{per_job:.0f} us per job")
    return "\n".join(lines)


def cprofile(folder: Path, jobs: int, top: int) -> str:
    """The drain under cProfile: each process's top functions by own time."""
    config = fresh_store(folder, jobs)
    profiles = folder / "profiles"
    profiles.mkdir()
    env = bench_env([BENCH / "profiling"], BENCH_CPROFILE_DIR=str(profiles))
    subprocess.run(worker_command(config), env=env, cwd=folder, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = []
    for path in sorted(profiles.glob("*.prof"), key=lambda p: p.name.endswith("main.prof")):
        stream = io.StringIO()
        stats = pstats.Stats(str(path), stream=stream)
        if not any("/jobkit/" in key[0] for key in stats.stats):  # type: ignore[attr-defined]
            continue  # multiprocessing's resource tracker
        stats.sort_stats("tottime").print_stats(top)
        total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
        role = "supervisor" if path.name.endswith("main.prof") else "spawned worker process"
        out.append(f"== {role} (main thread), {total:.2f} s own time in all (waits included), "
                   f"{total / jobs * 1e6:.0f} us per job; by own time ==")
        out += _table(stream.getvalue(), top)
        stream = io.StringIO()
        stats.stream = stream  # type: ignore[attr-defined]
        stats.sort_stats("cumulative").print_stats(r"jobkit/", top)
        out.append(f"== {role}: jobkit's functions by cumulative time ==")
        out += _table(stream.getvalue(), top)
        out.append("")
    return "\n".join(out)


def _table(text: str, top: int) -> list[str]:
    """The table of a pstats printout, paths shortened."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")),
                 len(lines))
    return [line.replace(str(Path(sys.prefix)), "<venv>").replace(str(BENCH.parent) + "/", "")
            for line in lines[start:start + top + 1]]


def py_spy(folder: Path, jobs: int, top: int, rate: int) -> str:
    """The drain under ``py-spy record``: each process's top functions by own samples.

    Every thread, sampled only while it holds the GIL (``--gil``: Python work, not waits);
    one ``py-spy`` attached to the supervisor and one to its worker process as
    soon as it appears (``--subprocesses`` does not follow *spawned* processes here).
    """
    import psutil

    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        return "py-spy is not installed"
    config = fresh_store(folder, jobs)
    worker = subprocess.Popen(worker_command(config), env=bench_env(), cwd=folder,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spies = {}
    try:
        spies["supervisor"] = _attach(spy, worker.pid, folder / "supervisor.txt", rate)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and worker.poll() is None:
            children = [child for child in psutil.Process(worker.pid).children()
                        if "resource_tracker" not in " ".join(child.cmdline())]
            if children:
                spies["spawned worker process"] = _attach(
                    spy, children[0].pid, folder / "spawned.txt", rate)
                break
            time.sleep(0.005)
        worker.wait(600)
    finally:
        worker.kill()
        for process, _ in spies.values():
            process.wait(60)
    out = []
    for role, (_, raw) in spies.items():
        own: collections.Counter[str] = collections.Counter()
        inclusive: collections.Counter[str] = collections.Counter()
        for line in raw.read_text().splitlines() if raw.exists() else []:
            stack, _, count = line.rpartition(" ")
            frames = [_function(frame) for frame in stack.split(";")[1:]]  # [0]: the thread
            if not frames:
                continue
            own[frames[-1]] += int(count)
            for frame in set(frames):
                inclusive[frame] += int(count)
        total = sum(own.values())
        out.append(f"== {role}: {total} samples at {rate}/s (every thread, while it holds the "
                   f"GIL); by own samples, then by inclusive samples ==")
        for counter in (own, inclusive):
            for function, count in counter.most_common(top):
                out.append(f"{count:7d} {count / max(total, 1) * 100:5.1f} %  {function}")
            out.append("")
    return "\n".join(out)


def _function(frame: str) -> str:
    """A py-spy frame (``name (path:line)``) as its function and file, paths shortened."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for prefix, short in ((str(BENCH.parent) + "/", ""), (str(Path(sys.prefix)) + "/", "")):
        path = path.replace(prefix, short)
    return f"{name} ({path})"


def _attach(spy: str, pid: int, raw: Path, rate: int) -> tuple[subprocess.Popen[bytes], Path]:
    """``py-spy record`` of process ``pid`` into ``raw`` (collapsed stacks), until it exits."""
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate), "--gil",
         "--output", str(raw)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), raw


def main(argv: list[str] | None = None) -> None:
    """Print the profiles."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--py-spy", action="store_true", help="also sample with py-spy")
    parser.add_argument("--notifier", action="store_true",
                        help="configure the default install's webhook notifier (failed events)")
    parser.add_argument("--plain", action="store_true", help="only the run without profiler")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = parser.parse_args(argv)
    NOTIFIER["on"] = args.notifier
    folder = Path(tempfile.mkdtemp(prefix="jobkit-profile-"))
    try:
        print(plain(folder / "plain", args.jobs), flush=True)
        if args.plain:
            return
        print(cprofile(folder / "cprofile", args.jobs, args.top), flush=True)
        if args.py_spy:
            print(py_spy(folder / "py-spy", args.jobs, args.top, args.rate), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    os.sync()


if __name__ == "__main__":
    main()
