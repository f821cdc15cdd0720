"""The worker's log relay writes job event lines to jobkit's sinks itself: the same bytes.

The relay (jobkit/worker/logpipe.py) writes the lines of job events a batch at a time to the
sinks jobkit added (jobkit/logsinks.py), instead of one loguru record per line. Each test runs
the same batch through that path and through loguru alone (the relay's path before), and the
files and the console must hold the same text, rotated at the same line.
"""

from __future__ import annotations

import io
import multiprocessing
import pickle
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from jobkit import JobKit, hookimpl
from jobkit.config import Config, LoggingSettings
from jobkit.logs import EVENTS_FILE, EventLine, add_console, configure_logging
from jobkit.logsinks import LogFile, route
from jobkit.worker import logpipe
from jobkit.worker.logpipe import Event, Line, Sent

#: 2026-12-06T11:59:58.5 UTC.
T0 = 1796558398.5
TB = "Traceback (most recent call last):\n  File \"jobs.py\", line 3, in run\nKeyError: 'x\x1b'\n"


def event(kind: str, job: int, when: float, *, level: str = "INFO", error: str | None = None,
          tb: str | None = None, params: str = '{"to": "ana"}', zone: tuple[float, str | None]
          = (3600.0, "CET")) -> Event:
    """A job event's line as a worker process sends it."""
    line = EventLine(level, kind, error, str(job), "Email", "send", 1,
                     "failed" if level == "ERROR" else "running", tb, params, True)
    return Event(line, when, zone[0], zone[1], 4242, "jobkit-worker-0", 7, "MainThread")


#: What a relay receives: records, and events as sent or as named tuples.
Item = Line | Event | Sent


def sent(event: Event) -> Sent:
    """``event`` as a worker process sends it: plain tuples (``_Forwarder.event``)."""
    return (tuple(event.line), *event[1:])


def job_line(message: str, when: float) -> Line:
    """A record a job logged through ``self.log`` in a worker process."""
    return Line("INFO", 20, message, when, 3600.0, "CET", "sample_jobs", "run", 9, "sample_jobs",
                "sample_jobs.py", "/srv/sample_jobs.py", 4242, "jobkit-worker-0", 7, "MainThread",
                {"job_id": "2", "job_name": "Email", "method": "send", "attempt": 1}, None)


#: Every kind of line: info and error events, a traceback, escapes, braces, a NUL, accents,
#: params not yet encoded, a job's own line in between, another zone, a time that rounds up to
#: the next second, two lines in one microsecond; events as sent and as named tuples.
BATCH: list[Item] = [
    sent(event("started", 1, T0)),
    sent(event("succeeded", 1, T0 + 0.000123)),
    event("started", 2, T0 + 0.4999996),
    job_line("sending {to}\n2026-01-01 | INFO | forged", T0 + 0.6),
    event("retrying", 2, T0 + 1.25, level="ERROR", error="KeyError: '{x}'\u2028é", tb=TB),
    event("started", 3, T0 + 1.25, params='{"a": "\\u0000", "b": "ü\\n"}'),
    event("failed", 3, T0 + 61.0, level="ERROR", error="OSError: no route", tb=""),
    sent(event("started", 4, T0 + 3600 * 5, zone=(-18000.0, "EST"))),
    event("succeeded", 4, T0 + 3600 * 5 + 0.25, zone=(0.0, None)),  # same second, UTC
]


def handler_ids() -> set[int]:
    """The ids of loguru's sinks now."""
    return {int(found) for found in re.findall(r"\(id=(\d+), level=", repr(logger))}


def relay(batches: list[list[Item]]) -> None:
    """Send ``batches`` through a relay thread as a worker process would, and wait for it."""
    ours, theirs = multiprocessing.Pipe(duplex=False)
    thread = logpipe.relay(ours, "test")
    for batch in batches:
        theirs.send_bytes(pickle.dumps(batch))
    theirs.close()
    thread.join(timeout=10)
    assert not thread.is_alive()


