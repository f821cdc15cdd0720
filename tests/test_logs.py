"""jobkit's two log files: what they hold, in text and JSON, and that no input can forge a line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from conftest import config_data, jobkit_process, subprocess_env
from loguru import logger

import jobkit.logs
from jobkit import Job, JobKit, JobStatus, hookimpl
from jobkit.config import Config, LoggingSettings
from jobkit.config_yaml import Invalid
from jobkit.exceptions import ConfigError
from jobkit.logs import ERRORS_FILE, EVENTS_FILE, LogFiles, configure_logging, event_line
from jobkit.records import EventKind, JobEvent, JobRecord
from jobkit.worker import run_until_empty

FORGED = "2026-01-01T00:00:00 | INFO | forged"
INJECTION = "\n" + FORGED
TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d{4}) \| ")
EVENT_LINE = re.compile(
    r"^(?P<time>\S+) \| (?P<level>[A-Z]+) *\| job_id=(?P<job_id>\S+) job_name=(?P<job_name>\S+)"
    r" method=(?P<method>\S+) attempt=(?P<attempt>\d+) status=(?P<status>\w+)"
    r" event=(?P<event>\w+) params=(?P<params>\{.*\}) \| (?P<message>.*)$"
)
SECRETS = ("pw-s3cret", "tok-s3cret", "key-s3cret", "nested-s3cret", "listed-s3cret")


class Probe(Job):
    """Jobs for these tests: secrets in params, and errors whose message the caller chooses."""

    methods = ("login", "explode")

    def login(
        self,
        user: str,
        password: str,
        token: str,
        api_key: str,
        settings: dict[str, Any],
        fail: bool = False,
    ) -> str:
        if fail:
            raise RuntimeError(f"login of {user} refused")
        return user

    def explode(self, message: str) -> None:
        raise RuntimeError(message)


def log_config_data(tmp_path: Path, **logging: Any) -> dict[str, Any]:
    """The tests' jobs.yaml mapping with these logging settings and one retry for Recorder."""
    return config_data(
        tmp_path,
        logging=logging,
        jobs={"Recorder": {"class": "sample_jobs:Recorder", "retry_attempts": 1}},
    )


def write_log_config(tmp_path: Path, **logging: Any) -> Path:
    """The same configuration written as tmp_path/jobs.yaml."""
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump(log_config_data(tmp_path, **logging), sort_keys=False))
    return path


def run_worker(config: Path) -> None:
    """A real `jobkit worker --burst -n 1` on config; it must exit 0."""
    result = jobkit_process(config.parent, "--config", str(config), "worker", "--burst", "-n", "1")
    assert result.returncode == 0, result.stdout + result.stderr


@attrs.define
class Logged:
    """An app whose job log is configured in this process."""

    app: JobKit
    files: LogFiles
    started: datetime

    def run(self) -> None:
        run_until_empty(self.app, timeout=20)

    def events(self) -> str:
        return self.files.events.read_text(encoding="utf-8")

    def errors(self) -> str:
        return self.files.errors.read_text(encoding="utf-8")


@pytest.fixture
def make_logged(tmp_path: Path) -> Iterator[Any]:
    """Build apps with the job log configured; remove the sinks and disable jobkit afterwards."""
    made: list[Logged] = []

    def make(**logging: Any) -> Logged:
        app = JobKit(Config.from_dict(log_config_data(tmp_path, **logging)), load_entrypoints=False)
        app.register("Probe", Probe)
        started = datetime.now(timezone.utc)
        logged = Logged(app, configure_logging(app.config.logging, app.pm), started)
        made.append(logged)
        return logged

    yield make
    for logged in made:
        logged.files.remove()
        logged.app.close()
    logger.disable("jobkit")


@pytest.fixture
def logged(make_logged: Any) -> Logged:
    """An app logging in text format."""
    return make_logged()  # type: ignore[no-any-return]


def event_lines(text: str) -> list[dict[str, str]]:
    """The job-event lines of the text events file, parsed."""
    found = []
    for line in text.split("\n"):
        match = EVENT_LINE.match(line)
        if match:
            found.append(match.groupdict())
    return found


def events_of(text: str, job_id: str) -> list[dict[str, str]]:
    return [line for line in event_lines(text) if line["job_id"] == job_id]


def assert_only_real_lines(text: str, started: datetime, lines: list[str]) -> None:
    """Every line starts with a timestamp of this run, or is a traceback line `  | `."""
    assert lines and lines[-1] == "", "the file must end with a newline"
    low, high = started - timedelta(seconds=2), datetime.now(timezone.utc) + timedelta(seconds=2)
    for line in lines[:-1]:
        assert not line.startswith(FORGED), f"forged line in:\n{text}"
        if line.startswith("  | "):
            continue
        match = TIMESTAMP.match(line)
        assert match, f"line without a timestamp: {line!r}"
        stamp = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S.%f%z")
        assert low <= stamp <= high, f"timestamp not of this run: {line!r}"


