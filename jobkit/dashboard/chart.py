"""Internal: the overview's throughput chart, drawn as an SVG on the server.

The overview's throughput chart: attempts that succeeded and failed over the last hour (per
minute) or day (per hour), from ``Storage.throughput``, drawn as an SVG on the server (no
charting library, no script: the Content-Security-Policy allows none inline)."""

from __future__ import annotations

from datetime import datetime, timedelta
from html import escape
from typing import Literal

import attrs

Span = Literal["hour", "day"]
#: Each span's bars: how many, and how long each is.
SPANS: dict[str, tuple[int, timedelta]] = {
    "hour": (60, timedelta(minutes=1)),
    "day": (24, timedelta(hours=1)),
}
WIDTH, HEIGHT, AXIS = 720, 160, 18
OK_COLOUR, BAD_COLOUR = "#2b8a3e", "#c92a2a"


@attrs.frozen
class Bar:
    """One bar: when it starts, and the attempts that succeeded and failed in it."""

    start: datetime
    succeeded: int
    failed: int


def bars(counts: list[tuple[datetime, int, int]], span: str, now: datetime) -> list[Bar]:
    """The span's bars, oldest first, from per-minute counts (minutes without counts: zero)."""
    number, length = SPANS[span]
    first = _floor(now, length) - length * (number - 1)
    totals = [[0, 0] for _ in range(number)]
    for minute, succeeded, failed in counts:
        index = (minute - first) // length  # floor: a minute before the first bar is left out
        if 0 <= index < number:
            totals[index][0] += succeeded
            totals[index][1] += failed
    return [Bar(first + length * i, ok, bad) for i, (ok, bad) in enumerate(totals)]


def _floor(when: datetime, length: timedelta) -> datetime:
    if length >= timedelta(hours=1):
        return when.replace(minute=0, second=0, microsecond=0)
    return when.replace(second=0, microsecond=0)


def svg(found: list[Bar], span: str) -> str:
    """The chart as SVG: stacked bars, a label at each end, a tooltip per bar.

    The chart: stacked bars (failed on top of succeeded), a label at each end, a tooltip
    per bar."""
    top = max((bar.succeeded + bar.failed for bar in found), default=0) or 1
    step = WIDTH / max(1, len(found))
    plot = HEIGHT - AXIS
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="attempts per {"minute" if span == "hour" else "hour"}, last {span}">',
        f'<rect width="{WIDTH}" height="{plot}" fill="#ffffff" stroke="#e4e7ec"/>',
    ]
    fmt = "%H:%M"
    for i, bar in enumerate(found):
        x = i * step + 1
        ok_height = plot * bar.succeeded / top
        bad_height = plot * bar.failed / top
        title = escape(f"{bar.start.strftime(fmt)} UTC: {bar.succeeded} succeeded, "
                       f"{bar.failed} failed")
        parts.append(f"<g><title>{title}</title>")
        if bar.succeeded:
            parts.append(f'<rect x="{x:.1f}" y="{plot - ok_height:.1f}" '
                         f'width="{step - 2:.1f}" height="{ok_height:.1f}" fill="{OK_COLOUR}"/>')
        if bar.failed:
            parts.append(f'<rect x="{x:.1f}" y="{plot - ok_height - bad_height:.1f}" '
                         f'width="{step - 2:.1f}" height="{bad_height:.1f}" '
                         f'fill="{BAD_COLOUR}"/>')
        parts.append("</g>")
    if found:
        ago = "60 min ago" if span == "hour" else "24 h ago"
        parts.append(f'<text x="0" y="{HEIGHT - 4}" font-size="11" fill="#667085">'
                     f'{ago} ({found[0].start.strftime(fmt)} UTC)</text>')
        parts.append(f'<text x="{WIDTH}" y="{HEIGHT - 4}" font-size="11" fill="#667085" '
                     f'text-anchor="end">now</text>')
    parts.append(f'<text x="4" y="12" font-size="11" fill="#667085">{top} max</text>')
    parts.append("</svg>")
    return "".join(parts)
