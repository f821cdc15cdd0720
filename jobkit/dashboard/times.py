"""Internal: how the dashboard shows times and durations, as people read them.

A time is sent as ``<time datetime="ISO" title="exact UTC">`` whose text is a plain UTC time
(``2026-11-23 18:44:09 UTC``), readable without script; the dashboard's script (static/
dashboard.js) turns the text into a relative time ("3 min ago", "in 20 s") and the title into
the exact time in the browser's time zone and in UTC, and keeps them current.

A span (a job's or an attempt's wait, from due to started, and its duration, from started to
finished) is ``None`` when it does not apply, fixed (``{"seconds": 4.2, "since": None}``), or
still open (``{"seconds": elapsed now, "since": ISO}``: a job waiting for a worker, negative
while it is not due yet, or running), which the script keeps counting. :func:`duration_text`
and the script's ``durationText`` write durations alike (the browser test checks it).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

from markupsafe import Markup, escape

from jobkit.records import FINAL_STATUSES, Attempt, JobRecord, JobStatus, utcnow

#: A wait or a duration as the pages and the API give it, or None.
Span = dict[str, Any]

_WAITING = (JobStatus.PENDING, JobStatus.RETRYING)


def parse_time(value: str | datetime | None) -> datetime | None:
    """An aware datetime from a datetime or ISO 8601 text (naive: UTC); None if unreadable."""
    if value is None or isinstance(value, datetime):
        when = value
    else:
        try:
            when = datetime.fromisoformat(str(value))
        except ValueError:
            return None
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when


def _stamp(when: datetime, *, millis: bool) -> str:
    utc = when.astimezone(timezone.utc)
    text = utc.strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{utc.microsecond // 1000:03d}" if millis else text


def _iso(when: datetime) -> str:
    """ISO 8601 in UTC to the millisecond (HTML's ``datetime`` allows no more digits)."""
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def utc_text(when: datetime) -> str:
    """``2026-11-23 18:44:09 UTC``: the text of a time without script."""
    return f"{_stamp(when, millis=False)} UTC"


def exact_text(when: datetime) -> str:
    """``2026-11-23 18:44:09.939 UTC``: a time to the millisecond, shown on hover."""
    return f"{_stamp(when, millis=True)} UTC"


def duration_text(seconds: float) -> str:
    """A duration to read at a glance.

    ``250 ms``, ``4.2 s``, ``42 s``, ``3 min 4 s``, ``2 h 5 min``, ``3 d 4 h`` (rounded down; a
    negative one is ``0 ms``)."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{math.floor(seconds * 1000)} ms"
    if seconds < 10:
        tenths = math.floor(seconds * 10)
        return f"{tenths // 10}.{tenths % 10} s"
    whole = math.floor(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return _pair(whole // 60, "min", whole % 60, "s")
    if whole < 86400:
        return _pair(whole // 3600, "h", whole % 3600 // 60, "min")
    return _pair(whole // 86400, "d", whole % 86400 // 3600, "h")


def _pair(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big} {big_unit}" + (f" {small} {small_unit}" if small else "")


def span_text(span: Span) -> str:
    """A span's text: its duration, or ``due in 20 s`` for a wait that has not begun."""
    seconds = float(span["seconds"])
    return f"due in {duration_text(-seconds)}" if seconds < 0 else duration_text(seconds)


def time_html(value: str | datetime | None, format: str = "relative",
              field: str | None = None) -> Markup:
    """A ``<time>`` element for ``value``.

    ``format`` ``relative`` (the script writes "3 min ago") or ``clock`` (the time of day, for log
    lines). ``field`` names the job field a live update refreshes (then an empty element stands for
    a missing time). Text that is not a time is shown as it is."""
    when = parse_time(value)
    if when is None:
        if field is not None:
            return Markup('<time data-format="{}" data-field="{}"></time>').format(format, field)
        return Markup("") if value is None else Markup(escape(str(value)))
    text = f"{_stamp(when, millis=True)[11:]} UTC" if format == "clock" else utc_text(when)
    extra = Markup(' data-field="{}"').format(field) if field is not None else Markup("")
    return Markup('<time datetime="{}" data-format="{}"{} title="{}">{}</time>').format(
        _iso(when), format, extra, exact_text(when), text)


def span_html(span: Span | None) -> Markup:
    """A wait or duration as HTML.

    A wait or duration: fixed as ``<time datetime="PT4.213S">4.2 s</time>``, still open as an
    element the script keeps counting, ``—`` when it does not apply."""
    if span is None:
        return Markup('<span class="span none">—</span>')
    seconds = float(span["seconds"])
    if span["since"] is None:
        return Markup('<time class="span" datetime="PT{:.3f}S" title="{:.3f} s">{}</time>').format(
            seconds, seconds, duration_text(seconds))
    since = parse_time(span["since"])
    label = "due" if seconds < 0 else "since"
    title = f"{label} {exact_text(since)}" if since is not None else ""
    return Markup('<span class="span open" data-since="{}" title="{}">{}</span>').format(
        _iso(since) if since is not None else "", title, span_text(span))


def _fixed(delta: timedelta) -> Span:
    return {"seconds": max(0.0, delta.total_seconds()), "since": None}


def _open(since: datetime, now: datetime) -> Span:
    return {"seconds": (now - since).total_seconds(), "since": since.isoformat()}


def job_spans(record: JobRecord, now: datetime | None = None) -> dict[str, Span | None]:
    """A job's ``wait`` and ``duration``, for its latest attempt.

    A job's ``wait`` (from due to started; counting while it waits) and ``duration`` (from
    started to finished; counting while it runs), for its latest attempt."""
    now = now or utcnow()
    started, due = record.started_at, record.available_at
    # the start belongs to the latest scheduling (a retrying job's started_at is the last try's)
    ran = started is not None and started >= due
    wait: Span | None = None
    duration: Span | None = None
    if record.status in _WAITING:
        wait = _open(due, now)
    elif ran and started is not None:
        wait = _fixed(started - due)
    if record.status is JobStatus.RUNNING and started is not None:
        duration = _open(started, now)
    elif ran and started is not None and record.finished_at is not None \
            and record.status in FINAL_STATUSES:
        duration = _fixed(record.finished_at - started)
    return {"wait": wait, "duration": duration}


def attempt_spans(record: JobRecord, attempt: Attempt,
                  now: datetime | None = None) -> dict[str, Span | None]:
    """An attempt's ``wait`` and ``duration``.

    Only the latest attempt's due time is stored (``available_at``), so an earlier attempt's wait is
    None."""
    now = now or utcnow()
    latest = attempt.attempt == record.attempts
    wait: Span | None = None
    duration: Span | None = None
    if latest and record.available_at <= attempt.started_at:
        wait = _fixed(attempt.started_at - record.available_at)
    if attempt.finished_at is not None:
        duration = _fixed(attempt.finished_at - attempt.started_at)
    elif latest and record.status is JobStatus.RUNNING:
        duration = _open(attempt.started_at, now)
    return {"wait": wait, "duration": duration}


def server_now() -> str:
    """The server's time (ISO), so the script can allow for a browser clock that is off."""
    return utcnow().isoformat()


#: The helpers the templates call.
TEMPLATE_GLOBALS = {
    "time_html": time_html,
    "span_html": span_html,
    "duration_text": duration_text,
    "server_now": server_now,
}
