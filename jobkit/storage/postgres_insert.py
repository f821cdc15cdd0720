"""Internal: PostgreSQL's one-at-a-time enqueue, sent to libpq without a psycopg cursor.

An enqueue is one statement (``postgres.sql``'s ``enqueue``). Through a cursor, psycopg spent
about 35 us of the caller's CPU on it beyond libpq's own work (issue 17, ``bench/PROFILE.md``):
the query's conversion, a transformer and its dumpers per cursor, the result's loaders. Here the
statement is prepared once per connection under a name of its own, its parameters go as text
(``str``, ``int``, ``None`` and aware datetimes, the only types the enqueue binds), and its row
comes back in binary (an ``int8`` and two ``timestamp``: no DateStyle to parse). The connection's
own ``wait`` runs each step, so Ctrl-C cancels the statement as it would a cursor's, and a
failure is raised as psycopg's error for the result, as a cursor raises it.
"""

from __future__ import annotations

import functools
import re
import struct
import weakref
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg
    from psycopg.pq.abc import PGresult

#: The prepared statement's name on each connection (psycopg's own are ``_pg3_<n>``).
NAME = b"jobkit_enqueue"
_BOUND = re.compile(r"%\((\w+)\)s")
#: PostgreSQL's binary ``timestamp``: microseconds since 2000-01-01 (here read as UTC).
_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
_INT8 = struct.Struct("!q")

#: The connections this process prepared the statement on, with their client encoding.
_prepared: weakref.WeakKeyDictionary[psycopg.Connection[Any], str] = (
    weakref.WeakKeyDictionary())


@functools.cache
def positional(sql: str) -> tuple[bytes, tuple[str, ...]]:
    """``sql`` with its ``%(name)s`` parameters numbered ``$1, $2 ...``; the names in order."""
    names: list[str] = []

    def number(found: re.Match[str]) -> str:
        if found[1] not in names:
            names.append(found[1])
        return f"${names.index(found[1]) + 1}"

    return _BOUND.sub(number, sql).encode(), tuple(names)


def _text(value: Any, encoding: str) -> bytes | None:
    """A parameter in PostgreSQL's text format; the server infers its type from the statement."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode(encoding)
    if isinstance(value, datetime):
        return value.isoformat().encode()  # aware: every time jobkit binds is
    if isinstance(value, int):
        return b"%d" % value
    raise TypeError(f"the enqueue statement binds no {type(value).__name__}")


@functools.cache
def _driver() -> tuple[Any, Any, Any, Any]:
    """What this module uses of psycopg, imported once.

    ``psycopg.errors``, ``psycopg.generators``, ``ExecStatus`` and ``Format``.
    """
    from psycopg import errors, generators
    from psycopg.pq import ExecStatus, Format

    return errors, generators, ExecStatus, Format


def _time(value: bytes) -> datetime:
    return _EPOCH + timedelta(microseconds=_INT8.unpack(value)[0])


def _result(conn: psycopg.Connection[Any], encoding: str) -> PGresult:
    """Wait for the statement sent on ``conn``; its result, or psycopg's error for it."""
    errors, generators, status, _ = _driver()
    results: list[PGresult] = conn.wait(generators.execute(conn.pgconn))
    result = results[-1]
    if result.status not in (status.TUPLES_OK, status.COMMAND_OK):
        raise errors.error_from_result(result, encoding=encoding)
    return result


def _prepare(conn: psycopg.Connection[Any], statement: bytes) -> str:
    """Prepare ``statement`` on ``conn`` under :data:`NAME`; the connection's encoding."""
    encoding = conn.info.encoding
    conn.pgconn.send_prepare(NAME, statement)
    _result(conn, encoding)
    _prepared[conn] = encoding
    return encoding


def insert(conn: psycopg.Connection[Any], sql: str,
           params: Mapping[str, Any]) -> tuple[int, datetime, datetime]:
    """Run the one-row insert ``sql`` with ``params`` on ``conn`` (autocommit, idle).

    ``sql`` returns the new id and two times as ``timestamp`` (UTC); they come back as an int
    and aware datetimes. The statement is prepared on ``conn`` the first time, and again when
    it was deallocated: psycopg deallocates every prepared statement of a connection after a
    rollback (``DEALLOCATE ALL``).
    """
    errors, _, _, formats = _driver()
    binary = formats.BINARY
    statement, names = positional(sql)
    pgconn = conn.pgconn
    with conn.lock:
        encoding = _prepared.get(conn) or _prepare(conn, statement)
        values = [_text(params[name], encoding) for name in names]
        try:
            pgconn.send_query_prepared(NAME, values, result_format=binary)
            result = _result(conn, encoding)
        except errors.InvalidSqlStatementName:
            _prepare(conn, statement)
            pgconn.send_query_prepared(NAME, values, result_format=binary)
            result = _result(conn, encoding)
    key, created_at, available_at = (result.get_value(0, column) for column in range(3))
    assert key is not None and created_at is not None and available_at is not None
    return _INT8.unpack(key)[0], _time(created_at), _time(available_at)
