"""Named queues end to end, with real workers on SQLite and PostgreSQL.

jobs.yaml and calls name a job's queue, a worker takes only its queues, and a pause kept in the
store stops every worker process at once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import jobkit_process, make_config, wait_for, write_config

from jobkit import JobKit, JobStatus
from jobkit.cli import main
from jobkit.exceptions import ConfigError, StorageError
from jobkit.testing.coreonly import CoreOnlyStorage

pytestmark = pytest.mark.slow

QUEUED = {"Recorder": {"class": "sample_jobs:Recorder", "queue": "mail"},
          "Slow": {"class": "sample_jobs:Slow"}}


def statuses(app: JobKit, ids: list[str]) -> list[str]:
    """The status of each job, in order."""
    return [str(app.get_job(job_id).status) for job_id in ids]


class TestNamingAQueue:
    def test_the_job_setting_and_the_call_name_the_queue(self, tmp_path: Path,
                                                         ledger: str) -> None:
        """``queue:`` of the job, else ``default``; ``queue=`` of a call wins, also in a batch."""
        with JobKit(make_config(tmp_path, jobs=QUEUED), load_entrypoints=False) as app:
            mail = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "a"})
            slow = app.run_background_job("Slow", "slow_first", {"seconds": 0})
            urgent = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "b"},
                                            queue="urgent")
            many = app.enqueue_many("Slow", "slow_first", [{"seconds": 0}] * 2, queue="bulk")
            assert [app.get_job(i).queue for i in (mail, slow, urgent, *many)] == [
                "mail", "default", "urgent", "bulk", "bulk"]

    def test_a_bad_queue_name_is_refused_where_it_is_written(self, tmp_path: Path,
                                                             ledger: str) -> None:
        """In jobs.yaml the error names the file, line and key; in a call, nothing is stored."""
        config = write_config(tmp_path, jobs={"Recorder": {"class": "sample_jobs:Recorder",
                                                           "queue": "two words"}})
        with pytest.raises(ConfigError) as info:
            JobKit.from_config(str(config), load_entrypoints=False)
        assert "jobs.yaml:" in str(info.value) and "jobs.Recorder.queue" in str(info.value)
        assert "expected a queue name" in str(info.value)
        with JobKit(make_config(tmp_path), load_entrypoints=False) as app:
            for bad in ("", "a b", "-x", 5, "x" * 65):
                with pytest.raises(ConfigError, match="call: queue: expected a queue name"):
                    app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "x"},
                                           queue=bad)  # type: ignore[arg-type]
            assert app.storage.count() == 0


class TestWorkersAndQueues:
    def test_a_worker_takes_only_the_queues_it_is_given(
        self, tmp_path: Path, ledger: str
    ) -> None:
        """``--queues mail,urgent`` runs those queues' jobs and leaves the others pending."""
        config = write_config(tmp_path, jobs=QUEUED)
        with JobKit.from_config(str(config), load_entrypoints=False) as app:
            mail = [app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "m"})
                    for _ in range(3)]
            urgent = app.run_background_job("Slow", "slow_first", {"seconds": 0}, queue="urgent")
            other = app.run_background_job("Slow", "slow_first", {"seconds": 0})
        done = jobkit_process(tmp_path, "--config", str(config), "worker", "-n", "2", "--burst",
                              "--queues", "mail,urgent")
        assert done.returncode == 0, done.stderr
        with JobKit.from_config(str(config), load_entrypoints=False) as app:
            assert statuses(app, [*mail, urgent]) == ["completed"] * 4
            assert statuses(app, [other]) == ["pending"]
        done = jobkit_process(tmp_path, "--config", str(config), "worker", "-n", "1", "--burst")
        assert done.returncode == 0, done.stderr
        with JobKit.from_config(str(config), load_entrypoints=False) as app:
            assert statuses(app, [other]) == ["completed"]

    def test_an_unknown_queue_is_warned_about_and_a_bad_name_refused(
        self, tmp_path: Path
    ) -> None:
        """A queue no job uses and the store does not know is named in a warning at start."""
        config = write_config(tmp_path, jobs=QUEUED)
        done = jobkit_process(tmp_path, "--config", str(config), "worker", "-n", "1", "--burst",
                              "--queues", "mial")
        assert done.returncode == 0, done.stderr
        assert "queue 'mial' of --queues is no registered job's queue" in done.stderr
        assert "known: default, mail" in done.stderr
        done = jobkit_process(tmp_path, "--config", str(config), "worker", "--queues", "a b")
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert "Invalid value for --queues: expected a queue name" in done.stderr

    def test_a_store_without_queues_refuses_them(self) -> None:
        """A core-only store runs jobs of every queue, but cannot narrow or pause them."""
        from jobkit.flow import Flow
        from jobkit.storage.capabilities import complete_and_claim_many, flow_store
        from jobkit.storage.memory import MemoryStorage
        from jobkit.testing.conformance import new_job

        store = CoreOnlyStorage(MemoryStorage())
        with pytest.raises(StorageError, match="has no 'flow' capability"):
            complete_and_claim_many(store, [], "w1", 30.0, 1, Flow(["mail"]))
        with pytest.raises(StorageError, match="cannot enforce job Email: concurrency limit 2: "
                                               "storage CoreOnlyStorage has no 'flow'"):
            from jobkit.flow import Limit

            complete_and_claim_many(store, [], "w1", 30.0, 1,
                                    Flow(limits=[Limit("job", "Email", "concurrency", 2)]))
        with pytest.raises(StorageError, match="cannot pause a queue: storage CoreOnlyStorage"):
            flow_store(store, "pause a queue")
        job = store.enqueue(new_job(store.now()))
        _, [claimed] = complete_and_claim_many(store, [], "w1", 30.0, 1, Flow())
        assert claimed.id == job.id


