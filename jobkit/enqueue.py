"""Internal: the one check of an enqueue: from a call's arguments to the complete jobs to store.

``run_background_job`` and ``enqueue_many`` hand their arguments to :func:`new_jobs`, which checks
everything a job must be before it is stored, in this order: the job and method are registered
and approved, the params fit the method's signature (the factory), ``delay`` is seconds within
:data:`jobkit.limits.DELAY` (or ``run_at`` an aware time at most that far ahead), the call's
settings (priority, retries, timeout) fit their bounds (the configuration's ``call`` layer),
the params' JSON fits ``max_params_bytes``, and the queue is a queue name. It returns
:class:`~jobkit.records.NewJob` records with every field set; the app only stores them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import attrs

from jobkit import limits
from jobkit.exceptions import ConfigError, InvalidParameters
from jobkit.flow import IDEMPOTENCY_PERIOD, check_queue_name
from jobkit.records import NewJob

if TYPE_CHECKING:
    from jobkit.config import JobSettings
    from jobkit.factory import Factory
    from jobkit.records import RetryPolicy
    from jobkit.registry import JobSpec

#: What one call gives as a job's params: keyword arguments, positional ones, or none.
Params = dict[str, Any] | list[Any] | None
#: The settings of one call for a job and their retry policy (``JobKit``'s, cached per job).
SettingsOf = Callable[["JobSpec", Mapping[str, Any]], "tuple[JobSettings, RetryPolicy]"]

#: ``json.dumps(value, ensure_ascii=False, allow_nan=False)`` without an encoder made per call.
_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
#: Internal: the overrides of a call that gives none (one shared mapping: read only).
NO_OVERRIDES: Mapping[str, Any] = {
    "priority": None, "retry_attempts": None, "retry_delay": None, "timeout": None,
}


@attrs.frozen
class CallOptions:
    """The per-call options of ``run_background_job`` and ``enqueue_many``."""

    priority: int | None = None
    delay: float | timedelta = 0
    retry_attempts: int | None = None
    retry_delay: float | None = None
    timeout: float | None = None
    #: The queue of these jobs; ``None``: their job's ``queue`` setting.
    queue: str | None = None
    #: The caller's key for this job: a second call with the same key (for the same job)
    #: stores nothing and gets the first job's id.
    idempotency_key: str | None = None
    #: When the jobs become due: an aware time (``None``: now, or after ``delay``).
    run_at: datetime | None = None

    def overrides(self) -> Mapping[str, Any]:
        """The job settings this call overrides (``None``: not given)."""
        if (self.priority is None and self.retry_attempts is None and self.retry_delay is None
                and self.timeout is None):
            return NO_OVERRIDES  # the common call: no dict made
        return {
            "priority": self.priority,
            "retry_attempts": self.retry_attempts,
            "retry_delay": self.retry_delay,
            "timeout": self.timeout,
        }


def delay_seconds(delay: float | timedelta, what: str = "delay") -> float:
    """``delay`` in seconds, checked against :data:`jobkit.limits.DELAY`.

    ``delay`` in seconds; ``ConfigError`` (as for the other options of a call) when it is not
    seconds or a timedelta within :data:`jobkit.limits.DELAY`."""
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
    if not limits.DELAY.accepts(seconds):  # also refuses NaN, booleans and text
        raise ConfigError(errors=[
            f"call: {what}: expected {limits.DELAY.describe()} or a timedelta, "
            f"got {delay!r}"
        ])
    return float(seconds)


def due_at(
    delay: float | timedelta, run_at: datetime | None, now: Callable[[], datetime]
) -> datetime | None:
    """When a call's jobs become due, in UTC; ``None``: now (the store stamps its own clock).

    ``delay`` (seconds or a timedelta, see :func:`delay_seconds`) or ``run_at``, an aware
    ``datetime`` at most :data:`jobkit.limits.DELAY` ahead; one in the past is due now.
    ``ConfigError`` (as for the call's other options) for a naive ``run_at``, one too far
    ahead, or a ``delay`` other than 0 with it. ``now`` is read only for a job due later.
    """
    seconds = delay_seconds(delay)
    if run_at is None:
        return now() + timedelta(seconds=seconds) if seconds else None
    if seconds:
        raise ConfigError(errors=[
            f"call: run_at: give run_at or delay, not both (delay={delay!r}, run_at={run_at!r})"
        ])
    if not isinstance(run_at, datetime) or run_at.utcoffset() is None:
        what = "a naive datetime" if isinstance(run_at, datetime) else type(run_at).__name__
        raise ConfigError(errors=[
            f"call: run_at: expected an aware datetime (with a time zone, e.g. "
            f"datetime(2026, 12, 24, 18, 0, tzinfo=timezone.utc)), got {what}: {run_at!r}"
        ])
    current = now()
    ahead = (run_at - current).total_seconds()
    if ahead <= 0:
        return None  # in the past: due now, queued as any job enqueued now
    if not limits.DELAY.accepts(ahead):
        raise ConfigError(errors=[
            f"call: run_at: expected a time at most {limits.DELAY.span} ahead, got {run_at!r}"
        ])
    return run_at.astimezone(timezone.utc)


def call_queue(queue: object) -> str:
    """A call's ``queue=``, checked; ``ConfigError`` (as for the call's other options)."""
    try:
        return check_queue_name(queue, "call: queue")
    except ValueError as exc:
        raise ConfigError(errors=[str(exc)]) from None


#: The longest idempotency key a call may give, in characters.
MAX_IDEMPOTENCY_KEY = 200


def unique_of(name: str, method: str, params: dict[str, Any], settings: JobSettings,
              idempotency_key: str | None) -> tuple[str | None, float | None]:
    """A job's ``unique_key`` and ``unique_for``: from the call's key, else its ``unique:``.

    The call's idempotency key holds for the job's ``unique.period``, else a day; a job's
    ``unique.keys`` make a key of the job, method and those params' values, held while it is
    waiting or running (and for ``period`` seconds, with one).
    """
    unique = settings.unique
    if idempotency_key is None and unique is None:  # every plain enqueue: nothing to do
        return None, None
    if idempotency_key is not None:
        if (not isinstance(idempotency_key, str) or not idempotency_key
                or len(idempotency_key) > MAX_IDEMPOTENCY_KEY):
            raise ConfigError(errors=[
                f"call: idempotency_key: expected a non-empty string of at most "
                f"{MAX_IDEMPOTENCY_KEY} characters, got {idempotency_key!r}"])
        period = unique.period if unique is not None and unique.period else IDEMPOTENCY_PERIOD
        return f"{name}:key:{idempotency_key}", period
    assert unique is not None
    values = json.dumps([params.get(key) for key in unique.keys], ensure_ascii=False,
                        sort_keys=True)  # {"a": 1, "b": 2} is {"b": 2, "a": 1}
    digest = hashlib.sha256(values.encode("utf-8")).hexdigest()[:40]
    return f"{name}.{method}:{digest}", unique.period


def new_jobs(
    factory: Factory,
    name: str,
    method: str,
    params_list: Sequence[Params],
    options: CallOptions,
    *,
    settings_of: SettingsOf,
    now: Callable[[], datetime],
    supplied: frozenset[str] = frozenset(),
) -> list[NewJob]:
    """The complete, checked jobs of one call, one per params of ``params_list``.

    The complete, checked jobs of one call (one per params of ``params_list``); nothing when
    one does not pass. ``now`` is the store's clock, read only for a job due later (``delay``,
    ``run_at``); a job due now is stamped by the store with its own clock (on PostgreSQL, no
    extra round trip). ``supplied`` names parameters the store gives later (a workflow step's
    ``result_as``): not missing.

    Raises ``JobNotFound``, ``MethodNotAllowed``, ``InvalidParameters`` (naming ``params[i]``
    when there are several) or ``ConfigError`` (the call's options).
    """
    if not params_list:
        return []
    spec, check = factory.validator(name, method, supplied)
    count = len(params_list)
    if count == 1:  # run_background_job: its problems name no index
        checked = [check(params_list[0])]
    else:
        checked = [_checked(check, params, index, count)
                   for index, params in enumerate(params_list)]
    available_at = due_at(options.delay, options.run_at, now)
    settings, policy = settings_of(spec, options.overrides())
    queue = settings.queue if options.queue is None else call_queue(options.queue)
    unique = [unique_of(spec.name, method, by_name, settings, options.idempotency_key)
              for by_name in checked]
    encoded = [_ENCODE(by_name) for by_name in checked]
    most = settings.max_params_bytes
    for index, text in enumerate(encoded):
        if len(text) * 4 > most:  # UTF-8 takes at most 4 bytes a char: else no need to measure
            _check_size(spec.name, method, text, most,
                        "params" if count == 1 else f"params[{index}]")
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
            queue=queue,
            unique_key=unique_key,
            unique_for=unique_for,
        )
        for by_name, text, (unique_key, unique_for) in zip(checked, encoded, unique, strict=True)
    ]


def _checked(
    check: Callable[[Any], dict[str, Any]], params: Params, index: int, count: int
) -> dict[str, Any]:
    """One params checked against the method, by name.

    The problems of one of several name it (``params[2] to``)."""
    try:
        return check(params)
    except InvalidParameters as exc:
        if count == 1:
            raise
        problems = {f"params[{index}] {key}": why for key, why in exc.problems.items()}
        raise InvalidParameters(exc.name, exc.method, problems) from None


def _check_size(name: str, method: str, text: str, most: int, where: str) -> None:
    """``InvalidParameters`` when the params' JSON ``text`` is over ``most`` bytes of UTF-8."""
    size = len(text.encode("utf-8"))
    if size > most:
        raise InvalidParameters(
            name, method, {where: f"{size} bytes of JSON, over max_params_bytes ({most})"}
        )
