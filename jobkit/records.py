"""Records that flow between the app, the storage backends, the worker and the hooks."""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

import attrs

from jobkit import limits


class _TextEnum(str, enum.Enum):
    """An enum of strings, each member shown as its value (``str(JobStatus.FAILED)``)."""

    def __str__(self) -> str:
        return str(self.value)


class JobStatus(_TextEnum):
    """Where a job is in its life."""

    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Stored, waiting for the jobs it depends on (a workflow's step, or ``depends_on=``): no
    #: claim takes it until the store releases it as ``pending``, in the transaction that
    #: ends the last of them.
    BLOCKED = "blocked"

    @property
    def is_final(self) -> bool:
        """True for the statuses a job leaves only through a manual retry."""
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
WAITING_STATUSES = frozenset({JobStatus.PENDING, JobStatus.RETRYING})
#: The queue of a job whose job and call name none.
DEFAULT_QUEUE = "default"


class AttemptOutcome(_TextEnum):
    """How one try of a job ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    LOST = "lost"  # the worker stopped heartbeating; its lease expired
    HANDED_BACK = "handed_back"  # graceful shutdown gave the job back before it finished


class EventKind(_TextEnum):
    """The state changes reported through the ``jobkit_job_event`` hook."""

    ENQUEUED = "enqueued"
    STARTED = "started"
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    FAILED = "failed"
    CANCELLED = "cancelled"


def check_aware(instance: Any, attribute: attrs.Attribute[Any], value: datetime | None) -> None:
    """attrs validator: reject naive datetimes (every time in jobkit is UTC)."""
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{attribute.name} must be timezone-aware, got naive {value!r}")


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


# Converters that bring a value read back from a store within its bound (jobkit.limits.clamp):
# the configuration checked it at enqueue, but a row written by an older version or forged in
# the database must not stop the worker.


def _stored_delay(value: Any) -> float:
    return limits.clamp(limits.DELAY, value, 5.0) or 0.0


def _stored_max_delay(value: Any) -> float | None:
    return limits.clamp(limits.MAX_DELAY_SETTING, value, None)


def _stored_jitter(value: Any) -> float:
    return limits.clamp(limits.JITTER, value, 0.0) or 0.0


def _stored_timeout(value: Any) -> float | None:
    return limits.clamp(limits.TIMEOUT, value, None)


def _backoff(value: Any) -> str:
    return value if value in ("fixed", "exponential") else "fixed"


@attrs.frozen
class RetryPolicy:
    """How a job is retried and how long one attempt may run; resolved when the job is enqueued.

    Each value is kept within its bound of :mod:`jobkit.limits` (a stored timeout of 1e12 is read
    as 7 days); one that is not a number (or a timeout <= 0) is read as the default.
    """

    retry_delay: float = attrs.field(default=5.0, converter=_stored_delay)
    backoff: str = attrs.field(default="fixed", converter=_backoff)  # "fixed" or "exponential"
    max_delay: float | None = attrs.field(default=None, converter=_stored_max_delay)
    #: A fraction of the delay added at random, 0..1.
    jitter: float = attrs.field(default=0.0, converter=_stored_jitter)
    timeout: float | None = attrs.field(default=None, converter=_stored_timeout)


@attrs.frozen
class NewJob:
    """What the app hands to ``Storage.enqueue``: a validated job that has no id yet."""

    name: str
    method: str
    params: dict[str, Any] | list[Any]
    priority: int
    max_attempts: int
    policy: RetryPolicy
    #: When it may run first; ``None``: now, on the store's clock (no round trip to read it).
    available_at: datetime | None = attrs.field(validator=check_aware)
    #: Crashes of its worker the job survives (see ``JobRecord.crashes``).
    max_crashes: int = 3
    #: ``params`` as JSON text when the app has encoded them already (it measures their size);
    #: a backend may store this instead of encoding them again.
    params_json: str | None = attrs.field(default=None, eq=False, repr=False)
    #: The queue it waits in (``queue:`` of its job, or the call's ``queue=``); workers take jobs
    #: from the queues they are given, and a paused queue is not claimed from.
    queue: str = DEFAULT_QUEUE
    #: What makes two jobs the same (``unique:`` of its job, or the call's idempotency key): a
    #: job with the same key that is pending, retrying or running, or was enqueued less than
    #: ``unique_for`` seconds ago, is returned instead of storing this one. None: not unique.
    unique_key: str | None = None
    unique_for: float | None = None


@attrs.frozen
class JobRecord:
    """A job as stored: the public view returned by ``get_job`` and carried by events."""

    id: str
    name: str
    method: str
    params: dict[str, Any] | list[Any]
    status: JobStatus
    priority: int
    attempts: int
    max_attempts: int
    result: Any
    error: str | None
    created_at: datetime = attrs.field(validator=check_aware)
    available_at: datetime = attrs.field(validator=check_aware)
    started_at: datetime | None = attrs.field(default=None, validator=check_aware)
    finished_at: datetime | None = attrs.field(default=None, validator=check_aware)
    policy: RetryPolicy = attrs.field(factory=RetryPolicy)
    worker_id: str | None = None
    lease_expires_at: datetime | None = attrs.field(default=None, validator=check_aware)
    progress: float | None = None
    progress_message: str | None = None
    #: Attempts that ended because their worker died or lost the lease (outcome ``lost``). Such
    #: an attempt does not use up a retry; the ``max_crashes``-th fails the job.
    crashes: int = 0
    max_crashes: int = 3
    #: The columns of a stored row that could not be read (a forged or corrupt row: text in
    #: ``priority``, a time in milliseconds or ``'infinity'``), each with what was found there,
    #: e.g. ``{"priority": "'high' (text) is not an integer"}``. Those fields hold a stand-in
    #: (0, the Unix epoch, ``None``). Empty for every row jobkit wrote. A worker never runs
    #: such a job: its claim sets it aside as ``failed`` (see docs/storage.md).
    unreadable: dict[str, str] = attrs.field(factory=dict)
    #: The queue the job waits in (``default`` unless its job or call named one).
    queue: str = DEFAULT_QUEUE
    #: What makes two jobs the same (see ``NewJob.unique_key``); None for a job that is not unique.
    unique_key: str | None = None


@attrs.frozen
class Lease:
    """Proof that one worker owns one attempt of a job: every write of that attempt is fenced."""

    job_id: str
    worker_id: str
    attempt: int


@attrs.frozen
class Attempt:
    """One try of a job: when it ran, where, and how it ended."""

    job_id: str
    attempt: int
    worker_id: str | None
    started_at: datetime = attrs.field(validator=check_aware)
    finished_at: datetime | None = attrs.field(default=None, validator=check_aware)
    outcome: AttemptOutcome | None = None
    error: str | None = None
    traceback: str | None = None
    #: The columns of the stored row that could not be read, as in ``JobRecord.unreadable``.
    unreadable: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class JobLogLine:
    """A line a job logged through ``self.log`` during one of its attempts."""

    attempt: int
    at: datetime = attrs.field(validator=check_aware)
    level: str
    message: str


@attrs.frozen
class WorkerInfo:
    """One worker process as the store knows it.

    Registered and kept alive by its supervisor, so the dashboard can show the workers of
    every machine and what each is running."""

    worker_id: str
    hostname: str
    pid: int
    supervisor_pid: int
    started_at: datetime = attrs.field(validator=check_aware)
    last_seen_at: datetime = attrs.field(validator=check_aware)


@attrs.frozen
class JobEvent:
    """A state change of one job, passed to the ``jobkit_job_event`` hook."""

    kind: EventKind
    job: JobRecord
    at: datetime = attrs.field(factory=utcnow, validator=check_aware)
    error: str | None = None
    traceback: str | None = None


class UnreadableJSON(str):
    """A stored JSON value Python cannot decode, read as the reason why.

    What a SQL backend reads for a stored JSON value Python cannot decode (a forged or corrupt
    row: a pickle blob, text that is not JSON, nesting or numbers too deep or long): the reason,
    as text. The record can still be read, listed and shown; the worker fails a job whose params
    are unreadable (``InvalidParameters``, never retried) and goes on with the next one."""

    __slots__ = ()


class UnreadableValue(str):
    """A stored value Python cannot hold, read as text.

    What a SQL backend's driver reads for a stored value Python cannot hold (PostgreSQL's
    ``'infinity'`` or a year after 9999 in a ``timestamptz`` column): the value, as text. The
    row is read with that field marked in :attr:`JobRecord.unreadable`."""

    __slots__ = ()


def decode_json(load: Any, value: Any) -> Any:
    """``load(value)``, or :class:`UnreadableJSON` saying why it failed."""
    if isinstance(value, UnreadableJSON):
        return value
    try:
        return load(value)
    except (ValueError, RecursionError, TypeError) as exc:  # JSON, Unicode, int-size errors
        return UnreadableJSON(f"not valid JSON ({type(exc).__name__}: {str(exc)[:200]})")


#: What a step needs of the jobs it waits for: all ``completed`` (a chain's next step), or
#: all ended, succeeded or not (a group's callback, a step with ``on_failure="run"``).
NEEDS_COMPLETED, NEEDS_ENDED = "completed", "ended"


@attrs.frozen
class NewStep:
    """A job to store that waits for others: a step of a workflow, or a job with ``depends_on``.

    The store keeps it ``blocked`` until every job it waits for has ended, then, in the
    transaction that ended the last of them, makes it ``pending`` (their results given as
    ``result_as``) or, when ``needs`` is ``completed`` and one of them did not complete,
    ``cancelled`` (and so on down the graph).
    """

    job: NewJob
    #: The steps of the same call it waits for, by their index in the call's list (earlier ones).
    parents: tuple[int, ...] = ()
    #: Jobs already stored that it waits for, by id.
    depends_on: tuple[str, ...] = ()
    #: :data:`NEEDS_COMPLETED` or :data:`NEEDS_ENDED`.
    needs: str = NEEDS_COMPLETED
    #: The parameter that receives what the jobs it waits for returned (``None``: none).
    result_as: str | None = None
    #: Whether ``result_as`` receives a list (one result per job it waits for, in their order,
    #: ``None`` for one that did not complete) rather than the one job's result.
    collect: bool = False
    #: Where the step sits in its flow, for people (``"1.0"``: the first member of the second
    #: element); ``""`` for a job with ``depends_on``.
    label: str = ""
    #: The most bytes of JSON its params may take once the results are written in as
    #: ``result_as`` (its job's ``max_params_bytes``); over it, the release fails the step
    #: instead of making it pending. ``None``: not checked.
    max_params_bytes: int | None = None


@attrs.frozen
class WorkflowStep:
    """One step of a stored workflow, as :meth:`get_workflow` reads it."""

    job_id: str
    label: str
    name: str
    method: str
    status: JobStatus
    #: The ids of the jobs it waits for.
    parents: tuple[str, ...]
    needs: str
    result_as: str | None = None


@attrs.frozen
class WorkflowRecord:
    """A stored workflow: its id and every step, in the order they were given."""

    id: str
    created_at: datetime = attrs.field(validator=check_aware)
    steps: tuple[WorkflowStep, ...] = ()

    @property
    def finished(self) -> bool:
        """Whether every step has ended (completed, failed or cancelled)."""
        return all(step.status.is_final for step in self.steps)
