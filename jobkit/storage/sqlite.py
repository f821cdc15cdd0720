"""The embedded default job store: one SQLite file in WAL mode.

Every write is one ``BEGIN IMMEDIATE`` transaction, so two workers (threads or processes) never
claim the same job. Each thread gets its own connection; the SQL lives in ``sqlite.sql``.
"""

from __future__ import annotations

import builtins
import functools
import itertools
import json
import operator
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from jobkit.exceptions import ConfigError, JobNotFoundInStorage, StorageError
from jobkit.flow import EVERY_QUEUE, Flow, Limit
from jobkit.records import (
    Attempt,
    AttemptOutcome,
    JobRecord,
    JobStatus,
    Lease,
    NewJob,
    decode_json,
)
from jobkit.storage.capabilities import NeedsUpkeep, SignalsEnds, WakesWorkers
from jobkit.storage.filewatch import FileWatch, watch
from jobkit.storage.flow_claim import Candidate, Exclusions, Usage, claim_limited, usage
from jobkit.storage.rows import COMPLETION_COLUMNS, Claimed, completed_record, job_key
from jobkit.storage.sql import fence_of, new_record
from jobkit.storage.sql_workflows import SQLWorkflows
from jobkit.storage.sqlite_file import (
    SQLiteFile,
    attempt_of_row,
    is_busy,
    job_of_row,
    load_json,
    queries,
    stamp,
    to_epoch,
)
from jobkit.storage.through import EnqueuesThrough

T = TypeVar("T")

#: ``scheme:///path``: the registry chose the class by the scheme (``sqlite``, or the scheme a
#: subclass is registered under); the rest names the file.
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):///(?P<path>.*)\Z", re.DOTALL)


def _scheme_and_path(url: str) -> tuple[str, str]:
    """``("sqlite", "rel/path.db")`` for ``sqlite:///rel/path.db``; ``("", "")`` for no file."""
    found = _URL.match(url)
    return (found["scheme"], found["path"]) if found else ("", "")


#: The columns in which the jobs of one ``enqueue_batch`` statement are alike.
_ALIKE = ("name", "method", "priority", "max_attempts", "max_crashes", "policy", "available_at",
          "queue")