class Sinks:
    """jobkit's sinks of ``jobkit worker`` in a folder of their own: the files and a console."""

    def __init__(self, folder: Path, plugins: tuple[object, ...] = (), **logging: Any) -> None:
        self.folder = folder / "logs"
        self.closed = False
        self.console = io.StringIO()
        config = Config.from_dict({"storage": "memory://",
                                   "logging": {"dir": str(self.folder), **logging}})
        self.app = JobKit(config, plugins=plugins, load_entrypoints=False)
        before = handler_ids()
        add_console(self.console)
        self.files = configure_logging(self.app.config.logging, self.app.pm)
        self.others = handler_ids() - before - set(self.files.handler_ids)  # console, plugins'
        #: The lines the relay wrote to each file with one call (write_lines), call by call.
        self.written: list[int] = []

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.files.remove()
        for handler_id in self.others:
            logger.remove(handler_id)
        self.app.close()

    def contents(self) -> list[tuple[str, str]]:
        """Each file's name (rotated ones without their time) and text, oldest first."""
        paths = sorted(self.folder.iterdir(), key=lambda path: path.name)
        return [(path.name if path.name.endswith("s.log") else path.name.split(".")[0],
                 path.read_text(encoding="utf-8")) for path in paths]


@pytest.fixture
def make_sinks(tmp_path: Path) -> Iterator[Any]:
    """Makes jobkit's sinks in a process whose loguru has no other sink, as in ``jobkit worker``.

    Sinks that earlier tests left behind (a CLI command run in-process keeps its files) would be
    written too, and loguru's default stderr sink is not jobkit's; a default sink is put back.
    """
    logger.remove()
    made: list[Sinks] = []

    def make(name: str, plugins: tuple[object, ...] = (), **logging: Any) -> Sinks:
        sinks = Sinks(tmp_path / name, plugins, **logging)
        made.append(sinks)
        return sinks

    try:
        yield make
    finally:
        for sinks in made:
            sinks.close()
        logger.disable("jobkit")
        logger.add(sys.stderr)


def both_ways(make_sinks: Any, monkeypatch: pytest.MonkeyPatch, batches: list[list[Item]],
              plugins: tuple[object, ...] = (), **logging: Any) -> tuple[Sinks, Sinks]:
    """The batches relayed to jobkit's sinks directly, then (other sinks) through loguru alone."""
    direct = make_sinks("direct", plugins, **logging)
    write_lines = LogFile.write_lines

    def counted(self: LogFile, lines: Any) -> None:
        lines = list(lines)
        direct.written.append(len(lines))
        write_lines(self, lines)

    with monkeypatch.context() as patch:
        patch.setattr(LogFile, "write_lines", counted)
        relay(batches)
    assert direct.written, "the relay did not write directly"
    direct.close()
    loguru_only = make_sinks("loguru", plugins, **logging)
    with monkeypatch.context() as patch:
        patch.setattr(logpipe, "route", lambda: None)  # the relay's way before: loguru per line
        relay(batches)
    loguru_only.close()
    return direct, loguru_only


