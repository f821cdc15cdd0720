"""Scenario 9 (PostgreSQL only): the database goes away under a running worker and comes back.

A real `jobkit worker -n 2` works through a queue while (a) every connection to the database is
killed with ``pg_terminate_backend`` several times, or (b) the server is restarted. The workers
must reconnect by themselves: no worker process exits, every job runs and completes (the ledger,
written outside the store, says so; a job runs twice only when an attempt of it was lost), and
``LISTEN`` is restored. To tell a ``NOTIFY`` from a poll, the worker polls only every 30 s: once
the queue is empty and both worker processes listen again, one more job must be done within a
few seconds, which only a notification can bring about.

``tests/test_postgres_machines.py`` restarts the server under three machines with a 1 s poll;
this scenario adds the terminated connections, the ledger and the restored ``LISTEN``. The server
is shared by the whole run: it is started again if a restart leaves it down.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import make_config, wait_for
from fault_jobs import worker_pids
from pg_server import PostgresServer
from sample_jobs import read_ledger

from jobkit import JobKit, JobStatus
from jobkit.records import AttemptOutcome
from reliability.conftest import store_config

pytestmark = pytest.mark.slow

JOBS = 200
NAP = 0.05
POLL = 30.0  # only a NOTIFY wakes an idle worker within a test's lifetime
WORKER_APP = "jobkit-outage-worker"  # the libpq application_name of the worker's connections
TERMINATE_ALL = (
    b"SELECT pid, application_name, pg_terminate_backend(pid) FROM pg_stat_activity "
    b"WHERE datname = current_database() AND pid <> pg_backend_pid()"
)
LISTENERS = (
    b"SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
    b"AND application_name = '" + WORKER_APP.encode() + b"' AND query = 'LISTEN jobkit_jobs'"
)


@pytest.fixture
def worker_config(tmp_path: Path, empty_postgres_url: str) -> Path:
    """jobs.yaml on the emptied PostgreSQL database, its connections named WORKER_APP: a 30 s
    poll, an 8 s lease beaten every 0.5 s (longer than a restart takes), the Sleeper job."""
    return store_config(
        tmp_path,
        f"{empty_postgres_url}?application_name={WORKER_APP}",
        worker={"poll_interval": POLL, "lease": 8.0, "heartbeat": 0.5},
        jobs={"Sleeper": {"class": "fault_jobs:Sleeper"}},
    )


@pytest.fixture
def app(tmp_path: Path, empty_postgres_url: str) -> Iterator[JobKit]:
    """The test's own app on the same database (its connections are not the worker's)."""
    config = make_config(
        tmp_path, storage=empty_postgres_url, jobs={"Sleeper": {"class": "fault_jobs:Sleeper"}}
    )
    with JobKit(config, load_entrypoints=False) as application:
        yield application


@pytest.fixture
def server(postgres_server: PostgresServer, postgres_url: str) -> Iterator[PostgresServer]:
    """The run's server, started again after the test if the test left it down."""
    yield postgres_server
    try:
        psycopg.connect(postgres_url, connect_timeout=5).close()
    except psycopg.OperationalError:
        postgres_server.start()
    psycopg.connect(postgres_url, connect_timeout=10).close()  # later tests need it up


