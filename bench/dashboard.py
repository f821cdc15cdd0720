"""How fast the dashboard answers on a big store: every page and list filter, timed through the
ASGI client (no network), on a store holding 1,000,000 finished jobs (1 in 97 failed): SQLite,
and PostgreSQL on a throw-away server when its binaries are installed.

Run with `make bench-dashboard` (or `.venv/bin/python bench/dashboard.py [--rows N] [--keep DIR]
[--only sqlite|postgresql]`) from jobkit's own virtualenv, which has the dashboard extra. Each
store is built by SQL from one job a real worker ran, in 10 to 60 s. Prints the median of 5
requests per route; the issue's target is under 200 ms for the list and the overview. Not a
test: numbers depend on the machine.
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


def sqlite_store(folder: Path, rows: int) -> str:
    """A SQLite store of ``rows`` finished jobs in ``folder`` (kept when it is there)."""
    database = folder / "jobkit.db"
    if not database.exists():
        built = scale_template(str(folder), rows)
        print(f"built {built['rows']:,} finished jobs in {built['seconds']:.1f} s")
        with sqlite3.connect(database) as conn:
            conn.execute("UPDATE jobkit_jobs SET status = 'failed', error = 'boom' "
                         "WHERE id % 97 = 0")
    return f"sqlite:///{database}"


def postgres_store(url: str, rows: int) -> None:
    """Fill the empty database at ``url`` with ``rows`` finished jobs (and their attempts),
    copied by SQL from one job a real worker ran."""
    import psycopg

    from jobkit import JobKit
    from jobkit.config import Config
    from jobkit.worker import run_until_empty

    started = time.perf_counter()
    config = Config.from_dict({"storage": url, "jobs": {"Noop": {"class": "jobkit_jobs:Noop"}}})
    with JobKit(config, load_entrypoints=False) as app:
        app.run_background_job("Noop", "run", {"n": 0})
        run_until_empty(app)
    with psycopg.connect(url, autocommit=True) as conn:
        columns = [row[0] for row in conn.execute(
            b"SELECT column_name FROM information_schema.columns "
            b"WHERE table_name = 'jobkit_jobs' AND column_name <> 'id' ORDER BY ordinal_position")]
        values = ", ".join(
            "('{\"n\": ' || i || '}')::json" if c == "params"
            else f"t.{c} - (%(rows)s - i) * interval '1 millisecond'"
            if c in ("created_at", "available_at", "started_at", "finished_at")
            else "CASE WHEN i %% 97 = 0 THEN 'failed' ELSE t.status END" if c == "status"
            else f"t.{c}" for c in columns)
        query = (f"INSERT INTO jobkit_jobs ({', '.join(columns)}) SELECT {values} "
                 f"FROM generate_series(1, %(rows)s) AS i, jobkit_jobs AS t WHERE t.id = 1")
        conn.execute(query.encode(), {"rows": rows - 1})
        conn.execute(b"VACUUM ANALYZE jobkit_jobs")
    print(f"built {rows:,} finished jobs in PostgreSQL in {time.perf_counter() - started:.1f} s")


def measure(storage: str, rows: int) -> list[tuple[str, float]]:
    """Time every route on the store at ``storage``."""
    from starlette.testclient import TestClient

    from jobkit import JobKit
    from jobkit.config import Config
    from jobkit.dashboard.web import create_app

    config = Config.from_dict({
        "storage": storage,
        "dashboard": {"auth": False},
        "jobs": {"Noop": {"class": "jobkit_jobs:Noop"}},
    })
    timings = []
    with JobKit(config, load_entrypoints=False) as app:
        for n in range(5):  # a few waiting jobs, as a live store has
            app.run_background_job("Noop", "run", {"n": n})
        with TestClient(create_app(app), base_url="http://127.0.0.1") as client:
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
    parser.add_argument("--keep", help="build (or reuse) the SQLite store in this folder")
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    options = parser.parse_args()
    results: dict[str, list[tuple[str, float]]] = {}
    if options.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(options.keep or tmp)
            folder.mkdir(parents=True, exist_ok=True)
            results["SQLite"] = measure(sqlite_store(folder, options.rows), options.rows)
    if options.only in (None, "postgresql"):
        from pg import BenchServer, find_bin_dir

        bin_dir = find_bin_dir()
        if bin_dir is None:
            print("no PostgreSQL binaries: PostgreSQL skipped")
        else:
            server = BenchServer(bin_dir)
            server.start()
            try:
                url = server.create_database("jobkit_dashboard")
                postgres_store(url, options.rows)
                results["PostgreSQL"] = measure(url, options.rows)
            finally:
                server.cleanup()
    names = list(results)
    print(f"| route ({options.rows:,} finished jobs) | " + " | ".join(names) + " |")
    print("| --- |" + " --- |" * len(names))
    for index, (route, _) in enumerate(next(iter(results.values()), [])):
        cells = " | ".join(f"{results[name][index][1]:.1f} ms" for name in names)
        print(f"| `{route}` | {cells} |")


if __name__ == "__main__":
    main()
