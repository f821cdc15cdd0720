"""The benchmark's jobkit jobs: ``Noop``, and ``Sleeper`` for the concurrency-limit drain.

Registered as ``class: jobkit_jobs:Noop`` (and ``Sleeper``) in the ``jobs.yaml`` the harness
writes; ``bench/`` is on the import path of every process.
"""

from __future__ import annotations

import time

from stamps import write_stamp

from jobkit import Job


class Noop(Job):
    """``run``: a no-op with one int param, the workload of every throughput metric.
    ``stamp``: records when it started, for the pick-up latency."""

    methods = ("run", "stamp")

    def run(self, n: int) -> None:
        """Do nothing."""

    def stamp(self, n: int) -> None:
        """Write ``n`` and the time to ``BENCH_STAMP_FILE``."""
        write_stamp(n)


class Sleeper(Job):
    """``nap``: sleeps ``seconds``, the workload of the concurrency-limit drain (``flow``)."""

    methods = ("nap",)

    def nap(self, n: int, seconds: float) -> None:
        """Sleep ``seconds``."""
        time.sleep(seconds)
