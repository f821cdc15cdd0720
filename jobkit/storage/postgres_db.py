"""Internal: the PostgreSQL database under :class:`~jobkit.storage.postgres.PostgresStorage`.

Its connections (a psycopg 3 pool per process, see :mod:`jobkit.storage.postgres_pool`), the
transactions, the schema's migrations (the ``migration_<n>`` sections of ``postgres.sql``), the
database's clock, the ``LISTEN`` for new jobs and the close.
"""

from __future__ import annotations

import builtins
import functools
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from jobkit.exceptions import ConfigError, StorageError
from jobkit.lazylog import logger
from jobkit.records import Attempt, AttemptOutcome, JobRecord, utcnow
from jobkit.storage.base import Clock
from jobkit.storage.postgres_pool import Liveness, configure_connection, redact, split_url
from jobkit.storage.rows import attempt_from_row, record_from_row, set_aside_error
from jobkit.storage.sql import SQLStorage
from jobkit.storage.sqlfile import migrations, sections

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

T = TypeVar("T")

_SQL = "postgres.sql"
#: The schema version from which jobkit_jobs refuses times Python cannot read.
CHECKED_SCHEMA = 7
_CHANNEL = "jobkit_jobs"
#: The channel each job that ends sends its id on (migration 14).
_ENDS = "jobkit_ends"


#: How many times a transaction is tried when the server breaks it off (deadlock, serialization).
DEADLOCK_TRIES = 5

#: The SQLSTATEs of a transaction the server broke off that succeeds when run again.
_RUN_AGAIN = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure


def _broken_off(error: StorageError) -> bool:
    """Whether ``error`` is a driver error of a transaction broken off to end a deadlock."""
    return getattr(error.__cause__, "sqlstate", None) in _RUN_AGAIN


def queries() -> dict[str, str]:
    """The named sections of ``postgres.sql``."""
    return sections(_SQL)


@functools.cache
def _errors() -> tuple[type[Exception], type[Exception]]:
    """psycopg's ``Error`` and the pool's ``PoolTimeout``, imported once (not per statement)."""
    import psycopg
    from psycopg_pool import PoolTimeout

    return psycopg.Error, PoolTimeout


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(timezone.utc)


def _as_is(value: Any) -> Any:
    return value  # psycopg decodes json columns


def _in_cursor(conn: psycopg.Connection[Any], work: Callable[[psycopg.Cursor[Any]], T]) -> T:
    with conn.cursor() as cur:
        return work(cur)


def _in_transaction(conn: psycopg.Connection[Any],
                    work: Callable[[psycopg.Cursor[Any]], T]) -> T:
    with conn.transaction(), conn.cursor() as cur:
        return work(cur)


def job_of_row(row: Mapping[str, Any]) -> JobRecord:
    return record_from_row(row, _utc, _as_is)


def attempt_of_row(row: Mapping[str, Any]) -> Attempt:
    return attempt_from_row(row, _utc)



