"""The shared job store: PostgreSQL, for workers on many machines (``jobkit[postgres]``).

Claims take the next due row with ``FOR UPDATE SKIP LOCKED``, so concurrent workers never wait
for each other nor take one job twice. Leases and due times are compared with the database's
clock (``now()``), so the clocks of the worker machines may drift. Each process keeps a psycopg 3
connection pool; broken connections (a restarted server, ``pg_terminate_backend``) are replaced
when next used, and a driver error surfaces as ``StorageError`` that the worker logs before it
tries again. Idle workers ``LISTEN`` for a trigger's ``NOTIFY`` instead of polling hard. The SQL
lives in ``postgres.sql``.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import json
import os
import select
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs

from jobkit.exceptions import ConfigError, JobNotFoundInStorage, StorageError
from jobkit.records import (
    Attempt,
    AttemptOutcome,
    JobRecord,
    JobStatus,
    Lease,
    NewJob,
    UnreadableValue,
    decode_json,
    utcnow,
)
from jobkit.storage.base import Clock
from jobkit.storage.capabilities import WakesWorkers
from jobkit.storage.rows import attempt_from_row, record_from_row, set_aside_error
from jobkit.storage.sql import SQLStorage, job_key, new_record
from jobkit.storage.sqlfile import migrations, sections

if TYPE_CHECKING:
    import psycopg
    from psycopg.adapt import Loader
    from psycopg_pool import ConnectionPool

T = TypeVar("T")

_SQL = "postgres.sql"
#: The schema version from which jobkit_jobs refuses times Python cannot read.
CHECKED_SCHEMA = 7
_CHANNEL = "jobkit_jobs"
#: URL query keys jobkit reads itself (every other key goes to libpq, e.g. ``sslmode``).
_OWN_KEYS = ("pool_size", "connect_timeout")


def queries() -> dict[str, str]:
    """The named sections of ``postgres.sql``."""
    return sections(_SQL)


@functools.cache
def _closing(name: str) -> str:
    """The fenced update ``name`` and the close of the job's open attempt as one statement
    (one round trip instead of two): the attempt is closed only when the update's fence held,
    and the statement returns the updated row, or none."""
    named = queries()
    update = named[name].rstrip().rstrip(";")
    close = named["close_attempt"].rstrip().rstrip(";")
    assert close.endswith("finished_at IS NULL"), "postgres.sql: close_attempt changed shape"
    return (f"WITH done AS (\n{update}\n),\nclosed AS (\n{close}\n"
            f"    AND EXISTS (SELECT 1 FROM done)\n)\nSELECT * FROM done")


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(timezone.utc)


def _job(row: Mapping[str, Any]) -> JobRecord:
    return record_from_row(row, _utc, lambda value: value)  # psycopg decodes json columns


def _inserted(job: NewJob, params: Mapping[str, Any], row: Mapping[str, Any]) -> JobRecord:
    """The record of ``job``, just inserted with ``params`` (the ``enqueue`` query's): the
    server gave its id and times, the rest is known (no read back of the whole row)."""
    utc = timezone.utc
    return new_record(row["id"], job, params["params"], row["created_at"].astimezone(utc),
                      row["available_at"].astimezone(utc), json.loads)


def _configure_connection(conn: psycopg.Connection[Any]) -> None:
    """Decode this connection's json columns without raising: a forged value Python cannot
    read (nesting too deep, a number too long) becomes ``UnreadableJSON``, which fails its job,
    instead of an error on every claim that would stop the queue behind it. Autocommit: a
    one-statement write (an enqueue) is its own transaction, without ``BEGIN`` and ``COMMIT``
    round trips; :meth:`PostgresStorage._transaction` opens one explicitly."""
    from psycopg.pq import Format
    from psycopg.types.json import set_json_loads

    set_json_loads(lambda data: decode_json(json.loads, data), conn)
    oid = conn.adapters.types["timestamptz"].oid
    for fmt in (Format.TEXT, Format.BINARY):
        inner = conn.adapters.get_loader(oid, fmt)
        if inner is not None:
            conn.adapters.register_loader(oid, _tolerant_loader(inner))
    conn.autocommit = True


@functools.cache
def _tolerant_loader(inner: type[Loader]) -> type[Loader]:
    """A loader of ``timestamptz`` that reads what Python cannot hold (``'infinity'``, a year
    after 9999 or before 1) as :class:`UnreadableValue` instead of raising: psycopg's own
    (``inner``, in C when installed) does the work."""
    import psycopg
    from psycopg.adapt import Loader

    class TolerantTimestamptzLoader(Loader):
        format = inner.format

        def __init__(self, oid: int, context: Any = None) -> None:
            super().__init__(oid, context)
            self._inner = inner(oid, context)

        def load(self, data: Any) -> Any:
            try:
                return self._inner.load(data)
            except (psycopg.DataError, ValueError, OverflowError):
                if self.format == inner.format.TEXT:
                    return UnreadableValue(bytes(data).decode("utf-8", "replace"))
                return UnreadableValue("a time out of Python's range")

    return TolerantTimestamptzLoader


#: Seconds a pooled connection may have been idle and still be handed out without a round trip
#: to the server (see :class:`_Liveness`).
CHECK_AFTER_IDLE = 1.0


class _Liveness:
    """The pool's check of a connection it hands out.

    A round trip (psycopg's ``check_connection``, an empty query) costs an enqueue about a
    fifth of its time, so, as pgx does, it is made only for a connection idle longer than
    :data:`CHECK_AFTER_IDLE`, or one the server sent something since its last use: a server
    that ends a connection (``pg_terminate_backend``, a restart) sends an error and closes it,
    which makes the socket readable; nothing else is sent to an idle connection that does not
    ``LISTEN``. A connection that fails the check is replaced by the pool.
    """

    def __init__(self) -> None:
        self._used: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    def used(self, conn: psycopg.Connection[Any]) -> None:
        """Note that ``conn`` was just used (not through the pool's ``reset`` callback: with
        one, the pool hands every returned connection to a thread of its own)."""
        self._used[conn] = time.monotonic()

    def check(self, conn: psycopg.Connection[Any]) -> None:
        """Raise a psycopg error if ``conn`` is not fit to be handed out."""
        from psycopg_pool import ConnectionPool

        used = self._used.get(conn)
        if used is None or time.monotonic() - used > CHECK_AFTER_IDLE or _has_input(conn):
            ConnectionPool.check_connection(conn)


def _has_input(conn: psycopg.Connection[Any]) -> bool:
    """Whether the server sent something to ``conn`` (idle: an error, or the close)."""
    import psycopg

    try:
        fd = conn.pgconn.socket
    except psycopg.Error:  # closed: the round trip fails it
        return True
    if hasattr(select, "poll"):  # no FD_SETSIZE limit
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])


def _attempt(row: Mapping[str, Any]) -> Attempt:
    return attempt_from_row(row, _utc)


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """``postgresql://...?pool_size=8&sslmode=require`` -> (libpq URL, jobkit's own options)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(
            f"storage: {redact(url)!r} is not a PostgreSQL URL like "
            "postgresql://user:password@host:5432/dbname"
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    own = {key: value for key, value in query if key in _OWN_KEYS}
    rest = [(key, value) for key, value in query if key not in _OWN_KEYS]
    return urlunsplit(parts._replace(query=urlencode(rest))), own


def redact(url: str) -> str:
    """The URL with its password replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresStorage(SQLStorage, WakesWorkers):
    """Jobs in a PostgreSQL database: ``postgresql://user:password@host:5432/dbname``.

    URL query options read by jobkit: ``pool_size`` (connections per process, default 4) and
    ``connect_timeout`` (seconds to wait for a connection, default 10); every other option goes to
    libpq (``sslmode=require``, ``application_name=...``). The schema is created and migrated on
    first use (and by ``jobkit migrate``). Without a ``clock``, times come from the database.
    """

    scheme = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        pool_size: int = 4,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(clock=clock or utcnow)
        try:
            import psycopg  # noqa: F401
            import psycopg_pool  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                f"storage {redact(url)}: PostgreSQL needs psycopg 3 and psycopg-pool: "
                f"pip install 'jobkit[postgres]' ({exc})"
            ) from None
        self._db_clock = clock is None
        self._conninfo, own = split_url(url)
        self._url = url
        try:
            self._pool_size = int(own.get("pool_size", pool_size))
            self._connect_timeout = float(own.get("connect_timeout", connect_timeout))
        except ValueError as exc:
            raise ConfigError(f"storage {redact(url)}: {exc}") from None
        if self._pool_size < 1 or self._connect_timeout <= 0:
            raise ConfigError(
                f"storage {redact(url)}: pool_size must be >= 1 and connect_timeout > 0"
            )
        self._lock = threading.Lock()
        self._closed = False
        self._pool: ConnectionPool[Any] | None = None
        self._liveness = _Liveness()
        self._pid = os.getpid()
        self._listener: psycopg.Connection[Any] | None = None
        try:
            self.migrate()
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresStorage:
        """Open ``postgresql://user:password@host:port/dbname?pool_size=4``. ``durability`` is
        accepted and changes nothing: every commit is durable unless the server's own
        ``synchronous_commit`` says otherwise."""
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

    # -- connections and transactions ---------------------------------------------------------

    def _where(self) -> str:
        return f"postgresql storage {redact(self._url)}"

    def _get_pool(self, operation: str) -> ConnectionPool[Any]:
        if self._closed:
            raise StorageError(f"{self._where()}: {operation}: the store is closed")
        with self._lock:
            if self._pool is not None and os.getpid() == self._pid:
                return self._pool
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool, PoolTimeout

            self._pid = os.getpid()  # a pool must never cross a fork: a child opens its own
            pool: ConnectionPool[Any] = ConnectionPool(
                self._conninfo,
                min_size=1,
                max_size=self._pool_size,
                kwargs={"row_factory": dict_row, "connect_timeout": self._connect_seconds()},
                check=self._liveness.check,
                configure=_configure_connection,
                timeout=self._connect_timeout,
                name="jobkit",
                open=False,
            )
            # wait for the first connection: a single-threaded caller then keeps using one
            # connection (the pool hands its idle connections out in turn, and a second one,
            # opened while the first was still connecting, cost every enqueue ~20 % here)
            try:
                pool.open(wait=True, timeout=self._connect_timeout)
            except PoolTimeout as exc:
                pool.close()
                raise self._no_connection(operation, exc) from exc
            self._pool = pool
            return pool

    def _no_connection(self, operation: str, exc: Exception) -> StorageError:
        return StorageError(
            f"{self._where()}: {operation}: no connection within "
            f"{self._connect_timeout:g} s (is the server up?): {exc}"
        )

    def _connect_seconds(self) -> int:
        return max(1, round(self._connect_timeout))

    def _transaction(
        self,
        operation: str,
        work: Callable[[psycopg.Cursor[Any]], T],
        *,
        single: bool = False,
    ) -> T:
        """Run ``work`` in one transaction on a pooled connection; every driver error becomes
        ``StorageError`` naming the operation and the server. ``single``: ``work`` runs one
        statement, its own transaction (no ``BEGIN`` and ``COMMIT`` round trips)."""
        import psycopg
        from psycopg_pool import PoolTimeout

        pool = self._get_pool(operation)
        try:
            with (
                pool.connection() as conn,
                contextlib.nullcontext() if single else conn.transaction(),
                conn.cursor() as cur,
            ):
                try:
                    return work(cur)
                finally:
                    self._liveness.used(conn)
        except PoolTimeout as exc:
            raise self._no_connection(operation, exc) from exc
        except psycopg.Error as exc:
            if self._closed:
                raise StorageError(f"{self._where()}: {operation}: the store is closed") from exc
            raise StorageError(f"{self._where()}: {operation} failed: {exc}".strip()) from exc

    def _one(self, cur: psycopg.Cursor[Any], name: str, params: Mapping[str, Any]) -> Any:
        cur.execute(queries()[name], params)
        return cur.fetchone()

    def _now_param(self) -> datetime | None:
        """The ``now`` bound into SQL: ``None`` means the database's ``now()``."""
        return None if self._db_clock else self._clock()

    def now(self) -> datetime:
        """The store's clock: the database's ``now()`` unless a clock was given."""
        if not self._db_clock:
            return self._clock()

        def work(cur: psycopg.Cursor[Any]) -> datetime:
            value = self._one(cur, "now", {})["now"]
            return value.astimezone(timezone.utc)  # type: ignore[no-any-return]

        return self._transaction("read the database clock", work, single=True)

    def migrate(self) -> int:
        """Create or upgrade the schema (under an advisory lock, so many processes may start at
        once); return its version."""
        steps = migrations(queries(), _SQL)
        latest = steps[-1][0]
        sql = queries()

        def upgrade(cur: psycopg.Cursor[Any]) -> int:
            cur.execute(sql["lock_migrations"])
            cur.execute(sql["create_schema_version"])
            version: int = self._one(cur, "schema_version", {})["coalesce"]
            if version > latest:
                raise StorageError(
                    f"{self._where()}: the schema is at version {version}, newer than this "
                    f"jobkit knows ({latest}); upgrade jobkit"
                )
            for number, script in steps:
                if number > version:
                    cur.execute(script.encode())  # several statements, no parameters
                    if number == CHECKED_SCHEMA:
                        self._set_aside_unreadable(cur)
                        cur.execute(sql["validate_checks"])
            if version != latest:
                cur.execute(sql["clear_schema_version"])
                cur.execute(sql["set_schema_version"], {"version": latest})
            return latest

        return self._transaction("migrate the schema", upgrade)

    def _set_aside_unreadable(self, cur: psycopg.Cursor[Any]) -> None:
        """When the schema starts checking times (migration :data:`CHECKED_SCHEMA`): fail each
        row written before that its checks refuse, quoting what its bad columns held, which get
        a stand-in."""
        cur.execute(queries()["unreadable_rows"])
        for row in cur.fetchall():
            record = _job(row)
            flaws = record.unreadable or {"row": "does not fit the schema"}
            error = set_aside_error(attrs.evolve(record, unreadable=flaws), replaced=True)
            now = self._now_param()
            cur.execute(queries()["set_aside_unreadable"],
                        {"job_id": row["id"], "error": error, "now": now})
            self._close_attempt(cur, row["id"], now, AttemptOutcome.FAILED, error, None)

    def _fenced_in(
        self,
        cur: psycopg.Cursor[Any],
        name: str,
        lease: Lease,
        outcome: AttemptOutcome,
        error: str | None,
        traceback: str | None,
        params: Mapping[str, Any],
    ) -> JobRecord | None:
        """See :meth:`SQLStorage._fenced_in`."""
        key = job_key(lease.job_id)
        if key is None:
            return None
        fence = {"job_id": key, "worker_id": lease.worker_id, "attempt": lease.attempt}
        # one statement: the fenced update and, only when the fence held, the attempt's close
        cur.execute(_closing(name), {**fence, "now": self._now_param(), "error": error,
                                     "outcome": outcome.value, "traceback": traceback,
                                     **params})
        row = cur.fetchone()
        return None if row is None else _job(row)

    def _close_attempt(
        self,
        cur: psycopg.Cursor[Any],
        key: int,
        now: datetime | None,
        outcome: AttemptOutcome,
        error: str | None,
        traceback: str | None,
    ) -> None:
        cur.execute(
            queries()["close_attempt"],
            {"job_id": key, "now": now, "outcome": outcome.value, "error": error,
             "traceback": traceback},
        )

    def _fenced_update(self, operation: str, name: str, lease: Lease, **params: Any) -> bool:
        key = job_key(lease.job_id)
        if key is None:
            return False
        fence = {"job_id": key, "worker_id": lease.worker_id, "attempt": lease.attempt}

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
        params = self._new_job(job)

        def work(cur: psycopg.Cursor[Any]) -> JobRecord:
            row = self._one(cur, "enqueue", {**params, "now": self._now_param()})
            return _inserted(job, params, row)

        return self._transaction(f"enqueue job {job.name!r}", work, single=True)

    def _enqueue_many(self, jobs: builtins.list[NewJob]) -> builtins.list[JobRecord]:
        """Store the jobs in one transaction (all or nothing, pipelined), in order; their
        records."""
        if not jobs:
            return []
        rows = [self._new_job(job) for job in jobs]

        def work(cur: psycopg.Cursor[Any]) -> builtins.list[JobRecord]:
            now = self._now_param()
            cur.executemany(queries()["enqueue"], [{**row, "now": now} for row in rows],
                            returning=True)
            stored = []
            while True:
                stored += cur.fetchall()  # one row per result set
                if not cur.nextset():
                    break
            return [_inserted(*new) for new in zip(jobs, rows, stored, strict=True)]

        return self._transaction(f"enqueue {len(jobs)} jobs", work)

    def _cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a pending, retrying or running job (see :meth:`Storage.cancel`)."""

        def work(cur: psycopg.Cursor[Any], key: int) -> JobRecord | None:
            now = self._now_param()
            row = self._one(cur, "cancel", {"job_id": key, "now": now})
            if row is None:
                self._missing(cur, key, job_id)
                return None
            self._close_attempt(cur, key, now, AttemptOutcome.CANCELLED, None, None)
            return _job(row)

        return self._by_id(job_id, f"cancel job {job_id}", work)

    def _retry(self, job_id: str) -> JobRecord | None:
        """Put a ``failed`` or ``cancelled`` job back to ``pending`` (see :meth:`Storage.retry`)."""

        def work(cur: psycopg.Cursor[Any], key: int) -> JobRecord | None:
            row = self._one(cur, "retry", {"job_id": key, "now": self._now_param()})
            if row is None:
                self._missing(cur, key, job_id)
                return None
            return _job(row)

        return self._by_id(job_id, f"retry job {job_id}", work)

    # -- writes of the worker ------------------------------------------------------------------

    def _claim_in(
        self, cur: psycopg.Cursor[Any], worker_id: str, lease_seconds: float
    ) -> JobRecord | None:
        """See :meth:`SQLStorage._claim_in` (``FOR UPDATE SKIP LOCKED``)."""
        params = {"worker_id": worker_id, "now": self._now_param(),
                  "lease_seconds": float(lease_seconds)}
        while True:  # again only when a row nobody can read was set aside
            row = self._one(cur, "claim", params)  # it opens the job's attempt too
            if row is None:
                return None
            readable = self._readable(cur, [_job(row)])
            if readable:
                return readable[0]

    def _set_aside_in(self, cur: psycopg.Cursor[Any], key: int, error: str) -> None:
        """See :meth:`SQLStorage._set_aside_in` (one statement, as :func:`_closing` makes)."""
        cur.execute(_closing("set_aside"), {
            "job_id": key, "now": self._now_param(), "error": error,
            "outcome": AttemptOutcome.FAILED.value, "traceback": None})

    def _heartbeat(self, lease: Lease, lease_seconds: float) -> bool:
        """Extend the lease; ``False`` when it no longer owns the job."""
        return self._fenced_update(
            f"heartbeat job {lease.job_id}", "heartbeat", lease,
            lease_seconds=float(lease_seconds),
        )

    def _time(self, value: datetime) -> datetime:
        return value

    def _bind(self, name: str) -> str:
        return f"%({name})s"

    def _contains(self, placeholder: str) -> str:
        return f"strpos(coalesce(params_masked, params::text), {placeholder}) > 0"

    def _select(self, operation: str, sql: str, params: Mapping[str, Any]) -> builtins.list[Any]:
        def work(cur: psycopg.Cursor[Any]) -> builtins.list[Any]:
            cur.execute(sql.encode(), params)  # built from search.py's fixed pieces only
            return cur.fetchall()

        return self._transaction(operation, work)

    def _record(self, row: Any) -> JobRecord:
        return _job(row)

    def _named(self, operation: str, name: str, params: Mapping[str, Any]) -> builtins.list[Any]:
        def work(cur: psycopg.Cursor[Any]) -> builtins.list[Any]:
            cur.execute(queries()[name], params)
            return cur.fetchall() if cur.description is not None else []

        return self._transaction(operation, work)

    def _named_many(self, operation: str, name: str, rows: builtins.list[Mapping[str, Any]]
                    ) -> None:
        def work(cur: psycopg.Cursor[Any]) -> None:
            cur.executemany(queries()[name], rows)

        self._transaction(operation, work)

    def _read_time(self, value: Any) -> datetime:
        return value  # type: ignore[no-any-return]

    def _now_bound(self) -> Any:
        return self._now_param()  # None: the database's now()

    def _prune_batch(self, finished_before: Any, batch_size: int) -> int:
        params = {"finished_before": finished_before, "batch_size": batch_size}

        def batch(cur: psycopg.Cursor[Any]) -> int:
            cur.execute(queries()["prune_batch"], params)
            return cur.rowcount

        return self._transaction("prune finished jobs", batch)

    def _requeue_expired(self) -> builtins.list[JobRecord]:
        """Take back running jobs whose lease expired (see :meth:`Storage.requeue_expired`)."""

        def work(cur: psycopg.Cursor[Any]) -> builtins.list[JobRecord]:
            now = {"now": self._now_param()}
            if self._one(cur, "has_expired_lease", now) is None:
                return []  # the common case: one cheap indexed read, no row locked
            cur.execute(queries()["requeue_expired"], now)
            return sorted((_job(row) for row in cur.fetchall()), key=lambda r: int(r.id))

        return self._transaction("requeue expired leases", work)

    # -- reads -----------------------------------------------------------------------------

    def _get(self, job_id: str) -> JobRecord:
        """The job with this id. Raises ``JobNotFoundInStorage``."""

        def work(cur: psycopg.Cursor[Any], key: int) -> JobRecord:
            row = self._one(cur, "get", {"job_id": key})
            if row is None:
                raise JobNotFoundInStorage(job_id)
            return _job(row)

        return self._by_id(job_id, f"get job {job_id}", work)

    def _attempts_of(self, job_id: str) -> builtins.list[Attempt]:
        """Every attempt of the job, oldest first. Raises ``JobNotFoundInStorage``."""

        def work(cur: psycopg.Cursor[Any], key: int) -> builtins.list[Attempt]:
            self._missing(cur, key, job_id)
            cur.execute(queries()["attempts"], {"job_id": key})
            return [_attempt(row) for row in cur.fetchall()]

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
            return [_job(row) for row in cur.fetchall()]

        return self._transaction("list jobs", work)

    def _count(self, status: JobStatus | None, name: str | None) -> int:
        """How many jobs match the filter."""
        where, params = _filter(status, name)

        def work(cur: psycopg.Cursor[Any]) -> int:
            cur.execute(f"SELECT count(*) AS n FROM jobkit_jobs{where}".encode(), params)
            return int(cur.fetchone()["n"])  # type: ignore[index]

        return self._transaction("count jobs", work)

    # -- waiting for work ----------------------------------------------------------------------

    def wait_for_jobs(self, timeout: float, stop: threading.Event | None = None) -> None:
        """Block until a job may have become due (a ``NOTIFY`` from the jobs table), ``timeout``
        seconds pass or ``stop`` is set. The ``LISTEN`` connection is opened on first use and
        again after it breaks; a notification sent while the worker was busy wakes the next wait
        at once, so no job waits for a poll."""
        import psycopg

        deadline = time.monotonic() + timeout
        try:
            listener = self._listen()
            while (left := deadline - time.monotonic()) > 0 and not (stop and stop.is_set()):
                if any(True for _ in listener.notifies(timeout=min(left, 0.25), stop_after=1)):
                    return
        except psycopg.Error as exc:
            self._drop_listener()
            raise StorageError(f"{self._where()}: listen for new jobs failed: {exc}") from exc

    def _listen(self) -> psycopg.Connection[Any]:
        import psycopg

        if self._closed:
            raise StorageError(f"{self._where()}: listen for new jobs: the store is closed")
        if self._listener is None or self._listener.closed:
            listener = psycopg.connect(
                self._conninfo, autocommit=True, connect_timeout=self._connect_seconds()
            )
            listener.execute(f"LISTEN {_CHANNEL}".encode())
            self._listener = listener
        return self._listener

    def _drop_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    def close(self) -> None:
        """Close the pool and the listening connection; the store must not be used afterwards."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        self._drop_listener()
        if pool is not None and os.getpid() == self._pid:
            pool.close(timeout=5.0)


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