class TestEvents:
    def test_every_state_change_with_its_fields(self, logged: Logged, ledger: str) -> None:
        """enqueued, started, succeeded, retrying, failed and cancelled each give one full line."""
        app = logged.app
        ok = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "ok"})
        bad = app.run_background_job("Recorder", "fail", {"ledger": ledger, "tag": "bad"})
        gone = app.run_background_job(
            "Recorder", "record", {"ledger": ledger, "tag": "gone"}, delay=300
        )
        assert app.cancel_job(gone)
        logged.run()
        text = logged.events()

        def seen(job_id: str) -> list[tuple[str, str, str, str]]:
            return [
                (e["event"], e["status"], e["attempt"], e["level"]) for e in events_of(text, job_id)
            ]

        assert seen(ok) == [
            ("enqueued", "pending", "0", "INFO"),
            ("started", "running", "1", "INFO"),
            ("succeeded", "completed", "1", "INFO"),
        ], text
        assert seen(bad) == [
            ("enqueued", "pending", "0", "INFO"),
            ("started", "running", "1", "INFO"),
            ("retrying", "retrying", "1", "ERROR"),
            ("started", "running", "2", "INFO"),
            ("failed", "failed", "2", "ERROR"),
        ], text
        assert seen(gone) == [
            ("enqueued", "pending", "0", "INFO"),
            ("cancelled", "cancelled", "0", "INFO"),
        ], text
        for event in events_of(text, bad):
            assert (event["job_name"], event["method"]) == ("Recorder", "fail")
            assert json.loads(event["params"]) == {"ledger": ledger, "tag": "bad"}
        failed = events_of(text, bad)[-1]
        assert failed["message"] == "failed: RuntimeError: planned failure 2"

    def test_manual_retry_is_logged(self, logged: Logged, ledger: str) -> None:
        """retry_job on a failed job logs it as enqueued again."""
        app = logged.app
        job_id = app.run_background_job("Recorder", "fail", {"ledger": ledger}, retry_attempts=0)
        logged.run()
        assert app.retry_job(job_id)
        kinds = [e["event"] for e in events_of(logged.events(), job_id)]
        assert kinds == ["enqueued", "started", "failed", "enqueued"]

    def test_job_log_lines_carry_the_job(self, logged: Logged) -> None:
        """Lines a job writes through self.log land in the events file with its job_id."""
        job_id = logged.app.run_background_job("Recorder", "log_lines", {"text": "hello"})
        logged.run()
        lines = [line for line in logged.events().split("\n") if "job says hello" in line]
        assert len(lines) == 1, logged.events()
        assert f"job_id={job_id} job_name=Recorder method=log_lines attempt=1" in lines[0]
        assert "job says hello" not in logged.errors()

    def test_level_setting(self, make_logged: Any, ledger: str) -> None:
        """logging.level WARNING keeps INFO events out of the events file."""
        logged = make_logged(level="warning")
        job_id = logged.app.run_background_job("Recorder", "fail", {"ledger": ledger})
        logged.run()
        kinds = [e["event"] for e in events_of(logged.events(), job_id)]
        assert kinds == ["retrying", "failed"]

    def test_plugin_sink_through_hook(self, tmp_path: Path, ledger: str) -> None:
        """jobkit_configure_logging lets a plugin add a sink that receives the job events."""
        received: list[dict[str, Any]] = []

        class SinkPlugin:
            @hookimpl
            def jobkit_configure_logging(self, logger: Any, settings: LoggingSettings) -> None:
                received.append({"settings": settings})
                handler = logger.add(
                    lambda message: received.append(dict(message.record["extra"])),
                    filter=lambda record: "event" in record["extra"],
                )
                received.append({"handler": handler})

        app = JobKit(
            Config.from_dict(log_config_data(tmp_path)),
            plugins=(SinkPlugin(),),
            load_entrypoints=False,
        )
        files = configure_logging(app.config.logging, app.pm)
        try:
            job_id = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "p"})
        finally:
            files.remove()
            logger.remove(received[1]["handler"])
            logger.disable("jobkit")
            app.close()
        assert received[0]["settings"] == app.config.logging
        assert [(r["job_id"], r["event"]) for r in received[2:]] == [(job_id, "enqueued")]

    def test_statuses_are_the_public_ones(self, logged: Logged, ledger: str) -> None:
        """Every status= in the events file is one of the public job statuses."""
        logged.app.run_background_job("Recorder", "fail", {"ledger": ledger})
        logged.run()
        statuses = {e["status"] for e in event_lines(logged.events())}
        assert statuses and statuses <= {s.value for s in JobStatus}


