"""``JobKit``, the app: configuration, plugin manager, registry, factory and store, tied together.

The module-level functions (``jobkit.run_background_job`` ...) use a default app that is built
on first use from ``JOBKIT_CONFIG``, else ``./jobs.yaml``, else the built-in defaults, and that
tests and applications can replace or reset (:func:`set_default_app`, :func:`reset_default_app`).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from jobkit import limits
from jobkit.config import Config, JobSettings, ResolvedJob, load_config
from jobkit.exceptions import ConfigError, InvalidParameters, JobkitError
from jobkit.factory import Factory
from jobkit.masking import has_secrets, mask_secrets
from jobkit.notify import NotificationDispatcher, build_subscriptions, with_notifier_problems
from jobkit.options import structure_options
from jobkit.plugins import EventDispatcher, NotifierRegistry, StorageRegistry, get_plugin_manager
from jobkit.records import (
    Attempt,
    EventKind,
    JobEvent,
    JobRecord,
    JobStatus,
    NewJob,
    RetryPolicy,
)
from jobkit.registry import JobSpec, Registry
from jobkit.shield import shielded_call
from jobkit.transitions import Transitions

if TYPE_CHECKING:
    from jobkit.job import Job
    from jobkit.logs import LogFiles
    from jobkit.storage.base import Storage


def _status(status: JobStatus | str | None) -> JobStatus | None:
    if status is None or isinstance(status, JobStatus):
        return status
    try:
        return JobStatus(status)
    except ValueError:
        known = ", ".join(s.value for s in JobStatus)
        raise JobkitError(f"unknown job status {status!r} (one of: {known})") from None


def _seconds(delay: float | timedelta, what: str) -> float:
    """``delay`` in seconds; ``ConfigError`` (as for the other options of a call) when it is not
    seconds or a timedelta within :data:`jobkit.limits.DELAY`."""
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
    if not limits.DELAY.accepts(seconds):  # also refuses NaN, booleans and text
        raise ConfigError(errors=[
            f"call: {what}: expected {limits.DELAY.describe()} or a timedelta, "
            f"got {delay!r}"
        ])
    return float(seconds)


def _event(
    kind: EventKind, job: JobRecord, error: str | None = None, traceback: str | None = None
) -> JobEvent:
    """The event of a committed state change, with the secrets in the job's params masked."""
    if has_secrets(job.params):  # most params hold none: the record is kept as it is
        job = attrs.evolve(job, params=mask_secrets(job.params))
    return JobEvent(kind=kind, job=job, error=error, traceback=traceback)


@attrs.frozen
class _Options:
    """The per-call options of ``run_background_job`` and ``enqueue_many``."""

    priority: int | None
    delay: float | timedelta
    retry_attempts: int | None
    retry_delay: float | None
    timeout: float | None

    def overrides(self) -> dict[str, Any]:
        """The job settings this call overrides (``None``: not given)."""
        return {
            "priority": self.priority,
            "retry_attempts": self.retry_attempts,
            "retry_delay": self.retry_delay,
            "timeout": self.timeout,
        }


