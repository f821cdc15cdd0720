"""jobs.yaml loading, the environment layer, errors with file/line/key, and per-job resolution."""

from __future__ import annotations

import pickle
import textwrap
from pathlib import Path

import pytest

from jobkit.config import (
    Config,
    JobEntry,
    JobSettings,
    LoggingSettings,
    NotificationEntry,
    WorkerSettings,
    load_config,
)
from jobkit.exceptions import ConfigError
from jobkit.records import RetryPolicy

DESIGN_EXAMPLE = """\
storage: sqlite:///jobkit.db
defaults:
  retry_attempts: 3        # retries after the first failure
  retry_delay: 5           # seconds between attempts
  backoff: fixed           # or exponential (with max_delay, jitter)
  timeout: null
logging: {dir: logs, format: text, rotation: "00:00", retention: "14 days"}
jobs:
  Email:
    retry_attempts: 5
    retry_delay: 5
  Invoice:
    class: myapp.billing:CompleteInvoiceJob   # registration without an entry point
    methods: [complete]
    retry_attempts: 3
    retry_delay: 10
notifications:
  - {plugin: webhook, url: "http://127.0.0.1:9000/hook", events: [failed]}
"""


def write(tmp_path: Path, text: str, name: str = "jobs.yaml") -> Path:
    """Write a config file (dedented) and return its path."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    """The messages of the ConfigError that loading ``path`` raises."""
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ or {})
    return list(info.value.errors)


class TestDiscovery:
    def test_no_file_gives_built_in_defaults(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without a path, JOBKIT_CONFIG or ./jobs.yaml, every setting is the built-in one."""
        monkeypatch.chdir(tmp_path)
        config = load_config(environ={})
        assert config == Config()
        assert config.path is None
        assert config.storage == "sqlite:///jobkit.db"
        assert config.defaults == JobSettings()
        assert config.logging == LoggingSettings(
            dir="logs", format="text", rotation="00:00", retention="14 days", level="INFO"
        )
        assert config.worker == WorkerSettings()
        assert config.worker.concurrency is None
        assert config.jobs == {} and config.notifications == []

    def test_jobkit_config_names_the_file(self, tmp_path: Path) -> None:
        """JOBKIT_CONFIG is used when no path is given."""
        path = write(tmp_path, "storage: memory://\n", "elsewhere.yaml")
        config = load_config(environ={"JOBKIT_CONFIG": str(path)})
        assert config.storage == "memory://"
        assert config.path == str(path)

    def test_jobs_yaml_in_the_working_directory_is_found(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """./jobs.yaml is loaded when neither a path nor JOBKIT_CONFIG is given."""
        write(tmp_path, "storage: memory://\n")
        monkeypatch.chdir(tmp_path)
        config = load_config(environ={})
        assert config.storage == "memory://"
        assert config.path == "jobs.yaml"

    def test_explicit_path_wins_over_jobkit_config(self, tmp_path: Path) -> None:
        """An explicit path is used even when JOBKIT_CONFIG is set."""
        path = write(tmp_path, "storage: memory://\n", "mine.yaml")
        config = load_config(path, environ={"JOBKIT_CONFIG": str(tmp_path / "other.yaml")})
        assert config.storage == "memory://"

    def test_empty_file_gives_defaults(self, tmp_path: Path) -> None:
        """An empty file (or one with only comments) is the built-in defaults (their relative
        paths taken from the file's folder)."""
        path = write(tmp_path, "# nothing yet\n")
        assert load_config(path, environ={}) == Config(
            path=str(path), storage=f"sqlite:///{tmp_path / 'jobkit.db'}",
            logging=LoggingSettings(dir=str(tmp_path / "logs")))

    def test_os_environ_is_the_default_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without ``environ``, os.environ is read."""
        monkeypatch.setenv("JOBKIT_STORAGE", "memory://")
        assert load_config(write(tmp_path, "")).storage == "memory://"


class TestDesignExample:
    def test_the_design_example_loads(self, tmp_path: Path) -> None:
        """The jobs.yaml of DESIGN.md loads into the expected values."""
        config = load_config(write(tmp_path, DESIGN_EXAMPLE), environ={})
        assert config.defaults == JobSettings(retry_attempts=3, retry_delay=5.0)
        assert config.logging.rotation == "00:00"
        invoice = config.job_entry("Invoice")
        assert invoice is not None
        assert invoice.class_ == "myapp.billing:CompleteInvoiceJob"
        assert invoice.methods == ["complete"]
        assert invoice.set_fields == {"retry_attempts", "retry_delay"}
        assert config.job_entry("Nope") is None
        assert config.notifications == [
            NotificationEntry(
                plugin="webhook", events=["failed"], options={"url": "http://127.0.0.1:9000/hook"}
            )
        ]

    def test_job_line_points_at_the_entry(self, tmp_path: Path) -> None:
        """job_line names the file and the line of jobs.<name>; the file alone when unknown."""
        path = write(tmp_path, DESIGN_EXAMPLE)
        config = load_config(path, environ={})
        assert config.job_line("Email") == f"{path}:9"
        assert config.job_line("Invoice") == f"{path}:12"
        assert config.job_line("Unknown") == str(path)
        assert Config().job_line("Email") == "jobs.yaml"

    def test_resolved_settings_of_the_example(self, tmp_path: Path) -> None:
        """Email gets 1 + 5 attempts from its entry and the rest from defaults."""
        path = write(tmp_path, DESIGN_EXAMPLE)
        resolved = load_config(path, environ={}).resolve_job("Email")
        assert resolved.settings.max_attempts == 6
        assert resolved.settings.policy() == RetryPolicy(retry_delay=5.0, backoff="fixed")
        assert resolved.sources["retry_attempts"] == f"{path}:10 (jobs.Email)"
        assert resolved.sources["backoff"] == f"{path}:5 (defaults)"
        assert resolved.sources["priority"] == "built-in"


class TestErrors:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (
                "storage: memory://\nstorge: x\n",
                ":2: storge: unknown key (did you mean 'storage'?)",
            ),
            (
                "jobs:\n  Email:\n    retry_attempts: 1\n    retries: 2\n",
                ":4: jobs.Email.retries: unknown key",
            ),
            (
                "jobs:\n  Email:\n    retry_attempts: five\n",
                ":3: jobs.Email.retry_attempts: expected an integer >= 0 and <= 5000, got 'five'",
            ),
            (
                "defaults:\n  retry_attempts: -1\n",
                ":2: defaults.retry_attempts: expected an integer >= 0 and <= 5000, got -1",
            ),
            (
                "defaults:\n  backoff: linear\n",
                ":2: defaults.backoff: expected one of fixed, exponential, got 'linear'",
            ),
            (
                "worker:\n  concurrency: true\n",
                ":2: worker.concurrency: expected an integer >= 1 and <= 1024, got True",
            ),
            ("defaults:\n  priority: 1.5\n",
             ":2: defaults.priority: expected an integer >= -2147483648 and <= 2147483647, "
             "got 1.5"),
            ("defaults:\n  timeout: 0\n",
             ":2: defaults.timeout: expected a number > 0 and <= 604800 (7 days), got 0"),
            ("defaults:\n  jitter: 2\n", ":2: defaults.jitter: expected a number >= 0 and <= 1"),
            (
                "jobs:\n  Invoice:\n    class: myapp.billing.Invoice\n",
                ":3: jobs.Invoice.class: expected a 'module:Class' import path",
            ),
            (
                "notifications:\n  - plugin: webhook\n    events: [failed, exploded]\n",
                ":3: notifications[0].events[1]: expected one of enqueued, started, succeeded, "
                "retrying, failed, cancelled, got 'exploded'",
            ),
            ("notifications:\n  - url: http://x\n", ":2: notifications[0].plugin: required key"),
            ("logging:\n  level: loud\n", ":2: logging.level: expected one of TRACE, DEBUG"),
            ("logging: logs\n", ":1: logging: expected a mapping, got 'logs'"),
            ("jobs: [Email]\n", ":1: jobs: expected a mapping, got ['Email']"),
            ("storage: jobkit.db\n", ":1: storage: expected a storage URL like"),
            (
                "worker:\n  lease: 2\n  heartbeat: 1\n",
                ":3: worker.heartbeat: expected a number < lease / 2 = 1, got 1.0",
            ),
            ("jobs:\n  Email: {}\n  Email: {}\n", ":3: jobs.Email: duplicate key"),
        ],
    )
    def test_error_names_file_line_and_key(self, tmp_path: Path, text: str, expected: str) -> None:
        """Each kind of mistake is one message with the file, the line and the key path."""
        path = write(tmp_path, text)
        assert any(message.startswith(f"{path}{expected}") for message in errors_of(path)), (
            errors_of(path)
        )

    def test_every_error_of_a_file_is_reported(self, tmp_path: Path) -> None:
        """Errors are collected across sections, in line order, not stopped at the first."""
        path = write(
            tmp_path,
            """\
            storage: memory://
            defaults:
              retry_attempts: -1
            worker: {concurrency: 0}
            jobs:
              Email:
                retry_delay: soon
                colour: blue
            notifications:
              - {plugin: webhook, events: [nope]}
            extra: 1
        """,
        )
        errors = errors_of(path)
        assert [message.split(": ")[0:2] for message in errors] == [
            [f"{path}:3", "defaults.retry_attempts"],
            [f"{path}:4", "worker.concurrency"],
            [f"{path}:7", "jobs.Email.retry_delay"],
            [f"{path}:8", "jobs.Email.colour"],
            [f"{path}:10", "notifications[0].events[0]"],
            [f"{path}:11", "extra"],
        ]

    def test_yaml_syntax_error_names_its_line(self, tmp_path: Path) -> None:
        """A YAML syntax error is a ConfigError with the file and the line of the problem."""
        path = write(tmp_path, "storage: memory://\njobs:\n  Email: [1, 2\nnotifications: []\n")
        (message,) = errors_of(path)
        assert message.startswith(f"{path}:4: YAML syntax error:")

    def test_missing_explicit_file(self, tmp_path: Path) -> None:
        """A path that does not exist is an error naming it, never silently the defaults."""
        path = tmp_path / "missing.yaml"
        assert errors_of(path) == [f"{path}: configuration file not found"]
        with pytest.raises(ConfigError, match=r"missing\.yaml: configuration file not found"):
            load_config(environ={"JOBKIT_CONFIG": str(path)})

    def test_top_level_must_be_a_mapping(self, tmp_path: Path) -> None:
        """A list (or a scalar) at the top level is an error."""
        path = write(tmp_path, "- storage\n")
        assert errors_of(path) == [
            f"{path}:1: expected a mapping of settings (storage, "
            "defaults, jobs, ...) at the top level, got list"
        ]

    def test_yaml_tags_are_not_constructed(self, tmp_path: Path) -> None:
        """Only safe YAML is read: a python/object tag is a syntax error, not an object."""
        path = write(tmp_path, "storage: !!python/object/apply:os.getcwd []\n")
        (message,) = errors_of(path)
        assert message.startswith(f"{path}:1: YAML syntax error:")

    def test_from_dict_errors_name_the_source(self) -> None:
        """A programmatic config's errors name its source and key, without a line."""
        with pytest.raises(ConfigError) as info:
            Config.from_dict({"jobs": {"Email": {"retry_attempts": "x"}}}, source="tests")
        assert info.value.errors == [
            "tests: jobs.Email.retry_attempts: expected an integer >= 0 and <= 5000, got 'x'"
        ]

    def test_classes_built_in_code_are_checked(self) -> None:
        """The attrs classes validate their fields when built directly, too."""
        with pytest.raises(ValueError, match="retry_attempts: expected an integer >= 0"):
            JobSettings(retry_attempts=-1)
        with pytest.raises(ValueError, match="heartbeat: expected a number < lease / 2"):
            WorkerSettings(lease=1.0, heartbeat=0.5)
        assert JobEntry(retry_attempts=None).set_fields == frozenset()


class TestEnvironment:
    def test_environment_overrides_sections(self, tmp_path: Path) -> None:
        """JOBKIT_STORAGE, JOBKIT_LOGGING__* and JOBKIT_WORKER__* override the file."""
        path = write(tmp_path, "storage: sqlite:///a.db\nworker: {concurrency: 4}\n")
        config = load_config(
            path,
            environ={
                "JOBKIT_STORAGE": "memory://",
                "JOBKIT_WORKER__CONCURRENCY": "2",
                "JOBKIT_LOGGING__DIR": "/var/log/jobkit",
                "JOBKIT_LOGGING__LEVEL": "debug",
                "JOBKIT_LOGGING__ROTATION": "00:00",  # YAML would read 0: a string setting keeps it
                "JOBKIT_LOGGING__RETENTION": "null",
                "JOBKIT_CONFIG": str(path),
                "JOBKIT_TRACE_PLUGINS": "1",
                "OTHER": "ignored",
            },
        )
        assert config.storage == "memory://"
        assert config.worker.concurrency == 2
        assert config.logging == LoggingSettings(
            dir="/var/log/jobkit", level="DEBUG", rotation="00:00", retention=None
        )

    def test_environment_job_settings_with_provenance(self, tmp_path: Path) -> None:
        """JOBKIT_DEFAULTS__* and JOBKIT_JOBS__<NAME>__* rank above the file, named as sources."""
        path = write(tmp_path, "defaults: {retry_attempts: 1}\njobs: {Email: {priority: 3}}\n")
        config = load_config(
            path,
            environ={
                "JOBKIT_DEFAULTS__RETRY_ATTEMPTS": "5",
                "JOBKIT_DEFAULTS__TIMEOUT": "30",
                "JOBKIT_JOBS__EMAIL__RETRY_ATTEMPTS": "7",
            },
        )
        assert config.defaults.retry_attempts == 1  # the file's defaults, env kept apart
        email = config.resolve_job("Email")
        assert (email.settings.retry_attempts, email.settings.timeout) == (7, 30.0)
        assert email.settings.priority == 3
        assert email.sources["retry_attempts"] == "environment JOBKIT_JOBS__EMAIL__RETRY_ATTEMPTS"
        assert email.sources["timeout"] == "environment JOBKIT_DEFAULTS__TIMEOUT"
        assert email.sources["priority"] == f"{path}:2 (jobs.Email)"
        other = config.resolve_job("Other")
        assert other.settings.retry_attempts == 5
        assert other.sources["retry_attempts"] == "environment JOBKIT_DEFAULTS__RETRY_ATTEMPTS"

    def test_environment_job_names_match_case_insensitively(self) -> None:
        """JOBKIT_JOBS__SEND_EMAIL__* applies to a job registered as send_email or Send_Email."""
        config = load_config(environ={"JOBKIT_JOBS__SEND_EMAIL__PRIORITY": "9"}, path=None)
        assert config.resolve_job("Send_Email").settings.priority == 9
        assert config.resolve_job("Other").settings.priority == 0

    def test_environment_errors_name_the_variable(self, tmp_path: Path) -> None:
        """A bad value or an unknown JOBKIT_ variable is an error naming the variable."""
        errors = errors_of(
            write(tmp_path, ""),
            environ={
                "JOBKIT_WORKER__CONCURRENCY": "x",
                "JOBKIT_DEFAULTS__RETRY_ATTEMPTS": "true",
                "JOBKIT_WORKER__THREADS": "2",
                "JOBKIT_STORGE": "memory://",
                "JOBKIT_JOBS__EMAIL__CLASS": "a:B",
            },
        )
        unknown = (
            "not a jobkit setting (known: JOBKIT_STORAGE, JOBKIT_DURABILITY, "
            "JOBKIT_DEFAULTS__<KEY>, JOBKIT_LOGGING__<KEY>, JOBKIT_WORKER__<KEY>, "
            "JOBKIT_DASHBOARD__<KEY>, JOBKIT_RETENTION__<STATUS>, JOBKIT_JOBS__<NAME>__<KEY>)"
        )
        assert errors == [
            "environment JOBKIT_DEFAULTS__RETRY_ATTEMPTS: expected an integer >= 0 and <= 5000, "
            "got True",
            f"environment JOBKIT_JOBS__EMAIL__CLASS: {unknown}",
            f"environment JOBKIT_STORGE: {unknown}",
            "environment JOBKIT_WORKER__CONCURRENCY: expected an integer >= 1 and <= 1024, got 'x'",
            f"environment JOBKIT_WORKER__THREADS: {unknown}",
        ]

    def test_environment_and_file_errors_come_together(self, tmp_path: Path) -> None:
        """File errors and environment errors are reported in one ConfigError."""
        path = write(tmp_path, "defaults: {retry_delay: -1}\n")
        errors = errors_of(path, {"JOBKIT_UNKNOWN": "1"})
        assert len(errors) == 2
        assert errors[0] == (f"{path}:1: defaults.retry_delay: expected a number >= 0 and "
                             "<= 315360000 (10 years), got -1")
        assert errors[1].startswith("environment JOBKIT_UNKNOWN: not a jobkit setting")

    def test_environment_value_breaking_a_cross_check_names_the_variable(
        self, tmp_path: Path
    ) -> None:
        """A heartbeat from the environment that is not under lease / 2 names the variable."""
        path = write(tmp_path, "worker: {lease: 2}\n")
        assert errors_of(path, {"JOBKIT_WORKER__HEARTBEAT": "1.5"}) == [
            "environment JOBKIT_WORKER__HEARTBEAT: expected a number < lease / 2 = 1, got 1.5"
        ]

    def test_from_dict_ignores_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Programmatic configs are exactly what the code says."""
        monkeypatch.setenv("JOBKIT_STORAGE", "memory://")
        assert Config.from_dict({}).storage == "sqlite:///jobkit.db"


class TestResolveJob:
    def test_each_layer_overrides_the_one_below(self, tmp_path: Path) -> None:
        """built-in < defaults < package < jobs entry < env defaults < env job < call."""
        path = write(
            tmp_path,
            """\
            defaults:
              retry_attempts: 1
              retry_delay: 1
              jitter: 0.1
            jobs:
              Email:
                retry_attempts: 3
                retry_delay: 3
        """,
        )
        config = load_config(
            path,
            environ={
                "JOBKIT_DEFAULTS__TIMEOUT": "40",
                "JOBKIT_DEFAULTS__PRIORITY": "4",
                "JOBKIT_JOBS__EMAIL__PRIORITY": "5",
            },
        )
        resolved = config.resolve_job(
            "Email",
            package_defaults={
                "retry_attempts": 2,
                "retry_delay": 2,
                "jitter": 0.2,
                "backoff": "exponential",
                "timeout": 20,
            },
            package="jobkit_email",
            overrides={"timeout": 60, "retry_delay": None, "priority": None},
        )
        assert resolved.settings == JobSettings(
            retry_attempts=3,
            retry_delay=3.0,
            backoff="exponential",
            jitter=0.2,
            timeout=60.0,
            priority=5,
        )
        assert resolved.sources == {
            "retry_attempts": f"{path}:7 (jobs.Email)",
            "retry_delay": f"{path}:8 (jobs.Email)",
            "backoff": "package jobkit_email",
            "max_delay": "built-in",
            "jitter": "package jobkit_email",
            "timeout": "call",
            "priority": "environment JOBKIT_JOBS__EMAIL__PRIORITY",
            "max_params_bytes": "built-in",
            "max_crashes": "built-in",
            "queue": "built-in",
            "concurrency": "built-in",
            "rate_limit": "built-in",
            "unique": "built-in",
        }

    def test_defaults_section_is_labelled_with_its_line(self, tmp_path: Path) -> None:
        """A value from defaults: names the file and the line of its key."""
        path = write(tmp_path, "storage: memory://\ndefaults:\n  retry_attempts: 0\n")
        resolved = load_config(path, environ={}).resolve_job("Any")
        assert resolved.settings.max_attempts == 1
        assert resolved.sources["retry_attempts"] == f"{path}:3 (defaults)"

    def test_null_in_a_job_entry_clears_a_default(self, tmp_path: Path) -> None:
        """timeout: null in jobs.<name> is a value set by that layer, not an unset key."""
        path = write(tmp_path, "defaults: {timeout: 30}\njobs:\n  Long: {timeout: null}\n")
        config = load_config(path, environ={})
        assert config.resolve_job("Long").settings.timeout is None
        assert config.resolve_job("Short").settings.timeout == 30.0

    def test_package_defaults_with_a_bad_key(self) -> None:
        """Unknown keys and bad values in a package's defaults name the package and the key."""
        with pytest.raises(ConfigError) as info:
            Config().resolve_job(
                "Email", package="jobkit_email", package_defaults={"retries": 2, "timeout": -1}
            )
        assert info.value.errors == [
            "package jobkit_email, job 'Email' defaults: retries: unknown setting (known: "
            "retry_attempts, retry_delay, backoff, max_delay, jitter, timeout, priority, "
            "max_params_bytes, max_crashes, queue, concurrency, rate_limit, unique)",
            "package jobkit_email, job 'Email' defaults: timeout: expected a number > 0 and "
            "<= 604800 (7 days), got -1",
        ]

    def test_call_overrides(self) -> None:
        """The call layer tops everything; None means not given; bad values name the key."""
        config = Config.from_dict({"defaults": {"priority": 1}})
        resolved = config.resolve_job("Email", overrides={"priority": 10, "retry_attempts": 0})
        assert (resolved.settings.priority, resolved.settings.max_attempts) == (10, 1)
        assert resolved.sources["priority"] == "call"
        assert (
            config.resolve_job("Email", overrides={"priority": None}).sources["priority"]
            == "<dict> (defaults)"
        )
        with pytest.raises(
            ConfigError, match="call: retry_attempts: expected an integer >= 0 and <= 5000, got -2"
        ):
            config.resolve_job("Email", overrides={"retry_attempts": -2})
        with pytest.raises(ConfigError, match="call: backoff: unknown setting"):
            config.resolve_job("Email", overrides={"backoff": "fixed"})

    def test_resolution_survives_pickling(self, tmp_path: Path) -> None:
        """Worker processes get the config pickled, provenance and environment included."""
        path = write(tmp_path, "jobs:\n  Email: {priority: 2}\n")
        config = load_config(path, environ={"JOBKIT_DEFAULTS__TIMEOUT": "9"})
        copy = pickle.loads(pickle.dumps(config))
        assert copy == config
        assert copy.resolve_job("Email") == config.resolve_job("Email")
        assert copy.job_line("Email") == f"{path}:2"


class TestNotifications:
    def test_other_keys_become_options(self, tmp_path: Path) -> None:
        """Every key but plugin, events and jobs is kept for the notifier to validate."""
        path = write(
            tmp_path,
            """\
            notifications:
              - plugin: webhook
                url: http://127.0.0.1:9000/hook
                secret: s3cret
                events: [failed, retrying]
                jobs: [Email]
              - plugin: log
        """,
        )
        first, second = load_config(path, environ={}).notifications
        assert first == NotificationEntry(
            plugin="webhook",
            events=["failed", "retrying"],
            jobs=["Email"],
            options={"url": "http://127.0.0.1:9000/hook", "secret": "s3cret"},
        )
        assert second == NotificationEntry(plugin="log")
        assert second.events is None and second.jobs is None and second.options == {}


def alias_bomb(levels: int = 9) -> str:
    """A jobs.yaml whose options hold 9**levels strings through nested aliases (a "billion
    laughs"): a few hundred bytes that expand to hundreds of millions of values."""
    lines = ["jobs:", "  Email:", "    options:", '      a0: &a0 ["x", "x", "x", "x", "x", "x", '
             '"x", "x", "x"]']
    lines += [f"      a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, levels)]
    return "\n".join(lines) + "\n"


class TestLoaderLimits:
    def test_deep_nesting_in_the_file(self, tmp_path: Path) -> None:
        """50,000 nested lists under options: a ConfigError naming file, line and the limit."""
        path = write(tmp_path, "storage: memory://\njobs:\n  Email:\n    options: {x: "
                     + "[" * 50_000 + "]" * 50_000 + "}\n")
        (error,) = errors_of(path)
        assert error.startswith(f"{path}:4: ") and "nest deeper than 64 levels" in error

    def test_nesting_up_to_the_limit_loads(self, tmp_path: Path) -> None:
        """A file whose mappings and lists nest 64 levels deep loads."""
        path = write(tmp_path, "jobs:\n  Email:\n    options: {x: "
                     + "[" * 60 + "]" * 60 + "}\n")  # 4 mappings, then 60 lists
        value = load_config(path, environ={}).jobs["Email"].options["x"]
        for _ in range(59):
            (value,) = value
        assert value == []
        deeper = write(tmp_path, "jobs:\n  Email:\n    options: {x: "
                       + "[" * 61 + "]" * 61 + "}\n", name="deeper.yaml")
        assert "nest deeper than 64 levels" in errors_of(deeper)[0]

    def test_alias_bomb_is_refused(self, tmp_path: Path) -> None:
        """Aliases that would repeat more than 10,000 values: refused at the alias's line."""
        path = write(tmp_path, alias_bomb())
        (error,) = errors_of(path)
        assert error.startswith(f"{path}:8: ") and "aliases repeat more than 10,000" in error

    def test_recursive_alias_is_refused(self, tmp_path: Path) -> None:
        """An alias inside the list it names (a list that contains itself): refused."""
        path = write(tmp_path, "jobs:\n  Email:\n    options:\n      loop: &loop [1, *loop]\n")
        (error,) = errors_of(path)
        assert error.startswith(f"{path}:4: ")
        assert "alias *loop is inside the mapping or list it names" in error

    def test_ordinary_aliases_and_merge_keys_load(self, tmp_path: Path) -> None:
        """Anchors, aliases and merge keys of a real file still load."""
        path = write(tmp_path, """\
            x-retry: &retry {retry_attempts: 4, retry_delay: 2}
            jobs:
              Email:
                <<: *retry
                options: &smtp {host: mail.example.com, port: 25}
              Invoice:
                <<: *retry
                options: {relay: *smtp}
        """)
        errors = errors_of(path)  # x-retry is not a jobkit key: the only error
        assert len(errors) == 1 and "x-retry: unknown key" in errors[0]
        path.write_text(path.read_text().replace("x-retry: &retry", "defaults: &retry"))
        config = load_config(path, environ={})
        assert config.jobs["Email"].retry_attempts == 4
        assert config.jobs["Invoice"].options["relay"]["host"] == "mail.example.com"

    def test_file_over_one_megabyte(self, tmp_path: Path) -> None:
        """A configuration file over 1 MB is refused, unread, with its name and the limit."""
        path = write(tmp_path, "storage: memory://\n" + "# padding\n" * 110_000)
        (error,) = errors_of(path)
        assert error == f"{path}: configuration file larger than 1 MB (1,048,576 bytes)"

    @pytest.mark.parametrize(
        "value", ["[" * 50_000, "{a: " * 20_000, '{"a": ' * 20_000, "[" * 65 + "]" * 65]
    )
    def test_deep_nesting_in_an_environment_variable(self, value: str) -> None:
        """A JOBKIT_* value nested past the limit: a ConfigError naming the variable."""
        with pytest.raises(ConfigError) as info:
            load_config(environ={"JOBKIT_DEFAULTS__TIMEOUT": value})
        (error,) = info.value.errors
        assert error.startswith("environment JOBKIT_DEFAULTS__TIMEOUT: ")
        assert "nest deeper than 64 levels" in error and len(error) < 200