class TestErrorsFile:
    def test_failures_with_tracebacks_and_no_successes(self, logged: Logged, ledger: str) -> None:
        """The errors file holds the failure and its `  | ` traceback; no success, no start."""
        app = logged.app
        ok = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "ok"})
        bad = app.run_background_job("Recorder", "fail", {"ledger": ledger}, retry_attempts=0)
        logged.run()
        errors = logged.errors()
        (failed,) = event_lines(errors)
        assert (failed["job_id"], failed["event"], failed["level"]) == (bad, "failed", "ERROR")
        tb = [line for line in errors.split("\n") if line.startswith("  | ")]
        assert tb[0] == "  | Traceback (most recent call last):"
        assert tb[-1] == "  | RuntimeError: planned failure 1"
        assert any("sample_jobs.py" in line for line in tb)
        assert f"job_id={ok} " not in errors
        assert "event=succeeded" not in errors and "event=started" not in errors
        assert "event=enqueued" not in errors
        assert "  | Traceback (most recent call last):" in logged.events()

    def test_errors_file_exists_before_any_failure(self, logged: Logged, ledger: str) -> None:
        """Both files exist once logging is configured; only successes leave errors empty."""
        logged.app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "ok"})
        logged.run()
        assert logged.files.errors.exists()
        assert logged.errors() == ""
        assert logged.files.events.name == EVENTS_FILE
        assert logged.files.errors.name == ERRORS_FILE


class TestMasking:
    @pytest.mark.parametrize("fmt", ["text", "json"])
    def test_secrets_masked_in_both_files(self, make_logged: Any, fmt: str) -> None:
        """password, token, api_key and nested secrets are *** in both files; other params show."""
        logged = make_logged(format=fmt)
        params = {
            "user": "ana",
            "password": SECRETS[0],
            "token": SECRETS[1],
            "api_key": SECRETS[2],
            "settings": {"db": {"password": SECRETS[3]}, "hooks": [{"token": SECRETS[4]}]},
        }
        logged.app.run_background_job("Probe", "login", params)
        logged.app.run_background_job("Probe", "login", {**params, "fail": True})
        logged.run()
        events, errors = logged.events(), logged.errors()
        assert "login of ana refused" in errors  # the failure did reach the errors file
        for text in (events, errors):
            for secret in SECRETS:
                assert secret not in text
        masked = {
            "user": "ana",
            "password": "***",
            "token": "***",
            "api_key": "***",
            "settings": {"db": {"password": "***"}, "hooks": [{"token": "***"}]},
        }
        for text in (events, errors):
            logged_params = params_in(text, fmt)
            assert logged_params, text
            for found in logged_params:
                found.pop("fail", None)
                assert found == masked

    def test_secrets_masked_by_a_real_worker(self, tmp_path: Path) -> None:
        """Nested secrets in params stay masked in the files a real worker writes."""
        config = write_log_config(tmp_path)
        with JobKit.from_config(config, load_entrypoints=False) as app:
            job_id = app.run_background_job(
                "Recorder",
                "typed",
                {
                    "count": 1,
                    "ratio": 1.0,
                    "name": "n",
                    "tags": [],
                    "extra": {"password": 987654, "api_key": 123456},
                },
            )
        run_worker(config)
        events = (tmp_path / "logs" / EVENTS_FILE).read_text()
        assert f"job_id={job_id} " in events
        assert "987654" not in events and "123456" not in events
        assert '"extra": {"api_key": "***", "password": "***"}' in events


class TestParamsTextOncePerJob:
    """A job's events share its params text, masked and encoded once, and nothing more."""

    def _record(self, app: JobKit, params: dict[str, Any]) -> JobRecord:
        typed = {"count": 1, "ratio": 1.0, "name": "n", "tags": [], "extra": {}}
        record = app.storage.get(app.run_background_job("Recorder", "typed", {**typed, **params}))
        assert record is not None
        return record

    def test_params_a_job_changed_in_place_leak_no_secret(self, app: JobKit) -> None:
        """The text made for the job's first event holds no secret added to its params later."""
        record = self._record(app, {"count": 1, "extra": {}})
        event_line(JobEvent(EventKind.STARTED, record), params_text=True)
        record.params["extra"]["password"] = "S3CRET-IN-PLACE"
        second = event_line(JobEvent(EventKind.SUCCEEDED, record), params_text=True)
        assert "S3CRET" not in str(second.params)

    def test_other_params_of_the_same_attempt_are_masked_and_encoded_again(
        self, app: JobKit
    ) -> None:
        """A record of the same attempt whose params differ gets their own text, masked."""
        record = self._record(app, {"count": 1, "extra": {}})
        event_line(JobEvent(EventKind.STARTED, record), params_text=True)
        changed = attrs.evolve(record, params={"count": 1.0, "extra": {"token": "S3CRET-NEW"}})
        line = event_line(JobEvent(EventKind.SUCCEEDED, changed), params_text=True)
        assert json.loads(line.params) == {"count": 1.0, "extra": {"token": "***"}}
        assert "S3CRET" not in line.params


