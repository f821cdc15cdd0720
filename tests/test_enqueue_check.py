"""One check of an enqueue (jobkit.enqueue.new_jobs) and module-level functions typed exactly
as JobKit's methods."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import make_config
from workers import subprocess_env

import jobkit
from jobkit import ConfigError, InvalidParameters, JobKit
from jobkit.enqueue import CallOptions, new_jobs

#: The module-level functions that run a JobKit method on the default app.
ON_DEFAULT_APP = ("run_background_job", "enqueue_many", "get_job", "get_attempts", "cancel_job",
                  "retry_job", "list_jobs", "run_workflow", "get_workflow", "cancel_workflow")


@pytest.fixture
def app(tmp_path: Path) -> Iterator[JobKit]:
    """An app on a real SQLite file with Recorder configured: priority 4, 2 retries, 300 bytes."""
    config = make_config(tmp_path, jobs={"Recorder": {
        "class": "sample_jobs:Recorder", "priority": 4, "retry_attempts": 2,
        "max_params_bytes": 300}})
    with JobKit(config, load_entrypoints=False) as app:
        yield app


def check(app: JobKit, params: list[object], **options: object) -> list[jobkit.records.NewJob]:
    """new_jobs for Recorder.record with the app's parts, as run_background_job calls it."""
    return new_jobs(app.factory, "Recorder", "record", params,  # type: ignore[arg-type]
                    CallOptions(**options),  # type: ignore[arg-type]
                    settings_of=app._call_settings, now=app.storage.now)


class TestOneCheck:
    def test_a_new_job_is_complete(self, app: JobKit) -> None:
        """new_jobs sets every field: params by name, priority, attempts, policy, JSON text."""
        (job,) = check(app, [["l", "t"]])
        assert job.params == {"ledger": "l", "tag": "t"}
        assert (job.priority, job.max_attempts, job.available_at) == (4, 3, None)
        assert job.params_json == '{"ledger": "l", "tag": "t"}'

    def test_the_call_overrides_and_the_delay_are_in_it(self, app: JobKit) -> None:
        """A call's priority, retries and delay are checked and set in the new job."""
        before = app.storage.now()
        (job,) = check(app, [{"ledger": "l", "tag": "t"}], priority=-3, retry_attempts=0,
                       delay=timedelta(minutes=1))
        assert (job.priority, job.max_attempts) == (-3, 1)
        assert job.available_at is not None
        assert timedelta(seconds=59) < job.available_at - before < timedelta(seconds=61)

    @pytest.mark.parametrize(("options", "message"), [
        ({"delay": -1}, "call: delay: expected"),
        ({"delay": float("nan")}, "call: delay: expected"),
        ({"priority": 2**31}, "priority"),
        ({"retry_attempts": -1}, "retry_attempts"),
    ])
    def test_bad_options_are_refused_before_anything_is_stored(
        self, app: JobKit, options: dict[str, object], message: str
    ) -> None:
        """Each bad option of a call is a ConfigError from the one check; the store stays empty."""
        with pytest.raises(ConfigError, match=message):
            check(app, [{"ledger": "l", "tag": "t"}], **options)
        with pytest.raises(ConfigError, match=message):
            app.run_background_job("Recorder", "record", {"ledger": "l", "tag": "t"},
                                   **options)  # type: ignore[arg-type]
        assert app.storage.count() == 0

    def test_params_over_the_size_are_refused(self, app: JobKit) -> None:
        """Params over max_params_bytes are InvalidParameters naming the size and the bound."""
        with pytest.raises(InvalidParameters, match=r"params: \d+ bytes of JSON, over "
                                                    r"max_params_bytes \(300\)"):
            check(app, [{"ledger": "l", "tag": "é" * 200}])

    def test_the_app_stores_what_the_check_returns(self, app: JobKit) -> None:
        """run_background_job stores the new job as new_jobs made it, field for field."""
        (expected,) = check(app, [{"ledger": "l", "tag": "t"}], priority=9, retry_attempts=1)
        stored = app.get_job(app.run_background_job(
            "Recorder", "record", {"ledger": "l", "tag": "t"}, priority=9, retry_attempts=1))
        assert (stored.name, stored.method, stored.params, stored.priority, stored.max_attempts,
                stored.policy) == (expected.name, expected.method, expected.params,
                                   expected.priority, expected.max_attempts, expected.policy)


class TestModuleLevelSignatures:
    @pytest.mark.parametrize("name", ON_DEFAULT_APP)
    def test_same_signature_as_the_method(self, name: str) -> None:
        """jobkit.NAME takes exactly what JobKit.NAME takes (without self)."""
        method = inspect.signature(getattr(JobKit, name))
        without_self = method.replace(parameters=list(method.parameters.values())[1:])
        assert inspect.signature(getattr(jobkit, name)) == without_self

    @pytest.mark.parametrize("name", ["run_background_job", "enqueue_many"])
    def test_options_are_keyword_only_and_named(self, name: str) -> None:
        """The options of an enqueue are keyword-only; no **options swallows a misspelled one."""
        parameters = inspect.signature(getattr(jobkit, name)).parameters.values()
        kinds = {p.name: p.kind for p in parameters}
        assert inspect.Parameter.VAR_KEYWORD not in kinds.values()
        for option in ("priority", "delay", "retry_attempts", "retry_delay", "timeout"):
            assert kinds[option] is inspect.Parameter.KEYWORD_ONLY

    def test_mypy_checks_callers(self, tmp_path: Path) -> None:
        """mypy finds a misspelled option and a wrong type in a call of jobkit's functions."""
        caller = tmp_path / "caller.py"
        caller.write_text(textwrap.dedent("""
            import jobkit
            jobkit.run_background_job("Email", "send", {}, priorty=5)
            jobkit.enqueue_many("Email", "send", [{}], delay="soon")
        """))
        result = subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
             "--cache-dir", str(tmp_path / "cache"), str(caller)],
            capture_output=True, text=True, env=subprocess_env(), timeout=300,
        )
        assert result.returncode == 1, result.stdout + result.stderr
        assert 'Unexpected keyword argument "priorty"' in result.stdout
        assert 'Argument "delay" has incompatible type "str"' in result.stdout
