"""Internal: what the SQL backends share (SQLStorage), fenced transitions as named queries.

Each of the worker's transitions is one named query of the backend's ``.sql`` file, fenced by
the lease; the optional capabilities (search, from :mod:`jobkit.storage.sql_search`, the
worker roster, job logs, throughput, sessions, progress, batched claims) and batched pruning
are written once here. A subclass supplies how a transaction runs (:meth:`SQLStorage._transaction`),
a fenced update (:meth:`SQLStorage._update_and_close`, :meth:`SQLStorage._fenced_update`), a
claim (:meth:`SQLStorage._claim_in`), how a time is bound (:meth:`SQLStorage._time`) and one
prune batch (:meth:`SQLStorage._prune_candidates` and :meth:`SQLStorage._prune_ids`).
"""

from __future__ import annotations

import abc
import builtins
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import attrs

from jobkit.exceptions import StorageError
from jobkit.flow import EVERY_QUEUE, Flow
from jobkit.lazylog import logger
from jobkit.masking import has_secrets, mask_secrets
from jobkit.records import (
    FINAL_STATUSES,
    AttemptOutcome,
    JobRecord,
    JobStatus,
    Lease,
    NewJob,
    RetryPolicy,
    decode_json,
    utcnow,
)
from jobkit.storage.base import Clock, Storage, check_claim, check_new_jobs
from jobkit.storage.capabilities import ClaimsInBatches, KeepsProgress, KeepsSessions
from jobkit.storage.cascades import Cascades
from jobkit.storage.rows import (
    Claimed,
    Decode,
    Row,
    claimed,
    job_key,
    record_after_completion,
    set_aside_error,
)
from jobkit.storage.sql_flow import SQLFlow
from jobkit.storage.sql_keeps import SQLKeeps
from jobkit.storage.sql_schedules import SQLSchedules
from jobkit.storage.sql_search import SQLSearches

T = TypeVar("T")

#: The most claims a store remembers (:meth:`SQLStorage._remember_claim`); past it, it forgets
#: them all (each of a worker's claims is forgotten when its attempt ends: a backstop).
MAX_CLAIMS = 4096


def unique_retry_error(record: JobRecord, holder: JobRecord) -> StorageError:
    """Why ``record`` cannot be retried: ``holder``, waiting or running, has its unique key."""
    return StorageError(
        f"job {record.id} cannot be retried: job {holder.id} has the same unique key and is "
        f"{holder.status}; a store keeps one such job waiting or running (cancel job "
        f"{holder.id}, or wait for it to end)")


def fence_of(lease: Lease) -> dict[str, Any] | None:
    """The parameters that fence an update to the lease's holder; ``None`` for no such row.

    A fenced query changes the job only while ``job_id``, ``worker_id`` and ``attempt`` still
    match its row; a job id that is not the canonical form of a row id matches none.
    """
    key = job_key(lease.job_id)
    if key is None:
        return None
    return {"job_id": key, "worker_id": lease.worker_id, "attempt": lease.attempt}


#: ``json.dumps(value, allow_nan=False, ensure_ascii=False)``, without making an encoder per call.
_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False)