def params_in(text: str, fmt: str) -> list[dict[str, Any]]:
    """The params of every job-event line of a log file."""
    if fmt == "text":
        return [json.loads(event["params"]) for event in event_lines(text)]
    found = []
    for line in text.splitlines():
        extra = json.loads(line)["record"]["extra"]
        if "params" in extra:
            params = extra["params"]
            found.append(json.loads(params) if isinstance(params, str) else params)
    return found


class TestInjection:
    def test_params_messages_and_job_lines_cannot_forge_a_line(self, logged: Logged) -> None:
        """A newline + fake record in a param, an error and self.log never starts a line."""
        app = logged.app
        app.run_background_job("Recorder", "log_lines", {"text": "hello" + INJECTION})
        app.run_background_job("Probe", "explode", {"message": "boom" + INJECTION})
        delayed = app.run_background_job(
            "Recorder", "record", {"ledger": "", "tag": INJECTION}, delay=300
        )
        assert app.cancel_job(delayed)
        logged.run()
        events, errors = logged.events(), logged.errors()
        # the input did reach both files, escaped onto one line
        assert "job says hello\\n" + FORGED in events
        assert "failed: RuntimeError: boom\\n" + FORGED in errors
        assert '"tag": "\\n' + FORGED in events
        assert_only_real_lines(events, logged.started, events.split("\n"))
        assert_only_real_lines(errors, logged.started, errors.split("\n"))

    def test_control_characters_in_messages_are_escaped(self, logged: Logged) -> None:
        """Carriage returns and other control characters in messages are escaped, not written."""
        logged.app.run_background_job("Recorder", "log_lines", {"text": "a\r" + FORGED + "\x1b[2J"})
        logged.run()
        events = logged.events()
        assert "\r" not in events and "\x1b" not in events
        assert_only_real_lines(events, logged.started, [*events.splitlines(), ""])

    def test_unicode_line_breaks_in_params_are_escaped(self, logged: Logged, ledger: str) -> None:
        """NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR in params are escaped like newlines."""
        for breaker in ("\x85", "\u2028", "\u2029"):
            logged.app.run_background_job(
                "Recorder", "record", {"ledger": ledger, "tag": breaker + FORGED}
            )
        logged.run()
        events = logged.events()
        for breaker in ("\x85", "\u2028", "\u2029"):
            assert breaker not in events, f"{breaker!r} written raw in params"
        assert_only_real_lines(events, logged.started, [*events.splitlines(), ""])

    def test_json_lines_stay_one_object_each(self, make_logged: Any) -> None:
        """In JSON format, injected newlines stay inside one valid JSON object per line."""
        logged = make_logged(format="json")
        logged.app.run_background_job("Recorder", "log_lines", {"text": "hi" + INJECTION})
        logged.app.run_background_job("Probe", "explode", {"message": "boom" + INJECTION})
        logged.run()
        for text in (logged.events(), logged.errors()):
            for line in text.splitlines():
                assert not line.startswith(FORGED)
                json.loads(line)
        messages = [json.loads(line)["record"]["message"] for line in logged.events().splitlines()]
        assert "job says hi" + INJECTION in messages

    def test_real_worker_cannot_be_forged(self, tmp_path: Path) -> None:
        """Through a real worker (records forwarded between processes) no line is forged."""
        started = datetime.now(timezone.utc)
        config = write_log_config(tmp_path)
        with JobKit.from_config(config, load_entrypoints=False) as app:
            job_id = app.run_background_job("Recorder", "log_lines", {"text": "x" + INJECTION})
        run_worker(config)
        events = (tmp_path / "logs" / EVENTS_FILE).read_text()
        assert (
            f"job_id={job_id} job_name=Recorder method=log_lines attempt=1 | job says x\\n" + FORGED
            in events
        )
        assert_only_real_lines(events, started, events.split("\n"))


