"""The `jobkit` command: every subcommand driven through click and, where it matters, for real."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import jobkit_process, subprocess_env, wait_for, write_config
from loguru import logger
from sample_jobs import HOSTILE, HOSTILE_SHOWN, Hostile, read_ledger

from jobkit import JobKit, JobStatus
from jobkit.cli import main
from jobkit.worker import run_until_empty

ERROR_PREFIX = "jobkit: error: "
#: Every subcommand, each of which must have help (and a test of it below).
COMMANDS = (
    "worker", "run", "status", "list", "cancel", "retry", "jobs", "check", "prune", "migrate",
    "demo", "dashboard", "queues", "queue", "schedules", "workflow",
)


def run_worker_for(waiter: subprocess.Popen[str], tmp_path: Path, config: Path) -> tuple[str, str]:
    """Once the waiting `run --wait` has stored its job, run a burst worker; return what the
    waiter printed."""
    try:
        with open_app(config) as app:
            wait_for(lambda: len(app.list_jobs()) == 1, what="the job to be stored")
        worker = jobkit_process(tmp_path, "--config", str(config), "worker", "--burst", "-n", "1")
        assert worker.returncode == 0, worker.stderr
        return waiter.communicate(timeout=15)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate()


def open_app(config: Path) -> JobKit:
    """An app on the same store and config as the command, to inspect and run its jobs."""
    return JobKit.from_config(config, load_entrypoints=False)


def error_lines(result: Result | subprocess.CompletedProcess[str]) -> list[str]:
    """The non-empty lines the command wrote to stderr."""
    return [line for line in result.stderr.splitlines() if line.strip()]


def start_jobkit(cwd: Path, *args: str) -> subprocess.Popen[str]:
    """Start `python -m jobkit ARGS` without waiting."""
    return subprocess.Popen(
        [sys.executable, "-m", "jobkit", *args],
        cwd=cwd,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def on_terminal(
    cwd: Path, *args: str, during: Callable[[], object] | None = None, timeout: float = 60
) -> tuple[int, str]:
    """Run `python -m jobkit ARGS` with its stdout and stderr on a pseudo-terminal (400 columns
    wide), as a user at a shell would, calling ``during()`` meanwhile; its exit code and what
    it printed there."""
    master, slave = pty.openpty()
    env = {**subprocess_env(), "COLUMNS": "400", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "jobkit", *args],
        cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
    )
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while select.select([master], [], [], timeout)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the process closed its end
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        if during is not None:
            during()
        code = process.wait(timeout=timeout)
        reader.join(timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout)
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


#: Control characters no stored text may put on the terminal (newline and tab excepted); the
#: colours of rich's own styles (``ESC [ ... m``) are allowed.
_RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f](?!\[[0-9;]*m)")


def raw_controls(text: str) -> list[str]:
    """The control characters of ``text`` other than newlines, tabs and colour codes."""
    return _RAW_CONTROL.findall(text.replace("\r\n", "\n"))


def _last_handler_id() -> int:
    handler_id = logger.add(lambda _: None)
    logger.remove(handler_id)
    return handler_id


@pytest.fixture(autouse=True)
def _isolate_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run in tmp_path; undo the CLI's sys.path entries and log sinks; disable jobkit's logger."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = _last_handler_id()
    yield
    for handler_id in range(before + 1, _last_handler_id()):
        with contextlib.suppress(ValueError):
            logger.remove(handler_id)
    logger.disable("jobkit")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The default jobs.yaml of these tests."""
    return write_config(tmp_path)


@pytest.fixture
def cli(config: Path) -> Callable[..., Result]:
    """`jobkit --config <config> ARGS` in-process; stdout and stderr kept apart."""

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(main, ["--config", str(config), *args], env=env)

    return invoke


def enqueue(cli: Callable[..., Result], *args: str) -> str:
    """`jobkit run Recorder ARGS`; the printed job id."""
    result = cli("run", "Recorder", *args)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


class TestHelp:
    def test_main_help(self) -> None:
        """`jobkit --help` exits 0 and lists every subcommand."""
        result = CliRunner().invoke(main, ["--help"])
        assert result.exit_code == 0, result.output
        for command in ("worker", "run", "status", "list", "cancel", "retry", "jobs", "check"):
            assert command in result.stdout

    @pytest.mark.parametrize("command", COMMANDS)
    def test_subcommand_help(self, command: str) -> None:
        """Every subcommand's `--help` exits 0 and shows its usage."""
        result = CliRunner().invoke(main, [command, "--help"])
        assert result.exit_code == 0, result.output
        assert f"Usage: main {command}" in result.stdout or f"{command} [OPTIONS]" in result.stdout

    def test_every_subcommand_is_covered(self) -> None:
        """The help tests above cover every registered subcommand."""
        assert set(main.commands) == set(COMMANDS)


