"""The bounds of every duration and count a user can set: one table, used everywhere.

The configuration's rules (``jobs.yaml``, ``JOBKIT_*`` variables, a job class's ``defaults``),
the arguments of one ``run_background_job`` call and ``Retry(delay=...)`` all check their values
against the :class:`Bound` named here, so ``jobkit check``, start-up and enqueue refuse the same
values with the same words. The worker clamps what it reads back from a stored row with the same
bounds (:func:`clamp`), so a row written by an older version, or forged in the database, cannot
stop it. docs/configuration.md has the table (tests/test_limits.py keeps the two in step).

The upper bounds are far above any sensible value and far below what breaks Python's dates or
the system's timers: a job may run for a week, wait up to ten years, be retried 5,000 times.

Plugin authors import :func:`within` and a :class:`Bound` (``NETWORK_TIMEOUT``...) to check
their options' values the same way; :func:`checked` and :func:`clamp` are internal.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR
YEAR = 365 * DAY


def _plain(value: float) -> str:
    """``604800`` rather than ``604800.0``, ``0.001`` rather than ``1e-03``."""
    return f"{value:,.0f}".replace(",", "") if value == int(value) else f"{value:g}"


@attrs.frozen
class Bound:
    """The values one setting accepts: ``low`` (excluded when ``above``) to ``high``, inclusive.

    ``integer`` bounds accept only ints (never booleans or floats); the others accept finite ints
    and floats. ``span`` says ``high`` in words for messages ("7 days").
    """

    low: float
    high: float
    above: bool = False
    integer: bool = False
    span: str = ""

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` is of the right type and within the bounds (NaN never is)."""
        kinds: tuple[type, ...] = (int,) if self.integer else (int, float)
        if type(value) not in kinds:  # never a boolean
            return False
        if type(value) is float and not math.isfinite(value):  # isfinite(10 ** 400) overflows
            return False
        above_low: bool = value > self.low if self.above else value >= self.low
        return above_low and value <= self.high

    def describe(self) -> str:
        """What the setting accepts, as messages say it: ``a number > 0 and <= 604800 (7 days)``."""
        kind = "an integer" if self.integer else "a number"
        span = f" ({self.span})" if self.span else ""
        return (f"{kind} {'>' if self.above else '>='} {_plain(self.low)} "
                f"and <= {_plain(self.high)}{span}")

    def clamp(self, value: float) -> float:
        """``value`` brought within the bounds (``low`` itself when it is excluded)."""
        return min(max(value, self.low), self.high)


# -- job settings (defaults:, jobs.<name>:, JOBKIT_DEFAULTS__*, a job class's defaults, a call) --

#: Seconds one attempt may run (``timeout``).
TIMEOUT = Bound(0, 7 * DAY, above=True, span="7 days")
#: Seconds before a job or a retry may run: ``delay`` (a call), ``retry_delay``,
#: ``Retry(delay=...)``.
DELAY = Bound(0, 10 * YEAR, span="10 years")
#: The longest delay between attempts with backoff (``max_delay``).
MAX_DELAY_SETTING = Bound(0, 10 * YEAR, above=True, span="10 years")
#: The random fraction of a delay added to it (``jitter``).
JITTER = Bound(0, 1)
#: Retries after the first failure (``retry_attempts``).
RETRY_ATTEMPTS = Bound(0, 5_000, integer=True)
#: Stored as a 32-bit integer by every backend (``priority``).
PRIORITY = Bound(-(2**31), 2**31 - 1, integer=True)
#: The largest params a caller may enqueue, in bytes of UTF-8 JSON (``max_params_bytes``).
PARAMS_BYTES = Bound(1, 64 * 1024 * 1024, integer=True, span="64 MiB")
#: Worker deaths a job survives (``max_crashes``).
MAX_CRASHES = Bound(1, 1_000, integer=True)

# -- worker: ------------------------------------------------------------------------------------

#: Worker processes of one ``jobkit worker`` (``concurrency``, ``-n``).
CONCURRENCY = Bound(1, 1_024, integer=True)
#: Seconds between an idle process's looks for a due job (``poll_interval``).
POLL_INTERVAL = Bound(0.001, HOUR, span="1 hour")
#: Seconds a claim lasts without a heartbeat (``lease``).
LEASE = Bound(0, DAY, above=True, span="1 day")
#: Seconds between heartbeats (``heartbeat``; also under ``lease / 2``).
HEARTBEAT = Bound(0.01, 12 * HOUR, span="12 hours")
#: Seconds running jobs get to finish at shutdown (``shutdown_grace``).
SHUTDOWN_GRACE = Bound(0, DAY, span="1 day")
#: Seconds a stopped job gets before its process is ended (``kill_grace``).
KILL_GRACE = Bound(0, HOUR, span="1 hour")
#: Seconds between the supervisor's sweeps for expired leases (``requeue_interval``).
REQUEUE_INTERVAL = Bound(0.01, HOUR, span="1 hour")
#: Short jobs claimed at once (``prefetch``).
PREFETCH = Bound(1, 1_000, integer=True)
#: ``async def`` jobs a worker process runs at once (``async_concurrency``).
ASYNC_CONCURRENCY = Bound(1, 10_000, integer=True)

# -- dashboard: and notifiers -------------------------------------------------------------------

#: Seconds a dashboard sign-in lasts (``session_seconds``).
SESSION_SECONDS = Bound(0, 30 * DAY, above=True, span="30 days")
#: Seconds a network call of a notifier (webhook, email) or the ``Email`` job may wait.
NETWORK_TIMEOUT = Bound(0, 10 * MINUTE, above=True, span="10 minutes")

# -- commands ------------------------------------------------------------------------------------

#: How old a finished job must be for ``jobkit prune --older-than`` to delete it, in seconds.
PRUNE_AGE = Bound(0, 100 * YEAR, span="100 years")
#: Rows ``jobkit prune --batch-size`` deletes per transaction.
PRUNE_BATCH = Bound(1, 1_000_000, integer=True)

#: How deeply params, results and jobs.yaml may nest (deeper is refused rather than risk
#: recursion).
MAX_DEPTH = 64

#: The longest delay jobkit accepts, in seconds (ten years): larger values are surely mistakes.
MAX_DELAY = int(DELAY.high)


def checked(bound: Bound, value: Any, name: str) -> Any:
    """``value`` if ``bound`` accepts it; else ``ValueError`` naming ``name`` and the bounds.

    Internal: jobkit's own checks of what users set call it.
    """
    if not bound.accepts(value):
        raise ValueError(f"{name} must be {bound.describe()}, got {value!r}")
    return value


def within(bound: Bound) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """An attrs validator that keeps a plugin's option (a notifier's ``timeout``) within ``bound``.

    It raises ``ValueError`` naming the option and ``bound``, which jobkit reports with the
    file, line and key.
    """

    def validate(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        checked(bound, value, attribute.name)

    return validate


def clamp(bound: Bound, value: Any, default: float | None) -> float | None:
    """A value read back from a stored row, made safe to compute with.

    It is brought within ``bound`` if it is a number (a huge timeout becomes 7 days), and is
    ``default`` if it is not one (text, NaN, a boolean) or is at or under an excluded ``low``
    (a timeout of -5 or 0). Internal: for the records' converters and the transitions.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    if isinstance(value, float) and math.isnan(value):  # math.isnan(10 ** 400) overflows
        return default
    if bound.above and value <= bound.low:
        return default
    return float(bound.clamp(value))