@pytest.mark.slow
class TestRealWorker:
    def test_events_errors_and_job_lines(self, tmp_path: Path, ledger: str) -> None:
        """A real worker writes started/succeeded/retrying/failed, job lines and tracebacks."""
        config = write_log_config(tmp_path)
        with JobKit.from_config(config, load_entrypoints=False) as app:
            ok = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "ok"})
            bad = app.run_background_job("Recorder", "fail", {"ledger": ledger})
            said = app.run_background_job("Recorder", "log_lines", {"text": "from worker"})
        run_worker(config)
        events = (tmp_path / "logs" / EVENTS_FILE).read_text()
        errors = (tmp_path / "logs" / ERRORS_FILE).read_text()
        assert [e["event"] for e in events_of(events, ok)] == ["started", "succeeded"]
        assert [(e["event"], e["attempt"]) for e in events_of(events, bad)] == [
            ("started", "1"),
            ("retrying", "1"),
            ("started", "2"),
            ("failed", "2"),
        ]
        said_line = f"job_id={said} job_name=Recorder method=log_lines attempt=1 | job says from"
        assert said_line + " worker" in events
        assert [e["job_id"] for e in event_lines(errors)] == [bad, bad]  # every failed attempt
        assert "  | RuntimeError: planned failure 1" in errors
        assert "  | RuntimeError: planned failure 2" in errors
        assert f"job_id={ok} " not in errors

    def test_json_format(self, tmp_path: Path, ledger: str) -> None:
        """format: json gives one JSON object per line with the job fields in record.extra."""
        config = write_log_config(tmp_path, format="json")
        with JobKit.from_config(config, load_entrypoints=False) as app:
            ok = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "ok"})
            bad = app.run_background_job("Recorder", "fail", {"ledger": ledger})
            said = app.run_background_job("Recorder", "log_lines", {"text": "json"})
        run_worker(config)
        events = [
            json.loads(line)["record"]
            for line in (tmp_path / "logs" / EVENTS_FILE).read_text().splitlines()
        ]
        errors = [
            json.loads(line)["record"]
            for line in (tmp_path / "logs" / ERRORS_FILE).read_text().splitlines()
        ]
        job_events = [r["extra"] for r in events if "event" in r["extra"]]
        assert [
            (e["event"], e["status"], e["attempt"]) for e in job_events if e["job_id"] == ok
        ] == [("started", "running", 1), ("succeeded", "completed", 1)]
        for extra in job_events:
            assert {"job_id", "job_name", "method", "status", "attempt", "params"} <= set(extra)
        (ok_started, _) = [e for e in job_events if e["job_id"] == ok]
        params = ok_started["params"]
        assert (json.loads(params) if isinstance(params, str) else params) == {
            "ledger": ledger,
            "tag": "ok",
        }
        (line,) = [r for r in events if r["message"] == "job says json"]
        assert line["extra"]["job_id"] == said and line["extra"]["method"] == "log_lines"
        # the supervisor writes a job's event lines, with the worker process's pid and times
        said_events = [
            r for r in events if r["extra"].get("job_id") == said and "event" in r["extra"]
        ]
        assert [r["extra"]["event"] for r in said_events] == ["started", "succeeded"]
        assert {r["process"]["id"] for r in said_events} == {line["process"]["id"]}
        (supervisor,) = [r for r in events if r["message"] == "worker stopped"]
        assert line["process"]["name"] == "jobkit-worker-0"
        assert line["process"]["id"] != supervisor["process"]["id"]
        times = [r["time"]["timestamp"] for r in (said_events[0], line, said_events[1])]
        assert times == sorted(times)
        assert said_events[0]["function"] == said_events[1]["function"] == "write_event"
        assert [(r["extra"]["job_id"], r["extra"]["event"]) for r in errors] == [
            (bad, "retrying"),
            (bad, "failed"),
        ]
        assert "planned failure 2" in errors[1]["extra"]["traceback"]


