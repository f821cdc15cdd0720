"""The configuration of jobkit: attrs classes, ``jobs.yaml`` loading, layering and provenance.

:func:`load_config` reads ``jobs.yaml`` (safe YAML only) and the ``JOBKIT_*`` environment. Every
unknown key, wrong type and bad value is reported, all at once, in one ``ConfigError`` whose
messages name the file, line and key (``jobs.yaml:12: jobs.Email.retry_attempts: expected an
integer >= 0, got 'five'``) or the environment variable at fault.

The settings of one job are resolved by :meth:`Config.resolve_job` from these layers, lowest
first; a layer overrides only the keys it sets, and ``ResolvedJob.sources`` names the layer that
set each value:

1. ``built-in``: the defaults of :class:`JobSettings`;
2. the ``defaults:`` section of ``jobs.yaml`` (``jobs.yaml:4 (defaults)``);
3. the defaults the job's package ships in ``Job.defaults`` (``package <name>``);
4. the job's ``jobs.<name>`` entry in ``jobs.yaml`` (``jobs.yaml:9 (jobs.Email)``);
5. ``JOBKIT_DEFAULTS__<KEY>`` variables, for every job (``environment JOBKIT_DEFAULTS__<KEY>``);
6. ``JOBKIT_JOBS__<NAME>__<KEY>`` variables, the job name matched case-insensitively;
7. the arguments of one call (``call``): ``retry_attempts``, ``retry_delay``, ``timeout`` and
   ``priority``; ``None`` means not given.

The environment overrides the other sections too: ``JOBKIT_STORAGE``, ``JOBKIT_LOGGING__<KEY>``,
``JOBKIT_WORKER__<KEY>`` and ``JOBKIT_DASHBOARD__<KEY>``. A value is read as a YAML scalar
(``5``, ``1.5``, ``null``); a string setting keeps the raw text when YAML reads it as something
else (``00:00``). Only
:func:`load_config` reads the environment; ``Config()`` and ``Config.from_dict`` never do.
"""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import cattrs

from jobkit import limits
from jobkit.config_yaml import (
    CHECK,
    OPTIONS,
    Check,
    Invalid,
    KeyPath,
    Rule,
    boolean,
    bounded,
    checked,
    choice,
    container_hook,
    env_value,
    format_path,
    line_of,
    list_of,
    loguru_option,
    mapping_hook,
    problems,
    read_yaml_file,
    rules_of,
    setting,
    strict_str,
    text,
    unset_or,
)
from jobkit.exceptions import ConfigError
from jobkit.records import EventKind, RetryPolicy

#: loguru's level names.
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
#: The settings one call of ``run_background_job`` may override.
CALL_SETTINGS = ("retry_attempts", "retry_delay", "timeout", "priority")
#: JOBKIT_* variables that are not configuration keys.
_NOT_SETTINGS = frozenset({"JOBKIT_CONFIG", "JOBKIT_TRACE_PLUGINS", "JOBKIT_DEBUG"})
_STORAGE_URL = r"[A-Za-z][A-Za-z0-9+.-]*://.*"
_SQLITE_PREFIX = "sqlite:///"
_IMPORT_PATH = r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*"
_ALIASES = {"class_": "class"}  # attribute name -> key in the file
_NOT_IN_FILE = frozenset({"path", "_provenance", "set_fields"})


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


