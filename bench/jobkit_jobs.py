"""The benchmark's jobkit jobs: ``Noop``, ``Sleeper`` (the concurrency-limit drain), ``Flow``.

Registered as ``class: jobkit_jobs:Noop`` (and ``Sleeper``, ``Flow``) in the ``jobs.yaml`` the
harness writes; ``bench/`` is on the import path of every process.
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


class Flow(Job):
    """The steps of the workflow measures (issue 20, ``bench/workflows.py``).

    ``member``: a no-op that returns its ``n``; ``collect``: a group's callback, given the list
    of its members' results; ``then``: a chain's next step, given the previous one's result.
    """

    methods = ("member", "collect", "then")

    def member(self, n: int) -> int:
        """Return ``n``."""
        return n

    def collect(self, n: int, results: list[int | None]) -> int:
        """Return how many results came."""
        return len(results)

    def then(self, n: int, previous: int | None = None) -> int:
        """Return ``n``."""
        return n
