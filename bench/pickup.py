"""Pick-up latency and idle CPU of an idle `jobkit worker` (SQLite, or any store URL).

Run with `make bench-pickup` (or `.venv/bin/python bench/pickup.py`); on PostgreSQL,
`.venv/bin/python bench/pickup.py --storage postgresql://... --poll-interval 2` (new jobs wake the
worker through LISTEN/NOTIFY, so the poll interval can be long). Starts a real worker with one
process, lets it idle, measures the CPU time its processes use while idle, then enqueues jobs one
at a time and reports how long each waited between enqueue and start (p50, p95).
Not a test: numbers depend on the machine. Side-by-side ratios with Huey and procrastinate are
issue 6's harness.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

from jobkit import JobKit

JOBS = '''
from jobkit import Job

class Noop(Job):
    methods = ("run",)

    def run(self, n: int) -> int:
        return n
'''


def main(
    samples: int = 40,
    idle_seconds: float = 5.0,
    storage: str | None = None,
    poll_interval: float = 0.05,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "bench_jobs.py").write_text(JOBS)
        config = root / "jobs.yaml"
        config.write_text(yaml.safe_dump({
            "storage": storage or f"sqlite:///{root / 'jobkit.db'}",
            "worker": {"poll_interval": poll_interval},
            "logging": {"dir": str(root / "logs")},
            "jobs": {"Noop": {"class": "bench_jobs:Noop"}},
        }))
        sys.path.insert(0, str(root))
        worker = subprocess.Popen(
            [sys.executable, "-m", "jobkit", "--config", str(config), "--path", str(root),
             "worker", "--concurrency", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            with JobKit.from_config(config, load_entrypoints=False) as app:
                app.run_background_job("Noop", "run", {"n": 0})
                time.sleep(2.0)  # started, warmed up, idle
                tree = [psutil.Process(worker.pid), *psutil.Process(worker.pid).children(True)]
                before = sum(sum(p.cpu_times()[:2]) for p in tree)
                time.sleep(idle_seconds)
                idle_cpu = sum(sum(p.cpu_times()[:2]) for p in tree) - before
                waits = []
                for i in range(samples):
                    job_id = app.run_background_job("Noop", "run", {"n": i})
                    while (record := app.get_job(job_id)).started_at is None:
                        time.sleep(0.002)
                    waits.append((record.started_at - record.created_at).total_seconds() * 1000)
                    time.sleep(random.uniform(0.05, 0.15))  # no phase lock with the poll
        finally:
            worker.terminate()
            worker.wait(30)
    waits.sort()
    p95 = waits[int(len(waits) * 0.95) - 1]
    print(f"idle CPU: {idle_cpu / idle_seconds * 100:.2f}% of one core over {idle_seconds:g} s "
          f"({len(tree)} processes)")
    print(f"pick-up latency over {samples} jobs: p50 {statistics.median(waits):.1f} ms, "
          f"p95 {p95:.1f} ms, max {waits[-1]:.1f} ms  (poll_interval {poll_interval * 1000:g} ms, "
          f"{(storage or 'sqlite').split(':')[0]})")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--storage", help="store URL (default: a fresh SQLite file)")
    parser.add_argument("--poll-interval", type=float, default=0.05, help="seconds (default 0.05)")
    parser.add_argument("--samples", type=int, default=40)
    arguments = parser.parse_args()
    main(arguments.samples, storage=arguments.storage, poll_interval=arguments.poll_interval)
