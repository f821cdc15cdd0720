"""The real worker: `jobkit worker` processes, leases, signals, timeouts and cancellation."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for, write_config
from sample_jobs import read_ledger

from jobkit import AttemptOutcome, JobKit, JobStatus

pytestmark = pytest.mark.slow


def status_of(app: JobKit, job_id: str) -> JobStatus:
    return app.get_job(job_id).status


class TestBurst:
    def test_runs_everything_in_priority_order_and_logs(
        self, tmp_path: Path, ledger: str, start_worker: Any
    ) -> None:
        """--burst with one process runs every job by priority, logs events and errors, exits 0."""
        config = write_config(
            tmp_path, jobs={"Recorder": {"class": "sample_jobs:Recorder", "retry_attempts": 1}}
        )
        with JobKit.from_config(config, load_entrypoints=False) as app:
            for i, priority in enumerate([0, 9, 5, 9, 1]):
                app.run_background_job(
                    "Recorder", "record", {"ledger": ledger, "tag": f"t{i}"}, priority=priority
                )
            failing = app.run_background_job(
                "Recorder", "fail", {"ledger": ledger, "tag": "f"}, priority=-1
            )
            code, out = start_worker(config, "--concurrency", "1", "--burst").wait()
            assert code == 0, out
            assert [e["tag"] for e in read_ledger(ledger)] == [
                "t1",
                "t3",
                "t2",
                "t4",
                "t0",
                "f",
                "f",
            ]
            assert app.get_job(failing).status == JobStatus.FAILED
            assert app.get_job(failing).attempts == 2
        events = (tmp_path / "logs" / "background_jobs.log").read_text()
        errors = (tmp_path / "logs" / "background_jobs_errors.log").read_text()
        assert events.count("event=succeeded") == 5
        assert f"job_id={failing} " in errors and "RuntimeError: planned failure 2" in errors
        assert "  | Traceback" in errors

    def test_two_processes_share_the_work(
        self, tmp_path: Path, ledger: str, start_worker: Any
    ) -> None:
        """--concurrency 2 runs each job exactly once across two processes."""
        config = write_config(tmp_path)
        with JobKit.from_config(config, load_entrypoints=False) as app:
            for i in range(40):
                app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": str(i)})
            code, out = start_worker(config, "-n", "2", "--burst").wait()
            assert code == 0, out
            assert app.storage.count(status=JobStatus.COMPLETED) == 40
        entries = read_ledger(ledger)
        assert sorted(int(e["tag"]) for e in entries) == list(range(40))


    def test_the_supervisor_checkpoints_the_wal(
        self, tmp_path: Path, ledger: str, start_worker: Any
    ) -> None:
        """Commits leave the WAL to the supervisor's housekeep: after a burst the jobs are in
        the database file itself, although no commit crossed WAL_AUTOCHECKPOINT pages."""
        config = write_config(tmp_path)
        with JobKit.from_config(config, load_entrypoints=False) as app:
            for i in range(300):
                app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": str(i)})
            database = tmp_path / "jobkit.db"
            assert database.stat().st_size < 64 * 1024  # all in the WAL so far
            code, out = start_worker(config, "--burst").wait()
            assert code == 0, out
            assert database.stat().st_size > 64 * 1024
            assert app.storage.count(status=JobStatus.COMPLETED) == 300


class TestWorkerList:
    def test_processes_are_listed_while_they_run(
        self, tmp_path: Path, start_worker: Any
    ) -> None:
        """A running worker lists its processes in the store (host, pid, seen every second);
        they leave the list when the worker stops."""
        config = write_config(tmp_path)
        with JobKit.from_config(config, load_entrypoints=False) as app:
            worker = start_worker(config, "-n", "2")
            wait_for(lambda: len(app.storage.list_workers()) == 2, what="two listed processes")
            listed = app.storage.list_workers()
            # the supervisor's children: its worker processes (and spawn's resource tracker)
            assert {w.pid for w in listed} <= {child.pid for child in worker.children()}
            assert {w.supervisor_pid for w in listed} == {worker.pid}
            first_seen = {w.worker_id: w.last_seen_at for w in listed}
            wait_for(lambda: all(w.last_seen_at > first_seen[w.worker_id]
                                 for w in app.storage.list_workers()), what="a beat")
            worker.process.send_signal(signal.SIGTERM)
            code, out = worker.wait()
            assert code == 0, out
            assert app.storage.list_workers() == []

    def test_a_store_that_fails_never_stops_the_roster(self) -> None:
        """The roster (and the supervisor's upkeep) only log a store that is down, even when
        reading its clock fails (PostgreSQL's clock is a query)."""
        from jobkit.exceptions import StorageError
        from jobkit.storage.memory import MemoryStorage
        from jobkit.worker.roster import Roster

        class Down(MemoryStorage):
            def now(self) -> Any:
                raise StorageError("the server is down")

        roster = Roster(lambda: Down())
        assert roster.joined("w:1", 1) is False  # not listed: the supervisor tries again
        roster.beat(["w:1"])
        roster.left("w:1")

    def test_throughput_counts_every_attempt(
        self, tmp_path: Path, ledger: str, start_worker: Any
    ) -> None:
        """The processes report how their attempts ended; the supervisor adds them up per
        minute in the store, the last ones too when a burst ends."""
        config = write_config(tmp_path)
        with JobKit.from_config(config, load_entrypoints=False) as app:
            app.enqueue_many("Recorder", "record",
                             [{"ledger": ledger, "tag": str(n)} for n in range(30)])
            for _ in range(3):
                app.run_background_job("Recorder", "fail", {"ledger": ledger})
            since = app.storage.now() - timedelta(minutes=5)
            code, out = start_worker(config, "-n", "2", "--burst").wait()
            assert code == 0, out
            counted = app.storage.throughput(since)
            assert sum(ok for _, ok, _ in counted) == 30
            assert sum(bad for _, _, bad in counted) == 3


class TestLeases:
    def test_killed_worker_process_job_is_claimed_again(
        self, tmp_path: Path, ledger: str, start_worker: Any
    ) -> None:
        """A job whose worker process was SIGKILLed runs again after its lease expires."""
        config = write_config(tmp_path, defaults={"retry_attempts": 1})
        with JobKit.from_config(config, load_entrypoints=False) as app:
            job_id = app.run_background_job("Slow", "slow_first", {"seconds": 60, "ledger": ledger})
            start_worker(config, "-n", "1")
            wait_for(lambda: status_of(app, job_id) == JobStatus.RUNNING, what="running")
            worker_pid = int((app.get_job(job_id).worker_id or "").split(":")[1])
            os.kill(worker_pid, signal.SIGKILL)
            wait_for(
                lambda: status_of(app, job_id) == JobStatus.COMPLETED,
                timeout=20,
                what="completed after re-claim",
            )
            record = app.get_job(job_id)
            first, second = app.get_attempts(job_id)
        assert record.attempts == 2 and record.result == 2
        assert first.outcome == AttemptOutcome.LOST and "lease expired" in (first.error or "")
        assert second.outcome == AttemptOutcome.SUCCEEDED
        assert second.worker_id != first.worker_id


class TestSignals:
    def test_sigterm_lets_the_running_job_finish(
        self, tmp_path: Path, ledger: str, start_worker: Any
    ) -> None:
        """SIGTERM: no new claims, the running job finishes, exit 0."""
        config = write_config(tmp_path)
        with JobKit.from_config(config, load_entrypoints=False) as app:
            running = app.run_background_job(
                "Recorder", "sleep", {"seconds": 1.0, "ledger": ledger}, priority=5
            )
            waiting = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "w"})
            worker = start_worker(config, "-n", "1")
            wait_for(lambda: status_of(app, running) == JobStatus.RUNNING, what="running")
            worker.process.send_signal(signal.SIGTERM)
            code, out = worker.wait()
            assert code == 0, out
            assert app.get_job(running).status == JobStatus.COMPLETED
            assert app.get_job(waiting).status == JobStatus.PENDING

    def test_stops_after_a_worker_process_was_killed_while_idle(
        self, tmp_path: Path, start_worker: Any
    ) -> None:
        """A worker process SIGKILLed while waiting does not stop the others from stopping."""
        import psutil

        config = write_config(tmp_path)
        worker = start_worker(config, "-n", "2")
        wait_for(
            lambda: len(psutil.Process(worker.process.pid).children()) >= 2,
            what="two worker processes",
        )
        time.sleep(0.5)  # both idle, waiting for work
        victim, survivor = psutil.Process(worker.process.pid).children()[:2]
        victim.kill()
        time.sleep(0.3)
        worker.process.send_signal(signal.SIGTERM)
        code, out = worker.wait(timeout=15)
        assert code == 0, out
        assert not survivor.is_running() or survivor.status() == psutil.STATUS_ZOMBIE

    def test_job_longer_than_grace_is_handed_back(
        self, tmp_path: Path, ledger: str, start_worker: Any
    ) -> None:
        """After the grace period a running job is handed back, uncounted; exit 0."""
        config = write_config(tmp_path, worker={"shutdown_grace": 0.3})
        with JobKit.from_config(config, load_entrypoints=False) as app:
            job_id = app.run_background_job("Recorder", "sleep", {"seconds": 30})
            worker = start_worker(config, "-n", "1")
            wait_for(lambda: status_of(app, job_id) == JobStatus.RUNNING, what="running")
            started = time.monotonic()
            worker.process.send_signal(signal.SIGTERM)
            code, out = worker.wait()
            assert code == 0, out
            assert time.monotonic() - started < 0.3 + 0.5 + 5
            record = app.get_job(job_id)
            (attempt,) = app.get_attempts(job_id)
        assert (record.status, record.attempts) == (JobStatus.PENDING, 0)
        assert attempt.outcome == AttemptOutcome.HANDED_BACK


