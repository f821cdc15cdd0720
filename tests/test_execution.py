"""Running jobs in-process (run_until_empty): order, delays, retries, outcomes and hooks."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from conftest import make_config, wait_for, write_config
from sample_jobs import read_ledger

from jobkit import AttemptOutcome, EventKind, Job, JobEvent, JobKit, JobStatus, hookimpl
from jobkit.notify import Notifier
from jobkit.records import RetryPolicy
from jobkit.retries import retry_delay
from jobkit.transitions import Transitions
from jobkit.worker import run_until_empty
from jobkit.worker.executor import Executor
from jobkit.worker.interrupt import Interrupter
from jobkit.worker.journal import Journal, read_journal


def tags(ledger: str) -> list[str]:
    return [entry["tag"] for entry in read_ledger(ledger)]


class TestOrder:
    def test_highest_priority_first_then_fifo(self, app: JobKit, ledger: str) -> None:
        """Jobs run by priority, highest first; equal priorities in enqueue order."""
        for tag, priority in [("a", 1), ("b", 5), ("c", 3), ("d", 5), ("e", 1)]:
            app.run_background_job(
                "Recorder", "record", {"ledger": ledger, "tag": tag}, priority=priority
            )
        run_until_empty(app)
        assert tags(ledger) == ["b", "d", "c", "a", "e"]

    def test_job_priority_from_config_and_call(self, tmp_path: Path, ledger: str) -> None:
        """The job's configured priority is its default; the call overrides it."""
        config = make_config(
            tmp_path, jobs={"Recorder": {"class": "sample_jobs:Recorder", "priority": 7}}
        )
        with JobKit(config, load_entrypoints=False) as app:
            a = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "a"})
            b = app.run_background_job(
                "Recorder", "record", {"ledger": ledger, "tag": "b"}, priority=9
            )
            assert (app.get_job(a).priority, app.get_job(b).priority) == (7, 9)

    def test_delay_is_respected(self, app: JobKit, ledger: str) -> None:
        """A delayed job never starts before its delay is over, and later jobs overtake it."""
        late = app.run_background_job(
            "Recorder", "record", {"ledger": ledger, "tag": "late"}, delay=0.3, priority=10
        )
        app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "now"})
        run_until_empty(app)
        record = app.get_job(late)
        assert tags(ledger) == ["now", "late"]
        assert record.started_at is not None
        assert (record.started_at - record.created_at).total_seconds() >= 0.3

    def test_timedelta_delay(self, app: JobKit, ledger: str) -> None:
        """delay accepts a timedelta."""
        from datetime import timedelta

        job_id = app.run_background_job(
            "Recorder", "record", {"ledger": ledger, "tag": "x"}, delay=timedelta(minutes=5)
        )
        record = app.get_job(job_id)
        assert (record.available_at - record.created_at).total_seconds() == pytest.approx(
            300, abs=1
        )


