"""How fast the dashboard answers on a big store: every page and list filter, timed through the
ASGI client (no network), on a SQLite store holding 1,000,000 finished jobs (1 in 97 failed).

Run with `make bench-dashboard` (or `.venv/bin/python bench/dashboard.py [--rows N] [--keep DIR]`)
from jobkit's own virtualenv, which has the dashboard extra. The store is built by SQL from one
job a real worker ran (`jobkit_side.scale_template`, as `make bench` does), in about 10 s. Prints
the median of 5 requests per route; the issue's target is under 200 ms for the list and the
overview. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from jobkit_side import scale_template  # bench/ is on the path: this script's folder

ROUTES = (
    "/",
    "/api/overview",
    "/jobs",
    "/api/jobs",
    "/api/jobs?status=failed",
    "/api/jobs?status=failed&name=Noop",
    "/api/jobs?sort=next",
    "/api/jobs?sort=oldest",
    "/api/jobs?method=run&priority=0",
    "/api/jobs?since=2020-01-01T00:00",
    '/api/jobs?text="n": 999999',
    "/api/jobs?text=no such text",
    "/jobs/{middle}",
    "/registry",
)


def measure(folder: Path, rows: int) -> list[tuple[str, float]]:
    """Build the store in ``folder`` (unless it is there) and time every route."""
    from starlette.testclient import TestClient

    from jobkit import JobKit
    from jobkit.config import Config
    from jobkit.dashboard.web import create_app

    database = folder / "jobkit.db"
    if not database.exists():
        built = scale_template(str(folder), rows)
        print(f"built {built['rows']:,} finished jobs in {built['seconds']:.1f} s")
        with sqlite3.connect(database) as conn:
            conn.execute("UPDATE jobkit_jobs SET status = 'failed', error = 'boom' "
                         "WHERE id % 97 = 0")
    config = Config.from_dict({
        "storage": f"sqlite:///{database}",
        "dashboard": {"auth": False},
        "jobs": {"Noop": {"class": "jobkit_jobs:Noop"}},
    })
    timings = []
    with JobKit(config, load_entrypoints=False) as app:
        for n in range(5):  # a few waiting jobs, as a live store has
            app.run_background_job("Noop", "run", {"n": n})
        with TestClient(create_app(app)) as client:
            for pattern in ROUTES:
                route = pattern.format(middle=rows // 2)
                spent = []
                for _ in range(5):
                    started = time.perf_counter()
                    response = client.get(route)
                    spent.append((time.perf_counter() - started) * 1000)
                    response.raise_for_status()
                timings.append((route, statistics.median(spent)))
    return timings


def main() -> None:
    """Parse the options, measure, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", help="build (or reuse) the store in this folder")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(options.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        timings = measure(folder, options.rows)
    print(f"| route ({options.rows:,} finished jobs, SQLite) | median of 5 |")
    print("| --- | --- |")
    for route, spent in timings:
        print(f"| `{route}` | {spent:.1f} ms |")


if __name__ == "__main__":
    main()