def _alike(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(row[column] for column in _ALIKE)


def _batch_insert(batch: builtins.list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The INSERT of a run of alike jobs and its parameters.

    The params' texts alone when none holds a secret (the common, faster case), else with their
    masked texts.
    """
    if all(row["params_masked"] is None for row in batch):
        texts: builtins.list[Any] = [row["params"] for row in batch]
        name = "enqueue_batch"
    else:
        texts = [(row["params"], row["params_masked"]) for row in batch]
        name = "enqueue_batch_masked"
    return queries()[name], {**batch[0], "params": json.dumps(texts, ensure_ascii=False)}


def _insert_rows(conn: sqlite3.Connection | sqlite3.Cursor,
                 rows: builtins.list[dict[str, Any]]) -> builtins.list[int]:
    """Insert the rows (``now`` given, no unique key) in one statement per run alike; the ids."""
    keys: builtins.list[int] = []
    for _, alike in itertools.groupby(rows, key=_alike):
        batch = builtins.list(alike)
        conn.execute(*_batch_insert(batch))
        # AUTOINCREMENT under our write lock: the ids follow each other up to the last
        (last,) = conn.execute("SELECT last_insert_rowid()").fetchone()
        keys.extend(range(last - len(batch) + 1, last + 1))
    return keys


def _records(keys: builtins.list[int], jobs: builtins.list[NewJob],
             rows: builtins.list[dict[str, Any]]) -> builtins.list[JobRecord]:
    """The records of ``jobs`` just inserted as ``rows`` (one ``now`` for all) under ``keys``."""
    now = stamp(rows[0]["now"])
    return [
        new_record(
            key,
            job,
            row["params"],
            now,
            now if row["available_at"] is None else stamp(row["available_at"]),
            json.loads,
        )
        for key, job, row in zip(keys, jobs, rows, strict=True)
    ]


#: The ``complete`` query of ``sqlite.sql`` for a row that still holds what its claim read:
#: ``{columns}`` are the columns the completion leaves alone (the params included, which the
#: record is decoded from), compared as one row value with ``IS`` (NULL matches NULL).
_COMPLETE_UNCHANGED = """
UPDATE jobkit_jobs
SET status = 'completed', result = ?, error = NULL, finished_at = ?,
    worker_id = NULL, lease_expires_at = NULL
WHERE id = ? AND status = 'running' AND worker_id = ? AND attempts = ?
  AND ({columns}) IS ({values})
"""


@functools.lru_cache(maxsize=16)  # one per schema a process meets
def _unchanged_completion(columns: tuple[str, ...]
                          ) -> tuple[str, Callable[[tuple[Any, ...]], tuple[Any, ...]]]:
    """The completion of a row with these ``columns`` that compares the claim's values.

    The statement, and what picks the compared values out of the claimed row's, in order.
    """
    compared = [i for i, column in enumerate(columns)
                if column not in COMPLETION_COLUMNS and column not in ("id", "attempts")]
    sql = _COMPLETE_UNCHANGED.format(columns=", ".join(columns[i] for i in compared),
                                     values=", ".join("?" * len(compared)))
    return sql, operator.itemgetter(*compared)


#: Seconds between two looks at ``PRAGMA data_version`` while a worker waits for jobs.
WAKE_INTERVAL = 0.004

#: The first pause before the version is read again after a write to the ``-wal`` file, doubled
#: up to :data:`WAKE_INTERVAL` while the commit is not visible yet.
FIRST_PAUSE = 0.0005


class SQLiteStorage(SQLiteFile, WakesWorkers, SignalsEnds, NeedsUpkeep, SQLWorkflows,
                    EnqueuesThrough):
    """Jobs in one SQLite file: ``sqlite:///relative.db`` or ``sqlite:////absolute/path.db``.

    Safe to share between threads (one connection per thread) and between processes (WAL mode,
    ``BEGIN IMMEDIATE`` writes, ``busy_timeout`` plus a bounded retry). It is never pickled: a
    child process opens it again from :attr:`url`. Every driver error is raised as
    ``StorageError`` naming the operation and the file.

    A job's ``worker_id`` and ``lease_expires_at`` are set only while it is ``running``. A
    successful completion and a manual :meth:`retry` clear ``error``; a scheduled retry keeps it.
    """

    scheme = "sqlite"
    #: See :attr:`SQLWorkflows._results_as_text`: a JSON column is read as its text.
    _results_as_text = True

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteStorage:
        """Open ``sqlite:///rel/path.db`` or ``sqlite:////abs/path.db``; the folder is created.

        A relative path is relative to the working directory. ``options`` go to the constructor,
        but for ``durability`` (jobs.yaml's): ``"full"`` means ``synchronous="FULL"``.
        """
        scheme, path = _scheme_and_path(url)
        if not path:
            raise ConfigError(
                f"storage: {url!r} is not a SQLite URL like {scheme or cls.scheme}:///jobkit.db "
                f"(or {scheme or cls.scheme}:////absolute/path/jobkit.db)"
            )
        if options.pop("durability", "normal") == "full":
            options["synchronous"] = "FULL"
        store = cls(path, **options)
        store._scheme = scheme  # a subclass registered as acme:// reopens as acme://
        return store

    @property
    def url(self) -> str:
        """The URL that opens this store again (absolute), e.g. in a child process."""
        return f"{self._scheme}:///{self.path.as_posix()}"

    def __repr__(self) -> str:
        return f"SQLiteStorage({str(self.path)!r})"

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError(
            f"{self!r} cannot be pickled; open it again in the other process with "
            f"SQLiteStorage.from_url({self.url!r})"
        )

    def _complete_claimed(self, conn: sqlite3.Connection, claim: Claimed,
                          params: Mapping[str, Any]) -> JobRecord | None:
        """See :meth:`SQLStorage._complete_claimed`: one UPDATE that compares the claim's row.

        The row is compared in the statement itself (:func:`_unchanged_completion`), and the
        completed row is not returned: SQLite's ``RETURNING *`` cost about 10 us of CPU per
        job, and the record is the claim's with the values the statement wrote.
        """
        row: sqlite3.Row = claim.row  # type: ignore[assignment]  # this store's claims
        sql, pick = _unchanged_completion(tuple(row.keys()))
        now = params["now"]
        cursor = conn.execute(sql, (params["result"], now, params["job_id"],
                                    params["worker_id"], params["attempt"], *pick(tuple(row))))
        if cursor.rowcount != 1:
            return None
        conn.execute(queries()["close_attempt"], params)
        stamped = self._stamped
        if stamped[0] != now:  # the completions of one commit share their time
            stamped = self._stamped = (now, stamp(now))
        result = params["result"]
        return completed_record(
            claim.record, decode_json(load_json, row["params"]), JobStatus.COMPLETED,
            None if result is None else decode_json(load_json, result), None, stamped[1],
            None, None,
        )

    def _may_be_waited_for(self, claim: Claimed) -> bool:
        """See :meth:`SQLStorage._may_be_waited_for`: the claimed row's ``has_children``.

        A link stored after the claim sets it (a trigger on ``jobkit_job_parents``), and the
        completion compares every such column: it then falls back to the fenced ``complete``,
        which looks the children up.
        """
        row: sqlite3.Row = claim.row  # type: ignore[assignment]  # this store's claims
        return bool(row["has_children"])

    #: The last completion time bound and its datetime (see :meth:`_complete_claimed`).
    _stamped: tuple[Any, datetime] = (None, stamp(0.0))

    def _update_and_close(self, conn: sqlite3.Connection, name: str,
                          params: Mapping[str, Any]) -> Any:
        """See :meth:`SQLStorage._update_and_close` (two statements)."""
        row = self._one(conn, name, params)
        if row is not None:
            conn.execute(queries()["close_attempt"], params)
        return row

    # -- writes of the app ---------------------------------------------------------------------

    def _enqueue(self, job: NewJob) -> JobRecord:
        """Store a validated job as ``pending`` and return its record with the new id."""
        if job.unique_key is not None:
            return self.enqueue_unique([job])[0][0]
        return self._insert([job], f"enqueue job {job.name!r}")[0]

    def _enqueue_many(self, jobs: builtins.list[NewJob]) -> builtins.list[JobRecord]:
        """Store the jobs in one transaction (all or nothing), in order; their records."""
        if any(job.unique_key is not None for job in jobs):
            return [record for record, _ in self.enqueue_unique(jobs)]
        return self._insert(jobs, f"enqueue {len(jobs)} jobs") if jobs else []

    def _unique_holder_in(self, conn: sqlite3.Connection, unique_key: str,
                          within: float | None, now: Any) -> JobRecord | None:
        """See :meth:`SQLStorage._unique_holder_in` (``BEGIN IMMEDIATE`` is the lock)."""
        row = conn.execute(queries()["unique_holder"], {
            "unique_key": unique_key, "within": within, "now": now}).fetchone()
        return None if row is None else job_of_row(row)

    def _insert_in(self, conn: sqlite3.Connection, job: NewJob, row: dict[str, Any],
                   now: Any) -> JobRecord:
        """See :meth:`SQLStorage._insert_in`."""
        key = conn.execute(queries()["enqueue"], {**row, "now": now}).lastrowid
        assert key is not None  # an INSERT that returned made its row
        available = now if row["available_at"] is None else row["available_at"]
        return new_record(key, job, row["params"], stamp(now), stamp(available), json.loads)

    def _insert_many_in(self, conn: sqlite3.Connection, jobs: builtins.list[NewJob],
                        rows: builtins.list[dict[str, Any]],
                        now: Any) -> builtins.list[JobRecord]:
        """See :meth:`SQLWorkflows._insert_many_in`: one statement per run of alike jobs."""
        if any(row["unique_key"] is not None for row in rows):
            return super()._insert_many_in(conn, jobs, rows, now)
        for row in rows:
            row["now"] = now
        created = stamp(now)
        return [new_record(key, job, row["params"], created,
                           created if row["available_at"] is None else stamp(row["available_at"]),
                           json.loads)
                for key, job, row in zip(_insert_rows(conn, rows), jobs, rows, strict=True)]

    def _insert(self, jobs: builtins.list[NewJob], operation: str) -> builtins.list[JobRecord]:
        """Insert ``jobs`` and build their records from what was inserted.

        One statement for one job, its own transaction; the rows are not read back.
        """
        rows = [self._new_job(job) for job in jobs]
        keys = self._transaction(operation, lambda conn: self._insert_now(conn, rows),
                                 write=None if len(rows) == 1 else True)
        return _records(keys, jobs, rows)

    def _insert_now(self, db: sqlite3.Connection | sqlite3.Cursor,
                    rows: builtins.list[dict[str, Any]]) -> builtins.list[int]:
        """Insert ``rows`` (no unique key) stamped with one ``now`` in ``db``'s transaction; ids."""
        now = to_epoch(self.now())
        for row in rows:
            row["now"] = now
        if len(rows) == 1:
            # a statement without result rows runs to its end, and commits, in execute;
            # the cursor keeps the id it inserted (not the connection's, which may move on)
            key = db.execute(queries()["enqueue"], rows[0]).lastrowid
            assert key is not None  # an INSERT that returned made its row
            return [key]
        return _insert_rows(db, rows)

    def accepts(self, connection: object) -> bool:
        """See :meth:`EnqueuesThrough.accepts`: a ``sqlite3.Connection``."""
        return isinstance(connection, sqlite3.Connection)

    @property
    def connection_needed(self) -> str:
        """See :attr:`EnqueuesThrough.connection_needed`."""
        return f"the SQLite store {self.path} needs a sqlite3.Connection to that file"

    def enqueue_through(self, connection: Any,
                        jobs: builtins.list[NewJob]) -> builtins.list[JobRecord]:
        """See :meth:`EnqueuesThrough.enqueue_through`: checked to be this very file."""
        cursor = connection.cursor()
        cursor.row_factory = None  # the caller's row factory aside: plain tuples
        try:
            self._check_same_file(cursor)
            rows = [self._new_job(job) for job in jobs]
            keys = self._insert_now(cursor, rows)
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite storage {self.path}: enqueue {len(jobs)} job(s) "
                               f"through the caller's connection failed: {exc}") from exc
        finally:
            cursor.close()
        return _records(keys, jobs, rows)

    def _check_same_file(self, cursor: sqlite3.Cursor) -> None:
        """``ConfigError`` naming both paths when ``cursor``'s main database is another file."""
        main = [row[2] for row in cursor.execute("PRAGMA database_list") if row[1] == "main"]
        path = main[0] if main else ""
        try:
            same = bool(path) and os.path.samefile(path, self.path)
        except OSError:
            same = False
        if not same:
            raise ConfigError(errors=[
                f"call: connection: the connection is to {path or 'an in-memory database'!s}, "
                f"not to the store's file {self.path}"])

    def _cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a pending, retrying or running job (see :meth:`Storage.cancel`)."""
        key = job_key(job_id)
        if key is None:
            raise JobNotFoundInStorage(job_id)

        def work(conn: sqlite3.Connection) -> JobRecord | None:
            now = to_epoch(self.now())
            row = self._cancel_in(conn, key, now)
            if row is None:
                if self._one(conn, "exists", {"job_id": key}) is None:
                    raise JobNotFoundInStorage(job_id)
                return None
            self._job_ended_in(conn, key, now)
            return job_of_row(row)

        return self._transaction(f"cancel job {job_id}", work)

    def _cancel_in(self, conn: sqlite3.Connection, key: int, now: Any) -> Any:
        """Cancel the job if it has not ended, its attempt closed; its row or ``None``.

        Inside the caller's transaction; the caller settles what waits for it.
        """
        row = self._one(conn, "cancel", {"job_id": key, "now": now})
        if row is not None:
            conn.execute(
                queries()["close_attempt"],
                {"job_id": key, "now": now, "outcome": AttemptOutcome.CANCELLED.value,
                 "error": None, "traceback": None},
            )
        return row

    def _job_ended_in(self, conn: sqlite3.Connection, key: int, now: Any) -> None:
        """See :meth:`SQLStorage._job_ended_in`: its blocked children settled (workflows)."""
        self._settle_children_in(conn, key, now)

    def _workflow_sql(self) -> Mapping[str, str]:
        """See :meth:`SQLWorkflows._workflow_sql`."""
        return queries()

    def _writing(self, operation: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """See :meth:`SQLWorkflows._writing`."""
        return self._transaction(operation, work)

    def _reading(self, operation: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """See :meth:`SQLWorkflows._reading`."""
        return self._transaction(operation, work, write=False)

    def _retry(self, job_id: str) -> JobRecord | None:
        """Put a ``failed`` or ``cancelled`` job back to ``pending``, available now.

        Its error is cleared and ``max_attempts`` raised to allow one more attempt if needed.
        ``None`` for other statuses; ``JobNotFoundInStorage`` for an unknown id. A workflow's
        step whose parents have not all completed goes back to ``blocked`` instead, and the
        steps a failure of it cancelled wait again (capability ``workflows``).
        """
        key = job_key(job_id)
        if key is None:
            raise JobNotFoundInStorage(job_id)

        def work(conn: sqlite3.Connection) -> JobRecord | None:
            now = to_epoch(self.now())
            current = self._one(conn, "get", {"job_id": key})
            self._check_retry_in(conn, None if current is None else job_of_row(current), now)
            row = self._one(conn, "retry", {"job_id": key, "now": now})
            if row is None:
                if self._one(conn, "exists", {"job_id": key}) is None:
                    raise JobNotFoundInStorage(job_id)
                return None
            return job_of_row(self._retried_in(conn, key, row))

        return self._transaction(f"retry job {job_id}", work)

    # -- writes of the worker ------------------------------------------------------------------

    def _nothing_to_claim(self, worker_id: str, limit: int, flow: Flow = EVERY_QUEUE) -> bool:
        """See :meth:`SQLStorage._nothing_to_claim`: :meth:`_idle_and_nothing_due`."""
        return limit < 1 or self._idle_and_nothing_due(worker_id, flow)

    def _bind_queues(self, flow: Flow) -> Any:
        """``flow``'s queues as a JSON array (``json_each`` reads it), or ``None``."""
        return None if flow.queues is None else json.dumps(builtins.list(flow.queues))

    def _claimed(self, found: bool) -> None:
        """Remember whether this thread's last claim found a job (then it is busy)."""
        self._local.busy = found

    def _idle_and_nothing_due(self, worker_id: str, flow: Flow) -> bool:
        """Whether this thread's last claim found nothing and no job is due now.

        A read-only look, which keeps idle pollers off the write lock. A thread whose last claim
        found a job is busy and most likely finds another: it claims at once. One whose last
        claim found every due job held back by its limits looks no further until another
        connection commits or a rate window frees a place (:meth:`_still_held`).
        """
        if getattr(self._local, "busy", False):
            return False
        sql = queries()
        held = getattr(self._local, "held", None)
        self._local.held = None

        def due(conn: sqlite3.Connection) -> bool:
            # what wait_for_jobs compares with: a commit after this look wakes it at once
            self._local.seen = conn.execute("PRAGMA data_version").fetchone()[0]
            if held is not None and self._still_held(held, flow, conn):
                self._local.held = held
                return False
            look = {"now": to_epoch(self.now()), "queues": self._bind_queues(flow)}
            return bool(conn.execute(sql["has_due_job"], look).fetchall())

        operation = f"claim a job for worker {worker_id}"
        return not self._transaction(operation, due, write=False)

    def _still_held(self, held: tuple[Any, int, int, float | None], flow: Flow,
                    conn: sqlite3.Connection) -> bool:
        """Whether the limits still hold back every due job (:meth:`SQLiteLimited.held`).

        So they do while nothing was written since, by another connection (``data_version``)
        or by this one (its ``total_changes``: it may have ended a job), and the first rate
        window to free a place has not ended.
        """
        queues, version, changes, until = held
        return (queues == self._bind_queues(flow) and version == self._local.seen
                and changes == conn.total_changes
                and (until is None or to_epoch(self.now()) < until))

    def _claim_in(
        self, conn: sqlite3.Connection, worker_id: str, lease_seconds: float,
        flow: Flow = EVERY_QUEUE,
    ) -> JobRecord | None:
        """:meth:`claim`'s write, inside the caller's transaction."""
        claimed = self._claim_many_in(conn, worker_id, lease_seconds, 1, flow)
        return claimed[0] if claimed else None

    def _claim_many_in(
        self, conn: sqlite3.Connection, worker_id: str, lease_seconds: float, limit: int,
        flow: Flow = EVERY_QUEUE,
    ) -> builtins.list[JobRecord]:
        """Up to ``limit`` jobs claimed in one statement, their attempts opened in one more."""
        now = self.now()
        epoch = to_epoch(now)
        params = {"worker_id": worker_id, "now": epoch,
                  "lease_expires_at": to_epoch(now + timedelta(seconds=lease_seconds)),
                  "queues": self._bind_queues(flow)}
        # what wait_for_jobs compares with, as for the read-only look
        self._local.seen = conn.execute("PRAGMA data_version").fetchone()[0]
        if flow.limits:
            limited = SQLiteLimited(self, conn, params)
            claimed = claim_limited(limited, flow, limit, now)
        else:
            claimed = []
            while len(claimed) < limit:  # again only when rows nobody can read were set aside
                rows = conn.execute(
                    queries()["claim"], {**params, "limit": limit - len(claimed)}
                ).fetchall()
                readable = self._opened(conn, rows, params)
                claimed += readable
                if len(readable) == len(rows):  # nothing set aside: all that was due
                    break
        claimed.sort(key=lambda job: (-job.priority, job.available_at, int(job.id)))
        return claimed

    def _opened(self, conn: sqlite3.Connection, rows: builtins.list[sqlite3.Row],
                params: Mapping[str, Any]) -> builtins.list[JobRecord]:
        """The jobs of the rows just claimed, their attempts opened; those that can be read."""
        if not rows:
            return []
        conn.executemany(
            queries()["open_attempt"],
            [{"job_id": row["id"], "attempt": row["attempts"], "worker_id": params["worker_id"],
              "now": params["now"]} for row in rows],
        )
        records = [job_of_row(row) for row in rows]
        for record, row in zip(records, rows, strict=True):
            self._remember_claim(record, row)
        return self._readable(conn, records)

    def limit_usage(self, limit: Limit) -> Usage:
        """What ``limit`` has used now, per key value (capability ``flow``); a read."""
        now = self.now()

        def work(conn: sqlite3.Connection) -> Usage:
            return usage(SQLiteLimited(self, conn, {}, prune=False), limit, now)

        return self._transaction(f"read the use of {limit}", work, write=False)

    def _set_aside_in(self, conn: sqlite3.Connection, key: int, error: str) -> None:
        """See :meth:`SQLStorage._set_aside_in`."""
        now = to_epoch(self.now())
        conn.execute(queries()["set_aside"], {"job_id": key, "error": error, "now": now})
        conn.execute(
            queries()["close_attempt"],
            {"job_id": key, "now": now, "outcome": AttemptOutcome.FAILED.value, "error": error,
             "traceback": None},
        )
        self._job_ended_in(conn, key, now)

    def wait_for_jobs(self, timeout: float, stop: threading.Event | None = None) -> None:
        """Block until another connection commits, ``timeout`` seconds pass or ``stop`` is set.

        A commit to the file means a job may be due.

        SQLite cannot notify. A commit by another connection changes ``PRAGMA data_version``,
        which touches only the shared WAL index: the wait ends when it differs from what this
        thread's last look for jobs saw (``seen``). On Linux the wait between two reads is on
        the ``-wal`` file, which every commit writes to (inotify, :mod:`jobkit.storage.filewatch`):
        no polling while nothing is written. A write is not yet a commit: the writer makes its
        frames visible in the WAL index after writing them, and no event says so. After a write
        the version is therefore read again after :data:`FIRST_PAUSE` seconds, then after pauses
        doubled up to :data:`WAKE_INTERVAL`, until it changes or the wait ends: a wake-up is
        never missed. Without inotify it is read every :data:`WAKE_INTERVAL` seconds throughout.
        """
        seen = getattr(self._local, "seen", None)  # as of this thread's last look for jobs
        self._local.seen = None
        self._wait_for_commit("wait for jobs", seen, time.monotonic() + timeout, stop)

    def wait_for_ends(self, timeout: float, stop: threading.Event | None = None
                      ) -> set[str] | None:
        """Block until another connection commits, ``timeout`` seconds pass or ``stop`` is set.

        Capability ``ends``: a commit may have ended a job, which one SQLite cannot say
        (always ``None``). Waits as :meth:`wait_for_jobs` does, from the version this thread's
        last wait for ends returned on; a thread's first call returns at once.
        """
        seen = getattr(self._local, "ends_seen", None)
        if seen is None:
            self._local.ends_seen = self._wait_for_commit("wait for job ends", None, 0.0, None)
        else:
            self._local.ends_seen = self._wait_for_commit(
                "wait for job ends", seen, time.monotonic() + timeout, stop)
        return None

    def _wait_for_commit(self, operation: str, seen: int | None, deadline: float,
                         stop: threading.Event | None) -> int | None:
        """Wait until ``PRAGMA data_version`` differs from ``seen``; the version read last.

        Until ``deadline`` (``time.monotonic()``) or ``stop``; ``None`` when it could not be
        read (busy: look again). ``seen`` ``None``: any write to the ``-wal`` file ends it.
        """
        try:
            conn = self._connection(operation)
            unknown = seen is None  # no look to compare with: any write may be a job's
            if seen is None:
                seen = conn.execute("PRAGMA data_version").fetchone()[0]
            wal = self._wal_watch()
            pause: float | None = None  # between two reads once a write was seen
            while not (stop is not None and stop.is_set()):
                version: int = conn.execute("PRAGMA data_version").fetchone()[0]
                if version != seen:
                    return version
                left = deadline - time.monotonic()
                if left <= 0:
                    return version
                if wal is None:
                    time.sleep(min(WAKE_INTERVAL, left))
                    continue
                # 0.1: how soon a stop is seen while nothing is written
                if wal.wait(min(0.1 if pause is None else pause, left)):
                    if unknown:
                        return version
                    pause = FIRST_PAUSE  # its commit is most likely visible at once
                elif pause is not None:
                    pause = min(2 * pause, WAKE_INTERVAL)
                if wal.closed:  # with the store: return
                    return version
            return seen
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):  # busy (a checkpoint): look for jobs now, no harm done
                raise self._error(operation, exc) from exc
        except sqlite3.Error as exc:
            raise self._error(operation, exc) from exc
        return None

    def _wal_watch(self) -> FileWatch | None:
        """This process's watch on the ``-wal`` file, made once.

        ``None`` where there is no inotify. The file exists while a connection is open, as this
        thread's is.
        """
        with self._connections_lock:
            if self._wal is None or self._wal[0] != os.getpid():
                # SQLite names the WAL after the real path (symlinks resolved)
                self._wal = (os.getpid(), watch(Path(f"{os.path.realpath(self.path)}-wal")))
            return self._wal[1]

    def _heartbeat(self, lease: Lease, lease_seconds: float) -> bool:
        """Extend the lease; ``False`` when it no longer owns the job."""
        # a heartbeat that waits as long as the lease is worthless: give up after a quarter of
        # it (StorageError) so the worker's monitor goes on checking timeouts and cancels. A
        # lease ended on purpose (lease_seconds <= 0: Storage.abandon, by the supervisor) waits
        # the full busy_timeout like any write: a budget <= 0 would fail at the first contention
        return self._fenced_update(
            f"heartbeat job {lease.job_id}", "heartbeat", lease,
            busy_budget=min(self._busy_timeout, lease_seconds / 4) if lease_seconds > 0 else None,
            lease_expires_at=to_epoch(self.now() + timedelta(seconds=lease_seconds)),
        )

    def _fenced_update(
        self, operation: str, name: str, lease: Lease, *, busy_budget: float | None = None,
        **params: Any,
    ) -> bool:
        fence = fence_of(lease)
        if fence is None:
            return False

        def work(conn: sqlite3.Connection) -> bool:
            return conn.execute(queries()[name], {**fence, **params}).rowcount == 1

        return self._transaction(operation, work, busy_budget=busy_budget)

    def _prune_candidates(self, status: JobStatus, finished_before: Any, after: int,
                          batch_size: int) -> builtins.list[int]:
        params = {"status": status.value, "finished_before": finished_before, "after": after,
                  "batch_size": batch_size}

        def read(conn: sqlite3.Connection) -> builtins.list[int]:
            return [row[0] for row in conn.execute(queries()["prune_candidates"], params)]

        return self._transaction("find finished jobs to prune", read, write=False)

    def _prune_ids(self, status: JobStatus, finished_before: Any,
                   ids: builtins.list[int]) -> int:
        params = {"status": status.value, "finished_before": finished_before,
                  "ids": json.dumps(ids)}

        def delete(conn: sqlite3.Connection) -> int:
            return conn.execute(queries()["prune_ids"], params).rowcount

        return self._transaction("prune finished jobs", delete)

    def _requeue_expired(self) -> builtins.list[JobRecord]:
        """Take back running jobs whose lease expired (see :meth:`Storage.requeue_expired`)."""

        def expired(conn: sqlite3.Connection) -> bool:
            now = {"now": to_epoch(self.now())}
            return bool(conn.execute(queries()["has_expired_lease"], now).fetchall())

        def work(conn: sqlite3.Connection) -> builtins.list[JobRecord]:
            params = {"now": to_epoch(self.now())}
            conn.execute(queries()["close_expired_attempts"], params)
            rows = conn.execute(queries()["requeue_expired"], params).fetchall()
            for row in rows:
                if row["status"] == JobStatus.FAILED.value:  # its last lease lost: it ended
                    self._job_ended_in(conn, row["id"], params["now"])
            return sorted((job_of_row(row) for row in rows), key=lambda record: int(record.id))

        if not self._transaction("look for expired leases", expired, write=False):
            return []
        return self._transaction("requeue expired leases", work)

    # -- reads -----------------------------------------------------------------------------

    def _get(self, job_id: str) -> JobRecord:
        """The job with this id. Raises ``JobNotFoundInStorage``."""
        key = job_key(job_id)
        if key is None:
            raise JobNotFoundInStorage(job_id)

        def work(conn: sqlite3.Connection) -> JobRecord:
            row = self._one(conn, "get", {"job_id": key})
            if row is None:
                raise JobNotFoundInStorage(job_id)
            return job_of_row(row)

        return self._transaction(f"get job {job_id}", work, write=False)

    def _attempts_of(self, job_id: str) -> builtins.list[Attempt]:
        """Every attempt of the job, oldest first. Raises ``JobNotFoundInStorage``."""
        key = job_key(job_id)
        if key is None:
            raise JobNotFoundInStorage(job_id)

        def work(conn: sqlite3.Connection) -> builtins.list[Attempt]:
            if self._one(conn, "exists", {"job_id": key}) is None:
                raise JobNotFoundInStorage(job_id)
            rows = conn.execute(queries()["attempts"], {"job_id": key}).fetchall()
            return [attempt_of_row(row) for row in rows]

        return self._transaction(f"read the attempts of job {job_id}", work, write=False)

    def _list(
        self, status: JobStatus | None, name: str | None, limit: int, offset: int
    ) -> builtins.list[JobRecord]:
        """Jobs, newest first, filtered by status and job name."""
        query, params = _filtered("list", status, name)

        def work(conn: sqlite3.Connection) -> builtins.list[JobRecord]:
            rows = conn.execute(queries()[query], {**params, "limit": limit, "offset": offset})
            return [job_of_row(row) for row in rows.fetchall()]

        return self._transaction("list jobs", work, write=False)

    def _count(self, status: JobStatus | None, name: str | None) -> int:
        """How many jobs match the filter."""
        query, params = _filtered("count", status, name)

        def work(conn: sqlite3.Connection) -> int:
            total: int = conn.execute(queries()[query], params).fetchone()[0]
            return total

        return self._transaction("count jobs", work, write=False)


def _filtered(
    query: str, status: JobStatus | None, name: str | None
) -> tuple[str, dict[str, Any]]:
    """The section for a list/count query and its parameters.

    One section per filter set, so each can use its index.
    """
    params: dict[str, Any] = {}
    parts: builtins.list[str] = []
    if status is not None:
        params["status"] = JobStatus(status).value
        parts.append("status")
    if name is not None:
        params["name"] = name
        parts.append("name")
    return (f"{query}_by_{'_and_'.join(parts)}" if parts else query), params


class SQLiteLimited:
    """:class:`~jobkit.storage.flow_claim.LimitedClaim` in one SQLite claim transaction.

    ``BEGIN IMMEDIATE`` has made it the only writer: what it counts cannot change under it.
    """

    def __init__(self, store: SQLiteStorage, conn: sqlite3.Connection,
                 params: Mapping[str, Any], *, prune: bool = True) -> None:
        self.store, self.conn, self.params, self.prune = store, conn, params, prune

    def running_jobs(self) -> builtins.list[tuple[str, str, Any]]:
        """``(name, queue, params)`` of every running job."""
        rows = self.conn.execute(queries()["running_jobs"]).fetchall()
        return [(row["name"], row["queue"], _loads(row["params"])) for row in rows]

    def recent_starts(self, low: str, high: str,
                      since: datetime) -> dict[str, tuple[int, datetime]]:
        """Starts after ``since`` by group name in ``[low, high)``; older ones forgotten."""
        bounds = {"low": low, "high": high, "since": to_epoch(since)}
        if self.prune:
            self.conn.execute(queries()["forget_flow_starts"], bounds)
        rows = self.conn.execute(queries()["flow_starts"], bounds).fetchall()
        return {row["limit_key"]: (row["n"], stamp(row["oldest"])) for row in rows}

    def candidates(self, flow: Flow, exclusions: Exclusions,
                   count: int) -> builtins.list[Candidate]:
        """Due jobs of the flow's queues, none paused or excluded, in claim order."""
        names, queues, keys = exclusions.as_json()
        rows = self.conn.execute(queries()["claim_candidates"], {
            "now": self.params["now"], "queues": self.params["queues"], "ex_names": names,
            "ex_queues": queues, "ex_keys": keys, "limit": count}).fetchall()
        return [Candidate(row["id"], row["name"], row["queue"], _loads(row["params"]))
                for row in rows]

    def take(self, ids: builtins.list[int]) -> builtins.list[JobRecord]:
        """Claim these jobs; their readable records."""
        rows = self.conn.execute(queries()["claim_ids"],
                                 {**self.params, "ids": json.dumps(ids)}).fetchall()
        return self.store._opened(self.conn, rows, self.params)

    def add_starts(self, groups: builtins.list[str]) -> None:
        """Record a start now under each group name."""
        self.conn.executemany(queries()["add_flow_start"],
                              [{"limit_key": group, "now": self.params["now"]}
                               for group in groups])

    def held(self, until: datetime | None) -> None:
        """Let this thread's idle looks skip the write lock until a commit or ``until``."""
        self.store._local.held = (self.params["queues"], self.store._local.seen,
                                  self.conn.total_changes,
                                  None if until is None else to_epoch(until))


def _loads(text: Any) -> Any:
    """Stored params as Python; what cannot be decoded as it is (it limits as ``null``)."""
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return text