class TestRun:
    def test_prints_an_id_and_stores_the_job(
        self, cli: Callable[..., Result], config: Path, ledger: str
    ) -> None:
        """`run Recorder record -p ledger=... -p tag=x` prints the id of a stored pending job."""
        result = cli("run", "Recorder", "record", "-p", f"ledger={ledger}", "-p", "tag=x")
        assert result.exit_code == 0, result.output
        job_id = result.stdout.strip()
        assert re.fullmatch(r"\S+", job_id), result.stdout
        with open_app(config) as app:
            record = app.get_job(job_id)
        assert (record.name, record.method) == ("Recorder", "record")
        assert record.params == {"ledger": ledger, "tag": "x"}
        assert record.status == JobStatus.PENDING

    def test_param_values_are_json_else_strings(
        self, cli: Callable[..., Result], config: Path
    ) -> None:
        """-p values are parsed as JSON (numbers, lists, bools), bare words stay strings."""
        job_id = enqueue(
            cli,
            "typed",
            "-p",
            "count=3",
            "-p",
            "ratio=0.5",
            "-p",
            "name=ana",
            "-p",
            'tags=["a","b"]',
            "-p",
            "flag=true",
        )
        with open_app(config) as app:
            params = app.get_job(job_id).params
        assert params == {"count": 3, "ratio": 0.5, "name": "ana", "tags": ["a", "b"], "flag": True}

    def test_params_json(self, cli: Callable[..., Result], config: Path, ledger: str) -> None:
        """--params-json gives every parameter as one JSON object."""
        job_id = enqueue(cli, "record", "--params-json", json.dumps({"ledger": ledger, "tag": "j"}))
        with open_app(config) as app:
            assert app.get_job(job_id).params == {"ledger": ledger, "tag": "j"}

    def test_params_json_list_is_positional(
        self, cli: Callable[..., Result], config: Path, ledger: str
    ) -> None:
        """A JSON list in --params-json is taken as positional arguments."""
        job_id = enqueue(cli, "record", "--params-json", json.dumps([ledger, "pos"]))
        with open_app(config) as app:
            assert app.get_job(job_id).params == {"ledger": ledger, "tag": "pos"}

    def test_priority_and_delay(
        self, cli: Callable[..., Result], config: Path, ledger: str
    ) -> None:
        """--priority is stored and --delay pushes available_at that many seconds ahead."""
        before = datetime.now(timezone.utc)
        job_id = enqueue(
            cli,
            "record",
            "-p",
            f"ledger={ledger}",
            "-p",
            "tag=d",
            "--priority",
            "7",
            "--delay",
            "120",
        )
        after = datetime.now(timezone.utc)
        with open_app(config) as app:
            record = app.get_job(job_id)
            assert app.storage.claim("test:1", 5) is None  # not due yet
        assert record.priority == 7
        assert before + timedelta(seconds=119) <= record.available_at
        assert record.available_at <= after + timedelta(seconds=121)

    def test_higher_priority_runs_first(
        self, cli: Callable[..., Result], config: Path, ledger: str
    ) -> None:
        """Jobs enqueued with --priority run highest first."""
        for tag, priority in (("low", "1"), ("high", "9"), ("mid", "5")):
            enqueue(
                cli, "record", "-p", f"ledger={ledger}", "-p", f"tag={tag}", "--priority", priority
            )
        with open_app(config) as app:
            run_until_empty(app, timeout=15)
        assert [entry["tag"] for entry in read_ledger(ledger)] == ["high", "mid", "low"]

    def test_retry_attempts_override(
        self, cli: Callable[..., Result], config: Path, ledger: str
    ) -> None:
        """--retry-attempts sets the job's max_attempts to 1 + N."""
        job_id = enqueue(cli, "fail", "-p", f"ledger={ledger}", "--retry-attempts", "4")
        with open_app(config) as app:
            assert app.get_job(job_id).max_attempts == 5

    def test_invalid_params_fail_with_one_line(
        self, cli: Callable[..., Result], config: Path, ledger: str
    ) -> None:
        """A wrongly typed parameter: exit 1, one error line naming it; nothing stored."""
        result = cli("run", "Recorder", "record", "-p", f"ledger={ledger}", "-p", "tag=5")
        assert result.exit_code == 1, result.output
        (line,) = error_lines(result)
        assert line.startswith(ERROR_PREFIX)
        assert "tag" in line and "Traceback" not in result.output
        assert result.stdout == ""
        with open_app(config) as app:
            assert app.list_jobs() == []

    def test_missing_param_names_it(self, cli: Callable[..., Result], ledger: str) -> None:
        """A missing required parameter: exit 1, one line naming the parameter."""
        result = cli("run", "Recorder", "record", "-p", f"ledger={ledger}")
        assert result.exit_code == 1, result.output
        (line,) = error_lines(result)
        assert line.startswith(ERROR_PREFIX) and "tag" in line and "missing" in line

    def test_method_may_be_left_out_when_there_is_one(
        self, cli: Callable[..., Result], config: Path
    ) -> None:
        """`run Slow` runs Slow's only approved method."""
        result = cli("run", "Slow", "-p", "seconds=0")
        assert result.exit_code == 0, result.output
        with open_app(config) as app:
            assert app.get_job(result.stdout.strip()).method == "slow_first"

    def test_method_left_out_with_several_is_a_usage_error(
        self, cli: Callable[..., Result], config: Path
    ) -> None:
        """`run Recorder` (several methods): exit 2, one line naming them; nothing stored."""
        result = cli("run", "Recorder")
        assert result.exit_code == 2, result.output
        (line,) = error_lines(result)
        assert line.startswith(ERROR_PREFIX) and "record" in line and "typed" in line
        with open_app(config) as app:
            assert app.list_jobs() == []

    def test_json_prints_the_id(self, cli: Callable[..., Result], config: Path) -> None:
        """`run --json` prints {"id": ...}."""
        result = cli("run", "Slow", "-p", "seconds=0", "--json")
        assert result.exit_code == 0, result.output
        job_id = json.loads(result.stdout)["id"]
        with open_app(config) as app:
            assert app.get_job(job_id).name == "Slow"

    def test_unknown_job(self, cli: Callable[..., Result]) -> None:
        """An unregistered job name: exit 1, one line naming it."""
        result = cli("run", "NoSuchJob")
        assert result.exit_code == 1, result.output
        (line,) = error_lines(result)
        assert line.startswith(ERROR_PREFIX) and "NoSuchJob" in line

    def test_method_not_approved(self, cli: Callable[..., Result]) -> None:
        """A method outside the approved list: exit 1, one line naming the method."""
        result = cli("run", "Recorder", "helper")
        assert result.exit_code == 1, result.output
        (line,) = error_lines(result)
        assert line.startswith(ERROR_PREFIX) and "'helper'" in line

    def test_bad_params_json_is_a_usage_error(self, cli: Callable[..., Result]) -> None:
        """--params-json that is not JSON: a usage error (exit 2) naming --params-json."""
        result = cli("run", "Recorder", "record", "--params-json", "[1")
        assert "--params-json" in result.stderr, result.output
        assert "unexpected" not in result.stderr, result.stderr
        assert result.exit_code == 2, result.output

    def test_param_without_equals_is_a_usage_error(self, cli: Callable[..., Result]) -> None:
        """-p without KEY=VALUE: a usage error (exit 2) naming the bad value."""
        result = cli("run", "Recorder", "record", "-p", "novalue")
        assert "novalue" in result.stderr, result.output
        assert "unexpected" not in result.stderr, result.stderr
        assert result.exit_code == 2, result.output

    @pytest.mark.parametrize(
        "args", [["run"], ["list", "--status", "bogus"], ["nosuch"], ["run", "--priority", "x"]]
    )
    def test_usage_errors_are_one_line(self, cli: Callable[..., Result], args: list[str]) -> None:
        """Click's usage errors too are one `jobkit: error:` line, pointing at --help; exit 2."""
        result = cli(*args)
        assert result.exit_code == 2, result.output
        (line,) = error_lines(result)
        assert line.startswith(ERROR_PREFIX) and "--help" in line, line