@attrs.frozen
class JobSettings:
    """The effective retry, timeout and priority settings of a job (or of ``defaults:``)."""

    #: Retries after the first failure: a job runs at most ``1 + retry_attempts`` times.
    retry_attempts: int = setting(3, bounded(limits.RETRY_ATTEMPTS))
    #: Seconds between attempts (the first delay, with ``exponential`` backoff).
    retry_delay: float = setting(5.0, bounded(limits.DELAY))
    backoff: Literal["fixed", "exponential"] = setting("fixed", choice("fixed", "exponential"))
    #: The longest delay between attempts, in seconds; None for no cap.
    max_delay: float | None = setting(None, bounded(limits.MAX_DELAY_SETTING, nullable=True))
    #: A fraction (0..1) of the delay added at random.
    jitter: float = setting(0.0, bounded(limits.JITTER))
    #: Seconds one attempt may run; None for no limit.
    timeout: float | None = setting(None, bounded(limits.TIMEOUT, nullable=True))
    #: Higher runs first.
    priority: int = setting(0, bounded(limits.PRIORITY))
    #: The largest params a caller may enqueue, in bytes of UTF-8 JSON.
    max_params_bytes: int = setting(1_048_576, bounded(limits.PARAMS_BYTES))
    #: Times the job's worker may die (or lose its lease) while running it before the job is
    #: failed: a poison job that kills its process is not run for ever. Separate from retries.
    max_crashes: int = setting(3, bounded(limits.MAX_CRASHES))

    @property
    def max_attempts(self) -> int:
        """How many times the job may run in all: the first attempt and its retries."""
        return 1 + self.retry_attempts

    def policy(self) -> RetryPolicy:
        """The retry policy stored with each job record."""
        return RetryPolicy(retry_delay=self.retry_delay, backoff=self.backoff,
                           max_delay=self.max_delay, jitter=self.jitter, timeout=self.timeout)


#: Each job setting's rule, shared by the file, environment, package and call layers.
_JOB_RULES = rules_of(JobSettings)


@attrs.frozen
class LoggingSettings:
    """Where and how ``background_jobs.log`` and ``background_jobs_errors.log`` are written."""

    dir: str = setting("logs", text("a directory"))
    format: Literal["text", "json"] = setting("text", choice("text", "json"))
    #: A loguru rotation ("00:00", "100 MB", "1 week"); None never rotates.
    rotation: str | int | None = setting(
        "00:00", loguru_option("rotation", 'a loguru rotation such as "00:00", "100 MB", "1 week"'))
    #: A loguru retention ("14 days", "10 files"); None keeps every file.
    retention: str | int | None = setting(
        "14 days", loguru_option("retention", 'a loguru retention such as "14 days", "10 files"'))
    #: A loguru level name, in any case; kept upper-case.
    level: str = setting("INFO", choice(*LOG_LEVELS), converter=_upper)


@attrs.frozen
class WorkerSettings:
    """The timings of ``jobkit worker``, in seconds, and its number of processes."""

    #: Worker processes; None for one per CPU.
    concurrency: int | None = setting(None, bounded(limits.CONCURRENCY, nullable=True))
    poll_interval: float = setting(0.05, bounded(limits.POLL_INTERVAL))
    #: How long a claim lasts without a heartbeat before another worker may take the job.
    lease: float = setting(30.0, bounded(limits.LEASE))
    #: Seconds between heartbeats: under half the lease, so one late beat loses nothing.
    heartbeat: float = setting(0.5, bounded(limits.HEARTBEAT))
    shutdown_grace: float = setting(30.0, bounded(limits.SHUTDOWN_GRACE))
    kill_grace: float = setting(1.0, bounded(limits.KILL_GRACE))
    requeue_interval: float = setting(1.0, bounded(limits.REQUEUE_INTERVAL))
    #: The most short jobs (under 5 ms each) a worker process claims at once and records in one
    #: commit; 1 claims and records them one by one.
    prefetch: int = setting(32, bounded(limits.PREFETCH))

    def __attrs_post_init__(self) -> None:
        if not self.heartbeat < self.lease / 2:
            raise Invalid(f"expected a number < lease / 2 = {self.lease / 2:g}, "
                          f"got {self.heartbeat!r}", ("heartbeat",))


#: What ``jobkit dashboard hash-password`` makes (jobkit/dashboard/passwords.py's HASH_PATTERN).
_PASSWORD_HASH = r"scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+"
_HASH_RULE = text("a password hash, not a password: run `jobkit dashboard hash-password` and "
                  "set the scrypt$... line it prints", pattern=_PASSWORD_HASH, nullable=True,
                  secret=True)


def _is_network(value: Any) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


#: ``dashboard.trusted_proxies``: addresses and networks, checked as the dashboard reads them.
_PROXIES = list_of(Rule("an IP address or network (10.0.0.1, 10.0.0.0/8, fd00::/8)",
                        _is_network), "IP addresses or networks")


