"""An old and a new jobkit draining no-op jobs, taking turns: ``python bench/drain_ab.py``.

Each round drains ``--jobs`` jobs on SQLite with ``jobkit worker -n N --burst`` in the old
virtualenv, then the new one (then Huey, with ``--huey``), as the bench's drain rows do
(``jobkit_side:drain``, the default install's webhook notifier with ``--notifier``), and prints
jobs/s, CPU per job and start-up (wall, and the CPU of the worker's processes until the first
job is seen started) of each run, then the medians. CPU per job moves less than the rate on a
shared machine: read it first.

    .venv-bench/bin/python bench/drain_ab.py --old /work/wt/now/.venv/bin/python \\
        --new .venv/bin/python --processes 2 --rounds 5 --notifier --huey
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

from child import run_child


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
    args = parser.parse_args(argv)
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
                result = run_child("jobkit_side:drain", log, python=python, workdir=str(folder),
                                   storage="sqlite", jobs=args.jobs, processes=args.processes,
                                   notifier=args.notifier)
            seen[system].append(result)
            print(f"round {turn + 1} {system:4}: {result['rate']:8,.0f} jobs/s "
                  f"{result.get('cpu_per_job_us', float('nan')):7.1f} us CPU per job "
                  f"(start-up {result.get('startup_s', float('nan')):.2f} s, "
                  f"{result.get('cpu_at_first', float('nan')):.2f} s of CPU)", flush=True)
    for system, results in seen.items():
        if not results:
            continue
        rate = statistics.median(r["rate"] for r in results)
        cpu = statistics.median(r.get("cpu_per_job_us", float("nan")) for r in results)
        startup = statistics.median(r.get("startup_s", float("nan")) for r in results)
        first = statistics.median(r.get("cpu_at_first", float("nan")) for r in results)
        print(f"median {system:4}: {rate:8,.0f} jobs/s {cpu:7.1f} us CPU per job "
              f"(start-up {startup:.2f} s, {first:.2f} s of CPU)")


if __name__ == "__main__":
    main()