class PostgresDatabase(SQLStorage):
    """The PostgreSQL database a store keeps its jobs in: pool, transactions, schema, waits.

    :class:`~jobkit.storage.postgres.PostgresStorage` adds the jobs' reads and writes; this
    class owns what they run on: a connection pool per process (none across a fork), the
    schema's migrations under an advisory lock, the database's clock, and the ``LISTEN``
    connection idle workers wait on. Every driver error is raised as ``StorageError``.
    """

    _row_decoders = (_utc, _as_is)

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
        self._liveness = Liveness(self._where())
        self._pid = os.getpid()
        self._listener: psycopg.Connection[Any] | None = None
        #: (pid, connection): a connection is never used across a fork
        self._end_listener: tuple[int, psycopg.Connection[Any]] | None = None
        try:
            self.migrate()
        except BaseException:
            self.close()
            raise

    # -- connections and transactions ---------------------------------------------------------

    def _where(self) -> str:
        return f"postgresql storage {redact(self._url)}"

    def _get_pool(self, operation: str) -> ConnectionPool[Any]:
        if self._closed:
            raise StorageError(f"{self._where()}: {operation}: the store is closed")
        ready = self._pool
        if ready is not None and os.getpid() == self._pid:
            return ready  # the common case, without the lock: the pool is set once per process
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
                configure=configure_connection,
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
        """Run ``work`` in one transaction on a pooled connection.

        Every driver error becomes ``StorageError`` naming the operation and the server.
        ``single``: ``work`` runs one statement, its own transaction (no ``BEGIN`` and ``COMMIT``
        round trips). A transaction the server broke off to end a deadlock (or a serialization
        failure) is run again, up to :data:`DEADLOCK_TRIES` times in all: two cascades of
        workflows may lock the same blocked jobs in opposite orders (each locks a level of
        children at a time, in id order), and PostgreSQL then fails one of them; nothing of it
        was written, and ``work`` reads everything again.
        """
        if single:
            return self._connected(operation, lambda conn: _in_cursor(conn, work))
        for tries in range(1, DEADLOCK_TRIES + 1):
            try:
                result = self._connected(operation, lambda conn: _in_transaction(conn, work))
            except StorageError as exc:
                self._cascades.discard()
                if tries == DEADLOCK_TRIES or not _broken_off(exc):
                    raise
                logger.warning("{operation}: {error}; running it again (try {tries})",
                               operation=operation, error=exc.__cause__, tries=tries + 1)
                continue
            except BaseException:
                self._cascades.discard()
                raise
            self._cascades.committed()
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _connected(self, operation: str, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``work`` on a pooled connection (in autocommit); driver errors as ``StorageError``.

        The connection is taken and given back without the pool's context manager, whose commit
        and rollback have nothing to do in autocommit (an enqueue spends ~12 us less CPU). A
        connection left broken or in a transaction is still replaced or reset by the pool when
        given back.
        """
        pool = self._get_pool(operation)
        psycopg_error, pool_timeout = _errors()
        try:
            conn = pool.getconn()
            try:
                return work(conn)
            finally:
                self._liveness.used(conn)
                pool.putconn(conn)
        except pool_timeout as exc:
            raise self._no_connection(operation, exc) from exc
        except psycopg_error as exc:
            if self._closed:
                raise StorageError(f"{self._where()}: {operation}: the store is closed") from exc
            raise StorageError(f"{self._where()}: {operation} failed: {exc}".strip()) from exc

    def _one(self, cur: psycopg.Cursor[Any], name: str, params: Mapping[str, Any]) -> Any:
        cur.execute(queries()[name], params)
        return cur.fetchone()

    def _now_param(self) -> datetime | None:
        """The ``now`` bound into SQL: ``None`` means the database's ``now()``."""
        return None if self._db_clock else self._clock()

    def _now_in(self, cur: psycopg.Cursor[Any]) -> datetime:
        clock = self._now_param()
        if clock is not None:
            return clock
        return self._one(cur, "now", {})["now"].astimezone(timezone.utc)  # type: ignore[no-any-return]

    def now(self) -> datetime:
        """The store's clock: the database's ``now()`` unless a clock was given."""
        if not self._db_clock:
            return self._clock()

        def work(cur: psycopg.Cursor[Any]) -> datetime:
            value = self._one(cur, "now", {})["now"]
            return value.astimezone(timezone.utc)  # type: ignore[no-any-return]

        return self._transaction("read the database clock", work, single=True)

    def migrate(self) -> int:
        """Create or upgrade the schema; return its version.

        Under an advisory lock, so many processes may start at once.
        """
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
        """Fail each old row the time checks would refuse, as they are added.

        Run by migration :data:`CHECKED_SCHEMA`: each row written before it that its checks
        refuse is failed, quoting what its bad columns held, which get a stand-in.
        """
        cur.execute(queries()["unreadable_rows"])
        for row in cur.fetchall():
            record = job_of_row(row)
            flaws = record.unreadable or {"row": "does not fit the schema"}
            error = set_aside_error(attrs.evolve(record, unreadable=flaws), replaced=True)
            now = self._now_param()
            cur.execute(queries()["set_aside_unreadable"],
                        {"job_id": row["id"], "error": error, "now": now})
            self._close_attempt(cur, row["id"], now, AttemptOutcome.FAILED, error, None)

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
        return job_of_row(row)

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

    # -- waiting for work ----------------------------------------------------------------------

    def wait_for_jobs(self, timeout: float, stop: threading.Event | None = None) -> None:
        """Block until a job may have become due, ``timeout`` seconds pass or ``stop`` is set.

        A job may have become due on a ``NOTIFY`` from the jobs table. The ``LISTEN`` connection is
        opened on first use and again after it breaks; a notification sent while the worker was
        busy wakes the next wait at once, so no job waits for a poll.
        """
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
        if self._listener is None or self._listener.closed:
            self._listener = self._open_listener(_CHANNEL, "listen for new jobs")
        return self._listener

    def _open_listener(self, channel: str, operation: str) -> psycopg.Connection[Any]:
        """A connection of its own that ``LISTEN``s on ``channel``."""
        import psycopg

        if self._closed:
            raise StorageError(f"{self._where()}: {operation}: the store is closed")
        listener = psycopg.connect(
            self._conninfo, autocommit=True, connect_timeout=self._connect_seconds()
        )
        listener.execute(f"LISTEN {channel}".encode())
        return listener

    def _drop_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    def wait_for_ends(self, timeout: float, stop: threading.Event | None = None
                      ) -> set[str] | None:
        """Block until jobs end (their ids), ``timeout`` seconds pass or ``stop`` is set.

        Capability ``ends``: the ids come from the ``NOTIFY`` each job's end sends on
        ``jobkit_ends`` at commit. ``None`` (any job may have ended) after ``timeout`` and
        when the ``LISTEN`` connection was just opened: ends before it were not heard. One
        thread waits at a time (the app's watch of ends, :mod:`jobkit.job_ends`).
        """
        import psycopg

        deadline = time.monotonic() + timeout
        try:
            if (self._end_listener is None or self._end_listener[1].closed
                    or self._end_listener[0] != os.getpid()):
                self._end_listener = (os.getpid(),
                                      self._open_listener(_ENDS, "listen for job ends"))
                return None
            listener = self._end_listener[1]
            while (left := deadline - time.monotonic()) > 0 and not (stop and stop.is_set()):
                heard = list(listener.notifies(timeout=min(left, 0.25), stop_after=1))
                if heard:  # and those that came with it
                    heard += listener.notifies(timeout=0.0)
                    return {notify.payload for notify in heard}
            return None
        except psycopg.Error as exc:
            self._drop_end_listener()
            raise StorageError(f"{self._where()}: listen for job ends failed: {exc}") from exc

    def _drop_end_listener(self) -> None:
        listener, self._end_listener = self._end_listener, None
        if listener is not None and listener[0] == os.getpid():  # a parent's is left alone
            listener[1].close()

    def close(self) -> None:
        """Close the pool and the listening connection; the store must not be used afterwards."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        self._drop_listener()
        self._drop_end_listener()
        if pool is not None and os.getpid() == self._pid:
            pool.close(timeout=5.0)


