"""Internal: jobkit's two log files, and the job log that writes every job event to them.

The library never adds a sink by itself (``jobkit/__init__`` calls ``logger.disable("jobkit")``);
the worker and the CLI call :func:`configure_logging`, which adds

- ``<dir>/background_jobs.log``: every state change of every job (id, name, method, masked
  params, status, attempt, time) and the lines jobs log through ``self.log``;
- ``<dir>/background_jobs_errors.log``: failures, with their tracebacks.

Text lines are one record per line: newlines and other control characters in messages and
params are escaped, and a traceback follows as lines that start with ``  | ``, so no input can
forge a record. JSON lines are loguru's ``serialize`` format. Worker processes forward their
records to the supervisor's sinks (:mod:`jobkit.worker.logpipe`), so one process owns each file and
its rotation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from datetime import timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import attrs
from loguru import logger

from jobkit.masking import has_secrets, mask_secrets
from jobkit.records import EventKind, JobEvent, JobRecord

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime
    from typing import TextIO

    import pluggy
    from loguru import Logger, Record

    from jobkit.config import LoggingSettings

EVENTS_FILE = "background_jobs.log"
ERRORS_FILE = "background_jobs_errors.log"
_FIELDS = ("job_id", "job_name", "method", "attempt", "status", "event")
#: ``{time:YYYY-MM-DDTHH:mm:ss.SSSSSSZZ!UTC}`` in loguru's tokens; the time is formatted by
#: :func:`_text_format` with ``strftime`` (C), which costs a fraction of loguru's formatter: the
#: worker's supervisor writes two lines per job.
_TEXT_LINE = "{extra[_jobkit_time]} | {level: <7} | {extra[_jobkit_line]}{extra[_jobkit_tb]}\n"
#: A failed attempt is an error even when it will be retried: its traceback belongs in the
#: errors file.
_LEVELS = {EventKind.FAILED: "ERROR", EventKind.RETRYING: "ERROR"}


@attrs.frozen
class LogFiles:
    """The sinks :func:`configure_logging` added."""

    events: Path
    errors: Path
    handler_ids: tuple[int, ...]

    def remove(self) -> None:
        """Flush and remove the sinks."""
        from jobkit.logsinks import forget

        for handler_id in self.handler_ids:
            forget(handler_id)
            logger.remove(handler_id)


_BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape(text: str) -> str:
    """``text`` on one line, its control characters and Unicode line breaks escaped.

    A newline shows as ``\\n``, NEL as ``\\x85``, LINE SEPARATOR as ``\\u2028``; other
    characters, accents included, are kept.
    """
    if text.isprintable():  # none of the characters escaped is printable: nothing to do
        return text
    return _BREAKS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _is_job_record(record: Record) -> bool:
    name = record["name"] or ""
    return name == "jobkit" or name.startswith("jobkit.") or "job_id" in record["extra"]


def _text_format(record: Record) -> str:
    extra = record["extra"]
    extra["_jobkit_time"] = _utc_text(record["time"])
    extra["_jobkit_line"] = _line_text(extra, record["message"])
    extra["_jobkit_tb"] = _traceback_lines(traceback_text(record))
    return _TEXT_LINE


def _utc_text(when: datetime) -> str:
    """``when`` as the text format shows it: UTC, with microseconds."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")


def _line_text(extra: Mapping[str, Any], message: str) -> str:
    """The text format's line after the level: the job fields ``extra`` has, the message."""
    fields = [f"{key}={extra[key]}" for key in _FIELDS if key in extra]
    if "params" in extra:
        fields.append(f"params={extra['params']}")
    # one escape for the whole line: it works character by character, and the separators hold
    # no character it changes
    return escape(" | ".join(filter(None, [" ".join(fields), message])))


def _traceback_lines(tb: str | None) -> str:
    """A traceback as the text format shows it after its line: ``\\n  | `` before each line."""
    return "".join(f"\n  | {escape(line)}" for line in str(tb).splitlines()) if tb else ""


def traceback_text(record: Record) -> str | None:
    """The traceback a record shows, as Python prints it; None when it has none.

    That is its ``traceback`` value (a job's failure, or a record sent by a worker process,
    whose traceback object cannot cross the pipe), else its exception's.
    """
    tb = record["extra"].get("traceback")
    exc = record["exception"]
    if tb is None and exc is not None:
        import traceback

        tb = "".join(traceback.format_exception(exc.type, exc.value, exc.traceback))
    return None if tb is None else str(tb)


#: loguru's default line, without colours: the ``text`` of a JSON record.
_JSON_TEXT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line} - {message}\n"