@pytest.mark.slow
class TestRealProcess:
    def test_bad_params_no_traceback(self, tmp_path: Path, config: Path, ledger: str) -> None:
        """A real `python -m jobkit run` with a bad param: exit 1, exactly one stderr line."""
        result = jobkit_process(
            tmp_path,
            "--config",
            str(config),
            "run",
            "Recorder",
            "record",
            "-p",
            f"ledger={ledger}",
            "-p",
            "tag=[1, 2]",
        )
        assert result.returncode == 1, result
        assert "Traceback" not in result.stderr + result.stdout
        (line,) = error_lines(result)
        assert line.startswith(ERROR_PREFIX) and "tag" in line
        assert result.stdout == ""

    def test_bad_config_no_traceback(self, tmp_path: Path) -> None:
        """A real process on a jobs.yaml with an unknown key: exit 2, file:line, no traceback."""
        bad = tmp_path / "bad.yaml"
        bad.write_text(f"storage: sqlite:///{tmp_path / 'x.db'}\nbogus: 1\n")
        result = jobkit_process(tmp_path, "--config", str(bad), "list")
        assert result.returncode == 2, result
        assert "Traceback" not in result.stderr + result.stdout
        lines = error_lines(result)
        assert lines[0].startswith(ERROR_PREFIX)
        assert f"{bad}:2" in result.stderr and "bogus" in result.stderr

    def test_run_prints_only_the_id(self, tmp_path: Path, config: Path, ledger: str) -> None:
        """A real `jobkit run` prints the id on stdout and writes no log records to stderr."""
        result = jobkit_process(
            tmp_path,
            "--config",
            str(config),
            "run",
            "Recorder",
            "record",
            "-p",
            f"ledger={ledger}",
            "-p",
            "tag=x",
        )
        assert result.returncode == 0, result
        assert re.fullmatch(r"\S+\n", result.stdout), result.stdout
        assert result.stderr == "", result.stderr

    def test_wait_prints_the_result(self, tmp_path: Path, config: Path, ledger: str) -> None:
        """`run --wait` while a burst worker runs prints the id, then the JSON result; exit 0."""
        waiter = start_jobkit(
            tmp_path,
            "--config",
            str(config),
            "run",
            "Recorder",
            "record",
            "-p",
            f"ledger={ledger}",
            "-p",
            "tag=waited",
            "--wait",
        )
        out, err = run_worker_for(waiter, tmp_path, config)
        assert waiter.returncode == 0, err
        job_id, result = out.splitlines()
        assert json.loads(result) == "waited"
        assert [entry["job"] for entry in read_ledger(ledger)] == [job_id]

    def test_wait_on_a_failing_job(self, tmp_path: Path, config: Path, ledger: str) -> None:
        """`run --wait` on a job that fails: exit 1 with one error line naming the failure."""
        waiter = start_jobkit(
            tmp_path,
            "--config",
            str(config),
            "run",
            "Recorder",
            "fail",
            "-p",
            f"ledger={ledger}",
            "--wait",
        )
        out, err = run_worker_for(waiter, tmp_path, config)
        assert waiter.returncode == 1, (out, err)
        job_id = out.strip()
        failures = [line for line in err.splitlines() if line.startswith(ERROR_PREFIX)]
        assert len(failures) == 1, err
        assert f"job {job_id} failed" in failures[0]
        assert "planned failure 1" in failures[0]
        assert "Traceback" not in err


class TestConfigErrors:
    def test_unknown_key_names_file_and_line(self, tmp_path: Path) -> None:
        """An unknown key in jobs.yaml: exit 2, the message names the file, line and key."""
        bad = tmp_path / "jobs.yaml"
        bad.write_text(
            f"storage: sqlite:///{tmp_path / 'x.db'}\n"
            "defaults:\n"
            "  retry_attempts: 1\n"
            "  retyr_delay: 4\n"
        )
        result = CliRunner().invoke(main, ["--config", str(bad), "list"])
        assert result.exit_code == 2, result.output
        assert error_lines(result)[0].startswith(ERROR_PREFIX)
        assert f"{bad}:4" in result.stderr
        assert "retyr_delay" in result.stderr
        assert "Traceback" not in result.output

    def test_missing_config_file(self, tmp_path: Path) -> None:
        """--config naming a missing file: exit 2 naming the file."""
        missing = tmp_path / "nope.yaml"
        result = CliRunner().invoke(main, ["--config", str(missing), "list"])
        assert result.exit_code == 2, result.output
        assert str(missing) in result.stderr


