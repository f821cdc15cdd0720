"""Internal: what every store decides of a job that waits, whatever keeps its links.

:func:`verdict` says whether a ``blocked`` job waits on, is released or is cancelled, from its
parents' statuses; :func:`released_params` writes its parents' results into its params. The
memory store (``memory_workflows``) and the SQL stores (``sql_workflows``) call both, each
in the change that ended a parent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from jobkit.records import FINAL_STATUSES, NEEDS_ENDED, JobStatus, NewStep

#: The statuses of a parent that make a child needing ``completed`` cancelled.
NOT_COMPLETED = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})

#: What a blocked job does now: wait on, be released, be cancelled.
WAIT, RELEASE, CANCEL = "wait", "release", "cancel"


def verdict(needs: str, parents: Iterable[tuple[Any, JobStatus]]) -> tuple[str, str | None]:
    """``(WAIT, None)``, ``(RELEASE, None)`` or ``(CANCEL, why)`` for a blocked job.

    ``parents`` are ``(id, status)`` of the parents still stored (a deleted one had ended).
    """
    statuses = list(parents)
    if needs != NEEDS_ENDED:
        for parent, status in statuses:
            if status in NOT_COMPLETED:
                return CANCEL, f"job {parent}, which it waits for, is {status}"
    if all(status in FINAL_STATUSES if needs == NEEDS_ENDED
           else status is JobStatus.COMPLETED for _, status in statuses):
        return RELEASE, None
    return WAIT, None


def before_its_group(label: str, origin: str | None) -> bool:
    """Whether a step that waits for a group's members to *end* is cancelled, not released.

    ``label`` is the step's, ``origin`` the label of the job whose failure or cancel started
    the cascade that ended its last parent (``None``: a job of no workflow). A step of a
    group's callback (a label with a ``then``: the group is what comes before its last one) is
    cancelled when that job is not in the group: the cascade came from before the group, whose
    members never ran, so what waits for them does not run either (as a chain's next step).
    A member that failed, or a step inside a member, leaves the callback to run.
    """
    parts = label.split(".")
    if "then" not in parts:
        return False
    group = parts[:len(parts) - 1 - parts[::-1].index("then")]
    return origin is None or origin.split(".")[:len(group)] != group


def released_params(params: str, result_as: str | None, collect: bool,
                    results: Sequence[Any]) -> str:
    """The params text of a released job: ``results`` (its parents', in order) as ``result_as``.

    One result alone unless ``collect`` (or the job waits for several); unchanged without
    ``result_as``.
    """
    if result_as is None:
        return params
    decoded = json.loads(params)
    decoded[result_as] = list(results) if collect or len(results) != 1 else results[0]
    return json.dumps(decoded, ensure_ascii=False, allow_nan=False)


def unreleased(params: Any, result_as: str | None) -> bool:
    """Whether a job whose parents have all completed still lacks their results in ``params``.

    ``params`` as its row holds them (JSON text, or decoded). A step with ``result_as`` is
    stored without that parameter (the check refuses it in ``params``), so its absence means
    no release wrote it: the step was cancelled while it waited. A manual retry of it goes
    through a release, which writes the results in (and checks their size).
    """
    if result_as is None:
        return False
    decoded = json.loads(params) if isinstance(params, str) else params
    return isinstance(decoded, dict) and result_as not in decoded


def over_limit(params: str, most: int | None) -> int | None:
    """The size of the JSON text ``params`` in bytes of UTF-8 when over ``most``, else ``None``."""
    if most is None or len(params) * 4 <= most:  # UTF-8 takes at most 4 bytes a character
        return None
    size = len(params.encode("utf-8"))
    return size if size > most else None


def too_large(label: str, name: str, method: str, result_as: str | None, size: int,
              most: int) -> str:
    """The error of a step failed at its release: its params with the results do not fit."""
    return (f"step {label} ({name}.{method}): its params, with the results it waits for "
            f"given as {result_as}, are {size} bytes of JSON, over max_params_bytes ({most}); "
            "it was not run")


def check_parents(steps: Sequence[NewStep]) -> None:
    """``ValueError`` naming the first step that waits for itself or a later step."""
    for position, one in enumerate(steps):
        if any(parent >= position or parent < 0 for parent in one.parents):
            raise ValueError(f"step {position} waits for step(s) {one.parents}: a step "
                             "waits only for earlier ones")