def _json_format(record: Record) -> str:
    """The ``text`` of a JSON record: loguru's default line, then an exception's traceback.

    The traceback is also set as ``extra.traceback``, so a worker process's record reads as one
    of this process.
    """
    if record["exception"] is None:
        return _JSON_TEXT
    record["extra"]["traceback"] = traceback_text(record)
    return _JSON_TEXT + "{extra[traceback]}"


def console_format(record: Record) -> str:
    """A short line for the terminal: time, level, the job it concerns, the message."""
    extra = record["extra"]
    extra["_jobkit_console"] = _console_text(extra, record["message"])
    extra["_jobkit_clock"] = _clock_text(record["time"])
    return _CONSOLE_LINE


#: The line of :func:`console_format`.
_CONSOLE_LINE = "{extra[_jobkit_clock]} {level: <7} {extra[_jobkit_console]}\n"


def _console_text(extra: Mapping[str, Any], message: str) -> str:
    """The console's line after the level: the job ``extra`` names, if any, and the message."""
    job = ""
    if "job_id" in extra:
        parts = [str(extra["job_id"])]
        if "job_name" in extra:
            parts.append(f"{extra['job_name']}.{extra.get('method', '')}")
        if "attempt" in extra:
            parts.append(f"#{extra['attempt']}")
        job = f"[{' '.join(parts)}] "
    return escape(job + message)


def _clock_text(when: datetime) -> str:
    """``when`` as the console shows it, in its own zone."""
    return when.strftime("%H:%M:%S")  # C, not loguru's formatter


class _ToLoguru(logging.Handler):
    """Hands a standard-library record (a database driver's) to loguru, as a jobkit line."""

    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelname if record.levelname in _STD_LEVELS else record.levelno
        logger.log(level, "{name}: {message}", name=record.name, message=record.getMessage())


_STD_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: Standard-library loggers of the drivers jobkit uses, written to jobkit's log (warnings up).
DRIVER_LOGGERS = ("psycopg",)


def capture_driver_logs() -> None:
    """Send the warnings of the database drivers to jobkit's log instead of bare lines on stderr.

    psycopg's pool, for one, warns "error connecting ...". Idempotent.
    """
    for name in DRIVER_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(handler, _ToLoguru) for handler in target.handlers):
            target.addHandler(_ToLoguru(logging.WARNING))
            target.propagate = False


#: loguru's default stderr sink as ``repr(logger)`` shows it: the first handler (id 0), added
#: when loguru is imported; ids are never reused, so no sink added later has it.
_LOGURU_DEFAULT_SINK = re.compile(r"\(id=0, level=\d+, sink=<stderr>\)")
#: ``LOGURU_AUTOINIT`` values with which loguru adds no default sink (its own parsing).
_NO_AUTOINIT = ("0", "false", "no", "n", "nok", "off")


def _remove_loguru_default_sink() -> None:
    """Remove loguru's default stderr sink if it is still installed, and nothing else.

    With ``LOGURU_AUTOINIT=false`` (or no stderr at import) handler 0 is the application's own.
    """
    if os.environ.get("LOGURU_AUTOINIT", "").lower() in _NO_AUTOINIT:
        return
    if _LOGURU_DEFAULT_SINK.search(repr(logger)):
        with contextlib.suppress(ValueError):  # another thread removed it meanwhile
            logger.remove(0)


def configure_logging(
    settings: LoggingSettings,
    pm: pluggy.PluginManager | None = None,
    *,
    base_dir: str | Path | None = None,
    enqueue: bool = False,
) -> LogFiles:
    """Enable jobkit's logging and add its two file sinks; then call ``jobkit_configure_logging``.

    loguru's default stderr sink (handler 0, added when loguru is imported) is removed if it is
    still there: it would print every job event of the process without its job. Sinks the
    application added are kept. ``enqueue=True`` makes the sinks safe to feed from several
    processes (the worker).
    """
    directory = Path(base_dir or ".") / settings.dir
    directory.mkdir(parents=True, exist_ok=True)
    _remove_loguru_default_sink()
    logger.enable("jobkit")
    common: dict[str, Any] = {
        "filter": _is_job_record,
        "enqueue": enqueue,
        **({"context": "spawn"} if enqueue else {}),
        "rotation": settings.rotation,
        "retention": settings.retention,
        "encoding": "utf-8",
        "backtrace": False,
        "diagnose": False,
    }
    events, errors = directory / EVENTS_FILE, directory / ERRORS_FILE
    levels = ((events, settings.level), (errors, "ERROR"))
    if settings.format == "json":
        common["serialize"] = True
        common["format"] = _json_format
        ids = tuple(logger.add(path, level=level, **common) for path, level in levels)
    elif enqueue:
        common["format"] = _text_format
        ids = tuple(logger.add(path, level=level, **common) for path, level in levels)
    else:
        ids = tuple(_add_text_file(path, level, settings) for path, level in levels)
    capture_driver_logs()
    if pm is not None:
        pm.hook.jobkit_configure_logging(logger=logger, settings=settings)
    return LogFiles(events, errors, ids)


