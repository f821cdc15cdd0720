"""The benchmark's Huey tasks, on ``SqliteHuey`` (the consumer imports ``huey_tasks.huey``).

``BENCH_HUEY_DB`` names the SQLite file; ``BENCH_HUEY_FSYNC`` is ``default`` (Huey's default,
``fsync=None``: SQLite's own ``synchronous``, FULL in WAL mode on this build), ``full``
(``fsync=True``) or ``off`` (``fsync=False``).
"""

from __future__ import annotations

import os

from huey import SqliteHuey
from stamps import write_stamp

_FSYNC = {"default": None, "full": True, "off": False}

huey = SqliteHuey(
    "bench",
    filename=os.environ.get("BENCH_HUEY_DB", "huey.db"),
    fsync=_FSYNC[os.environ.get("BENCH_HUEY_FSYNC", "default")],
)


@huey.task()
def noop(n: int) -> None:
    """Do nothing (one int param)."""


@huey.task()
def stamp(n: int) -> None:
    """Write ``n`` and the time to ``BENCH_STAMP_FILE``."""
    write_stamp(n)
