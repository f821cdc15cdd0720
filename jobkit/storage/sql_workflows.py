"""Internal: the SQL stores' capability ``workflows``: links between jobs, in three tables.

:class:`SQLWorkflows` is the :class:`~jobkit.storage.capabilities.RunsWorkflows` of
:class:`~jobkit.storage.sqlite.SQLiteStorage` and
:class:`~jobkit.storage.postgres.PostgresStorage`, on the same named queries of each store's SQL
file. A job that waits is stored ``blocked`` with a row of ``jobkit_job_links`` (its workflow,
what it needs, where its parents' results go) and one row of ``jobkit_job_parents`` per parent.
Every change that ends a job calls :meth:`_settle_children_in` inside its own transaction: the
blocked children of that job are released or cancelled there, and on down the graph, so no
crash can fall between "the last parent ended" and "the child is due". SQLite has one writer at
a time; PostgreSQL's ``blocked_children`` locks the children (``FOR UPDATE``, in id order)
before their parents are read, so two parents ending at once settle a child once, the second
seeing the first's end. A manual retry calls :meth:`_retried_in`.
"""

from __future__ import annotations

import abc
import builtins
import contextlib
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import attrs

from jobkit.exceptions import JobNotFoundInStorage, WorkflowNotFound
from jobkit.records import (
    NEEDS_ENDED,
    JobRecord,
    JobStatus,
    NewJob,
    NewStep,
    WorkflowRecord,
    WorkflowStep,
)
from jobkit.storage.capabilities import RunsWorkflows
from jobkit.storage.cascades import Cascades
from jobkit.storage.rows import job_key
from jobkit.storage.workflow_links import (
    CANCEL,
    NOT_COMPLETED,
    RELEASE,
    before_its_group,
    check_parents,
    over_limit,
    released_params,
    too_large,
    unreleased,
    verdict,
)

T = TypeVar("T")

#: A stored status as its member: ``JobStatus(text)`` costs about 1 us, read for each of a
#: group's 10,000 members when its callback is released (an unknown text: ``KeyError``).
_STATUS = {status.value: status for status in JobStatus}


def decoded_results(results: builtins.list[Any], load: Callable[[Any], Any],
                    texts: bool) -> builtins.list[Any]:
    """The parents' stored results (``None``: none) decoded by ``load``, in order.

    ``texts``: the store reads a result as its JSON text (SQLite; PostgreSQL's driver decodes
    it, a string result to a ``str`` that must not be read again). Texts are read as one
    array: a json.loads each took 15 ms of a 10,000 member group's release. A text that is no
    JSON value of its own makes the count differ: each is then read alone, and raises as it
    did.
    """
    if texts and all(result is None or isinstance(result, str) for result in results):
        with contextlib.suppress(ValueError):
            decoded = json.loads("[" + ", ".join(
                "null" if result is None else result for result in results) + "]")
            if len(decoded) == len(results):
                return decoded  # type: ignore[no-any-return]
    return [None if result is None else load(result) for result in results]


