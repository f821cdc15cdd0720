"""Internal: durations as ``jobs.yaml`` writes them (``30s``, ``15m``, ``12h``, ``7d``, ``2w``).

One reading and one spelling for every setting given as a duration: ``retention:`` and a
schedule's ``every:``.
"""

from __future__ import annotations

import re

#: Seconds in one of each unit of a duration.
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+\.?\d*|\.\d+)([smhdw])")


def parse_duration(text: str) -> float:
    """``30s``, ``15m``, ``12h``, ``7d``, ``2w`` (a number and a unit) in seconds.

    ``ValueError`` for anything else (no unit, another unit, a sign).
    """
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 30s, 15m, 12h, 7d or 2w")
    return float(match[1]) * UNITS[match[2]]


def shown(seconds: float) -> str:
    """``7d``, ``36h``, ``90s``: a duration in its largest whole unit (days at most)."""
    for unit in ("d", "h", "m"):
        if seconds % UNITS[unit] == 0:
            return f"{seconds / UNITS[unit]:g}{unit}"
    return f"{seconds:g}s"
