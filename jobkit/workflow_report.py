"""Internal: a workflow as people and scripts read it, in ``jobkit workflow`` and the dashboard.

:func:`workflow_json` is the one JSON shape of ``jobkit workflow ID --json`` and of the
dashboard's ``/api/workflows/{id}``. :func:`tree` lays the steps out as a tree for the
terminal: a step that waits for several others (a group's callback) is shown once, under the
last of them, and names the others, so a graph of fan-ins never repeats a subtree.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs

from jobkit.records import JobStatus, WorkflowRecord, WorkflowStep
from jobkit.storage.base import Storage
from jobkit.storage.capabilities import RunsWorkflows


def workflow_json(record: WorkflowRecord) -> dict[str, Any]:
    """The workflow as JSON-ready data: its id, whether it finished, counts and every step.

    Each step: ``job_id``, ``label`` (where it sits in the flow, ``"1.then"``), ``name``,
    ``method``, ``status``, ``parents`` (the job ids it waits for), ``needs`` (``completed``
    or ``ended``) and ``result_as``. ``counts`` has one entry per status some step has.
    """
    return {
        "id": record.id,
        "created_at": record.created_at.isoformat(),
        "finished": record.finished,
        "counts": status_counts(record),
        "steps": [step_json(step) for step in record.steps],
    }


def step_json(step: WorkflowStep) -> dict[str, Any]:
    """One step as JSON-ready data (see :func:`workflow_json`)."""
    return {**attrs.asdict(step, recurse=False), "status": step.status.value,
            "parents": list(step.parents)}


def status_counts(record: WorkflowRecord) -> dict[str, int]:
    """How many steps are in each status, in :class:`JobStatus`'s order, none left at zero."""
    counted = Counter(step.status for step in record.steps)
    return {status.value: counted[status] for status in JobStatus if counted[status]}


@attrs.frozen
class TreeNode:
    """A step where the tree shows it, with the steps shown under it."""

    step: WorkflowStep
    #: The other steps it waits for (shown elsewhere in the tree), by job id.
    also_waits_for: tuple[str, ...] = ()
    children: tuple[TreeNode, ...] = ()


def tree(record: WorkflowRecord) -> list[TreeNode]:
    """The steps as a forest: each under the last step it waits for, the roots in flow order.

    A step whose parents are not in the workflow (a job deleted by retention, or
    ``depends_on`` a job outside it) is a root.
    """
    known = {step.job_id for step in record.steps}
    under: dict[str | None, list[str]] = {}
    for step in record.steps:
        inside = [parent for parent in step.parents if parent in known]
        under.setdefault(inside[-1] if inside else None, []).append(step.job_id)
    built: dict[str, TreeNode] = {}
    # parents come before their children in a workflow's steps: built from the last one up,
    # without recursion (a chain of 1,000 steps is a tree 1,000 deep)
    for step in reversed(record.steps):
        others = tuple(parent for parent in step.parents if parent in known)[:-1]
        built[step.job_id] = TreeNode(step, others,
                                      tuple(built[child] for child in under.get(step.job_id, [])))
    return [built[job_id] for job_id in under.get(None, [])]


def labels_of(record: WorkflowRecord) -> dict[str, str]:
    """Each step's label by its job id."""
    return {step.job_id: step.label for step in record.steps}


def workflow_links(storage: Storage, job_id: str, blocked: bool) -> dict[str, Any]:
    """A job's ``workflow`` id (``None`` outside one) and, blocked, the steps it ``waits_for``.

    ``waits_for`` lists each step the job waits for as ``{job_id, label, status}`` (label
    and status ``None`` for one no longer stored); it is read only for a blocked job (it
    reads the whole workflow), empty otherwise.
    """
    if not isinstance(storage, RunsWorkflows):
        return {"workflow": None, "waits_for": []}
    workflow_id = storage.workflow_of(job_id)
    waits_for: list[dict[str, Any]] = []
    if workflow_id is not None and blocked:
        steps = {step.job_id: step for step in storage.get_workflow(workflow_id).steps}
        mine = steps.get(job_id)
        for parent in mine.parents if mine is not None else ():
            found = steps.get(parent)
            waits_for.append({"job_id": parent, "label": found and found.label,
                              "status": found and found.status.value})
    return {"workflow": workflow_id, "waits_for": waits_for}