def _none_as_empty(value: Any) -> Any:
    return [] if value is None else value


@attrs.frozen
class DashboardSettings:
    """``jobkit dashboard``: who may sign in, and how their sessions are signed."""

    #: Sign-in required; ``false`` is refused on any address but the loopback.
    auth: bool = setting(True, boolean())
    #: The hash of the password that may see and act (``jobkit dashboard hash-password``).
    password_hash: str | None = setting(None, _HASH_RULE)
    #: The hash of a password that may see but never act.
    readonly_password_hash: str | None = setting(None, _HASH_RULE)
    #: The key that signs session cookies (32 characters or more); none: a random key per
    #: start, so signing in again after a restart. Better set in the environment.
    secret_key: str | None = setting(
        None, text("a secret of 32 characters or more", pattern=r".{32,}", nullable=True,
                   secret=True))
    #: Seconds a sign-in lasts.
    session_seconds: float = setting(8 * 3600.0, bounded(limits.SESSION_SECONDS))
    #: Send the session cookie over HTTPS only (``Secure``): set it behind an HTTPS proxy.
    secure_cookie: bool = setting(False, boolean())
    #: The reverse proxies (addresses or networks) whose ``X-Forwarded-For`` is believed; none
    #: by default: the client is the peer, whatever headers it sends.
    trusted_proxies: list[str] = attrs.field(factory=list, converter=_none_as_empty,
                                             validator=checked, metadata={CHECK: _PROXIES})


def _settings_given(entry: JobEntry) -> frozenset[str]:
    """For an entry built in code: the job settings that are not None."""
    return frozenset(key for key in _JOB_RULES if getattr(entry, key) is not None)


@attrs.frozen
class JobEntry:
    """One entry under ``jobs:``. A job setting left ``None`` is not set by this entry."""

    #: ``module:Class`` to register under this name without an entry point (YAML key ``class``).
    class_: str | None = setting(
        None, text("a 'module:Class' import path", pattern=_IMPORT_PATH, nullable=True))
    #: Narrows the job's approved methods; never widens them.
    methods: list[str] | None = attrs.field(default=None, validator=checked, metadata={
        CHECK: list_of(text("a method name"), "method names")})
    #: Free-form options handed to the job instance as ``self.options``.
    options: dict[str, Any] = attrs.field(factory=dict, validator=checked,
                                          metadata={CHECK: OPTIONS})
    retry_attempts: int | None = unset_or(_JOB_RULES["retry_attempts"])
    retry_delay: float | None = unset_or(_JOB_RULES["retry_delay"])
    backoff: Literal["fixed", "exponential"] | None = unset_or(_JOB_RULES["backoff"])
    max_delay: float | None = unset_or(_JOB_RULES["max_delay"])
    jitter: float | None = unset_or(_JOB_RULES["jitter"])
    timeout: float | None = unset_or(_JOB_RULES["timeout"])
    priority: int | None = unset_or(_JOB_RULES["priority"])
    max_params_bytes: int | None = unset_or(_JOB_RULES["max_params_bytes"])
    max_crashes: int | None = unset_or(_JOB_RULES["max_crashes"])
    #: The job settings this entry sets, nulls included (``timeout: null`` clears a timeout).
    set_fields: frozenset[str] = attrs.field(
        default=attrs.Factory(_settings_given, takes_self=True)
    )

    def settings(self) -> dict[str, Any]:
        """The job settings this entry sets, by name."""
        return {key: getattr(self, key) for key in _JOB_RULES if key in self.set_fields}


@attrs.frozen
class NotificationEntry:
    """One entry of ``notifications:``; every key but these three goes to ``options``."""

    plugin: str = attrs.field(validator=checked, metadata={CHECK: text("a plugin name")})
    #: Event kinds to report; None for all.
    events: list[str] | None = attrs.field(default=None, validator=checked, metadata={
        CHECK: list_of(choice(*(kind.value for kind in EventKind)), "event kinds")})
    #: Job names to report on; None for all.
    jobs: list[str] | None = attrs.field(default=None, validator=checked, metadata={
        CHECK: list_of(text("a job name"), "job names")})
    #: The notifier's own options (url, secret, ...), validated by the notifier plugin.
    options: dict[str, Any] = attrs.field(factory=dict, validator=checked,
                                          metadata={CHECK: OPTIONS})