class TestRotation:
    def test_rotation_and_retention_accepted(self, tmp_path: Path, ledger: str) -> None:
        """rotation "10 MB" and retention "1 day" from jobs.yaml: a real worker runs and logs."""
        config = write_log_config(tmp_path, rotation="10 MB", retention="1 day")
        with JobKit.from_config(config, load_entrypoints=False) as app:
            job_id = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "r"})
        run_worker(config)
        events = (tmp_path / "logs" / EVENTS_FILE).read_text()
        assert [e["event"] for e in events_of(events, job_id)] == ["started", "succeeded"]

    def test_no_rotation(self, make_logged: Any, ledger: str) -> None:
        """rotation and retention null: one file, never rotated."""
        logged = make_logged(rotation=None, retention=None)
        logged.app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "n"})
        logged.run()
        assert sorted(p.name for p in logged.files.events.parent.iterdir()) == sorted(
            [ERRORS_FILE, EVENTS_FILE]
        )

    def test_size_rotation_happens(self, make_logged: Any, ledger: str) -> None:
        """rotation "1 KB": the events file is rotated once it grows past 1 KB."""
        logged = make_logged(rotation="1 KB", retention="1 day")
        for i in range(8):
            logged.app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": f"{i}"})
        directory = logged.files.events.parent
        rotated = [
            p
            for p in directory.iterdir()
            if p.name.startswith("background_jobs.") and p.name != EVENTS_FILE
        ]
        assert rotated, sorted(p.name for p in directory.iterdir())
        assert logged.files.events.stat().st_size < 2048

    def test_documented_file_count_retention(self, make_logged: Any, ledger: str) -> None:
        """retention "10 files", the example LoggingSettings documents, is accepted and works."""
        logged = make_logged(rotation="1 KB", retention="10 files")
        for i in range(8):
            logged.app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": f"{i}"})
        assert len(list(logged.files.events.parent.iterdir())) > 2

    def test_bad_rotation_is_a_config_error(self, tmp_path: Path) -> None:
        """A bad rotation is jobkit's config error naming the key, not loguru's bare ValueError."""
        try:
            with pytest.raises((ConfigError, Invalid)) as raised:
                settings = LoggingSettings(dir=str(tmp_path / "logs"), rotation="every blue moon")
                configure_logging(settings)
        finally:
            logger.disable("jobkit")
        assert "rotation" in str(raised.value)

    def test_bad_rotation_reported_by_check(self, tmp_path: Path) -> None:
        """`jobkit check` reports a bad logging.rotation with file, line and key (non-zero exit)."""
        config = write_log_config(tmp_path, rotation="every blue moon")
        result = jobkit_process(tmp_path, "--config", str(config), "check")
        assert result.returncode != 0, result.stdout + result.stderr
        assert re.search(rf"{re.escape(str(config))}:\d+: logging\.rotation", result.stderr)

    def test_bad_rotation_stops_the_worker_cleanly(self, tmp_path: Path) -> None:
        """`jobkit worker` with a bad rotation: exit 2, one error line naming rotation."""
        config = write_log_config(tmp_path, rotation="every blue moon")
        result = jobkit_process(tmp_path, "--config", str(config), "worker", "--burst", "-n", "1")
        assert "Traceback" not in result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines and lines[0].startswith("jobkit: error: ") and "rotation" in lines[0]
        assert "every blue moon" in lines[0]
        assert "unexpected" not in lines[0], lines[0]
        assert result.returncode == 2, result.stderr

    def test_bad_retention_reported_by_check(self, tmp_path: Path) -> None:
        """`jobkit check` reports a bad logging.retention with file, line and key (exit != 0)."""
        config = write_log_config(tmp_path, retention="forever")
        result = jobkit_process(tmp_path, "--config", str(config), "check")
        assert result.returncode != 0, result.stdout + result.stderr
        assert re.search(rf"{re.escape(str(config))}:\d+: logging\.retention", result.stderr)


