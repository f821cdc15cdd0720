"""Internal: stored rows read as records without trusting them (a trust boundary).

A SQL backend's row may hold what jobkit never wrote (a row edited by hand, a store written
before its schema checked types): text in ``priority``, a time in milliseconds, PostgreSQL's
``'infinity'``. Reading such a row never raises: each field that cannot be read gets a stand-in
(0, the Unix epoch, ``None``) and is named, with what was found, in the record's
``unreadable`` mapping. The SQL backends set such a job aside as ``failed`` when a claim meets
it (:func:`set_aside_error`), so one row never stops the queue.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, NamedTuple, Protocol

import attrs

from jobkit.records import (
    DEFAULT_QUEUE,
    Attempt,
    AttemptOutcome,
    JobRecord,
    JobStatus,
    RetryPolicy,
    UnreadableValue,
    decode_json,
)

#: The largest row id both backends store (a signed 64-bit integer).
MAX_ID = 2**63 - 1


def job_key(job_id: str) -> int | None:
    """The row id of a job id; ``None`` for anything that is not the canonical form of one."""
    if job_id.isascii() and job_id.isdigit() and str(int(job_id)) == job_id:
        key = int(job_id)
        return key if key <= MAX_ID else None
    return None


#: What an unreadable time reads as.
STAND_IN_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: How a backend turns a stored time or JSON column into Python (``None`` stays ``None``).
Decode = Callable[[Any], Any]

#: The start of the error of a job set aside because its row could not be read.
SET_ASIDE = "jobkit could not read the stored job, so it was set aside"


class Row(Protocol):
    """A result row read by column name (``sqlite3.Row``, psycopg's ``dict_row``)."""

    def __getitem__(self, key: str, /) -> Any: ...


def shown(value: Any) -> str:
    """A stored value as an error quotes it: its text and, for text or bytes, what it is."""
    if isinstance(value, UnreadableValue):
        return str(value)
    if isinstance(value, str):
        return f"{value[:100]!r} (text)"
    if isinstance(value, bytes):
        return f"{len(value)} bytes (a blob)"
    return repr(value)[:100]


class RowReader:
    """Reads the columns of one row, noting each one that does not hold what it should."""

    def __init__(self, row: Row, time: Decode) -> None:
        self.row = row
        self._time = time
        #: column -> what was found there and why it cannot be read
        self.unreadable: dict[str, str] = {}

    def _flaw(self, column: str, value: Any, expected: str) -> None:
        self.unreadable[column] = f"{shown(value)} is not {expected}"

    def integer(self, column: str, stand_in: int = 0) -> int:
        """An integer column (``stand_in`` if it holds something else)."""
        value = self.row[column]
        if type(value) is int:
            return value
        self._flaw(column, value, "an integer")
        return stand_in

    def text(self, column: str, stand_in: str = "?") -> str:
        """A text column that is never null."""
        value = self.row[column]
        if isinstance(value, str) and not isinstance(value, UnreadableValue):
            return value
        self._flaw(column, value, "text")
        return stand_in

    def optional_text(self, column: str) -> str | None:
        """A text column that may be null."""
        return None if self.row[column] is None else self.text(column, "")

    def time(self, column: str) -> datetime:
        """A time column that is never null: a time Python can hold (years 1 to 9999)."""
        value = self.row[column]
        try:
            decoded = self._time(value)
        except (TypeError, ValueError, OverflowError, OSError, AttributeError):
            decoded = None
        if isinstance(decoded, datetime):
            return decoded
        expected = "a time (seconds since 1970, UTC, years 1 to 9999)"
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            expected = "a time Python can hold (years 1 to 9999)"
        self._flaw(column, value, expected)
        return STAND_IN_TIME

    def optional_time(self, column: str) -> datetime | None:
        """A time column that may be null."""
        return None if self.row[column] is None else self.time(column)

    def fraction(self, column: str) -> float | None:
        """A progress fraction, 0 to 1, or null."""
        value = self.row[column]
        if value is None:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
            return float(value)
        self._flaw(column, value, "a fraction from 0 to 1")
        return None

    def status(self) -> JobStatus:
        """The status column (``failed`` when it holds no status)."""
        value = self.row["status"]
        try:
            return JobStatus(value)
        except ValueError:
            self._flaw("status", value, "a status")
            return JobStatus.FAILED


def set_aside_error(record: JobRecord, *, replaced: bool = False) -> str:
    """The error of a job set aside because of ``record.unreadable``.

    Each column and what was found there (``replaced``: by a schema upgrade, which stored a
    stand-in instead).
    """
    flaws = "; ".join(f"{column}: {flaw}" for column, flaw in record.unreadable.items())
    if replaced:
        return f"{SET_ASIDE} when the schema was upgraded ({flaws}; each replaced by a stand-in)"
    return f"{SET_ASIDE} ({flaws}); correct the row, then retry the job"


def _policy(stored: Any) -> RetryPolicy:
    """The stored retry policy.

    The defaults for one that does not fit (a forged or corrupt row must not stop the queue: its
    params are still checked before anything runs).
    """
    try:
        return RetryPolicy(**stored)
    except TypeError:  # not a mapping, unknown keys, UnreadableJSON
        return RetryPolicy()


@functools.lru_cache(maxsize=256)  # most jobs of a queue share a handful of policies
def _policy_from_text(text: str, load: Decode) -> RetryPolicy:
    return _policy(decode_json(load, text))


def _stored_policy(stored: Any, load: Decode) -> RetryPolicy:
    """The policy column: decoded once per distinct text (a frozen record, safe to share)."""
    if isinstance(stored, str):
        return _policy_from_text(stored, load)
    return _policy(decode_json(load, stored))


#: A stored status by its text (an unknown one raises in ``JobStatus()``).
_STATUSES = {status.value: status for status in JobStatus}

#: What decoding a column that holds something else raises (``int("x")``, a year out of
#: range, ``"text".astimezone``, an unknown status).
_DECODE_ERRORS = (TypeError, ValueError, OverflowError, OSError, AttributeError)


def record_from_row(row: Row, time: Decode, load: Decode) -> JobRecord:
    """A ``jobkit_jobs`` row as a :class:`JobRecord`.

    ``time`` and ``load`` decode the backend's time and JSON columns. Never raises for what a
    column holds (see the module's docstring).

    The hot path (every claim reads its rows) builds the record at once and checks its types
    with a few identity tests; only a row that fails them is read column by column.
    """
    try:
        record = JobRecord(
            id=str(row["id"]),
            name=row["name"],
            method=row["method"],
            params=decode_json(load, row["params"]),
            status=_STATUSES.get(row["status"]) or JobStatus(row["status"]),
            priority=row["priority"],
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            result=None if row["result"] is None else decode_json(load, row["result"]),
            error=row["error"],
            created_at=time(row["created_at"]),
            available_at=time(row["available_at"]),
            started_at=time(row["started_at"]),
            finished_at=time(row["finished_at"]),
            policy=_stored_policy(row["policy"], load),
            worker_id=row["worker_id"],
            lease_expires_at=time(row["lease_expires_at"]),
            progress=row["progress"],
            progress_message=row["progress_message"],
            crashes=row["crashes"],
            max_crashes=row["max_crashes"],
            queue=row["queue"],
            unique_key=row["unique_key"],
        )
    except _DECODE_ERRORS:
        return _read_carefully(row, time, load)
    return record if _well_typed(record) else _read_carefully(row, time, load)


def _well_typed(record: JobRecord) -> bool:
    """Whether every field of a record built straight from a row holds its type.

    The times were decoded already: a stored value that is no time raised.
    """
    progress = record.progress
    return (
        type(record.priority) is int and type(record.attempts) is int
        and type(record.max_attempts) is int and type(record.crashes) is int
        and type(record.max_crashes) is int
        and type(record.name) is str and type(record.method) is str
        and type(record.queue) is str
        and (record.unique_key is None or type(record.unique_key) is str)
        and (record.error is None or type(record.error) is str)
        and (record.worker_id is None or type(record.worker_id) is str)
        and (record.progress_message is None or type(record.progress_message) is str)
        and (progress is None or (type(progress) is float and 0.0 <= progress <= 1.0))
        and record.created_at is not None and record.available_at is not None
    )


def _read_carefully(row: Row, time: Decode, load: Decode) -> JobRecord:
    """:func:`record_from_row` column by column, each unreadable one given a stand-in."""
    read = RowReader(row, time)
    record = JobRecord(
        id=str(row["id"]),
        name=read.text("name"),
        method=read.text("method"),
        params=decode_json(load, row["params"]),  # unreadable params fail the job when it runs
        status=read.status(),
        priority=read.integer("priority"),
        attempts=read.integer("attempts"),
        max_attempts=read.integer("max_attempts"),
        result=None if row["result"] is None else decode_json(load, row["result"]),
        error=read.optional_text("error"),
        created_at=read.time("created_at"),
        available_at=read.time("available_at"),
        started_at=read.optional_time("started_at"),
        finished_at=read.optional_time("finished_at"),
        policy=_stored_policy(row["policy"], load),
        worker_id=read.optional_text("worker_id"),
        lease_expires_at=read.optional_time("lease_expires_at"),
        progress=read.fraction("progress"),
        progress_message=read.optional_text("progress_message"),
        crashes=read.integer("crashes"),
        max_crashes=read.integer("max_crashes", 3),
        queue=read.text("queue", DEFAULT_QUEUE),
        unique_key=read.optional_text("unique_key"),
    )
    return attrs.evolve(record, unreadable=read.unreadable) if read.unreadable else record


#: The columns the ``complete`` query writes; it leaves every other column as the claim read it.
COMPLETION_COLUMNS = frozenset(
    {"status", "result", "error", "finished_at", "worker_id", "lease_expires_at"}
)


class Claimed(NamedTuple):
    """A claimed job's record and the row it was decoded from, as the driver gave it."""

    record: JobRecord
    row: Row


def claimed(record: JobRecord, row: Row) -> Claimed | None:
    """What :func:`record_after_completion` needs of a claimed job; ``None`` for a flawed row."""
    return None if record.unreadable else Claimed(record, row)


def _columns_and_values(row: Any) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """A row's column names and values, in order (``sqlite3.Row`` or a mapping)."""
    if isinstance(row, dict):
        return tuple(row), tuple(row.values())
    return tuple(row.keys()), tuple(row)


#: The columns :func:`record_after_completion` decodes from the completed row: the ones the
#: completion wrote, and the params (the claim's are the job's, which it may have changed: a
#: driver that decodes JSON itself hands the job the claimed row's own).
_DECODED_AGAIN = COMPLETION_COLUMNS | {"params"}


@functools.lru_cache(maxsize=16)  # one per schema a process meets
def _kept_picker(columns: tuple[str, ...]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """What picks the values of the columns the record keeps from the claim out of a row's."""
    return operator.itemgetter(*(i for i, column in enumerate(columns)
                                 if column not in _DECODED_AGAIN))


def record_after_completion(row: Row, claim: Claimed, time: Decode, load: Decode
                            ) -> JobRecord | None:
    """The record of a row the ``complete`` query returned, built from its claim's record.

    Only when the row holds, in every column the completion leaves alone but the params, what
    it held when it was claimed (a job's progress, say, changes that): those fields are the
    claim's, decoded once already; the columns the completion wrote are decoded from ``row``,
    and the params again (the claim's are the job's, which it may have changed). The record is
    then the one :func:`record_from_row` gives. ``None`` when it cannot be built so: decode
    the row.
    """
    columns, values = _columns_and_values(row)
    claimed_columns, claimed_values = _columns_and_values(claim.row)
    if columns != claimed_columns:
        return None
    pick = _kept_picker(columns)
    status = _STATUSES.get(row["status"])
    if status is None or pick(values) != pick(claimed_values):
        return None
    old = claim.record
    try:
        finished_at = time(row["finished_at"])
        lease_expires_at = time(row["lease_expires_at"])
    except _DECODE_ERRORS:
        return None
    error, worker_id = row["error"], row["worker_id"]
    if not ((error is None or type(error) is str) and (worker_id is None or type(worker_id) is str)
            and (finished_at is None or isinstance(finished_at, datetime))
            and (lease_expires_at is None or isinstance(lease_expires_at, datetime))):
        return None
    return completed_record(
        old, decode_json(load, row["params"]), status,
        None if row["result"] is None else decode_json(load, row["result"]),
        error, finished_at, worker_id, lease_expires_at,
    )


def completed_record(
    old: JobRecord,
    params: Any,
    status: JobStatus,
    result: Any,
    error: str | None,
    finished_at: datetime | None,
    worker_id: str | None,
    lease_expires_at: datetime | None,
) -> JobRecord:
    """The record of a claimed job (``old``) once a completion wrote the other values given.

    Every field the completion leaves alone is ``old``'s (queue and unique key included);
    ``params`` are the job's own copy (the claim's may have been changed by the job).
    """
    return JobRecord(
        id=old.id,
        name=old.name,
        method=old.method,
        params=params,
        status=status,
        priority=old.priority,
        attempts=old.attempts,
        max_attempts=old.max_attempts,
        result=result,
        error=error,
        created_at=old.created_at,
        available_at=old.available_at,
        started_at=old.started_at,
        finished_at=finished_at,
        policy=old.policy,
        worker_id=worker_id,
        lease_expires_at=lease_expires_at,
        progress=old.progress,
        progress_message=old.progress_message,
        crashes=old.crashes,
        max_crashes=old.max_crashes,
        queue=old.queue,
        unique_key=old.unique_key,
    )


def attempt_from_row(row: Row, time: Decode) -> Attempt:
    """A ``jobkit_attempts`` row as an :class:`Attempt`; never raises, like the records' reader."""
    read = RowReader(row, time)
    outcome = None
    if row["outcome"] is not None:
        try:
            outcome = AttemptOutcome(row["outcome"])
        except ValueError:
            read.unreadable["outcome"] = f"{shown(row['outcome'])} is not an outcome"
    return Attempt(
        job_id=str(row["job_id"]),
        attempt=read.integer("attempt"),
        worker_id=read.optional_text("worker_id"),
        started_at=read.time("started_at"),
        finished_at=read.optional_time("finished_at"),
        outcome=outcome,
        error=read.optional_text("error"),
        traceback=read.optional_text("traceback"),
        unreadable=read.unreadable,
    )
