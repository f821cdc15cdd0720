"""Searching jobs: the query the dashboard sends to ``Storage.search``, what it means, and the
SQL the SQL backends build from it.

A :class:`JobQuery` filters by status, job name, method, priority, creation time and text in
the params, sorts by one of :data:`SORTS`, and pages with a *cursor* (the last row's sort key)
rather than an offset, so the 1,000th page costs what the first does. Text must be in the
params' JSON both as stored and **with secrets masked**: a search can never be used to guess a
secret value one character at a time (the SQL only narrows the candidates; :func:`matches`
decides).

Every column name in the SQL comes from this module, never from the query; values are bound.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Literal

import attrs

from jobkit.masking import mask_secrets
from jobkit.records import JobRecord, JobStatus, check_aware

Sort = Literal["newest", "oldest", "finished"]
#: The sorts a search allows: ``newest``/``oldest`` by id (creation order), ``finished`` most
#: recently finished first (unfinished jobs are left out).
SORTS: tuple[Sort, ...] = ("newest", "oldest", "finished")
#: The most rows one search returns.
MAX_LIMIT = 500


def _positive_limit(instance: Any, attribute: Any, value: int) -> None:
    if not 1 <= value <= MAX_LIMIT:
        raise ValueError(f"limit must be from 1 to {MAX_LIMIT}, got {value!r}")


@attrs.frozen
class JobQuery:
    """Which jobs to find, in which order, from where (see the module docstring)."""

    statuses: tuple[JobStatus, ...] = ()
    name: str | None = None
    method: str | None = None
    priority: int | None = None
    #: Created at or after.
    since: datetime | None = attrs.field(default=None, validator=check_aware)
    #: Created before.
    until: datetime | None = attrs.field(default=None, validator=check_aware)
    #: A piece of the params' JSON text, matched case-sensitively; never inside a secret.
    text: str | None = None
    sort: Sort = attrs.field(default="newest", validator=attrs.validators.in_(SORTS))
    limit: int = attrs.field(default=50, validator=_positive_limit)
    #: The cursor of the page before (:func:`cursor_of` of its last job); ``None``: the first.
    after: str | None = None


def masked_text(record: JobRecord) -> str:
    """The params' JSON text that ``JobQuery.text`` is matched against."""
    return json.dumps(mask_secrets(record.params), ensure_ascii=False)


def cursor_of(record: JobRecord, sort: Sort) -> str:
    """Where the page that ends with ``record`` ends, for ``JobQuery.after``."""
    if sort == "finished":
        finished = record.finished_at.isoformat() if record.finished_at else ""
        return f"{finished}|{record.id}"
    return record.id


def parse_cursor(cursor: str, sort: Sort) -> tuple[datetime | None, int]:
    """``(finished_at or None, id)`` of a cursor; ``ValueError`` for one this module did not
    make."""
    stamp, _, key = cursor.rpartition("|") if sort == "finished" else ("", "", cursor)
    if not (key.isascii() and key.isdigit()) or len(key) > 19:
        raise ValueError(f"not a cursor of sort {sort!r}: {cursor!r}")
    if sort != "finished":
        return None, int(key)
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ValueError(f"not a cursor of sort {sort!r}: {cursor!r}")
    return when, int(key)


def _key(record: JobRecord) -> int:
    return int(record.id)


def matches(query: JobQuery, record: JobRecord) -> bool:
    """Whether ``record`` is one ``query`` finds, cursor aside (the reference semantics)."""
    return (
        (not query.statuses or record.status in query.statuses)
        and (query.name is None or record.name == query.name)
        and (query.method is None or record.method == query.method)
        and (query.priority is None or record.priority == query.priority)
        and (query.since is None or record.created_at >= query.since)
        and (query.until is None or record.created_at < query.until)
        and (query.sort != "finished" or record.finished_at is not None)
        and (not query.text or _has_text(record, query.text))
    )


def _has_text(record: JobRecord, text: str) -> bool:
    """``text`` is in the params' JSON as stored and as shown (secrets masked): a secret's
    value never matches, nor does the mask itself."""
    stored = json.dumps(record.params, ensure_ascii=False)
    return text in stored and text in masked_text(record)


def search_in(query: JobQuery, records: Iterable[JobRecord]) -> list[JobRecord]:
    """:meth:`Storage.search` over records in memory (the default implementation)."""
    found = [record for record in records if matches(query, record)]
    if query.sort == "finished":
        found.sort(key=lambda r: (r.finished_at, _key(r)), reverse=True)
    else:
        found.sort(key=_key, reverse=query.sort == "newest")
    if query.after is not None:
        stamp, key = parse_cursor(query.after, query.sort)
        if query.sort == "newest":
            found = [r for r in found if _key(r) < key]
        elif query.sort == "oldest":
            found = [r for r in found if _key(r) > key]
        else:
            found = [r for r in found
                     if r.finished_at is not None and stamp is not None
                     and (r.finished_at, _key(r)) < (stamp, key)]
    return found[: query.limit]


#: How a backend binds a named value (``:name`` or ``%(name)s``).
Bind = Callable[[str], str]


@attrs.frozen
class SearchSQL:
    """What the SQL backends run for a search: the ``WHERE`` and ``ORDER BY`` clauses and their
    bound values. ``text`` is in ``params`` only as a pre-filter: check :func:`matches`."""

    where: str
    order: str
    params: dict[str, Any]


def build_sql(
    query: JobQuery,
    bind: Bind,
    time: Callable[[datetime], Any],
    contains: Callable[[str], str],
) -> SearchSQL:
    """The clauses of ``query``. ``time`` turns a datetime into the backend's bound value;
    ``contains(placeholder)`` is the backend's test that the params' text holds the value."""
    conditions: list[str] = []
    params: dict[str, Any] = {}

    def add(condition: str, **values: Any) -> None:
        params.update(values)
        conditions.append(condition.format(**{name: bind(name) for name in values}))

    if query.statuses:
        names = {f"status_{i}": status.value for i, status in enumerate(query.statuses)}
        params.update(names)
        conditions.append(f"status IN ({', '.join(bind(name) for name in names)})")
    if query.name is not None:
        add("name = {name}", name=query.name)
    if query.method is not None:
        add("method = {method}", method=query.method)
    if query.priority is not None:
        add("priority = {priority}", priority=query.priority)
    if query.since is not None:
        add("created_at >= {since}", since=time(query.since))
    if query.until is not None:
        add("created_at < {until}", until=time(query.until))
    if query.text:
        # the raw text can only narrow: a secret's value may match here, never in `matches`
        params["text"] = query.text
        conditions.append(contains(bind("text")))
    if query.sort == "finished":
        conditions.append("finished_at IS NOT NULL")
    if query.after is not None:
        stamp, key = parse_cursor(query.after, query.sort)
        if query.sort == "newest":
            add("id < {after_id}", after_id=key)
        elif query.sort == "oldest":
            add("id > {after_id}", after_id=key)
        else:
            assert stamp is not None
            add("(finished_at < {after_at} OR (finished_at = {after_at} AND id < {after_id}))",
                after_at=time(stamp), after_id=key)
    order = {"newest": "id DESC", "oldest": "id ASC", "finished": "finished_at DESC, id DESC"}
    return SearchSQL(" AND ".join(conditions) or "TRUE", order[query.sort], params)
