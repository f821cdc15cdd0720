"""Nothing that isn't registered and approved ever runs; bad input gets a clear error naming what
is wrong, and nothing is stored or run; secrets stay masked; no input forges a log line; every
accepted params value comes back unchanged. On SQLite and PostgreSQL wherever the store is
involved.

Covered elsewhere, so not repeated here:

- missing, extra and mistyped params, NaN, bytes, sets and objects, several bad params at once,
  circular params, str-subclass method names, a negative ``delay=-1`` and out-of-range options:
  ``tests/test_factory.py::TestRejections``;
- NUL characters, lone surrogates, the params size cap, and unicode / RTL / SQL metacharacters
  returned byte-exact: ``tests/reliability/test_bad_input.py``;
- malformed YAML, unknown keys and bad values with file and line, and a ``!!python/object`` tag
  (without a side effect): ``tests/test_config.py::TestErrors``;
- private, dunder and ``Job``'s own methods refused by the registry:
  ``tests/test_registry.py::TestApprovedMethods``; a tampered row re-checked in-process (SQLite):
  ``tests/test_execution.py::TestTrustBoundary``;
- ``password``, ``token``, ``api_key`` (nested in dicts and lists) masked in both log files, text
  and JSON, and by a real worker: ``tests/test_logs.py::TestMasking``; ``api_key`` in events:
  ``tests/test_execution.py::TestHooks::test_events_carry_masked_params``; ``status --json`` and
  job options: ``tests/test_cli.py`` (``test_json_masks_secrets``,
  ``test_options_shown_with_secrets_masked``);
- ``\\n`` in params, messages and errors, ``\\r`` and escape codes in messages, NEL / U+2028 /
  U+2029 in params, JSON lines with ``\\n``, and a real worker:
  ``tests/test_logs.py::TestInjection``.
"""

from __future__ import annotations

import contextlib
import json
import math
import pickle
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner, Result
from conftest import subprocess_env, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loguru import logger
from sample_jobs import read_ledger

from jobkit import (
    ConfigError,
    InvalidParameters,
    JobEvent,
    JobKit,
    JobkitError,
    JobNotFound,
    JobStatus,
    MethodNotAllowed,
    hookimpl,
)
from jobkit.cli import main
from jobkit.config import load_config
from jobkit.logs import ERRORS_FILE, EVENTS_FILE, LogFiles, configure_logging
from jobkit.notify import Notifier
from jobkit.records import RetryPolicy
from jobkit.worker import run_until_empty
from reliability.conftest import store_config

pytestmark = pytest.mark.slow

#: The jobs of these tests, besides conftest's Recorder and Slow.
TRUST_JOBS = {
    "Echo": {"class": "trust_jobs:Echo"},
    "Vault": {
        "class": "trust_jobs:Vault",
        "options": {
            "endpoint": "https://vault.example",
            "api_token": "opt-0011-s3cret",
            "auth": {"password": "opt-0012-s3cret"},
            "headers": [{"Authorization": "opt-0013-s3cret"}],
        },
    },
}


@pytest.fixture
def config(store_url: str, tmp_path: Path) -> Path:
    """jobs.yaml on the backend under test, with the trust jobs registered."""
    return store_config(tmp_path, store_url, jobs=TRUST_JOBS)


@pytest.fixture
def app(config: Path) -> Iterator[JobKit]:
    """An app built from :func:`config`."""
    application = JobKit.from_config(config, load_entrypoints=False)
    yield application
    application.close()


def execute(url: str, sql: str, *args: Any) -> Any:
    """Run one statement on the store behind jobkit's back (``?`` placeholders); the first
    column of the first row it returns, if any."""
    if url.startswith("sqlite:///"):
        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        with contextlib.closing(db), db:
            rows = db.execute(sql, args).fetchall()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as pg:
            cursor = pg.execute(sql.replace("?", "%s"), args)  # type: ignore[arg-type]
            rows = cursor.fetchall() if cursor.description else []
    return rows[0][0] if rows else None


