"""Internal: the search of the SQL backends, one indexed query or a scan within a budget.

:class:`SQLSearches` turns a :class:`~jobkit.storage.search.JobQuery` into SQL (built by
:func:`~jobkit.storage.search.build_sql` from fixed pieces; values are bound) and runs it
through the backend's read; a search no index serves goes by windows of ids, or batches in
claim order, and answers with what it found when its time is up, with a cursor to go on from.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import attrs

from jobkit.records import JobRecord
from jobkit.storage.capabilities import Searches
from jobkit.storage.search import (
    MAX_LIMIT,
    Count,
    JobQuery,
    SearchPage,
    build_sql,
    cursor_of,
    matches,
    page_of,
    parse_cursor,
)

#: Ids one step of a windowed text search or count covers.
WINDOW = 100_000
#: Candidate rows a text search reads at a time.
TEXT_BATCH = 200
#: Seconds a text search scans before it answers with what it found (and where to go on).
SCAN_BUDGET = 0.1


def _scans(query: JobQuery) -> bool:
    """Whether ``query`` filters by what no index serves alone.

    That is method, priority or creation time, without a status or job name, which an index serves.
    """
    unindexed = (query.method is not None or query.priority is not None
                 or query.since is not None or query.until is not None)
    return unindexed and not query.statuses and query.name is None and query.sort != "next"



class SQLSearches(Searches):
    """:class:`~jobkit.storage.capabilities.Searches`' ``search`` and ``count_matching`` in SQL.

    A backend supplies how it binds a value (:meth:`_bind`) and a time (:meth:`_time`), its
    test that the params' text holds a value (:meth:`_contains`), a read-only query
    (:meth:`_select`) and how a row becomes a record (:meth:`_record`).
    """

    @abc.abstractmethod
    def _time(self, value: datetime) -> Any:
        """A time as the backend binds it."""

    @abc.abstractmethod
    def _bind(self, name: str) -> str:
        """How the backend binds a named value in SQL (``:name``, ``%(name)s``)."""

    @abc.abstractmethod
    def _contains(self, placeholder: str) -> str:
        """The backend's test that the params' JSON text holds the value bound there."""

    @abc.abstractmethod
    def _select(self, operation: str, sql: str, params: Mapping[str, Any]) -> list[Any]:
        """The rows of a read-only query, in one transaction."""

    @abc.abstractmethod
    def _record(self, row: Any) -> JobRecord:
        """A ``jobkit_jobs`` row as a record."""

    def search(self, query: JobQuery) -> SearchPage:
        """The page ``query`` finds (see :class:`~jobkit.storage.capabilities.Searches`).

        One indexed query. A search no index serves (text, or method, priority or creation time
        without a status or job name) goes by windows of ids, or batches in claim order, and
        answers with what it found once :data:`SCAN_BUDGET` seconds have passed.
        """
        if not query.text and not _scans(query):  # one more than asked: is there a next page
            return page_of(query, self._find(query, limit=query.limit + 1))
        if query.sort == "next":
            return self._search_in_batches(query)
        return self._search_in_windows(query, SCAN_BUDGET)

    def _find(self, query: JobQuery, window: tuple[int, int] | None = None,
              limit: int | None = None) -> list[JobRecord]:
        """The rows the SQL part of ``query`` finds, in order, at most ``limit``.

        ``limit`` defaults to ``query.limit``.
        """
        clauses = build_sql(query, self._bind, self._time, self._contains, window)
        sql = (f"SELECT * FROM jobkit_jobs WHERE {clauses.where} ORDER BY {clauses.order} "
               f"LIMIT {self._bind('limit')}")
        rows = self._select("search jobs", sql, {
            **clauses.params, "limit": query.limit if limit is None else limit})
        return [self._record(row) for row in rows]

    def _search_in_batches(self, query: JobQuery) -> SearchPage:
        """Text search in the claim order.

        The waiting jobs, a batch at a time, for at most :data:`SCAN_BUDGET` seconds (then ``next``
        goes on from the last row looked at).
        """
        found: list[JobRecord] = []
        batch = attrs.evolve(query, limit=TEXT_BATCH)
        deadline = time.monotonic() + SCAN_BUDGET
        while len(found) <= query.limit:
            rows = self._find(batch)
            found.extend(record for record in rows if matches(query, record))
            if len(rows) < TEXT_BATCH:
                break
            batch = attrs.evolve(batch, after=cursor_of(rows[-1], query.sort))
            if len(found) <= query.limit and time.monotonic() > deadline:
                return SearchPage(found, batch.after, complete=False)
        return page_of(query, found)

    def _search_in_windows(self, query: JobQuery, budget: float) -> SearchPage:
        """Text search by id, a window of :data:`WINDOW` ids at a time.

        Until a page is full, the jobs run out, or ``budget`` seconds do (then ``next`` resumes
        where it stopped).
        """
        newest = query.sort == "newest"
        base = attrs.evolve(query, after=None, limit=TEXT_BATCH)
        start = None
        if query.after is not None:
            last = parse_cursor(query.after, query.sort).id
            start = last if newest else last + 1
        deadline = time.monotonic() + budget
        found: list[JobRecord] = []
        for low, high in self._windows(newest, start):
            while True:
                rows = self._find(base, (low, high))
                found.extend(record for record in rows if matches(query, record))
                if len(found) > query.limit:
                    return page_of(query, found)
                if len(rows) < TEXT_BATCH:
                    low, high = (low, low) if newest else (high, high)  # the window is done
                elif newest:
                    high = int(rows[-1].id)
                else:
                    low = int(rows[-1].id) + 1
                if time.monotonic() > deadline:  # nothing beyond this edge was looked at
                    edge = str(high) if newest else str(low - 1)
                    return SearchPage(found, edge, complete=False)
                if low >= high:
                    break
        return SearchPage(found, None)

    def _windows(self, newest: bool, start: int | None) -> Iterator[tuple[int, int]]:
        """Windows ``[low, high)`` of ids from ``start`` (an edge not included).

        Towards the oldest job (``newest``) or the newest one.
        """
        # two subqueries: each is one index probe (min and max together would scan the table)
        rows = self._select(
            "find the range of job ids",
            "SELECT (SELECT min(id) FROM jobkit_jobs) AS low, "
            "(SELECT max(id) FROM jobkit_jobs) AS high",
            {},
        )
        first, last = rows[0]["low"], rows[0]["high"]
        if first is None:
            return
        if newest:
            edge = last + 1 if start is None else min(start, last + 1)
            while edge > first:
                yield max(first, edge - WINDOW), edge
                edge -= WINDOW
        else:
            edge = first if start is None else max(start, first)
            while edge <= last:
                yield edge, min(last + 1, edge + WINDOW)
                edge += WINDOW

    def count_matching(
        self, query: JobQuery, cap: int = 10_000, budget: float | None = None
    ) -> Count:
        """How many jobs ``query`` finds, no further than ``cap``.

        With a ``budget``, by windows of ids from the newest, answering "at least" when the time
        runs out (see :meth:`Storage.count_matching`).
        """
        query = attrs.evolve(query, after=None, limit=1)
        if query.text:  # candidates are checked one by one, as search does
            return self._count_pages(query, cap, budget)
        if budget is None:
            return self._count_window(query, cap, None)
        deadline = time.monotonic() + budget
        total = 0
        for window in self._windows(True, None):
            counted = self._count_window(query, cap - total, window)
            if counted.over:
                return Count(cap, over=True)
            total += counted.n
            if time.monotonic() > deadline:
                return Count(total, exact=False)
        return Count(total)

    def _count_window(self, query: JobQuery, cap: int, window: tuple[int, int] | None) -> Count:
        clauses = build_sql(query, self._bind, self._time, self._contains, window)
        sql = (f"SELECT count(*) AS n FROM (SELECT 1 FROM jobkit_jobs WHERE {clauses.where} "
               f"LIMIT {self._bind('cap')}) AS matching")
        n = int(self._select("count jobs", sql, {**clauses.params, "cap": cap + 1})[0]["n"])
        return Count(cap, over=True) if n > cap else Count(n)

    def _count_pages(self, query: JobQuery, cap: int, budget: float | None) -> Count:
        """Count a text search by running it, page after page, within ``budget`` in all."""
        deadline = None if budget is None else time.monotonic() + budget
        counted, after = 0, None
        while True:
            left = 3600.0 if deadline is None else deadline - time.monotonic()
            page = self._search_in_windows(attrs.evolve(query, sort="newest", limit=MAX_LIMIT,
                                                        after=after), max(0.0, left))
            counted += len(page.jobs)
            if counted > cap:
                return Count(cap, over=True)
            if page.next is None:
                return Count(counted)
            if deadline is not None and time.monotonic() > deadline:
                return Count(counted, exact=False)
            after = page.next
