"""What the PostgreSQL server itself allows on this disk, with psycopg and nothing else: the
limit a one-at-a-time enqueue (one durable commit each) is a fraction of."""

from __future__ import annotations

import time
from typing import Any

import psycopg

SCHEMA = """
DROP TABLE IF EXISTS raw_jobs;
CREATE TABLE raw_jobs (
    id bigserial PRIMARY KEY,
    status text NOT NULL,
    available_at timestamptz NOT NULL,
    params jsonb NOT NULL
)
"""

INSERT = "INSERT INTO raw_jobs (status, available_at, params) VALUES ('pending', now(), %s)"


def inserts(url: str, rows: int) -> dict[str, Any]:
    """One-row inserts, a commit each (autocommit, one connection; rows/s)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SCHEMA)
        started = time.perf_counter()
        for n in range(rows):
            conn.execute(INSERT, (f'{{"n": {n}}}',))
        seconds = time.perf_counter() - started
        conn.execute("DROP TABLE raw_jobs")
    return {"rate": rows / seconds}
