"""Internal: bulk actions: cancel or retry every job a list's filters find.

Bulk actions: cancel, or retry, every job a list's filters find (up to :data:`LIMIT` a
request), one job at a time through the app (each its own transaction, each its own event)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

import attrs

from jobkit.records import JobStatus
from jobkit.storage.capabilities import search
from jobkit.storage.search import MAX_LIMIT, JobQuery

if TYPE_CHECKING:
    from jobkit.app import JobKit

Action = Literal["cancel", "retry"]
#: The statuses each action applies to: the filters are narrowed to them.
APPLIES_TO: dict[str, frozenset[JobStatus]] = {
    "cancel": frozenset({JobStatus.PENDING, JobStatus.RETRYING, JobStatus.RUNNING}),
    "retry": frozenset({JobStatus.FAILED, JobStatus.CANCELLED}),
}
#: The most jobs one request acts on; the answer says when more are left.
LIMIT = 5_000
#: Seconds one request spends finding the jobs (a text filter scans): then it acts on those.
SEARCH_SECONDS = 5.0


@attrs.frozen
class Done:
    """What a bulk action did."""

    action: str
    matched: int  # jobs the narrowed filters found (up to LIMIT)
    changed: int  # of which the action changed (the others changed status meanwhile)
    more: bool  # LIMIT was reached: jobs may be left

    def message(self) -> str:
        """A line for people."""
        verb = {"cancel": "cancelled", "retry": "queued again"}[self.action]
        text = f"{self.changed} of {self.matched} matching job(s) {verb}"
        return text + ("; more may match: run it again for the rest" if self.more else "")


def narrowed(query: JobQuery, action: str) -> JobQuery:
    """``query`` kept to the statuses ``action`` applies to."""
    allowed = APPLIES_TO[action]
    statuses = tuple(s for s in (query.statuses or tuple(JobStatus)) if s in allowed)
    return attrs.evolve(query, statuses=statuses, after=None, limit=MAX_LIMIT)


def apply(app: JobKit, query: JobQuery, action: str) -> Done:
    """Cancel or retry every job ``query`` finds among those the action applies to."""
    act = {"cancel": app.cancel_job, "retry": app.retry_job}[action]
    query = narrowed(query, action)
    if not query.statuses:  # the filters asked only for statuses the action cannot change
        return Done(action, 0, 0, False)
    ids: list[str] = []
    after, exhausted = None, False
    deadline = time.monotonic() + SEARCH_SECONDS
    while len(ids) < LIMIT and not exhausted and time.monotonic() < deadline:
        page = search(app.storage, attrs.evolve(query, after=after))
        ids.extend(job.id for job in page.jobs)
        after, exhausted = page.next, page.next is None
    more = len(ids) > LIMIT or not exhausted
    ids = ids[:LIMIT]
    changed = sum(1 for job_id in ids if act(job_id))
    return Done(action, len(ids), changed, more)
