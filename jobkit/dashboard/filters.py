"""Internal: the jobs list's query string, checked and turned into a query.

The jobs list's query string: every parameter checked against its allow-list, turned into a
:class:`~jobkit.storage.search.JobQuery`. Anything else is a 400 naming the parameter."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from jobkit.limits import PRIORITY
from jobkit.records import JobStatus
from jobkit.storage.search import SORTS, JobQuery, parse_cursor

#: Jobs on one page of the list.
PAGE_SIZE = 50
#: Counts stop here: "10,000+" is as useful as the exact number and much cheaper on a big store.
COUNT_CAP = 10_000
#: Seconds a count may take before the list says "at least" what it counted.
COUNT_BUDGET = 0.06
#: The parameters the list takes.
PARAMS = ("status", "name", "method", "priority", "since", "until", "text", "sort", "after")
_STATUSES = {status.value: status for status in JobStatus}
_MAX_TEXT = 200


class BadFilter(ValueError):
    """A query parameter outside its allow-list; the message names it."""


def _time(name: str, value: str) -> datetime:
    """An ISO time (``2026-11-23T10:00``, from a ``datetime-local`` field); UTC unless it says."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise BadFilter(
            f"{name} must be a time like 2026-11-23T10:00 (UTC), got {value!r}"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def parse(
    params: Mapping[str, str], multi: Mapping[str, list[str]]
) -> tuple[JobQuery, dict[str, Any]]:
    """The query the list runs, and the values its form shows again.

    ``multi`` gives every value of a repeated parameter (``status`` may be given more than once)."""
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise BadFilter(f"unknown query parameter {unknown[0]!r} (known: {', '.join(PARAMS)})")
    shown: dict[str, Any] = {name: params.get(name, "") for name in PARAMS}
    statuses = [value for value in multi.get("status", []) if value]
    for value in statuses:
        if value not in _STATUSES:
            raise BadFilter(f"status must be one of {', '.join(_STATUSES)}, got {value!r}")
    shown["status"] = statuses
    for name in ("name", "method", "text"):
        if len(shown[name]) > _MAX_TEXT:
            raise BadFilter(f"{name} is longer than {_MAX_TEXT} characters")
    priority = None
    if shown["priority"]:
        try:
            priority = int(shown["priority"])
        except ValueError:
            raise BadFilter(f"priority must be a whole number, got {shown['priority']!r}") from None
        if not PRIORITY.accepts(priority):
            raise BadFilter(f"priority must be {PRIORITY.describe()}, got {priority}")
    sort = shown["sort"] or "newest"
    if sort not in SORTS:
        raise BadFilter(f"sort must be one of {', '.join(SORTS)}, got {sort!r}")
    shown["sort"] = sort
    after = shown["after"] or None
    if after is not None:
        try:
            parse_cursor(after, sort)
        except ValueError:
            raise BadFilter(f"after is not a page of this list: {after!r}") from None
    query = JobQuery(
        statuses=tuple(_STATUSES[value] for value in statuses),
        name=shown["name"] or None,
        method=shown["method"] or None,
        priority=priority,
        since=_time("since", shown["since"]) if shown["since"] else None,
        until=_time("until", shown["until"]) if shown["until"] else None,
        text=shown["text"] or None,
        sort=sort,
        limit=PAGE_SIZE,
        after=after,
    )
    return query, shown
