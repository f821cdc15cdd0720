"""Internal: jobkit's own sinks, which the worker's log relay can also write lines to directly.

``jobkit worker`` writes two lines per job, and loguru's work for each (a record, every sink
formatting it, a rotation check and a ``write()`` per line) was most of the supervisor's CPU.
The lines of job events that the relay (:mod:`jobkit.worker.logpipe`) receives from a worker
process need none of it: it writes them, a batch at a time, to the sinks registered here, which
are the ones :func:`jobkit.logs.configure_logging` (text format) and
:func:`jobkit.logs.add_console` add to loguru, and every other sink gets them through loguru as
before (:func:`route`, :func:`relayed`).

A :class:`LogFile` is loguru's own file sink (its rotation, retention and file names), given to
loguru as a stream: loguru's records are written and flushed one at a time as before, and
:meth:`LogFile.write_lines` writes a batch with the same rotation check per line, then flushes
once.
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from loguru import logger
from loguru._file_sink import FileSink  # loguru's path sinks are made of it

if TYPE_CHECKING:
    from datetime import datetime

    from loguru import Record

#: The buffer of a :class:`LogFile`: a batch of lines leaves in one ``write()``.
_BUFFER = 1 << 16
#: loguru's file sink keeps its file as ``_file``, which :class:`LogFile` flushes; were it not
#: so (another loguru), the file is line-buffered as loguru opens it, each line its own write.
_FLUSHABLE = "_file" in FileSink.__init__.__code__.co_names


class Stamped(str):
    """A line to write, with the time of its record (loguru's time rotation reads it)."""

    __slots__ = ("record",)
    record: dict[str, datetime]

    def __new__(cls, text: str, when: datetime) -> Stamped:
        """The line ``text``, logged at ``when``."""
        line = super().__new__(cls, text)
        line.record = {"time": when}
        return line


class LogFile:
    """A log file with loguru's rotation and retention, that also takes a batch of lines.

    Given to ``logger.add`` as a stream (``name`` and ``encoding`` as loguru shows a file sink),
    it writes and flushes each record loguru formats, as loguru's file sink does.
    """

    def __init__(self, path: str, *, levelno: int, rotation: Any, retention: Any,
                 encoding: str) -> None:
        self.name = f"'{path}'"  # loguru's name of a file sink: repr(logger) is unchanged
        self.encoding = encoding
        #: The level of the records this file takes (its handler's).
        self.levelno = levelno
        self._lock = threading.Lock()
        self._stopped = False
        self._sink: Any = FileSink(  # type: ignore[no-untyped-call]
            path, rotation=rotation, retention=retention, encoding=encoding,
            buffering=_BUFFER if _FLUSHABLE else 1)

    def _flush(self) -> None:
        file = getattr(self._sink, "_file", None)
        if file is not None:
            file.flush()

    def write(self, message: str) -> None:
        """Write one record loguru formatted (loguru checks rotation before it)."""
        with self._lock:
            try:
                self._sink.write(message)
            finally:
                self._flush()

    def write_lines(self, lines: Iterable[Stamped]) -> None:
        """Write ``lines`` in order, each after its rotation check, with one ``write()``.

        A line that cannot be written (a character its encoding lacks) is reported on stderr,
        as loguru reports a sink's error, and the others are written.
        """
        with self._lock:
            if self._stopped:
                return
            try:
                for line in lines:
                    try:
                        self._sink.write(line)
                    except Exception:
                        _report(self.name, line)
            finally:
                self._flush()

    def stop(self) -> None:
        """Close the file (loguru calls it when the sink is removed)."""
        with self._lock:
            self._stopped = True
            self._sink.stop()


class Console(NamedTuple):
    """A terminal stream that :func:`jobkit.logs.add_console` gave loguru."""

    stream: TextIO
    #: The level of the records it takes (its handler's).
    levelno: int

    def write_lines(self, lines: list[str]) -> None:
        """Write ``lines`` at once (an error is reported on stderr, as loguru would)."""
        try:
            self.stream.write("".join(lines))
            self.stream.flush()
        except Exception:
            _report(repr(self.stream), "".join(lines))


def _report(sink: str, line: str) -> None:
    """Tell on stderr that ``line`` could not be written to ``sink`` (loguru's ``catch=True``)."""
    try:
        sys.stderr.write(f"--- Logging error in jobkit's log relay, sink {sink} ---\n"
                         f"Line was: {line!r}\n")
        traceback.print_exc(file=sys.stderr)
        sys.stderr.write("--- End of logging error ---\n")
    except Exception:  # no stderr left to tell
        pass


_DIRECT: dict[int, LogFile | Console] = {}
_IDS = re.compile(r"\(id=(\d+), level=")
_relaying = threading.local()


def register(handler_id: int, sink: LogFile | Console) -> None:
    """Let the relay write directly to ``sink``, loguru's handler ``handler_id``."""
    _DIRECT[handler_id] = sink


def forget(handler_id: int) -> None:
    """Undo :func:`register` (the handler is being removed)."""
    _DIRECT.pop(handler_id, None)


class Route(NamedTuple):
    """Where the relay writes the lines of job events."""

    files: list[LogFile]
    consoles: list[Console]
    #: Some sink is not jobkit's: the lines go through loguru to it as well (:func:`relayed`).
    others: bool


def route() -> Route | None:
    """The registered sinks loguru has now; None when there is none (all go through loguru)."""
    ids = [int(found) for found in _IDS.findall(repr(logger))]  # loguru's handlers, by id
    sinks = [_DIRECT[handler_id] for handler_id in ids if handler_id in _DIRECT]
    if not sinks:
        return None
    return Route([sink for sink in sinks if isinstance(sink, LogFile)],
                 [sink for sink in sinks if isinstance(sink, Console)], len(sinks) < len(ids))


@contextlib.contextmanager
def relayed() -> Iterator[None]:
    """While in it, this thread's records skip the registered sinks (written to directly)."""
    _relaying.on = True
    try:
        yield
    finally:
        _relaying.on = False


def unless_relayed(check: Callable[[Record], bool] | None = None) -> Callable[[Record], bool]:
    """A loguru filter: ``check``, and not a record of a line the relay wrote directly."""
    if check is None:
        return lambda record: not getattr(_relaying, "on", False)
    return lambda record: not getattr(_relaying, "on", False) and check(record)
