"""The benchmark's procrastinate app and tasks (``procrastinate --app=procrastinate_tasks.app``).

``BENCH_PG_URL`` is the database's URL (libpq conninfo).
"""

from __future__ import annotations

import asyncio
import os

from procrastinate import App, PsycopgConnector
from stamps import write_stamp

app = App(connector=PsycopgConnector(conninfo=os.environ.get("BENCH_PG_URL", "")))


@app.task(name="noop")
def noop(n: int) -> None:
    """Do nothing (one int param)."""


@app.task(name="stamp")
def stamp(n: int) -> None:
    """Write ``n`` and the time to ``BENCH_STAMP_FILE``."""
    write_stamp(n)


@app.task(name="wait")
async def wait(n: int, seconds: float) -> None:
    """``await asyncio.sleep(seconds)``: the ``async`` drain's workload."""
    await asyncio.sleep(seconds)
