"""``run_at=``: a job due at an exact time, on every store, the API and ``jobkit run --at``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import make_config, write_config

import jobkit
from jobkit import ConfigError, JobKit, JobStatus
from jobkit.cli import main

BERLIN_WINTER = timezone(timedelta(hours=1))


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobKit]:
    """An app with the sample jobs on a store of each backend (PostgreSQL: a fresh database)."""
    overrides: dict[str, Any] = {}
    if request.param == "memory":
        overrides["storage"] = "memory://"
    elif request.param == "postgresql":
        overrides["storage"] = request.getfixturevalue("empty_postgres_url")
    with JobKit(make_config(tmp_path, **overrides), load_entrypoints=False) as application:
        yield application


def later(app: JobKit, **delta: float) -> datetime:
    """The store's time plus ``delta``, in UTC+1, whole seconds (every store keeps them)."""
    return (app.storage.now() + timedelta(**delta)).astimezone(BERLIN_WINTER).replace(
        microsecond=0)


class TestRunAt:
    def test_a_future_time_is_the_jobs_due_time_in_utc(self, app: JobKit, ledger: str) -> None:
        """The job is stored due at run_at (read back in UTC) and no worker claims it before."""
        when = later(app, hours=2)
        job_id = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "t"},
                                        run_at=when)
        record = app.get_job(job_id)
        assert record.available_at == when
        assert record.available_at.utcoffset() == timedelta(0)
        assert app.storage.claim("test:1", 5) is None

    def test_a_past_time_is_due_now(self, app: JobKit, ledger: str) -> None:
        """A run_at in the past is due at once, stamped with the store's clock, not run_at."""
        before = app.storage.now()
        job_id = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "t"},
                                        run_at=datetime(2001, 1, 1, tzinfo=timezone.utc))
        record = app.get_job(job_id)
        assert record.available_at >= before - timedelta(seconds=1)
        claimed = app.storage.claim("test:1", 5)
        assert claimed is not None and claimed.id == job_id

    def test_enqueue_and_enqueue_many_take_it(self, app: JobKit, ledger: str) -> None:
        """app.enqueue and every job of enqueue_many are due at run_at."""
        when = later(app, days=1)
        enqueued = app.enqueue("Recorder", "record", {"ledger": ledger, "tag": "e"}, run_at=when)
        ids = app.enqueue_many("Recorder", "record",
                               [{"ledger": ledger, "tag": str(n)} for n in range(3)], run_at=when)
        for job_id in (enqueued.id, *ids):
            assert app.get_job(job_id).available_at == when
        assert app.storage.claim("test:1", 5) is None

    @pytest.mark.parametrize(("run_at", "delay", "expected"), [
        (datetime(2030, 1, 1, 12), 0, "call: run_at: expected an aware datetime"),
        ("2030-01-01T12:00:00+00:00", 0, "call: run_at: expected an aware datetime"),
        (datetime(2030, 1, 1, tzinfo=timezone.utc), 5, "call: run_at: give run_at or delay"),
        (datetime(2030, 1, 1, tzinfo=timezone.utc), timedelta(seconds=1),
         "call: run_at: give run_at or delay"),
        (datetime(9000, 1, 1, tzinfo=timezone.utc), 0, "at most 10 years ahead"),
    ])
    def test_refused_and_nothing_stored(
        self, app: JobKit, ledger: str, run_at: Any, delay: Any, expected: str
    ) -> None:
        """A bad run_at is one ConfigError naming it, from every entry point; nothing stored.

        Naive (or not a datetime), with a delay, or over 10 years ahead."""
        params = {"ledger": ledger, "tag": "x"}
        calls: list[Callable[[], object]] = [
            lambda: app.run_background_job("Recorder", "record", params, run_at=run_at,
                                           delay=delay),
            lambda: app.enqueue("Recorder", "record", params, run_at=run_at, delay=delay),
            lambda: app.enqueue_many("Recorder", "record", [params, params], run_at=run_at,
                                     delay=delay),
        ]
        for call in calls:
            with pytest.raises(ConfigError, match="call: run_at: ") as caught:
                call()
            assert expected in str(caught.value)
        assert app.list_jobs() == []

    def test_a_naive_time_names_what_to_do(self, app: JobKit, ledger: str) -> None:
        """The message of a naive run_at shows an aware one."""
        with pytest.raises(ConfigError) as caught:
            app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "x"},
                                   run_at=datetime(2030, 1, 1))
        assert "tzinfo=timezone.utc" in str(caught.value)
        assert "a naive datetime" in str(caught.value)


def test_the_module_level_function_takes_it(tmp_path: Path, ledger: str) -> None:
    """jobkit.run_background_job and jobkit.enqueue_many on the default app take run_at."""
    app = JobKit(make_config(tmp_path), load_entrypoints=False)
    jobkit.set_default_app(app)
    when = later(app, minutes=30)
    one = jobkit.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "a"},
                                    run_at=when)
    (two,) = jobkit.enqueue_many("Recorder", "record", [{"ledger": ledger, "tag": "b"}],
                                 run_at=when)
    assert [jobkit.get_job(job_id).available_at for job_id in (one, two)] == [when, when]


class TestCommandLine:
    @pytest.fixture
    def cli(self, tmp_path: Path) -> Callable[..., Result]:
        """`jobkit --config jobs.yaml ARGS` in-process."""
        config = write_config(tmp_path)

        def invoke(*args: str) -> Result:
            return CliRunner().invoke(main, ["--config", str(config), *args])

        return invoke

    def open(self, tmp_path: Path) -> JobKit:
        return JobKit.from_config(tmp_path / "jobs.yaml", load_entrypoints=False)

    @pytest.mark.parametrize("text", ["2030-12-24T18:00:00+01:00", "2030-12-24T17:00:00Z",
                                      " 2030-12-24 17:00:00+00:00 "])
    def test_at_stores_the_due_time(
        self, cli: Callable[..., Result], tmp_path: Path, ledger: str, text: str
    ) -> None:
        """--at with an offset (or Z) is the job's due time."""
        result = cli("run", "Recorder", "record", "-p", f"ledger={ledger}", "-p", "tag=a",
                     "--at", text)
        assert result.exit_code == 0, result.output
        with self.open(tmp_path) as app:
            record = app.get_job(result.stdout.strip())
        assert record.status == JobStatus.PENDING
        assert record.available_at == datetime(2030, 12, 24, 17, tzinfo=timezone.utc)

    @pytest.mark.parametrize(("args", "expected"), [
        (("--at", "2030-12-24T18:00:00"), "has no UTC offset"),
        (("--at", "tomorrow"), "is not an ISO 8601 time"),
        (("--at", ""), "is not an ISO 8601 time"),
        (("--at", "2030-12-24T18:00:00Z", "--delay", "5"), "give --at or --delay, not both"),
        (("--at", "9999-01-01T00:00:00Z"), "call: run_at: expected a time at most 10 years"),
    ])
    def test_a_bad_at_is_one_clear_line(
        self, cli: Callable[..., Result], tmp_path: Path, ledger: str,
        args: tuple[str, ...], expected: str,
    ) -> None:
        """A bad --at exits non-zero with a message, no traceback; nothing is stored."""
        result = cli("run", "Recorder", "record", "-p", f"ledger={ledger}", "-p", "tag=a", *args)
        assert result.exit_code in (1, 2), result.output
        assert expected in result.stderr
        assert "Traceback" not in result.output
        with self.open(tmp_path) as app:
            assert app.list_jobs() == []
