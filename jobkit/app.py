"""Internal: ``JobKit``, the app (import it from ``jobkit``): config, plugins, registry and store.

The module-level functions (``jobkit.run_background_job`` ...) use a default app that is built
on first use from ``JOBKIT_CONFIG``, else ``./jobs.yaml``, else the built-in defaults, and that
tests and applications can replace or reset (:func:`set_default_app`, :func:`reset_default_app`).
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import attrs
import pluggy

from jobkit.aio import in_thread
from jobkit.config import Config, JobSettings, ResolvedJob, load_config
from jobkit.enqueue import NO_OVERRIDES, CallOptions, Params, new_jobs
from jobkit.events import EventDispatcher
from jobkit.exceptions import ConfigError, JobkitError, JobNotFoundInStorage, UnknownSchedule
from jobkit.factory import Factory
from jobkit.job_ends import EndWatch
from jobkit.options import structure_options
from jobkit.plugins import get_plugin_manager, notifier_registry, storage_registry
from jobkit.records import (
    WAITING_STATUSES,
    Attempt,
    EventKind,
    JobRecord,
    JobStatus,
    NewJob,
    NewStep,
    RetryPolicy,
    WorkflowRecord,
)
from jobkit.registry import JobSpec, Registry
from jobkit.shield import shielded_call
from jobkit.storage.capabilities import (
    ControlsFlow,
    flow_store,
    schedules_store,
    workflows_store,
)
from jobkit.transitions import Host, Transitions, job_event

if TYPE_CHECKING:
    from jobkit.flow import Flow, QueueState
    from jobkit.job import Job
    from jobkit.logs import LogFiles
    from jobkit.notify import NotificationDispatcher
    from jobkit.schedules import Schedule, ScheduleView
    from jobkit.storage.base import Storage
    from jobkit.workflows import Flow as Workflow


P = ParamSpec("P")
R = TypeVar("R")


@attrs.frozen
class Enqueued:
    """What :meth:`JobKit.enqueue` did: the job's id, and whether it was stored now."""

    id: str
    #: ``False``: the job duplicated a stored one (``unique:``, an idempotency key), whose id
    #: this is; nothing was stored.
    new: bool


def _status(status: JobStatus | str | None) -> JobStatus | None:
    if status is None or isinstance(status, JobStatus):
        return status
    try:
        return JobStatus(status)
    except ValueError:
        known = ", ".join(s.value for s in JobStatus)
        raise JobkitError(f"unknown job status {status!r} (one of: {known})") from None


def load_app_config(
    path: str | os.PathLike[str] | None,
    plugins: tuple[object, ...] = (),
    *,
    load_entrypoints: bool = True,
) -> Config:
    """Internal: the configuration :meth:`JobKit.from_config` builds its app from.

    A file that does not load is a ``ConfigError`` naming every problem, those the notifier
    plugins (``plugins``, and the installed ones with ``load_entrypoints``) find in its
    ``notifications:`` included. ``jobkit worker`` reads it before it builds the app.
    """
    try:
        return load_config(path)
    except ConfigError as exc:
        from jobkit.notify import with_notifier_problems

        complete = with_notifier_problems(exc, path, lambda: notifier_registry(
            get_plugin_manager(plugins, load_entrypoints=load_entrypoints)))
        if complete is exc:
            raise
        raise complete from None  # it holds every problem of exc