def forge(url: str, job_id: str, **columns: Any) -> None:
    """Overwrite columns of a stored job (``params`` and ``policy`` as raw text, or bytes on
    SQLite)."""
    cast = "" if url.startswith("sqlite:///") else "::json"
    sets = ", ".join(
        f"{column} = ?{cast if column in ('params', 'policy') else ''}" for column in columns
    )
    execute(url, f"UPDATE jobkit_jobs SET {sets} WHERE id = ?", *columns.values(), int(job_id))


def forge_copy(url: str, job_id: str, name: str, method: str) -> str:
    """INSERT a new pending row copied from ``job_id`` under another name and method; its id."""
    new_id = execute(
        url,
        "INSERT INTO jobkit_jobs (name, method, params, status, priority, attempts, "
        "max_attempts, policy, created_at, available_at) "
        "SELECT ?, ?, params, 'pending', priority, 0, max_attempts, policy, created_at, "
        "available_at FROM jobkit_jobs WHERE id = ? RETURNING id",
        name,
        method,
        int(job_id),
    )
    return str(new_id)


@pytest.fixture
def evil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """tmp_path/trust_evil.py, a module whose import writes a marker file (returned, absent).

    A real worker runs in tmp_path, so it could import the module; so can this process. The
    payload is tried first in a separate process, so that the marker's absence proves something.
    """
    marker = tmp_path / "evil-was-imported"
    (tmp_path / "trust_evil.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('imported')\n"
        "from jobkit import Job\n"
        "class Evil(Job):\n"
        "    methods = ('handle',)\n"
        "    def handle(self) -> None:\n"
        f"        Path({str(marker)!r}).write_text('ran')\n"
    )
    subprocess.run(
        [sys.executable, "-c", "import trust_evil"], cwd=tmp_path, env=subprocess_env(), check=True
    )
    assert marker.read_text() == "imported", "the payload must work for the test to mean anything"
    marker.unlink()
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    sys.modules.pop("trust_evil", None)


def assert_nothing_stored(app: JobKit) -> None:
    assert app.storage.count() == 0, app.list_jobs()


# -- 1. refused at enqueue ------------------------------------------------------------------


UNKNOWN_NAMES = [
    "Nope",
    "recorder",
    "Recorder ",
    "",
    "os:system",
    "os.system",
    "sample_jobs:Recorder",
    "sample_jobs.Recorder",
    "Other",  # a Job class that exists (sample_jobs:Other) but is not registered
    "trust_evil:Evil",
]

UNAPPROVED_METHODS = [
    "_private",
    "__init__",
    "__class__",
    "__call__",
    "__getattribute__",
    "__reduce__",
    "record.__globals__",
    "record.__func__.__globals__",
    "__init__.__globals__",
    "bind",
    "progress",
    "log",
    "context",
    "helper",
    "Record",
    " record",
    "",
]


