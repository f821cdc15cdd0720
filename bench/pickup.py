"""Pick-up latency and idle CPU of an idle `jobkit worker` (SQLite, or any store URL), alone.

Run with `make bench-pickup` (or `.venv/bin/python bench/pickup.py`); on PostgreSQL,
`.venv/bin/python bench/pickup.py --storage postgresql://... --poll-interval 2` (new jobs wake the
worker through LISTEN/NOTIFY, so the poll interval can be long). It is the pick-up measurement of
the side-by-side harness (`bench/run.py`, `make bench`), jobkit only, from jobkit's own
virtualenv: a real worker with one process idles while the CPU time of its processes is
measured, then jobs are enqueued one at a time and each one's wait between the return of the
enqueue call and the job's start is reported (p50, p95). Not a test: numbers depend on the
machine.
"""

from __future__ import annotations

import argparse
import tempfile

from jobkit_side import pickup  # bench/ is on the path: this script's folder


def main(
    samples: int = 40,
    idle_seconds: float = 5.0,
    storage: str | None = None,
    poll_interval: float | None = None,
) -> None:
    """Measure once and print the result."""
    with tempfile.TemporaryDirectory() as tmp:
        result = pickup(tmp, storage or "sqlite", samples, idle_seconds, poll_interval)
    poll = "default" if poll_interval is None else f"{poll_interval * 1000:g} ms"
    print(f"idle CPU: {result['idle_cpu_percent']:.2f}% of one core over {idle_seconds:g} s "
          f"({result['idle_processes']} processes)")
    print(f"pick-up latency over {result['samples']} jobs: p50 {result['p50_ms']:.1f} ms, "
          f"p95 {result['p95_ms']:.1f} ms, max {result['max_ms']:.1f} ms; first job after the "
          f"idle time {result['after_idle_ms']:.1f} ms  (poll_interval {poll}, "
          f"{(storage or 'sqlite').split(':')[0]})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--storage", help="store URL (default: a fresh SQLite file)")
    parser.add_argument("--poll-interval", type=float, default=None,
                        help="seconds (default: jobkit's default)")
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    arguments = parser.parse_args()
    main(arguments.samples, arguments.idle_seconds, arguments.storage, arguments.poll_interval)
