"""Internal: worker processes' log records, sent to the supervisor on a pipe and logged there.

One process owns each log file and its rotation: the supervisor. Each worker process sends its
records on a pipe of its own (:func:`forward_to`); one thread per process in the supervisor logs
them through the supervisor's sinks (:func:`relay`).

Not through loguru's ``enqueue=True`` queue: that one queue is shared by every process under one
lock, and a process killed (SIGKILL) while holding the lock would block the supervisor and every
other worker process at their next log line, for ever.

A busy worker logs two lines per job, so the records travel light: as plain tuples, pickled in
batches sent every :data:`FLUSH_DELAY` seconds at most (at once for a warning or worse, or when
:data:`BATCH` are waiting). A process killed outright loses at most the lines of its last
:data:`FLUSH_DELAY` seconds; the supervisor logs the death itself, and the job it was running.

A record logged through loguru in the worker process travels as a :class:`Line`. A job event
(two per job) does not go through loguru there at all: the process's ``jobkit.logs`` plugin is
replaced by one that sends the values of the event's line (:class:`Event`), and the supervisor
logs it, once, as :func:`jobkit.logs.log_event` would have (:func:`forward_events`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import threading
import time
from datetime import datetime, timedelta, timezone
from threading import current_thread
from typing import TYPE_CHECKING, Any, NamedTuple

from loguru import logger

from jobkit.logs import (
    EVENT_LOGGER,
    EventLine,
    EventTexts,
    capture_driver_logs,
    event_values,
    traceback_text,
    write_event,
)
from jobkit.logsinks import Route, Stamped, relayed, route
from jobkit.shield import shielded

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from loguru import Message, Record

    from jobkit.events import EventDispatcher

#: Seconds a record may wait in a worker process before it is sent.
FLUSH_DELAY = 0.05
#: Records sent together at most (a batch is sent at once when it is this long). A batch costs
#: both processes a few system calls and the supervisor a look at its sinks (about 50 us in
#: all); a busy worker fills 64 in a few milliseconds, 256 in about 25 (issue 17).
BATCH = 256
#: Records at this level or above are sent at once (loguru's WARNING is 30).
URGENT_LEVEL = 30


class Line(NamedTuple):
    """One log record as sent from a worker process: plain values, cheap to pickle."""

    level: str
    level_no: int
    message: str
    timestamp: float
    utc_offset: float  # seconds; the record's time is shown in its own zone
    zone: str | None
    name: str | None
    function: str
    line: int
    module: str
    file_name: str
    file_path: str
    process_id: int
    process_name: str
    thread_id: int
    thread_name: str
    extra: dict[str, Any]
    exception: Any  # loguru's RecordException, or None


class Event(NamedTuple):
    """A job event's line from a worker process: its values, when and where it happened.

    It travels as a plain tuple (:data:`Sent`), its line too: pickling a named tuple calls
    Python code for each, several times the cost of the tuple's values.
    """

    line: EventLine
    timestamp: float
    utc_offset: float
    zone: str | None
    process_id: int
    process_name: str
    thread_id: int
    thread_name: str


#: An :class:`Event` as it is sent: the tuples of its values.
Sent = tuple[tuple[Any, ...], float, float, "str | None", int, str, int, str]


def _event(sent: Event | Sent) -> Event:
    """The :class:`Event` of what a worker process sent."""
    return sent if isinstance(sent, Event) else Event(EventLine(*sent[0]), *sent[1:])


def _line(record: Record) -> Line:
    when = record["time"]
    offset = when.utcoffset()
    extra = record["extra"]
    if record["exception"] is not None and "traceback" not in extra:
        # the traceback object cannot be pickled: its text goes, for the supervisor's sinks
        extra = {**extra, "traceback": traceback_text(record)}
    return Line(
        record["level"].name,
        record["level"].no,
        record["message"],
        when.timestamp(),
        offset.total_seconds() if offset is not None else 0.0,
        when.tzname(),
        record["name"],
        record["function"],
        record["line"],
        record["module"],
        record["file"].name,
        record["file"].path,
        record["process"].id,
        record["process"].name,
        record["thread"].id,
        record["thread"].name,
        extra,
        record["exception"],
    )


class _Forwarder:
    """The worker process's sink: batches :class:`Line` records and sends them."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.lock = threading.Lock()  # the pipe is this process's alone: its threads take turns
        self.pending: list[Line | Sent] = []
        self.due = threading.Event()  # set when a batch has begun: the flusher sends it soon
        self.process = (os.getpid(), multiprocessing.current_process().name)
        #: The second of the last event, and this process's zone then (UTC offset, name).
        self.second = -1
        self.zone: tuple[float, str] = (0.0, "UTC")
        threading.Thread(target=self._flusher, name="jobkit-log-forward", daemon=True).start()

    def sink(self, message: Message) -> None:
        line = _line(message.record)
        self.put(line, line.level_no >= URGENT_LEVEL)

    def event(self, line: tuple[Any, ...]) -> None:
        """Send a job event's line, the values of an :class:`EventLine` (at once for an error)."""
        now = time.time()
        if int(now) != self.second:  # the zone changes on a second, if ever
            local = time.localtime(now)
            self.second, self.zone = int(now), (float(local.tm_gmtoff), local.tm_zone)
        thread = current_thread()
        self.put((line, now, *self.zone, *self.process, thread.ident or 0, thread.name),
                 line[0] != "INFO")

    def put(self, item: Line | Sent, urgent: bool) -> None:
        """Queue ``item`` for the next batch; send the batch now if it is ``urgent`` or full."""
        with self.lock:
            self.pending.append(item)
            count = len(self.pending)
        if count >= BATCH or urgent:
            self.flush()
        elif count == 1:
            self.due.set()

    def flush(self) -> None:
        """Send what is waiting."""
        # shielded: a job's interrupt between two writes would leave half a batch in the pipe;
        # OSError: the supervisor is gone, nobody is left to log to
        with shielded(), self.lock, contextlib.suppress(OSError):
            batch, self.pending = self.pending, []
            if batch:
                self.connection.send_bytes(_pickled(batch))

    def _flusher(self) -> None:
        while True:
            self.due.wait()
            time.sleep(FLUSH_DELAY)
            self.due.clear()
            # nothing to log a failure to: the thread lives on, the next flush tries again
            with contextlib.suppress(Exception):
                self.flush()


