"""Internal: :class:`Config`, the whole configuration: built from data, and its layers resolved.

:func:`build` structures a ``jobs.yaml``-shaped mapping overlaid by the environment's layer
into a :class:`Config`, collecting every problem into one ``ConfigError``; the config keeps
where each value came from (:class:`Provenance`) and resolves one job's settings through the
layers (:meth:`Config.resolve_job`). Import :class:`Config` from :mod:`jobkit.config`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, Literal, cast

import attrs

from jobkit.config.environ import Environment, EnvValue
from jobkit.config.retention import Retention
from jobkit.config.settings import (
    CALL_SETTINGS,
    JOB_RULES,
    DashboardSettings,
    JobEntry,
    JobSettings,
    LoggingSettings,
    NotificationEntry,
    QueueEntry,
    ResolvedJob,
    WorkerSettings,
)
from jobkit.config_yaml import (
    Invalid,
    KeyPath,
    choice,
    container_hook,
    format_path,
    line_of,
    mapping_hook,
    problems,
    setting,
    strict_str,
    text,
)
from jobkit.exceptions import ConfigError
from jobkit.schedules import SCHEDULE_NAME, Schedule

if TYPE_CHECKING:
    import cattrs

_STORAGE_URL = r"[A-Za-z][A-Za-z0-9+.-]*://.*"
_ALIASES = {"class_": "class"}  # attribute name -> key in the file
_NOT_IN_FILE = frozenset({"path", "_provenance", "set_fields", "name"})



@attrs.frozen
class Provenance:
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
    """The whole configuration of a jobkit app.

    Build it with :func:`load_config` or :meth:`from_dict`; ``Config()`` holds the built-in
    defaults."""

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
    #: The limits of named queues (``queues: {reports: {concurrency: 1}}``), by queue name.
    queues: dict[str, QueueEntry] = attrs.Factory(dict)
    notifications: list[NotificationEntry] = attrs.Factory(list)
    #: The jobs run on a cron expression or an interval (``schedules:``), by schedule name.
    schedules: dict[str, Schedule] = attrs.Factory(dict)
    #: How long finished jobs are kept, by status (``retention:``); workers delete older ones.
    retention: Retention = attrs.Factory(Retention)
    #: The file this configuration was loaded from, if any.
    path: str | None = None
    _provenance: Provenance = attrs.field(factory=Provenance, repr=False, eq=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> Config:
        """A configuration from a ``jobs.yaml``-shaped mapping; ``source`` names it in errors."""
        return build(data, Provenance(source=source), Environment())

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
        """``file:line`` of a key, or the environment variable that set it.

        ``file:line`` of a key, e.g. ``where("notifications", 0)``; just the file when the
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

        apply({key: getattr(self.defaults, key) for key in JOB_RULES
               if key in origin.defaults_set or getattr(self.defaults, key) != values[key]},
              at=("defaults",))
        if package_defaults:
            label = f"package {package}" if package else "package defaults"
            apply(_check_layer(package_defaults, JOB_RULES, f"{label}, job {name!r} defaults"),
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


def _check_layer(layer: Mapping[str, Any], allowed: Collection[str], where: str) -> dict[str, Any]:
    """Check one layer of job settings; ``ConfigError`` lists every bad key and value."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    for key, value in layer.items():
        if key not in allowed:
            errors.append(f"{where}: {key}: unknown setting (known: {', '.join(allowed)})")
            continue
        try:
            values[key] = JOB_RULES[key](value)
        except Invalid as exc:
            errors.append(f"{where}: {key}: {exc.message}")
    if errors:
        raise ConfigError(errors=errors)
    return values


def build(data: Any, provenance: Provenance, environment: Environment,
          duplicates: Collection[KeyPath] = ()) -> Config:
    """Structure ``data`` overlaid by ``environment``; ``ConfigError`` lists every problem."""
    if not isinstance(data, Mapping):
        raise ConfigError(errors=[
            f"{provenance.where(())}: expected a mapping of settings (storage, defaults, jobs, "
            f"...) at the top level, got {type(data).__name__}"])
    defaults = data.get("defaults")
    provenance = attrs.evolve(
        provenance,
        defaults_set=_job_keys(defaults),
        env_origin={path: var for path, (_, var) in environment.sections.items()},
        env_defaults=environment.defaults,
        env_jobs=environment.jobs,
    )
    import cattrs  # here: building a Config from data needs it, import jobkit does not

    found = [(path, "duplicate key") for path in duplicates]
    try:
        config = _converter().structure(environment.overlay(data), Config)
    except cattrs.BaseValidationError as exc:
        found.extend(problems(exc, _file_keys, _ALIASES))
    if found or environment.errors:
        found.sort(key=lambda problem: line_of(provenance.lines, problem[0]) or 0)
        raise ConfigError(errors=[provenance.message(*problem) for problem in found]
                          + environment.errors)
    return attrs.evolve(config, provenance=provenance)


def _job_keys(mapping: Any) -> frozenset[str]:
    """The job settings a mapping of the file sets (explicit nulls included)."""
    return frozenset(key for key in mapping if key in JOB_RULES) if isinstance(
        mapping, dict) else frozenset()


def _file_keys(cls: type) -> list[str]:
    """The keys a mapping in the file may hold for ``cls``."""
    return [_ALIASES.get(a.name, a.name) for a in attrs.fields(cls) if a.name not in _NOT_IN_FILE]


@functools.cache
def _converter() -> cattrs.Converter:
    """The converter from the file's data to ``Config`` (built on first use)."""
    import cattrs

    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(str, strict_str)  # mapping keys: job names
    for cls in (JobSettings, LoggingSettings, WorkerSettings, DashboardSettings, QueueEntry,
                Retention):
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
        queues=container_hook(dict, _queue_names(conv.get_structure_hook(
            dict[str, QueueEntry]))),
        notifications=container_hook(list, conv.get_structure_hook(list[NotificationEntry])),
        schedules=container_hook(dict, _named_schedules(conv))))
    return conv