@attrs.frozen
class ResolvedJob:
    """A job's effective settings and, for each setting, the layer that set it."""

    settings: JobSettings
    sources: dict[str, str]


EnvValue = tuple[Any, str]  # a checked value and the variable that set it


@attrs.frozen
class _Provenance:
    """Where the values of a ``Config`` came from (plain data: configs go to worker processes)."""

    source: str | None = None
    lines: dict[KeyPath, int] = attrs.Factory(dict)
    defaults_set: frozenset[str] = frozenset()
    env_origin: dict[KeyPath, str] = attrs.Factory(dict)  # storage/logging/worker keys from env
    env_defaults: dict[str, EnvValue] = attrs.Factory(dict)
    env_jobs: dict[str, dict[str, EnvValue]] = attrs.Factory(dict)  # by upper-cased job name

    def where(self, path: KeyPath) -> str:
        """``file:line`` of a key (or ``environment VAR``), for messages and sources."""
        if path in self.env_origin:
            return f"environment {self.env_origin[path]}"
        line = line_of(self.lines, path)
        source = self.source or "jobs.yaml"
        return f"{source}:{line}" if line else source

    def message(self, path: KeyPath, problem: str) -> str:
        """An error message naming the file, line and key, or the environment variable."""
        where = self.where(path)
        if where.startswith("environment "):
            return f"{where}: {problem}"
        return f"{where}: {format_path(path)}: {problem}"


