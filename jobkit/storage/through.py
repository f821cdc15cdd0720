"""Internal: enqueue through the caller's own connection, inside the caller's transaction.

``run_background_job(..., connection=conn)`` and ``enqueue_many(..., connection=conn)`` hand
their checked jobs to :func:`enqueue_through`: it unwraps a SQLAlchemy session or connection
and a Django connection to their DBAPI connection (:func:`dbapi_connection`, importing neither
library unless given one of their objects) and lets a store that :class:`EnqueuesThrough`
insert the rows with it, in the caller's transaction, without committing (docs/transactions.md).
"""

from __future__ import annotations

import abc
import builtins
from typing import TYPE_CHECKING, Any

from jobkit.exceptions import ConfigError

if TYPE_CHECKING:
    from jobkit.records import JobRecord, NewJob
    from jobkit.storage.base import Storage


class EnqueuesThrough(abc.ABC):
    """A store that can insert jobs with the caller's DBAPI connection (SQLite, PostgreSQL)."""

    @abc.abstractmethod
    def accepts(self, connection: object) -> bool:
        """Whether ``connection`` is a DBAPI connection of the kind this store inserts with."""

    @property
    @abc.abstractmethod
    def connection_needed(self) -> str:
        """What this store needs, as an error names it (``the SQLite store ... needs ...``)."""

    @abc.abstractmethod
    def enqueue_through(self, connection: Any,
                        jobs: builtins.list[NewJob]) -> builtins.list[JobRecord]:
        """Insert ``jobs`` with ``connection`` (one it :meth:`accepts`) in its transaction.

        Their records. Nothing is committed: the jobs exist for workers when the caller commits,
        and never when the caller rolls back. ``ConfigError`` when ``connection`` is to another
        database the store can tell; ``StorageError`` when the insert fails (the caller's
        transaction is then the caller's to roll back).
        """


def kind_of(value: object) -> str:
    """The dotted name of ``value``'s class, as an error message names what was given."""
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def given(connection: object, dbapi: object) -> str:
    """What a caller gave, as an error names it: its class, and the DBAPI one it wraps."""
    if dbapi is connection:
        return kind_of(connection)
    return f"{kind_of(connection)} (its DBAPI connection: {kind_of(dbapi)})"


def _refuse(what: str) -> ConfigError:
    return ConfigError(errors=[f"call: connection: {what}"])


def _sqlalchemy(connection: Any) -> Any:
    """The DBAPI connection of a SQLAlchemy ``Session`` or ``Connection``, in its transaction."""
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.orm import Session, scoped_session

    if isinstance(connection, (Session, scoped_session)):
        connection = connection.connection()  # begins the session's transaction if none
    if isinstance(connection, Engine):
        raise _refuse("a SQLAlchemy Engine has no transaction of yours: give a Connection "
                      "(with engine.begin() as conn) or a Session")
    if not isinstance(connection, Connection):
        raise _refuse(f"expected a SQLAlchemy Session or Connection (not async), got "
                      f"{kind_of(connection)}")
    if not connection.in_transaction():
        connection.begin()  # as a statement through it would (autobegin): commit() ends it
    return connection.connection.dbapi_connection


def _django(connection: Any) -> Any:
    """The DBAPI connection of a Django connection (``django.db.connection``)."""
    if not hasattr(connection, "ensure_connection"):
        raise _refuse(f"expected a Django connection (django.db.connection or "
                      f"connections[alias]), got {kind_of(connection)}")
    connection.ensure_connection()
    return connection.connection


def dbapi_connection(connection: object) -> Any:
    """The DBAPI connection to insert with: ``connection`` itself, or what it wraps.

    A SQLAlchemy ``Session`` or ``Connection`` and a Django connection are unwrapped (their
    libraries are imported only then); any other object is taken as a DBAPI connection, which
    the store checks.
    """
    module = type(connection).__module__
    if module.startswith("sqlalchemy."):
        return _sqlalchemy(connection)
    if module.startswith("django."):
        return _django(connection)
    return connection


def enqueue_through(storage: Storage, connection: object,
                    jobs: builtins.list[NewJob]) -> builtins.list[JobRecord]:
    """Store checked ``jobs`` through the caller's ``connection``, uncommitted; their records.

    ``ConfigError`` for a store that cannot (memory, a plugin's), for unique jobs (``unique:``
    or an ``idempotency_key``: their check runs under the store's own lock and transaction),
    and for a connection of the wrong kind.
    """
    if not isinstance(storage, EnqueuesThrough):
        raise _refuse(f"storage {type(storage).__name__} cannot store a job through your "
                      f"connection (SQLite and PostgreSQL can)")
    unique = sorted({job.name for job in jobs if job.unique_key is not None})
    if unique:
        raise _refuse(f"job {', '.join(unique)} is unique (unique: or an idempotency_key), "
                      "which is checked in jobkit's own transaction: enqueue it without "
                      "connection=")
    dbapi = dbapi_connection(connection)
    if not storage.accepts(dbapi):
        raise _refuse(f"{storage.connection_needed}, got {given(connection, dbapi)}")
    return storage.enqueue_through(dbapi, jobs) if jobs else []
