"""Internal: the job registry, short name -> ``Job`` subclass and its approved methods.

Jobs come from three sources: the entry-point group ``jobkit.jobs`` (how packages ship jobs),
``class: module:Class`` entries of ``jobs.yaml``, and ``JobKit.register`` in code. Two sources that
claim one name are an error that names both. ``jobs.yaml`` may narrow a job's approved methods with
``methods: [...]``, never widen them.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import attrs

from jobkit.exceptions import ConfigError, JobNotFound, MethodNotAllowed
from jobkit.imports import import_path_of, import_string
from jobkit.job import Job

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from jobkit.config import Config

ENTRY_POINT_GROUP = "jobkit.jobs"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")


@attrs.frozen
class JobSpec:
    """A registered job: its class, approved methods and where the registration came from."""

    name: str
    cls: type[Job]
    methods: tuple[str, ...]
    source: str
    package: str | None = None

    @property
    def import_path(self) -> str:
        """``module:Class``, how a spawned worker process imports the class again."""
        return import_path_of(self.cls)


def approved_methods(cls: type[Any], source: str) -> tuple[str, ...]:
    """Validate a class's ``methods`` declaration and return it; errors name the class."""
    where = f"{source}: {import_path_of(cls)}"
    if not (isinstance(cls, type) and issubclass(cls, Job)) or cls is Job:
        raise ConfigError(f"{where} is not a subclass of jobkit.Job")
    declared = cls.methods
    if isinstance(declared, str) or not isinstance(declared, (tuple, list)):
        raise ConfigError(f"{where}: 'methods' must be a tuple of method names, got {declared!r}")
    if not declared:
        raise ConfigError(f"{where}: declares no approved methods (set methods = ('name',))")
    for method in declared:
        if not isinstance(method, str) or not method.isidentifier():
            raise ConfigError(f"{where}: {method!r} is not a method name")
        if method.startswith("_"):
            raise ConfigError(f"{where}: private method {method!r} cannot be approved")
        function = inspect.getattr_static(cls, method, None)
        if not callable(function):
            raise ConfigError(f"{where}: approved method {method!r} is not defined on the class")
        function = getattr(function, "__func__", function)  # a staticmethod's own function
        if inspect.isasyncgenfunction(function):
            # it would pass every check, then fail each attempt with a generator as its result
            raise ConfigError(
                f"{where}: approved method {method!r} is an async generator; a job method "
                "returns one result: make it an async def (or a plain def) that returns it"
            )
    return tuple(declared)


def _entry_point_source(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    package = f" (package {dist.name} {dist.version})" if dist is not None else ""
    return f"entry point {ep.group}: {ep.name} = {ep.value}{package}"


class Registry:
    """Short names -> :class:`JobSpec`. Built by the app; read by the factory and the worker."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobSpec] = {}
        self._narrowing: dict[str, tuple[tuple[str, ...], str]] = {}

    def register(
        self,
        name: str,
        cls: type[Job],
        *,
        source: str = "JobKit.register()",
        package: str | None = None,
    ) -> JobSpec:
        """Register ``cls`` under ``name``. Raises ``ConfigError`` when another source has it."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{source}: {name!r} is not a valid job name (letters, digits, _.-)")
        spec = JobSpec(name, cls, approved_methods(cls, source), source, package)
        existing = self._jobs.get(name)
        if existing is not None:
            if existing.cls is cls and existing.source == source:
                return existing  # the same registration seen twice (e.g. a doubly installed dist)
            raise ConfigError(
                f"job name {name!r} is claimed twice: by {existing.source} "
                f"({existing.import_path}) and by {source} ({spec.import_path})"
            )
        self._jobs[name] = spec
        if name in self._narrowing:
            try:
                self._narrow(name)
            except ConfigError:
                del self._jobs[name]
                raise
        return self._jobs[name]

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Register every job that installed packages declare in the entry-point group."""
        from importlib.metadata import entry_points  # here: about 10 ms that import jobkit saves

        seen: set[tuple[str, str]] = set()
        for ep in entry_points(group=group):
            if (ep.name, ep.value) in seen:
                continue
            seen.add((ep.name, ep.value))
            source = _entry_point_source(ep)
            try:
                cls = ep.load()
            except Exception as exc:
                raise ConfigError(f"{source}: cannot load: {exc}") from exc
            dist = getattr(ep, "dist", None)
            self.register(ep.name, cls, source=source, package=dist.name if dist else None)

    def load_config(self, config: Config) -> None:
        """Register the ``class:`` entries of ``jobs.yaml`` and remember its ``methods:`` lists.

        A ``methods:`` list narrows its job whenever the job is registered, before or after
        this call.
        """
        errors: list[str] = []
        for name, entry in config.jobs.items():
            where = config.job_line(name)
            if entry.methods is not None:
                self._narrowing[name] = (tuple(entry.methods), where)
            if entry.class_ is not None:
                try:
                    self.register(name, import_string(entry.class_), source=where)
                except ImportError as exc:
                    errors.append(f"{where}: jobs.{name}.class: {exc}")
                except ConfigError as exc:
                    errors.append(str(exc))
            elif name in self._jobs and entry.methods is not None:
                try:
                    self._narrow(name)
                except ConfigError as exc:
                    errors.append(str(exc))
        if errors:
            raise ConfigError(errors=errors)

    def unknown_entries(self, config: Config) -> list[str]:
        """Errors for ``jobs:`` entries that name no registered job (typos, missing plugins)."""
        return [
            f"{config.job_line(name)}: jobs.{name}: no job is registered under this name "
            f"(registered: {self._known()})"
            for name in config.jobs
            if name not in self._jobs
        ]

    def _narrow(self, name: str) -> None:
        """Restrict ``name``'s approved methods to its ``jobs.yaml`` list; widening is an error."""
        methods, source = self._narrowing[name]
        spec = self._jobs[name]
        wider = [m for m in methods if m not in spec.methods]
        if wider:
            raise ConfigError(
                f"{source}: jobs.{name}.methods: {', '.join(map(repr, wider))} not approved by "
                f"{spec.import_path} (it approves {', '.join(spec.methods)}); "
                "jobs.yaml may narrow the list, never widen it"
            )
        self._jobs[name] = attrs.evolve(
            spec, methods=tuple(m for m in spec.methods if m in methods)
        )

    def get(self, name: str) -> JobSpec:
        """The job registered under ``name``; raises ``JobNotFound``."""
        try:
            if type(name) is not str:  # exactly str: a subclass could compare equal to anything
                raise TypeError(name)
            return self._jobs[name]
        except (KeyError, TypeError):
            raise JobNotFound(str(name), list(self._jobs)) from None

    def method(self, name: str, method: str) -> JobSpec:
        """The job, after checking that ``method`` is approved; raises ``MethodNotAllowed``."""
        spec = self.get(name)
        if type(method) is not str or method not in spec.methods:  # exactly str: no look-alikes
            raise MethodNotAllowed(name, str(method), spec.methods)
        return spec

    def _known(self) -> str:
        return ", ".join(sorted(self._jobs)) or "none"

    def __contains__(self, name: object) -> bool:
        return name in self._jobs

    def __iter__(self) -> Iterator[JobSpec]:
        return iter(sorted(self._jobs.values(), key=lambda spec: spec.name))

    def __len__(self) -> int:
        return len(self._jobs)
