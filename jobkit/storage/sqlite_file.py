"""Internal: the SQLite file under :class:`~jobkit.storage.sqlite.SQLiteStorage`.

Opening it (WAL mode, one connection per thread, none across a fork), the transactions with
their bounded retry while the file is busy, the schema's migrations (the ``migration_<n>``
sections of ``sqlite.sql``), the check that the file is still the one opened, the WAL
checkpoints and the close.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import attrs

from jobkit.exceptions import ConfigError, StorageError, StoreLost
from jobkit.records import Attempt, AttemptOutcome, JobRecord, utcnow
from jobkit.storage.base import Clock
from jobkit.storage.filewatch import FileWatch
from jobkit.storage.rows import attempt_from_row, record_from_row, set_aside_error
from jobkit.storage.sql import SQLStorage
from jobkit.storage.sqlfile import migrations as sql_migrations
from jobkit.storage.sqlfile import sections

T = TypeVar("T")

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def queries() -> dict[str, str]:
    """The named sections of ``sqlite.sql`` (``-- name: claim`` ...), read once."""
    return sections("sqlite.sql")


def migrations() -> builtins.list[tuple[int, str]]:
    """The ``migration_<n>`` sections of ``sqlite.sql`` as ``(n, sql)``, in order."""
    return sql_migrations(queries(), "sqlite.sql")


def split_statements(script: str) -> builtins.list[str]:
    """Split a section into statements (``executescript`` would commit the open transaction)."""
    statements: builtins.list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip() and not all(
        not part.strip() or part.strip().startswith("--") for part in pending.splitlines()
    ):
        raise RuntimeError(f"sqlite.sql: unterminated statement: {pending.strip()[:60]!r}")
    return statements


def to_epoch(value: datetime) -> float:
    return value.timestamp()


def to_datetime(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, timezone.utc)


def stamp(value: float) -> datetime:
    """A stored time as a read gives it back."""
    return datetime.fromtimestamp(value, timezone.utc)


def file_identity(path: Path) -> tuple[int, int]:
    """The file at ``path`` as the system knows it, whatever its name: (device, inode)."""
    found = os.stat(path)
    return found.st_dev, found.st_ino


def is_busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


#: The schema version from which jobkit_jobs checks the type and range of its columns.
CHECKED_SCHEMA = 7

#: WAL pages after which a commit checkpoints by itself (SQLite's default is 1,000): a worker's
#: supervisor checkpoints every second (:meth:`SQLiteStorage.housekeep`), off the hot path.
WAL_AUTOCHECKPOINT = 10_000


def load_json(text: str) -> Any:
    """A stored JSON text as Python (``null``, a no-op job's result, without the decoder)."""
    return None if text == "null" else json.loads(text)


def job_of_row(row: sqlite3.Row) -> JobRecord:
    """A ``jobkit_jobs`` row as a record (:func:`~jobkit.storage.rows.record_from_row`).

    Read from a dict of the row's values: ``sqlite3.Row`` finds a column by name comparing
    it with each column's, case aside, about 0.15 us a lookup, and a record takes 27.
    """
    return record_from_row(dict(zip(row.keys(), row, strict=True)), to_datetime, load_json)


def attempt_of_row(row: sqlite3.Row) -> Attempt:
    return attempt_from_row(row, to_datetime)



class SQLiteFile(SQLStorage):
    """The SQLite file a store keeps its jobs in: connections, transactions, the schema.

    :class:`~jobkit.storage.sqlite.SQLiteStorage` adds the jobs' reads and writes; this class
    owns what they run on. Every driver error is raised as ``StorageError`` naming the
    operation and the file.
    """

    _row_decoders = (to_datetime, load_json)

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock = utcnow,
        busy_timeout: float = 30.0,
        synchronous: str = "NORMAL",
    ) -> None:
        super().__init__(clock=clock)
        if str(path) in ("", ":memory:") or str(path).startswith("file:"):
            raise ConfigError(
                f"sqlite storage needs a file path, got {str(path)!r} (use memory:// for an "
                "in-process store)"
            )
        if synchronous.upper() not in _SYNCHRONOUS:
            raise ConfigError(
                f"sqlite storage: synchronous must be one of {', '.join(_SYNCHRONOUS)}, "
                f"got {synchronous!r}"
            )
        if busy_timeout < 0:
            raise ConfigError(f"sqlite storage: busy_timeout must be >= 0, got {busy_timeout!r}")
        self.path = Path(path).absolute()
        #: The scheme :attr:`url` names: the one :meth:`from_url` was given.
        self._scheme = self.scheme
        self._busy_timeout = float(busy_timeout)
        self._synchronous = synchronous.upper()
        self._local = threading.local()
        self._connections: dict[threading.Thread, sqlite3.Connection] = {}
        #: (pid, watch on the -wal file) for idle workers' waits, made on first use
        self._wal: tuple[int, FileWatch | None] | None = None
        self._connections_lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"sqlite storage {self.path}: no folder: {exc}") from exc
        try:
            self.migrate()
            #: The file the connections opened (device, inode), for :meth:`check_health`.
            self._identity = file_identity(self.path)
        except BaseException:
            self.close()
            raise

    # -- connections and transactions ---------------------------------------------------------

    def _connection(self, operation: str) -> sqlite3.Connection:
        if self._closed:
            raise StorageError(f"sqlite storage {self.path}: {operation}: the store is closed")
        if os.getpid() != self._pid:  # forked: a SQLite connection must never cross a fork
            self._pid = os.getpid()
            self._local = threading.local()
            self._connections = {}
            self._connections_lock = threading.Lock()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
                check_same_thread=False,  # only close() touches another thread's connection
            )
            conn.row_factory = sqlite3.Row
            # PRAGMA values cannot be bound; both are validated or built from numbers above
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            # busy: retried by _attempt with pauses from 0.2 ms; SQLite's own handler sleeps
            # 1 ms and more per try, which two busy workers taking turns pay on every job
            conn.execute("PRAGMA busy_timeout = 0")
            # a checkpoint (copy the WAL into the file, an fsync) inside a commit costs that
            # commit milliseconds: workers checkpoint in the background (housekeep); this is
            # the backstop when no worker runs
            conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite storage {self.path}: cannot open the file: {exc}") from exc
        with self._connections_lock:
            if self._closed:
                conn.close()
                raise StorageError(f"sqlite storage {self.path}: {operation}: the store is closed")
            # a worker starts a heartbeat thread per job: close the connections of ended threads
            for thread in [thread for thread in self._connections if not thread.is_alive()]:
                self._connections.pop(thread).close()
            self._connections[threading.current_thread()] = conn
        self._local.conn = conn
        return conn

    def _transaction(
        self,
        operation: str,
        work: Callable[[sqlite3.Connection], T],
        *,
        write: bool | None = True,
        busy_budget: float | None = None,
    ) -> T:
        """Run ``work`` in one transaction.

        Retry it while the database is busy, up to ``busy_budget`` (default ``busy_timeout``) in
        all; turn every driver error into ``StorageError``. ``write=None``: ``work`` runs one
        statement, its own transaction (no ``BEGIN`` and ``COMMIT`` round trips).
        """
        conn = self._connection(operation)
        budget = self._busy_timeout if busy_budget is None else busy_budget
        return self._attempt(operation, conn, work, write, budget)

    def _attempt(
        self,
        operation: str,
        conn: sqlite3.Connection,
        work: Callable[[sqlite3.Connection], T],
        write: bool | None,
        budget: float,
    ) -> T:
        deadline = time.monotonic() + budget
        pause = 0.0002
        while True:
            try:
                if write is None:  # one statement, atomic by itself
                    return work(conn)
                try:
                    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                    result = work(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    self._cascades.discard()
                    if conn.in_transaction:  # the original error is the one to report
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    raise
                self._cascades.committed()
                return result
            except sqlite3.OperationalError as exc:
                if is_busy(exc) and time.monotonic() + pause < deadline:
                    time.sleep(pause * random.uniform(0.5, 1.5))
                    pause = min(pause * 1.5, 0.02)
                    continue
                raise self._error(operation, exc) from exc
            except sqlite3.Error as exc:
                raise self._error(operation, exc) from exc

    def _error(self, operation: str, exc: sqlite3.Error) -> StorageError:
        if self._closed:
            return StorageError(f"sqlite storage {self.path}: {operation}: the store is closed")
        return StorageError(f"sqlite storage {self.path}: {operation} failed: {exc}")

    def migrate(self) -> int:
        """Bring the schema to the newest version and return it.

        Safe to run from many processes at once.
        """
        steps = migrations()
        latest = steps[-1][0]
        sql = queries()

        def current(conn: sqlite3.Connection) -> int:
            if not conn.execute(sql["has_schema_version"]).fetchall():
                return 0
            version: int = conn.execute(sql["schema_version"]).fetchone()[0]
            return version

        def upgrade(conn: sqlite3.Connection) -> None:
            conn.execute(sql["create_schema_version"])
            version = current(conn)
            if version > latest:
                raise StorageError(
                    f"sqlite storage {self.path}: the schema is at version {version}, newer than "
                    f"this jobkit knows ({latest}); upgrade jobkit"
                )
            if version == latest:
                return
            for number, script in steps:
                if number > version:
                    if number == CHECKED_SCHEMA:
                        self._set_aside_unreadable(conn)
                    for statement in split_statements(script):
                        conn.execute(statement)
            if conn.execute("PRAGMA foreign_key_check").fetchall():
                raise StorageError(
                    f"sqlite storage {self.path}: the schema upgrade would leave attempts or "
                    "log lines without their job; nothing was changed"
                )
            conn.execute(sql["clear_schema_version"])
            conn.execute(sql["set_schema_version"], {"version": latest})

        def set_wal(conn: sqlite3.Connection) -> None:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StorageError(f"sqlite storage {self.path}: cannot use WAL (mode {mode!r})")

        def foreign_keys(on: bool) -> Callable[[sqlite3.Connection], None]:
            def switch(conn: sqlite3.Connection) -> None:
                conn.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")

            return switch

        self._autocommit("switch to WAL", set_wal)
        if self._transaction("read the schema version", current, write=False) != latest:
            # off while a table is rebuilt (its DROP would delete the rows that refer to it);
            # upgrade checks them before it commits
            self._autocommit("turn foreign keys off", foreign_keys(False))
            try:
                self._transaction("migrate the schema", upgrade)
            finally:
                self._autocommit("turn foreign keys on", foreign_keys(True))
        return latest

    def _set_aside_unreadable(self, conn: sqlite3.Connection) -> None:
        """Fail each old row the type checks would refuse, before they are added.

        Run by migration :data:`CHECKED_SCHEMA`: each row it would refuse is failed, quoting
        what its bad columns held, which get a stand-in. Nothing else of the row changes; its
        open attempt is closed.
        """
        now = to_epoch(self.now())
        for row in conn.execute(queries()["unreadable_rows"]).fetchall():
            record = job_of_row(row)
            flaws = record.unreadable or {"row": "does not fit the schema"}
            error = set_aside_error(attrs.evolve(record, unreadable=flaws), replaced=True)
            conn.execute(queries()["set_aside_unreadable"],
                         {"job_id": row["id"], "error": error, "now": now})
            conn.execute(
                queries()["close_attempt"],
                {"job_id": row["id"], "now": now, "outcome": AttemptOutcome.FAILED.value,
                 "error": error, "traceback": None},
            )

    def _autocommit(self, operation: str, work: Callable[[sqlite3.Connection], None]) -> None:
        """Run ``work`` outside a transaction (PRAGMAs that refuse one), retrying while busy."""
        conn = self._connection(operation)
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                work(conn)
                return
            except sqlite3.OperationalError as exc:
                if not (is_busy(exc) and time.monotonic() < deadline):
                    raise self._error(operation, exc) from exc
                time.sleep(random.uniform(0.005, 0.02))

    def check_health(self) -> None:
        """Raise ``StoreLost`` when the file at :attr:`path` is no longer the one opened.

        The one this store opened, by device and inode: deleted, or replaced by another. Open
        connections would go on with the deleted file, silently, while new ones (and other
        processes) use the new file.
        """
        try:
            now = file_identity(self.path)
        except (FileNotFoundError, NotADirectoryError):  # the file, or its folder, is gone
            now = None
        except OSError:
            return  # cannot look (permissions): the store's own calls will say what is wrong
        if now != self._identity:
            what = "deleted" if now is None else (
                "replaced (deleted and made again, or another file moved there)")
            raise StoreLost(
                f"sqlite storage {self.path}: the database file was {what} while in use: this "
                "process still writes to the old file, which new enqueues no longer reach"
            )

    def housekeep(self) -> None:
        """Checkpoint the WAL without waiting for anyone (``PASSIVE``).

        The copy into the database file and its fsync happen here, in the supervisor, instead of
        inside the commit of an enqueue or a job that crossed the threshold.
        """
        conn = self._connection("checkpoint the WAL")
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            if not (isinstance(exc, sqlite3.OperationalError) and is_busy(exc)):
                raise self._error("checkpoint the WAL", exc) from exc

    def _one(self, conn: sqlite3.Connection, name: str, params: Mapping[str, Any]) -> Any:
        rows = conn.execute(queries()[name], params).fetchall()
        return rows[0] if rows else None

    def _time(self, value: datetime) -> float:
        return to_epoch(value)

    def _now_in(self, db: sqlite3.Connection) -> datetime:
        return self.now()  # the store's clock: BEGIN IMMEDIATE holds the write lock meanwhile

    def _bind(self, name: str) -> str:
        return f":{name}"

    def _contains(self, placeholder: str) -> str:
        return f"instr(coalesce(params_masked, params), {placeholder}) > 0"

    def _select(self, operation: str, sql: str, params: Mapping[str, Any]) -> builtins.list[Any]:
        return self._transaction(
            operation, lambda conn: conn.execute(sql, params).fetchall(), write=False
        )

    def _record(self, row: Any) -> JobRecord:
        return job_of_row(row)

    def _named(self, operation: str, name: str, params: Mapping[str, Any]) -> builtins.list[Any]:
        return self._transaction(
            operation, lambda conn: conn.execute(queries()[name], params).fetchall()
        )

    def _named_many(self, operation: str, name: str, rows: builtins.list[Mapping[str, Any]]
                    ) -> None:
        self._transaction(operation, lambda conn: conn.executemany(queries()[name], rows))

    def _read_time(self, value: Any) -> datetime:
        return stamp(value)

    def close(self) -> None:
        """Close every thread's connection; the store must not be used afterwards."""
        with self._connections_lock:
            self._closed = True
            connections, self._connections = self._connections, {}
            wal, self._wal = self._wal, None
        for conn in connections.values():  # best effort: the file stays consistent either way
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        if wal is not None and wal[0] == os.getpid() and wal[1] is not None:
            wal[1].close()