class TestRetries:
    def test_per_job_retry_attempts_from_yaml(self, tmp_path: Path, ledger: str) -> None:
        """jobs.<name>.retry_attempts overrides the defaults: exact attempt count and gaps."""
        config = make_config(
            tmp_path,
            jobs={
                "Recorder": {
                    "class": "sample_jobs:Recorder",
                    "retry_attempts": 2,
                    "retry_delay": 0.15,
                }
            },
        )
        with JobKit(config, load_entrypoints=False) as app:
            job_id = app.run_background_job("Recorder", "fail", {"ledger": ledger})
            run_until_empty(app)
            record = app.get_job(job_id)
            attempts = app.get_attempts(job_id)
        assert record.status == JobStatus.FAILED
        assert record.attempts == 3 and len(read_ledger(ledger)) == 3
        assert "planned failure 3" in (record.error or "")
        assert [a.outcome for a in attempts] == [AttemptOutcome.FAILED] * 3
        assert all("RuntimeError" in (a.traceback or "") for a in attempts)
        # the delay counts from the failure, when the worker reads the store's clock to plan the
        # retry; the attempt's finished_at is stamped by the settle's own statement a moment
        # later (later still on a loaded machine, waiting for the write lock), so the gap is
        # measured from the failed attempt's start, which precedes the failure
        for before, after in pairwise(attempts):
            assert before.finished_at is not None and after.started_at > before.finished_at
            assert (after.started_at - before.started_at).total_seconds() >= 0.15

    def test_call_overrides_yaml(self, tmp_path: Path, ledger: str) -> None:
        """retry_attempts and retry_delay given to the call win over jobs.yaml."""
        config = make_config(
            tmp_path, jobs={"Recorder": {"class": "sample_jobs:Recorder", "retry_attempts": 5}}
        )
        with JobKit(config, load_entrypoints=False) as app:
            job_id = app.run_background_job(
                "Recorder", "fail", {"ledger": ledger}, retry_attempts=1, retry_delay=0
            )
            run_until_empty(app)
            assert app.get_job(job_id).attempts == 2

    def test_recovers_after_failures(self, tmp_path: Path, ledger: str) -> None:
        """A job that fails twice then succeeds completes on attempt 3 with its result."""
        config = make_config(tmp_path, defaults={"retry_attempts": 3, "retry_delay": 0})
        with JobKit(config, load_entrypoints=False) as app:
            job_id = app.run_background_job("Recorder", "fail", {"ledger": ledger, "times": 2})
            run_until_empty(app)
            record = app.get_job(job_id)
            outcomes = [a.outcome for a in app.get_attempts(job_id)]
        assert (record.status, record.attempts, record.result) == (
            JobStatus.COMPLETED,
            3,
            "recovered",
        )
        assert outcomes == [AttemptOutcome.FAILED, AttemptOutcome.FAILED, AttemptOutcome.SUCCEEDED]

    def test_no_retries_by_default_in_these_tests(self, app: JobKit, ledger: str) -> None:
        """retry_attempts 0 means exactly one attempt."""
        job_id = app.run_background_job("Recorder", "fail", {"ledger": ledger})
        run_until_empty(app)
        assert app.get_job(job_id).attempts == 1

    def test_retry_exception_sets_its_delay(self, tmp_path: Path, ledger: str) -> None:
        """raise Retry(delay=...) schedules the next attempt after that delay."""
        config = make_config(tmp_path, defaults={"retry_attempts": 1, "retry_delay": 0})
        with JobKit(config, load_entrypoints=False) as app:
            job_id = app.run_background_job(
                "Recorder", "retry_later", {"ledger": ledger, "delay": 0.25}
            )
            run_until_empty(app)
            first, second = app.get_attempts(job_id)
            assert app.get_job(job_id).status == JobStatus.COMPLETED
        assert first.finished_at is not None
        assert (second.started_at - first.finished_at).total_seconds() >= 0.25

    def test_backoff_delays(self) -> None:
        """fixed repeats the delay; exponential doubles it up to max_delay; jitter adds at most
        its fraction."""
        fixed = RetryPolicy(retry_delay=2)
        assert [retry_delay(fixed, n) for n in (1, 2, 3)] == [2, 2, 2]
        exp = RetryPolicy(retry_delay=1, backoff="exponential", max_delay=5)
        assert [retry_delay(exp, n) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 5, 5]
        jittered = RetryPolicy(retry_delay=10, jitter=0.5)
        samples = [retry_delay(jittered, 1) for _ in range(200)]
        assert all(10 <= s <= 15 for s in samples) and len(set(samples)) > 1