class JobKit(Host):
    """A jobkit application. Build one with :meth:`from_config`, or use the default app."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        plugins: tuple[object, ...] = (),
        load_entrypoints: bool = True,
        storage: Storage | None = None,
    ) -> None:
        from jobkit.notify import NotificationDispatcher, build_subscriptions  # not at import

        self.config = config or Config()
        self.pm: pluggy.PluginManager = get_plugin_manager(
            plugins, load_entrypoints=load_entrypoints
        )
        self.storage_registry = storage_registry(self.pm)
        subscriptions = build_subscriptions(self.config, notifier_registry(self.pm))
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
        #: Internal: the jobs callers of :meth:`await_job` and :meth:`wait_job` wait for.
        self.end_watch = EndWatch(lambda: self.storage)
        #: The notifiers of ``notifications:`` (``None`` when there are none): a listener of
        #: :attr:`events`.
        self.notifications: NotificationDispatcher | None = None
        if subscriptions:
            self.notifications = NotificationDispatcher(subscriptions)
            self.events.listeners.append(self.notifications)
            self.events.downstream.extend(self.notifications.threads)

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> JobKit:
        """An app from ``path``, else ``JOBKIT_CONFIG``, else ``./jobs.yaml``, else defaults.

        A file that does not load is a ``ConfigError`` naming every problem, those the notifier
        plugins find in its ``notifications:`` included."""
        config = load_app_config(
            path, kwargs.get("plugins", ()), load_entrypoints=kwargs.get("load_entrypoints", True))
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
        self, spec: JobSpec, overrides: Mapping[str, Any]
    ) -> tuple[JobSettings, RetryPolicy]:
        """The settings of one call for job ``spec`` and their retry policy, cached per job.

        Without per-call overrides they are resolved once per job class and configuration:
        every enqueue needs them, and resolving the layers costs more than storing a job."""
        if overrides is not NO_OVERRIDES and any(v is not None for v in overrides.values()):
            settings = self.job_settings(spec.name, dict(overrides)).settings
            return settings, settings.policy()
        cached = self._settings_cache.get(spec.name)
        if cached is None or cached[0] is not spec or cached[1] is not self.config:
            settings = self.job_settings(spec.name).settings
            cached = (spec, self.config, settings, settings.policy())
            self._settings_cache[spec.name] = cached
        return cached[2], cached[3]

    def job_options(self, name: str) -> Any:
        """Job ``name``'s ``options:`` from the config, structured when the job declares a class.

        Job ``name``'s ``options:`` from the config: an instance of its ``Options`` class
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
        """The problems an operator should fix in the configuration; empty when all is well.

        Problems an operator should fix: ``jobs:`` entries (or environment overrides) naming
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
                settings = self.job_settings(spec.name).settings
                self.job_options(spec.name)
            except ConfigError as exc:
                problems.extend(exc.errors or [str(exc)])
                continue
            problems.extend(self._limit_key_problems(spec, settings))
        scheme = self.config.storage.partition("://")[0]
        if scheme not in self.storage_registry.names():
            known_schemes = ", ".join(self.storage_registry.names())
            problems.append(f"storage: no backend serves {scheme}:// (installed: {known_schemes})")
        problems.extend(self.schedule_problems())
        for index, entry in enumerate(self.config.notifications):
            for name in entry.jobs or ():
                if name not in self.registry:
                    problems.append(
                        f"notifications[{index}].jobs: no job is registered under the name "
                        f"{name!r}, so this filter never matches"
                    )
        return problems

    def _limit_key_problems(self, spec: JobSpec, settings: JobSettings) -> list[str]:
        """A limit ``key`` that is not a parameter of every approved method of ``spec``."""
        from jobkit.factory import signature_of

        keyed = [(setting, "key", limit.key) for setting in ("concurrency", "rate_limit")
                 if (limit := getattr(settings, setting)) is not None and limit.key is not None]
        if settings.unique is not None:
            keyed += [("unique", "keys", key) for key in settings.unique.keys]
        found = []
        for setting, field, key in keyed:
            for method in spec.methods:
                signature = signature_of(spec.cls, method)
                if key in signature.names or signature.accepts_any_keyword:
                    continue
                names = ", ".join(signature.names) or "none"
                found.append(
                    f"{self.config.job_line(spec.name)}: jobs.{spec.name}.{setting}.{field}: "
                    f"{key!r} is not a parameter of {spec.name}.{method}() (its parameters: "
                    f"{names}); a {setting} key must be a parameter of every approved method")
        return found

    def flow(self, queues: Sequence[str] | None = None) -> Flow:
        """What this app's workers claim: ``queues`` (all: None) under the configured limits.

        The limits are each registered job's ``concurrency`` and ``rate_limit`` and each
        ``queues:`` entry's.
        """
        from jobkit.flow import Flow, Limit

        limits: list[Limit] = []

        def add(scope: str, name: str, concurrency: Any, rate: Any) -> None:
            if concurrency is not None:
                limits.append(Limit(scope, name, "concurrency", concurrency.limit,
                                    key=concurrency.key))
            if rate is not None:
                limits.append(Limit(scope, name, "rate", rate.limit, rate.per, rate.key))

        for spec in sorted(self.registry, key=lambda spec: spec.name):
            settings = self.job_settings(spec.name).settings
            add("job", spec.name, settings.concurrency, settings.rate_limit)
        for name, entry in sorted(self.config.queues.items()):
            add("queue", name, entry.concurrency, entry.rate_limit)
        return Flow(queues, limits)

    # -- the public API ------------------------------------------------------------------------

    @shielded_call
    def run_background_job(
        self,
        name: str,
        method: str = "handle",
        params: Params = None,
        *,
        priority: int | None = None,
        delay: float | timedelta = 0,
        retry_attempts: int | None = None,
        retry_delay: float | None = None,
        timeout: float | None = None,
        queue: str | None = None,
        idempotency_key: str | None = None,
        run_at: datetime | None = None,
        depends_on: Sequence[str] = (),
        connection: object = None,
    ) -> str:
        """Validate and store a job; return its id. Nothing is stored when validation fails.

        ``priority`` defaults to the job's configured priority (0 unless configured); higher runs
        first. ``delay`` is seconds or a ``timedelta``; ``run_at`` instead is when the job
        becomes due, an aware ``datetime`` (a naive one is refused; one in the past is due
        now). ``retry_attempts``, ``retry_delay`` and ``timeout`` override the job's
        configuration for this one job, and ``queue`` its queue (the job's ``queue`` setting,
        ``default`` unless configured).

        A job configured ``unique:``, or a call with an ``idempotency_key``, is not stored when
        it duplicates a job of the store: the id returned is that job's (see :meth:`enqueue`).

        ``depends_on`` (job ids) makes it wait, ``blocked``, until each of those jobs has
        completed; it is cancelled when one of them fails or is cancelled (the store's
        capability ``workflows``). Such a job is never a duplicate: no ``idempotency_key``.

        ``connection`` (your open connection: ``sqlite3``, psycopg, a SQLAlchemy session or
        connection, a Django connection) stores the job in your transaction, uncommitted: it
        exists for workers when you commit and never if you roll back (docs/transactions.md).
        """
        options = CallOptions(priority, delay, retry_attempts, retry_delay, timeout, queue,
                              idempotency_key, run_at)
        if connection is not None:
            return self._enqueue_through(connection, name, method, [params], options,
                                         depends_on)[0]
        if depends_on:
            return self._enqueue_after(name, method, params, options, depends_on)
        return self._enqueue_one(name, method, params, options).id

    def _enqueue_after(self, name: str, method: str, params: Params, options: CallOptions,
                       depends_on: Sequence[str]) -> str:
        """Check and store one job that waits for ``depends_on``; announce it."""
        if isinstance(depends_on, str) or not all(isinstance(i, str) for i in depends_on):
            raise ConfigError(errors=[f"call: depends_on: expected a list of job ids, "
                                      f"got {depends_on!r}"])
        if options.idempotency_key is not None:
            raise ConfigError(errors=["call: idempotency_key: a job with depends_on is never "
                                      "a duplicate; give one or the other"])
        store = workflows_store(self.storage, "store a job with depends_on")
        (job,) = self._new_jobs(name, method, [params], options)
        step = NewStep(attrs.evolve(job, unique_key=None, unique_for=None),
                       depends_on=tuple(depends_on))
        try:
            _, (record,) = store.enqueue_steps([step], workflow=False)
        except JobNotFoundInStorage as exc:  # bad input, not a store that failed
            raise ConfigError(errors=[f"call: depends_on: no job with id {exc.job_id!r} in "
                                      "the store"]) from None
        self.emit(EventKind.ENQUEUED, record)
        self.emit_cascaded()  # cancelled at once: a job it waits for had failed
        return record.id

    @shielded_call
    def run_workflow(self, flow: Workflow) -> str:
        """Check every step of ``flow``, store them all in one transaction; the workflow's id.

        ``flow`` is made of :func:`jobkit.workflows.step`, ``chain`` and ``group``. Each step is
        checked as :meth:`run_background_job` checks a job, and each ``result_as`` against the
        return annotation of the steps it waits for, before anything is stored
        (``InvalidParameters`` naming the step). Needs the store's capability ``workflows``.
        """
        from jobkit.workflow_check import new_steps
        from jobkit.workflows import plan

        store = workflows_store(self.storage, "run a workflow")
        steps = new_steps(self.factory, plan(flow), settings_of=self._call_settings,
                          now=lambda: self.storage.now())
        workflow_id, records = store.enqueue_steps(steps)
        assert workflow_id is not None
        self.events.emit_all(job_event(EventKind.ENQUEUED, record) for record in records)
        self.emit_cascaded()
        return workflow_id

    @shielded_call
    def get_workflow(self, workflow_id: str) -> WorkflowRecord:
        """The workflow: each step's job id, label and status now."""
        return workflows_store(self.storage, "read a workflow").get_workflow(str(workflow_id))

    @shielded_call
    def cancel_workflow(self, workflow_id: str) -> int:
        """Cancel every step of the workflow that has not ended; how many were cancelled."""
        store = workflows_store(self.storage, "cancel a workflow")
        records = store.cancel_workflow(str(workflow_id))
        self.events.emit_all(job_event(EventKind.CANCELLED, record) for record in records)
        self.emit_cascaded()  # jobs outside the workflow that waited for its steps
        return len(records)

    @shielded_call
    def enqueue(
        self,
        name: str,
        method: str = "handle",
        params: Params = None,
        *,
        priority: int | None = None,
        delay: float | timedelta = 0,
        retry_attempts: int | None = None,
        retry_delay: float | None = None,
        timeout: float | None = None,
        queue: str | None = None,
        idempotency_key: str | None = None,
        run_at: datetime | None = None,
    ) -> Enqueued:
        """:meth:`run_background_job` that says whether the job was stored.

        ``Enqueued(id, new)``: ``new`` is ``False`` when the job duplicated a stored one (its
        ``unique:`` keys, or the ``idempotency_key``), whose id it returns; nothing was stored.
        """
        options = CallOptions(priority, delay, retry_attempts, retry_delay, timeout, queue,
                              idempotency_key, run_at)
        return self._enqueue_one(name, method, params, options)

    def _enqueue_one(self, name: str, method: str, params: Params,
                     options: CallOptions) -> Enqueued:
        """Check, store and announce one job (a unique one only when it is new)."""
        (job,) = self._new_jobs(name, method, [params], options)
        if job.unique_key is not None:
            return self._store_unique([job])[0]
        record = self.storage.enqueue(job)
        self.emit(EventKind.ENQUEUED, record)
        return Enqueued(record.id, True)

    def _store_unique(self, jobs: list[NewJob]) -> list[Enqueued]:
        """Store jobs of which some are unique; announce the ones stored."""
        found = flow_store(self.storage, "enqueue a unique job").enqueue_unique(jobs)
        self.events.emit_all(job_event(EventKind.ENQUEUED, record)
                             for record, new in found if new)
        return [Enqueued(record.id, new) for record, new in found]

    @shielded_call
    def enqueue_many(
        self,
        name: str,
        method: str = "handle",
        params_list: Iterable[Params] = (),
        *,
        priority: int | None = None,
        delay: float | timedelta = 0,
        retry_attempts: int | None = None,
        retry_delay: float | None = None,
        timeout: float | None = None,
        queue: str | None = None,
        run_at: datetime | None = None,
        connection: object = None,
    ) -> list[str]:
        """Validate and store one job per params of ``params_list``, all or nothing; their ids.

        The jobs are all of one method, with the same options as :meth:`run_background_job`
        but ``idempotency_key`` (a ``delay`` or ``run_at`` holds for each of them); their ids
        come back in order (a job configured ``unique:`` that duplicates a stored one, or an
        earlier one of the list, gets that job's id).

        All or nothing: every params is validated before any is stored (an error names the
        index of the params at fault), and SQLite and PostgreSQL store them in one transaction,
        which is how bulk enqueueing is fast. ``connection``: in your transaction, as for
        :meth:`run_background_job`.
        """
        options = CallOptions(priority, delay, retry_attempts, retry_delay, timeout, queue,
                              run_at=run_at)
        if connection is not None:
            return self._enqueue_through(connection, name, method, list(params_list), options)
        jobs = self._new_jobs(name, method, list(params_list), options)
        if any(job.unique_key is not None for job in jobs):
            return [enqueued.id for enqueued in self._store_unique(jobs)]
        records = self.storage.enqueue_many(jobs) if jobs else []
        self.events.emit_all(job_event(EventKind.ENQUEUED, record) for record in records)
        return [record.id for record in records]

    def _enqueue_through(self, connection: object, name: str, method: str,
                         params_list: list[Params], options: CallOptions,
                         depends_on: Sequence[str] = ()) -> list[str]:
        """Check and store jobs through the caller's ``connection``; announce them at once.

        Announced when stored, before the caller commits: even if the caller then rolls back
        (docs/decisions.md, "Enqueue in your transaction").
        """
        from jobkit.storage.through import enqueue_through

        if depends_on:
            raise ConfigError(errors=["call: connection: a job with depends_on is stored in "
                                      "jobkit's own transaction; give one or the other"])
        records = enqueue_through(self.storage, connection,
                                  self._new_jobs(name, method, params_list, options))
        self.events.emit_all(job_event(EventKind.ENQUEUED, record) for record in records)
        return [record.id for record in records]

    def _new_jobs(
        self, name: str, method: str, params_list: list[Params], options: CallOptions
    ) -> list[NewJob]:
        """The complete, checked jobs to store (:func:`jobkit.enqueue.new_jobs`)."""
        return new_jobs(self.factory, name, method, params_list, options,
                        settings_of=self._call_settings, now=lambda: self.storage.now())

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
    def pause_queue(self, queue: str) -> bool:
        """Pause ``queue`` for every worker; ``False`` when it was paused already.

        No worker on any machine claims a job of the queue from its next claim on (within a
        second); running jobs finish. Its jobs wait, spending none of their retries. The store
        needs the ``flow`` capability (SQLite, PostgreSQL and memory have it).
        """
        return flow_store(self.storage, "pause a queue").pause_queue(queue)

    @shielded_call
    def resume_queue(self, queue: str) -> bool:
        """Let workers claim from ``queue`` again; ``False`` when it was not paused."""
        return flow_store(self.storage, "resume a queue").resume_queue(queue)

    @shielded_call
    def queues(self) -> list[QueueState]:
        """Every queue that holds a job, was ever paused, or has limits, by name.

        Waiting or running jobs; limits in ``queues:`` of the configuration."""
        from jobkit.flow import QueueState

        found = {state.name: state
                 for state in flow_store(self.storage, "list the queues").queue_states()}
        for name in self.config.queues:
            found.setdefault(name, QueueState(name))
        return [found[name] for name in sorted(found)]

    @shielded_call
    def why_waiting(self, job_id: str) -> str | None:
        """Why a pending or retrying job has not started yet; ``None`` for other statuses.

        ``queue NAME is paused``, ``not due until TIME``, a limit (``concurrency limit of job
        Report: 2 of 2 running``, ``rate limit of queue mail (10/s): next start after TIME``) or
        ``due: waiting for a free worker`` (see :func:`jobkit.flow.why_waiting`).
        """
        from jobkit.flow import held_by, why_waiting
        from jobkit.storage.flow_claim import key_value

        record = self.storage.get(str(job_id))
        if record.status not in WAITING_STATUSES:
            return None
        storage = self.storage
        if not isinstance(storage, ControlsFlow):
            return why_waiting(record, storage.now(), set())
        held = []
        for limit in self.flow().limits:
            if limit.applies(record.name, record.queue):
                value = None if limit.key is None else key_value(record.params, limit.key)
                count, oldest = storage.limit_usage(limit).get(value, (0, None))
                if count >= limit.limit:
                    held.append(held_by(limit, value, count, oldest))
        return why_waiting(record, storage.now(), storage.paused_queues(), held)

    def queue_limits(self) -> dict[str, str]:
        """Each configured queue's limits, as people read them (``concurrency 1, rate 30/m``)."""
        found = {}
        for name, entry in self.config.queues.items():
            parts = []
            if entry.concurrency is not None:
                parts.append(f"concurrency {entry.concurrency}")
            if entry.rate_limit is not None:
                parts.append(f"rate {entry.rate_limit}")
            if parts:
                found[name] = ", ".join(parts)
        return found

    def known_queues(self) -> set[str]:
        """The queues of the registered jobs' settings and those the store knows of."""
        known = {self.job_settings(spec.name).settings.queue for spec in self.registry}
        known.add(self.config.defaults.queue)
        if isinstance(self.storage, ControlsFlow):
            known.update(state.name for state in self.storage.queue_states())
        return known

    # -- schedules -----------------------------------------------------------------------------

    def _schedule(self, name: str) -> Schedule:
        """The configured schedule ``name``; ``UnknownSchedule`` listing the configured ones."""
        schedule = self.config.schedules.get(name)
        if schedule is None:
            raise UnknownSchedule(name, list(self.config.schedules))
        return schedule

    def schedule_job(self, schedule: Schedule) -> NewJob:
        """Internal: the job one tick of ``schedule`` stores, checked as an enqueue is.

        Built by the same factory and checks as :meth:`run_background_job` (``JobNotFound``,
        ``MethodNotAllowed``, ``InvalidParameters`` ...), with the schedule's queue and priority.
        """
        options = CallOptions(priority=schedule.priority, queue=schedule.queue)
        params = schedule.params if isinstance(schedule.params, list) else dict(schedule.params)
        (job,) = self._new_jobs(schedule.job, schedule.method, [params], options)
        return job

    def schedule_problems(self) -> list[str]:
        """Internal: each configured schedule whose job its params do not fit, file and line."""
        found = []
        for name, schedule in sorted(self.config.schedules.items()):
            try:
                self.schedule_job(schedule)
            except JobkitError as exc:
                found.append(f"{self.config.where('schedules', name)}: schedules.{name}: {exc}")
        return found

    def fire_schedule(self, schedule: Schedule) -> list[JobRecord]:
        """Internal: fire ``schedule``'s due ticks through the store and announce the jobs.

        What a worker's scheduler calls (see
        :meth:`~jobkit.storage.capabilities.KeepsSchedules.fire_schedule`).
        """
        store = schedules_store(self.storage, f"fire schedule {schedule.name!r}")
        records = store.fire_schedule(schedule, self.schedule_job(schedule))
        self.events.emit_all(job_event(EventKind.ENQUEUED, record) for record in records)
        return records

    @shielded_call
    def schedules(self) -> list[ScheduleView]:
        """Every configured schedule, by name: paused or not, its last and its next run.

        The store needs the ``schedules`` capability (SQLite, PostgreSQL and memory have it).
        """
        from jobkit.schedules import ScheduleView

        states = schedules_store(self.storage, "list the schedules").schedule_states()
        now = self.storage.now()
        views = []
        for name, schedule in sorted(self.config.schedules.items()):
            state = states.get(name)
            paused = state is not None and state.paused
            after = now if state is None or state.last_tick is None else max(now, state.last_tick)
            views.append(ScheduleView(
                schedule, paused,
                last_run_at=None if state is None else state.last_run_at,
                last_job_id=None if state is None else state.last_job_id,
                next_run_at=None if paused or not schedule.enabled else schedule.next_tick(after),
            ))
        return views

    @shielded_call
    def pause_schedule(self, name: str) -> bool:
        """Pause schedule ``name`` for every worker; ``False`` when it was paused already.

        Its ticks are skipped until it is resumed (not run later). ``UnknownSchedule`` when no
        schedule of the configuration has this name.
        """
        self._schedule(name)
        return schedules_store(self.storage, "pause a schedule").pause_schedule(name)

    @shielded_call
    def resume_schedule(self, name: str) -> bool:
        """Resume schedule ``name``; ``False`` when it was not paused."""
        self._schedule(name)
        return schedules_store(self.storage, "resume a schedule").resume_schedule(name)

    @shielded_call
    def schedule_runs(self, name: str, limit: int = 20) -> list[JobRecord]:
        """The jobs of schedule ``name``'s runs, newest tick first; jobs deleted since left out.

        ``UnknownSchedule`` when no schedule of the configuration has this name.
        """
        self._schedule(name)
        runs = schedules_store(self.storage, "list a schedule's runs").schedule_runs(name, limit)
        found = []
        for _, job_id in runs:
            try:
                found.append(self.storage.get(job_id))
            except JobNotFoundInStorage:
                continue
        return found

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

    # -- from async code (docs/async.md) -------------------------------------------------------

    arun_background_job = in_thread(run_background_job)
    aenqueue_many = in_thread(enqueue_many)
    aget_job = in_thread(get_job)
    acancel_job = in_thread(cancel_job)

    async def await_job(self, job_id: str, timeout: float | None = None) -> JobRecord:
        """The job's record once it has ended (completed, failed or cancelled).

        Waits without blocking the event loop or holding a thread, on the store's signal of
        ends (PostgreSQL's ``LISTEN``, SQLite's watch on its ``-wal`` file), within about
        20 ms of the end. ``JobWaitTimeout`` (a ``JobkitError`` and a ``TimeoutError``) when
        ``timeout`` seconds pass first (the job goes on); ``JobNotFoundInStorage`` for an
        unknown id.
        """
        from jobkit.aio import await_end

        return await await_end(self, str(job_id), timeout)

    def wait_job(self, job_id: str, timeout: float | None = None) -> JobRecord:
        """:meth:`await_job` for sync code: block this thread until the job has ended.

        Not shielded (unlike the calls that write): a job that waits for another one is
        still stopped by a cancel or its timeout while it waits.
        """
        from jobkit.aio import wait_end

        return wait_end(self, str(job_id), timeout)

    def close(self) -> None:
        """Deliver pending events (waiting at most 5 s for slow hooks) and close the store.

        A wait for a job's end still going on ends with a ``StorageError``.
        """
        self.end_watch.close()
        self.end_watch = EndWatch(lambda: self.storage)  # the app may be used again
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


