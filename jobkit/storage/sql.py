"""What the SQL backends (SQLite, PostgreSQL) share: the worker's fenced transitions, each one a
named query of the backend's ``.sql`` file, and batched pruning.

A subclass supplies how a fenced update runs (:meth:`SQLStorage._fenced`,
:meth:`SQLStorage._fenced_update`), how a time is bound (:meth:`SQLStorage._time`) and one prune
batch (:meth:`SQLStorage._prune_batch`).
"""

from __future__ import annotations

import abc
import functools
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import attrs
from loguru import logger

from jobkit.exceptions import StorageError
from jobkit.masking import has_secrets, mask_secrets
from jobkit.records import (
    AttemptOutcome,
    JobLogLine,
    JobRecord,
    JobStatus,
    Lease,
    NewJob,
    RetryPolicy,
    WorkerInfo,
    decode_json,
)
from jobkit.storage.base import Storage
from jobkit.storage.capabilities import (
    ClaimsInBatches,
    KeepsJobLogs,
    KeepsProgress,
    KeepsSessions,
    KeepsThroughput,
    KeepsWorkers,
    Searches,
)
from jobkit.storage.rows import Decode, set_aside_error
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

T = TypeVar("T")

#: Ids one step of a windowed text search or count covers.
WINDOW = 100_000
#: Candidate rows a text search reads at a time.
TEXT_BATCH = 200
#: Seconds a text search scans before it answers with what it found (and where to go on).
SCAN_BUDGET = 0.1

#: The largest row id both backends store (a signed 64-bit integer).
MAX_ID = 2**63 - 1


def job_key(job_id: str) -> int | None:
    """The row id of a job id; ``None`` for anything that is not the canonical form of one."""
    if job_id.isascii() and job_id.isdigit() and str(int(job_id)) == job_id:
        key = int(job_id)
        return key if key <= MAX_ID else None
    return None


def to_json(value: Any, what: str) -> str:
    """``value`` as JSON text (NaN refused); ``StorageError`` naming ``what`` otherwise."""
    try:
        return json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise StorageError(f"{what} is not JSON: {exc}") from exc


def _scans(query: JobQuery) -> bool:
    """Whether ``query`` filters by what no index serves alone (method, priority, creation
    time) without a status or job name that one does."""
    unindexed = (query.method is not None or query.priority is not None
                 or query.since is not None or query.until is not None)
    return unindexed and not query.statuses and query.name is None and query.sort != "next"


@functools.lru_cache(maxsize=256)  # a batch, and a job's every enqueue, share one policy
def _policy_json(policy: RetryPolicy) -> str:
    return to_json(attrs.asdict(policy), "the retry policy")


def new_record(
    key: int,
    job: NewJob,
    params: str,
    created_at: datetime,
    available_at: datetime,
    load: Decode,
) -> JobRecord:
    """The record of a job just inserted under row id ``key`` with ``params`` (JSON text),
    without reading the row back: what a new row's columns hold is known. The times must be
    what decoding the stored values gives, so that the record equals a later read."""
    return JobRecord(
        id=str(key),
        name=job.name,
        method=job.method,
        params=decode_json(load, params),  # a copy, as a read gives
        status=JobStatus.PENDING,
        priority=job.priority,
        attempts=0,
        max_attempts=job.max_attempts,
        result=None,
        error=None,
        created_at=created_at,
        available_at=available_at,
        started_at=None,
        finished_at=None,
        policy=job.policy,
        worker_id=None,
        lease_expires_at=None,
        progress=None,
        progress_message=None,
        crashes=0,
        max_crashes=job.max_crashes,
    )