class TestRefusedAtEnqueue:
    def test_unknown_job_names_it_and_imports_nothing(self, app: JobKit, evil: Path) -> None:
        """Unknown names, import paths among them, are refused naming the name; the module an
        import path names is never imported; nothing is stored."""
        for name in UNKNOWN_NAMES:
            with pytest.raises(JobNotFound) as info:
                app.run_background_job(name, "handle", {})
            assert f"no job is registered under the name {name!r}" in str(info.value), name
            assert "registered: " in str(info.value) and "Recorder" in str(info.value)
        assert "trust_evil" not in sys.modules
        assert not evil.exists()
        assert_nothing_stored(app)

    def test_unapproved_methods_name_it(self, app: JobKit, ledger: str) -> None:
        """Private, dunder, Job's own, undeclared and getattr-trick method names are refused
        naming the job and the method; nothing is stored, nothing runs."""
        for method in UNAPPROVED_METHODS:
            with pytest.raises(MethodNotAllowed) as info:
                app.run_background_job("Recorder", method, {"ledger": ledger, "tag": "t"})
            message = str(info.value)
            assert f"job 'Recorder': method {method!r} is not approved" in message, message
            assert "approved: record, fail," in message
        assert_nothing_stored(app)
        assert read_ledger(ledger) == []

    def test_non_json_values_name_the_param(self, app: JobKit) -> None:
        """Infinities, NaN deep inside, bytes, sets, complex numbers, decimals, dates, paths,
        objects, non-string keys and integers too long for JSON are refused, naming where the
        value sits; nothing is stored."""
        cases: list[tuple[Any, str]] = [
            (math.inf, "value is inf, not JSON"),
            (-math.inf, "value is -inf, not JSON"),
            ({"a": [1, math.nan]}, "value.a[1] is nan, not JSON"),
            ([b"raw"], "value[0] is a bytes, not JSON"),
            (bytearray(b"x"), "value is a bytearray, not JSON"),
            ({"s": {1, 2}}, "value.s is a set, not JSON"),
            (frozenset(), "value is a frozenset, not JSON"),
            (1j, "value is a complex, not JSON"),
            (Decimal("1.5"), "value is a Decimal, not JSON"),
            (datetime(2026, 1, 1), "value is a datetime, not JSON"),
            (Path("/etc/passwd"), "not JSON"),
            (object(), "value is a object, not JSON"),
            ({1: "one"}, "value has a non-string key 1"),
            ({"k": {None: 1}}, "value.k has a non-string key None"),
            (10**5000, "value is an integer of more than"),
        ]
        for value, expected in cases:
            with pytest.raises(InvalidParameters) as info:
                app.run_background_job("Echo", "take", {"value": value})
            assert expected in str(info.value), (value, str(info.value))
            assert info.value.problems.keys() == {"value"}
        assert_nothing_stored(app)

    def test_negative_and_bad_delays(self, app: JobKit) -> None:
        """Negative delays (seconds or timedelta) and negative retry delays or timeouts given
        to one call are refused naming the option; nothing is stored."""
        refused = "call: delay: expected a number >= 0 and <= 315360000 (10 years) or a timedelta"
        for options, named in [
            ({"delay": -1}, refused),
            ({"delay": -0.001}, refused),
            ({"delay": timedelta(seconds=-1)}, refused),
            ({"delay": timedelta(days=-3650)}, refused),
            ({"delay": "5"}, refused),
            ({"retry_delay": -1}, "retry_delay: expected a number >= 0 and <= 315360000 (10 "
                                  "years), got -1"),
            ({"timeout": -1}, "timeout: expected a number > 0 and <= 604800 (7 days), got -1"),
        ]:
            with pytest.raises(JobkitError, match=re.escape(named)):
                app.run_background_job("Echo", "take", {"value": 1}, **options)
        assert_nothing_stored(app)


# -- 2. jobs.yaml --------------------------------------------------------------------------


PAYLOADS = [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/apply:subprocess.call [[touch, '{marker}']]",
    "!!python/object/new:subprocess.Popen [[touch, '{marker}']]",
    "!!python/object:pathlib.Path {{}}",
    "!!python/name:os.system",
    "!!python/module:os",
]