def _pickled(batch: list[Line | Sent]) -> bytes:
    """The batch, pickled, with the lines that cannot be pickled sent as text.

    A line that cannot be pickled (an ``extra`` value or an exception class only this process
    knows) goes as text, so the others are not lost with it (an :class:`Event` holds only text
    and numbers).
    """
    try:
        return pickle.dumps(batch, pickle.HIGHEST_PROTOCOL)
    except Exception:
        kept = []
        for line in batch:
            try:
                pickle.dumps(line, pickle.HIGHEST_PROTOCOL)
            except Exception:
                assert isinstance(line, Line)
                line = line._replace(
                    extra={key: value if isinstance(value, str) else repr(value)
                           for key, value in line.extra.items()},  # a traceback's text stays
                    exception=None,
                    message=line.message if line.exception is None
                    else f"{line.message} ({line.exception!r})",
                )
            kept.append(line)
        return pickle.dumps(kept, pickle.HIGHEST_PROTOCOL)


_forwarder: _Forwarder | None = None
#: Held by a relay thread while it logs a batch it received (never while it waits for one):
#: the threads take turns by batch instead of meeting at each sink's lock at every line.
_WRITING = threading.Lock()

#: Record keys whose values the relay rebuilds with loguru's own types.
_TYPED = ("time", "file", "process", "thread")


def forward_to(connection: Connection) -> None:
    """In a worker process: send every record to the supervisor on ``connection``.

    ``connection`` is a pipe of this process's own, where :func:`relay` logs the records
    through the supervisor's sinks.
    """
    global _forwarder
    logger.remove()
    logger.enable("jobkit")
    capture_driver_logs()
    _forwarder = _Forwarder(connection)
    logger.add(_forwarder.sink, level=0, format="{message}", catch=True)


def forward_events(events: EventDispatcher) -> None:
    """In a worker process: send the lines of job events to the supervisor as their values.

    Called after :func:`forward_to`. The values travel instead of log records (the supervisor
    logs them through :func:`jobkit.logs.write_event`): with two events per job, loguru's work
    for them is done once, in the supervisor, instead of in both processes.
    """
    forwarder = _forwarder
    if forwarder is not None:
        # the job log of this process: the event's line, its params masked and encoded here
        events.log = lambda event: forwarder.event(event_values(event, params_text=True))


def flush_forwarded() -> None:
    """Send the records still waiting in this worker process (before it exits)."""
    if _forwarder is not None:
        _forwarder.flush()