@pytest.fixture(params=["sqlite", "postgresql"])
def store_config(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """jobs.yaml's overrides for a store of each backend (PostgreSQL: a fresh database)."""
    if request.param == "sqlite":
        return {}
    url = request.getfixturevalue("empty_postgres_url")
    return {"storage": url}


class TestPause:
    def test_a_pause_stops_every_worker_process_and_a_resume_lets_them_go_on(
        self, tmp_path: Path, ledger: str, store_config: dict[str, Any],
        start_worker: Callable[..., Any],
    ) -> None:
        """After a pause commits, no worker process starts a job of the queue; resumed, all run.

        Two workers of two processes each run 50 ms jobs. After the pause no attempt of the
        queue starts (the store's times), its jobs wait with no attempt spent and the other
        queue goes on; after the resume every job completes, each once."""
        config = write_config(tmp_path, **store_config, jobs=QUEUED)
        with JobKit.from_config(str(config), load_entrypoints=False) as app:
            ids = app.enqueue_many("Recorder", "sleep",
                                   [{"seconds": 0.05, "ledger": ledger}] * 120)
            workers = [start_worker(config, "-n", "2") for _ in range(2)]
            wait_for(lambda: app.storage.count(status=JobStatus.COMPLETED) >= 10, timeout=60,
                     what="the first jobs to complete")
            assert app.pause_queue("mail") is True
            paused_at = app.storage.now()
            time.sleep(1.0)
            started = [a.started_at for job_id in ids for a in app.get_attempts(job_id)]
            assert started and max(started) <= paused_at
            waiting = [app.get_job(job_id) for job_id in ids
                       if app.get_job(job_id).status is JobStatus.PENDING]
            assert len(waiting) > 20, "the queue was drained before the pause"
            assert all(job.attempts == 0 for job in waiting)
            other = app.run_background_job("Slow", "slow_first", {"seconds": 0})
            wait_for(lambda: app.get_job(other).status is JobStatus.COMPLETED, timeout=30,
                     what="a job of another queue to run during the pause")
            assert app.resume_queue("mail") is True
            wait_for(lambda: app.storage.count(status=JobStatus.COMPLETED) == 121, timeout=90,
                     what="every job to complete after the resume")
            assert all(len(app.get_attempts(job_id)) == 1 for job_id in ids)
            assert all(worker.process.poll() is None for worker in workers)


class TestCommands:
    def test_queues_pause_and_resume(self, tmp_path: Path, ledger: str) -> None:
        """`jobkit run --queue`, `jobkit queues` (table and JSON), `queue pause|resume`."""
        config = write_config(tmp_path, jobs=QUEUED,
                              queues={"reports": {"concurrency": 1, "rate_limit": "30/m"}})
        runner = CliRunner()

        def cli(*args: str) -> Any:
            return runner.invoke(main, ["--config", str(config), *args])

        assert cli("queues").stdout.splitlines()[1].split() == [
            "reports", "active", "0", "0", "0", "concurrency", "1,", "rate", "30/m"]
        ran = cli("run", "Recorder", "record", "-p", f"ledger={ledger}", "-p", "tag=x",
                  "--queue", "urgent")
        assert ran.exit_code == 0, ran.output
        assert cli("queue", "pause", "reports").stdout == "queue reports paused\n"
        assert cli("queue", "pause", "reports").stdout == "queue reports was paused already\n"
        table = cli("queues").stdout.splitlines()
        assert table[0].split() == ["queue", "state", "waiting", "running", "done/min",
                                    "limits"]
        assert [line.split() for line in table[1:]] == [
            ["reports", "paused", "0", "0", "0", "concurrency", "1,", "rate", "30/m"],
            ["urgent", "active", "1", "0", "0", "-"]]
        rows = [json.loads(line) for line in cli("queues", "--json").stdout.splitlines()]
        assert rows[1] == {"name": "urgent", "paused": False, "waiting": 1, "running": 0,
                           "done_last_minute": 0, "limits": None}
        assert rows[0]["limits"] == "concurrency 1, rate 30/m"
        job_id = ran.stdout.strip()
        assert cli("queue", "pause", "urgent").exit_code == 0
        assert "          waiting: queue urgent is paused" in cli("status", job_id).stdout
        assert json.loads(cli("status", job_id, "--json").stdout)["waiting"] == (
            "queue urgent is paused")
        cli("queue", "resume", "urgent")
        assert "waiting: due: waiting for a free worker" in cli("status", job_id).stdout
        assert cli("queue", "resume", "reports").stdout == "queue reports resumed\n"
        assert cli("queue", "resume", "reports").stdout == "queue reports was not paused\n"
        bad = cli("queue", "pause", "a b")
        assert bad.exit_code != 0 and "expected a queue name" in bad.output
        assert "Traceback" not in bad.output
