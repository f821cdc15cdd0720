"""The shared job store: PostgreSQL, for workers on many machines (``jobkit[postgres]``).

Claims take the next due row with ``FOR UPDATE SKIP LOCKED``, so concurrent workers never wait
for each other nor take one job twice. Leases and due times are compared with the database's
clock (``now()``), so the clocks of the worker machines may drift. Each process keeps a psycopg 3
connection pool; broken connections (a restarted server, ``pg_terminate_backend``) are replaced
when next used, and a driver error surfaces as ``StorageError`` that the worker logs before it
tries again. Idle workers ``LISTEN`` for the ``NOTIFY`` of a job due now (sent by the enqueue
statement itself, or by a trigger for the other ways a job becomes due) instead of polling hard.
The SQL lives in ``postgres.sql``.
"""

from __future__ import annotations

import builtins
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from jobkit.exceptions import JobNotFoundInStorage, StorageError
from jobkit.flow import EVERY_QUEUE, Flow, Limit
from jobkit.records import Attempt, AttemptOutcome, JobRecord, JobStatus, Lease, NewJob
from jobkit.storage.capabilities import SignalsEnds, WakesWorkers
from jobkit.storage.flow_claim import Candidate, Exclusions, Usage, claim_limited, usage
from jobkit.storage.postgres_db import PostgresDatabase, attempt_of_row, job_of_row, queries
from jobkit.storage.postgres_insert import insert
from jobkit.storage.postgres_pool import redact, split_url
from jobkit.storage.rows import job_key
from jobkit.storage.sql import fence_of, new_record
from jobkit.storage.sql_workflows import SQLWorkflows
from jobkit.storage.through import EnqueuesThrough

if TYPE_CHECKING:
    import psycopg

T = TypeVar("T")

__all__ = ["PostgresStorage", "redact", "split_url"]


@functools.cache
def _closing(name: str) -> str:
    """The fenced update ``name`` and the close of the job's open attempt as one statement.

    One round trip instead of two: the attempt is closed only when the update's fence held, and the
    statement returns the updated row, or none.
    """
    named = queries()
    update = named[name].rstrip().rstrip(";")
    close = named["close_attempt"].rstrip().rstrip(";")
    assert close.endswith("finished_at IS NULL"), "postgres.sql: close_attempt changed shape"
    return (f"WITH done AS (\n{update}\n),\nclosed AS (\n{close}\n"
            f"    AND EXISTS (SELECT 1 FROM done)\n)\nSELECT * FROM done")


def tuple_row(cursor: Any) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """psycopg's ``tuple_row`` (rows as tuples), without importing psycopg with this module."""
    return tuple


def _inserted(job: NewJob, params: Mapping[str, Any], key: int, created_at: datetime,
              available_at: datetime) -> JobRecord:
    """The record of ``job``, just inserted with ``params`` (the ``enqueue`` query's).

    The server gave its id and times (aware, UTC), the rest is known (no read back of the
    whole row).
    """
    return new_record(key, job, params["params"], created_at, available_at, json.loads)


def _utc_row(row: Sequence[Any]) -> tuple[int, datetime, datetime]:
    """The id and times of an ``enqueue`` row read by psycopg (the times naive, in UTC)."""
    utc = timezone.utc
    return row[0], row[1].replace(tzinfo=utc), row[2].replace(tzinfo=utc)


