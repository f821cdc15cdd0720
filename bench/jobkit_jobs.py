"""The benchmark's jobkit jobs: ``Noop``, ``Sleeper``, ``Flow`` and ``Waiter``.

``Sleeper`` is the concurrency-limit drain's (``flow``), ``Waiter`` the ``async`` drain's.
Registered as ``class: jobkit_jobs:Noop`` (and ``Sleeper``, ...) in the ``jobs.yaml`` the
harness writes; ``bench/`` is on the import path of every process.
"""

from __future__ import annotations

import asyncio
import os
import time

from stamps import write_stamp

from jobkit import Job


class Noop(Job):
    """The workload of every throughput metric, and of the pick-up latency.

    ``run``: a no-op with one int param; ``stamp``: records when it started.
    """

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


class Waiter(Job):
    """``wait``: an ``async def`` method that awaits ``seconds`` of I/O (the ``async`` drain)."""

    methods = ("wait",)

    async def wait(self, n: int, seconds: float) -> None:
        """``await asyncio.sleep(seconds)``."""
        await asyncio.sleep(seconds)


def _stamp(n: int, end: bool) -> None:
    """With ``BENCH_STAMP_FILE`` set, stamp step ``n``'s start (``2n``) or end (``2n + 1``)."""
    if "BENCH_STAMP_FILE" in os.environ:
        write_stamp(2 * n + end)


class Flow(Job):
    """The steps of the workflow measures (issue 20, ``bench/workflows.py``).

    ``member``: a no-op that returns its ``n``; ``collect``: a group's callback, given the list
    of its members' results; ``then``: a chain's next step, given the previous one's result.
    Each stamps (see :func:`_stamp`) what a later step's latency is measured from or to.
    """

    methods = ("member", "collect", "then")

    def member(self, n: int) -> int:
        """Return ``n``."""
        _stamp(n, end=True)
        return n

    def collect(self, n: int, results: list[int | None]) -> int:
        """Return how many results came."""
        _stamp(n, end=False)
        return len(results)

    def then(self, n: int, previous: int | None = None) -> int:
        """Return ``n``."""
        _stamp(n, end=False)
        _stamp(n, end=True)
        return n