def _add_text_file(path: Path, level: str, settings: LoggingSettings) -> int:
    """Add a text log file as loguru's file sink would be, that the relay also writes to.

    The worker's log relay writes the lines of job events to it directly, a batch at a time
    (:mod:`jobkit.logsinks`); the file, its lines, rotation and retention are the same.
    """
    from jobkit.logsinks import LogFile, register, unless_relayed

    levelno = logger.level(level).no
    sink = LogFile(str(path), levelno=levelno, rotation=settings.rotation,
                   retention=settings.retention, encoding="utf-8")
    handler_id = logger.add(sink, level=levelno, format=_text_format, colorize=False,
                            filter=unless_relayed(_is_job_record), backtrace=False,
                            diagnose=False)
    register(handler_id, sink)
    return handler_id


def add_console(stream: TextIO, level: str = "INFO") -> int:
    """Add a sink that prints :func:`console_format` lines on ``stream``; its handler id.

    ``jobkit worker``'s terminal: the worker's log relay writes the lines of job events to it
    directly, as for the files (:mod:`jobkit.logsinks`).
    """
    from jobkit.logsinks import Console, register, unless_relayed

    levelno = logger.level(level).no
    handler_id = logger.add(stream, level=levelno, format=console_format,
                            filter=unless_relayed())
    register(handler_id, Console(stream, levelno))
    return handler_id


#: The bound value a job event carries until a sink takes the line (see :func:`_event_params`).
_RAW_PARAMS = "_jobkit_raw_params"


def _event_params(record: Record) -> None:
    """Set a job event's params as masked JSON text, only for a line some sink takes.

    Loguru runs a patcher after its level and ``disable`` checks, so an app that logs nothing
    does not encode the params of every job it enqueues.
    """
    extra = record["extra"]
    if _RAW_PARAMS in extra:
        extra["params"] = _params_text(extra.pop(_RAW_PARAMS))


def _params_text(params: Any) -> str:
    """``params`` as they are shown in the log: secrets masked, JSON text."""
    shown = mask_secrets(params) if has_secrets(params) else params  # most hold no secret
    return _PARAMS_ENCODER.encode(shown)


#: :func:`json.dumps` with these options builds an encoder per call; its text, for less.
_PARAMS_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True)


class _JobParamsText:
    """The params text of the jobs whose start was logged, for the line of how each ended.

    A job's events (started, then how it ended) show the same params: the text is masked and
    encoded once per attempt. It is kept from the ``started`` event, and reused once by a later
    event of the same job and attempt whose record's params equal the ones it was made from
    (the store's are decoded from the same row; a job that changed the params it was given
    makes them differ, and the text is made again). A worker records its completions in
    batches: the jobs of a batch have all started before the first one's end is logged.
    """

    #: The most texts kept; past it, all are forgotten (the end of an attempt logged by
    #: another process leaves its text here).
    LIMIT = 1024

    def __init__(self) -> None:
        #: (params, text) by (job id, attempt).
        self._started: dict[tuple[str, int], tuple[Any, str]] = {}

    def text(self, kind: EventKind, job: JobRecord) -> str:
        """The masked JSON text of the params of ``job``, whose event is ``kind``."""
        params, key = job.params, (job.id, job.attempts)
        if kind is EventKind.STARTED:
            text = _params_text(params)
            if len(self._started) >= self.LIMIT:
                self._started.clear()
            self._started[key] = (params, text)
            return text
        kept = self._started.pop(key, None)  # one thread at a time per attempt: no race
        if kept is not None and (kept[0] is params or kept[0] == params):
            return kept[1]
        return _params_text(params)


_job_params_text = _JobParamsText().text


#: The logger job events are written through (:func:`write_event`).
EVENT_LOGGER = logger.patch(_event_params)


class EventLine(NamedTuple):
    """The values of a job event's log line, as plain data.

    A worker process sends them to the supervisor, which writes the line (see
    :mod:`jobkit.worker.logpipe`).
    """

    level: str
    kind: str
    error: str | None
    job_id: str
    job_name: str
    method: str
    attempt: int
    status: str
    traceback: str | None
    #: The job's params; ``params_text`` is ``False``: as they are (masked and encoded only for
    #: a line some sink takes), ``True``: already masked JSON text.
    params: Any
    params_text: bool = False


def event_line(event: JobEvent, *, params_text: bool = False) -> EventLine:
    """The values of ``event``'s log line (its params as masked JSON text if ``params_text``)."""
    return EventLine(*event_values(event, params_text=params_text))