def test_same_lines_in_the_files_and_on_the_console(make_sinks: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Text files and console: character for character what loguru's sinks write."""
    direct, loguru_only = both_ways(make_sinks, monkeypatch, [BATCH, BATCH[:2]])
    assert direct.contents() == loguru_only.contents()
    # one call for the events before the job's line, one after (and the errors file's), one
    # for batch 2
    assert direct.written == [3, 5, 2, 2]
    assert direct.console.getvalue() == loguru_only.console.getvalue()
    events = dict(direct.contents())[EVENTS_FILE].splitlines()
    assert events[0] == ('2026-12-06T11:59:58.500000+0000 | INFO    | job_id=1 job_name=Email '
                         'method=send attempt=1 status=running event=started params={"to": "ana"} '
                         '| started')
    assert events[2].startswith("2026-12-06T11:59:59.000000+0000 | INFO    | job_id=2 ")
    assert "sending {to}\\n2026-01-01 | INFO | forged" in events[3]  # the job's own line, in order
    assert events[4].endswith("| retrying: KeyError: '{x}'\\u2028é")
    assert events[5:8] == ["  | Traceback (most recent call last):",
                           '  |   File "jobs.py", line 3, in run', "  | KeyError: 'x\\x1b'"]
    assert len(events) == 12 + 2  # the second batch too
    errors = dict(direct.contents())["background_jobs_errors.log"].splitlines()
    assert [line.rsplit(" | ", 1)[1] for line in errors if not line.startswith("  |")] == [
        "retrying: KeyError: '{x}'\\u2028é", "failed: OSError: no route"]
    console = direct.console.getvalue().splitlines()
    assert console[0] == "12:59:58 INFO    [1 Email.send #1] started"  # the worker's zone
    assert console[7:9] == ["11:59:58 INFO    [4 Email.send #1] started",
                            "16:59:58 INFO    [4 Email.send #1] succeeded"]


def test_level_setting(make_sinks: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """logging.level WARNING: only the error events in the events file, as through loguru."""
    direct, loguru_only = both_ways(make_sinks, monkeypatch, [BATCH], level="WARNING")
    assert direct.contents() == loguru_only.contents()
    assert "event=started" not in dict(direct.contents())[EVENTS_FILE]
    assert direct.console.getvalue() == loguru_only.console.getvalue()


@pytest.mark.parametrize("rotation", ["1 hour", "400 B"])
def test_rotated_at_the_same_line(make_sinks: Any, monkeypatch: pytest.MonkeyPatch,
                                  rotation: str) -> None:
    """A batch spanning a rotation (by the lines' times, or by size) is cut at the same line."""
    now = time.time()
    batch: list[Item] = [sent(event("started", i, now + i * 25 * 60))
                         for i in range(6)]
    direct, loguru_only = both_ways(make_sinks, monkeypatch, [batch, batch[:2]],
                                    rotation=rotation, retention="10 files")
    assert direct.contents() == loguru_only.contents()
    assert len([name for name, _ in direct.contents() if name == "background_jobs"]) >= 2


def test_a_plugin_sink_still_gets_every_record(make_sinks: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin's sink (jobkit_configure_logging) gets each event's record as before.

    jobkit's files and console get the same lines, once.
    """
    seen: list[tuple[str, str, str, int, str]] = []

    class SinkPlugin:
        @hookimpl
        def jobkit_configure_logging(self, logger: Any, settings: LoggingSettings) -> None:
            logger.add(lambda m: seen.append((
                m.record["extra"].get("event", m.record["message"]), m.record["level"].name,
                m.record["time"].isoformat(), m.record["process"].id, m.record["function"])),
                level="INFO")

    direct, loguru_only = both_ways(make_sinks, monkeypatch, [BATCH], plugins=(SinkPlugin(),))
    assert direct.contents() == loguru_only.contents()
    assert direct.console.getvalue() == loguru_only.console.getvalue()
    half = len(seen) // 2
    assert seen[:half] == seen[half:]  # the same records, the same order
    assert [kind for kind, *_ in seen[:half]] == [
        "started", "succeeded", "started", "sending {to}\n2026-01-01 | INFO | forged", "retrying",
        "started", "failed", "started", "succeeded"]
    assert seen[0] == ("started", "INFO", "2026-12-06T12:59:58.500000+01:00", 4242, "write_event")


def test_only_jobkits_sinks_are_written_directly(make_sinks: Any) -> None:
    """Removed sinks are forgotten; with no jobkit sink the relay logs through loguru."""
    sinks = make_sinks("one")
    found = route()
    assert found is not None and len(found.files) == 2 and len(found.consoles) == 1
    assert not found.others
    sinks.close()
    assert route() is None