class TestOutcomes:
    def test_result_and_progress_are_stored(self, app: JobKit) -> None:
        """The return value is the result; self.progress is recorded on the job."""
        job_id = app.run_background_job("Recorder", "progress_steps", {"steps": 4})
        run_until_empty(app)
        record = app.get_job(job_id)
        assert (record.result, record.progress, record.progress_message) == (4, 1.0, "step 4")

    def test_non_json_result_fails(self, app: JobKit) -> None:
        """A result that is not JSON fails the attempt with a clear error."""
        job_id = app.run_background_job("Recorder", "bad_result")
        run_until_empty(app)
        record = app.get_job(job_id)
        assert record.status == JobStatus.FAILED and "not JSON" in (record.error or "")

    def test_sys_exit_in_a_job_fails_the_job_not_the_worker(self, app: JobKit) -> None:
        """A job that calls sys.exit() fails; the worker goes on."""
        job_id = app.run_background_job("Recorder", "exits")
        run_until_empty(app)
        record = app.get_job(job_id)
        assert record.status == JobStatus.FAILED and "SystemExit: 3" in (record.error or "")

    def test_timeout_ends_the_attempt(self, tmp_path: Path) -> None:
        """A job past its timeout is stopped and recorded as a timeout."""
        config = make_config(
            tmp_path, jobs={"Recorder": {"class": "sample_jobs:Recorder", "timeout": 0.3}}
        )
        with JobKit(config, load_entrypoints=False) as app:
            job_id = app.run_background_job("Recorder", "sleep", {"seconds": 5})
            run_until_empty(app, timeout=4)
            record = app.get_job(job_id)
            (attempt,) = app.get_attempts(job_id)
        assert record.status == JobStatus.FAILED
        assert attempt.outcome == AttemptOutcome.TIMEOUT and "timed out after 0.3 s" in (
            record.error or ""
        )
        assert attempt.finished_at is not None
        assert (attempt.finished_at - attempt.started_at).total_seconds() < 2

    def test_a_swallowed_timeout_is_still_a_timeout(self, tmp_path: Path) -> None:
        """A job that catches the interrupt and returns still ends as timed out."""
        config = make_config(
            tmp_path, jobs={"Recorder": {"class": "sample_jobs:Recorder", "timeout": 0.3}}
        )
        with JobKit(config, load_entrypoints=False) as app:
            job_id = app.run_background_job("Recorder", "swallow", {"seconds": 5})
            run_until_empty(app, timeout=4)
            record = app.get_job(job_id)
        assert record.status == JobStatus.FAILED and record.result is None
        assert "timed out" in (record.error or "")

    def test_cancelled_pending_job_never_runs(self, app: JobKit, ledger: str) -> None:
        """A pending job that is cancelled never runs."""
        job_id = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "x"})
        assert app.cancel_job(job_id) is True
        assert app.cancel_job(job_id) is False
        run_until_empty(app)
        assert read_ledger(ledger) == []
        assert app.get_job(job_id).status == JobStatus.CANCELLED

    def test_manual_retry_runs_a_failed_job_again(self, app: JobKit, ledger: str) -> None:
        """retry_job puts a failed job back; it runs once more."""
        job_id = app.run_background_job("Recorder", "fail", {"ledger": ledger, "times": 1})
        run_until_empty(app)
        assert app.get_job(job_id).status == JobStatus.FAILED
        assert app.retry_job(job_id) is True
        run_until_empty(app)
        assert app.get_job(job_id).status == JobStatus.COMPLETED
        assert app.retry_job(job_id) is False


class TestJobOptions:
    def test_options_are_structured_into_the_jobs_class(self, tmp_path: Path) -> None:
        """options: in jobs.yaml arrive as an instance of the job's Options class."""
        config = make_config(
            tmp_path,
            jobs={
                "Configured": {
                    "class": "sample_jobs:Configured",
                    "options": {"greeting": "Hi", "times": 2},
                }
            },
        )
        with JobKit(config, load_entrypoints=False) as app:
            job_id = app.run_background_job("Configured", "greet", {"name": "Ana"})
            run_until_empty(app)
            assert app.get_job(job_id).result == "Hi, Ana Hi, Ana"

    def test_bad_options_are_reported_by_check(self, tmp_path: Path) -> None:
        """A wrong type or an unknown key in options: is a problem naming the job and key."""
        path = write_config(
            tmp_path,
            jobs={
                "Configured": {
                    "class": "sample_jobs:Configured",
                    "options": {"times": "2", "colour": "red"},
                }
            },
        )
        with JobKit.from_config(path, load_entrypoints=False) as app:
            problems = app.check()
        assert any("jobs.Configured.options.times: expected int" in p for p in problems)
        assert any("unknown key(s) colour" in p for p in problems)
        assert all(p.startswith(f"{path}:") for p in problems)


class TestAwkwardJobs:
    @pytest.mark.parametrize(
        ("method", "error"),
        [
            ("bad_exc", "BadStr: <the exception's message could not be built>"),
            ("circular", "nests deeper than 64 levels"),
            ("bad_retry", "ValueError: Retry(delay=...) must be a number >= 0 and <= 315360000"),
        ],
    )
    def test_failures_that_break_bookkeeping_are_recorded(
        self, app: JobKit, method: str, error: str
    ) -> None:
        """An unprintable exception, a circular result or a bad Retry still fail the job
        cleanly: it never stays running."""
        from sample_jobs import Awkward

        app.register("Awkward", Awkward)
        job_id = app.run_background_job("Awkward", method)
        run_until_empty(app, timeout=5)
        record = app.get_job(job_id)
        assert record.status == JobStatus.FAILED
        assert error in (record.error or "")