def _on_default_app(method: Callable[Concatenate[JobKit, P], R]) -> Callable[P, R]:
    """``JobKit``'s ``method`` as a function of the module that runs it on the default app.

    The function takes exactly the method's arguments: mypy checks its callers against the
    method's signature (a ``ParamSpec``), and ``inspect.signature`` and ``help()`` show it.
    """
    def on_default_app(*args: P.args, **kwargs: P.kwargs) -> R:
        return method(get_default_app(), *args, **kwargs)

    signature = inspect.signature(method)
    on_default_app.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[1:])  # without self
    on_default_app.__name__ = on_default_app.__qualname__ = method.__name__
    on_default_app.__doc__ = (f"``JobKit.{method.__name__}`` on the default app.\n\n"
                              f"{inspect.cleandoc(method.__doc__ or '')}")
    return on_default_app


#: ``JobKit.run_background_job`` on the default app.
run_background_job = _on_default_app(JobKit.run_background_job)
#: ``JobKit.enqueue_many`` on the default app.
enqueue_many = _on_default_app(JobKit.enqueue_many)
#: ``JobKit.get_job`` on the default app.
get_job = _on_default_app(JobKit.get_job)
#: ``JobKit.get_attempts`` on the default app.
get_attempts = _on_default_app(JobKit.get_attempts)
#: ``JobKit.cancel_job`` on the default app.
cancel_job = _on_default_app(JobKit.cancel_job)
#: ``JobKit.retry_job`` on the default app.
retry_job = _on_default_app(JobKit.retry_job)
#: ``JobKit.list_jobs`` on the default app.
list_jobs = _on_default_app(JobKit.list_jobs)
#: ``JobKit.run_workflow`` on the default app.
run_workflow = _on_default_app(JobKit.run_workflow)
#: ``JobKit.get_workflow`` on the default app.
get_workflow = _on_default_app(JobKit.get_workflow)
#: ``JobKit.cancel_workflow`` on the default app.
cancel_workflow = _on_default_app(JobKit.cancel_workflow)
#: ``JobKit.arun_background_job`` on the default app.
arun_background_job = _on_default_app(JobKit.arun_background_job)
#: ``JobKit.aenqueue_many`` on the default app.
aenqueue_many = _on_default_app(JobKit.aenqueue_many)
#: ``JobKit.aget_job`` on the default app.
aget_job = _on_default_app(JobKit.aget_job)
#: ``JobKit.acancel_job`` on the default app.
acancel_job = _on_default_app(JobKit.acancel_job)
#: ``JobKit.await_job`` on the default app.
await_job = _on_default_app(JobKit.await_job)
#: ``JobKit.wait_job`` on the default app.
wait_job = _on_default_app(JobKit.wait_job)