class JobKit:
    """A jobkit application. Build one with :meth:`from_config`, or use the default app."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        plugins: tuple[object, ...] = (),
        load_entrypoints: bool = True,
        storage: Storage | None = None,
    ) -> None:
        self.config = config or Config()
        self.pm: pluggy.PluginManager = get_plugin_manager(
            plugins, load_entrypoints=load_entrypoints
        )
        self.storage_registry = StorageRegistry()
        self.pm.hook.jobkit_register_storage(registry=self.storage_registry)
        notifiers = NotifierRegistry()
        self.pm.hook.jobkit_register_notifiers(registry=notifiers)
        subscriptions = build_subscriptions(self.config, notifiers)
        notifications = NotificationDispatcher(subscriptions) if subscriptions else None
        if notifications is not None:
            self.pm.register(notifications, name="jobkit.notifications")
        self.registry = Registry()
        if load_entrypoints:
            self.registry.load_entry_points()
        self.registry.load_config(self.config)
        self.factory = Factory(self.registry)
        self._storage = storage
        self._storage_lock = threading.Lock()
        #: job name -> (spec, config, settings, policy) of calls without overrides
        self._settings_cache: dict[str, tuple[JobSpec, Config, JobSettings, RetryPolicy]] = {}
        self.events = EventDispatcher(self.pm)
        if notifications is not None:
            self.events.downstream.extend(notifications.threads)

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> JobKit:
        """An app from ``path``, else ``JOBKIT_CONFIG``, else ``./jobs.yaml``, else defaults.

        A file that does not load is a ``ConfigError`` naming every problem, those the notifier
        plugins find in its ``notifications:`` included."""
        try:
            config = load_config(path)
        except ConfigError as exc:
            complete = with_notifier_problems(exc, path, **kwargs)
            if complete is exc:
                raise
            raise complete from None  # it holds every problem of exc
        return cls(config, **kwargs)

    # -- parts ---------------------------------------------------------------------------------

    @property
    def storage(self) -> Storage:
        """The job store named by the configuration, opened on first use."""
        if self._storage is None:
            with self._storage_lock:
                if self._storage is None:
                    # only a non-default durability is passed: other backends need not know it
                    durable = {"durability": "full"} if self.config.durability == "full" else {}
                    self._storage = self.storage_registry.build(self.config.storage, **durable)
        return self._storage

    def register(self, name: str, cls: type[Job]) -> JobSpec:
        """Register a job class under a short name from code."""
        return self.registry.register(name, cls)

    def job_settings(self, name: str, overrides: dict[str, Any] | None = None) -> ResolvedJob:
        """The effective settings of job ``name`` and the layer that set each value."""
        spec = self.registry.get(name)
        return self.config.resolve_job(
            name,
            package_defaults=spec.cls.defaults,
            package=spec.package or spec.cls.__module__.partition(".")[0],
            overrides=overrides,
        )

    def _call_settings(
        self, spec: JobSpec, overrides: dict[str, Any]
    ) -> tuple[JobSettings, RetryPolicy]:
        """The settings of one call for job ``spec`` and their retry policy. Without per-call
        overrides they are resolved once per job class and configuration: every enqueue needs
        them, and resolving the layers costs more than storing a job."""
        if any(value is not None for value in overrides.values()):
            settings = self.job_settings(spec.name, overrides).settings
            return settings, settings.policy()
        cached = self._settings_cache.get(spec.name)
        if cached is None or cached[0] is not spec or cached[1] is not self.config:
            settings = self.job_settings(spec.name).settings
            cached = (spec, self.config, settings, settings.policy())
            self._settings_cache[spec.name] = cached
        return cached[2], cached[3]

    def job_options(self, name: str) -> Any:
        """Job ``name``'s ``options:`` from the config: an instance of its ``Options`` class
        when it declares one (``ConfigError`` naming file, line and key when they do not fit),
        else the plain mapping."""
        spec = self.registry.get(name)
        entry = self.config.job_entry(name)
        raw = dict(entry.options) if entry is not None else {}
        if spec.cls.Options is None:
            return raw
        where = f"{self.config.job_line(name)}: jobs.{name}.options"
        return structure_options(spec.cls.Options, raw, where)

    def configure_logging(self, *, enqueue: bool = False) -> LogFiles:
        """Write this process's job events to the log files of ``logging:`` in the config.

        The worker and the CLI do this themselves; an application that enqueues jobs calls it
        once at start-up to have its ``enqueued`` and ``cancelled`` events logged too.
        """
        from jobkit.logs import configure_logging

        return configure_logging(self.config.logging, self.pm, enqueue=enqueue)

    def check(self) -> list[str]:
        """Problems an operator should fix: ``jobs:`` entries (or environment overrides) naming
        no registered job, jobs whose settings or options do not fit, a storage URL no backend
        serves, notification filters naming no job. Empty when all is well."""
        problems = self.registry.unknown_entries(self.config)
        known = {spec.name.upper() for spec in self.registry}
        for name, variables in self.config.env_job_variables().items():
            if name not in known:
                problems.append(
                    f"environment {', '.join(variables)}: no job is registered under the name "
                    f"{name!r} (names are matched without case)"
                )
        for spec in self.registry:
            try:
                self.job_settings(spec.name)
                self.job_options(spec.name)
            except ConfigError as exc:
                problems.extend(exc.errors or [str(exc)])
        scheme = self.config.storage.partition("://")[0]
        if scheme not in self.storage_registry.names():
            known_schemes = ", ".join(self.storage_registry.names())
            problems.append(f"storage: no backend serves {scheme}:// (installed: {known_schemes})")
        for index, entry in enumerate(self.config.notifications):
            for name in entry.jobs or ():
                if name not in self.registry:
                    problems.append(
                        f"notifications[{index}].jobs: no job is registered under the name "
                        f"{name!r}, so this filter never matches"
                    )
        return problems

    def emit(
        self,
        kind: EventKind,
        job: JobRecord,
        error: str | None = None,
        traceback: str | None = None,
    ) -> None:
        """Report a committed state change to every ``jobkit_job_event`` implementation.

        Delivered on the app's event thread (:class:`~jobkit.plugins.EventDispatcher`), with
        secrets in the params masked.
        """
        self.events.emit(_event(kind, job, error, traceback))

    # -- the public API ------------------------------------------------------------------------

    @shielded_call
    def run_background_job(
        self,
        name: str,
        method: str = "handle",
        params: dict[str, Any] | list[Any] | None = None,
        *,
        priority: int | None = None,
        delay: float | timedelta = 0,
        retry_attempts: int | None = None,
        retry_delay: float | None = None,
        timeout: float | None = None,
    ) -> str:
        """Validate and store a job; return its id. Nothing is stored when validation fails.

        ``priority`` defaults to the job's configured priority (0 unless configured); higher runs
        first. ``delay`` is seconds or a ``timedelta``. ``retry_attempts``, ``retry_delay`` and
        ``timeout`` override the job's configuration for this one job.
        """
        options = _Options(priority, delay, retry_attempts, retry_delay, timeout)
        (job,) = self._new_jobs(name, method, [params], options)
        record = self.storage.enqueue(job)
        self.emit(EventKind.ENQUEUED, record)
        return record.id

    @shielded_call
    def enqueue_many(
        self,
        name: str,
        method: str = "handle",
        params_list: Iterable[dict[str, Any] | list[Any] | None] = (),
        *,
        priority: int | None = None,
        delay: float | timedelta = 0,
        retry_attempts: int | None = None,
        retry_delay: float | None = None,
        timeout: float | None = None,
    ) -> list[str]:
        """Validate and store one job per params of ``params_list``, all of one method and with
        the same options as :meth:`run_background_job`; their ids, in order.

        All or nothing: every params is validated before any is stored (an error names the
        index of the params at fault), and SQLite and PostgreSQL store them in one transaction,
        which is how bulk enqueueing is fast.
        """
        options = _Options(priority, delay, retry_attempts, retry_delay, timeout)
        jobs = self._new_jobs(name, method, list(params_list), options)
        records = self.storage.enqueue_many(jobs) if jobs else []
        self.events.emit_all(_event(EventKind.ENQUEUED, record) for record in records)
        return [record.id for record in records]

    def _new_jobs(
        self,
        name: str,
        method: str,
        params_list: list[dict[str, Any] | list[Any] | None],
        options: _Options,
    ) -> list[NewJob]:
        """The validated jobs to store; nothing when one does not validate."""
        if not params_list:
            return []
        checked = []
        spec, check = self.factory.validator(name, method)
        for index, params in enumerate(params_list):
            try:
                by_name = check(params)
            except InvalidParameters as exc:
                if len(params_list) == 1:
                    raise
                problems = {f"params[{index}] {key}": why for key, why in exc.problems.items()}
                raise InvalidParameters(exc.name, exc.method, problems) from None
            checked.append(by_name)
        seconds = _seconds(options.delay, "delay")
        settings, policy = self._call_settings(spec, options.overrides())
        encoded = [json.dumps(by_name, ensure_ascii=False, allow_nan=False) for by_name in checked]
        for index, text in enumerate(encoded):
            if len(text) * 4 <= settings.max_params_bytes:  # UTF-8 takes at most 4 bytes a char
                continue
            size = len(text.encode("utf-8"))
            if size > settings.max_params_bytes:
                where = "params" if len(checked) == 1 else f"params[{index}]"
                raise InvalidParameters(
                    spec.name,
                    method,
                    {where: f"{size} bytes of JSON, over max_params_bytes "
                            f"({settings.max_params_bytes})"},
                )
        # due now: the store stamps it with its own clock (on PostgreSQL, no extra round trip)
        available_at = self.storage.now() + timedelta(seconds=seconds) if seconds else None
        return [
            NewJob(
                name=spec.name,
                method=method,
                params=by_name,
                priority=settings.priority,
                max_attempts=settings.max_attempts,
                max_crashes=settings.max_crashes,
                policy=policy,
                available_at=available_at,
                params_json=text,
            )
            for by_name, text in zip(checked, encoded, strict=True)
        ]

    @shielded_call
    def get_job(self, job_id: str) -> JobRecord:
        """The job's record; raises ``JobNotFoundInStorage``."""
        return self.storage.get(str(job_id))

    @shielded_call
    def get_attempts(self, job_id: str) -> list[Attempt]:
        """Every attempt of the job, oldest first."""
        return self.storage.attempts(str(job_id))

    @shielded_call
    def cancel_job(self, job_id: str) -> bool:
        """Cancel a pending, retrying or running job; ``False`` when it had already finished.

        A pending job never runs; a running one is stopped by its worker within about a second.
        """
        return Transitions(self).cancel(str(job_id))

    @shielded_call
    def retry_job(self, job_id: str) -> bool:
        """Run a failed or cancelled job again; ``False`` when it is in another status."""
        return Transitions(self).retry_by_hand(str(job_id))

    @shielded_call
    def list_jobs(
        self,
        status: JobStatus | str | None = None,
        name: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobRecord]:
        """Jobs, newest first, filtered by status and job name."""
        return self.storage.list(status=_status(status), name=name, limit=limit, offset=offset)

    def close(self) -> None:
        """Deliver pending events (waiting at most 5 s for slow hooks) and close the store."""
        self.events.close()
        if self._storage is not None:
            self._storage.close()
            self._storage = None

    def __enter__(self) -> JobKit:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_default_app: JobKit | None = None
