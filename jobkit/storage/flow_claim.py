"""Internal: a claim under concurrency and rate limits, planned the same way for every store.

A store with the ``flow`` capability calls :func:`claim_limited` inside its claim transaction
when the worker's :class:`~jobkit.flow.Flow` has limits, handing it a :class:`LimitedClaim`:
the few reads and writes the plan needs, in that transaction. The transaction is what makes
the plan atomic: SQLite's ``BEGIN IMMEDIATE`` lets one writer in at a time, PostgreSQL's
claim takes a transaction-level advisory lock first, memory holds its lock. So the counts it
reads (jobs running, starts in each rate window) cannot change under it, and no claim race
overshoots a limit.

The plan: count what each limit has used (jobs running for a concurrency limit, starts in the
last window for a rate limit, per value of its key); leave out of the candidate query every
job, queue or key value at its limit; take the candidates in claim order while each limit
they are under has room, counting each one taken; a round that ends short because some
became full is followed by another that leaves those out too. A claim takes at most one job
under a limit: its worker process runs one job at a time, so a second would hold a place of a
concurrency limit while it waited, or start later than its claim and bunch a rate limit's
starts. A job's start, for a rate limit, is its claim.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import attrs

from jobkit.flow import Flow, Limit
from jobkit.records import JobRecord

#: Candidates read per round: this many times the jobs asked for (at least :data:`LEAST`).
WINDOW = 4
LEAST = 32
#: Rounds of candidates at most per claim.
ROUNDS = 4

_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, sort_keys=True).encode


def key_value(params: Any, key: str) -> str:
    """The JSON text of ``params[key]`` (``null`` when it is not given): a limit's group."""
    value = params.get(key) if isinstance(params, dict) else None
    try:
        return _ENCODE(value)
    except (TypeError, ValueError):
        return _ENCODE(repr(value))


def limit_key(limit: Limit, value: str | None = None) -> str:
    """The name of one limit's group in the store: ``job:Name``, ``queue:mail``, ``job:N:k=v``."""
    base = f"{limit.scope}:{limit.name}"
    return base if limit.key is None else f"{base}:{limit.key}={value}"


def key_range(limit: Limit) -> tuple[str, str]:
    """The bounds of the group names of ``limit`` (all its key values), for a range scan."""
    base = limit_key(limit, "")
    return (base, base + "\U0010ffff") if limit.key is not None else (base, base + "\x01")


@attrs.frozen
class Candidate:
    """A due job the claim may take: its id and what the limits look at."""

    id: int
    name: str
    queue: str
    params: Any


@attrs.define
class Exclusions:
    """What the candidate query leaves out: full jobs, queues and key values."""

    names: set[str] = attrs.Factory(set)
    queues: set[str] = attrs.Factory(set)
    #: ``[job name, parameter, JSON text of its value]`` (:func:`key_value`)
    keys: list[list[str]] = attrs.Factory(list)

    def as_json(self) -> tuple[str, str, str]:
        """The three as JSON arrays, as the SQL stores bind them.

        Each key entry carries the parameter's value itself, not its text: the store compares
        it with the row's as its own JSON reader reads both (SQLite's ``json_extract``,
        PostgreSQL's ``jsonb``), so no two spellings of one value (``true``/``1``, spaces,
        key order) can keep a full group from being left out.
        """
        keys = [[name, key, json.loads(value)] for name, key, value in self.keys]
        return (json.dumps(sorted(self.names)), json.dumps(sorted(self.queues)),
                json.dumps(keys, ensure_ascii=False))

    def add(self, limit: Limit, value: str | None) -> None:
        """Leave out what ``limit`` (at ``value`` of its key) covers."""
        if limit.scope == "queue":
            self.queues.add(limit.name)
        elif limit.key is None:
            self.names.add(limit.name)
        else:
            entry = [limit.name, limit.key, value or "null"]
            if entry not in self.keys:
                self.keys.append(entry)

    def excludes(self, candidate: Candidate, limits: Sequence[Limit]) -> bool:
        """Whether the query should have left ``candidate`` out (the memory store's filter)."""
        if candidate.name in self.names or candidate.queue in self.queues:
            return True
        return any([candidate.name, key, key_value(candidate.params, key)] in self.keys
                   for key in {limit.key for limit in limits if limit.key is not None})


