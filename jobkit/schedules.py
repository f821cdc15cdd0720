"""Schedules: jobs run on a cron expression or an interval, from ``schedules:`` in ``jobs.yaml``.

A :class:`Schedule` is one entry of ``schedules:``, parsed and checked; its ticks are the
moments it is due. A ``cron:`` schedule's ticks follow the expression in its ``timezone`` (by
cronsim, whose daylight saving rules are Debian cron's: on a spring-forward day a job set in
the skipped hour runs once, right after the jump; on a fall-back day a job set in the repeated
hour runs once, the first time; a job whose hour field is ``*`` runs in both). An ``every:``
schedule's ticks are whole multiples of its interval since the Unix epoch in UTC, so that every
worker computes the same ticks (``every: 1d`` ticks at 00:00 UTC).

Workers fire the ticks through the store's ``schedules`` capability
(:class:`~jobkit.storage.capabilities.KeepsSchedules`), each tick at most once however many of
them race; :meth:`Schedule.plan` says which ticks a firing runs (``catch_up:``).
:class:`ScheduleView` is what :meth:`jobkit.JobKit.schedules` lists.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import attrs

from jobkit import limits
from jobkit.config_yaml import Invalid, Rule, boolean, bounded, choice, setting, text
from jobkit.durations import parse_duration, shown
from jobkit.flow import QUEUE_NAME

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

__all__ = [
    "CATCH_UP_ALL_MAX",
    "CATCH_UP_NONE_GRACE",
    "EVERY_MAX",
    "SCHEDULE_NAME",
    "Schedule",
    "ScheduleState",
    "ScheduleView",
    "TickPlan",
    "parse_every",
]

#: ``catch_up: all`` fires at most this many missed ticks (the latest ones).
CATCH_UP_ALL_MAX = 100
#: ``catch_up: none`` fires a tick only this long after it was due; older ones are skipped.
CATCH_UP_NONE_GRACE = timedelta(seconds=60)
#: The longest ``every:`` interval (ten years: its ticks stay within the dates Python counts).
EVERY_MAX = timedelta(days=3650)
#: The Unix epoch: ``every:`` ticks are whole multiples of the interval since it.
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: cron's nicknames, as the five fields cronsim reads.
_NICKNAMES = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
#: What a schedule name looks like (its key under ``schedules:``).
SCHEDULE_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
_MICROSECOND = timedelta(microseconds=1)


def parse_every(value: Any) -> timedelta:
    """``30s``, ``5m``, ``2h`` or ``1d`` (or a ``timedelta`` of whole seconds) as a timedelta.

    ``ValueError`` for anything else, or an interval under one second or over
    :data:`EVERY_MAX`.
    """
    every = value if isinstance(value, timedelta) else _interval(value)
    if every > EVERY_MAX:
        raise ValueError(f"expected an interval of at most {EVERY_MAX.days}d (for a yearly "
                         f"time, use cron: such as '0 0 1 1 *'), got {value!r}")
    if every < timedelta(seconds=1) or every % timedelta(seconds=1):
        raise ValueError(f"expected an interval of whole seconds, at least 1s, got {value!r}")
    return every


def _interval(value: Any) -> timedelta:
    """``30s``, ``5m``, ``2h``, ``1d`` as a timedelta, a huge one cut to just over the maximum."""
    try:
        seconds = parse_duration(value) if isinstance(value, str) else None
    except ValueError:
        seconds = None
    if seconds is None:
        raise ValueError(f"expected an interval such as 30s, 5m, 2h or 1d, got {value!r}")
    # a huge number is refused before timedelta() overflows on it
    return timedelta(seconds=min(seconds, EVERY_MAX // timedelta(seconds=1) + 1))


def _cron_fields(expression: str) -> str:
    """The five fields of a cron expression (a nickname such as ``@daily`` spelled out)."""
    return _NICKNAMES.get(expression.strip().lower(), expression.strip())


def _cron_rule(value: Any) -> str | None:
    """A cron expression cronsim reads (None: not set); ``Invalid`` saying what is wrong."""
    if value is None:
        return None
    what = "a cron expression of five fields, such as '0 3 * * *' (or @daily, @hourly, ...)"
    if not isinstance(value, str):
        raise Invalid(f"expected {what}, got {value!r}")
    from cronsim import CronSim, CronSimError

    try:
        CronSim(_cron_fields(value), EPOCH)
    except CronSimError as exc:  # "Bad minute", "Wrong number of fields", ...
        reason = str(exc) or "not read"
        raise Invalid(f"expected {what}, got {value!r} "
                      f"({reason[:1].lower()}{reason[1:]})") from None
    return value


def _zone(name: str) -> ZoneInfo:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


#: Names the zone database may hold whose zone depends on the machine (its own setting):
#: workers on two machines would not agree on the ticks.
_MACHINE_ZONES = frozenset({"localtime", "posixrules"})


def _check_zone(value: Any) -> bool:
    if (not isinstance(value, str) or not value or value.startswith(("/", "."))
            or value.lower() in _MACHINE_ZONES):
        return False
    try:
        _zone(value)
    except (ValueError, OSError, LookupError):  # ZoneInfoNotFoundError is a KeyError
        return False
    return True


def _every_rule(value: Any) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_every(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


#: The rules of a schedule's fields, shared by the file and by code.
_ZONE = Rule("an IANA time zone name, such as 'Europe/Berlin' or 'UTC' (not the machine's "
             "localtime: every worker must compute the same ticks)", _check_zone)
_PARAMS = Rule("a mapping of parameters (or a list of positional ones)",
               lambda v: v is None or isinstance(v, (dict, list)),
               lambda v: {} if v is None else v)
_QUEUE = text("a queue name (a letter or digit, then letters, digits, '_', '-' or '.', at most "
              "64 characters)", pattern=QUEUE_NAME, nullable=True)


_NAME_RULE = text("a schedule name (a letter or digit, then letters, digits, '_', '-' or '.', "
                  "at most 128 characters)", pattern=SCHEDULE_NAME)


@attrs.frozen
class Schedule:
    """One entry of ``schedules:`` in ``jobs.yaml``, parsed and checked.

    Exactly one of ``cron`` and ``every`` is set. ``timezone`` applies to ``cron`` only.
    ``queue`` and ``priority`` None: the job's own settings. ``catch_up`` is ``latest``,
    ``none`` or ``all`` (see :meth:`plan`); ``overlap`` is ``skip`` (no new tick while a run
    of this schedule is pending, retrying or running, so that a firing runs one tick at most,
    the oldest due, even under ``catch_up: all``) or ``allow``.
    """

    name: str = attrs.field(validator=lambda _, __, v: _NAME_RULE(v))
    job: str = setting(attrs.NOTHING, text("a job name"))
    method: str = setting("handle", text("a method name"))
    params: Mapping[str, Any] = setting(attrs.Factory(dict), _PARAMS, hash=False,
                                        converter=lambda v: {} if v is None else v)
    cron: str | None = setting(None, _cron_rule)
    every: timedelta | None = setting(None, _every_rule, converter=_every_rule)
    timezone: str = setting("UTC", _ZONE)
    queue: str | None = setting(None, _QUEUE)
    priority: int | None = setting(None, bounded(limits.PRIORITY, nullable=True))
    enabled: bool = setting(True, boolean())
    catch_up: str = setting("latest", choice("latest", "none", "all"))
    overlap: str = setting("skip", choice("skip", "allow"))

    def __attrs_post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise Invalid("a schedule needs exactly one of cron (an expression such as "
                          "'0 3 * * *') and every (an interval such as 30s)",
                          ("cron" if self.cron is not None else "every",))
        if self.every is not None and self.timezone != "UTC":
            raise Invalid("timezone applies to cron schedules only (every: ticks are counted "
                          "in UTC from the epoch; for a time of day, use cron: with timezone:)",
                          ("timezone",))

    def describe(self) -> str:
        """``cron 0 3 * * * (Europe/Berlin)`` or ``every 30s``, as people read it."""
        if self.cron is not None:
            return f"cron {self.cron} ({self.timezone})"
        assert self.every is not None
        return f"every {shown(self.every.total_seconds())}"

    def next_tick(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (aware), in UTC."""
        after = _utc(after, "after")
        if self.every is not None:
            step = self.every // _MICROSECOND
            return EPOCH + (((after - EPOCH) // _MICROSECOND) // step + 1) * step * _MICROSECOND
        for tick in self._cron_ticks(after, reverse=False):
            if tick > after:
                return tick
        raise ValueError(f"schedule {self.name!r}: cron {self.cron!r} has no tick after "
                         f"{after.isoformat()}")  # pragma: no cover - cronsim stops first

    def ticks_before(self, until: datetime, after: datetime, limit: int) -> list[datetime]:
        """Up to ``limit`` ticks ``t`` with ``after < t <= until``, newest first, in UTC."""
        until, after = _utc(until, "until"), _utc(after, "after")
        found: list[datetime] = []
        if self.every is not None:
            step = self.every // _MICROSECOND
            newest = ((until - EPOCH) // _MICROSECOND) // step * step
            while len(found) < limit:
                tick = EPOCH + newest * _MICROSECOND
                if tick <= after:
                    break
                found.append(tick)
                newest -= step
            return found
        for tick in self._cron_ticks(until + _MICROSECOND, reverse=True):
            if tick <= after or len(found) >= limit:
                break
            if tick <= until and (not found or tick < found[-1]):
                found.append(tick)
        return found

    def plan(self, after: datetime, now: datetime) -> TickPlan:
        """The ticks a firing at ``now`` runs when every tick up to ``after`` is handled.

        ``catch_up: latest`` runs the newest tick due; ``none`` runs it only when it is due
        less than :data:`CATCH_UP_NONE_GRACE` ago; ``all`` runs every tick due, the newest
        :data:`CATCH_UP_ALL_MAX` at most, oldest first. ``TickPlan.newest`` is the newest tick
        due (None: none is), which becomes the handled one whether it runs or not.
        """
        limit = CATCH_UP_ALL_MAX if self.catch_up == "all" else 1
        due = self.ticks_before(now, after, limit)
        if not due:
            return TickPlan((), None)
        if self.catch_up == "none" and due[0] < _utc(now, "now") - CATCH_UP_NONE_GRACE:
            return TickPlan((), due[0])
        return TickPlan(tuple(reversed(due)), due[0])

    def _cron_ticks(self, start: datetime, *, reverse: bool) -> Iterator[datetime]:
        """The cron ticks from ``start`` on (or back), in UTC (cronsim, in the time zone)."""
        from cronsim import CronSim

        assert self.cron is not None
        zone = _zone(self.timezone)
        for tick in CronSim(_cron_fields(self.cron), start.astimezone(zone), reverse=reverse):
            yield tick.astimezone(timezone.utc)


def _utc(moment: datetime, what: str) -> datetime:
    """``moment`` in UTC; ``ValueError`` for a naive datetime."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what}: expected an aware datetime, got a naive one ({moment})")
    return moment.astimezone(timezone.utc)


@attrs.frozen
class TickPlan:
    """What one firing of a schedule does: the ticks it runs, and the newest tick due."""

    #: The ticks to run, oldest first (empty: none).
    ticks: tuple[datetime, ...]
    #: The newest tick due, recorded as handled whether it runs or not; None: no tick is due.
    newest: datetime | None


@attrs.frozen
class ScheduleState:
    """What the store keeps of one schedule (capability ``schedules``)."""

    name: str
    paused: bool = False
    #: The newest tick handled (run, or dropped by catch-up, overlap or a pause; a resume makes
    #: it at least the moment of the resume: every tick up to it is handled); None: none.
    last_tick: datetime | None = None
    #: The newest tick that ran (a job was stored for it); None: never.
    last_run_at: datetime | None = None
    #: The job of that tick; None when it was deleted since (prune, retention).
    last_job_id: str | None = None
    #: When a worker first saw the schedule: its first tick is the first after this.
    since: datetime | None = None

    def after(self, now: datetime) -> datetime:
        """The moment after which ticks are not handled yet."""
        return self.last_tick or self.since or now


@attrs.frozen
class ScheduleView:
    """One configured schedule as :meth:`jobkit.JobKit.schedules` lists it."""

    schedule: Schedule
    paused: bool
    #: The last tick fired (None: never).
    last_run_at: datetime | None
    #: The job of that tick (None if none, or deleted since).
    last_job_id: str | None
    #: The next tick; None when the schedule is paused or not enabled.
    next_run_at: datetime | None
