"""Flow control: which queues a claim may take jobs from, and what each queue holds.

A job waits in one named queue (``queue:`` of its job in ``jobs.yaml``, or the call's
``queue=``; ``default`` otherwise). A worker takes jobs from the queues it is given
(``jobkit worker --queues mail,default``; all of them by default), and no worker takes a job
from a paused queue. The pause is kept in the store, so it reaches every worker on every
machine at its next claim. The stores that do this have the ``flow`` capability
(:class:`jobkit.storage.capabilities.ControlsFlow`); see docs/queues.md.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta

import attrs

from jobkit.records import DEFAULT_QUEUE, WAITING_STATUSES, JobRecord

__all__ = [
    "DEFAULT_QUEUE",
    "QUEUE_NAME",
    "Concurrency",
    "Flow",
    "Limit",
    "QueueState",
    "RateLimit",
    "Unique",
    "check_queue_name",
    "held_by",
    "parse_concurrency",
    "parse_rate_limit",
    "parse_unique",
    "why_waiting",
]

#: What a queue name may be: a letter or digit, then letters, digits, ``_``, ``-`` and ``.``,
#: at most 64 characters.
QUEUE_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_QUEUE_NAME = re.compile(QUEUE_NAME)


def check_queue_name(name: object, what: str = "queue") -> str:
    """``name`` if it is a queue name; ``ValueError`` saying what a queue name is otherwise."""
    if isinstance(name, str) and _QUEUE_NAME.fullmatch(name):
        return name
    raise ValueError(
        f"{what}: expected a queue name (a letter or digit, then letters, digits, '_', '-' or "
        f"'.', at most 64 characters), got {name!r}"
    )


def _queues(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise TypeError(f"queues must be a list of queue names or None, got {value!r}")
    names = tuple(check_queue_name(name, "queues") for name in value)
    if not names:
        raise ValueError("queues: give at least one queue, or None for every queue")
    return tuple(dict.fromkeys(names))  # in order, once each


#: The most a concurrency or rate limit may be.
MOST = 1_000_000
#: The units of a rate, in seconds.
PER = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"\s*(\d{1,7})\s*/\s*([smh])\s*")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@attrs.frozen
class Concurrency:
    """``concurrency:`` of a job or queue: at most ``limit`` running at once (per ``key``)."""

    limit: int
    #: A parameter of the job: the limit holds per value of it (``None``: for all its jobs).
    key: str | None = None

    def __str__(self) -> str:
        return f"{self.limit}" + (f" per {self.key}" if self.key else "")


@attrs.frozen
class RateLimit:
    """``rate_limit:`` of a job or queue: at most ``limit`` starts in any ``per`` seconds."""

    limit: int
    per: float
    #: A parameter of the job: the limit holds per value of it.
    key: str | None = None

    def __str__(self) -> str:
        unit = {seconds: unit for unit, seconds in PER.items()}[self.per]
        return f"{self.limit}/{unit}" + (f" per {self.key}" if self.key else "")


def _count(value: object) -> int | None:
    if type(value) is int and 1 <= value <= MOST:
        return value
    return None


def _key(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and _KEY.fullmatch(value):
        return value
    raise ValueError(f"key: expected the name of a parameter of the job, got {value!r}")


def _split(value: object, limit_form: str) -> tuple[object, str | None]:
    """A limit's value and key: ``{limit: ..., key: ...}``, or the value alone with no key."""
    if not isinstance(value, dict):
        return value, None
    unknown = sorted(set(map(str, value)) - {"limit", "key"})
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)} (known: limit, key)")
    if "limit" not in value:
        raise ValueError(f"expected {{limit: {limit_form}, key: PARAM}}: limit is missing")
    return value["limit"], _key(value.get("key"))


def parse_concurrency(value: object) -> Concurrency:
    """``2`` or ``{limit: 1, key: customer_id}`` as a :class:`Concurrency`.

    ``ValueError`` saying what is expected otherwise.
    """
    if isinstance(value, Concurrency):
        return value
    value, key = _split(value, "N")
    limit = _count(value)
    if limit is None:
        raise ValueError(f"expected an integer >= 1 and <= {MOST:,}, or {{limit: N, key: PARAM}}"
                         f", got {value!r}")
    return Concurrency(limit, key)


def parse_rate_limit(value: object) -> RateLimit:
    """``"10/s"`` (``/m``, ``/h``) or ``{limit: "100/m", key: partner}`` as a RateLimit.

    ``ValueError`` saying what is expected otherwise.
    """
    if isinstance(value, RateLimit):
        return value
    value, key = _split(value, '"100/m"')
    found = _RATE.fullmatch(value) if isinstance(value, str) else None
    if found is None or _count(int(found.group(1))) is None:
        raise ValueError(f'expected a rate such as "10/s", "100/m" or "5000/h" (at most '
                         f'{MOST:,}), or {{limit: "100/m", key: PARAM}}, got {value!r}')
    return RateLimit(int(found.group(1)), PER[found.group(2)], key)


#: The longest ``unique.period``, in seconds (a year).
MOST_PERIOD = 365 * 24 * 3600.0
#: How long a call's ``idempotency_key`` holds when its job sets no ``unique.period``: a day.
IDEMPOTENCY_PERIOD = 24 * 3600.0


@attrs.frozen
class Unique:
    """``unique:`` of a job: two of its jobs with the same values of ``keys`` are the same job.

    A second one is not stored while the first is pending, retrying or running, nor, with a
    ``period``, for that many seconds after the first was enqueued, whatever became of it.
    """

    keys: tuple[str, ...]
    period: float | None = None

    def __str__(self) -> str:
        period = f" for {self.period:g} s" if self.period is not None else ""
        return f"by {', '.join(self.keys)}{period}"