class TestLibraryAddsNoSink:
    def run_python(self, tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            cwd=tmp_path,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def test_import_adds_no_sink(self, tmp_path: Path) -> None:
        """Importing jobkit adds no loguru handler (handler ids are consecutive around it)."""
        result = self.run_python(
            tmp_path,
            """
            from loguru import logger
            before = logger.add(lambda _: None)
            logger.remove(before)
            import jobkit, jobkit.logs, jobkit.worker, jobkit.cli  # noqa
            after = logger.add(lambda _: None)
            print(after - before)
        """,
        )
        assert result.stdout.strip() == "1"
        assert list(tmp_path.iterdir()) == []

    def test_jobkit_records_are_disabled_until_configured(self, tmp_path: Path) -> None:
        """A sink added by the application gets no jobkit record until configure_logging."""
        result = self.run_python(
            tmp_path,
            f"""
            import json
            from loguru import logger
            seen = []
            logger.remove()
            logger.add(lambda m: seen.append([m.record["name"], m.record["extra"].get("event")]),
                       level=0)
            from jobkit import JobKit
            from jobkit.config import Config
            from jobkit.logs import configure_logging
            from jobkit.worker import run_until_empty
            config = Config.from_dict({{
                "storage": "sqlite:///{tmp_path / "jobkit.db"}",
                "logging": {{"dir": "{tmp_path / "logs"}"}},
                "worker": {{"poll_interval": 0.02}},
                "jobs": {{"Recorder": {{"class": "sample_jobs:Recorder"}}}},
            }})
            app = JobKit(config, load_entrypoints=False)
            app.run_background_job("Recorder", "record", {{"ledger": "", "tag": "quiet"}})
            run_until_empty(app)
            before = list(seen)
            files = configure_logging(app.config.logging, app.pm)
            app.run_background_job("Recorder", "record", {{"ledger": "", "tag": "loud"}})
            run_until_empty(app)
            files.remove()
            print(json.dumps({{"before": before, "after": seen[len(before):]}}))
        """,
        )
        seen = json.loads(result.stdout.splitlines()[-1])
        assert seen["before"] == []
        events = [event for name, event in seen["after"] if name == "jobkit.logs"]
        assert events == ["enqueued", "started", "succeeded"]
        assert result.stderr == ""


class TestLoguruDefaultSink:
    SCRIPT = """
        import sys
        from loguru import logger
        {before}
        from jobkit import JobKit
        from jobkit.config import Config
        app = JobKit(Config.from_dict({{
            "storage": "sqlite:///{db}", "logging": {{"dir": "{logs}"}},
            "jobs": {{"Recorder": {{"class": "sample_jobs:Recorder"}}}},
        }}), load_entrypoints=False)
        app.configure_logging()
        app.run_background_job("Recorder", "record", {{"ledger": "", "tag": "t"}})
        logger.info("the app's own line")
        app.close()
    """

    def run_script(self, tmp_path: Path, before: str = "",
                   **env: str) -> subprocess.CompletedProcess[str]:
        code = self.SCRIPT.format(before=before, db=tmp_path / "jobkit.db", logs=tmp_path / "logs")
        result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path,
                                env={**subprocess_env(), **env}, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def test_a_script_that_configures_logging_prints_no_job_lines(self, tmp_path: Path) -> None:
        """configure_logging removes loguru's default stderr sink: the script's stderr holds
        no 'enqueued' line (the event is in the log file)."""
        result = self.run_script(tmp_path)
        assert "enqueued" not in result.stderr, result.stderr
        assert "the app's own line" not in result.stderr
        assert "event=enqueued" in (tmp_path / "logs" / EVENTS_FILE).read_text()

    def test_sinks_the_script_added_are_kept(self, tmp_path: Path) -> None:
        """A sink the script added itself (even to stderr) stays, and gets the jobkit lines."""
        result = self.run_script(tmp_path, before='logger.add(sys.stderr, format="MINE {message}")')
        assert "MINE enqueued" in result.stderr, result.stderr
        assert "MINE the app's own line" in result.stderr
        assert result.stderr.count("the app's own line") == 1  # the default sink is gone

    def test_a_script_that_removed_the_default_sink_keeps_its_own(self, tmp_path: Path) -> None:
        """After the script's own logger.remove() and add(), nothing of its is removed."""
        result = self.run_script(
            tmp_path, before='logger.remove(); logger.add(sys.stderr, format="MINE {message}")')
        assert "MINE the app's own line" in result.stderr, result.stderr

    def test_without_loguru_autoinit_handler_0_is_the_scripts(self, tmp_path: Path) -> None:
        """With LOGURU_AUTOINIT=false the script's first sink gets id 0: it is kept."""
        result = self.run_script(tmp_path, before='logger.add(sys.stderr, format="MINE {message}")',
                                 LOGURU_AUTOINIT="false")
        assert "MINE the app's own line" in result.stderr, result.stderr


class TestRelay:
    """The supervisor's side of worker processes' logs."""

    def test_a_level_the_supervisor_does_not_know_is_logged_by_number(self) -> None:
        """A record at a level registered only in the worker process is still logged (by its
        number), and the records after it too: the relay does not die."""
        import multiprocessing
        import pickle

        from loguru import logger

        from jobkit.worker.logpipe import Line, relay

        ours, theirs = multiprocessing.Pipe(duplex=False)
        seen: list[tuple[int, str, str, str]] = []
        handler = logger.add(
            lambda m: seen.append((m.record["level"].no, m.record["message"],
                                   m.record["file"].path, m.record["time"].strftime("%H:%M"))),
            level=0, format="{message}",
        )
        logger.enable("jobkit")  # as the worker's configure_logging does
        base = Line("WORKER_ONLY", 23, "custom", 0.0, 3600.0, "CET", "jobs", "f", 1, "jobs",
                    "jobs.py", "/srv/jobs.py", 1, "p", 1, "t", {}, None)
        try:
            thread = relay(ours, "test")
            theirs.send_bytes(b"not a pickle")  # skipped, the relay goes on
            theirs.send_bytes(pickle.dumps([base, base._replace(level="INFO", level_no=20,
                                                                message="after")]))
            theirs.close()
            thread.join(timeout=5)
        finally:
            logger.remove(handler)
            logger.disable("jobkit")
        # the worker process's file and time (in its zone) are kept
        assert (23, "custom", "/srv/jobs.py", "01:00") in seen
        assert (20, "after", "/srv/jobs.py", "01:00") in seen


    def test_a_process_stopped_halfway_through_a_batch_holds_up_no_other(self) -> None:
        """Relay threads take turns to log, but only with a batch received whole: one whose
        process stopped halfway through sending leaves the others' lines flowing."""
        import multiprocessing
        import os
        import pickle
        import struct
        import threading

        from loguru import logger

        from jobkit.worker.logpipe import Line, relay

        stalled_ours, stalled_theirs = multiprocessing.Pipe(duplex=False)
        ours, theirs = multiprocessing.Pipe(duplex=False)
        arrived = threading.Event()
        handler = logger.add(lambda m: arrived.set(), level=0, format="{message}",
                             filter=lambda r: r["message"] == "still flowing")
        logger.enable("jobkit")
        line = Line("INFO", 20, "still flowing", 0.0, 0.0, None, "jobs", "f", 1, "jobs",
                    "jobs.py", "/srv/jobs.py", 1, "p", 1, "t", {}, None)
        try:
            stalled = relay(stalled_ours, "stalled")
            # a batch's header and its first bytes only, as a process stopped mid-send leaves it
            os.write(stalled_theirs.fileno(), struct.pack("!i", 1000) + b"\x80\x05")
            flowing = relay(ours, "flowing")
            theirs.send_bytes(pickle.dumps([line]))
            assert arrived.wait(timeout=5)
            theirs.close()
            stalled_theirs.close()
            flowing.join(timeout=5)
            stalled.join(timeout=5)
            assert not (flowing.is_alive() or stalled.is_alive())
        finally:
            logger.remove(handler)
            logger.disable("jobkit")


class TestForwarding:
    """A worker process's side: records batched on its pipe."""

    def test_records_are_batched_and_a_warning_goes_at_once(self) -> None:
        """Info lines wait (up to FLUSH_DELAY) to travel together; a warning takes the waiting
        lines with it at once; flush_forwarded sends the rest."""
        import subprocess
        import sys
        import textwrap

        script = textwrap.dedent(
            """
            import multiprocessing, pickle, sys, time
            from loguru import logger
            from jobkit.worker import logpipe
            ours, theirs = multiprocessing.Pipe(duplex=False)
            logpipe.forward_to(theirs)
            logger.bind(job_id="1").info("one")
            logger.bind(job_id="1").info("two")
            early = ours.poll(0)
            logger.bind(job_id="1").warning("three")
            batches = [pickle.loads(ours.recv_bytes())]
            logger.bind(job_id="1").info("four")
            logpipe.flush_forwarded()
            batches.append(pickle.loads(ours.recv_bytes()))
            logger.bind(job_id="1").info("five")
            started = time.monotonic()
            batches.append(pickle.loads(ours.recv_bytes()))  # sent by the flusher thread
            waited = time.monotonic() - started
            print([[line.message for line in batch] for batch in batches], early,
                  waited < 1.0, batches[0][0].extra == {"job_id": "1"})
            """
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == (
            "[['one', 'two', 'three'], ['four'], ['five']] False True True"
        )


def test_a_line_that_cannot_be_pickled_goes_as_text_with_its_batch() -> None:
    """One record with an unpicklable value must not lose the records sent with it."""
    import pickle

    from jobkit.worker.logpipe import Line, _pickled

    good = Line("INFO", 20, "good", 0.0, 0.0, "UTC", "m", "f", 1, "m", "m.py", "/m.py", 1, "p",
                1, "t", {"job_id": "1"}, None)
    bad = good._replace(message="bad", extra={"conn": lambda: None})
    sent = pickle.loads(_pickled([good, bad]))
    assert [line.message for line in sent] == ["good", "bad"]
    assert sent[0].extra == {"job_id": "1"} and sent[1].extra["conn"].startswith("<function")


class TestNothingBuiltForALineNoSinkTakes:
    """An app that logs nothing builds no line per event; one that logs writes every line."""

    def test_no_line_is_built_while_jobkit_is_disabled(
        self, app: JobKit, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        built: list[JobEvent] = []
        real = jobkit.logs.event_line

        def counted(event: JobEvent) -> Any:
            built.append(event)
            return real(event)

        monkeypatch.setattr(jobkit.logs, "event_line", counted)
        logger.disable("jobkit")
        app.run_background_job("Recorder", "record", {"ledger": "", "tag": "a"})  # loguru decides
        app.run_background_job("Recorder", "record", {"ledger": "", "tag": "b"})
        assert len(built) <= 1  # loguru's first decision is its own; after it, none is built
        assert jobkit.logs.events_dropped()

    def test_enabling_jobkit_again_writes_the_lines(self, logged: Logged) -> None:
        logger.disable("jobkit")
        first = logged.app.run_background_job("Probe", "explode", {"message": "m"})
        logger.enable("jobkit")
        assert not jobkit.logs.events_dropped()
        second = logged.app.run_background_job("Probe", "explode", {"message": "m"})
        text = logged.events()
        assert not events_of(text, first)
        assert [line["event"] for line in events_of(text, second)] == ["enqueued"]

    def test_no_sink_drops_and_a_sink_takes(self, logged: Logged) -> None:
        logger.enable("jobkit")
        handlers = logger._core.handlers.copy()  # type: ignore[attr-defined]
        logger._core.handlers = {}  # type: ignore[attr-defined]
        try:
            assert jobkit.logs.events_dropped()
        finally:
            logger._core.handlers = handlers  # type: ignore[attr-defined]
        assert not jobkit.logs.events_dropped()
