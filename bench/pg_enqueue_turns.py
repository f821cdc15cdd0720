"""One-at-a-time PostgreSQL enqueue of two jobkit trees and procrastinate, taking turns by blocks.

``pg_enqueue_ab.py`` runs each system in a process of its own, one after the other; on a shared
machine whose disk another job holds now and then, neighbouring runs differ 5x (the commit
waits for the disk) and the medians say little. Here every system keeps one process open (its
app and its connection pool warm) and they take turns, a block of ``--block`` enqueues each,
round after round, the order rotated each round, so that the disk's moods fall on all of them
alike within seconds. Printed: per system the rate over all its blocks, the median over rounds
of its rate against procrastinate's in the same round, and the CPU per enqueue of its process
and of the server's backends on its database (``/proc``: the server runs on this machine)::

    .venv-bench/bin/python bench/pg_enqueue_turns.py --old ../base --new . --rounds 40

Each jobkit tree gets a database of its own, since a newer jobkit migrates its schema past what
an older one opens. ``--python`` as in ``pg_enqueue_ab.py`` (the bare ``.venv-bench`` and the
default install's ``.venv-bench-default`` with its webhook notifier, by default).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import bench_env


def _enqueuer(kind: str, url: str, notifier: bool) -> Callable[[int], None]:
    """What enqueues one no-op job, ``kind`` being ``jobkit`` or ``procrastinate``."""
    if kind == "procrastinate":
        import procrastinate_side

        tasks = procrastinate_side._tasks(url)
        return lambda n: tasks.noop.defer(n=n)
    from jobkit_side import _app, setup

    app = _app(setup(tempfile.mkdtemp(prefix="jobkit-turns-"), url, notifier=notifier))
    return lambda n: app.run_background_job("Noop", "run", {"n": n})


def serve(kind: str, url: str, notifier: bool) -> None:
    """A child: for each block size read on stdin, enqueue that many; print seconds and CPU."""
    enqueue = _enqueuer(kind, url, notifier)
    enqueue(-1)  # opens (and migrates) the store
    where = sys.modules["jobkit"].__file__ if "jobkit" in sys.modules else kind
    print(f"ready {where}", flush=True)
    for line in sys.stdin:
        count = int(line)
        cpu, started = time.process_time(), time.perf_counter()
        for n in range(count):
            enqueue(n)
        print(json.dumps([time.perf_counter() - started, time.process_time() - cpu]), flush=True)
    os._exit(0)  # the pools' threads need no goodbye


class Child:
    """A serving child process and what its blocks took."""

    def __init__(self, label: str, python: str, kind: str, url: str, *,
                 tree: Path | None = None, notifier: bool = False) -> None:
        self.database = url.rsplit("/", 1)[-1]
        env = bench_env([tree.resolve()] if tree else [])
        self.label = label
        self.process = subprocess.Popen(
            [python, __file__, "--serve", kind, url, "--notifier" if notifier else "--bare"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert self.process.stdout is not None
        ready = self.process.stdout.readline().split()
        if not ready or ready[0] != "ready":
            raise RuntimeError(f"{label}: did not start ({ready!r})")
        self.source = ready[-1]
        self.seconds: list[float] = []
        self.cpu: list[float] = []
        self.server_cpu: list[float] = []

    def block(self, count: int, admin: Any) -> None:
        """Run one block of ``count`` enqueues (``admin``: a connection to read the server's)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        before = _backends_cpu(admin, self.database)
        self.process.stdin.write(f"{count}\n")
        self.process.stdin.flush()
        seconds, cpu = json.loads(self.process.stdout.readline())
        after = _backends_cpu(admin, self.database)
        self.seconds.append(seconds)
        self.cpu.append(cpu)
        self.server_cpu.append(sum(after.get(pid, 0.0) - used for pid, used in before.items()))

    def close(self) -> None:
        """End the child."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def _backends_cpu(admin: Any, database: str) -> dict[int, float]:
    """The CPU (user + system, seconds) of each server backend connected to ``database``."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for (pid,) in admin.execute(b"SELECT pid FROM pg_stat_activity WHERE datname = %s",
                                (database,)).fetchall():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / tick
    return found


def main() -> None:
    """Parse the options, start the server and the children, take turns, print the figures."""
    from child import run_child
    from pg_enqueue_ab import started, trees_parser

    parser = trees_parser(__doc__.splitlines()[0], rounds=40)
    parser.add_argument("--block", type=int, default=300)
    args, pythons, server = started(parser)
    children: list[Child] = []
    try:
        peer = server.create_database("peer")
        run_child("procrastinate_side:apply_schema",
                  Path(tempfile.mkdtemp(prefix="jobkit-turns-")) / "children.log", url=peer)
        children.append(Child("procrastinate", pythons[0], "procrastinate", peer))
        for python in pythons:
            venv = Path(python).parent.parent.name
            for tree, source in (("old", args.old), ("new", args.new)):
                url = server.create_database(f"{tree}_{venv.replace('-', '_').strip('.')}")
                children.append(Child(f"{venv} {tree}", python, "jobkit", url, tree=source,
                                      notifier=venv.endswith("default")))
        import psycopg

        with psycopg.connect(server.url(), autocommit=True) as admin:
            for number in range(args.rounds):
                shift = number % len(children)
                for child in children[shift:] + children[:shift]:
                    child.block(args.block, admin)
    finally:
        for child in children:
            child.close()
        server.cleanup()
    report(children, args.block)


def report(children: list[Child], block: int) -> None:
    """Print each system's rate, CPU per enqueue and median per-round ratio to procrastinate."""
    peer = children[0]
    for child in children:
        rate = block * len(child.seconds) / sum(child.seconds)
        ratios = [peer_s / s for s, peer_s in zip(child.seconds, peer.seconds, strict=True)]
        cpu = statistics.median(child.cpu) / block * 1e6
        server_cpu = sum(child.server_cpu) / (block * len(child.server_cpu)) * 1e6
        low, _, high = statistics.quantiles(ratios, n=4)
        print(f"{child.label:28} {rate:7.0f} jobs/s over all blocks  "
              f"{statistics.median(ratios):5.2f}x procrastinate (median of {len(ratios)} rounds,"
              f" quartiles {low:.2f}-{high:.2f})  CPU per enqueue: client {cpu:3.0f} us,"
              f" server {server_cpu:3.0f} us"
              f"  [{child.source}]")

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3], sys.argv[4] == "--notifier")
    else:
        main()