def _named_schedules(conv: cattrs.Converter) -> Any:
    """A hook for ``schedules:``: each entry a :class:`Schedule` named by its key.

    Every entry's problems are collected (as cattrs does for ``jobs:``), each under its key.
    """
    from cattrs.errors import IterableValidationError, IterableValidationNote

    entry_hook = mapping_hook(Schedule, conv)

    def one(name: Any, entry: Any) -> Schedule:
        if not isinstance(name, str) or not re.fullmatch(SCHEDULE_NAME, name):
            raise Invalid("expected a schedule name (a letter or digit, then letters, digits, "
                          f"'_', '-' or '.', at most 128 characters), got {name!r}")
        if isinstance(entry, dict) and "name" in entry:
            raise Invalid("unknown key (a schedule's name is its key under schedules:)",
                          ("name",))
        return cast(Schedule, entry_hook({**entry, "name": name} if isinstance(entry, dict)
                                         else entry, Schedule))

    def hook(value: Any, _: Any) -> dict[str, Schedule]:
        found: dict[str, Schedule] = {}
        errors: list[Exception] = []
        for name, entry in value.items():
            try:
                found[name] = one(name, entry)
            except Exception as exc:  # collected: every entry is reported
                exc.__notes__ = [*getattr(exc, "__notes__", []), IterableValidationNote(
                    f"Structuring schedule {name!r}", name, Schedule)]
                errors.append(exc)
        if errors:
            raise IterableValidationError("while structuring schedules", errors, dict)
        return found

    return hook


def _queue_names(structure: Any) -> Any:
    """A hook for ``queues:`` whose keys must be queue names."""
    from jobkit.flow import check_queue_name

    def hook(value: Any, cl: Any) -> Any:
        for name in value:
            try:
                check_queue_name(name, "queue")
            except ValueError as exc:
                raise Invalid(str(exc).removeprefix("queue: "), (name,)) from None
        return structure(value, cl)

    return hook


def _split_options(value: Any) -> Any:
    """A notifications entry: every key but plugin, events and jobs is one of its options."""
    if not isinstance(value, dict):
        return value
    named = {key: value[key] for key in ("plugin", "events", "jobs") if key in value}
    return {**named, "options": {k: v for k, v in value.items() if k not in named}}