class TestTrustBoundary:
    def _tamper(self, app: JobKit, job_id: str, column: str, value: Any) -> None:
        path = app.config.storage.removeprefix("sqlite:///")
        with sqlite3.connect(path) as db:
            db.execute(f"UPDATE jobkit_jobs SET {column} = ? WHERE id = ?", (value, int(job_id)))

    @pytest.mark.parametrize(
        ("column", "value", "error"),
        [
            ("method", "helper", "MethodNotAllowed"),
            ("name", "os", "JobNotFound"),
            ("params", '{"ledger": "l", "tag": 5}', "InvalidParameters"),
            ("params", '{"ledger": "l", "tag": "t", "cmd": "rm"}', "InvalidParameters"),
        ],
    )
    def test_worker_rechecks_stored_rows(
        self, app: JobKit, ledger: str, column: str, value: str, error: str
    ) -> None:
        """A row altered in the database is refused by the worker and never runs."""
        job_id = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "t"})
        self._tamper(app, job_id, column, value)
        run_until_empty(app)
        record = app.get_job(job_id)
        assert record.status == JobStatus.FAILED and error in (record.error or "")
        assert record.attempts == 1
        assert read_ledger(ledger) == []


class Recording:
    def __init__(self) -> None:
        self.events: list[JobEvent] = []

    @hookimpl
    def jobkit_job_event(self, event: JobEvent) -> None:
        self.events.append(event)


class Exploding:
    @hookimpl
    def jobkit_job_event(self, event: JobEvent) -> None:
        raise RuntimeError("plugin bug")


class _Hang(Notifier):
    gate = threading.Event()

    def notify(self, event: JobEvent) -> None:
        self.gate.wait(10)


class _Remember(Notifier):
    seen: list[EventKind] = []

    def notify(self, event: JobEvent) -> None:
        self.seen.append(event.kind)


class _NotifierPlugin:
    @hookimpl
    def jobkit_register_notifiers(self, registry: Any) -> None:
        registry.add("hang", _Hang)
        registry.add("remember", _Remember)


class TestNotifiers:
    def test_a_hung_notifier_holds_back_no_other(self, tmp_path: Path, ledger: str) -> None:
        """Each notifier has its own delivery thread: a hung one does not stop the others."""
        config = make_config(tmp_path, notifications=[{"plugin": "hang"}, {"plugin": "remember"}])
        _Remember.seen.clear()
        with JobKit(config, load_entrypoints=False, plugins=(_NotifierPlugin(),)) as app:
            app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "t"})
            executor = Executor(app, "w", app.config.worker, Interrupter())
            assert executor.run_next()
            wait_for(lambda: len(_Remember.seen) == 3, timeout=5, what="the healthy notifier")
            assert not _Hang.gate.is_set()
            _Hang.gate.set()
        assert _Remember.seen == [EventKind.ENQUEUED, EventKind.STARTED, EventKind.SUCCEEDED]


