"""Internal: the in-process store's capability ``workflows``: links between jobs, in dicts.

:class:`MemoryWorkflows` is the :class:`~jobkit.storage.capabilities.RunsWorkflows` of
:class:`~jobkit.storage.memory.MemoryStorage`. A job that waits has a :class:`Link` (its
parents, what it needs of them, where its result goes); the store calls :meth:`_ended` under
its lock whenever a job ends, and :meth:`_revived` when a manual retry puts one back, so a
release happens in the very change that ended the last parent.
"""

from __future__ import annotations

import abc
import builtins
import itertools
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import attrs

from jobkit.exceptions import JobNotFoundInStorage, WorkflowNotFound
from jobkit.records import (
    FINAL_STATUSES,
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
from jobkit.storage.memory_rows import MemoryPart, Row
from jobkit.storage.workflow_links import (
    before_its_group,
    check_parents,
    over_limit,
    released_params,
    too_large,
    unreleased,
    verdict,
)


@attrs.define
class Link:
    """What a job that waits (or a workflow's step) keeps of its place in the graph."""

    workflow: str | None
    parents: tuple[int, ...]
    needs: str
    result_as: str | None
    collect: bool
    label: str
    #: The most bytes of JSON its released params may take (``None``: not checked).
    max_params_bytes: int | None = None
    #: Cancelled because a parent did not complete (a retry of that parent revives it).
    cascaded: bool = False


class MemoryWorkflows(MemoryPart, RunsWorkflows):
    """Links between jobs and workflows in dicts, behind the store's lock.

    The store calls :meth:`_start_workflows` when it is made, :meth:`_ended` when a job ends,
    :meth:`_revived` when a retry puts one back, :meth:`_forget_links` when it deletes jobs.
    """

    _links: dict[int, Link]
    _children: dict[int, builtins.list[int]]
    #: workflow id -> (created at, its steps' job ids in order)
    _workflows: dict[str, tuple[datetime, builtins.list[int]]]
    #: What the cascades changed in passing, per thread (the store makes it).
    _cascades: Cascades

    def _start_workflows(self) -> None:
        """Start with no link and no workflow."""
        self._links, self._children, self._workflows = {}, {}, {}
        self._workflow_ids = itertools.count(1)

    @abc.abstractmethod
    def _add_row(self, job: NewJob, params: str, policy: str, status: JobStatus) -> Row:
        """Store one job in ``status``, whatever its unique key (under the lock)."""

    @abc.abstractmethod
    def _cancel_row(self, row: Row, now: datetime) -> None:
        """Cancel a job that has not ended, closing a running attempt (under the lock)."""

    # -- storing -------------------------------------------------------------------------------

    def enqueue_steps(self, steps: builtins.list[NewStep],
                      workflow: bool = True) -> tuple[str | None, builtins.list[JobRecord]]:
        """Store ``steps`` in one transaction (see :class:`RunsWorkflows`)."""
        encoded = [self._encode_new(one.job) for one in steps]
        check_parents(steps)

        def work() -> tuple[str | None, builtins.list[JobRecord]]:
            outside = {job_id: self._job_key(job_id)
                       for one in steps for job_id in one.depends_on}
            now = self.now()
            workflow_id = str(next(self._workflow_ids)) if workflow else None
            rows: builtins.list[Row] = []
            for one, (params, policy) in zip(steps, encoded, strict=True):
                parents = tuple(rows[index].id for index in one.parents) + tuple(
                    outside[job_id] for job_id in one.depends_on)
                row = self._add_row(one.job, params, policy,
                                    JobStatus.BLOCKED if parents else JobStatus.PENDING)
                rows.append(row)
                if parents or workflow_id is not None:
                    self._links[row.id] = Link(workflow_id, parents, one.needs, one.result_as,
                                               one.collect, one.label, one.max_params_bytes)
                for parent in dict.fromkeys(parents):
                    self._children.setdefault(parent, []).append(row.id)
            if workflow_id is not None:
                self._workflows[workflow_id] = (now, [row.id for row in rows])
            for row in rows:
                if row.status is JobStatus.BLOCKED:
                    self._settle_waiting(row, now)
            return workflow_id, [row.record() for row in rows]

        return self._locked(f"enqueue {len(steps)} steps", work)

    def _job_key(self, job_id: str) -> int:
        if not (job_id.isascii() and job_id.isdigit()) or int(job_id) not in self._jobs:
            raise JobNotFoundInStorage(job_id)
        return int(job_id)

    # -- releasing ------------------------------------------------------------------------------

    def _verdict(self, link: Link) -> tuple[str, str | None]:
        """``("wait", None)``, ``("release", None)`` or ``("cancel", why)`` for a blocked job."""
        return verdict(link.needs, [(parent, self._jobs[parent].status)
                                    for parent in link.parents
                                    if parent in self._jobs])  # a deleted parent had ended

    def _settle_waiting(self, row: Row, now: datetime, origin: Row | None = None) -> None:
        """Release or cancel the blocked job ``row`` when its parents say so, and on down.

        ``origin``: the job whose failure or cancel started this cascade (``None``: none did);
        a group's callback it reaches from before the group is cancelled
        (:func:`~jobkit.storage.workflow_links.before_its_group`).
        """
        todo = [row.id]
        while todo:
            current = self._jobs[todo.pop()]
            if current.status is not JobStatus.BLOCKED:  # reached twice: settled already
                continue
            link = self._links[current.id]
            verdict, why = self._verdict(link)
            if (verdict == "release" and origin is not None and link.needs == NEEDS_ENDED
                    and before_its_group(link.label, self._label_in(origin, link))):
                verdict, why = "cancel", (f"job {origin.id}, before the group it waits for, "
                                          f"is {origin.status}")
            if verdict == "release" and not self._release(current, link, now):
                origin = origin or current
                todo.extend(self._blocked_children(current.id))  # it failed: an end
            elif verdict == "cancel":
                self._cancel_row(current, now)
                current.error = f"cancelled: {why}"
                link.cascaded = True
                self._cascades.add(current.record())
                todo.extend(self._blocked_children(current.id))

    def _label_in(self, origin: Row, link: Link) -> str | None:
        """The label of ``origin`` in the workflow of ``link``; ``None`` outside it."""
        found = self._links.get(origin.id)
        return found.label if found is not None and found.workflow == link.workflow else None

    def _blocked_children(self, job_id: int) -> builtins.list[int]:
        return [child for child in self._children.get(job_id, ())
                if (row := self._jobs.get(child)) is not None
                and row.status is JobStatus.BLOCKED]

    def _release(self, row: Row, link: Link, now: datetime) -> bool:
        """Make ``row`` pending, due now, its parents' results given as ``result_as``.

        ``False`` when those params are over the step's ``max_params_bytes``: it fails instead.
        """
        if link.result_as is not None:
            params = released_params(row.params, link.result_as, link.collect,
                                     [self._result_of(parent) for parent in link.parents])
            size = over_limit(params, link.max_params_bytes)
            if size is not None and link.max_params_bytes is not None:
                row.status, row.finished_at = JobStatus.FAILED, now
                row.error = too_large(link.label, row.name, row.method, link.result_as, size,
                                      link.max_params_bytes)
                self._cascades.add(row.record())
                return False
            row.params = params
        row.status = JobStatus.PENDING
        row.available_at = max(row.available_at, now)  # a step's delay counts from its storing
        return True

    def _result_of(self, job_id: int) -> Any:
        row = self._jobs.get(job_id)
        if row is None or row.status is not JobStatus.COMPLETED or row.result is None:
            return None
        return json.loads(row.result)

    def _ended(self, job_id: int, now: datetime) -> None:
        """A job ended: settle its blocked children (under the lock, in the same change)."""
        ended = self._jobs[job_id]
        origin = None if ended.status is JobStatus.COMPLETED else ended
        for child in self._blocked_children(job_id):
            self._settle_waiting(self._jobs[child], now, origin)

    def _revived(self, job_id: int) -> None:
        """A manual retry put ``job_id`` back: its children cancelled because of it wait again.

        And theirs, down the graph; a child that another parent still cancels stays cancelled.
        """
        todo = [job_id]
        while todo:
            for child in self._children.get(todo.pop(), ()):
                row, link = self._jobs.get(child), self._links.get(child)
                if row is None or link is None or not link.cascaded:
                    continue
                if row.status is not JobStatus.CANCELLED:
                    continue
                if self._verdict(link)[0] == "cancel":
                    continue
                row.status, row.finished_at, row.error = JobStatus.BLOCKED, None, None
                link.cascaded = False
                self._cascades.add(row.record())
                todo.append(child)

    def _back_to_waiting(self, row: Row) -> bool:
        """Whether a manual retry of ``row`` must make it wait (its parents have not completed)."""
        link = self._links.get(row.id)
        if link is None or not link.parents or self._verdict(link)[0] == "release":
            return False
        link.cascaded = False
        return True

    def _release_retried(self, row: Row) -> None:
        """A manual retry made ``row`` pending: release it if it was cancelled before its release.

        Its parents have all completed but their results are not in its params
        (:func:`~jobkit.storage.workflow_links.unreleased`): a release writes them in.
        """
        link = self._links.get(row.id)
        if (row.status is JobStatus.PENDING and link is not None
                and unreleased(row.params, link.result_as)):
            row.status, link.cascaded = JobStatus.BLOCKED, False
            self._settle_waiting(row, self.now())

    def _forget_links(self, job_ids: Iterable[int]) -> None:
        """Drop the links of these deleted jobs (under the lock)."""
        for job_id in job_ids:
            self._links.pop(job_id, None)
            self._children.pop(job_id, None)

    # -- reading and cancelling -----------------------------------------------------------------

    def _workflow(self, workflow_id: str) -> tuple[datetime, builtins.list[int]]:
        found = self._workflows.get(workflow_id) if isinstance(workflow_id, str) else None
        if found is None:
            raise WorkflowNotFound(str(workflow_id))
        return found

    def get_workflow(self, workflow_id: str) -> WorkflowRecord:
        """The workflow with this id, each step with its job's status now."""

        def work() -> WorkflowRecord:
            created_at, job_ids = self._workflow(workflow_id)
            steps = []
            for job_id in job_ids:
                row, link = self._jobs.get(job_id), self._links.get(job_id)
                if row is None or link is None:
                    continue
                steps.append(WorkflowStep(str(job_id), link.label, row.name, row.method,
                                          row.status, tuple(map(str, link.parents)),
                                          link.needs, link.result_as))
            return WorkflowRecord(workflow_id, created_at, tuple(steps))

        return self._locked(f"read workflow {workflow_id}", work)

    def cancel_workflow(self, workflow_id: str) -> builtins.list[JobRecord]:
        """Cancel every step of the workflow that has not ended; the records changed."""

        def work() -> builtins.list[JobRecord]:
            now = self.now()
            _, job_ids = self._workflow(workflow_id)
            rows = [self._jobs[job_id] for job_id in job_ids if job_id in self._jobs
                    and self._jobs[job_id].status not in FINAL_STATUSES]
            for row in rows:
                self._cancel_row(row, now)
            for row in rows:  # jobs outside the workflow may wait for its steps
                self._ended(row.id, now)
            return [row.record() for row in rows]

        return self._locked(f"cancel workflow {workflow_id}", work)

    def take_cascaded(self) -> builtins.list[JobRecord]:
        """The jobs this thread's writes changed in passing since the last call (see base)."""
        return self._cascades.take()

    def workflow_of(self, job_id: str) -> str | None:
        """The id of the workflow the job is a step of; ``None`` for a job of none."""

        def work() -> str | None:
            link = self._links.get(self._job_key(job_id))
            return None if link is None else link.workflow

        return self._locked(f"read the workflow of job {job_id}", work)