class SQLStorage(Storage, Searches, KeepsWorkers, KeepsJobLogs, KeepsThroughput, KeepsSessions,
                 KeepsProgress, ClaimsInBatches):
    """A ``Storage`` whose worker transitions are named, fenced SQL updates.

    A subclass runs work in one transaction (:meth:`_transaction`, handing the work its
    connection or cursor) and supplies the two writes a transition is made of, inside the
    caller's transaction: a fenced update that closes the attempt (:meth:`_fenced_in`) and a
    claim (:meth:`_claim_in`)."""

    @abc.abstractmethod
    def _transaction(self, operation: str, work: Callable[[Any], T]) -> T:
        """Run ``work(connection or cursor)`` in one transaction; driver errors become
        ``StorageError`` naming ``operation``."""

    @abc.abstractmethod
    def _fenced_in(
        self,
        db: Any,
        name: str,
        lease: Lease,
        outcome: AttemptOutcome,
        error: str | None,
        traceback: str | None,
        params: Mapping[str, Any],
    ) -> JobRecord | None:
        """Inside the caller's transaction: the fenced job update ``name`` (with ``params``)
        and the attempt closed with ``outcome``, ``error`` and ``traceback``; the new record,
        or ``None`` when the lease no longer owns the job."""

    @abc.abstractmethod
    def _claim_in(self, db: Any, worker_id: str, lease_seconds: float) -> JobRecord | None:
        """Inside the caller's transaction: claim the next due job and open its attempt."""

    @abc.abstractmethod
    def _set_aside_in(self, db: Any, key: int, error: str) -> None:
        """Inside the caller's transaction: fail the job just claimed under row id ``key``,
        and its attempt, with ``error``."""

    def _readable(self, db: Any, claimed: list[JobRecord]) -> list[JobRecord]:
        """The claimed jobs whose rows could be read; the others are set aside as ``failed``,
        in the same transaction, their error naming each column and what it held: one row
        nobody can read must not stop the queue, nor undo the completions committed with it."""
        readable = []
        for record in claimed:
            if not record.unreadable:
                readable.append(record)
                continue
            error = set_aside_error(record)
            logger.error("job {job_id}: {error}", job_id=record.id, error=error)
            self._set_aside_in(db, int(record.id), error)
        return readable

    def _claim_many_in(
        self, db: Any, worker_id: str, lease_seconds: float, limit: int
    ) -> list[JobRecord]:
        """Inside the caller's transaction: claim up to ``limit`` due jobs, in claim order, and
        open their attempts (by default one :meth:`_claim_in` after the other)."""
        claimed: list[JobRecord] = []
        while len(claimed) < limit:
            record = self._claim_in(db, worker_id, lease_seconds)
            if record is None:
                break
            claimed.append(record)
        return claimed

    def _fenced(
        self,
        operation: str,
        name: str,
        lease: Lease,
        outcome: AttemptOutcome,
        *,
        error: str | None = None,
        traceback: str | None = None,
        **params: Any,
    ) -> JobRecord | None:
        """:meth:`_fenced_in` in a transaction of its own."""
        return self._transaction(
            operation,
            lambda db: self._fenced_in(db, name, lease, outcome, error, traceback, params),
        )

    def _claim(self, worker_id: str, lease_seconds: float) -> JobRecord | None:
        """Atomically take the next due job (see :meth:`Storage.claim`)."""
        return self._transaction(
            f"claim a job for worker {worker_id}",
            lambda db: self._claim_in(db, worker_id, lease_seconds),
        )

    def complete_and_claim_many(
        self,
        completions: Sequence[tuple[Lease, Any]],
        worker_id: str,
        lease_seconds: float,
        limit: int,
    ) -> tuple[list[JobRecord | None], list[JobRecord]]:
        """The completions of a batch and the next claims in one transaction: one commit for
        the batch (see :class:`~jobkit.storage.capabilities.ClaimsInBatches`)."""
        encoded = [
            (lease, to_json(result, f"job {lease.job_id}: result")) for lease, result in completions
        ]

        def work(db: Any) -> tuple[list[JobRecord | None], list[JobRecord]]:
            done = [
                self._fenced_in(
                    db, "complete", lease, AttemptOutcome.SUCCEEDED, None, None, {"result": text}
                )
                for lease, text in encoded
            ]
            claimed = self._claim_many_in(db, worker_id, lease_seconds, limit) if limit > 0 else []
            return done, claimed

        what = f"complete {len(encoded)} job(s) and claim up to {limit}"
        return self._transaction(f"{what} for worker {worker_id}", work)

    @abc.abstractmethod
    def _fenced_update(self, operation: str, name: str, lease: Lease, **params: Any) -> bool:
        """Run the fenced update ``name``; whether the lease still owned the job."""

    @abc.abstractmethod
    def _time(self, value: datetime) -> Any:
        """A time as the backend binds it."""

    def _available_at(self, job: NewJob) -> Any:
        """A new job's ``available_at`` as bound; ``None`` (due now) stays ``None``: the INSERT
        takes the ``now`` it is created at (one clock reading for a whole batch)."""
        return None if job.available_at is None else self._time(job.available_at)

    def _new_job(self, job: NewJob) -> dict[str, Any]:
        """The parameters of the ``enqueue`` query (all but ``now``)."""
        params = job.params_json
        if params is None:
            params = to_json(job.params, f"job {job.name!r}: params")
        masked = mask_secrets(job.params) if has_secrets(job.params) else None
        return {
            "name": job.name,
            "method": job.method,
            "params": params,
            # what a text search looks in: a secret's value is never there
            "params_masked": None if masked is None else to_json(masked, "params"),
            "priority": job.priority,
            "max_attempts": job.max_attempts,
            "max_crashes": job.max_crashes,
            "policy": _policy_json(job.policy),
            "available_at": self._available_at(job),
        }

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
        """The page ``query`` finds (see :class:`~jobkit.storage.capabilities.Searches`): one
        indexed query. A search no index serves (text, or method, priority or creation time
        without a status or job name) goes by windows of ids, or batches in claim order, and
        answers with what it found once :data:`SCAN_BUDGET` seconds have passed."""
        if not query.text and not _scans(query):  # one more than asked: is there a next page
            return page_of(query, self._find(query, limit=query.limit + 1))
        if query.sort == "next":
            return self._search_in_batches(query)
        return self._search_in_windows(query, SCAN_BUDGET)

    def _find(self, query: JobQuery, window: tuple[int, int] | None = None,
              limit: int | None = None) -> list[JobRecord]:
        """The rows the SQL part of ``query`` finds, in order, at most ``limit`` (default
        ``query.limit``)."""
        clauses = build_sql(query, self._bind, self._time, self._contains, window)
        sql = (f"SELECT * FROM jobkit_jobs WHERE {clauses.where} ORDER BY {clauses.order} "
               f"LIMIT {self._bind('limit')}")
        rows = self._select("search jobs", sql, {
            **clauses.params, "limit": query.limit if limit is None else limit})
        return [self._record(row) for row in rows]

    def _search_in_batches(self, query: JobQuery) -> SearchPage:
        """Text search in the claim order: the waiting jobs, a batch at a time, for at most
        :data:`SCAN_BUDGET` seconds (then ``next`` goes on from the last row looked at)."""
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
        """Text search by id, a window of :data:`WINDOW` ids at a time, until a page is full,
        the jobs run out, or ``budget`` seconds do (then ``next`` resumes where it stopped)."""
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
        """Windows ``[low, high)`` of ids from ``start`` (an edge not included), towards the
        oldest job (``newest``) or the newest one."""
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
        """How many jobs ``query`` finds, no further than ``cap``; with a ``budget``, by
        windows of ids from the newest, answering "at least" when the time runs out (see
        :meth:`Storage.count_matching`)."""
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

    # -- worker processes and waiting jobs, for the dashboard -------------------------------

    @abc.abstractmethod
    def _named(self, operation: str, name: str, params: Mapping[str, Any]) -> list[Any]:
        """Run the named query of the backend's ``.sql`` file in one transaction; its rows
        (none for a write)."""

    @abc.abstractmethod
    def _read_time(self, value: Any) -> datetime:
        """A stored time as a datetime."""

    def _worker_params(self, worker: WorkerInfo) -> dict[str, Any]:
        return {**attrs.asdict(worker), "started_at": self._time(worker.started_at),
                "last_seen_at": self._time(worker.last_seen_at)}

    def register_worker(self, worker: WorkerInfo) -> None:
        """Record a worker process that has started (or update it)."""
        self._named(f"register worker {worker.worker_id}", "register_worker",
                    self._worker_params(worker))

    def beat_workers(self, worker_ids: list[str]) -> None:
        """Mark these worker processes as seen now."""
        now = self._time(self.now())
        for worker_id in worker_ids:  # a handful per supervisor
            self._named("beat workers", "beat_worker", {"worker_id": worker_id, "now": now})

    def remove_worker(self, worker_id: str) -> None:
        """Forget a worker process that has stopped."""
        self._named(f"remove worker {worker_id}", "remove_worker", {"worker_id": worker_id})

    def forget_workers(self, seen_before: datetime) -> int:
        """Forget worker processes not seen since ``seen_before``."""
        before = len(self.list_workers())
        self._named("forget lost workers", "forget_workers",
                    {"seen_before": self._time(seen_before)})
        return before - len(self.list_workers())

    def list_workers(self) -> list[WorkerInfo]:
        """The worker processes known, by host, supervisor and id."""
        return [
            WorkerInfo(
                worker_id=row["worker_id"], hostname=row["hostname"], pid=row["pid"],
                supervisor_pid=row["supervisor_pid"],
                started_at=self._read_time(row["started_at"]),
                last_seen_at=self._read_time(row["last_seen_at"]),
            )
            for row in self._named("list workers", "list_workers", {})
        ]

    @abc.abstractmethod
    def _named_many(self, operation: str, name: str, rows: list[Mapping[str, Any]]) -> None:
        """Run the named write once per row, in one transaction."""

    def add_job_logs(self, job_id: str, lines: list[JobLogLine]) -> None:
        """Keep lines the job logged, in one transaction (nothing for an unknown id)."""
        key = job_key(job_id)
        if key is None or not lines:
            return
        self._named_many(f"keep the log lines of job {job_id}", "add_job_log", [
            {"job_id": key, "attempt": line.attempt, "at": self._time(line.at),
             "level": line.level, "message": line.message} for line in lines])

    def job_logs(self, job_id: str) -> list[JobLogLine]:
        """The lines the job logged, oldest first."""
        key = job_key(job_id)
        if key is None:
            return []
        rows = self._named(f"read the log lines of job {job_id}", "job_logs", {"job_id": key})
        return [JobLogLine(row["attempt"], self._read_time(row["at"]), row["level"],
                           row["message"]) for row in rows]

    def add_throughput(self, minute: datetime, succeeded: int, failed: int) -> None:
        """Add to the counts of ``minute`` (one upsert)."""
        self._named("record the throughput", "add_throughput",
                    {"minute": self._time(minute), "succeeded": succeeded, "failed": failed})

    def throughput(self, since: datetime) -> list[tuple[datetime, int, int]]:
        """``(minute, succeeded, failed)`` from ``since``, oldest first."""
        rows = self._named("read the throughput", "throughput", {"since": self._time(since)})
        return [(self._read_time(row["minute"]), row["succeeded"], row["failed"])
                for row in rows]

    def forget_throughput(self, before: datetime) -> None:
        """Forget the counts of minutes before ``before``."""
        self._named("forget old throughput", "forget_throughput", {"before": self._time(before)})

    def revoke_session(self, session_id: str, expires_at: datetime) -> None:
        """Keep the ended session in ``jobkit_revoked_sessions`` (forgetting those whose
        cookies have expired), where every dashboard over this store looks."""
        self._named("forget expired dashboard sessions", "forget_revoked_sessions",
                    {"now": self._now_bound()})
        self._named("end a dashboard session", "revoke_session",
                    {"id": session_id, "expires_at": self._time(expires_at)})

    def session_revoked(self, session_id: str) -> bool:
        """Whether the session is in ``jobkit_revoked_sessions`` (one read, by primary key)."""
        sql = f"SELECT 1 FROM jobkit_revoked_sessions WHERE id = {self._bind('id')}"
        return bool(self._select("check a dashboard session", sql, {"id": session_id}))

    def oldest_waiting(self) -> datetime | None:
        """When the job that has waited longest became due (see
        :class:`~jobkit.storage.capabilities.Searches`):
        one index scan of the waiting jobs."""
        rows = self._named("find the oldest waiting job", "oldest_waiting",
                           {"now": self._now_bound()})
        value = rows[0]["oldest"]
        try:
            oldest = None if value is None else self._read_time(value)
        except (TypeError, ValueError, OverflowError, OSError):  # a row nobody can read
            return None
        return oldest if isinstance(oldest, datetime) else None

    def _now_bound(self) -> Any:
        """``now`` as the store binds it in a query."""
        return self._time(self.now())

    @abc.abstractmethod
    def _prune_batch(self, finished_before: Any, batch_size: int) -> int:
        """Delete up to ``batch_size`` finished jobs in one transaction; how many."""

    def set_progress(self, lease: Lease, fraction: float, message: str | None) -> bool:
        """Record the running attempt's progress (0..1); ``False`` when the lease is lost."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress fraction must be between 0 and 1, got {fraction!r}")
        return self._fenced_update(
            f"set progress of job {lease.job_id}", "set_progress", lease,
            progress=float(fraction), progress_message=message,
        )

    def _settle(self, lease: Lease, outcome: AttemptOutcome, result: Any, error: str | None,
                traceback: str | None, retry_at: datetime | None) -> JobRecord | None:
        """Close the attempt with ``outcome`` (see :meth:`Storage.settle`); fenced."""
        if outcome is AttemptOutcome.SUCCEEDED:
            encoded = to_json(result, f"job {lease.job_id}: result")
            return self._fenced(
                f"complete job {lease.job_id}", "complete", lease, outcome, result=encoded
            )
        if outcome is AttemptOutcome.HANDED_BACK:
            return self._fenced(f"release job {lease.job_id}", "release", lease, outcome)
        if retry_at is None:
            return self._fenced(
                f"fail job {lease.job_id}", "fail", lease, outcome,
                error=error, traceback=traceback,
            )
        return self._fenced(
            f"schedule a retry of job {lease.job_id}", "schedule_retry", lease, outcome,
            error=error, traceback=traceback, retry_at=self._time(retry_at),
        )

    def _prune(
        self, finished_before: datetime, batch_size: int, progress: Callable[[int], None] | None
    ) -> int:
        """Delete finished jobs (and attempts) that finished before ``finished_before``, in
        batches of ``batch_size`` rows, each its own transaction."""
        deleted = 0
        while True:
            count = self._prune_batch(self._time(finished_before), batch_size)
            deleted += count
            if progress is not None:
                progress(deleted)
            if count < batch_size:
                return deleted