class TestHooks:
    def test_events_in_order(self, tmp_path: Path, ledger: str) -> None:
        """Every state change reaches jobkit_job_event, in order."""
        recording = Recording()
        config = make_config(tmp_path, defaults={"retry_attempts": 1, "retry_delay": 0})
        with JobKit(config, load_entrypoints=False, plugins=(recording,)) as app:
            job_id = app.run_background_job("Recorder", "fail", {"ledger": ledger, "times": 1})
            run_until_empty(app)
        kinds = [e.kind for e in recording.events if e.job.id == job_id]
        assert kinds == [
            EventKind.ENQUEUED,
            EventKind.STARTED,
            EventKind.RETRYING,
            EventKind.STARTED,
            EventKind.SUCCEEDED,
        ]
        retrying = recording.events[2]
        assert retrying.error and "planned failure" in retrying.error
        assert retrying.traceback and "RuntimeError" in retrying.traceback

    def test_raising_hook_changes_nothing(self, tmp_path: Path, ledger: str) -> None:
        """A hook that raises is logged; other hooks still run and the job still completes."""
        recording = Recording()
        config = make_config(tmp_path)
        with JobKit(config, load_entrypoints=False, plugins=(Exploding(), recording)) as app:
            job_id = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "t"})
            run_until_empty(app)
            assert app.get_job(job_id).status == JobStatus.COMPLETED
        assert [e.kind for e in recording.events] == [
            EventKind.ENQUEUED,
            EventKind.STARTED,
            EventKind.SUCCEEDED,
        ]

    def test_trace_plugins_prints_hook_calls(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """JOBKIT_TRACE_PLUGINS=1 prints every hook call with its implementations."""
        monkeypatch.setenv("JOBKIT_TRACE_PLUGINS", "1")
        with JobKit(make_config(tmp_path), load_entrypoints=False,
                    plugins=(Recording(),)) as app:
            app.run_background_job("Recorder", "record", {"ledger": "", "tag": "t"})
        err = capsys.readouterr().err
        assert "jobkit hook jobkit_register_storage(registry) -> [jobkit.storage.plugin]" in err
        assert "jobkit hook jobkit_job_event(event) -> [" in err

    def test_hanging_hook_does_not_delay_the_job(self, tmp_path: Path, ledger: str) -> None:
        """A plugin's hook that blocks does not hold up the job or run_background_job."""
        release = threading.Event()

        class Hanging:
            @hookimpl
            def jobkit_job_event(self, event: JobEvent) -> None:
                release.wait(10)

        with JobKit(make_config(tmp_path), load_entrypoints=False, plugins=(Hanging(),)) as app:
            job_id = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "t"})
            executor = Executor(app, "w", app.config.worker, Interrupter())
            assert executor.run_next()
            assert app.get_job(job_id).status == JobStatus.COMPLETED
            assert not release.is_set()  # the hook is still blocked on the first event
            release.set()

    def test_events_carry_masked_params(self, tmp_path: Path) -> None:
        """Secrets in params are masked in the events plugins receive."""
        recording = Recording()
        with JobKit(make_config(tmp_path), load_entrypoints=False, plugins=(recording,)) as app:
            app.run_background_job("Recorder", "record", {"ledger": "", "tag": "t"})
            app.run_background_job(
                "Recorder",
                "typed",
                {"count": 1, "ratio": 1, "name": "n", "tags": [], "extra": {"api_key": 5}},
            )
        assert recording.events[1].job.params["extra"] == {"api_key": "***"}

    def test_misspelled_hook_fails_at_start(self, tmp_path: Path) -> None:
        """A plugin implementing an unknown hook is refused when the app is built."""
        from jobkit import ConfigError

        class Typo:
            @hookimpl
            def jobkit_job_evnt(self, event: JobEvent) -> None: ...

        with pytest.raises(ConfigError, match="jobkit_job_evnt"):
            JobKit(make_config(tmp_path), load_entrypoints=False, plugins=(Typo(),))