class SQLWorkflows(RunsWorkflows):
    """Workflows and jobs that wait, as rows beside the jobs, settled in the ending transaction.

    The store supplies its transactions, named queries, inserts, clock and records, and a
    cancel inside a transaction (:meth:`_cancel_in`). ``conn`` below is what the store's
    transactions give (a SQLite connection, a psycopg cursor): both ``execute`` and return
    themselves or a cursor, and rows are read by column name.
    """

    #: How the store decodes a JSON column (its ``_row_decoders``' second).
    _row_decoders: Any
    #: What the cascades changed in passing, per thread (the store makes it).
    _cascades: Cascades
    #: Whether a row's JSON column is read as its text (SQLite), not decoded by the driver.
    _results_as_text = False

    @abc.abstractmethod
    def _workflow_sql(self) -> Mapping[str, str]:
        """The store's named queries."""

    @abc.abstractmethod
    def _writing(self, operation: str, work: Callable[[Any], T]) -> T:
        """Run ``work(connection or cursor)`` in one transaction that writes."""

    @abc.abstractmethod
    def _reading(self, operation: str, work: Callable[[Any], T]) -> T:
        """Run ``work(connection or cursor)`` in one transaction that only reads."""

    @abc.abstractmethod
    def _one(self, conn: Any, name: str, params: Mapping[str, Any]) -> Any:
        """The first row of the named query, inside the caller's transaction."""

    @abc.abstractmethod
    def _new_job(self, job: NewJob) -> dict[str, Any]:
        """The parameters of the ``enqueue`` query (all but ``now``)."""

    @abc.abstractmethod
    def _insert_in(self, conn: Any, job: NewJob, row: dict[str, Any],
                   now: Any) -> JobRecord:
        """Insert one job inside the caller's transaction."""

    def _insert_many_in(self, conn: Any, jobs: builtins.list[NewJob],
                        rows: builtins.list[dict[str, Any]],
                        now: Any) -> builtins.list[JobRecord]:
        """Insert the jobs in order inside the caller's transaction; their records.

        One at a time here; a store overrides it with fewer round trips.
        """
        return [self._insert_in(conn, job, row, now)
                for job, row in zip(jobs, rows, strict=True)]

    @abc.abstractmethod
    def _now_bound(self) -> Any:
        """``now`` as the store binds it."""

    @abc.abstractmethod
    def _read_time(self, value: Any) -> datetime:
        """A stored time as a datetime."""

    @abc.abstractmethod
    def _record(self, row: Any) -> JobRecord:
        """The record of a job row."""

    @abc.abstractmethod
    def _cancel_in(self, conn: Any, key: int, now: Any) -> Any:
        """Cancel the job if it has not ended, its attempt closed; its row or ``None``."""

    def _ids(self, conn: Any, name: str, job_id: int) -> builtins.list[int]:
        """The column ``id`` of the named query's rows, for ``job_id``."""
        return [row["id"] for row in
                conn.execute(self._workflow_sql()[name], {"job_id": job_id}).fetchall()]

    # -- storing -------------------------------------------------------------------------------

    def enqueue_steps(self, steps: builtins.list[NewStep],
                      workflow: bool = True) -> tuple[str | None, builtins.list[JobRecord]]:
        """Store ``steps`` in one transaction (see :class:`RunsWorkflows`)."""
        check_parents(steps)
        rows = [self._new_job(one.job) for one in steps]

        def work(conn: Any) -> tuple[str | None, builtins.list[JobRecord]]:
            now = self._now_bound()
            # locked in id order (decimal ids: shorter first): two transactions never wait
            # for each other's parents crosswise
            outside = {job_id: self._existing(conn, job_id, "lock_parent") for job_id in sorted(
                {job_id for one in steps for job_id in one.depends_on},
                key=lambda job_id: (len(job_id), job_id))}
            workflow_id = (self._one(conn, "add_workflow", {"now": now})["id"]
                           if workflow else None)
            records = self._insert_many_in(conn, [one.job for one in steps], rows, now)
            keys = [int(record.id) for record in records]
            links: builtins.list[dict[str, Any]] = []
            edges: builtins.list[dict[str, Any]] = []
            blocked: builtins.list[int] = []
            for at, (one, key) in enumerate(zip(steps, keys, strict=True)):
                parents = [keys[index] for index in one.parents] + [
                    outside[job_id] for job_id in one.depends_on]
                if parents:
                    blocked.append(key)
                    records[at] = attrs.evolve(records[at], status=JobStatus.BLOCKED)
                if parents or workflow_id is not None:
                    links.append({
                        "job_id": key, "workflow_id": workflow_id, "needs": one.needs,
                        "result_as": one.result_as, "collect": int(one.collect),
                        "label": one.label, "max_params_bytes": one.max_params_bytes})
                    edges += [{"child_id": key, "position": position, "parent_id": parent}
                              for position, parent in enumerate(parents)]
            self._link_in(conn, blocked, links, edges)
            # only a step that waits for a job stored before may find its parents ended: the
            # others wait for steps stored now, none ended (a cascade reaches them from there)
            waits_outside = [key for one, key in zip(steps, keys, strict=True)
                             if one.depends_on]
            changed = set(self._settle_blocked_in(conn, waits_outside, now))
            if changed:  # released or cancelled at once: what they wait for had ended
                records = [self._record(self._one(conn, "get", {"job_id": int(record.id)}))
                           if int(record.id) in changed else record for record in records]
            return (None if workflow_id is None else str(workflow_id)), records

        return self._writing(f"enqueue {len(steps)} steps", work)

    def _link_in(self, conn: Any, blocked: builtins.list[int],
                 links: builtins.list[dict[str, Any]],
                 edges: builtins.list[dict[str, Any]]) -> None:
        """Block the jobs ``blocked``, store ``links`` and ``edges`` (their parents), in order.

        Each row is the parameters of the named query ``add_link`` or ``add_parent``; here one
        ``executemany`` each, a store may send them otherwise.
        """
        q = self._workflow_sql()
        for name, many in (("block_job", [{"job_id": key} for key in blocked]),
                           ("add_link", links), ("add_parent", edges)):
            if many:
                conn.executemany(q[name], many)

    def _existing(self, conn: Any, job_id: str, look: str = "exists") -> int:
        """The row id of the stored job ``job_id``; ``JobNotFoundInStorage`` if none.

        ``look``: the named query that finds it; ``lock_parent`` for a job steps will wait for
        (PostgreSQL locks its row ``FOR NO KEY UPDATE`` until the steps are stored: a parent
        that ends meanwhile waits, then finds its new children).
        """
        key = job_key(job_id)
        if key is None or self._one(conn, look, {"job_id": key}) is None:
            raise JobNotFoundInStorage(job_id)
        return key

    # -- settling what waits ---------------------------------------------------------------------

    def _settle_children_in(self, conn: Any, key: int, now: Any) -> None:
        """The job ``key`` ended: settle its blocked children, inside the same transaction."""
        children = self._ids(conn, "blocked_children", key)
        if children:
            status = JobStatus(self._one(conn, "status_of", {"job_id": key})["status"])
            self._settle_blocked_in(conn, children, now, ended=status,
                                    origin=None if status is JobStatus.COMPLETED else key)

    def _settle_completed_in(self, conn: Any, keys: builtins.list[int], now: Any) -> None:
        """The jobs ``keys`` completed in this transaction: settle their blocked children.

        All of them locked by one statement, in id order (``blocked_children_of_all``), rather
        than one job's children after the other's: two transactions lock them in the same
        order. A batch's completions cancel no child, so the rest goes as one parent's end.
        """
        children = [row["id"] for row in conn.execute(
            self._workflow_sql()["blocked_children_of_all"], {"job_ids": keys}).fetchall()]
        if children:
            self._settle_blocked_in(conn, children, now, ended=JobStatus.COMPLETED)

    def _verdict_in(self, conn: Any, needs: str,
                    key: int) -> tuple[str, str | None, builtins.list[Any]]:
        """The verdict of the blocked job ``key`` and its parents' rows (id, status, result)."""
        parents = conn.execute(self._workflow_sql()["parents_of"], {"job_id": key}).fetchall()
        found = verdict(needs, [(row["parent_id"], _STATUS[row["status"]]) for row in parents
                                if row["status"] is not None])  # a deleted parent had ended
        return found[0], found[1], parents

    def _settle_blocked_in(self, conn: Any, keys: Iterable[int], now: Any,
                           ended: JobStatus | None = None,
                           origin: int | None = None) -> builtins.list[int]:
        """Release or cancel each blocked job of ``keys`` its parents settle, and on down.

        ``ended``: how the parent whose end brought these children here ended (``None``: no
        such parent, every verdict read in full). ``origin``: the job whose failure or cancel
        started this cascade (``None``: none did); a group's callback it reaches from before
        the group is cancelled (:func:`~jobkit.storage.workflow_links.before_its_group`). A
        child waits while one of its parents has not ended, found by one short look
        (``unended_parent``) rather than reading them all,
        unless that parent's failure cancels it: a blocked child has no other failed parent,
        since that one's end would have cancelled it in its own transaction. The ids of the
        jobs changed; a job no longer blocked (reached twice) is left alone.
        """
        q = self._workflow_sql()
        todo, changed = [(key, ended) for key in keys], []
        while todo:
            key, cause = todo.pop()
            link = self._one(conn, "link_of", {"job_id": key})
            if link is None or (
                    cause is not None
                    and not (cause in NOT_COMPLETED and link["needs"] != NEEDS_ENDED)
                    and self._one(conn, "unended_parent", {"job_id": key}) is not None):
                continue
            what, why, parents = self._verdict_in(conn, link["needs"], key)
            if (what == RELEASE and origin is not None and link["needs"] == NEEDS_ENDED
                    and before_its_group(link["label"], self._label_in(conn, origin, link))):
                status = self._one(conn, "status_of", {"job_id": origin})["status"]
                what, why = CANCEL, f"job {origin}, before the group it waits for, is {status}"
            released = self._release_in(conn, key, link, parents, now) if what == RELEASE else None
            if released is not None:
                changed.append(key)
                if released is JobStatus.FAILED:  # its params did not fit: an end
                    origin = key if origin is None else origin
                    todo.extend((child, JobStatus.FAILED)
                                for child in self._ids(conn, "blocked_children", key))
            elif what == CANCEL and (row := self._one(conn, "cancel_blocked", {
                    "job_id": key, "error": f"cancelled: {why}", "now": now})) is not None:
                conn.execute(q["set_cascaded"], {"job_id": key, "cascaded": 1})
                self._cascades.add(self._record(row))
                changed.append(key)
                todo.extend((child, JobStatus.CANCELLED)
                            for child in self._ids(conn, "blocked_children", key))
        return changed

    def _label_in(self, conn: Any, origin: int, link: Any) -> str | None:
        """The label of the job ``origin`` in the workflow of ``link``; ``None`` outside it."""
        found = self._one(conn, "link_of", {"job_id": origin})
        return (found["label"] if found is not None
                and found["workflow_id"] == link["workflow_id"] else None)

    def _release_in(self, conn: Any, key: int, link: Any,
                    parents: builtins.list[Any], now: Any) -> JobStatus | None:
        """Make the blocked job ``key`` pending, its parents' results given.

        ``PENDING`` when it was; ``FAILED`` when those params are over the step's
        ``max_params_bytes`` and it failed instead; ``None`` when it was no longer blocked.
        """
        params = None  # unchanged
        if link["result_as"] is not None:
            current = self._one(conn, "get", {"job_id": key})
            params = released_params(
                current["params"] if isinstance(current["params"], str)
                else json.dumps(current["params"]),
                link["result_as"], bool(link["collect"]),
                decoded_results([None if row["status"] != JobStatus.COMPLETED.value
                                 else row["result"] for row in parents],
                                self._row_decoders[1], texts=self._results_as_text))
            most = link["max_params_bytes"]
            size = over_limit(params, most)
            if size is not None:
                failed = self._one(conn, "fail_blocked", {"job_id": key, "now": now, "error": (
                    too_large(link["label"], current["name"], current["method"],
                              link["result_as"], size, most))})
                if failed is None:
                    return None
                self._cascades.add(self._record(failed))
                return JobStatus.FAILED
        released = conn.execute(self._workflow_sql()["release_blocked"], {
            "job_id": key, "params": params, "now": now}).rowcount
        return JobStatus.PENDING if released else None

    def _retried_in(self, conn: Any, key: int, row: Any) -> Any:
        """A manual retry made the job ``key`` pending (``row``): wait again, revive children.

        The job itself goes back to ``blocked`` when its parents have not all completed, and is
        released (its parents' results written in) when they have but it was cancelled before
        its release (:func:`~jobkit.storage.workflow_links.unreleased`); the children its
        failure cancelled (and theirs) wait again, unless another parent still cancels them.
        Its row as it is now. On PostgreSQL the children are locked (in id
        order) and each one's parents (:meth:`_lock_parents_in`) before its verdict is read.
        """
        q = self._workflow_sql()
        link = self._one(conn, "link_of", {"job_id": key})
        if link is not None:
            self._lock_parents_in(conn, key)
            released = self._verdict_in(conn, link["needs"], key)[0] == RELEASE
            if not released or unreleased(row["params"], link["result_as"]):
                row = next(iter(conn.execute(q["retry_blocked"], {"job_id": key}).fetchall()),
                           row)
                conn.execute(q["set_cascaded"], {"job_id": key, "cascaded": 0})
            if released and row["status"] == JobStatus.BLOCKED.value:
                # cancelled before its release: released now, its parents' results given
                self._settle_blocked_in(conn, [key], self._now_bound())
                row = self._one(conn, "get", {"job_id": key})
        todo = [key]
        while todo:
            for child in self._ids(conn, "cascaded_children", todo.pop()):
                self._lock_parents_in(conn, child)
                needs = self._one(conn, "link_of", {"job_id": child})["needs"]
                if self._verdict_in(conn, needs, child)[0] == CANCEL:
                    continue
                revived = self._one(conn, "revive_cascaded", {"job_id": child})
                conn.execute(q["set_cascaded"], {"job_id": child, "cascaded": 0})
                if revived is not None:
                    self._cascades.add(self._record(revived))
                todo.append(child)
        return row

    def _lock_parents_in(self, conn: Any, key: int) -> None:
        """Before a retry reads the verdict of ``key``: keep its parents from ending unseen.

        Nothing by default (SQLite has one writer); PostgreSQL locks them ``FOR SHARE``.
        """

    # -- reading and cancelling -----------------------------------------------------------------

    def _workflow_key(self, conn: Any, workflow_id: str) -> tuple[int, Any]:
        """The row id and creation time of the workflow; ``WorkflowNotFound`` if none."""
        key = job_key(workflow_id) if isinstance(workflow_id, str) else None
        row = None if key is None else self._one(conn, "workflow", {"workflow_id": key})
        if key is None or row is None:
            raise WorkflowNotFound(str(workflow_id))
        return key, row["created_at"]

    def get_workflow(self, workflow_id: str) -> WorkflowRecord:
        """The workflow with this id, each step with its job's status now."""
        q = self._workflow_sql()

        def work(conn: Any) -> WorkflowRecord:
            key, created_at = self._workflow_key(conn, workflow_id)
            params = {"workflow_id": key}
            parents: dict[int, builtins.list[str]] = {}
            for row in conn.execute(q["workflow_parents"], params).fetchall():
                parents.setdefault(row["child_id"], []).append(str(row["parent_id"]))
            steps = tuple(
                WorkflowStep(str(row["job_id"]), row["label"], row["name"], row["method"],
                             JobStatus(row["status"]), tuple(parents.get(row["job_id"], ())),
                             row["needs"], row["result_as"])
                for row in conn.execute(q["workflow_steps"], params).fetchall())
            return WorkflowRecord(workflow_id, self._read_time(created_at), steps)

        return self._reading(f"read workflow {workflow_id}", work)

    def cancel_workflow(self, workflow_id: str) -> builtins.list[JobRecord]:
        """Cancel every step of the workflow that has not ended; the records changed."""
        q = self._workflow_sql()

        def work(conn: Any) -> builtins.list[JobRecord]:
            key, _ = self._workflow_key(conn, workflow_id)
            now = self._now_bound()
            keys = [row["id"] for row in
                    conn.execute(q["workflow_unended"], {"workflow_id": key}).fetchall()]
            rows = [row for row in (self._cancel_in(conn, job, now) for job in keys)
                    if row is not None]
            for row in rows:  # jobs outside the workflow may wait for its steps
                self._settle_children_in(conn, row["id"], now)
            return [self._record(row) for row in rows]

        return self._writing(f"cancel workflow {workflow_id}", work)

    def take_cascaded(self) -> builtins.list[JobRecord]:
        """The jobs this thread's writes changed in passing since the last call (see base)."""
        return self._cascades.take()

    def workflow_of(self, job_id: str) -> str | None:
        """The id of the workflow the job is a step of; ``None`` for a job of none."""

        def work(conn: Any) -> str | None:
            link = self._one(conn, "link_of", {"job_id": self._existing(conn, job_id)})
            return None if link is None or link["workflow_id"] is None else str(
                link["workflow_id"])

        return self._reading(f"read the workflow of job {job_id}", work)