def parse_unique(value: object) -> Unique:
    """``{keys: [to, template], period: 300}`` as a :class:`Unique`; ValueError otherwise."""
    if isinstance(value, Unique):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"expected {{keys: [PARAM, ...], period: SECONDS}}, got {value!r}")
    unknown = sorted(set(map(str, value)) - {"keys", "period"})
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)} (known: keys, period)")
    keys = value.get("keys")
    if (not isinstance(keys, list) or not keys
            or not all(isinstance(key, str) and _KEY.fullmatch(key) for key in keys)):
        raise ValueError(f"keys: expected a list of the job's parameter names, got {keys!r}")
    period = value.get("period")
    if period is not None and (isinstance(period, bool) or not isinstance(period, (int, float))
                               or not 0 < period <= MOST_PERIOD):
        raise ValueError(f"period: expected seconds > 0 and <= {MOST_PERIOD:g}, or null, "
                         f"got {period!r}")
    return Unique(tuple(dict.fromkeys(keys)), None if period is None else float(period))


@attrs.frozen
class Limit:
    """One limit a claim enforces: a concurrency or rate limit of one job or one queue.

    ``scope`` is ``"job"`` (``name`` a job name) or ``"queue"`` (``name`` a queue name);
    ``key``, for a job's limit, is the parameter whose every value has the limit of its own.
    """

    scope: str
    name: str
    #: ``"concurrency"``: at most ``limit`` running at once; ``"rate"``: at most ``limit``
    #: starts in any ``per`` seconds.
    kind: str
    limit: int
    per: float | None = None
    key: str | None = None

    def __str__(self) -> str:
        what = f"concurrency limit {self.limit}" if self.kind == "concurrency" else (
            f"rate limit {RateLimit(self.limit, self.per or 1.0)}")
        per_key = f" per {self.key}" if self.key else ""
        return f"{self.scope} {self.name}: {what}{per_key}"

    def applies(self, name: str, queue: str) -> bool:
        """Whether a job of ``name`` in ``queue`` is under this limit."""
        return (self.name == name) if self.scope == "job" else (self.name == queue)


def _limits(limits: Iterable[Limit]) -> tuple[Limit, ...]:
    return tuple(limits)


@attrs.frozen
class Flow:
    """What one claim may take: the worker's queues (``None``: every queue), and the limits.

    Paused queues are never claimed from, whatever the flow says. ``limits`` are the
    concurrency and rate limits of the jobs and queues (from ``jobs.yaml``), enforced where
    the jobs are claimed.
    """

    queues: tuple[str, ...] | None = attrs.field(default=None, converter=_queues)
    limits: tuple[Limit, ...] = attrs.field(default=(), converter=_limits)

    @property
    def restricted(self) -> bool:
        """Whether this flow narrows what a claim may take (a store needs ``flow`` for it)."""
        return self.queues is not None or bool(self.limits)

    def takes(self, queue: str) -> bool:
        """Whether a job of ``queue`` may be claimed under this flow (pauses aside)."""
        return self.queues is None or queue in self.queues


#: Every queue, nothing narrowed: what a worker started without ``--queues`` claims with.
EVERY_QUEUE = Flow()


@attrs.frozen
class QueueState:
    """One queue as the store knows it: paused or not, and how many of its jobs are where."""

    name: str
    paused: bool = False
    #: Jobs waiting (pending or retrying), due or not.
    waiting: int = 0
    #: Jobs running now.
    running: int = 0
    #: Attempts that ended (succeeded or failed) in the last 60 seconds.
    done_last_minute: int = 0


def held_by(limit: Limit, value: str | None, count: int, oldest: datetime | None) -> str:
    """Why ``limit`` holds a job back: ``concurrency limit of job Report: 2 of 2 running``.

    ``value`` is the job's value of the limit's key; ``count`` what the limit has used, and
    ``oldest`` (a rate limit) the oldest start in its window.
    """
    whose = f"{limit.scope} {limit.name}" + (f" for {limit.key}={value}" if limit.key else "")
    if limit.kind == "concurrency":
        return f"concurrency limit of {whose}: {count} of {limit.limit} running"
    rate = RateLimit(limit.limit, limit.per or 1.0)
    if oldest is None:
        return f"rate limit of {whose} ({rate}): {count} started in the last window"
    after = oldest + timedelta(seconds=limit.per or 1.0)
    return f"rate limit of {whose} ({rate}): next start after {after:%Y-%m-%d %H:%M:%S} UTC"


def why_waiting(record: JobRecord, now: datetime, paused: Collection[str],
                held: Sequence[str] = ()) -> str | None:
    """Why a pending or retrying job has not started (``None`` for a job in another status).

    ``paused`` are the paused queues, ``held`` the reasons of the limits that hold it back
    (:func:`held_by`); the reasons, first that holds: ``queue NAME is paused``, ``not due until
    TIME`` (its delay or retry), a limit, ``due: waiting for a free worker``.
    """
    if record.status not in WAITING_STATUSES:
        return None
    if record.queue in paused:
        return f"queue {record.queue} is paused"
    if record.available_at > now:
        return f"not due until {record.available_at:%Y-%m-%d %H:%M:%S} UTC"
    if held:
        return "; ".join(held)
    return f"due: waiting for a free worker of queue {record.queue}"