class PostgresStorage(PostgresDatabase, WakesWorkers, SignalsEnds, SQLWorkflows,
                      EnqueuesThrough):
    """Jobs in a PostgreSQL database: ``postgresql://user:password@host:5432/dbname``.

    URL query options read by jobkit: ``pool_size`` (connections per process, default 4) and
    ``connect_timeout`` (seconds to wait for a connection, default 10); every other option goes to
    libpq (``sslmode=require``, ``application_name=...``). The schema is created and migrated on
    first use (and by ``jobkit migrate``). Without a ``clock``, times come from the database.
    """

    scheme = "postgresql"

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresStorage:
        """Open ``postgresql://user:password@host:port/dbname?pool_size=4``.

        ``durability`` is accepted and changes nothing: every commit is durable unless the server's
        own ``synchronous_commit`` says otherwise.
        """
        options.pop("durability", None)
        parts = urlsplit(url)
        if parts.scheme and parts.scheme not in ("postgresql", "postgres") and parts.netloc:
            # a subclass registered under a scheme of its own: libpq reads postgresql://, and
            # the store reopens (in a worker's child process) under the scheme it was given
            store = cls(urlunsplit(parts._replace(scheme="postgresql")), **options)
            store._url = url
            return store
        return cls(url, **options)

    @property
    def url(self) -> str:
        """The URL that opens this store again, e.g. in a child process."""
        return self._url

    def __repr__(self) -> str:
        return f"PostgresStorage({redact(self._url)!r})"

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError(f"{self!r} cannot be pickled; open it again with from_url(url)")

    def _update_and_close(self, cur: psycopg.Cursor[Any], name: str,
                          params: Mapping[str, Any]) -> Any:
        """See :meth:`SQLStorage._update_and_close` (one statement, as :func:`_closing` makes)."""
        cur.execute(_closing(name), params)
        return cur.fetchone()

    def _fenced_update(self, operation: str, name: str, lease: Lease, **params: Any) -> bool:
        fence = fence_of(lease)
        if fence is None:
            return False

        def work(cur: psycopg.Cursor[Any]) -> bool:
            cur.execute(queries()[name], {**fence, "now": self._now_param(), **params})
            return cur.rowcount == 1

        return self._transaction(operation, work, single=True)

    def _by_id(
        self, job_id: str, operation: str, work: Callable[[psycopg.Cursor[Any], int], T]
    ) -> T:
        """Run ``work(cur, key)`` for an existing job; ``JobNotFoundInStorage`` otherwise."""
        key = job_key(job_id)
        if key is None:
            raise JobNotFoundInStorage(job_id)
        return self._transaction(operation, lambda cur: work(cur, key))

    def _missing(self, cur: psycopg.Cursor[Any], key: int, job_id: str) -> None:
        if self._one(cur, "exists", {"job_id": key}) is None:
            raise JobNotFoundInStorage(job_id)

    # -- writes of the app ---------------------------------------------------------------------

    def _enqueue(self, job: NewJob) -> JobRecord:
        """Store a validated job as ``pending`` and return its record with the new id."""
        if job.unique_key is not None:
            return self.enqueue_unique([job])[0][0]
        params = self._new_job(job)
        params["now"] = self._now_param()

        def work(conn: psycopg.Connection[Any]) -> JobRecord:
            return _inserted(job, params, *insert(conn, queries()["enqueue"], params))

        return self._connected(f"enqueue job {job.name!r}", work)

    def _enqueue_many(self, jobs: builtins.list[NewJob]) -> builtins.list[JobRecord]:
        """Store the jobs in one pipelined transaction (all or nothing); their records, in order."""
        if not jobs:
            return []
        if any(job.unique_key is not None for job in jobs):
            return [record for record, _ in self.enqueue_unique(jobs)]
        rows = [self._new_job(job) for job in jobs]

        def work(cur: psycopg.Cursor[Any]) -> builtins.list[JobRecord]:
            return self._insert_many_in(cur, jobs, rows, self._now_param())

        return self._transaction(f"enqueue {len(jobs)} jobs", work)

    def accepts(self, connection: object) -> bool:
        """See :meth:`EnqueuesThrough.accepts`: a psycopg (3) ``Connection``, not an async one."""
        import psycopg

        return isinstance(connection, psycopg.Connection)

    @property
    def connection_needed(self) -> str:
        """See :attr:`EnqueuesThrough.connection_needed`."""
        return ("the PostgreSQL store needs a psycopg (3) connection (psycopg.Connection) to "
                "its database")

    def enqueue_through(self, connection: Any,
                        jobs: builtins.list[NewJob]) -> builtins.list[JobRecord]:
        """See :meth:`EnqueuesThrough.enqueue_through`: a psycopg (3) connection.

        The ``enqueue`` statement sends the ``NOTIFY`` of a job due now, in the caller's
        transaction: PostgreSQL delivers it at the caller's commit, and never after a rollback.
        """
        import psycopg

        rows = [self._new_job(job) for job in jobs]
        try:
            with connection.cursor() as cur:
                return self._insert_many_in(cur, jobs, rows, self._now_param())
        except psycopg.Error as exc:
            raise StorageError(f"{self._where()}: enqueue {len(jobs)} job(s) through the "
                               f"caller's connection failed: {exc}") from exc

    def _insert_many_in(self, cur: psycopg.Cursor[Any], jobs: builtins.list[NewJob],
                        rows: builtins.list[dict[str, Any]],
                        now: Any) -> builtins.list[JobRecord]:
        """See :meth:`SQLWorkflows._insert_many_in`: one pipelined ``executemany``."""
        factory = cur.row_factory
        cur.row_factory = tuple_row
        try:
            cur.executemany(queries()["enqueue"], [{**row, "now": now} for row in rows],
                            returning=True)
            stored = []
            while True:
                stored += cur.fetchall()  # one row per result set
                if not cur.nextset():
                    break
        finally:
            cur.row_factory = factory
        return [_inserted(job, row, *_utc_row(found))
                for job, row, found in zip(jobs, rows, stored, strict=True)]

    def _unique_holder_in(self, cur: psycopg.Cursor[Any], unique_key: str,
                          within: float | None, now: Any) -> JobRecord | None:
        """See :meth:`SQLStorage._unique_holder_in`: under an advisory lock of the key."""
        cur.execute(queries()["lock_unique"], {"unique_key": unique_key})
        row = self._one(cur, "unique_holder", {
            "unique_key": unique_key, "within": within, "now": now})
        return None if row is None else job_of_row(row)

    def _insert_in(self, cur: psycopg.Cursor[Any], job: NewJob, row: dict[str, Any],
                   now: Any) -> JobRecord:
        """See :meth:`SQLStorage._insert_in`."""
        found = self._one(cur, "enqueue", {**row, "now": now})  # a dict: the store's cursor
        return _inserted(job, row, *_utc_row(
            (found["id"], found["created_at"], found["available_at"])))

    def _cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a pending, retrying or running job (see :meth:`Storage.cancel`)."""

        def work(cur: psycopg.Cursor[Any], key: int) -> JobRecord | None:
            now = self._now_param()
            row = self._cancel_in(cur, key, now)
            if row is None:
                self._missing(cur, key, job_id)
                return None
            self._job_ended_in(cur, key, now)
            return job_of_row(row)

        return self._by_id(job_id, f"cancel job {job_id}", work)

    def _cancel_in(self, cur: psycopg.Cursor[Any], key: int, now: Any) -> Any:
        """Cancel the job if it has not ended, its attempt closed; its row or ``None``.

        Inside the caller's transaction, one statement (:func:`_closing`: the job's end and its
        attempt's have one time); the caller settles what waits for it.
        """
        return self._update_and_close(cur, "cancel", {
            "job_id": key, "now": now, "outcome": AttemptOutcome.CANCELLED.value,
            "error": None, "traceback": None})

    def _job_ended_in(self, cur: psycopg.Cursor[Any], key: int, now: Any) -> None:
        """See :meth:`SQLStorage._job_ended_in`: its blocked children settled (workflows)."""
        self._settle_children_in(cur, key, now)

    def _completed_in(self, cur: psycopg.Cursor[Any], keys: builtins.list[int],
                      now: Any) -> None:
        """See :meth:`SQLStorage._completed_in`: every child of the batch locked at once.

        In one id order (:meth:`SQLWorkflows._settle_completed_in`): two batches whose jobs
        share children crosswise wait for each other instead of deadlocking.
        """
        self._settle_completed_in(cur, keys, now)

    def _workflow_sql(self) -> Mapping[str, str]:
        """See :meth:`SQLWorkflows._workflow_sql`."""
        return queries()

    def _lock_parents_in(self, cur: psycopg.Cursor[Any], key: int) -> None:
        """See :meth:`SQLWorkflows._lock_parents_in`: ``FOR SHARE``, in id order."""
        cur.execute(queries()["lock_parents"], {"job_id": key})

    def _link_in(self, cur: psycopg.Cursor[Any], blocked: builtins.list[int],
                 links: builtins.list[dict[str, Any]],
                 edges: builtins.list[dict[str, Any]]) -> None:
        """See :meth:`SQLWorkflows._link_in`: one statement each, its columns as arrays.

        A group's 10,000 links went as 10,000 pipelined statements, twice as long.
        """
        if blocked:
            cur.execute(queries()["block_jobs"], {"job_ids": blocked})
        for name, rows in (("add_links", links), ("add_parents", edges)):
            if rows:
                cur.execute(queries()[name], {
                    column: [row[column] for row in rows] for column in rows[0]})

    def _writing(self, operation: str, work: Callable[[psycopg.Cursor[Any]], T]) -> T:
        """See :meth:`SQLWorkflows._writing`."""
        return self._transaction(operation, work)

    def _reading(self, operation: str, work: Callable[[psycopg.Cursor[Any]], T]) -> T:
        """See :meth:`SQLWorkflows._reading` (one snapshot: a transaction too)."""
        return self._transaction(operation, work)

    def _retry(self, job_id: str) -> JobRecord | None:
        """Put a ``failed`` or ``cancelled`` job back to ``pending`` (see :meth:`Storage.retry`).

        A workflow's step whose parents have not all completed goes back to ``blocked`` instead,
        and the steps a failure of it cancelled wait again (capability ``workflows``).
        """

        def work(cur: psycopg.Cursor[Any], key: int) -> JobRecord | None:
            current = self._one(cur, "get", {"job_id": key})
            now = self._now_param()
            self._check_retry_in(cur, None if current is None else job_of_row(current), now)
            row = self._one(cur, "retry", {"job_id": key, "now": now})
            if row is None:
                self._missing(cur, key, job_id)
                return None
            return job_of_row(self._retried_in(cur, key, row))

        return self._by_id(job_id, f"retry job {job_id}", work)

    # -- writes of the worker ------------------------------------------------------------------

    def _claim_in(
        self, cur: psycopg.Cursor[Any], worker_id: str, lease_seconds: float,
        flow: Flow = EVERY_QUEUE,
    ) -> JobRecord | None:
        """See :meth:`SQLStorage._claim_in` (``FOR UPDATE SKIP LOCKED``)."""
        params = {"worker_id": worker_id, "now": self._now_param(),
                  "lease_seconds": float(lease_seconds), "queues": self._bind_queues(flow)}
        while True:  # again only when a row nobody can read was set aside
            row = self._one(cur, "claim", params)  # it opens the job's attempt too
            if row is None:
                return None
            record = job_of_row(row)
            self._remember_claim(record, row)  # its completion's record is built from it
            if self._readable(cur, [record]):
                return record

    def _claim_many_in(
        self, cur: psycopg.Cursor[Any], worker_id: str, lease_seconds: float, limit: int,
        flow: Flow = EVERY_QUEUE,
    ) -> builtins.list[JobRecord]:
        """See :meth:`SQLStorage._claim_many_in`; under limits, one claim at a time.

        A claim under limits takes a transaction-level advisory lock first, so that what it
        counts cannot change under it; its times are the clock read after the lock (a
        transaction's ``now()`` is when it began, before it waited).
        """
        if not flow.limits:
            return super()._claim_many_in(cur, worker_id, lease_seconds, limit, flow)
        cur.execute(queries()["lock_flow"])
        now = self._clock_in(cur)
        params = {"worker_id": worker_id, "now": now, "lease_seconds": float(lease_seconds),
                  "queues": self._bind_queues(flow)}
        claimed = claim_limited(PostgresLimited(self, cur, params), flow, limit, now)
        claimed.sort(key=lambda job: (-job.priority, job.available_at, int(job.id)))
        return claimed

    def _clock_in(self, cur: psycopg.Cursor[Any]) -> datetime:
        """The store's clock: the server's now (not the transaction's start) or the given one."""
        return self._one(cur, "clock", {})["now"] if self._db_clock else self.now()

    def limit_usage(self, limit: Limit) -> Usage:
        """What ``limit`` has used now, per key value (capability ``flow``); a read."""

        def work(cur: psycopg.Cursor[Any]) -> Usage:
            now = self._clock_in(cur)
            return usage(PostgresLimited(self, cur, {}, prune=False), limit, now)

        return self._transaction(f"read the use of {limit}", work)

    def _opened(self, cur: psycopg.Cursor[Any], rows: builtins.list[Any]
                ) -> builtins.list[JobRecord]:
        """The jobs of rows just claimed (their attempts opened by the query); the readable."""
        records = [job_of_row(row) for row in rows]
        for record, row in zip(records, rows, strict=True):
            self._remember_claim(record, row)
        return self._readable(cur, records)

    def _set_aside_in(self, cur: psycopg.Cursor[Any], key: int, error: str) -> None:
        """See :meth:`SQLStorage._set_aside_in` (one statement, as :func:`_closing` makes)."""
        now = self._now_param()
        cur.execute(_closing("set_aside"), {
            "job_id": key, "now": now, "error": error,
            "outcome": AttemptOutcome.FAILED.value, "traceback": None})
        if cur.fetchone() is not None:
            self._job_ended_in(cur, key, now)

    def _heartbeat(self, lease: Lease, lease_seconds: float) -> bool:
        """Extend the lease; ``False`` when it no longer owns the job."""
        return self._fenced_update(
            f"heartbeat job {lease.job_id}", "heartbeat", lease,
            lease_seconds=float(lease_seconds),
        )

    def _prune_candidates(self, status: JobStatus, finished_before: Any, after: int,
                          batch_size: int) -> builtins.list[int]:
        params = {"status": status.value, "finished_before": finished_before, "after": after,
                  "batch_size": batch_size}

        def read(cur: psycopg.Cursor[Any]) -> builtins.list[int]:
            cur.execute(queries()["prune_candidates"], params)
            return [row["id"] for row in cur.fetchall()]

        return self._transaction("find finished jobs to prune", read, single=True)

    def _prune_ids(self, status: JobStatus, finished_before: Any,
                   ids: builtins.list[int]) -> int:
        params = {"status": status.value, "finished_before": finished_before, "ids": ids}

        def delete(cur: psycopg.Cursor[Any]) -> int:
            cur.execute(queries()["prune_ids"], params)
            return cur.rowcount

        return self._transaction("prune finished jobs", delete, single=True)

    def _requeue_expired(self) -> builtins.list[JobRecord]:
        """Take back running jobs whose lease expired (see :meth:`Storage.requeue_expired`)."""

        def work(cur: psycopg.Cursor[Any]) -> builtins.list[JobRecord]:
            now = {"now": self._now_param()}
            if self._one(cur, "has_expired_lease", now) is None:
                return []  # the common case: one cheap indexed read, no row locked
            cur.execute(queries()["requeue_expired"], now)
            rows = cur.fetchall()
            for row in rows:
                if row["status"] == JobStatus.FAILED.value:  # its last lease lost: it ended
                    self._job_ended_in(cur, row["id"], now["now"])
            return sorted((job_of_row(row) for row in rows), key=lambda r: int(r.id))

        return self._transaction("requeue expired leases", work)

    # -- reads -----------------------------------------------------------------------------

    def _get(self, job_id: str) -> JobRecord:
        """The job with this id. Raises ``JobNotFoundInStorage``."""

        def work(cur: psycopg.Cursor[Any], key: int) -> JobRecord:
            row = self._one(cur, "get", {"job_id": key})
            if row is None:
                raise JobNotFoundInStorage(job_id)
            return job_of_row(row)

        return self._by_id(job_id, f"get job {job_id}", work)

    def _attempts_of(self, job_id: str) -> builtins.list[Attempt]:
        """Every attempt of the job, oldest first. Raises ``JobNotFoundInStorage``."""

        def work(cur: psycopg.Cursor[Any], key: int) -> builtins.list[Attempt]:
            self._missing(cur, key, job_id)
            cur.execute(queries()["attempts"], {"job_id": key})
            return [attempt_of_row(row) for row in cur.fetchall()]

        return self._by_id(job_id, f"read the attempts of job {job_id}", work)

    def _list(
        self, status: JobStatus | None, name: str | None, limit: int, offset: int
    ) -> builtins.list[JobRecord]:
        """Jobs, newest first, filtered by status and job name."""
        where, params = _filter(status, name)
        query = (
            f"SELECT * FROM jobkit_jobs{where} ORDER BY id DESC LIMIT %(limit)s OFFSET %(offset)s"
        )

        def work(cur: psycopg.Cursor[Any]) -> builtins.list[JobRecord]:
            cur.execute(query.encode(), {**params, "limit": limit, "offset": offset})
            return [job_of_row(row) for row in cur.fetchall()]

        return self._transaction("list jobs", work)

    def _count(self, status: JobStatus | None, name: str | None) -> int:
        """How many jobs match the filter."""
        where, params = _filter(status, name)

        def work(cur: psycopg.Cursor[Any]) -> int:
            cur.execute(f"SELECT count(*) AS n FROM jobkit_jobs{where}".encode(), params)
            return int(cur.fetchone()["n"])  # type: ignore[index]

        return self._transaction("count jobs", work)

def _filter(status: JobStatus | None, name: str | None) -> tuple[str, dict[str, Any]]:
    """The WHERE clause of a list/count query (fixed text; values are bound) and its values."""
    clauses: builtins.list[str] = []
    params: dict[str, Any] = {}
    if status is not None:
        clauses.append("status = %(status)s")
        params["status"] = JobStatus(status).value
    if name is not None:
        clauses.append("name = %(name)s")
        params["name"] = name
    return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), params


class PostgresLimited:
    """:class:`~jobkit.storage.flow_claim.LimitedClaim` in one PostgreSQL claim transaction.

    Its advisory lock (``lock_flow``) makes it the only claim under limits at a time.
    """

    def __init__(self, store: PostgresStorage, cur: psycopg.Cursor[Any],
                 params: dict[str, Any], *, prune: bool = True) -> None:
        self.store, self.cur, self.params, self.prune = store, cur, params, prune

    def running_jobs(self) -> builtins.list[tuple[str, str, Any]]:
        """``(name, queue, params)`` of every running job."""
        self.cur.execute(queries()["running_jobs"])
        return [(row["name"], row["queue"], row["params"]) for row in self.cur.fetchall()]

    def recent_starts(self, low: str, high: str,
                      since: datetime) -> dict[str, tuple[int, datetime]]:
        """Starts after ``since`` by group name in ``[low, high)``; older ones forgotten."""
        bounds = {"low": low, "high": high, "since": since}
        if self.prune:
            self.cur.execute(queries()["forget_flow_starts"], bounds)
        self.cur.execute(queries()["flow_starts"], bounds)
        return {row["limit_key"]: (row["n"], row["oldest"]) for row in self.cur.fetchall()}

    def candidates(self, flow: Flow, exclusions: Exclusions,
                   count: int) -> builtins.list[Candidate]:
        """Due jobs of the flow's queues, none paused or excluded, in claim order (locked)."""
        self.cur.execute(queries()["claim_candidates"], {
            "now": self.params["now"], "queues": self.params["queues"],
            "ex_names": sorted(exclusions.names), "ex_queues": sorted(exclusions.queues),
            "ex_keys": exclusions.as_json()[2], "limit": count})
        return [Candidate(row["id"], row["name"], row["queue"], row["params"])
                for row in self.cur.fetchall()]

    def take(self, ids: builtins.list[int]) -> builtins.list[JobRecord]:
        """Claim these jobs and open their attempts; their readable records."""
        self.cur.execute(queries()["claim_ids"], {**self.params, "ids": ids})
        return self.store._opened(self.cur, self.cur.fetchall())

    def add_starts(self, groups: builtins.list[str]) -> None:
        """Record a start now under each group name."""
        self.cur.executemany(queries()["add_flow_start"],
                             [{"limit_key": group, "now": self.params["now"]} for group in groups])

    def held(self, until: datetime | None) -> None:
        """Nothing to note: this store has no cheap look to skip claims with."""
