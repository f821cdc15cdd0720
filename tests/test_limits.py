"""Every duration and count a user can set has documented bounds (jobkit/limits.py), checked by
`jobkit check`, at start-up and at enqueue; values read back from a store are clamped to them."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from click.testing import CliRunner
from conftest import config_data

from jobkit import ConfigError, Job, JobKit, Retry, limits
from jobkit.cli import main
from jobkit.config import Config, DashboardSettings, JobSettings, WorkerSettings, load_config
from jobkit.config_yaml import CHECK, Invalid
from jobkit.limits import MAX_DELAY, Bound
from jobkit.records import RetryPolicy
from jobkit.retries import retry_delay

DOCS = Path(__file__).parent.parent / "docs" / "configuration.md"

#: The first name in each row of the bounds table in docs/configuration.md -> its bound.
DOCUMENTED: dict[str, Bound] = {
    "retry_attempts": limits.RETRY_ATTEMPTS,
    "retry_delay": limits.DELAY,
    "max_delay": limits.MAX_DELAY_SETTING,
    "jitter": limits.JITTER,
    "timeout": limits.TIMEOUT,
    "priority": limits.PRIORITY,
    "max_params_bytes": limits.PARAMS_BYTES,
    "max_crashes": limits.MAX_CRASHES,
    "worker.concurrency": limits.CONCURRENCY,
    "worker.poll_interval": limits.POLL_INTERVAL,
    "worker.lease": limits.LEASE,
    "worker.heartbeat": limits.HEARTBEAT,
    "worker.shutdown_grace": limits.SHUTDOWN_GRACE,
    "worker.kill_grace": limits.KILL_GRACE,
    "worker.requeue_interval": limits.REQUEUE_INTERVAL,
    "worker.prefetch": limits.PREFETCH,
    "worker.async_concurrency": limits.ASYNC_CONCURRENCY,
    "dashboard.session_seconds": limits.SESSION_SECONDS,
    # the notifiers' and the Email job's network timeout
    "webhook": limits.NETWORK_TIMEOUT,
    "jobkit prune --older-than": limits.PRUNE_AGE,
    "jobkit prune --batch-size": limits.PRUNE_BATCH,
}

#: Far above every bound: a timeout of 31,700 years.
HUGE = 1_000_000_000_000


def bounds_table() -> dict[str, tuple[str, str]]:
    """The bounds table of docs/configuration.md: first named setting -> (lowest, highest)."""
    section = DOCS.read_text().split("### Bounds", 1)[1].split("\n#", 1)[0]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        names = re.findall(r"`([^`]+)`", cells[0]) if len(cells) == 3 else []
        if names and not cells[0].startswith("---"):
            rows[names[0]] = (cells[1], cells[2])
    return rows


def cell(bound: Bound, which: str) -> str:
    """How the table writes a bound's lowest or highest value."""
    value = bound.low if which == "low" else bound.high
    text = f"{value:,.0f}".replace(",", "") if value == int(value) else f"{value:g}"
    if which == "low":
        return f"> {text}" if bound.above else text
    return f"{text} ({bound.span})" if bound.span else text


def numeric_fields(cls: type) -> Iterator[tuple[str, Any]]:
    """The fields of a settings class that hold a number, with their rule."""
    for field in attrs.fields(cls):
        if CHECK in field.metadata and ("int" in str(field.type) or "float" in str(field.type)):
            yield field.name, field.metadata[CHECK]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[JobKit]:
    """An app with the sample jobs on a fresh SQLite file."""
    application = JobKit(Config.from_dict(config_data(tmp_path)), load_entrypoints=False)
    yield application
    application.close()


class TestDocumented:
    def test_the_docs_table_is_the_limits_module(self) -> None:
        """Each row of the bounds table in docs/configuration.md says what limits.py holds."""
        table = bounds_table()
        assert table.keys() == DOCUMENTED.keys()
        for name, bound in DOCUMENTED.items():
            assert table[name] == (cell(bound, "low"), cell(bound, "high")), name

    @pytest.mark.parametrize("cls", [JobSettings, WorkerSettings, DashboardSettings])
    def test_every_numeric_setting_has_an_upper_bound_in_the_table(self, cls: type) -> None:
        """Each number of defaults:, worker: and dashboard: refuses 1e12 and is documented."""
        section = {WorkerSettings: "worker.", DashboardSettings: "dashboard."}.get(cls, "")
        fields = dict(numeric_fields(cls))
        assert fields
        for name, rule in fields.items():
            for value in (HUGE, float(HUGE), -HUGE, 10**400, float("inf"), float("nan")):
                with pytest.raises(Invalid):
                    rule(value)
            assert f"{section}{name}" in DOCUMENTED, name