@attrs.frozen
class Config:
    """The whole configuration of a jobkit app. Build it with :func:`load_config` or
    :meth:`from_dict`; ``Config()`` holds the built-in defaults."""

    #: The job store's URL: ``sqlite:///jobkit.db``, ``postgresql://...``, ``memory://``.
    storage: str = setting("sqlite:///jobkit.db",
                           text("a storage URL like 'sqlite:///jobkit.db'", pattern=_STORAGE_URL))
    #: ``normal``: nothing committed is lost when a process crashes (SQLite: WAL with
    #: synchronous=NORMAL); ``full``: nor when the machine loses power (SQLite:
    #: synchronous=FULL, an fsync per commit). PostgreSQL is always ``full`` (its own settings).
    durability: Literal["normal", "full"] = setting("normal", choice("normal", "full"))
    #: The built-in job settings overlaid by ``defaults:``; ``JOBKIT_DEFAULTS__*`` variables
    #: are not in here, as they rank above package and per-job layers (see :meth:`resolve_job`).
    defaults: JobSettings = attrs.Factory(JobSettings)
    logging: LoggingSettings = attrs.Factory(LoggingSettings)
    worker: WorkerSettings = attrs.Factory(WorkerSettings)
    dashboard: DashboardSettings = attrs.Factory(DashboardSettings)
    jobs: dict[str, JobEntry] = attrs.Factory(dict)
    notifications: list[NotificationEntry] = attrs.Factory(list)
    #: The file this configuration was loaded from, if any.
    path: str | None = None
    _provenance: _Provenance = attrs.field(factory=_Provenance, repr=False, eq=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> Config:
        """A configuration from a ``jobs.yaml``-shaped mapping; ``source`` names it in errors."""
        return _build(data, _Provenance(source=source), None)

    def job_entry(self, name: str) -> JobEntry | None:
        """The ``jobs.<name>`` entry, or None."""
        return self.jobs.get(name)

    def env_job_variables(self) -> dict[str, list[str]]:
        """Upper-cased job name -> the ``JOBKIT_JOBS__<NAME>__*`` variables that set it."""
        return {
            name: sorted(variable for _, variable in values.values())
            for name, values in self._provenance.env_jobs.items()
        }

    def job_line(self, name: str) -> str:
        """``file:line`` of the ``jobs.<name>`` entry, for error messages about that job."""
        if name in self.jobs:
            return self.where("jobs", name)
        return self._provenance.source or "jobs.yaml"

    def where(self, *path: str | int) -> str:
        """``file:line`` of a key, e.g. ``where("notifications", 0)``; just the file when the
        configuration was not read from one."""
        return self._provenance.where(path)

    def resolve_job(
        self,
        name: str,
        *,
        package_defaults: Mapping[str, Any] | None = None,
        package: str | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> ResolvedJob:
        """The settings of job ``name`` through every layer (see the module docstring).

        Raises ``ConfigError`` naming the package or the call for a bad key or value there.
        """
        origin = self._provenance
        values = attrs.asdict(JobSettings(), recurse=False)
        sources = dict.fromkeys(values, "built-in")

        def apply(layer: Mapping[str, Any], label: str | None = None, at: KeyPath = ()) -> None:
            for key, value in layer.items():
                values[key] = value
                sources[key] = label or f"{origin.where((*at, key))} ({format_path(at)})"

        apply({key: getattr(self.defaults, key) for key in _JOB_RULES
               if key in origin.defaults_set or getattr(self.defaults, key) != values[key]},
              at=("defaults",))
        if package_defaults:
            label = f"package {package}" if package else "package defaults"
            apply(_check_layer(package_defaults, _JOB_RULES, f"{label}, job {name!r} defaults"),
                  label)
        entry = self.jobs.get(name)
        if entry is not None:
            apply(entry.settings(), at=("jobs", name))
        for env_layer in (origin.env_defaults, origin.env_jobs.get(name.upper(), {})):
            for key, (value, var) in env_layer.items():
                apply({key: value}, f"environment {var}")
        given = {key: value for key, value in (overrides or {}).items() if value is not None}
        apply(_check_layer(given, CALL_SETTINGS, "call"), "call")
        return ResolvedJob(JobSettings(**values), sources)


def load_config(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> Config:
    """Load the configuration: the file, then the ``JOBKIT_*`` variables of ``environ``.

    ``path`` None means ``environ["JOBKIT_CONFIG"]`` if set, else ``./jobs.yaml`` if it exists,
    else the built-in defaults. ``environ`` defaults to ``os.environ``. Raises ``ConfigError``
    listing every problem of the file and the environment.

    The relative paths of a file (a ``sqlite:///`` store, ``logging.dir``, and their built-in
    defaults when it leaves them) are made absolute from the file's folder; those of the
    environment are kept, relative to the working directory.
    """
    env = os.environ if environ is None else environ
    file = _config_file(path, env)
    if file is None:
        return _build({}, _Provenance(), env)
    document = read_yaml_file(file)
    data = {} if document.data is None else document.data
    config = _build(data, _Provenance(source=file, lines=document.lines), env,
                    duplicates=document.duplicates, folder=Path(file).absolute().parent)
    return attrs.evolve(config, path=file)


def _config_file(path: str | os.PathLike[str] | None, env: Mapping[str, str]) -> str | None:
    """The file :func:`load_config` reads: ``path``, else ``JOBKIT_CONFIG``, else an existing
    ``./jobs.yaml``; None for the built-in defaults."""
    if path is None and env.get("JOBKIT_CONFIG"):
        path = env["JOBKIT_CONFIG"]
    elif path is None and Path("jobs.yaml").is_file():
        path = "jobs.yaml"
    return None if path is None else os.fspath(path)


def raw_notifications(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """The ``notifications:`` entries of the file :func:`load_config` reads, unchecked, each
    with where it is (``jobs.yaml:12: notifications[0]``): for the notifier plugins to check
    when the file has other problems, so that one ``ConfigError`` names them all. Empty when
    the file cannot be read."""
    file = _config_file(path, os.environ if environ is None else environ)
    if file is None:
        return []
    try:
        document = read_yaml_file(file)
    except ConfigError:
        return []
    data = document.data if isinstance(document.data, Mapping) else {}
    entries = data.get("notifications")
    if not isinstance(entries, list):
        return []
    provenance = _Provenance(source=file, lines=document.lines)
    return [(f"{provenance.where(('notifications', index))}: notifications[{index}]", entry)
            for index, entry in enumerate(entries) if isinstance(entry, dict)]


def _check_layer(layer: Mapping[str, Any], allowed: Collection[str], where: str) -> dict[str, Any]:
    """Check one layer of job settings; ``ConfigError`` lists every bad key and value."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    for key, value in layer.items():
        if key not in allowed:
            errors.append(f"{where}: {key}: unknown setting (known: {', '.join(allowed)})")
            continue
        try:
            values[key] = _JOB_RULES[key](value)
        except Invalid as exc:
            errors.append(f"{where}: {key}: {exc.message}")
    if errors:
        raise ConfigError(errors=errors)
    return values


def _build(data: Any, provenance: _Provenance, environ: Mapping[str, str] | None,
           duplicates: Collection[KeyPath] = (), folder: Path | None = None) -> Config:
    """Structure ``data`` overlaid by ``environ``; ``ConfigError`` lists every problem.

    ``folder``: the file's folder, that its relative paths are taken from (see
    :func:`_paths_from`)."""
    if not isinstance(data, Mapping):
        raise ConfigError(errors=[
            f"{provenance.where(())}: expected a mapping of settings (storage, defaults, jobs, "
            f"...) at the top level, got {type(data).__name__}"])
    env_errors: list[str] = []
    sections, env_defaults, env_jobs = _read_environ(environ or {}, env_errors)
    defaults = data.get("defaults")
    provenance = attrs.evolve(
        provenance,
        defaults_set=_job_keys(defaults),
        env_origin={path: var for path, (_, var) in sections.items()},
        env_defaults=env_defaults,
        env_jobs=env_jobs,
    )
    found = [(path, "duplicate key") for path in duplicates]
    try:
        config = _converter().structure(_overlay(data, sections), Config)
    except cattrs.BaseValidationError as exc:
        found.extend(problems(exc, _file_keys, _ALIASES))
    if found or env_errors:
        found.sort(key=lambda problem: line_of(provenance.lines, problem[0]) or 0)
        raise ConfigError(errors=[provenance.message(*problem) for problem in found]
                          + env_errors)
    if folder is not None:
        config = _paths_from(config, folder, set(sections))
    return attrs.evolve(config, provenance=provenance)


def _paths_from(config: Config, folder: Path, from_env: Collection[KeyPath]) -> Config:
    """``config`` with the relative paths of its file (or the built-in defaults it left) taken
    from ``folder``, as docker compose does; a path from the environment is left relative to
    the working directory, as one given on a command line is."""
    storage, log_dir = config.storage, config.logging.dir
    if ("storage",) not in from_env:
        storage = _sqlite_url_from(folder, storage)
    if ("logging", "dir") not in from_env:
        log_dir = _path_from(folder, log_dir)
    return attrs.evolve(config, storage=storage,
                        logging=attrs.evolve(config.logging, dir=log_dir))


def _path_from(folder: Path, path: str) -> str:
    """``path`` if absolute, else ``folder / path`` (``..`` resolved, symlinks kept)."""
    return path if os.path.isabs(path) else os.path.normpath(folder / path)


def _sqlite_url_from(folder: Path, url: str) -> str:
    """A ``sqlite:///relative/path`` URL taken from ``folder``: ``sqlite:////folder/relative/
    path``; any other URL (absolute, ``memory://``, ``postgresql://...``, the in-memory and
    ``file:`` forms the SQLite store refuses) as it is."""
    if not url.startswith(_SQLITE_PREFIX):
        return url
    path = url[len(_SQLITE_PREFIX):]
    if path in ("", ":memory:") or path.startswith("file:") or os.path.isabs(path):
        return url
    return _SQLITE_PREFIX + Path(_path_from(folder, path)).as_posix()


def _job_keys(mapping: Any) -> frozenset[str]:
    """The job settings a mapping of the file sets (explicit nulls included)."""
    return frozenset(key for key in mapping if key in _JOB_RULES) if isinstance(
        mapping, dict) else frozenset()


def _file_keys(cls: type) -> list[str]:
    """The keys a mapping in the file may hold for ``cls``."""
    return [_ALIASES.get(a.name, a.name) for a in attrs.fields(cls) if a.name not in _NOT_IN_FILE]


@functools.cache
def _converter() -> cattrs.Converter:
    """The converter from the file's data to ``Config`` (built on first use)."""
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(str, strict_str)  # mapping keys: job names
    for cls in (JobSettings, LoggingSettings, WorkerSettings, DashboardSettings):
        conv.register_structure_hook(cls, mapping_hook(cls, conv))
    entry = mapping_hook(JobEntry, conv, omit=_NOT_IN_FILE, rename=_ALIASES)
    conv.register_structure_hook(JobEntry, lambda value, _: attrs.evolve(
        entry(value, JobEntry), set_fields=_job_keys(value)))
    notification = mapping_hook(NotificationEntry, conv)
    conv.register_structure_hook(NotificationEntry, lambda value, _: notification(
        _split_options(value), NotificationEntry))
    conv.register_structure_hook(Config, mapping_hook(
        Config, conv, omit=_NOT_IN_FILE,
        jobs=container_hook(dict, conv.get_structure_hook(dict[str, JobEntry])),
        notifications=container_hook(list, conv.get_structure_hook(list[NotificationEntry]))))
    return conv


def _split_options(value: Any) -> Any:
    """A notifications entry: every key but plugin, events and jobs is one of its options."""
    if not isinstance(value, dict):
        return value
    named = {key: value[key] for key in ("plugin", "events", "jobs") if key in value}
    return {**named, "options": {k: v for k, v in value.items() if k not in named}}


_SECTIONS: dict[str, type] = {
    "defaults": JobSettings, "logging": LoggingSettings, "worker": WorkerSettings,
    "dashboard": DashboardSettings,
}
_ENV_HELP = ("not a jobkit setting (known: JOBKIT_STORAGE, JOBKIT_DURABILITY, "
             "JOBKIT_DEFAULTS__<KEY>, JOBKIT_LOGGING__<KEY>, JOBKIT_WORKER__<KEY>, "
             "JOBKIT_DASHBOARD__<KEY>, JOBKIT_JOBS__<NAME>__<KEY>)")


def _env_rule(parts: list[str]) -> Check | None:
    """The rule of the setting that ``JOBKIT_<PARTS>`` names, or None."""
    if len(parts) >= 3 and parts[0] == "jobs" and all(parts[1:-1]):
        return _JOB_RULES.get(parts[-1])
    if len(parts) == 1:
        return rules_of(Config).get(parts[0])
    if len(parts) == 2 and parts[0] in _SECTIONS:
        return rules_of(_SECTIONS[parts[0]]).get(parts[1])
    return None


def _read_environ(
    environ: Mapping[str, str], errors: list[str]
) -> tuple[dict[KeyPath, EnvValue], dict[str, EnvValue], dict[str, dict[str, EnvValue]]]:
    """The ``JOBKIT_*`` settings: (storage/logging/worker by key path, defaults, jobs by name)."""
    sections: dict[KeyPath, EnvValue] = {}
    defaults: dict[str, EnvValue] = {}
    jobs: dict[str, dict[str, EnvValue]] = {}
    for var in sorted(environ):
        if not var.startswith("JOBKIT_") or var in _NOT_SETTINGS:
            continue
        parts = var[len("JOBKIT_"):].lower().split("__")
        rule = _env_rule(parts)
        if rule is None:
            errors.append(f"environment {var}: {_ENV_HELP}")
            continue
        try:
            value = (env_value(rule, environ[var]), var)
        except Invalid as exc:
            errors.append(f"environment {var}: {exc.message}")
            continue
        if parts[0] == "defaults":
            defaults[parts[1]] = value
        elif parts[0] == "jobs":
            jobs.setdefault("__".join(parts[1:-1]).upper(), {})[parts[-1]] = value
        else:
            sections[tuple(parts)] = value
    return sections, defaults, jobs


def _overlay(data: Mapping[str, Any], sections: Mapping[KeyPath, EnvValue]) -> dict[str, Any]:
    """A copy of the file's data with the environment's storage, logging and worker values."""
    merged = dict(data)
    for path, (value, _) in sections.items():
        if len(path) == 1:
            merged[path[0]] = value
            continue
        section = merged.get(path[0]) or {}
        if isinstance(section, dict):  # otherwise the file's error is reported
            merged[path[0]] = {**section, path[1]: value}
    return merged
