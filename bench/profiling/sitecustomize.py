"""A cProfile hook for every Python process started with ``bench/profiling`` on its path.

When ``BENCH_CPROFILE_DIR`` names a folder, the process profiles its main thread from start to
exit and writes ``<pid>-<role>.prof`` there (``role``: ``spawned`` for a process started by
multiprocessing's *spawn*, else ``main``). ``bench/profile_worker.py`` uses it on a worker's
supervisor and its spawned processes. Nothing happens without the variable.
"""

from __future__ import annotations

import os

if os.environ.get("BENCH_CPROFILE_DIR"):
    import atexit
    import cProfile
    import multiprocessing

    _profiler = cProfile.Profile()

    def _dump() -> None:
        """Stop profiling and write this process's profile."""
        _profiler.disable()
        role = "main" if multiprocessing.parent_process() is None else "spawned"
        _profiler.dump_stats(
            os.path.join(os.environ["BENCH_CPROFILE_DIR"], f"{os.getpid()}-{role}.prof"))

    atexit.register(_dump)
    _profiler.enable()
