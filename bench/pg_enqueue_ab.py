"""One-at-a-time PostgreSQL enqueue of two jobkit trees against procrastinate, in turns.

Issue 17's way to measure a change on a loaded machine: old and new jobkit (``--old`` and
``--new``, trees whose ``jobkit`` package is put first on ``PYTHONPATH``) take turns with
procrastinate, round after round, each in a fresh process (``jobkit_side:enqueue_one`` and
``procrastinate_side:enqueue_one``), in each virtualenv given (``--python``, the bare
``.venv-bench`` and the default install's ``.venv-bench-default`` with its webhook notifier);
the medians of jobs/s and of the client's CPU per enqueue, and the ratios to procrastinate,
are printed. The server is the bench's (durable defaults), started here; each tree gets a
database of its own, since a newer jobkit migrates its schema past what an older one opens::

    .venv-bench/bin/python bench/pg_enqueue_ab.py --old ../base --new . --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from child import run_child
from common import ROOT
from pg import BenchServer, find_bin_dir, reset


def trees_parser(description: str, rounds: int) -> argparse.ArgumentParser:
    """The options of a comparison of two jobkit trees.

    ``--old``, ``--new``, ``--python`` (see :func:`pythons_of`) and ``--rounds``.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--old", type=Path, required=True, help="the old jobkit tree")
    parser.add_argument("--new", type=Path, default=ROOT, help="the new jobkit tree")
    parser.add_argument("--python", action="append", default=None,
                        help="a virtualenv's python (default: .venv-bench and -default's)")
    parser.add_argument("--rounds", type=int, default=rounds)
    return parser


def pythons_of(args: argparse.Namespace) -> list[str]:
    """The interpreters given with ``--python``, else the bare and the default install's."""
    return args.python or [str(ROOT / ".venv-bench/bin/python"),
                           str(ROOT / ".venv-bench-default/bin/python")]


def started(parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, list[str], BenchServer]:
    """Parse ``parser``'s options; them, the interpreters, and the bench's server, started.

    Both trees' bytecode is cached outside them from here (the old tree may be read-only).
    """
    args = parser.parse_args()
    os.environ["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="jobkit-ab-pycache-")
    server = BenchServer(find_bin_dir())
    server.start()
    return args, pythons_of(args), server


def main() -> None:
    """Parse the options, run the rounds, print the medians."""
    parser = trees_parser(__doc__.splitlines()[0], rounds=5)
    parser.add_argument("--jobs", type=int, default=3000)
    args, pythons, server = started(parser)
    log = Path(tempfile.mkdtemp(prefix="jobkit-ab-")) / "children.log"
    found: dict[str, list[dict[str, Any]]] = {}
    try:
        urls = {tree: server.create_database(tree) for tree in ("old", "new", "peer")}
        run_child("procrastinate_side:apply_schema", log, url=urls["peer"])
        for _ in range(args.rounds):
            for python in pythons:
                venv = Path(python).parent.parent.name
                notifier = venv.endswith("default")
                for tree in ("old", "new"):
                    source = args.old if tree == "old" else args.new
                    os.environ["PYTHONPATH"] = str(source.resolve())
                    reset(urls[tree])
                    found.setdefault(f"{venv} {tree}", []).append(run_child(
                        "jobkit_side:enqueue_one", log, python=python, jobs=args.jobs,
                        storage=urls[tree], notifier=notifier,
                        workdir=tempfile.mkdtemp(prefix="jobkit-ab-")))
                    os.environ.pop("PYTHONPATH")
            import procrastinate_side

            procrastinate_side.reset(urls["peer"])
            found.setdefault("procrastinate", []).append(run_child(
                "procrastinate_side:enqueue_one", log, url=urls["peer"], jobs=args.jobs))
    finally:
        server.cleanup()
    peer = statistics.median(run["rate"] for run in found["procrastinate"])
    for key, runs in found.items():
        rate = statistics.median(run["rate"] for run in runs)
        cpu = statistics.median(run["cpu_us"] for run in runs)
        print(f"{key:28} {rate:7.0f} jobs/s  {rate / peer:5.2f}x procrastinate  "
              f"client CPU {cpu:5.0f} us/enqueue  (rates {[round(r['rate']) for r in runs]})")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