def to_json(value: Any, what: str) -> str:
    """``value`` as JSON text (NaN refused); ``StorageError`` naming ``what`` otherwise."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise StorageError(f"{what} is not JSON: {exc}") from exc


@functools.lru_cache(maxsize=256)  # a batch, and a job's every enqueue, share one policy
def _policy_json(policy: RetryPolicy) -> str:
    return to_json(attrs.asdict(policy), "the retry policy")


#: The types whose values JSON gives back as they were, of the same type (allow_nan=False).
_PLAIN = frozenset({str, int, float, bool, type(None)})


def _decoded(load: Decode, text: str, params: Any) -> Any:
    """What ``load(text)`` gives for ``text``, the JSON of ``params``, for less where it can.

    Most params are a flat mapping of plain values: text keys, and values of exactly one of
    the :data:`_PLAIN` types (no subclass, no container). Their JSON decodes to a mapping equal
    to them, key for key and type for type, so a new ``dict`` of them is that decoding, a copy
    (the caller's mapping is not shared). Anything else is decoded (``load is json.loads``).
    """
    if (load is json.loads and type(params) is dict
            and all(type(k) is str and type(v) in _PLAIN for k, v in params.items())):
        return dict(params)
    return decode_json(load, text)


def new_record(
    key: int,
    job: NewJob,
    params: str,
    created_at: datetime,
    available_at: datetime,
    load: Decode,
) -> JobRecord:
    """The record of a job just inserted under row id ``key``, without reading the row back.

    ``params`` is its JSON text; what a new row's columns hold is known. The times must be what
    decoding the stored values gives, so that the record equals a later read.
    """
    return JobRecord(
        id=str(key),
        name=job.name,
        method=job.method,
        params=_decoded(load, params, job.params),  # a copy, as a read gives
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
        queue=job.queue,
        unique_key=job.unique_key,
    )


class SQLStorage(Storage, SQLSearches, SQLKeeps, SQLFlow, KeepsSessions, KeepsProgress,
                 ClaimsInBatches, SQLSchedules):
    """A ``Storage`` whose worker transitions are named, fenced SQL updates.

    A subclass runs work in one transaction (:meth:`_transaction`, handing the work its
    connection or cursor) and supplies the two writes a transition is made of, inside the
    caller's transaction: a fenced update that closes the attempt (:meth:`_update_and_close`)
    and a claim (:meth:`_claim_in`).
    """

    def __init__(self, *, clock: Clock = utcnow) -> None:
        super().__init__(clock=clock)
        #: The jobs claimed here whose attempts have not ended, by ``(row id, attempt)``: a
        #: completion builds its record from the claim's (:meth:`_remember_claim`).
        self._claims: dict[tuple[int, int], Claimed] = {}
        #: The jobs a workflow's cascade changed in passing, per thread, until the app takes
        #: them (committed by :meth:`_transaction`'s backend, discarded on a rollback).
        self._cascades = Cascades()

    def _remember_claim(self, record: JobRecord, row: Row) -> None:
        """Keep what the row of a job just claimed held, for the record of its completion.

        A backend calls it from its claim, with the row it decoded into ``record``; without
        it, a completion decodes the row it returns.
        """
        claim = claimed(record, row)
        if claim is None:
            return
        if len(self._claims) >= MAX_CLAIMS:
            self._claims.clear()
        self._claims[(int(record.id), record.attempts)] = claim

    #: How the backend decodes a row's times and JSON values (as its ``job_of_row`` does), for
    #: the records of completions built from their claims'; ``None``: it remembers no claims.
    _row_decoders: tuple[Decode, Decode] | None = None

    def _completed_record(self, row: Any, claim: Claimed | None) -> JobRecord:
        """The record of a row the ``complete`` query returned (``claim``: its job's claim).

        Built from the claim's record when the row allows
        (:func:`jobkit.storage.rows.record_after_completion`), else the row decoded.
        """
        if claim is not None and self._row_decoders is not None:
            record = record_after_completion(row, claim, *self._row_decoders)
            if record is not None:
                return record
        return self._record(row)

    @abc.abstractmethod
    def _transaction(self, operation: str, work: Callable[[Any], T]) -> T:
        """Run ``work(connection or cursor)`` in one transaction.

        Driver errors become ``StorageError`` naming ``operation``.
        """

    def _fenced_in(
        self,
        db: Any,
        name: str,
        lease: Lease,
        outcome: AttemptOutcome,
        error: str | None,
        traceback: str | None,
        params: Mapping[str, Any],
        ended: list[int] | None = None,
    ) -> JobRecord | None:
        """Run a fenced job update and close the attempt, inside the caller's transaction.

        The update is the named query ``name`` (with ``params``, which may give the ``now`` it
        binds); the attempt is closed with ``outcome``, ``error`` and ``traceback``. Returns the
        new record, or ``None`` when the lease no longer owns the job. A job that ended has
        what waits for it settled (:meth:`_job_ended_in`), or, given ``ended``, its row id
        added there for the caller to settle with others (:meth:`_completed_in`).
        """
        fence = fence_of(lease)
        if fence is None:
            return None
        # the attempt ends here (or had ended): its claim is no longer needed
        claim = self._claims.pop((fence["job_id"], fence["attempt"]), None)
        bound = {**fence, "error": error, "outcome": outcome.value, "traceback": traceback,
                 **params}
        if "now" not in bound:
            bound["now"] = self._now_bound()
        record = (self._complete_claimed(db, claim, bound)
                  if claim is not None and name == "complete" else None)
        if record is not None and claim is not None:
            waited_for = self._may_be_waited_for(claim)
        else:
            row = self._update_and_close(db, name, bound)
            if row is None:
                return None
            record = (self._completed_record(row, claim) if name == "complete"
                      else self._record(row))
            # set by a trigger on jobkit_job_parents in the link's transaction, which the
            # update waited for (PostgreSQL: the parent's row is locked by the link's)
            waited_for = bool(row["has_children"])
        if waited_for and record.status in FINAL_STATUSES:
            if ended is None:
                self._job_ended_in(db, fence["job_id"], bound["now"])
            else:
                ended.append(fence["job_id"])
        return record

    def _may_be_waited_for(self, claim: Claimed) -> bool:
        """Whether a job may wait for the one :meth:`_complete_claimed` just completed.

        ``claim`` is its claim, whose row the completion found unchanged. ``False`` lets the
        completion skip :meth:`_job_ended_in` (a drain with no workflows looks up no children);
        ``True`` by default.
        """
        return True

    def _completed_in(self, db: Any, keys: list[int], now: Any) -> None:
        """The jobs of row ids ``keys`` have just completed, in the caller's transaction.

        A batch's completions (:meth:`complete_and_claim_many`), settled once all are written;
        by default one :meth:`_job_ended_in` after the other.
        """
        for key in keys:
            self._job_ended_in(db, key, now)

    def _job_ended_in(self, db: Any, key: int, now: Any) -> None:
        """The job of row id ``key`` has just ended, inside the caller's transaction.

        Every change that ends a job calls it (a settle, a cancel, a lease lost for the last
        time, a claimed row set aside): a store with the capability ``workflows`` settles the
        job's blocked children there. By default nothing.
        """

    def _complete_claimed(self, db: Any, claim: Claimed, params: Mapping[str, Any]
                          ) -> JobRecord | None:
        """Complete a job claimed here whose row is as its claim left it, reading no row back.

        Inside the caller's transaction, with the ``complete`` query's ``params``. A backend
        may write the completion and close the attempt only while the row still holds, in every
        column the completion leaves alone, what the claim read, and then build the record from
        the claim's (:func:`jobkit.storage.rows.completed_record`). ``None``: nothing written
        (by default, or the fence or the row said no): the ``complete`` query runs as usual.
        """
        return None

    @abc.abstractmethod
    def _update_and_close(self, db: Any, name: str, params: Mapping[str, Any]) -> Any:
        """Run the fenced update ``name`` and, if it held, close the job's open attempt.

        Inside the caller's transaction; ``params`` hold the fence, ``now`` and the attempt's
        ``outcome``, ``error`` and ``traceback``. Returns the updated row, or ``None``.
        """

    @abc.abstractmethod
    def _claim_in(
        self, db: Any, worker_id: str, lease_seconds: float, flow: Flow = EVERY_QUEUE
    ) -> JobRecord | None:
        """Inside the caller's transaction: claim the next due job ``flow`` allows.

        Never from a paused queue; its attempt is opened.
        """

    @abc.abstractmethod
    def _set_aside_in(self, db: Any, key: int, error: str) -> None:
        """Fail the job just claimed under row id ``key``, and its attempt, with ``error``.

        Inside the caller's transaction.
        """

    def _readable(self, db: Any, claimed: list[JobRecord]) -> list[JobRecord]:
        """The claimed jobs whose rows could be read.

        The others are set aside as ``failed``, in the same transaction, their error naming each
        column and what it held: one row nobody can read must not stop the queue, nor undo the
        completions committed with it.
        """
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
        self, db: Any, worker_id: str, lease_seconds: float, limit: int, flow: Flow = EVERY_QUEUE
    ) -> list[JobRecord]:
        """Claim up to ``limit`` due jobs ``flow`` allows, in claim order; open their attempts.

        Inside the caller's transaction; by default one :meth:`_claim_in` after the other.
        """
        claimed: list[JobRecord] = []
        while len(claimed) < limit:
            record = self._claim_in(db, worker_id, lease_seconds, flow)
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
        claimed = self.claim_from(EVERY_QUEUE, worker_id, lease_seconds)
        return claimed[0] if claimed else None

    def claim_from(
        self, flow: Flow, worker_id: str, lease_seconds: float, limit: int = 1
    ) -> list[JobRecord]:
        """Claim up to ``limit`` due jobs of ``flow``'s queues, none paused (``flow``)."""
        check_claim(worker_id, lease_seconds, limit)
        if self._nothing_to_claim(worker_id, limit, flow):
            return []
        claimed = self._transaction(
            f"claim a job for worker {worker_id}",
            lambda db: self._claim_many_in(db, worker_id, lease_seconds, limit, flow),
        )
        self._claimed(bool(claimed))
        return claimed

    def _nothing_to_claim(self, worker_id: str, limit: int, flow: Flow = EVERY_QUEUE) -> bool:
        """Whether a claim of up to ``limit`` jobs ``flow`` allows can be skipped; by default never.

        A backend may answer from a cheap look (a read that takes no write lock) that found
        nothing due; it is asked only when no completions go with the claim.
        """
        return False

    def _claimed(self, found: bool) -> None:
        """Note whether this thread's last claim found a job (by default, nothing to note)."""

    def complete_and_claim_many(
        self,
        completions: Sequence[tuple[Lease, Any]],
        worker_id: str,
        lease_seconds: float,
        limit: int,
        flow: Flow | None = None,
    ) -> tuple[list[JobRecord | None], list[JobRecord]]:
        """The completions of a batch and the next claims in one transaction.

        One commit for the batch (see :class:`~jobkit.storage.capabilities.ClaimsInBatches`).
        """
        flow = flow or EVERY_QUEUE
        if not completions and self._nothing_to_claim(worker_id, limit, flow):
            return [], []
        encoded = [
            (lease, to_json(result, f"job {lease.job_id}: result")) for lease, result in completions
        ]

        def work(db: Any) -> tuple[list[JobRecord | None], list[JobRecord]]:
            now = self._now_bound()  # one commit: one time for all its completions
            ended: list[int] = []
            done = [
                self._fenced_in(db, "complete", lease, AttemptOutcome.SUCCEEDED, None, None,
                                {"result": text, "now": now}, ended)
                for lease, text in encoded
            ]
            if ended:  # before the claims: they find what the completions released
                self._completed_in(db, ended, now)
            claimed = (self._claim_many_in(db, worker_id, lease_seconds, limit, flow)
                       if limit > 0 else [])
            return done, claimed

        what = f"complete {len(encoded)} job(s) and claim up to {limit}"
        done, claimed = self._transaction(f"{what} for worker {worker_id}", work)
        self._claimed(bool(claimed))
        return done, claimed

    @abc.abstractmethod
    def _fenced_update(self, operation: str, name: str, lease: Lease, **params: Any) -> bool:
        """Run the fenced update ``name``; whether the lease still owned the job."""

    def enqueue_unique(self, jobs: list[NewJob]) -> list[tuple[JobRecord, bool]]:
        """Store each job unless a job of its ``unique_key`` makes it a duplicate (``flow``).

        In order, in one transaction: each job's record and whether it was stored (``False``:
        the record is the job that holds its key; a duplicate of an earlier job of the same
        call gets that job).
        """
        check_new_jobs(jobs, "enqueue_unique")
        rows = [self._new_job(job) for job in jobs]

        def work(db: Any) -> list[tuple[JobRecord, bool]]:
            now = self._now_bound()
            found: list[tuple[JobRecord, bool]] = []
            for job, row in zip(jobs, rows, strict=True):
                if job.unique_key is not None:
                    holder = self._unique_holder_in(db, job.unique_key, job.unique_for, now)
                    if holder is not None:
                        found.append((holder, False))
                        continue
                found.append((self._insert_in(db, job, row, now), True))
            return found

        return self._transaction(f"enqueue {len(jobs)} unique job(s)", work)

    @abc.abstractmethod
    def _unique_holder_in(self, db: Any, unique_key: str, within: float | None,
                          now: Any) -> JobRecord | None:
        """The job holding ``unique_key``, if any; the backend locks the key first.

        One waiting or running, or enqueued less than ``within`` seconds ago."""

    def _check_retry_in(self, db: Any, record: JobRecord | None, now: Any) -> None:
        """``StorageError`` when retrying ``record`` would make two jobs of its key wait.

        A store keeps one job of a unique key waiting or running."""
        if record is None or record.unique_key is None or record.status not in (
                JobStatus.FAILED, JobStatus.CANCELLED):
            return
        holder = self._unique_holder_in(db, record.unique_key, None, now)
        if holder is not None and holder.id != record.id:
            raise unique_retry_error(record, holder)

    @abc.abstractmethod
    def _insert_in(self, db: Any, job: NewJob, row: dict[str, Any], now: Any) -> JobRecord:
        """Insert one job (``row``: its ``enqueue`` parameters) inside the caller's transaction."""

    def _available_at(self, job: NewJob) -> Any:
        """A new job's ``available_at`` as bound.

        ``None`` (due now) stays ``None``: the INSERT takes the ``now`` it is created at (one clock
        reading for a whole batch).
        """
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
            "queue": job.queue,
            "unique_key": job.unique_key,
        }

    # -- dashboard sessions and waiting jobs ---------------------------------------------

    def revoke_session(self, session_id: str, expires_at: datetime) -> None:
        """Keep the ended session in ``jobkit_revoked_sessions``.

        Every dashboard over this store looks there; sessions whose cookies have expired are
        forgotten.
        """
        self._named("forget expired dashboard sessions", "forget_revoked_sessions",
                    {"now": self._now_bound()})
        self._named("end a dashboard session", "revoke_session",
                    {"id": session_id, "expires_at": self._time(expires_at)})

    def session_revoked(self, session_id: str) -> bool:
        """Whether the session is in ``jobkit_revoked_sessions`` (one read, by primary key)."""
        sql = f"SELECT 1 FROM jobkit_revoked_sessions WHERE id = {self._bind('id')}"
        return bool(self._select("check a dashboard session", sql, {"id": session_id}))

    def oldest_waiting(self) -> datetime | None:
        """When the job that has waited longest became due: one index scan of the waiting jobs.

        See :class:`~jobkit.storage.capabilities.Searches`.
        """
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
    def _prune_candidates(self, status: JobStatus, finished_before: Any, after: int,
                          batch_size: int) -> builtins.list[int]:
        """The ids of up to ``batch_size`` jobs to prune, in order, after id ``after``.

        Jobs of ``status`` that finished before ``finished_before`` (as bound): a read, which
        holds no write lock however many rows it passes over."""

    @abc.abstractmethod
    def _prune_ids(self, status: JobStatus, finished_before: Any,
                   ids: builtins.list[int]) -> int:
        """Delete the jobs of ``ids`` still of ``status`` and finished before; how many.

        One short transaction, by primary key; their attempts and log lines go with them."""

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
        self, finished_before: datetime, batch_size: int, progress: Callable[[int], None] | None,
        statuses: frozenset[JobStatus],
    ) -> int:
        """Delete finished jobs (and attempts) that finished before ``finished_before``.

        Status by status, in batches of ``batch_size`` rows: each batch is read (no lock held
        while the rows are looked for), then deleted by id in its own short transaction that
        checks them again. The reads go on from the last id read, so the rows are passed over
        once however many batches it takes.
        """
        bound = self._time(finished_before)
        deleted = 0
        for status in sorted(statuses):
            after = 0
            while True:
                ids = self._prune_candidates(status, bound, after, batch_size)
                if ids:
                    deleted += self._prune_ids(status, bound, ids)
                    after = ids[-1]
                if progress is not None:
                    progress(deleted)
                if len(ids) < batch_size:
                    break
        return deleted
