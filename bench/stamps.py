"""When did a job start: the stamp every system's "stamp" job writes.

Standard library only, and apart from ``common`` (which imports psutil): the job modules of
every system import it in their worker processes, whose start-up the benchmark measures.
"""

from __future__ import annotations

import os
import time


def write_stamp(n: int) -> None:
    """Called first thing by the "stamp" job of every system.

    Appends ``n`` and the wall-clock time to the file named by ``BENCH_STAMP_FILE``.
    """
    now = time.time()
    with open(os.environ["BENCH_STAMP_FILE"], "a") as out:
        out.write(f"{n} {now!r}\n")