def sql(url: str, query: bytes) -> list[tuple[Any, ...]]:
    """Run one statement on a connection of its own; its rows."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        return conn.execute(query).fetchall()


def terminate_worker_connections(url: str) -> set[int]:
    """pg_terminate_backend every other connection to the database; the pids of the worker's
    (at least one per worker process and the supervisor's, or the test fails)."""
    killed = {pid for pid, name, _ in sql(url, TERMINATE_ALL) if name == WORKER_APP}
    assert len(killed) >= 3, f"only {len(killed)} worker connection(s) to terminate"
    return killed


def listeners(url: str) -> set[int]:
    """The server pids of the worker's connections whose last statement was LISTEN."""
    return {pid for (pid,) in sql(url, LISTENERS)}


def enqueue(app: JobKit, ledger: str, count: int, tag: str) -> list[str]:
    """``count`` Sleeper jobs; their ids."""
    return [
        app.run_background_job("Sleeper", "nap", {"ledger": ledger, "seconds": NAP, "tag": tag})
        for _ in range(count)
    ]


def ended(ledger: str, tag: str = "nap") -> int:
    """How many runs of jobs with ``tag`` got to their end."""
    return sum(1 for entry in read_ledger(ledger) if entry["tag"] == f"{tag}:end")


def goes_on(ledger: str, runs: int = 10) -> Callable[[], bool]:
    """A predicate: ``runs`` more runs have ended since it was made."""
    before = ended(ledger)
    return lambda: ended(ledger) >= before + runs


def check_nothing_lost(app: JobKit, ledger: str, ids: list[str]) -> None:
    """Every job completed and ran to its end; one that ran twice has a lost attempt."""
    runs = Counter(str(e["job"]) for e in read_ledger(ledger) if e["tag"] == "nap:end")
    assert set(runs) == set(ids), f"{len(set(ids) - set(runs))} job(s) never ran to the end"
    for job in ids:
        record = app.get_job(job)
        assert record.status is JobStatus.COMPLETED, record
        if runs[job] > 1:
            outcomes = [attempt.outcome for attempt in app.get_attempts(job)]
            assert AttemptOutcome.LOST in outcomes, (job, runs[job], outcomes)


def check_listen_restored(app: JobKit, url: str, ledger: str, old: set[int]) -> None:
    """Once both worker processes LISTEN on new connections (none of ``old``), a new job is done
    within a few seconds, though they poll only every 30 s."""
    wait_for(
        lambda: len(listeners(url) - old) >= 2,
        timeout=15,
        what="both worker processes to LISTEN on new connections",
    )
    time.sleep(0.5)  # both are inside their 30 s wait now
    started = time.monotonic()
    (job,) = enqueue(app, ledger, 1, "wake")
    wait_for(
        lambda: app.get_job(job).status is JobStatus.COMPLETED,
        timeout=POLL / 2,
        what="the job enqueued after the outage to complete",
    )
    waited = time.monotonic() - started
    assert waited < 5.0, f"picked up after {waited:.1f} s: by polling, not by NOTIFY"


def run_through(
    app: JobKit, worker_config: Path, ledger: str, start_worker: Callable[..., Any]
) -> tuple[Any, set[int], list[str]]:
    """Enqueue JOBS jobs, start `jobkit worker -n 2` and wait until it is under way; the worker,
    its worker processes' pids and the job ids."""
    ids = enqueue(app, ledger, JOBS, "nap")
    worker = start_worker(worker_config, "-n", "2")
    wait_for(lambda: len(worker_pids(worker)) == 2, what="two worker processes")
    wait_for(lambda: ended(ledger) >= 20, what="work to start")
    return worker, worker_pids(worker), ids


def test_terminated_connections_mid_run_lose_nothing_and_listen_again(
    app: JobKit,
    worker_config: Path,
    empty_postgres_url: str,
    ledger: str,
    start_worker: Callable[..., Any],
) -> None:
    """Every connection to the database is killed (pg_terminate_backend) three times while two
    worker processes run 200 jobs, and once more while they wait idle on LISTEN: both processes
    live on, every job completes, and LISTEN is restored (a job enqueued afterwards is done in
    under 5 s with a 30 s poll)."""
    worker, pids, ids = run_through(app, worker_config, ledger, start_worker)
    for _ in range(3):
        terminate_worker_connections(empty_postgres_url)
        wait_for(goes_on(ledger), timeout=20, what="work to go on after the kill")
    assert ended(ledger) < JOBS, "the queue ran dry before the last kill"
    wait_for(
        lambda: app.storage.count(status=JobStatus.COMPLETED) == JOBS,
        timeout=40,
        what="every job to complete",
    )
    check_nothing_lost(app, ledger, ids)
    wait_for(lambda: len(listeners(empty_postgres_url)) >= 2, what="both to LISTEN, idle")
    killed = terminate_worker_connections(empty_postgres_url)
    check_listen_restored(app, empty_postgres_url, ledger, old=killed)
    assert "listen for new jobs failed" in worker.text(), "the LISTEN connection was not hit"
    assert "Traceback" not in worker.text(), "an outage is logged in one line, not a traceback"
    assert worker.process.poll() is None, "the worker exited"
    assert worker_pids(worker) == pids, "a worker process exited"


def test_a_server_restart_mid_run_loses_nothing_and_listens_again(
    app: JobKit,
    worker_config: Path,
    empty_postgres_url: str,
    server: PostgresServer,
    ledger: str,
    start_worker: Callable[..., Any],
) -> None:
    """The server is restarted (pg_ctl restart) while two worker processes run 200 jobs, and
    again while they wait idle on LISTEN: both processes live on, every job completes, and
    LISTEN is restored (a job enqueued afterwards is done in under 5 s with a 30 s poll)."""
    worker, pids, ids = run_through(app, worker_config, ledger, start_worker)
    server.restart()
    assert ended(ledger) < JOBS, "the queue ran dry before the restart"
    wait_for(
        lambda: app.storage.count(status=JobStatus.COMPLETED) == JOBS,
        timeout=40,
        what="every job to complete after the restart",
    )
    check_nothing_lost(app, ledger, ids)
    wait_for(lambda: len(listeners(empty_postgres_url)) >= 2, what="both to LISTEN, idle")
    server.restart()
    check_listen_restored(app, empty_postgres_url, ledger, old=set())
    assert "listen for new jobs failed" in worker.text(), "the LISTEN connection was not hit"
    assert "Traceback" not in worker.text(), "an outage is logged in one line, not a traceback"
    assert worker.process.poll() is None, "the worker exited"
    assert worker_pids(worker) == pids, "a worker process exited"