_default_lock = threading.Lock()


def get_default_app() -> JobKit:
    """The default app, built on first use from ``JOBKIT_CONFIG``, ``./jobs.yaml`` or defaults."""
    global _default_app
    if _default_app is None:
        with _default_lock:
            if _default_app is None:
                _default_app = JobKit.from_config()
    return _default_app


def set_default_app(app: JobKit | None) -> None:
    """Make ``app`` the default app (``None`` to build it again on next use)."""
    global _default_app
    with _default_lock:
        _default_app = app


def reset_default_app() -> None:
    """Close the default app, if any; the next call builds a new one."""
    global _default_app
    with _default_lock:
        app, _default_app = _default_app, None
    if app is not None:
        app.close()


def run_background_job(
    name: str,
    method: str = "handle",
    params: dict[str, Any] | list[Any] | None = None,
    **options: Any,
) -> str:
    """``JobKit.run_background_job`` on the default app."""
    return get_default_app().run_background_job(name, method, params, **options)


def enqueue_many(
    name: str,
    method: str = "handle",
    params_list: Iterable[dict[str, Any] | list[Any] | None] = (),
    **options: Any,
) -> list[str]:
    """``JobKit.enqueue_many`` on the default app."""
    return get_default_app().enqueue_many(name, method, params_list, **options)


def get_job(job_id: str) -> JobRecord:
    """``JobKit.get_job`` on the default app."""
    return get_default_app().get_job(job_id)


def get_attempts(job_id: str) -> list[Attempt]:
    """``JobKit.get_attempts`` on the default app."""
    return get_default_app().get_attempts(job_id)


def cancel_job(job_id: str) -> bool:
    """``JobKit.cancel_job`` on the default app."""
    return get_default_app().cancel_job(job_id)


def retry_job(job_id: str) -> bool:
    """``JobKit.retry_job`` on the default app."""
    return get_default_app().retry_job(job_id)


def list_jobs(
    status: JobStatus | str | None = None,
    name: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[JobRecord]:
    """``JobKit.list_jobs`` on the default app."""
    return get_default_app().list_jobs(status, name, limit, offset)
