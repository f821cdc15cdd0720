"""The benchmark's jobkit job, registered as ``Noop`` (``class: jobkit_jobs:Noop`` in the
``jobs.yaml`` the harness writes; ``bench/`` is on the import path of every process)."""

from __future__ import annotations

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
