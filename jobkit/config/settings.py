"""Internal: the sections of the configuration, each an attrs class whose fields carry their rules.

:class:`JobSettings` (``defaults:`` and each job's effective settings), :class:`LoggingSettings`,
:class:`WorkerSettings`, :class:`DashboardSettings`, and the entries of ``jobs:`` and
``notifications:``. Import them from :mod:`jobkit.config`.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

import attrs

from jobkit import limits
from jobkit.config_yaml import (
    CHECK,
    OPTIONS,
    Invalid,
    Rule,
    boolean,
    bounded,
    checked,
    choice,
    list_of,
    loguru_option,
    rules_of,
    setting,
    text,
    unset_or,
)
from jobkit.flow import (
    QUEUE_NAME,
    Concurrency,
    RateLimit,
    Unique,
    parse_concurrency,
    parse_rate_limit,
    parse_unique,
)
from jobkit.records import DEFAULT_QUEUE, EventKind, RetryPolicy

__all__ = [
    "CALL_SETTINGS",
    "LOG_LEVELS",
    "DashboardSettings",
    "JobEntry",
    "JobSettings",
    "LoggingSettings",
    "NotificationEntry",
    "QueueEntry",
    "ResolvedJob",
    "WorkerSettings",
]

#: loguru's level names.
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
#: The settings one call of ``run_background_job`` may override.
CALL_SETTINGS = ("retry_attempts", "retry_delay", "timeout", "priority")
_IMPORT_PATH = r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*"
def _limit_rule(parse: Any) -> Any:
    """A rule from a :mod:`jobkit.flow` parser: null, or what ``parse`` accepts."""

    def check(value: Any) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as exc:
            raise Invalid(str(exc)) from None

    return check


#: ``concurrency:`` and ``rate_limit:`` of a job or a queue.
CONCURRENCY_RULE = _limit_rule(parse_concurrency)
RATE_LIMIT_RULE = _limit_rule(parse_rate_limit)
#: ``unique:`` of a job.
UNIQUE_RULE = _limit_rule(parse_unique)
#: A queue name's rule (jobkit.flow.QUEUE_NAME).
QUEUE_RULE = text("a queue name (a letter or digit, then letters, digits, '_', '-' or '.', at "
                  "most 64 characters)", pattern=QUEUE_NAME)


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
    #: The queue its jobs wait in (a call's ``queue=`` overrides it).
    queue: str = setting(DEFAULT_QUEUE, QUEUE_RULE)
    #: At most this many of its jobs run at once, on every worker of every machine (per value
    #: of a parameter with ``key``); None: no limit.
    concurrency: Concurrency | None = setting(None, CONCURRENCY_RULE)
    #: At most this many of its jobs start in any window of the rate's unit; None: no limit.
    rate_limit: RateLimit | None = setting(None, RATE_LIMIT_RULE)
    #: Which parameters make two of its jobs the same: a duplicate enqueue stores nothing.
    unique: Unique | None = setting(None, UNIQUE_RULE)

    @property
    def max_attempts(self) -> int:
        """How many times the job may run in all: the first attempt and its retries."""
        return 1 + self.retry_attempts

    def policy(self) -> RetryPolicy:
        """The retry policy stored with each job record."""
        return RetryPolicy(retry_delay=self.retry_delay, backoff=self.backoff,
                           max_delay=self.max_delay, jitter=self.jitter, timeout=self.timeout)


#: Each job setting's rule, shared by the file, environment, package and call layers.
JOB_RULES = rules_of(JobSettings)


@attrs.frozen
class LoggingSettings:
    """Where and how ``background_jobs.log`` and ``background_jobs_errors.log`` are written."""

    dir: str = setting("logs", text("a directory"))
    format: Literal["text", "json"] = setting("text", choice("text", "json"))
    #: A loguru rotation ("00:00", "100 MB", "1 week"); None never rotates.
    rotation: str | int | None = setting("00:00", loguru_option(
        "rotation", 'a loguru rotation such as "00:00", "100 MB", "1 week"', "00:00"))
    #: A loguru retention ("14 days", "10 files"); None keeps every file.
    retention: str | int | None = setting("14 days", loguru_option(
        "retention", 'a loguru retention such as "14 days", "10 files"', "14 days"))
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
    #: The most ``async def`` jobs a worker process runs at once on its event loop, besides its
    #: one sync job.
    async_concurrency: int = setting(100, bounded(limits.ASYNC_CONCURRENCY))
    #: The queues this worker takes jobs from (``--queues``); None: every queue.
    queues: list[str] | None = attrs.field(default=None, validator=checked, metadata={
        CHECK: list_of(QUEUE_RULE, "queue names")})

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
    return frozenset(key for key in JOB_RULES if getattr(entry, key) is not None)


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
    retry_attempts: int | None = unset_or(JOB_RULES["retry_attempts"])
    retry_delay: float | None = unset_or(JOB_RULES["retry_delay"])
    backoff: Literal["fixed", "exponential"] | None = unset_or(JOB_RULES["backoff"])
    max_delay: float | None = unset_or(JOB_RULES["max_delay"])
    jitter: float | None = unset_or(JOB_RULES["jitter"])
    timeout: float | None = unset_or(JOB_RULES["timeout"])
    priority: int | None = unset_or(JOB_RULES["priority"])
    max_params_bytes: int | None = unset_or(JOB_RULES["max_params_bytes"])
    max_crashes: int | None = unset_or(JOB_RULES["max_crashes"])
    queue: str | None = unset_or(JOB_RULES["queue"])
    concurrency: Concurrency | None = unset_or(JOB_RULES["concurrency"])
    rate_limit: RateLimit | None = unset_or(JOB_RULES["rate_limit"])
    unique: Unique | None = unset_or(JOB_RULES["unique"])
    #: The job settings this entry sets, nulls included (``timeout: null`` clears a timeout).
    set_fields: frozenset[str] = attrs.field(
        default=attrs.Factory(_settings_given, takes_self=True)
    )

    def settings(self) -> dict[str, Any]:
        """The job settings this entry sets, by name."""
        return {key: getattr(self, key) for key in JOB_RULES if key in self.set_fields}


def _no_key(rule: Any) -> Any:
    """``rule``, refusing a ``key``: a queue's limit holds for all its jobs together."""

    def check(value: Any) -> Any:
        limit = rule(value)
        if limit is not None and limit.key is not None:
            raise Invalid("a queue's limit takes no key (a key is a parameter of one job: "
                          "put a keyed limit on the job)")
        return limit

    return check


@attrs.frozen
class QueueEntry:
    """One entry under ``queues:``: the limits of one queue, over all its jobs together."""

    #: At most this many of the queue's jobs run at once, on every worker of every machine.
    concurrency: Concurrency | None = setting(None, _no_key(CONCURRENCY_RULE))
    #: At most this many of the queue's jobs start in any window of the rate's unit.
    rate_limit: RateLimit | None = setting(None, _no_key(RATE_LIMIT_RULE))


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