def event_values(event: JobEvent, *, params_text: bool = False) -> tuple[Any, ...]:
    """Internal: the values of :func:`event_line` as a plain tuple, cheaper to build and pickle."""
    job = event.job
    return (
        _LEVELS.get(event.kind, "INFO"),
        event.kind.value,
        event.error,
        job.id,
        job.name,
        job.method,
        job.attempts,
        job.status.value,
        event.traceback,
        _job_params_text(event.kind, job) if params_text else job.params,
        params_text,
    )


def write_event(line: EventLine, log: Logger | None = None) -> None:
    """Log a job event's line through ``log``, a patched :data:`EVENT_LOGGER` or that one."""
    # the keyword arguments of a log call are the record's extra too: no bind() (a new logger
    # per event) on the path of every job enqueued and run
    (log or EVENT_LOGGER).log(
        line.level,
        "{kind}: {error}" if line.error else "{kind}",
        kind=line.kind,
        **({"error": line.error} if line.error else {}),
        job_id=line.job_id,
        job_name=line.job_name,
        method=line.method,
        attempt=line.attempt,
        status=line.status,
        event=line.kind,
        traceback=line.traceback,
        **{"params" if line.params_text else _RAW_PARAMS: line.params},
    )


class EventTexts:
    """Internal: job events' lines as the text files and the console write them, for the relay.

    The worker's log relay writes the lines of job events to jobkit's own sinks itself
    (:mod:`jobkit.logsinks`), without a loguru record per line: these are the texts
    :func:`_text_format` and :func:`console_format` give the record :func:`write_event` makes,
    character for character. The texts of a time are kept for its second: a busy worker's
    lines share it.
    """

    def __init__(self) -> None:
        self._second: tuple[int, Any] = (0, None)  # a second since the epoch, and its zone
        self._utc = self._clock = ""

    def _stamp(self, when: datetime, timestamp: float) -> tuple[str, str]:
        """The start of ``when``'s UTC text (up to its microseconds) and its console clock."""
        # the second of ``when`` exactly: its microseconds are ``timestamp``'s, rounded
        second = (round(timestamp - when.microsecond / 1e6), when.tzinfo)
        if second[0] != self._second[0] or second[1] is not self._second[1]:
            start = when.replace(microsecond=0)
            self._utc = _utc_text(start)[:-len("000000+0000")]
            self._clock = _clock_text(start)
            self._second = second
        return self._utc, self._clock

    def texts(self, line: EventLine | tuple[Any, ...], when: datetime, timestamp: float, *,
              file: bool = True, console: bool = True) -> tuple[str, str]:
        """The line of ``line`` in a text file and on the console ("" for one not asked for).

        ``line`` may be the plain tuple of an :class:`EventLine`'s values; ``when`` is the
        event's time in the zone of its process, ``datetime.fromtimestamp(timestamp, zone)``.
        """
        level, kind, error, job_id, job_name, method, attempt, status, tb, params, is_text = line
        message = f"{kind}: {error}" if error else kind  # write_event's template, filled
        utc, clock = self._stamp(when, timestamp)
        level = f"{level: <7}"
        file_text = console_text = ""
        if file:
            # _line_text of the record write_event makes: every job field is there, in order
            text = (f"job_id={job_id} job_name={job_name} method={method} attempt={attempt} "
                    f"status={status} event={kind} "
                    f"params={params if is_text else _params_text(params)} | {message}")
            file_text = (f"{utc}{when.microsecond:06d}+0000 | {level} | {escape(text)}"
                         f"{_traceback_lines(tb)}\n")
        if console:
            # _console_text of the same record
            console_text = (f"{clock} {level} "
                            f"{escape(f'[{job_id} {job_name}.{method} #{attempt}] {message}')}\n")
        return file_text, console_text


def log_event(event: JobEvent) -> None:
    """Write the event to the job log (and, for failures, the error log).

    This is jobkit's own listener of every job event (:class:`jobkit.events.EventDispatcher`).
    An app that logs nothing (no sink, or jobkit's messages disabled, loguru's default for a
    library) does not build the line: loguru would drop it at once (:func:`events_dropped`).
    """
    if not events_dropped():
        write_event(event_line(event))


def events_dropped() -> bool:
    """Internal: whether loguru drops every line :func:`write_event` logs, as it stands.

    True when loguru has no sink, or has decided already that this module's records are
    disabled (``logger.disable("jobkit")``, the default until an app enables them). It reads
    loguru's own state (pinned to 0.7, as :mod:`jobkit.logsinks`): the same checks, in the same
    order, that loguru's ``_log`` makes before anything else, so no line that a sink would take
    is skipped. A name loguru has not decided yet is not dropped here: loguru decides it.
    """
    core = EVENT_LOGGER._core  # type: ignore[attr-defined]
    return not core.handlers or core.enabled.get(__name__) is False
