"""Job classes (and a helper) of the reliability scenarios 9 to 11 and the kill storms.

test_postgres_outage.py, test_retry_timing.py, test_cancel.py, test_workflow_storm.py and
test_async_storm.py in tests/reliability. Importable by spawned worker processes (tests/ is on
their sys.path)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sample_jobs import append

from jobkit import Job

#: The size of the message of :meth:`Huge.explode`: 5 MB.
HUGE = 5 * 1024 * 1024


def _chain(links: int) -> None:
    """``links`` exceptions chained by ``raise ... from``: each adds a traceback section."""
    if links <= 0:
        raise KeyError("first link")
    try:
        _chain(links - 1)
    except Exception as exc:
        raise RuntimeError(f"link {links}") from exc


class Huge(Job):
    """Always fails, with a traceback far too big to store whole."""

    methods = ("explode", "chained")

    def explode(self, ledger: str, tag: str = "huge") -> None:
        append(ledger, tag=tag, job=self.context.job_id, attempt=self.context.attempt)
        raise RuntimeError("HEAD" + "x" * HUGE + "TAIL")

    def chained(self, ledger: str, links: int, tag: str = "chain") -> None:
        append(ledger, tag=tag, job=self.context.job_id, attempt=self.context.attempt)
        _chain(links)


class Sleeper(Job):
    """Sleeps, recording in the ledger its start and, if it is not stopped first, its end."""

    methods = ("nap",)

    def nap(self, ledger: str, seconds: float, tag: str = "nap") -> str:
        append(ledger, tag=f"{tag}:start", job=self.context.job_id, attempt=self.context.attempt)
        time.sleep(seconds)
        append(ledger, tag=f"{tag}:end", job=self.context.job_id, attempt=self.context.attempt)
        return "rested"


def worker_processes(worker: Any) -> list[Any]:
    """The live worker processes of a `jobkit worker` (a ``workers.WorkerProcess`` or a
    ``psutil.Process``), leaving out multiprocessing's resource tracker.

    Spawned processes run ``--multiprocessing-fork``; forked ones (Linux, issue 17) keep the
    supervisor's command line; the resource tracker (spawn's) is neither of its kind.
    """
    import psutil

    found = []
    for child in worker.children():
        try:
            if "resource_tracker" not in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


def worker_pids(worker: Any) -> set[int]:
    """The pids of :func:`worker_processes`."""
    return {child.pid for child in worker_processes(worker)}


class Stepper(Job):
    """A workflow's step for the kill storm: its start and end in the ledger, around a pause.

    The start entry has the step's label and the results it was given (a callback's).
    """

    methods = ("work",)

    def work(self, ledger: str, label: str, pause: float,
             results: list[str | None] | None = None) -> str:
        append(ledger, tag="start", label=label, job=self.context.job_id,
               attempt=self.context.attempt, results=results)
        time.sleep(pause)
        append(ledger, tag="end", label=label, job=self.context.job_id,
               attempt=self.context.attempt)
        return label


class Mixed(Job):
    """The async kill storm's jobs: a sync and an async method, each ledgering its start and end.

    An async job called with ``flaky`` fails its first attempt (a ``fail`` entry, no end).
    """

    methods = ("work", "wait")

    def work(self, ledger: str, pause: float) -> str:
        append(ledger, tag="start", kind="sync", job=self.context.job_id,
               attempt=self.context.attempt)
        time.sleep(pause)
        append(ledger, tag="end", kind="sync", job=self.context.job_id,
               attempt=self.context.attempt)
        return "worked"

    async def wait(self, ledger: str, pause: float, flaky: bool = False) -> str:
        append(ledger, tag="start", kind="async", job=self.context.job_id,
               attempt=self.context.attempt)
        await asyncio.sleep(pause)
        if flaky and self.context.attempt == 1:
            append(ledger, tag="fail", kind="async", job=self.context.job_id, attempt=1)
            raise RuntimeError("planned failure of a first attempt")
        append(ledger, tag="end", kind="async", job=self.context.job_id,
               attempt=self.context.attempt)
        return "waited"