class LimitedClaim(Protocol):
    """What a store reads and writes for :func:`claim_limited`, inside its claim transaction."""

    def running_jobs(self) -> list[tuple[str, str, Any]]:
        """``(name, queue, params)`` of every running job."""

    def recent_starts(self, low: str, high: str,
                      since: datetime) -> dict[str, tuple[int, datetime]]:
        """Starts recorded after ``since`` under group names in ``[low, high)``.

        By group name: how many, and the oldest. Starts at or before ``since`` in that range
        may be forgotten.
        """

    def candidates(self, flow: Flow, exclusions: Exclusions, count: int) -> list[Candidate]:
        """Up to ``count`` due jobs of ``flow``'s queues, none paused or excluded, claim order."""

    def take(self, ids: list[int]) -> list[JobRecord]:
        """Claim these jobs (still waiting) as the store's claim does; their records."""

    def add_starts(self, groups: list[str]) -> None:
        """Record a start now under each group name (one entry per start)."""

    def held(self, until: datetime | None) -> None:
        """Note that the limits held back every due job.

        No claim can take one before a write, or before ``until`` (a rate window's end) when
        it is given."""


@attrs.define
class _Room:
    """What each limit has used, per key value, and what is full."""

    flow: Flow
    used: dict[tuple[int, str | None], int] = attrs.Factory(dict)

    def groups(self, candidate: Candidate) -> list[tuple[int, str | None]]:
        return [
            (index, None if limit.key is None else key_value(candidate.params, limit.key))
            for index, limit in enumerate(self.flow.limits)
            if limit.applies(candidate.name, candidate.queue)
        ]

    def full(self, group: tuple[int, str | None]) -> bool:
        return self.used.get(group, 0) >= self.flow.limits[group[0]].limit


#: What a limit has used, per value of its key (``None`` without a key): the count, and for a
#: rate limit the oldest start in the window.
Usage = dict[str | None, tuple[int, datetime | None]]


def usage(store: LimitedClaim, limit: Limit, now: datetime,
          running: list[tuple[str, str, Any]] | None = None) -> Usage:
    """What ``limit`` has used now: jobs running, or starts in its window (see :data:`Usage`).

    ``running``: the store's running jobs, when the caller has read them already.
    """
    if limit.kind == "concurrency":
        counts: dict[str | None, int] = {}
        for name, queue, params in store.running_jobs() if running is None else running:
            if limit.applies(name, queue):
                value = None if limit.key is None else key_value(params, limit.key)
                counts[value] = counts.get(value, 0) + 1
        return {value: (count, None) for value, count in counts.items()}
    since = now - timedelta(seconds=limit.per or 1.0)
    low, high = key_range(limit)
    prefix = limit_key(limit, "")
    return {
        (group.removeprefix(prefix) if limit.key is not None else None): (count, oldest)
        for group, (count, oldest) in store.recent_starts(low, high, since).items()
    }


def claim_limited(store: LimitedClaim, flow: Flow, limit: int, now: datetime) -> list[JobRecord]:
    """Claim up to ``limit`` due jobs of ``flow`` under its limits (see the module docstring)."""
    room = _Room(flow)
    exclusions = Exclusions()
    running = store.running_jobs()
    usage_of = {index: usage(store, rule, now, running) for index, rule in enumerate(flow.limits)}
    for index, used in usage_of.items():
        for value, (count, _) in used.items():
            room.used[index, value] = count
    for (index, value), _ in list(room.used.items()):
        if room.full((index, value)):
            exclusions.add(flow.limits[index], value)
    claimed: list[JobRecord] = []
    # a worker process runs one job at a time: a second job under a limit claimed with the
    # first would wait behind it, holding a place of the limit or starting after its claim
    took_bounded = False
    for _ in range(ROUNDS):
        wanted = limit - len(claimed)
        window = max(LEAST, WINDOW * wanted)
        found = store.candidates(flow, exclusions, window)
        picked: list[int] = []
        starts: list[str] = []
        for candidate in found:
            groups = room.groups(candidate)
            full = [group for group in groups if room.full(group)]
            if full:
                for index, value in full:
                    exclusions.add(flow.limits[index], value)
                continue
            bounded = bool(groups)
            if bounded and took_bounded:
                continue
            took_bounded = took_bounded or bounded
            picked.append(candidate.id)
            for index, value in groups:
                room.used[index, value] = room.used.get((index, value), 0) + 1
                if flow.limits[index].kind == "rate":
                    starts.append(limit_key(flow.limits[index], value))
                if room.full((index, value)):
                    exclusions.add(flow.limits[index], value)
            if len(picked) == wanted:
                break
        if picked:
            claimed += store.take(picked)
            if starts:
                store.add_starts(starts)
        if len(claimed) >= limit or len(found) < window:
            break
    if not claimed:
        store.held(_frees_at(flow, room, usage_of))
    return claimed


def _frees_at(flow: Flow, room: _Room, usage_of: dict[int, Usage]) -> datetime | None:
    """When the first full rate group frees a place (its oldest start leaves the window)."""
    times = [
        oldest + timedelta(seconds=flow.limits[index].per or 1.0)
        for index, used in usage_of.items() if flow.limits[index].kind == "rate"
        for value, (_, oldest) in used.items()
        if oldest is not None and room.full((index, value))
    ]
    return min(times, default=None)