class TestStatus:
    def test_text(self, cli: Callable[..., Result], ledger: str) -> None:
        """`status ID` shows the record's fields, one per line."""
        job_id = enqueue(cli, "record", "-p", f"ledger={ledger}", "-p", "tag=s")
        result = cli("status", job_id)
        assert result.exit_code == 0, result.output
        fields = dict(
            line.strip().split(": ", 1) for line in result.stdout.splitlines() if ": " in line
        )
        assert fields["id"] == job_id
        assert fields["name"] == "Recorder" and fields["method"] == "record"
        assert fields["status"] == "pending"

    def test_text_lists_attempts(
        self, cli: Callable[..., Result], config: Path, ledger: str
    ) -> None:
        """`status ID` of a failed job shows its attempt with the outcome and error."""
        job_id = enqueue(cli, "fail", "-p", f"ledger={ledger}")
        with open_app(config) as app:
            run_until_empty(app, timeout=15)
        result = cli("status", job_id)
        assert result.exit_code == 0, result.output
        assert re.search(r"attempt 1: failed .*planned failure 1", result.stdout), result.stdout

    def test_json(self, cli: Callable[..., Result], config: Path, ledger: str) -> None:
        """`status ID --json` prints one JSON object with the record and its attempts."""
        job_id = enqueue(cli, "record", "-p", f"ledger={ledger}", "-p", "tag=j")
        with open_app(config) as app:
            run_until_empty(app, timeout=15)
        result = cli("status", job_id, "--json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["id"] == job_id
        assert data["status"] == "completed" and data["result"] == "j"
        assert data["params"] == {"ledger": ledger, "tag": "j"}
        assert data["attempts"] == 1
        (attempt,) = data["attempts_history"]
        assert attempt["outcome"] == "succeeded"

    def test_json_masks_secrets(self, cli: Callable[..., Result]) -> None:
        """`status --json` masks secret-looking keys in params, nested ones included."""
        job_id = enqueue(
            cli,
            "typed",
            "--params-json",
            json.dumps(
                {
                    "count": 1,
                    "ratio": 1.0,
                    "name": "n",
                    "tags": [],
                    "extra": {"password": 1234, "api_key": 5678},
                }
            ),
        )
        result = cli("status", job_id, "--json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["params"]["extra"] == {"password": "***", "api_key": "***"}
        assert "1234" not in result.stdout and "5678" not in result.stdout

    def test_unknown_id(self, cli: Callable[..., Result]) -> None:
        """`status 999`: exit 1 with one line naming the id."""
        result = cli("status", "999")
        assert result.exit_code == 1, result.output
        (line,) = error_lines(result)
        assert line.startswith(ERROR_PREFIX) and "999" in line
        assert result.stdout == ""


class TestList:
    @pytest.fixture
    def three_jobs(self, cli: Callable[..., Result], ledger: str) -> list[str]:
        """Three pending jobs, the second one cancelled."""
        ids = [
            enqueue(cli, "record", "-p", f"ledger={ledger}", "-p", f"tag=t{i}") for i in range(3)
        ]
        assert cli("cancel", ids[1]).exit_code == 0
        return ids

    def test_text(self, cli: Callable[..., Result], three_jobs: list[str]) -> None:
        """`list` shows every job, newest first, with its status and name.method."""
        result = cli("list")
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert [line.split()[0] for line in lines] == three_jobs[::-1]
        assert "cancelled" in lines[1] and "pending" in lines[0]
        assert all("Recorder.record" in line for line in lines)

    def test_status_filter(self, cli: Callable[..., Result], three_jobs: list[str]) -> None:
        """`list --status cancelled` shows only the cancelled job."""
        result = cli("list", "--status", "cancelled")
        assert result.exit_code == 0, result.output
        assert [line.split()[0] for line in result.stdout.splitlines()] == [three_jobs[1]]

    def test_json_lines(self, cli: Callable[..., Result], three_jobs: list[str]) -> None:
        """`list --json` prints one JSON object per job."""
        result = cli("list", "--json", "--status", "pending")
        assert result.exit_code == 0, result.output
        records = [json.loads(line) for line in result.stdout.splitlines()]
        assert [r["id"] for r in records] == [three_jobs[2], three_jobs[0]]
        assert all(r["status"] == "pending" and r["name"] == "Recorder" for r in records)

    def test_unknown_status_is_a_usage_error(self, cli: Callable[..., Result]) -> None:
        """`list --status bogus`: exit 2."""
        assert cli("list", "--status", "bogus").exit_code == 2

    def test_empty(self, cli: Callable[..., Result]) -> None:
        """`list` on an empty store, piped (for scripts), prints nothing and exits 0."""
        result = cli("list")
        assert (result.exit_code, result.stdout) == (0, "")
        assert cli("list", "--status", "failed", "--json").stdout == ""

    def test_empty_on_a_terminal_says_so(self, tmp_path: Path, config: Path) -> None:
        """On a terminal, `list` with no job says so, naming the store it looked in."""
        code, shown = on_terminal(tmp_path, "--config", str(config), "list")
        assert code == 0, shown
        assert shown.strip() == f"no jobs in storage sqlite:///{tmp_path / 'jobkit.db'}"

    def test_no_match_on_a_terminal_names_the_filters(
        self, tmp_path: Path, config: Path, three_jobs: list[str]
    ) -> None:
        """On a terminal, `list` whose filters match no job names them."""
        code, shown = on_terminal(
            tmp_path, "--config", str(config), "list", "--status", "failed", "--name", "Recorder"
        )
        assert code == 0, shown
        assert shown.strip().startswith("no jobs match --status failed --name Recorder (storage ")


class TestStoredTextIsEscaped:
    @pytest.fixture
    def hostile_job(self, config: Path) -> str:
        """A failed job whose error and params hold terminal escapes, markup and CR/LF."""
        with open_app(config) as app:
            app.register("Hostile", Hostile)
            job_id = app.run_background_job("Hostile", "explode", {"text": HOSTILE})
            run_until_empty(app, timeout=15)
            assert app.get_job(job_id).error == f"ValueError: {HOSTILE}"
        return job_id

    def test_list_line(self, cli: Callable[..., Result], hostile_job: str) -> None:
        """`list` shows the job on one line, its error escaped as in the log files."""
        result = cli("list")
        assert result.exit_code == 0, result.output
        (line,) = result.stdout.splitlines()
        assert line.startswith(f"{hostile_job:>8}  failed") and line.endswith(HOSTILE_SHOWN)
        assert raw_controls(result.stdout) == []

    def test_status(self, cli: Callable[..., Result], hostile_job: str) -> None:
        """`status` shows the error and every attempt's error on one line each, escaped."""
        result = cli("status", hostile_job)
        assert result.exit_code == 0, result.output
        assert raw_controls(result.stdout) == []
        lines = result.stdout.splitlines()
        assert f"            error: ValueError: {HOSTILE_SHOWN}" in lines
        attempt = next(line for line in lines if line.startswith("  attempt 1: failed "))
        assert attempt.endswith(HOSTILE_SHOWN)
        assert not any(line.startswith("second line") for line in lines)

    @pytest.mark.parametrize("command", [("list", "--json"), ("status", "--json")])
    def test_json_keeps_the_text(
        self, cli: Callable[..., Result], hostile_job: str, command: tuple[str, ...]
    ) -> None:
        """`--json` output is valid JSON that holds the text exactly, with no raw control
        character on the terminal."""
        args = [*command, hostile_job] if command[0] == "status" else list(command)
        result = cli(*args)
        assert result.exit_code == 0, result.output
        assert raw_controls(result.stdout) == []
        record = json.loads(result.stdout)
        assert record["error"] == f"ValueError: {HOSTILE}"
        assert record["params"] == {"text": HOSTILE}

    def test_table_on_a_terminal(self, tmp_path: Path, config: Path, hostile_job: str) -> None:
        """On a terminal, `list`'s table shows the error escaped, its markup as written."""
        code, shown = on_terminal(tmp_path, "--config", str(config), "list")
        assert code == 0, shown
        assert raw_controls(shown) == [], shown
        assert HOSTILE_SHOWN in shown

    def test_wait_shows_a_progress_message_escaped(self, tmp_path: Path) -> None:
        """`run --wait` on a terminal shows the job's progress message escaped and as written
        (markup such as `[/oops]` once crashed the progress bar)."""
        config = write_config(tmp_path, jobs={"Hostile": {"class": "sample_jobs:Hostile"}})

        def run_a_worker() -> None:
            with open_app(config) as app:
                wait_for(lambda: len(app.list_jobs()) == 1, what="the job to be stored")
            worker = jobkit_process(tmp_path, "--config", str(config), "worker", "--burst")
            assert worker.returncode == 0, worker.stderr

        code, shown = on_terminal(
            tmp_path, "--config", str(config), "run", "Hostile", "report",
            "-p", f"text={HOSTILE} [/oops]", "--wait", during=run_a_worker,
        )
        assert code == 0, shown
        assert f"{HOSTILE_SHOWN} [/oops]" in shown
        assert "\x1b]0;" not in shown and "\x07" not in shown and "\x1b[2J" not in shown

    def test_config_error_names_a_key_escaped(self, tmp_path: Path) -> None:
        """A jobs.yaml key with escapes in it is named escaped, on the error's one line."""
        bad = tmp_path / "bad.yaml"
        bad.write_text(f'storage: sqlite:///{tmp_path / "x.db"}\n"bo\\e[2Jgus\\r\\nx": 1\n')
        result = CliRunner().invoke(main, ["--config", str(bad), "list"])
        assert result.exit_code == 2, result.output
        (line,) = error_lines(result)
        assert "bo\\x1b[2Jgus\\r\\nx" in line and raw_controls(result.stderr) == []


class TestHostileInput:
    @pytest.mark.parametrize(
        ("args", "hint"),
        [
            (["--params-json", "[" * 50_000], "--params-json"),
            (["--params-json", '{"a": ' * 50_000], "--params-json"),
            (["--params-json", "[" * 65 + "]" * 65], "--params-json"),
            (["-p", "ledger=x", "-p", "tag=" + "[" * 50_000], "--param"),
            (["-p", "ledger=x", "-p", "tag=" + "[" * 64 + "]" * 64], "--param"),
        ],
    )
    def test_deep_params_are_a_usage_error(
        self, cli: Callable[..., Result], config: Path, args: list[str], hint: str
    ) -> None:
        """Params nested past the limit enqueue applies: exit 2, one line naming the option."""
        result = cli("run", "Recorder", "record", *args)
        assert result.exit_code == 2, result.output
        (line,) = error_lines(result)
        assert line.startswith(ERROR_PREFIX) and hint in line
        assert "nest deeper than 64 levels" in line and len(line) < 300
        with open_app(config) as app:
            assert app.list_jobs() == []

    def test_params_up_to_the_limit_pass(
        self, cli: Callable[..., Result], config: Path
    ) -> None:
        """Params nested 64 levels deep (the params object counted) pass the CLI to enqueue's
        checks (here: `tag` must be a string, exit 1)."""
        nested = "[" * 63 + "]" * 63
        for args in (["-p", f"tag={nested}"], ["--params-json", f'{{"tag": {nested}}}']):
            result = cli("run", "Recorder", "record", "-p", "ledger=x", *args)
            assert result.exit_code == 1, result.output
            assert "tag" in result.stderr and "nest deeper" not in result.stderr

    @pytest.mark.parametrize(
        "args",
        [
            pytest.param(["list", "--limit", "99999999999999999999"], id="list-limit"),
            pytest.param(["list", "--offset", "99999999999999999999"], id="list-offset"),
            pytest.param(["prune", "--older-than", "1d", "--batch-size", "99999999999999999999"],
                         id="prune-batch-size"),
            pytest.param(["prune", "--older-than", "99999999999999999999w"], id="prune-age"),
            pytest.param(["prune", "--older-than", "9" * 400 + "d"], id="prune-age-inf"),
            pytest.param(["worker", "-n", "99999999999999999999"], id="worker-processes"),
            pytest.param(["demo", "--workers", "99999999999999999999", "--dir", "unused"],
                         id="demo-workers"),
        ],
    )
    def test_huge_numbers_are_a_usage_error(
        self, cli: Callable[..., Result], args: list[str]
    ) -> None:
        """A numeric option past its bound: exit 2 and one line naming it, nothing started."""
        result = cli(*args)
        assert result.exit_code == 2, result.output
        (line,) = error_lines(result)
        assert line.startswith(ERROR_PREFIX) and args[-1 if args[0] != "demo" else 2] in line

    def test_deep_params_in_a_real_process(self, tmp_path: Path, config: Path) -> None:
        """A real `jobkit run` with 50,000 nested lists: exit 2, one line, no traceback."""
        result = jobkit_process(tmp_path, "--config", str(config), "run", "Recorder", "record",
                                "--params-json", "[" * 50_000)
        assert result.returncode == 2, result
        assert len(error_lines(result)) == 1 and "Traceback" not in result.stderr

    def test_alias_bomb_in_jobs_yaml(self, tmp_path: Path) -> None:
        """`jobkit check` lists an alias bomb as a problem and `jobkit jobs` refuses it: exit 2,
        one line with file and line, no memory blow-up."""
        from test_config import alias_bomb

        bomb = tmp_path / "bomb.yaml"
        bomb.write_text(alias_bomb())
        check = CliRunner().invoke(main, ["--config", str(bomb), "check"])
        assert check.exit_code == 1 and f"{bomb}:8: aliases repeat" in check.stderr
        jobs = jobkit_process(tmp_path, "--config", str(bomb), "jobs")
        assert jobs.returncode == 2, jobs
        (line,) = error_lines(jobs)
        assert f"{bomb}:8: aliases repeat more than 10,000 values" in line


class TestCancel:
    def test_twice(self, cli: Callable[..., Result], config: Path, ledger: str) -> None:
        """The first cancel succeeds; the second exits 1 with one error line."""
        job_id = enqueue(cli, "record", "-p", f"ledger={ledger}", "-p", "tag=c")
        first = cli("cancel", job_id)
        assert first.exit_code == 0, first.output
        assert job_id in first.stdout
        with open_app(config) as app:
            assert app.get_job(job_id).status == JobStatus.CANCELLED
        second = cli("cancel", job_id)
        assert second.exit_code == 1, second.output
        (line,) = error_lines(second)
        assert line.startswith(ERROR_PREFIX) and job_id in line

    def test_unknown_id(self, cli: Callable[..., Result]) -> None:
        """`cancel 999`: exit 1 naming the id."""
        result = cli("cancel", "999")
        assert result.exit_code == 1
        (line,) = error_lines(result)
        assert "999" in line

    def test_json(self, cli: Callable[..., Result], ledger: str) -> None:
        """`cancel --json` prints the job's id, status and whether it was cancelled; a second
        cancel says false and exits 1."""
        job_id = enqueue(cli, "record", "-p", f"ledger={ledger}", "-p", "tag=c")
        first = cli("cancel", job_id, "--json")
        assert first.exit_code == 0, first.output
        data = json.loads(first.stdout)
        assert (data["id"], data["status"], data["cancelled"]) == (job_id, "cancelled", True)
        second = cli("cancel", job_id, "--json")
        assert second.exit_code == 1
        assert json.loads(second.stdout)["cancelled"] is False


class TestPrune:
    def test_deletes_only_old_finished_jobs(
        self, cli: Callable[..., Result], config: Path, ledger: str
    ) -> None:
        """`prune --older-than` deletes finished jobs older than the duration, nothing else."""
        old = enqueue(cli, "record", "-p", f"ledger={ledger}", "-p", "tag=old")
        waiting = enqueue(cli, "record", "-p", f"ledger={ledger}", "-p", "tag=w", "--delay", "60")
        assert cli("cancel", old).exit_code == 0
        kept = cli("prune", "--older-than", "1h")
        assert kept.exit_code == 0, kept.output
        assert kept.stdout.startswith("deleted 0 finished job(s)")
        result = cli("prune", "--older-than", "0s", "--batch-size", "1")
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("deleted 1 finished job(s)")
        with open_app(config) as app:
            assert [r.id for r in app.list_jobs()] == [waiting]

    def test_json(self, cli: Callable[..., Result], ledger: str) -> None:
        """`prune --json` prints how many were deleted and the cutoff."""
        assert (
            cli("cancel", enqueue(cli, "record", "-p", f"ledger={ledger}", "-p", "tag=o")).exit_code
            == 0
        )
        result = cli("prune", "--older-than", "0s", "--json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["deleted"] == 1
        assert datetime.fromisoformat(data["finished_before"]) <= datetime.now(timezone.utc)

    @pytest.mark.parametrize("value", ["7x", "d", "-1d", "soon"])
    def test_bad_duration_is_a_usage_error(self, cli: Callable[..., Result], value: str) -> None:
        """A duration that is not like 7d exits 2 naming the option."""
        result = cli("prune", "--older-than", value)
        assert result.exit_code == 2
        assert "--older-than" in result.output


class TestMigrate:
    def test_sqlite(self, cli: Callable[..., Result], config: Path) -> None:
        """`migrate` creates the schema and prints its version."""
        result = cli("migrate")
        assert result.exit_code == 0, result.output
        assert "schema at version 11" in result.stdout

    def test_postgres(self, tmp_path: Path, empty_postgres_url: str) -> None:
        """`migrate` on a PostgreSQL URL creates the tables there."""
        import psycopg

        config = write_config(tmp_path, storage=empty_postgres_url)
        result = CliRunner().invoke(main, ["migrate", "--config", str(config)])
        assert result.exit_code == 0, result.output
        from jobkit.storage import postgres_db
        from jobkit.storage.sqlfile import migrations

        latest = migrations(postgres_db.queries(), "postgres.sql")[-1][0]
        assert f"schema at version {latest}" in result.stdout
        with psycopg.connect(empty_postgres_url) as conn:
            assert conn.execute(b"SELECT count(*) FROM jobkit_jobs").fetchone() == (0,)

    def test_unreachable_server_is_one_line(self, tmp_path: Path) -> None:
        """An unreachable PostgreSQL server: exit 1, one error line, password hidden."""
        from pg_server import free_port

        url = f"postgresql://ana:s3cret@127.0.0.1:{free_port()}/db?connect_timeout=1"
        config = write_config(tmp_path, storage=url)
        result = CliRunner().invoke(main, ["migrate", "--config", str(config)])
        assert result.exit_code == 1, result.output
        (line,) = error_lines(result)
        assert line.startswith(ERROR_PREFIX) and "127.0.0.1" in line and "s3cret" not in line


class TestRetry:
    def test_failed_job(self, cli: Callable[..., Result], config: Path, ledger: str) -> None:
        """`retry` puts a failed job back to pending and it runs again."""
        job_id = enqueue(cli, "fail", "-p", f"ledger={ledger}", "-p", "times=1")
        with open_app(config) as app:
            run_until_empty(app, timeout=15)
            assert app.get_job(job_id).status == JobStatus.FAILED
        result = cli("retry", job_id)
        assert result.exit_code == 0, result.output
        assert job_id in result.stdout
        with open_app(config) as app:
            assert app.get_job(job_id).status == JobStatus.PENDING
            run_until_empty(app, timeout=15)
            record = app.get_job(job_id)
        assert (record.status, record.result) == (JobStatus.COMPLETED, "recovered")

    def test_json(self, cli: Callable[..., Result], config: Path, ledger: str) -> None:
        """`retry --json` prints the job back in pending."""
        job_id = enqueue(cli, "record", "-p", f"ledger={ledger}", "-p", "tag=r")
        assert cli("cancel", job_id).exit_code == 0
        result = cli("retry", job_id, "--json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert (data["id"], data["status"], data["retried"]) == (job_id, "pending", True)

    def test_pending_job_is_refused(self, cli: Callable[..., Result], ledger: str) -> None:
        """`retry` on a pending job: exit 1 with one error line."""
        job_id = enqueue(cli, "record", "-p", f"ledger={ledger}", "-p", "tag=p")
        result = cli("retry", job_id)
        assert result.exit_code == 1, result.output
        (line,) = error_lines(result)
        assert line.startswith(ERROR_PREFIX) and job_id in line


class TestJobs:
    def test_lists_methods_and_sources(self, tmp_path: Path) -> None:
        """`jobs` shows Recorder, its approved methods and where each setting came from."""
        config = write_config(
            tmp_path,
            jobs={"Recorder": {"class": "sample_jobs:Recorder", "retry_delay": 7}},
        )
        result = CliRunner().invoke(
            main, ["--config", str(config), "jobs"], env={"JOBKIT_DEFAULTS__TIMEOUT": "9"}
        )
        assert result.exit_code == 0, result.output
        out = result.stdout
        assert re.search(r"^Recorder\s+\(sample_jobs:Recorder; from .*jobs\.yaml:\d+\)", out, re.M)
        for method in ("record(ledger: str, tag: str)", "fail(", "log_lines(text: str)"):
            assert f"  {method}" in out
        assert "helper" not in out and "_private" not in out
        assert re.search(r"retry_attempts = 0\s+\[.*jobs\.yaml:\d+ \(defaults\)\]", out), out
        assert re.search(r"retry_delay = 7\.0\s+\[.*jobs\.yaml:\d+ \(jobs\.Recorder\)\]", out), out
        assert re.search(r"timeout = 9\.0\s+\[environment JOBKIT_DEFAULTS__TIMEOUT\]", out), out
        assert re.search(r"backoff = 'fixed'\s+\[built-in\]", out), out

    def test_settings_are_not_shown_as_the_last_methods(self, tmp_path: Path) -> None:
        """`jobs` puts methods and settings under headers of their own, at the same depth."""
        config = write_config(tmp_path, jobs={"Configured": {
            "class": "sample_jobs:Configured", "options": {"greeting": "Hi"}}})
        result = CliRunner().invoke(main, ["--config", str(config), "jobs"])
        assert result.exit_code == 0, result.output
        block = result.stdout.split("Configured  (", 1)[1].splitlines()[1:]
        block = block[:next((i for i, line in enumerate(block) if not line.startswith(" ")),
                            len(block))]
        assert block[:2] == ["  methods:", "    greet(name: str)"]
        assert block[2] == "  settings:"
        settings = block[3:-1]
        assert settings and all(re.match(r"    \w+ = .*  \[.*\]$", line) for line in settings)
        assert block[-1] == '  options = {"greeting": "Hi", "times": 1}'

    def test_narrowed_methods(self, tmp_path: Path) -> None:
        """`jobs` shows only the methods jobs.yaml keeps."""
        config = write_config(
            tmp_path,
            jobs={"Recorder": {"class": "sample_jobs:Recorder", "methods": ["record"]}},
        )
        result = CliRunner().invoke(main, ["--config", str(config), "jobs"])
        assert result.exit_code == 0, result.output
        assert "  record(" in result.stdout and "  fail(" not in result.stdout


class TestCheckFindings:
    @pytest.mark.parametrize(
        ("overrides", "finding"),
        [
            ({"storage": "redis://localhost/0"}, "no backend serves redis://"),
            (
                {
                    "notifications": [
                        {"plugin": "webhook", "url": "http://127.0.0.1:9/h", "jobs": ["Recorderr"]}
                    ]
                },
                "notifications[0].jobs: no job is registered under the name 'Recorderr'",
            ),
            ({"defaults": {"retry_attempts": -3}}, "defaults.retry_attempts"),
        ],
    )
    def test_exits_1_naming_the_problem(
        self, tmp_path: Path, overrides: dict[str, Any], finding: str
    ) -> None:
        """A storage no backend serves, a filter naming no job, a bad value: exit 1, named."""
        config = write_config(tmp_path, **overrides)
        result = CliRunner().invoke(main, ["--config", str(config), "check"])
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("jobkit: error: configuration problems:")
        assert finding in result.stderr


class TestJobsJson:
    def test_json_lines(self, cli: Callable[..., Result]) -> None:
        """`jobs --json` prints one object per job with methods, settings and their sources."""
        result = cli("jobs", "--json")
        assert result.exit_code == 0, result.output
        jobs = {job["name"]: job for job in map(json.loads, result.stdout.splitlines())}
        recorder = jobs["Recorder"]
        assert recorder["class"] == "sample_jobs:Recorder"
        assert recorder["methods"]["record"] == "record(ledger: str, tag: str)"
        assert recorder["settings"]["retry_attempts"] == 0
        assert recorder["sources"]["retry_attempts"].endswith("(defaults)")
        assert recorder["options"] == {}

    def test_options_shown_with_secrets_masked(self, tmp_path: Path) -> None:
        """`jobs` shows each job's effective options, secrets masked."""
        config = write_config(
            tmp_path,
            jobs={
                "Configured": {"class": "sample_jobs:Configured", "options": {"greeting": "Hi"}},
                "Recorder": {"class": "sample_jobs:Recorder", "options": {"api_token": "s3cr3t"}},
            },
        )
        result = CliRunner().invoke(main, ["--config", str(config), "jobs", "--json"])
        assert result.exit_code == 0, result.output
        jobs = {job["name"]: job for job in map(json.loads, result.stdout.splitlines())}
        assert jobs["Configured"]["options"] == {"greeting": "Hi", "times": 1}
        assert jobs["Recorder"]["options"] == {"api_token": "***"}
        plain = CliRunner().invoke(main, ["--config", str(config), "jobs"])
        assert 'options = {"greeting": "Hi", "times": 1}' in plain.stdout
        assert "s3cr3t" not in plain.stdout


class TestCheck:
    def test_ok(self, cli: Callable[..., Result]) -> None:
        """`check` on a good jobs.yaml exits 0 and says ok with the job count."""
        result = cli("check")
        assert result.exit_code == 0, result.output
        assert re.match(r"ok: \d+ job\(s\), storage sqlite:", result.stdout)  # + installed plugins

    def test_storage_password_is_hidden(self, tmp_path: Path) -> None:
        """`check` names the store with its password hidden, as migrate's docs promise."""
        config = write_config(tmp_path, storage="postgresql://jobs:hunter2@127.0.0.1:1/jobs")
        result = CliRunner().invoke(main, ["--config", str(config), "check"])
        assert result.exit_code == 0, result.output
        assert "storage postgresql://jobs:***@127.0.0.1:1/jobs" in result.stdout
        assert "hunter2" not in result.output

    def test_unknown_job_entry(self, tmp_path: Path) -> None:
        """`check` with a jobs: entry naming no job exits non-zero and names the entry."""
        config = write_config(
            tmp_path,
            jobs={"Recorder": {"class": "sample_jobs:Recorder"}, "Emial": {"retry_attempts": 1}},
        )
        result = CliRunner().invoke(main, ["--config", str(config), "check"])
        assert result.exit_code != 0, result.output
        assert error_lines(result)[0].startswith(ERROR_PREFIX)
        assert "jobs.Emial" in result.stderr
        assert re.search(rf"{re.escape(str(config))}:\d+: jobs\.Emial", result.stderr)


class TestConfigSelection:
    def test_config_option(self, tmp_path: Path, ledger: str) -> None:
        """--config picks the file: the job lands in that file's store."""
        other = tmp_path / "other"
        other.mkdir()
        config = write_config(other, name="custom.yaml")
        result = CliRunner().invoke(
            main,
            [
                "--config",
                str(config),
                "run",
                "Recorder",
                "record",
                "-p",
                f"ledger={ledger}",
                "-p",
                "tag=o",
            ],
        )
        assert result.exit_code == 0, result.output
        assert (other / "jobkit.db").exists() and not (tmp_path / "jobkit.db").exists()
        with open_app(config) as app:
            assert app.get_job(result.stdout.strip()).params["tag"] == "o"

    def test_jobkit_config_env(self, tmp_path: Path, ledger: str) -> None:
        """JOBKIT_CONFIG picks the file when --config is absent."""
        other = tmp_path / "other"
        other.mkdir()
        config = write_config(other, name="custom.yaml")
        result = CliRunner().invoke(
            main,
            ["run", "Recorder", "record", "-p", f"ledger={ledger}", "-p", "tag=e"],
            env={"JOBKIT_CONFIG": str(config)},
        )
        assert result.exit_code == 0, result.output
        assert (other / "jobkit.db").exists() and not (tmp_path / "jobkit.db").exists()
        with open_app(config) as app:
            assert app.get_job(result.stdout.strip()).params["tag"] == "e"

    @pytest.mark.parametrize("command", ["check", "jobs", "list", "worker", "status"])
    def test_config_option_after_the_command(self, tmp_path: Path, command: str) -> None:
        """`jobkit COMMAND --config FILE` reads FILE, as `jobkit --config FILE COMMAND` does."""
        bad = tmp_path / "elsewhere.yaml"
        bad.write_text("bogus: 1\n")
        args = [command, "1"] if command == "status" else [command]
        result = CliRunner().invoke(main, [*args, "--config", str(bad)])
        assert result.exit_code == (1 if command == "check" else 2), result.output
        assert "elsewhere.yaml:1" in result.stderr, result.stderr

    def test_option_beats_env(self, tmp_path: Path) -> None:
        """--config wins over JOBKIT_CONFIG."""
        good = write_config(tmp_path)
        bad = tmp_path / "bad.yaml"
        bad.write_text("bogus: 1\n")
        result = CliRunner().invoke(
            main, ["--config", str(good), "check"], env={"JOBKIT_CONFIG": str(bad)}
        )
        assert result.exit_code == 0, result.output

    def test_jobs_yaml_in_cwd(self, tmp_path: Path) -> None:
        """Without --config or JOBKIT_CONFIG, ./jobs.yaml is used."""
        write_config(tmp_path)  # tmp_path is the cwd
        result = CliRunner().invoke(main, ["check"])
        assert result.exit_code == 0, result.output
        assert f"sqlite:///{tmp_path / 'jobkit.db'}" in result.stdout
