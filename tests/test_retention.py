"""``retention:``: its configuration, the worker's background deletion, and ``jobkit prune``."""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import make_config, wait_for, write_config

from jobkit import ConfigError, JobKit, JobStatus
from jobkit.config import Config, Retention, load_config
from jobkit.exceptions import JobNotFoundInStorage
from jobkit.records import AttemptOutcome, JobLogLine, Lease, NewJob, RetryPolicy
from jobkit.storage import SQLiteStorage
from jobkit.storage.capabilities import job_logs_of
from jobkit.testing import FakeClock
from jobkit.worker import run_until_empty
from jobkit.worker.retention import Retainer
from jobkit.worker.supervisor import Worker

DAY = 86400.0


class TestConfig:
    def test_defaults_keep_every_status_14_days(self) -> None:
        """Without retention:, completed, failed and cancelled jobs are kept 14 days."""
        assert Config().retention == Retention(14 * DAY, 14 * DAY, 14 * DAY)
        assert Config().retention.describe() == "completed 14d, failed 14d, cancelled 14d"

    def test_durations_and_forever(self, tmp_path: Path) -> None:
        """Each status takes a duration (s, m, h, d, w) or forever; others keep 14 days."""
        path = tmp_path / "jobs.yaml"
        path.write_text("retention:\n  completed: 7d\n  failed: forever\n")
        retention = load_config(path, environ={}).retention
        assert retention == Retention(completed=7 * DAY, failed=math.inf, cancelled=14 * DAY)
        assert Config.from_dict({"retention": {"cancelled": "2w"}}).retention.cancelled == 14 * DAY
        assert Config.from_dict({"retention": {"cancelled": "90m"}}).retention.cancelled == 5400
        assert Config.from_dict({"retention": {"cancelled": "1.5h"}}).retention.cancelled == 5400

    def test_the_environment_sets_it(self) -> None:
        """JOBKIT_RETENTION__<STATUS> overrides the file's value."""
        config = load_config(None, environ={"JOBKIT_RETENTION__FAILED": "30d"})
        assert config.retention.failed == 30 * DAY
        with pytest.raises(ConfigError, match="environment JOBKIT_RETENTION__FAILED: expected"):
            load_config(None, environ={"JOBKIT_RETENTION__FAILED": "a month"})

    def test_errors_name_the_file_line_and_key(self, tmp_path: Path) -> None:
        """Bad values and keys are ConfigErrors naming file, line and key, all at once."""
        path = tmp_path / "jobs.yaml"
        path.write_text("storage: memory://\nretention:\n  completed: 7 days\n  failed: 0s\n"
                        "  canceled: 7d\n  pending: 1d\n")
        with pytest.raises(ConfigError) as caught:
            load_config(path, environ={})
        errors = caught.value.errors
        assert errors[0].startswith(f"{path}:3: retention.completed: expected a duration like 7d")
        assert "got '7 days'" in errors[0]
        assert errors[1].startswith(f"{path}:4: retention.failed: expected a duration")
        assert errors[2] == f"{path}:5: retention.canceled: unknown key (did you mean 'cancelled'?)"
        assert errors[3].startswith(f"{path}:6: retention.pending: unknown key")
        for value in ("forever!", None, True, -5, "200y", "5300w", math.nan):
            with pytest.raises(ConfigError, match=r"retention\.completed: expected"):
                Config.from_dict({"retention": {"completed": value}})
        with pytest.raises(ConfigError, match="retention: expected a mapping"):
            Config.from_dict({"retention": "7d"})

    def test_cutoffs_leave_out_forever(self) -> None:
        """A status kept forever has no cutoff; the others are now less their retention."""
        now = FakeClock()()
        cutoffs = Retention(completed=60, failed=math.inf, cancelled=DAY).cutoffs(now)
        assert cutoffs == {JobStatus.COMPLETED: now - timedelta(seconds=60),
                           JobStatus.CANCELLED: now - timedelta(days=1)}


def finished(store: SQLiteStorage, outcome: AttemptOutcome, count: int = 1) -> list[str]:
    """``count`` jobs claimed and settled with ``outcome`` (a log line each); their ids."""
    ids = []
    for _ in range(count):
        store.enqueue(NewJob(name="Email", method="send", params={}, priority=0, max_attempts=1,
                             policy=RetryPolicy(), available_at=None))
        record = store.claim("test:1", 30)
        assert record is not None
        job_logs_of(store).add_job_logs(record.id, [JobLogLine(1, store.now(), "INFO", "hi")])
        store.settle(Lease(record.id, "test:1", record.attempts), outcome, result=None,
                     error="boom" if outcome is AttemptOutcome.FAILED else None)
        ids.append(record.id)
    return ids


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[SQLiteStorage]:
    with SQLiteStorage(str(tmp_path / "jobkit.db"), clock=clock) as storage:
        yield storage


