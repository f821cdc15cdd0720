"""What SQLite itself allows on this disk, with Python's ``sqlite3`` and nothing else: the limits
that jobkit's numbers are a fraction of. WAL mode throughout, one process, one connection.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    available_at REAL NOT NULL,
    params TEXT NOT NULL,
    worker_id TEXT,
    started_at REAL,
    finished_at REAL,
    result TEXT
);
CREATE INDEX jobs_claim ON jobs (priority DESC, available_at, id) WHERE status = 'pending';
"""

CLAIM = """
UPDATE jobs SET status = 'running', worker_id = :worker, started_at = :now
WHERE id = (
    SELECT id FROM jobs WHERE status = 'pending' AND available_at <= :now
    ORDER BY priority DESC, available_at, id LIMIT 1
)
RETURNING id, params
"""

FINISH = "UPDATE jobs SET status = 'done', finished_at = :now, result = NULL WHERE id = :id"
INSERT = "INSERT INTO jobs (status, available_at, params) VALUES ('pending', :now, :params)"


def _connect(workdir: str, synchronous: str) -> sqlite3.Connection:
    Path(workdir).mkdir(parents=True, exist_ok=True)
    path = Path(workdir) / f"raw-{time.monotonic_ns()}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.executescript(SCHEMA)
    return conn


def claim_finish(workdir: str, jobs: int, synchronous: str = "NORMAL") -> dict[str, Any]:
    """Jobs/s of a claim (``UPDATE ... RETURNING``, its own transaction) followed by a
    separate finish (another transaction), the least a job runner that keeps its jobs does."""
    conn = _connect(workdir, synchronous)
    now = time.time()
    conn.execute("BEGIN")
    conn.executemany(INSERT, ({"now": now, "params": f'{{"n": {n}}}'} for n in range(jobs)))
    conn.execute("COMMIT")
    done = 0
    started = time.perf_counter()
    while True:
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute(CLAIM, {"worker": "raw:1", "now": time.time()}).fetchone()
        conn.execute("COMMIT")
        if row is None:
            break
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(FINISH, {"now": time.time(), "id": row[0]})
        conn.execute("COMMIT")
        done += 1
    seconds = time.perf_counter() - started
    conn.close()
    return {"rate": done / seconds, "jobs": done}


def inserts(workdir: str, rows: int, synchronous: str = "NORMAL") -> dict[str, Any]:
    """One-row inserts, a commit each (rows/s)."""
    conn = _connect(workdir, synchronous)
    started = time.perf_counter()
    for n in range(rows):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(INSERT, {"now": time.time(), "params": f'{{"n": {n}}}'})
        conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return {"rate": rows / seconds}


def batch_inserts(workdir: str, rows: int, batch: int = 10_000,
                  synchronous: str = "NORMAL") -> dict[str, Any]:
    """Inserts in transactions of ``batch`` rows (rows/s)."""
    conn = _connect(workdir, synchronous)
    started = time.perf_counter()
    for start in range(0, rows, batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT, (
            {"now": time.time(), "params": f'{{"n": {n}}}'}
            for n in range(start, min(rows, start + batch))
        ))
        conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return {"rate": rows / seconds}
