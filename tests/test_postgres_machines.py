"""Workers on several "machines" share one PostgreSQL server.

Each machine is a `jobkit worker` supervisor of its own, with its own processes and connections,
started as a separate OS process against the same database. Every run of a job appends a line to
a ledger file outside the store (job id, attempt, pid, machine), so the tests count losses and
duplicates exactly.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import config_data, subprocess_env, wait_for
from pg_server import PostgresServer, reset
from sample_jobs import read_ledger

from jobkit import JobKit, JobStatus

pytestmark = pytest.mark.slow

MACHINES = 3


def write_machine_config(tmp_path: Path, url: str, lease: float = 10.0) -> Path:
    """jobs.yaml on the PostgreSQL database, with short worker intervals."""
    data = config_data(tmp_path, storage=url)
    data["worker"].update({"lease": lease, "heartbeat": 1.0, "poll_interval": 1.0})
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def enqueue(config: Path, ledger: str, count: int, seconds: float = 0.0) -> set[str]:
    """Enqueue ``count`` Recorder jobs, each taking ``seconds`` if given; their ids."""
    with JobKit.from_config(config, load_entrypoints=False) as app:
        if seconds:
            return {app.run_background_job("Recorder", "sleep",
                                           {"seconds": seconds, "ledger": ledger})
                    for _ in range(count)}
        return {
            app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": str(n)})
            for n in range(count)
        }


def start_machine(tmp_path: Path, config: Path, name: str, *extra: str) -> subprocess.Popen[str]:
    """One machine: a `jobkit worker` with two processes, its log in tmp_path/<name>.log."""
    log = (tmp_path / f"{name}.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "jobkit", "--config", str(config), "worker", "-n", "2", *extra],
        cwd=tmp_path,
        env=subprocess_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop_all(machines: list[subprocess.Popen[str]]) -> None:
    """SIGTERM every machine still running and wait for it."""
    for machine in machines:
        if machine.poll() is None:
            machine.terminate()
    for machine in machines:
        try:
            machine.wait(timeout=30)
        except subprocess.TimeoutExpired:
            machine.kill()
            machine.wait()


def machine_of(pids_by_machine: dict[int, str], pid: int) -> str:
    """The machine a worker pid belongs to (its parent is the machine's supervisor)."""
    return pids_by_machine.get(pid, "?")


def children_of(machines: list[subprocess.Popen[str]]) -> dict[int, str]:
    """Worker pid -> machine index, read from /proc while the machines run."""
    import psutil

    found: dict[int, str] = {}
    for index, machine in enumerate(machines):
        try:
            for child in psutil.Process(machine.pid).children(recursive=True):
                found[child.pid] = f"machine-{index}"
        except psutil.NoSuchProcess:
            continue
    return found


def test_5000_jobs_on_three_machines_run_exactly_once(
    tmp_path: Path, postgres_url: str
) -> None:
    """5,000 jobs, three machines of two processes: every job completed, run exactly once, and
    every machine did a share of the work."""
    reset(postgres_url)
    config = write_machine_config(tmp_path, postgres_url)
    ledger = str(tmp_path / "ledger.jsonl")
    ids = enqueue(config, ledger, 5000)
    machines = [
        start_machine(tmp_path, config, f"machine-{n}", "--burst") for n in range(MACHINES)
    ]
    pids: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 240
        while any(m.poll() is None for m in machines) and time.monotonic() < deadline:
            pids.update(children_of(machines))
            time.sleep(0.2)
        assert all(m.poll() == 0 for m in machines), [m.returncode for m in machines]
    finally:
        stop_all(machines)
    entries = read_ledger(ledger)
    runs = Counter(entry["job"] for entry in entries)
    assert set(runs) == ids, f"{len(ids - set(runs))} job(s) never ran"
    assert [job for job, n in runs.items() if n > 1] == [], "a job ran twice"
    with JobKit.from_config(config, load_entrypoints=False) as app:
        assert app.storage.count(status=JobStatus.COMPLETED) == 5000
    share = Counter(machine_of(pids, entry["pid"]) for entry in entries)
    assert "?" not in share, "a run came from a process of no machine"
    assert all(share[f"machine-{n}"] >= 5000 * 0.1 for n in range(MACHINES)), share


def test_a_server_restart_mid_run_loses_nothing(
    tmp_path: Path, postgres_server: PostgresServer, postgres_url: str
) -> None:
    """The server is restarted while three machines work through 1,500 jobs: every job still
    completes, no worker process crashes, and the workers report the outage and recovery."""
    reset(postgres_url)
    config = write_machine_config(tmp_path, postgres_url, lease=30.0)
    ledger = str(tmp_path / "ledger.jsonl")
    # 20 ms a job: at 6 processes the 1,200 jobs left after the restart take about 4 s, so the
    # restart falls mid-run (no-op jobs were all done before it once workers got faster)
    ids = enqueue(config, ledger, 1500, seconds=0.02)
    machines = [start_machine(tmp_path, config, f"machine-{n}") for n in range(MACHINES)]
    try:
        wait_for(lambda: len(read_ledger(ledger)) >= 300, timeout=60, what="work to start")
        pids_before = set(children_of(machines))
        postgres_server.restart()
        with JobKit.from_config(config, load_entrypoints=False) as app:
            wait_for(
                lambda: app.storage.count(status=JobStatus.COMPLETED) == 1500,
                timeout=180,
                what="every job to complete after the restart",
            )
        assert all(m.poll() is None for m in machines), "a machine exited"
        assert set(children_of(machines)) == pids_before, "a worker process crashed"
    finally:
        stop_all(machines)
    runs = Counter(entry["job"] for entry in read_ledger(ledger))
    assert set(runs) == ids
    logs = "".join((tmp_path / f"machine-{n}.log").read_text() for n in range(MACHINES))
    # a query cut off reports an error; a pooled connection found closed, a warning
    reported = ("worker error", "recording its outcome failed", "connection lost")
    assert any(text in logs for text in reported), logs[-3000:]
    assert "Traceback" not in logs, logs[-3000:]
    assert [m.returncode for m in machines] == [0] * MACHINES