class TestCheckedWhereGiven:
    def test_the_file_names_file_line_and_key(self, tmp_path: Path) -> None:
        """A huge timeout, retry delay and retry count in jobs.yaml are each refused with the
        file, the line and the key."""
        path = tmp_path / "jobs.yaml"
        path.write_text("defaults:\n  retry_delay: 1000000000000\njobs:\n  Recorder:\n"
                        "    timeout: 1000000000000\n    retry_attempts: 100000\n")
        with pytest.raises(ConfigError) as info:
            load_config(path, environ={})
        assert info.value.errors == [
            f"{path}:2: defaults.retry_delay: expected a number >= 0 and <= 315360000 "
            "(10 years), got 1000000000000",
            f"{path}:5: jobs.Recorder.timeout: expected a number > 0 and <= 604800 (7 days), "
            "got 1000000000000",
            f"{path}:6: jobs.Recorder.retry_attempts: expected an integer >= 0 and <= 5000, "
            "got 100000",
        ]

    def test_the_environment_names_the_variable(self) -> None:
        """JOBKIT_DEFAULTS__TIMEOUT=1000000000000 is refused naming the variable."""
        with pytest.raises(ConfigError) as info:
            load_config(environ={"JOBKIT_DEFAULTS__TIMEOUT": str(HUGE)})
        assert info.value.errors == [
            "environment JOBKIT_DEFAULTS__TIMEOUT: expected a number > 0 and <= 604800 (7 days), "
            "got 1000000000000"
        ]

    def test_jobkit_check_reports_it(self, tmp_path: Path) -> None:
        """`jobkit check` lists the problem naming the variable and exits 1, no traceback."""
        path = tmp_path / "jobs.yaml"
        path.write_text(yaml.safe_dump(config_data(tmp_path)))
        result = CliRunner().invoke(main, ["--config", str(path), "check"],
                                    env={"JOBKIT_WORKER__LEASE": "1.0e+12"})
        assert result.exit_code == 1, result.output
        assert "  environment JOBKIT_WORKER__LEASE: expected a number > 0 and <= 86400 (1 day)" \
            in result.output
        assert "Traceback" not in result.output

    def test_a_package_default_is_refused_at_check_and_enqueue(self, app: JobKit) -> None:
        """A job class whose defaults hold a huge timeout is reported by app.check() and
        refused at enqueue, naming the package's defaults."""

        class Forever(Job):
            methods = ("handle",)
            defaults = {"timeout": HUGE}

            def handle(self) -> None: ...

        app.register("Forever", Forever)
        assert any("job 'Forever' defaults: timeout: expected a number > 0 and <= 604800"
                   in problem for problem in app.check())
        with pytest.raises(ConfigError, match="Forever' defaults: timeout"):
            app.run_background_job("Forever")
        assert app.list_jobs() == []

    @pytest.mark.parametrize(("option", "value"), [
        ("timeout", HUGE), ("timeout", 7 * 24 * 3600 + 1), ("retry_delay", float(HUGE)),
        ("retry_attempts", 5001), ("priority", 2**31), ("delay", float(HUGE)),
        ("delay", timedelta(days=3651)),
    ])
    def test_a_call_argument_is_refused_by_name(
        self, app: JobKit, ledger: str, option: str, value: Any
    ) -> None:
        """run_background_job and enqueue_many refuse an out-of-bounds option naming it
        (`call: <option>: ...`), and store nothing."""
        params = {"ledger": ledger, "tag": "t"}
        with pytest.raises(ConfigError, match=f"call: {option}: expected"):
            app.run_background_job("Recorder", "record", params, **{option: value})
        with pytest.raises(ConfigError, match=f"call: {option}: expected"):
            app.enqueue_many("Recorder", "record", [params], **{option: value})
        assert app.list_jobs() == []

    def test_the_highest_values_are_accepted(self, app: JobKit, ledger: str) -> None:
        """The bounds themselves are valid: a 7-day timeout, 5000 retries, a 10-year delay."""
        job_id = app.run_background_job(
            "Recorder", "record", {"ledger": ledger, "tag": "t"}, timeout=7 * 24 * 3600,
            retry_attempts=5000, retry_delay=MAX_DELAY, delay=MAX_DELAY, priority=2**31 - 1)
        record = app.get_job(job_id)
        assert (record.max_attempts, record.policy.timeout) == (5001, 7 * 24 * 3600)

    def test_retry_delay_is_bounded(self) -> None:
        """Retry(delay=...) refuses more than ten years; ten years is fine."""
        with pytest.raises(ValueError, match=r"Retry\(delay=...\) must be a number >= 0 and "
                                             r"<= 315360000 \(10 years\), got 1000000000000.0"):
            Retry(delay=1e12)
        assert Retry(delay=MAX_DELAY).delay == MAX_DELAY

    def test_a_notifier_timeout_is_bounded(self, tmp_path: Path) -> None:
        """A webhook notifier's timeout over 10 minutes is a ConfigError naming the entry."""
        entry = {"plugin": "webhook", "url": "http://127.0.0.1:9/hook", "timeout": HUGE}
        config = Config.from_dict(config_data(tmp_path, notifications=[entry]))
        with pytest.raises(ConfigError, match=r"timeout must be a number > 0 and <= 600"):
            JobKit(config).close()


