"""Internal: how :class:`~jobkit.storage.postgres.PostgresStorage` reaches its server.

The URL (jobkit's own options taken out, the password redacted for messages), how each pooled
connection decodes what it reads (a value Python cannot hold fails its job instead of every
claim), and the pool's cheap check of a connection it hands out.
"""

from __future__ import annotations

import functools
import json
import select
import time
import weakref
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from jobkit.exceptions import ConfigError
from jobkit.records import UnreadableValue, decode_json

if TYPE_CHECKING:
    import psycopg
    from psycopg.adapt import Loader

#: What each of jobkit's pooled connections runs first: its inserts send their own ``NOTIFY``.
NOTIFIES_INSERTS = b"SET jobkit.notifies_inserts = 'on'"

#: URL query keys jobkit reads itself (every other key goes to libpq, e.g. ``sslmode``).
_OWN_KEYS = ("pool_size", "connect_timeout")


def configure_connection(conn: psycopg.Connection[Any]) -> None:
    """Decode this connection's json columns without raising; say it notifies its own inserts.

    A forged value Python cannot read (nesting too deep, a number too long) becomes
    ``UnreadableJSON``, which fails its job, instead of an error on every claim that would stop the
    queue behind it. Autocommit: a one-statement write (an enqueue) is its own transaction, without
    ``BEGIN`` and ``COMMIT`` round trips; :meth:`PostgresStorage._transaction` opens one
    explicitly. ``jobkit.notifies_inserts``: jobkit's enqueue statement sends the ``NOTIFY`` of
    the job it inserts, so the schema's insert trigger skips this session (``postgres.sql``,
    ``migration_11``).
    """
    from psycopg.pq import Format
    from psycopg.types.json import set_json_loads

    set_json_loads(lambda data: decode_json(json.loads, data), conn)
    oid = conn.adapters.types["timestamptz"].oid
    for fmt in (Format.TEXT, Format.BINARY):
        inner = conn.adapters.get_loader(oid, fmt)
        if inner is not None:
            conn.adapters.register_loader(oid, _tolerant_loader(inner))
    conn.autocommit = True
    conn.execute(NOTIFIES_INSERTS)


@functools.cache
def _tolerant_loader(inner: type[Loader]) -> type[Loader]:
    """A loader of ``timestamptz`` that reads what Python cannot hold instead of raising.

    ``'infinity'``, or a year after 9999 or before 1, reads as :class:`UnreadableValue`; psycopg's
    own loader (``inner``, in C when installed) does the rest of the work.
    """
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
#: to the server (see :class:`Liveness`).
CHECK_AFTER_IDLE = 1.0

#: At most one "connection lost" warning per process in this many seconds (a server restart
#: breaks every pooled connection at once).
WARN_EVERY = 10.0


class Liveness:
    """The pool's check of a connection it hands out.

    A round trip (psycopg's ``check_connection``, an empty query) costs an enqueue about a
    fifth of its time, so, as pgx does, it is made only for a connection idle longer than
    :data:`CHECK_AFTER_IDLE`, or one the server sent something since its last use: a server
    that ends a connection (``pg_terminate_backend``, a restart) sends an error and closes it,
    which makes the socket readable; nothing else is sent to an idle connection that does not
    ``LISTEN``. A connection that fails the check is replaced by the pool, and the loss is
    logged as a warning naming ``where`` (at most once in :data:`WARN_EVERY` seconds), so an
    outage the pool rode out is still reported.
    """

    def __init__(self, where: str = "postgresql storage") -> None:
        self._used: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self._where = where
        self._warned = -WARN_EVERY

    def used(self, conn: psycopg.Connection[Any]) -> None:
        """Note that ``conn`` was just used.

        Not through the pool's ``reset`` callback: with one, the pool hands every returned
        connection to a thread of its own.
        """
        self._used[conn] = time.monotonic()

    def check(self, conn: psycopg.Connection[Any]) -> None:
        """Raise a psycopg error if ``conn`` is not fit to be handed out."""
        from psycopg_pool import ConnectionPool

        used = self._used.get(conn)
        if used is None or time.monotonic() - used > CHECK_AFTER_IDLE or _has_input(conn):
            try:
                ConnectionPool.check_connection(conn)
            except Exception as exc:
                self._lost(exc)
                raise

    def _lost(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned < WARN_EVERY:
            return
        self._warned = now
        from jobkit.lazylog import logger

        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        logger.warning(
            "{where}: connection lost ({reason}); opening a new one", where=self._where,
            reason=reason,
        )


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


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """``postgresql://...?pool_size=8&sslmode=require`` -> (libpq URL, jobkit's own options).

    libpq's options are passed on exactly as written: decoded and encoded again, a ``%20`` in
    ``options=-c%20TimeZone%3DUTC`` came back as ``+``, which libpq does not read as a space.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(
            f"storage: {redact(url)!r} is not a PostgreSQL URL like "
            "postgresql://user:password@host:5432/dbname"
        )
    own: dict[str, str] = {}
    rest = []
    for piece in parts.query.split("&"):
        key, _, value = piece.partition("=")
        if unquote_plus(key) in _OWN_KEYS:
            own[unquote_plus(key)] = unquote_plus(value)
        elif piece:
            rest.append(piece)
    return urlunsplit(parts._replace(query="&".join(rest))), own


def redact(url: str) -> str:
    """The URL with its password replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


