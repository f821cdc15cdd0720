"""An old and a new jobkit draining no-op jobs, taking turns: ``python bench/drain_ab.py``.

Each round drains ``--jobs`` jobs on SQLite with ``jobkit worker -n N --burst`` in the old
virtualenv, then the new one (then Huey, with ``--huey``), as the bench's drain rows do
(``jobkit_side:drain``, the default install's webhook notifier with ``--notifier``), and prints
jobs/s, CPU per job and start-up (wall, and the CPU of the worker's processes until the first
job is seen started) of each run, then the medians. CPU per job moves less than the rate on a
shared machine: read it first. ``--postgres`` drains from a throw-away PostgreSQL server instead
(the bench's durable settings; one database per side, emptied before each run) and adds the
server's CPU per job: the postmaster's processes, live and reaped, before and after the drain.

    .venv-bench/bin/python bench/drain_ab.py --old /work/wt/now/.venv/bin/python \\
        --new .venv/bin/python --processes 2 --rounds 5 --notifier --huey
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from child import run_child
from pg import reset


def main(argv: list[str] | None = None) -> None:
    """Run the rounds and print each run and the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", required=True, help="the old virtualenv's python")
    parser.add_argument("--new", required=True, help="the new virtualenv's python")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--notifier", action="store_true",
                        help="configure the default install's webhook notifier (failed events)")
    parser.add_argument("--huey", action="store_true", help="drain with Huey too, each round")
    parser.add_argument("--postgres", action="store_true",
                        help="drain from PostgreSQL (and count the server's CPU)")
    args = parser.parse_args(argv)
    with _stores(args.postgres) as stores:
        _rounds(args, stores)


@contextlib.contextmanager
def _stores(postgres: bool) -> Iterator[dict[str, Any]]:
    """Where each side drains from: ``sqlite``, or a database of its own on a server."""
    if not postgres:
        yield {"old": "sqlite", "new": "sqlite", "server": None}
        return
    from pg import BenchServer, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("--postgres: the server binaries (initdb, pg_ctl) are not installed")
    server = BenchServer(bin_dir)
    server.start()
    try:
        yield {"old": server.create_database("old"), "new": server.create_database("new"),
               "server": server}
    finally:
        server.cleanup()


def _server_cpu(server: Any) -> float:
    """CPU seconds of the server's processes: the postmaster's own, its reaped children's, and
    its live children's (from ``/proc``)."""
    pid = int((server.data / "postmaster.pid").read_text().split()[0])

    def times(stat: str, reaped: bool) -> float:
        fields = stat.rsplit(")", 1)[1].split()
        ticks = sum(int(f) for f in fields[11:15 if reaped else 13])
        return ticks / os.sysconf("SC_CLK_TCK")

    total = times(Path(f"/proc/{pid}/stat").read_text(), reaped=True)
    for child in Path("/proc").glob("[0-9]*"):
        try:
            stat = (child / "stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[1] == str(pid):
            total += times(stat, reaped=False)
    return total


def _rounds(args: argparse.Namespace, stores: dict[str, Any]) -> None:
    """Each round: old, new (and Huey), printed as they end; then the medians."""
    work = Path(tempfile.mkdtemp(prefix="jobkit-drain-ab-"))
    log = work / "log.txt"
    seen: dict[str, list[dict[str, Any]]] = {"old": [], "new": [], "huey": []}
    for turn in range(args.rounds):
        systems = [("old", args.old), ("new", args.new)]
        if args.huey:
            systems.append(("huey", ""))
        for system, python in systems:
            folder = work / f"{system}-{turn}"
            folder.mkdir()
            if system == "huey":
                result = run_child("huey_side:drain", log, workdir=str(folder), jobs=args.jobs,
                                   processes=args.processes)
            else:
                server = stores["server"]
                if server is not None:
                    reset(stores[system])
                    server_before = _server_cpu(server)
                result = run_child("jobkit_side:drain", log, python=python, workdir=str(folder),
                                   storage=stores[system], jobs=args.jobs,
                                   processes=args.processes, notifier=args.notifier)
                if server is not None:
                    result["server_us"] = (_server_cpu(server) - server_before) / args.jobs * 1e6
            seen[system].append(result)
            print(f"round {turn + 1} {system:4}: {result['rate']:8,.0f} jobs/s "
                  f"{result.get('cpu_per_job_us', float('nan')):7.1f} us CPU per job "
                  f"{_server(result)}(start-up {result.get('startup_s', float('nan')):.2f} s, "
                  f"{result.get('cpu_at_first', float('nan')):.2f} s of CPU)", flush=True)
    for system, results in seen.items():
        if not results:
            continue
        rate = statistics.median(r["rate"] for r in results)
        cpu = statistics.median(r.get("cpu_per_job_us", float("nan")) for r in results)
        startup = statistics.median(r.get("startup_s", float("nan")) for r in results)
        first = statistics.median(r.get("cpu_at_first", float("nan")) for r in results)
        server_us = ({"server_us": statistics.median(r["server_us"] for r in results)}
                     if "server_us" in results[0] else {})
        print(f"median {system:4}: {rate:8,.0f} jobs/s {cpu:7.1f} us CPU per job "
              f"{_server(server_us)}(start-up {startup:.2f} s, {first:.2f} s of CPU)")


def _server(result: dict[str, Any]) -> str:
    """The server's CPU per job, when measured, for a printed line."""
    return f"+ {result['server_us']:6.1f} us server " if "server_us" in result else ""


if __name__ == "__main__":
    main()