class TestCommands:
    @pytest.mark.parametrize("args", [
        ["worker", "-n", "1025"],
        ["prune", "--older-than", "99999999999w"],
        ["prune", "--older-than", "1d", "--batch-size", "99999999999999999999"],
        ["run", "Recorder", "record", "-p", "ledger=l", "-p", "tag=t", "--delay", "1e12"],
        ["run", "Recorder", "record", "-p", "ledger=l", "-p", "tag=t", "--priority", "2147483648"],
    ])
    def test_out_of_range_options_exit_2_in_one_line(self, tmp_path: Path, args: list[str]) -> None:
        """Command options beyond their bounds are usage errors (exit 2, one line), never an
        OverflowError; nothing is stored."""
        path = tmp_path / "jobs.yaml"
        path.write_text(yaml.safe_dump(config_data(tmp_path)))
        result = CliRunner().invoke(main, ["--config", str(path), *args])
        assert result.exit_code == 2, result.output
        assert "Overflow" not in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
        with JobKit(load_config(path, environ={}), load_entrypoints=False) as app:
            assert app.list_jobs() == []


class TestStoredValues:
    def test_a_stored_policy_is_read_within_bounds(self) -> None:
        """Huge values are read as the bound; text, NaN, booleans and timeouts <= 0 as the
        default: nothing the worker computes with can overflow."""
        huge = RetryPolicy(retry_delay=1e400, max_delay=1e300, jitter=7, timeout=1e12)
        assert attrs.astuple(huge) == (MAX_DELAY, "fixed", MAX_DELAY, 1.0, 7 * 24 * 3600)
        odd = RetryPolicy(retry_delay="soon", backoff=3, max_delay=-1,  # type: ignore[arg-type]
                          jitter=float("nan"), timeout=-5)
        assert odd == RetryPolicy()
        assert RetryPolicy(timeout=True, retry_delay=-2).timeout is None  # type: ignore[arg-type]
        assert RetryPolicy(retry_delay=-2).retry_delay == 0
        assert RetryPolicy(timeout=10**400).timeout == 7 * 24 * 3600  # no OverflowError

    @pytest.mark.parametrize("failures", [1, 60, 1100, 10**6, 2**63])
    def test_the_computed_delay_never_exceeds_ten_years(self, failures: int) -> None:
        """Exponential backoff after any number of failures, with jitter, waits at most ten
        years (2.0 ** 1100 would overflow a float)."""
        policy = RetryPolicy(retry_delay=MAX_DELAY, backoff="exponential", jitter=1.0)
        delay = retry_delay(policy, failures, rng=random.Random(failures))
        assert 0 < delay <= MAX_DELAY