class TestUnsafeYaml:
    @pytest.mark.parametrize("payload", PAYLOADS)
    def test_python_tags_are_refused_with_file_and_line(
        self, tmp_path: Path, payload: str
    ) -> None:
        """A python/* tag anywhere in jobs.yaml is a ConfigError naming the file and the line
        of the tag; the payload never runs (its marker file is never made)."""
        marker = tmp_path / "payload-ran"
        path = tmp_path / "jobs.yaml"
        path.write_text(
            "storage: sqlite:///jobkit.db\n"
            "jobs:\n"
            "  Recorder:\n"
            "    class: sample_jobs:Recorder\n"
            "    options:\n"
            f"      hook: {payload.format(marker=marker)}\n"
        )
        with pytest.raises(ConfigError) as info:
            load_config(path)
        (message,) = info.value.errors
        assert message.startswith(f"{path}:6: YAML syntax error:"), message
        assert "python/" in message
        assert not marker.exists()

    def test_a_real_worker_refuses_the_file(self, tmp_path: Path) -> None:
        """`jobkit worker` on a jobs.yaml with an os.system payload exits 2 with one error line
        naming file and line, and the payload never runs."""
        marker = tmp_path / "payload-ran"
        path = tmp_path / "jobs.yaml"
        path.write_text(
            f"storage: !!python/object/apply:os.system ['touch {marker}']\n"
            "jobs:\n  Recorder:\n    class: sample_jobs:Recorder\n"
        )
        result = subprocess.run(
            [sys.executable, "-m", "jobkit", "--config", str(path), "worker", "--burst"],
            cwd=tmp_path,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"{path}:1: YAML syntax error:" in result.stderr
        assert "Traceback" not in result.stderr
        assert not marker.exists()

    def test_a_python_tag_in_an_environment_variable_is_a_string(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A JOBKIT_* variable holding a python/* tag is read as text: refused by the setting's
        rule, naming the variable; never constructed."""
        marker = tmp_path / "payload-ran"
        path = tmp_path / "jobs.yaml"
        path.write_text("storage: sqlite:///jobkit.db\n")
        monkeypatch.setenv(
            "JOBKIT_DEFAULTS__TIMEOUT", f"!!python/object/apply:os.system ['touch {marker}']"
        )
        with pytest.raises(ConfigError, match="JOBKIT_DEFAULTS__TIMEOUT"):
            load_config(path)
        assert not marker.exists()


# -- 3. forged rows: a real worker refuses them ---------------------------------------------

#: (name, method, the error the worker must record)
FORGED_ROWS = [
    ("os:system", "record", "JobNotFound: no job is registered under the name 'os:system'"),
    ("os", "system", "JobNotFound: no job is registered under the name 'os'"),
    (
        "sample_jobs:Recorder",
        "record",
        "JobNotFound: no job is registered under the name 'sample_jobs:Recorder'",
    ),
    ("trust_evil:Evil", "handle", "JobNotFound: no job is registered under the name 'trust_evil"),
    ("Other", "handle", "JobNotFound: no job is registered under the name 'Other'"),
    ("Recorder", "record.__globals__", "MethodNotAllowed: job 'Recorder': method "
                                       "'record.__globals__' is not approved"),
    ("Recorder", "__init__", "MethodNotAllowed: job 'Recorder': method '__init__' is not approved"),
    ("Recorder", "__class__", "method '__class__' is not approved"),
    ("Recorder", "bind", "method 'bind' is not approved"),
    ("Recorder", "helper", "method 'helper' is not approved"),
    ("Recorder", "_private", "method '_private' is not approved"),
]


def run_burst_worker(start_worker: Callable[..., Any], config: Path) -> str:
    """A real `jobkit worker -n 1 --burst`: it must empty the queue and exit 0; its output."""
    worker = start_worker(config, "-n", "1", "--burst")
    code, output = worker.wait(timeout=45)
    assert code == 0, output
    assert "worker error" not in output, output  # no row made the worker loop on an exception
    return str(output)


def refused_and_the_rest_run(
    app: JobKit,
    config: Path,
    ledger: str,
    start_worker: Callable[..., Any],
    forged: dict[str, str],
) -> None:
    """Queue three good jobs behind the ``forged`` ones (job id -> the error it must end
    with), run a real burst worker, and check that each forged job failed once, for good, with
    its error, and that only the good jobs ran."""
    good = [
        app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": f"good {i}"})
        for i in range(3)
    ]
    run_burst_worker(start_worker, config)
    for job_id, error in forged.items():
        record = app.get_job(job_id)
        assert record.status == JobStatus.FAILED, (job_id, record)
        assert error in (record.error or ""), (error, record.error)
        assert record.attempts == 1  # refused for good: never retried
    assert [app.get_job(job_id).status for job_id in good] == [JobStatus.COMPLETED] * 3
    assert sorted(entry["tag"] for entry in read_ledger(ledger)) == ["good 0", "good 1", "good 2"]


def test_forged_rows_are_refused_by_a_real_worker(
    app: JobKit,
    config: Path,
    store_url: str,
    ledger: str,
    evil: Path,
    start_worker: Callable[..., Any],
) -> None:
    """Rows altered (UPDATE) or added (INSERT) behind jobkit's back to name an import path, an
    unregistered job or an unapproved method are refused by a real worker: each is failed
    after one attempt with an error naming what is wrong, nothing of it runs, no module is
    imported, and the jobs queued behind them still run."""
    forged: dict[str, str] = {}
    for name, method, error in FORGED_ROWS:
        job_id = app.run_background_job(
            "Recorder", "record", {"ledger": ledger, "tag": f"forged {name}.{method}"}
        )
        forge(store_url, job_id, name=name, method=method)
        forged[job_id] = error
    first = next(iter(forged))
    forged[forge_copy(store_url, first, "trust_evil:Evil", "handle")] = (
        "JobNotFound: no job is registered under the name 'trust_evil:Evil'"
    )
    forged[forge_copy(store_url, first, "Recorder", "__reduce__")] = (
        "method '__reduce__' is not approved"
    )
    refused_and_the_rest_run(app, config, ledger, start_worker, forged)
    assert not evil.exists(), "the worker imported the module a forged row named"


# -- 4. unreadable params: refused, and the queue goes on -----------------------------------


class _Payload:
    """Unpickling this creates ``path`` (``open(path, "w")``)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def test_a_forged_policy_does_not_stop_the_queue(
    app: JobKit,
    config: Path,
    store_url: str,
    ledger: str,
    start_worker: Callable[..., Any],
) -> None:
    """A stored retry policy forged to something that is no policy (a string, unknown keys,
    a list) is read as the default policy: the row can be read, its job (whose params are still
    checked) runs, and so do the jobs behind it."""
    ids = []
    for policy in ('"fast"', '{"retry_delay": 1, "exec": "os.system"}', "[1, 2]"):
        job_id = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": policy})
        forge(store_url, job_id, policy=policy)
        assert app.get_job(job_id).policy == RetryPolicy()
        ids.append(job_id)
    behind = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "behind"})
    run_burst_worker(start_worker, config)
    assert {app.get_job(job_id).status for job_id in [*ids, behind]} == {JobStatus.COMPLETED}
    assert len(read_ledger(ledger)) == 4


def test_unreadable_params_fail_the_job_not_the_worker(
    app: JobKit,
    config: Path,
    store_url: str,
    ledger: str,
    tmp_path: Path,
    start_worker: Callable[..., Any],
) -> None:
    """Params forged to a pickle blob (SQLite), to text that is not JSON (SQLite), or to JSON
    that is no params object or that Python cannot read back (both backends) are refused by a
    real worker: the job is failed after one attempt naming the problem, nothing is unpickled,
    the row can still be read, and the jobs queued behind it still run."""
    marker = tmp_path / "unpickled"
    blob = pickle.dumps(_Payload(marker))
    pickle.loads(blob).close()  # the payload works: unpickling it makes the marker
    assert marker.exists()
    marker.unlink()

    deep = "[" * 3000 + "]" * 3000
    # (forged params, the error the worker must record)
    cases: list[tuple[str | bytes, str]] = [
        ('"just a string"', "params: must be a dict or a list, got str"),
        ("5", "params: must be a dict or a list, got int"),
        ("null", "ledger: missing (required)"),
        ("[1, 2, 3]", "3 positional values given"),
        (deep, "params: not valid JSON (RecursionError"),
        ('{"ledger": "x", "tag": ' + "9" * 5000 + "}", "params: not valid JSON (ValueError"),
    ]
    if store_url.startswith("sqlite:///"):  # PostgreSQL's json column refuses these
        cases += [
            (blob, "params: not valid JSON (UnicodeDecodeError"),
            ("not json {", "params: not valid JSON (JSONDecodeError: Expecting value"),
            ("{'ledger': 'x'}", "params: not valid JSON (JSONDecodeError: Expecting property"),
            ('{"ledger": "x", "tag": NaN}', "tag: tag is nan, not JSON"),
        ]
    forged: dict[str, str] = {}
    for params, error in cases:
        job_id = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "forged"})
        forge(store_url, job_id, params=params)
        forged[job_id] = error
        app.get_job(job_id)  # a forged row can still be read
    refused_and_the_rest_run(app, config, ledger, start_worker, forged)
    for job_id in forged:
        assert "InvalidParameters" in (app.get_job(job_id).error or "")
    assert len(app.list_jobs(limit=1000)) == len(forged) + 3
    assert not marker.exists(), "the pickle blob was unpickled"


# -- 5. secrets --------------------------------------------------------------------------------

#: Each secret value is distinct, so that a leak says which one leaked.
SECRETS = [f"{n:04d}-s3cret" for n in range(1, 14)]


def secret_params(ledger: str, **more: Any) -> dict[str, Any]:
    """Params with secrets under every secret word, top-level and nested in dicts and lists."""
    return {
        "ledger": ledger,
        "user": "ana",
        "password": "pw-0001-s3cret",
        "token": "tok-0002-s3cret",
        "secret": "sec-0003-s3cret",
        "api_key": "key-0004-s3cret",
        "authorization": "Bearer 0005-s3cret",
        "nested": {
            "db": {"Password": "0006-s3cret", "host": "db.example"},
            "headers": [{"Authorization": "0007-s3cret"}, {"X-Api-Key": "0008-s3cret"}],
            "deep": [[{"client_secret": "0009-s3cret"}]],
            "refresh_token": {"value": "0010-s3cret"},
        },
        **more,
    }


MASKED = {
    "user": "ana",
    "password": "***",
    "token": "***",
    "secret": "***",
    "api_key": "***",
    "authorization": "***",
    "nested": {
        "db": {"Password": "***", "host": "db.example"},
        "headers": [{"Authorization": "***"}, {"X-Api-Key": "***"}],
        "deep": [[{"client_secret": "***"}]],
        "refresh_token": "***",
    },
}

#: A typed secret forged to the wrong type: the error must not quote it.
FORGED_PASSWORD = 98765432


def assert_no_secret(text: str, where: str) -> None:
    leaked = [secret for secret in [*SECRETS, str(FORGED_PASSWORD)] if secret in text]
    assert not leaked, f"{leaked} leaked in {where}:\n{text}"


class _Recording:
    """A plugin that keeps every event it is given."""

    def __init__(self) -> None:
        self.events: list[JobEvent] = []

    @hookimpl
    def jobkit_job_event(self, event: JobEvent) -> None:
        self.events.append(event)


class _Keep(Notifier):
    """A notifier that keeps every event it is told about."""

    seen: ClassVar[list[JobEvent]] = []

    def notify(self, event: JobEvent) -> None:
        self.seen.append(event)


class _KeepPlugin:
    @hookimpl
    def jobkit_register_notifiers(self, registry: Any) -> None:
        registry.add("trust-keep", _Keep)


def enqueue_secret_jobs(app: JobKit, store_url: str, ledger: str) -> dict[str, str]:
    """One job that succeeds, one that fails and one typed secret forged to the wrong type;
    their ids by what they are."""
    ok = app.run_background_job("Vault", "open", secret_params(ledger))
    failing = app.run_background_job("Vault", "open", secret_params(ledger, fail=True))
    forged = app.run_background_job("Vault", "login", {"user": "ana", "password": "x"})
    forge(store_url, forged, params=json.dumps({"user": "ana", "password": FORGED_PASSWORD}))
    return {"ok": ok, "failing": failing, "forged": forged}


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_masked_in_log_files_and_events(
    store_url: str, tmp_path: Path, ledger: str, fmt: str
) -> None:
    """password, token, secret, api_key and authorization, top-level or nested in dicts and
    lists, never reach either log file, a jobkit_job_event plugin or a notifier: not in params,
    and not quoted by the error of a secret param that does not fit its type."""
    config = store_config(
        tmp_path,
        store_url,
        jobs=TRUST_JOBS,
        logging={"dir": str(tmp_path / "logs"), "format": fmt},
        notifications=[{"plugin": "trust-keep"}],
    )
    _Keep.seen.clear()
    recording = _Recording()
    app = JobKit.from_config(config, load_entrypoints=False, plugins=(recording, _KeepPlugin()))
    files: LogFiles | None = None
    try:
        files = configure_logging(app.config.logging, app.pm)
        ids = enqueue_secret_jobs(app, store_url, ledger)
        run_until_empty(app, timeout=20)
        assert app.get_job(ids["ok"]).status == JobStatus.COMPLETED
        assert app.get_job(ids["failing"]).status == JobStatus.FAILED
        forged = app.get_job(ids["forged"])
        assert forged.status == JobStatus.FAILED
        assert "password: expected str, got int" in (forged.error or "")
        assert app.events.flush()
        wait_for(lambda: len(_Keep.seen) == len(recording.events), 5, "the notifier's events")
    finally:
        app.close()
        if files is not None:
            files.remove()
        logger.disable("jobkit")
    assert_no_secret(str(forged.error), "the stored error")  # it is what events and logs show
    # 3 enqueued + 3 started + 1 succeeded + 2 failed
    assert len(recording.events) == 9, [e.kind for e in recording.events]
    for source, events in (("the hook", recording.events), ("the notifier", _Keep.seen)):
        for event in events:
            assert_no_secret(repr(event), f"a {event.kind} event given to {source}")
            if event.job.id == ids["ok"]:
                assert {k: v for k, v in event.job.params.items() if k != "ledger"} == MASKED
    events_log = (tmp_path / "logs" / EVENTS_FILE).read_text(encoding="utf-8")
    errors_log = (tmp_path / "logs" / ERRORS_FILE).read_text(encoding="utf-8")
    assert "the vault stayed shut" in errors_log and "password: expected str" in errors_log
    assert events_log.count("succeeded") >= 1 and "***" in events_log
    assert_no_secret(events_log, EVENTS_FILE)
    assert_no_secret(errors_log, ERRORS_FILE)


@pytest.fixture
def cli(config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`jobkit --config <config> ARGS` in-process; the log sinks it adds are removed after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    probe = logger.add(lambda _: None)
    logger.remove(probe)

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, ["--config", str(config), *args])

    yield invoke
    probe_after = logger.add(lambda _: None)
    logger.remove(probe_after)
    for handler_id in range(probe + 1, probe_after):
        with contextlib.suppress(ValueError):
            logger.remove(handler_id)
    logger.disable("jobkit")


def test_secrets_masked_in_cli_output(
    app: JobKit, store_url: str, ledger: str, cli: Callable[..., Result]
) -> None:
    """`jobkit list` (text and --json), `jobkit status` (text and --json), `jobkit jobs` (text
    and --json) and a refused `jobkit run` print no secret."""
    ids = enqueue_secret_jobs(app, store_url, ledger)
    run_until_empty(app, timeout=20)
    outputs = {
        "list": cli("list"),
        "list --json": cli("list", "--json"),
        "jobs": cli("jobs"),
        "jobs --json": cli("jobs", "--json"),
    }
    for what, job_id in ids.items():
        outputs[f"status {what}"] = cli("status", job_id)
        outputs[f"status {what} --json"] = cli("status", job_id, "--json")
    for command, result in outputs.items():
        assert result.exit_code == 0, (command, result.output)
        assert_no_secret(result.stdout + result.stderr, f"`jobkit {command}`")
    listed = [json.loads(line) for line in outputs["list --json"].stdout.splitlines()]
    assert {k: v for k, v in listed[-1]["params"].items() if k != "ledger"} == MASKED
    assert "'***'" in outputs["status ok"].stdout
    assert '"api_token": "***"' in outputs["jobs"].stdout
    assert "password: expected str, got int" in outputs["status forged"].stdout
    refused = cli("run", "Vault", "login", "-p", "user=ana", "-p", f"password={FORGED_PASSWORD}")
    assert refused.exit_code == 1, refused.output
    assert "password: expected str, got int" in refused.stderr
    assert_no_secret(refused.stdout + refused.stderr, "a refused `jobkit run`")


# -- 6. no input forges a log line ---------------------------------------------------------

#: A line that looks like one of jobkit's own records.
FORGED = "2030-01-01T00:00:00.000000+0000 | INFO    | job_id=1 job_name=Forged | forged"
#: Everything str.splitlines() breaks a line at.
BREAKS = ["\n", "\r", "\r\n", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"]
RECORD = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d{4} \| [A-Z]+ *\| ")


def escaped(text: str) -> str:
    return text.encode("unicode_escape").decode("ascii")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_line_breaks_cannot_forge_a_log_line(
    store_url: str, tmp_path: Path, ledger: str, fmt: str
) -> None:
    """Newlines, carriage returns, U+2028/U+2029 and every other line break in params, in
    self.log messages and in exception messages stay inside one record: in text format every
    physical line starts with a record's prefix (or is a `  | ` traceback line), in JSON format
    every line is one object carrying the text exactly."""
    config = store_config(
        tmp_path, store_url, jobs=TRUST_JOBS, logging={"dir": str(tmp_path / "logs"), "format": fmt}
    )
    app = JobKit.from_config(config, load_entrypoints=False)
    files = configure_logging(app.config.logging, app.pm)
    try:
        for mark in BREAKS:
            injected = f"x{mark}{FORGED}"
            app.run_background_job("Vault", "say", {"text": injected})
            app.run_background_job("Vault", "say", {"text": "t", "error": injected})
            app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": injected})
        run_until_empty(app, timeout=30)
    finally:
        app.close()
        files.remove()
        logger.disable("jobkit")
    events = files.events.read_text(encoding="utf-8")
    errors = files.errors.read_text(encoding="utf-8")
    for text in (events, errors):
        assert text.endswith("\n")
        for line in text.split("\n")[:-1]:
            assert not line.startswith(FORGED), f"forged line:\n{text}"
    if fmt == "text":
        for name, text in ((EVENTS_FILE, events), (ERRORS_FILE, errors)):
            for line in text.splitlines():  # every kind of line break
                assert RECORD.match(line) or line.startswith("  | "), f"{name}: {line!r}"
                assert not line.startswith(FORGED), f"{name}: forged line {line!r}"
        for mark in BREAKS:  # the input did reach the files, escaped onto its line
            assert f"job says x{escaped(mark)}{FORGED}" in events
            assert f"failed: RuntimeError: x{escaped(mark)}{FORGED}" in errors
        # in params too: 3 jobs a break, each logged enqueued, started and finished
        assert sum(FORGED in line and "params=" in line for line in events.split("\n")) >= 9 * len(
            BREAKS
        )
    else:
        messages = [json.loads(line)["record"]["message"] for line in events.split("\n")[:-1]]
        for line in errors.split("\n")[:-1]:
            assert isinstance(json.loads(line), dict)
        for mark in BREAKS:
            assert f"job says x{mark}{FORGED}" in messages
            assert f"failed: RuntimeError: x{mark}{FORGED}" in messages


# -- 7. every accepted params value round-trips -------------------------------------------

JSON_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | JSON_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(JSON_TEXT, inner, max_size=4),
    max_leaves=16,
)
BAD_TEXT = st.builds(
    lambda head, bad, tail: head + bad + tail,
    JSON_TEXT,
    st.sampled_from(["\x00", "\ud800", "\udbff", "\udc00", "\udfff"]),
    JSON_TEXT,
)
#: A JSON value with one bad string somewhere: a value, a key, deep in a list.
BAD_VALUES = st.one_of(
    BAD_TEXT,
    st.builds(lambda bad, value: {bad: value}, BAD_TEXT, JSON_VALUES),
    st.builds(lambda value, bad: [value, {"k": [bad]}], JSON_VALUES, BAD_TEXT),
)
PROPERTY = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@PROPERTY
@given(value=JSON_VALUES)
def test_accepted_params_round_trip_unchanged(app: JobKit, value: Any) -> None:
    """Any JSON value (64-bit ints, finite floats, text without NUL or lone surrogates, nested
    lists and dicts) is stored and returned equal, as the same JSON text (types and key order
    kept)."""
    job_id = app.run_background_job("Echo", "take", {"value": value})
    # enqueue_many stores a batch through another statement (SQLite: one INSERT for all)
    batch = app.enqueue_many("Echo", "take", [{"value": value}, {"value": [value]}])
    for stored, sent in zip([job_id, *batch], [value, value, [value]], strict=True):
        params = app.get_job(stored).params
        assert params == {"value": sent}
        assert json.dumps(params) == json.dumps({"value": sent})


@PROPERTY
@given(value=BAD_VALUES)
def test_nul_and_lone_surrogates_are_refused_anywhere(app: JobKit, value: Any) -> None:
    """A NUL or a lone surrogate anywhere in a value, key or string, is refused naming the
    param; nothing is stored."""
    with pytest.raises(InvalidParameters) as info:
        app.run_background_job("Echo", "take", {"value": value})
    assert info.value.problems.keys() == {"value"}
    assert "NUL" in str(info.value) or "surrogate" in str(info.value)
    assert_nothing_stored(app)
