"""Internal: searching jobs, the query the dashboard sends to a store's ``search``.

The query of the optional capability ``search`` (:mod:`jobkit.storage.capabilities`), what it
means, and the SQL the SQL backends build from it.

A :class:`JobQuery` filters by status, job name, method, priority, creation time and text in
the params, sorts by one of :data:`SORTS`, and pages with a *cursor* (the last row's sort key)
rather than an offset, so the 1,000th page costs what the first does. Text is matched in the
params' JSON **with secrets masked** (the SQL backends store that text beside the params when a
job has a secret), so a search never looks inside a secret: neither its results nor its time
can be used to guess one.

Every column name in the SQL comes from this module, never from the query; values are bound.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Literal

import attrs

from jobkit.masking import mask_secrets
from jobkit.records import WAITING_STATUSES, JobRecord, JobStatus, check_aware
from jobkit.storage.rows import MAX_ID  # the largest job id a cursor may name

Sort = Literal["newest", "oldest", "next"]
#: The sorts a search allows: ``newest``/``oldest`` by id (creation order); ``next``: the
#: waiting (pending and retrying) jobs in the order workers will claim them (highest priority,
#: then earliest due, then lowest id), served by the claim index.
SORTS: tuple[Sort, ...] = ("newest", "oldest", "next")
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
    #: A piece of the params' JSON text with secrets masked, matched case-sensitively.
    text: str | None = None
    sort: Sort = attrs.field(default="newest", validator=attrs.validators.in_(SORTS))
    limit: int = attrs.field(default=50, validator=_positive_limit)
    #: The cursor of the page before (:func:`cursor_of` of its last job); ``None``: the first.
    after: str | None = None


@attrs.frozen
class SearchPage:
    """One page of a search: its jobs, and the cursor of the next page (``None``: the last).

    ``complete`` is false when a backend stopped early to keep an answer quick (a text search
    on a big store): the page may hold fewer than ``limit`` jobs although more follow; ``next``
    goes on from where it stopped."""

    jobs: list[JobRecord]
    next: str | None
    complete: bool = True


@attrs.frozen
class Count:
    """How many jobs a search finds.

    Exact, more than the cap asked for (``over``), or at least ``n`` when counting stopped to keep
    the answer quick (``exact`` false).
    """

    n: int
    exact: bool = True
    over: bool = False

    def __str__(self) -> str:
        if self.over:
            return f"{self.n:,}+"
        return f"{self.n:,}" if self.exact else f"at least {self.n:,}"


def page_of(query: JobQuery, found: list[JobRecord]) -> SearchPage:
    """The page for up to ``limit + 1`` jobs found in order (the extra one: a next page exists)."""
    shown = found[: query.limit]
    more = len(found) > query.limit
    return SearchPage(shown, cursor_of(shown[-1], query.sort) if more else None)


def masked_text(record: JobRecord) -> str:
    """The params' JSON text that ``JobQuery.text`` is matched against."""
    return json.dumps(mask_secrets(record.params), ensure_ascii=False)


def cursor_of(record: JobRecord, sort: Sort) -> str:
    """Where the page that ends with ``record`` ends, for ``JobQuery.after``."""
    if sort == "next":
        return f"{record.priority}|{record.available_at.isoformat()}|{record.id}"
    return record.id


@attrs.frozen
class Cursor:
    """A parsed cursor: the id, and for ``next`` the priority and due time as well."""

    id: int
    priority: int = 0
    due: datetime | None = None


def parse_cursor(cursor: str, sort: Sort) -> Cursor:
    """The position a cursor names; ``ValueError`` for one this module did not make."""
    parts = cursor.split("|")
    refused = ValueError(f"not a cursor of sort {sort!r}: {cursor!r}")
    if len(parts) != (3 if sort == "next" else 1):
        raise refused
    key = parts[-1]
    if not (key.isascii() and key.isdigit()) or len(key) > 19 or int(key) > MAX_ID:
        raise refused
    if sort != "next":
        return Cursor(int(key))
    priority, due = parts[0], parts[1]
    try:
        when = datetime.fromisoformat(due)
        number = int(priority)
    except ValueError:
        raise refused from None
    if when.tzinfo is None or not -(2**31) <= number < 2**31:
        raise refused
    return Cursor(int(key), number, when)


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
        and (query.sort != "next" or record.status in WAITING_STATUSES)
        and (not query.text or query.text in masked_text(record))
    )


def _next_key(record: JobRecord) -> tuple[int, datetime, int]:
    return (-record.priority, record.available_at, _key(record))


def search_in(query: JobQuery, records: Iterable[JobRecord], limit: int | None = None
              ) -> list[JobRecord]:
    """The jobs ``query`` finds among ``records``, in order, after its cursor.

    At most ``limit`` (default ``query.limit``).
    """
    found = [record for record in records if matches(query, record)]
    if query.sort == "next":
        found.sort(key=_next_key)
    else:
        found.sort(key=_key, reverse=query.sort == "newest")
    if query.after is not None:
        at = parse_cursor(query.after, query.sort)
        if query.sort == "newest":
            found = [r for r in found if _key(r) < at.id]
        elif query.sort == "oldest":
            found = [r for r in found if _key(r) > at.id]
        else:
            assert at.due is not None
            found = [r for r in found if _next_key(r) > (-at.priority, at.due, at.id)]
    return found[: query.limit if limit is None else limit]


#: How a backend binds a named value (``:name`` or ``%(name)s``).
Bind = Callable[[str], str]


@attrs.frozen
class SearchSQL:
    """What the SQL backends run for a search.

    The ``WHERE`` and ``ORDER BY`` clauses and their bound values. ``text`` is in ``params`` only
    as a pre-filter: check :func:`matches`.
    """

    where: str
    order: str
    params: dict[str, Any]


def build_sql(
    query: JobQuery,
    bind: Bind,
    time: Callable[[datetime], Any],
    contains: Callable[[str], str],
    window: tuple[int, int] | None = None,
) -> SearchSQL:
    """The clauses of ``query``.

    ``time`` turns a datetime into the backend's bound value; ``contains(placeholder)`` is the
    backend's test that the params' text holds the value; ``window`` keeps to ids from
    ``window[0]`` up to (not including) ``window[1]``.
    """
    conditions: list[str] = []
    params: dict[str, Any] = {}

    def add(condition: str, **values: Any) -> None:
        params.update(values)
        conditions.append(condition.format(**{name: bind(name) for name in values}))

    if window is not None:
        add("id >= {window_low} AND id < {window_high}",
            window_low=window[0], window_high=window[1])

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
    if query.sort == "next":  # as the claim index's WHERE says, so that it serves the sort
        conditions.append("status IN ('pending', 'retrying')")
    if query.after is not None:
        at = parse_cursor(query.after, query.sort)
        if query.sort == "newest":
            add("id < {after_id}", after_id=at.id)
        elif query.sort == "oldest":
            add("id > {after_id}", after_id=at.id)
        else:
            assert at.due is not None
            add("(priority < {after_priority} OR (priority = {after_priority} AND "
                "(available_at > {after_due} OR (available_at = {after_due} AND "
                "id > {after_id}))))",
                after_priority=at.priority, after_due=time(at.due), after_id=at.id)
    order = {"newest": "id DESC", "oldest": "id ASC", "next": "priority DESC, available_at, id"}
    return SearchSQL(" AND ".join(conditions) or "TRUE", order[query.sort], params)