class TestStopping:
    def test_timeout_kills_a_job_that_ignores_interrupts(
        self, tmp_path: Path, ledger: str, start_worker: Any
    ) -> None:
        """A job that ignores its timeout is ended with its process; the worker goes on."""
        config = write_config(
            tmp_path, jobs={"Recorder": {"class": "sample_jobs:Recorder", "timeout": 0.5}}
        )
        with JobKit.from_config(config, load_entrypoints=False) as app:
            stuck = app.run_background_job("Recorder", "stubborn", {"seconds": 60}, priority=1)
            after = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "a"})
            start_worker(config, "-n", "1")
            wait_for(
                lambda: status_of(app, after) == JobStatus.COMPLETED,
                timeout=20,
                what="the next job",
            )
            record = app.get_job(stuck)
            (attempt,) = app.get_attempts(stuck)
        assert record.status == JobStatus.FAILED and attempt.outcome == AttemptOutcome.TIMEOUT

    def test_timeout_kills_a_job_stuck_in_c_code(
        self, tmp_path: Path, ledger: str, start_worker: Any
    ) -> None:
        """A job holding the GIL in C code past its timeout is killed by the supervisor."""
        config = write_config(
            tmp_path,
            jobs={"Recorder": {"class": "sample_jobs:Recorder", "timeout": 0.5}},
            worker={"lease": 30.0},  # the timeout, not the lease, must end it
        )
        with JobKit.from_config(config, load_entrypoints=False) as app:
            stuck = app.run_background_job("Recorder", "busy_in_c", {"n": 10**12}, priority=1)
            after = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "a"})
            start_worker(config, "-n", "1")
            wait_for(
                lambda: status_of(app, after) == JobStatus.COMPLETED,
                timeout=30,
                what="the next job",
            )
            record = app.get_job(stuck)
            (attempt,) = app.get_attempts(stuck)
        assert record.status == JobStatus.FAILED and attempt.outcome == AttemptOutcome.TIMEOUT

    def test_jobs_that_kill_their_process_do_not_stop_the_worker(
        self, tmp_path: Path, ledger: str, start_worker: Any
    ) -> None:
        """Jobs that abort their process are failed by lease expiry; the worker keeps going."""
        config = write_config(tmp_path, worker={"lease": 1.0, "heartbeat": 0.1})
        with JobKit.from_config(config, load_entrypoints=False) as app:
            aborts = [app.run_background_job("Recorder", "abort", priority=1) for _ in range(6)]
            after = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "a"})
            worker = start_worker(config, "-n", "1")
            wait_for(
                lambda: status_of(app, after) == JobStatus.COMPLETED,
                timeout=60,
                what="the job after the aborting ones",
            )
            assert worker.process.poll() is None, worker.text()
            wait_for(
                lambda: all(status_of(app, j) == JobStatus.FAILED for j in aborts),
                timeout=20,
                what="every aborting job to fail",
            )

    def test_cancel_stops_a_running_job_within_two_seconds(
        self, tmp_path: Path, ledger: str, start_worker: Any
    ) -> None:
        """cancel_job on a running job stops it and frees the worker within 2 s."""
        config = write_config(tmp_path)
        with JobKit.from_config(config, load_entrypoints=False) as app:
            job_id = app.run_background_job("Recorder", "sleep", {"seconds": 60, "ledger": ledger})
            start_worker(config, "-n", "1")
            wait_for(lambda: status_of(app, job_id) == JobStatus.RUNNING, what="running")
            assert app.cancel_job(job_id) is True
            cancelled_at = time.monotonic()
            next_job = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "n"})
            wait_for(
                lambda: status_of(app, next_job) == JobStatus.COMPLETED,
                timeout=10,
                what="the next job",
            )
            freed = time.monotonic() - cancelled_at
            (attempt,) = app.get_attempts(job_id)
            assert app.get_job(job_id).status == JobStatus.CANCELLED
        assert attempt.outcome == AttemptOutcome.CANCELLED
        assert [e["tag"] for e in read_ledger(ledger)] == ["start", "n"]  # the sleep never ended
        assert freed < 2.5  # stopped within 2 s, plus the next job's pick-up