def relay(connection: Connection, name: str) -> threading.Thread:
    """In the supervisor: log what one worker process sends on ``connection``, in a new thread.

    The thread (see :func:`forward_to`) runs until the process closes the pipe or dies (a
    batch it was killed halfway through sending is dropped). A process frozen halfway through
    a batch holds up only its own thread: the threads take turns (:data:`_WRITING`) only to log
    a batch they have received whole.

    The lines of job events go to jobkit's own sinks directly, a batch at a time
    (:mod:`jobkit.logsinks`), and through loguru only to the other sinks, if any; every other
    record goes through loguru.
    """
    current: list[Line | Event] = []
    zones: dict[tuple[float, str | None], timezone] = {}
    kinds: dict[str, Any] = {}
    texts = EventTexts()
    levels: dict[str, int] = {}

    def zone_of(utc_offset: float, name: str | None) -> timezone:
        """The zone of a worker process: its offset from UTC (seconds), its name."""
        zone = zones.get((utc_offset, name))
        if zone is None:
            offset = timedelta(seconds=utc_offset)
            zone = timezone(offset, name) if name else timezone(offset)
            zones[utc_offset, name] = zone
        return zone

    def restore(record: Record) -> None:
        """Give the supervisor's record the worker process's values.

        For an event, only its time, process and thread: the rest is the supervisor's
        :func:`jobkit.logs.write_event`.
        """
        line = current[0]
        # the supervisor's own record gives loguru's types (its datetime formats loguru's
        # tokens); loguru's stubs declare neither their constructors nor these keys as writable
        fields: Any = record
        if not kinds:
            kinds.update({key: type(record[key]) for key in _TYPED})  # type: ignore[literal-required]
        fields.update(
            time=kinds["time"].fromtimestamp(line.timestamp, zone_of(line.utc_offset, line.zone)),
            process=kinds["process"](line.process_id, line.process_name),
            thread=kinds["thread"](line.thread_id, line.thread_name),
        )
        if isinstance(line, Line):
            fields.update(
                name=line.name,
                function=line.function,
                line=line.line,
                module=line.module,
                file=kinds["file"](line.file_name, line.file_path),
                extra=line.extra,
                exception=line.exception,
            )

    patched = logger.patch(restore)
    patched_events = EVENT_LOGGER.patch(restore)

    def run() -> None:
        with connection:
            while True:
                try:
                    batch = pickle.loads(connection.recv_bytes())
                except (EOFError, OSError):
                    return
                except Exception:  # a batch that cannot be rebuilt here: skip it
                    continue
                with _WRITING:
                    _write(batch)

    def _write(batch: list[Line | Event | Sent]) -> None:
        sinks = route()
        if sinks is None:  # no sink of jobkit's: every line through loguru
            for item in batch:
                _log(item)
            return
        events: list[Event | Sent] = []
        for item in batch:
            if not isinstance(item, Line):
                events.append(item)
                continue
            if events:
                _write_events(events, sinks)
                events = []
            _log(item)
        if events:
            _write_events(events, sinks)

    def _log(item: Line | Event | Sent) -> None:
        if not isinstance(item, Line):
            event = _event(item)
            current[:] = [event]
            write_event(event.line, patched_events)
            return
        current[:] = [item]
        try:
            patched.log(item.level, item.message)
        except ValueError:  # a level only the worker process knows: by its number
            with contextlib.suppress(ValueError):
                patched.log(item.level_no, item.message)

    def _write_events(events: list[Event | Sent], sinks: Route) -> None:
        """Write the lines of ``events`` to jobkit's sinks, and through loguru to the others."""
        files, consoles = sinks.files, sinks.consoles
        lines = []
        for line, timestamp, utc_offset, zone, *_ in events:  # as sent: no Event built
            when = datetime.fromtimestamp(timestamp, zone_of(utc_offset, zone))
            file_text, console_text = texts.texts(line, when, timestamp, file=bool(files),
                                                  console=bool(consoles))
            level = levels.get(line[0])
            if level is None:
                level = levels[line[0]] = logger.level(line[0]).no
            lines.append((level, Stamped(file_text, when), console_text))
        for file in files:
            taken = [text for level, text, _ in lines if level >= file.levelno]
            if taken:
                file.write_lines(taken)
        for console in consoles:
            shown = [text for level, _, text in lines if level >= console.levelno]
            if shown:
                console.write_lines(shown)
        if sinks.others:
            with relayed():  # jobkit's sinks have them: loguru gives them to the others
                for event in events:
                    _log(event)

    thread = threading.Thread(target=run, name=f"{name}-logs", daemon=True)
    thread.start()
    return thread