class TestJobLogLines:
    """What a job logs through self.log is kept per attempt, capped, for the dashboard."""

    @pytest.fixture
    def sink(self) -> Iterator[list[str]]:
        """A loguru sink, as a worker always has (a line no sink takes is not kept)."""
        from loguru import logger

        seen: list[str] = []
        handler = logger.add(seen.append, level="INFO", format="{message}")
        yield seen
        logger.remove(handler)

    def test_lines_are_kept_per_attempt(self, app: JobKit, sink: list[str]) -> None:
        job_id = app.run_background_job("Recorder", "chatty", {"lines": 3})
        run_until_empty(app)
        lines = app.storage.job_logs(job_id)
        assert [(line.attempt, line.level, line.message) for line in lines] == [
            (1, "INFO", f"line {n} of 3") for n in range(3)]
        assert "line 2 of 3\n" in sink

    def test_an_attempt_keeps_at_most_max_lines(self, app: JobKit, sink: list[str]) -> None:
        from jobkit.joblog import MAX_LINES

        job_id = app.run_background_job("Recorder", "chatty", {"lines": MAX_LINES + 20})
        run_until_empty(app)
        lines = app.storage.job_logs(job_id)
        assert len(lines) == MAX_LINES + 1
        assert lines[-1].level == "WARNING"
        assert lines[-1].message.startswith("[20 more line(s) not kept")

    def test_a_running_jobs_lines_are_stored_as_it_runs(
        self, app: JobKit, sink: list[str]
    ) -> None:
        job_id = app.run_background_job("Recorder", "chatty", {"lines": 2, "sleep": 2.5})
        worker = threading.Thread(target=run_until_empty, args=(app,))
        worker.start()
        try:
            wait_for(lambda: len(app.storage.job_logs(job_id)) == 2, timeout=2.0,
                     what="the lines while the job still runs")
            assert app.get_job(job_id).status is JobStatus.RUNNING
        finally:
            worker.join(timeout=10)
        assert len(app.storage.job_logs(job_id)) == 2

    def test_lines_no_store_can_keep_are_escaped_not_fatal(
        self, app: JobKit, sink: list[str]
    ) -> None:
        """A lone surrogate or a NUL in a line must not keep the job's outcome from being
        recorded (it once left the job running, to be run again and again)."""
        job_id = app.run_background_job("Recorder", "log_odd", {})
        run_until_empty(app)
        assert app.get_job(job_id).status is JobStatus.COMPLETED
        (line,) = app.storage.job_logs(job_id)
        assert line.message == "bad\\udcff and \\x00 nul"

    def test_lines_under_the_logs_level_are_not_kept(self, app: JobKit) -> None:
        """A worker's sink takes every level (it forwards them): the job log's level decides."""
        from loguru import logger

        handler = logger.add(lambda message: None, level=0)
        try:
            job_id = app.run_background_job("Recorder", "log_levels", {})
            run_until_empty(app)
        finally:
            logger.remove(handler)
        assert [line.level for line in app.storage.job_logs(job_id)] == ["INFO", "WARNING"]


_SHARED: list[Any] = []


class Shared(Job):
    """Returns a list the next job changes (a cache, a registry...)."""

    methods = ("give", "add")

    def give(self) -> list[Any]:
        return _SHARED

    def add(self, value: float) -> str:
        _SHARED.append(value)
        return "ok"


def run_with_journal(app: JobKit, journal: Path) -> None:
    """Run every due job as a worker process does: in batches, with a crash journal."""
    executor = Executor(app, "w1", app.config.worker, Interrupter(), journal=Journal(journal))
    try:
        while executor.run_next():
            pass
    finally:
        executor.close()


class TestBatches:
    """A worker process's batch of short jobs (an executor with a crash journal)."""

    def test_a_result_is_recorded_as_it_was_returned(self, tmp_path: Path) -> None:
        """A result object a later job of the same batch changes is stored as returned: the
        completion keeps a copy, not the object."""
        _SHARED[:] = []
        with JobKit(make_config(tmp_path), load_entrypoints=False) as app:
            app.register("Shared", Shared)
            app.run_background_job("Shared", "add", [0.5])
            give = app.run_background_job("Shared", "give")
            app.run_background_job("Shared", "add", [2.0])
            run_with_journal(app, tmp_path / "journal")
            assert app.get_job(give).result == [0.5]
            assert _SHARED == [0.5, 2.0]

    def test_the_completions_a_commit_records_are_in_the_journal_first(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Whatever batch a commit records, each of its completions is in the journal before
        the transaction begins (a process that dies in it loses none): the last completion of
        a batch, which no next start carries, too."""
        seen: list[tuple[set[tuple[str, int]], set[tuple[str, int]]]] = []
        complete_and_claim = Transitions.complete_and_claim

        def checked(self: Transitions, done: Any, *args: Any) -> Any:
            journalled = set(read_journal(tmp_path / "journal").done)
            seen.append(({(lease.job_id, lease.attempt) for lease, _ in done}, journalled))
            return complete_and_claim(self, done, *args)

        monkeypatch.setattr(Transitions, "complete_and_claim", checked)
        with JobKit(make_config(tmp_path), load_entrypoints=False) as app:
            app.register("Shared", Shared)
            for value in range(7):
                app.run_background_job("Shared", "add", [value])
            run_with_journal(app, tmp_path / "journal")
        assert sum(len(done) for done, _ in seen) == 7
        assert all(done <= journalled for done, journalled in seen)