class TestRetainer:
    def test_a_pass_deletes_what_each_status_no_longer_keeps(
        self, store: SQLiteStorage, clock: FakeClock, tmp_path: Path
    ) -> None:
        """Jobs older than their status's retention go, with attempts and log lines."""
        old_done = finished(store, AttemptOutcome.SUCCEEDED, 3)
        old_failed = finished(store, AttemptOutcome.FAILED, 2)
        clock.advance(2 * DAY)
        new_done = finished(store, AttemptOutcome.SUCCEEDED)
        cancelled = store.enqueue(NewJob(name="Email", method="send", params={}, priority=0,
                                         max_attempts=1, policy=RetryPolicy(), available_at=None))
        store.cancel(cancelled.id)
        waiting = store.enqueue(NewJob(name="Email", method="send", params={}, priority=0,
                                       max_attempts=1, policy=RetryPolicy(), available_at=None))
        clock.advance(DAY / 2)
        retainer = Retainer(lambda: store, Retention(completed=DAY, failed=math.inf,
                                                     cancelled=60), batch_size=2, pause=0)
        assert retainer.run_once() == 4
        for job_id in [*old_done, cancelled.id]:
            with pytest.raises(JobNotFoundInStorage):
                store.get(job_id)
        with sqlite3.connect(tmp_path / "jobkit.db") as conn:
            for table in ("jobkit_attempts", "jobkit_job_logs"):
                (left,) = conn.execute(f"SELECT group_concat(DISTINCT job_id) FROM {table}"
                                       ).fetchone()
                assert sorted(left.split(",")) == sorted([*old_failed, *new_done]), table
        assert sorted(r.id for r in store.list()) == sorted([*old_failed, *new_done, waiting.id])
        assert retainer.run_once() == 0

    def test_it_pauses_between_batches_and_stops_between_them(
        self, store: SQLiteStorage, clock: FakeClock
    ) -> None:
        """Between two batches it waits (here 0.2 s); a stop ends the pass after a batch."""
        finished(store, AttemptOutcome.SUCCEEDED, 6)
        clock.advance(2 * DAY)
        retainer = Retainer(lambda: store, Retention(completed=DAY), batch_size=2, pause=0.2,
                            first_pass=0)
        retainer.start()
        wait_for(lambda: store.count() == 4, what="the first batch")
        retainer.stop()  # during the pause after the first batch
        assert store.count() == 4, "the pass stopped after its first batch"

    def test_a_slow_batch_gets_a_longer_pause(self, store: SQLiteStorage) -> None:
        """After a batch the pass waits 19 times as long as the batch took (5 % of the time)."""
        retainer = Retainer(lambda: store, Retention(), pause=0.05)
        waits: list[float] = []

        class Event:
            def wait(self, timeout: float) -> bool:
                waits.append(timeout)
                return False

        retainer._stop = Event()  # type: ignore[assignment]
        for took in (0.1, 0.001):
            retainer._batch_started = time.monotonic() - took
            retainer._between_batches(0)
        assert 1.9 <= waits[0] < 2.5
        assert waits[1] == 0.05

    def test_forever_everywhere_starts_no_thread(self, store: SQLiteStorage) -> None:
        """With every status kept forever there is nothing to do: no thread."""
        retainer = Retainer(lambda: store, Retention(math.inf, math.inf, math.inf), first_pass=0)
        retainer.start()
        assert not any(t.name == "jobkit-retention" for t in threading.enumerate())
        retainer.stop()

    def test_a_store_error_is_logged_and_the_thread_goes_on(
        self, store: SQLiteStorage, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A pass that fails (the store is down) is logged; the next pass runs."""
        from jobkit.exceptions import StorageError

        finished(store, AttemptOutcome.SUCCEEDED, 1)
        clock.advance(2 * DAY)
        calls: list[int] = []
        real = store.prune

        def flaky(*args: Any, **kwargs: Any) -> int:
            calls.append(1)
            if len(calls) == 1:
                raise StorageError("the store is down")
            return real(*args, **kwargs)

        monkeypatch.setattr(store, "prune", flaky)
        retainer = Retainer(lambda: store, Retention(completed=DAY), first_pass=0,
                            interval=0.05)
        retainer.start()
        try:
            wait_for(lambda: store.count() == 0, what="the second pass")
        finally:
            retainer.stop()


@pytest.mark.slow
def test_a_worker_deletes_old_jobs_while_it_runs(tmp_path: Path, ledger: str) -> None:
    """A running worker's supervisor deletes expired jobs in the background.

    Jobs that finished two days ago go (retention 1d) while the worker runs a new one; the new
    one, and the failed one (kept forever), stay."""
    config = write_config(tmp_path, retention={"completed": "1d", "failed": "forever"})
    past = FakeClock(datetime.now(timezone.utc) - timedelta(days=2))
    store = SQLiteStorage(str(tmp_path / "jobkit.db"), clock=past)
    with JobKit(make_config(tmp_path), storage=store, load_entrypoints=False) as then:
        old = [then.run_background_job("Recorder", "record", {"ledger": ledger, "tag": str(n)})
               for n in range(3)]
        failing = then.run_background_job("Recorder", "fail", {"ledger": ledger, "tag": "f"})
        run_until_empty(then, timeout=15)
    with JobKit.from_config(config, load_entrypoints=False) as app:
        new = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "new"})
        worker = Worker(JobKit.from_config(config, load_entrypoints=False), concurrency=1)
        worker.retainer.first_pass = 0
        thread = threading.Thread(target=worker.run, kwargs={"install_signals": False})
        thread.start()
        try:
            wait_for(lambda: app.storage.count() == 2, timeout=30, what="the old jobs to go")
            wait_for(lambda: app.get_job(new).status == JobStatus.COMPLETED, what="the new job")
        finally:
            worker.request_stop()
            thread.join(30)
        assert sorted(r.id for r in app.list_jobs()) == sorted([failing, new])
        for job_id in old:
            with pytest.raises(JobNotFoundInStorage):
                app.get_job(job_id)


def test_prune_command_still_prunes(tmp_path: Path) -> None:
    """`jobkit prune` stays for one-off use alongside retention."""
    from click.testing import CliRunner

    from jobkit.cli import main

    config = write_config(tmp_path, retention={"completed": "forever"})
    with JobKit(make_config(tmp_path), load_entrypoints=False) as app:
        app.storage.cancel(app.run_background_job("Recorder", "record", ["l", "t"]))
    time.sleep(0.01)
    result = CliRunner().invoke(main, ["--config", str(config), "prune", "--older-than", "0s"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("deleted 1 finished job(s)")
