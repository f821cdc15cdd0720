"""Schedules fired by real workers, with no leader: each tick stored once, kills and all.

Three `jobkit worker` processes (SQLite: on one file; PostgreSQL: "machines" on one server) fire
two `every: 1s` schedules for about half a minute while one of them at a time is killed with
SIGKILL (supervisor and worker processes) and started again. Under `catch_up: all` every tick
from the first to the last handled one is stored exactly once (no duplicate, no gap); under
`catch_up: latest` no tick is ever stored twice. The store's runs and jobs are both counted.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for, write_config
from workers import WorkerProcess

from jobkit import JobKit

pytestmark = pytest.mark.slow

WORKERS = 3
#: Seconds the schedules run for, while workers are killed and started again.
RUN_FOR = 30.0
#: Seconds between two kills.
KILL_EVERY = 4.0
SCHEDULES = {
    "every-tick": {"job": "Recorder", "method": "record", "every": "1s", "catch_up": "all",
                   "overlap": "allow"},
    "latest": {"job": "Recorder", "method": "record", "every": "1s", "catch_up": "latest",
               "overlap": "allow"},
}


@pytest.fixture(params=["sqlite", "postgresql"])
def store_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """jobs.yaml's overrides for a store of each backend (PostgreSQL: a fresh database)."""
    if request.param == "sqlite":
        return {}
    return {"storage": request.getfixturevalue("empty_postgres_url")}


def test_each_tick_is_stored_once_by_racing_workers_killed_and_restarted(
    tmp_path: Path, store_config: dict[str, Any]
) -> None:
    """Three workers, one killed (SIGKILL) and restarted every few seconds: `all` stores every
    tick once, without a gap; `latest` never stores one twice."""
    schedules = {name: {**entry, "params": {"ledger": str(tmp_path / "ledger.jsonl"),
                                            "tag": name}}
                 for name, entry in SCHEDULES.items()}
    config = write_config(tmp_path, **store_config, schedules=schedules,
                          worker={"poll_interval": 0.2, "lease": 5.0, "heartbeat": 0.5})
    workers = [WorkerProcess(config, "-n", "1") for _ in range(WORKERS)]
    try:
        with JobKit.from_config(str(config), load_entrypoints=False) as app:
            wait_for(lambda: len(app.schedule_runs("every-tick")) >= 2, timeout=60,
                     what="the first ticks")
            deadline = time.monotonic() + RUN_FOR
            kills = 0
            while time.monotonic() < deadline:
                time.sleep(KILL_EVERY)
                victim = kills % WORKERS
                workers[victim].kill()
                workers[victim] = WorkerProcess(config, "-n", "1")
                kills += 1
            for worker in workers:
                worker.stop()
            check_ticks(app)
    finally:
        for worker in workers:
            worker.kill()
    assert kills >= 5


def check_ticks(app: JobKit) -> None:
    """Every tick of `every-tick` stored once, no gap; no tick of `latest` stored twice."""
    states = app.storage.schedule_states()  # type: ignore[attr-defined]
    jobs = Counter(job.params["tag"] for job in app.list_jobs(limit=10_000))
    for name in SCHEDULES:
        runs = app.storage.schedule_runs(name, limit=10_000)  # type: ignore[attr-defined]
        ticks = sorted(tick for tick, _ in runs)
        assert len(ticks) == len(set(ticks)), f"{name}: a tick stored twice"
        assert len({job_id for _, job_id in runs}) == len(runs) == jobs[name], (name, jobs)
        assert states[name].last_tick == ticks[-1]
        if name == "every-tick":
            expected = [ticks[0] + timedelta(seconds=n)
                        for n in range(int((ticks[-1] - ticks[0]).total_seconds()) + 1)]
            missing = sorted(set(expected) - set(ticks))
            assert missing == [], f"ticks never stored: {missing}"
            assert len(ticks) >= RUN_FOR * 0.8, len(ticks)
        else:
            assert len(ticks) >= RUN_FOR * 0.5, len(ticks)  # a late firing may skip a tick
