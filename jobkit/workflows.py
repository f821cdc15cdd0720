"""Workflows: steps run in order (``chain``), in parallel with a callback (``group``), nested.

>>> from jobkit.workflows import chain, group, step
>>> flow = chain(step("Fetch", "download", {"url": "https://example.com"}),
...              group(step("Resize", "small", result_as="path"),
...                    step("Resize", "large", result_as="path"),
...                    then=step("Report", "publish", result_as="paths")))

``app.run_workflow(flow)`` checks every step as ``run_background_job`` checks a job, then
stores the whole graph in one transaction. :func:`plan` flattens a flow into that graph: one
:class:`Node` per step, each with the steps it waits for.

The rules of the graph:

- a chain's element waits for the previous element's terminal steps to *complete*: when one
  of them fails or is cancelled, the element is cancelled (and what waits for it), unless the
  step says ``on_failure="run"`` (it then runs once they have all ended);
- a group's members start together (each waits for what the group waits for); its callback
  ``then`` waits for every member's terminal steps to *end*, succeeded or not, unless the
  callback says ``on_failure="cancel"`` (then a member that did not complete cancels it);
- a step's ``result_as`` parameter receives what the steps it waits for returned: the one
  result of a step or chain, or the list of results (one per terminal step, in flow order,
  ``None`` for one that did not complete) after a group. Annotate a callback's parameter
  ``list[T]`` (or ``list[T | None]`` when it runs after failures).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import attrs

from jobkit.records import NEEDS_COMPLETED, NEEDS_ENDED

#: What ``on_failure`` accepts: cancel the step when a job it waits for did not complete, or
#: run it anyway once they have all ended.
ON_FAILURE = ("cancel", "run")
#: The options of ``run_background_job`` a step takes (``idempotency_key`` aside: a step is
#: never a duplicate of a stored job).
STEP_OPTIONS = ("priority", "delay", "retry_attempts", "retry_delay", "timeout", "queue",
                "run_at")


@attrs.frozen
class Step:
    """One job of a workflow: what :func:`step` makes."""

    name: str
    method: str = "handle"
    params: dict[str, Any] | list[Any] | None = None
    #: The options of ``run_background_job`` given (see :data:`STEP_OPTIONS`).
    options: Mapping[str, Any] = attrs.field(factory=dict)
    #: The parameter that receives the result(s) of the steps it waits for.
    result_as: str | None = None
    #: ``"cancel"``, ``"run"``, or ``None``: as its place says (a chain's element cancels, a
    #: group's callback runs).
    on_failure: str | None = None

    @property
    def title(self) -> str:
        """``Name.method``, for messages."""
        return f"{self.name}.{self.method}"


@attrs.frozen
class Chain:
    """Elements run one after the other: what :func:`chain` makes."""

    elements: tuple[Flow, ...]


@attrs.frozen
class Group:
    """Members run in parallel, then a callback: what :func:`group` makes."""

    members: tuple[Flow, ...]
    then: Flow | None = None


#: A workflow, or any part of one.
Flow = Step | Chain | Group


def step(name: str, method: str = "handle", params: dict[str, Any] | list[Any] | None = None,
         *, result_as: str | None = None, on_failure: str | None = None,
         priority: int | None = None, delay: float | timedelta = 0,
         retry_attempts: int | None = None, retry_delay: float | None = None,
         timeout: float | None = None, queue: str | None = None,
         run_at: datetime | None = None) -> Step:
    """A step: job ``name``'s ``method`` with ``params``, and ``run_background_job``'s options.

    ``result_as`` names the parameter that receives what the steps it waits for returned;
    ``on_failure`` (``"cancel"`` or ``"run"``) what happens when one of them did not complete.
    The job, method and params are checked when the workflow is run, before anything is stored.
    """
    if not isinstance(name, str) or not isinstance(method, str):
        raise TypeError(f"step(name, method): expected two str, got {name!r} and {method!r}")
    if on_failure is not None and on_failure not in ON_FAILURE:
        raise ValueError(f"step {name}.{method}: on_failure must be 'cancel' or 'run', "
                         f"got {on_failure!r}")
    if result_as is not None and (not isinstance(result_as, str) or not result_as.isidentifier()):
        raise ValueError(f"step {name}.{method}: result_as must name a parameter, "
                         f"got {result_as!r}")
    given = {"priority": priority, "delay": delay, "retry_attempts": retry_attempts,
             "retry_delay": retry_delay, "timeout": timeout, "queue": queue, "run_at": run_at}
    options = {key: value for key, value in given.items()
               if value is not None and not (key == "delay" and value == 0)}
    return Step(name, method, params, options, result_as, on_failure)


def _flows(parts: tuple[Any, ...], what: str) -> tuple[Flow, ...]:
    for position, part in enumerate(parts):
        if not isinstance(part, (Step, Chain, Group)):
            raise TypeError(f"{what} takes steps, chains and groups; item {position} is a "
                            f"{type(part).__name__}: {part!r:.80}")
    return parts


def chain(*elements: Flow) -> Chain:
    """Elements run one after the other: each once the previous one completed."""
    if not elements:
        raise ValueError("chain() needs at least one step")
    return Chain(_flows(elements, "chain()"))


def group(*members: Flow, then: Flow | None = None) -> Group:
    """Members run in parallel; ``then`` once after all of them ended, succeeded or not."""
    if not members:
        raise ValueError("group() needs at least one member")
    if then is not None:
        _flows((then,), "group(then=...)")
    return Group(_flows(members, "group()"), then)


@attrs.frozen
class Node:
    """One step of a flattened flow, with the steps it waits for (by index)."""

    index: int
    step: Step
    #: Where it sits: the positions of its elements and members, ``"1.0"`` (``"then"`` for a
    #: callback), for messages and pages.
    label: str
    parents: tuple[int, ...] = ()
    #: ``completed`` or ``ended`` (:data:`jobkit.records.NEEDS_COMPLETED` and ``NEEDS_ENDED``).
    needs: str = NEEDS_COMPLETED
    #: Whether ``result_as`` receives a list (the step waits for a group).
    collect: bool = False


@attrs.frozen
class _Ends:
    """The terminal steps of a part: what waits for the part waits for them."""

    nodes: tuple[int, ...]
    #: Whether the part ends in a group (its results come as a list).
    many: bool


class _Planner:
    """Flattens a flow, numbering its steps in the order they are given."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []

    def add(self, part: Flow, label: str, after: _Ends | None, needs: str) -> _Ends:
        """Add ``part``'s steps, its entry steps waiting for ``after``; its terminal steps."""
        if isinstance(part, Step):
            return self._step(part, label, after, needs)
        if isinstance(part, Chain):
            ends = after
            for position, element in enumerate(part.elements):
                ends = self.add(element, self._join(label, position), ends,
                                needs if position == 0 else NEEDS_COMPLETED)
            assert ends is not None
            return ends
        terminals: list[int] = []
        for position, member in enumerate(part.members):
            terminals.extend(self.add(member, self._join(label, position), after, needs).nodes)
        if part.then is None:
            return _Ends(tuple(terminals), many=True)
        return self.add(part.then, self._join(label, "then"), _Ends(tuple(terminals), True),
                        NEEDS_ENDED)

    @staticmethod
    def _join(label: str, position: int | str) -> str:
        return f"{label}.{position}" if label else str(position)

    def _step(self, part: Step, label: str, after: _Ends | None, needs: str) -> _Ends:
        if part.on_failure is not None and after is not None:
            needs = NEEDS_ENDED if part.on_failure == "run" else NEEDS_COMPLETED
        node = Node(len(self.nodes), part, label or "0",
                    () if after is None else after.nodes, needs,
                    after is not None and after.many)
        self.nodes.append(node)
        return _Ends((node.index,), many=False)


def plan(flow: Flow) -> list[Node]:
    """The steps of ``flow`` in the order given, each with the steps it waits for.

    Every parent comes before its children: the list can be stored in order.
    """
    _flows((flow,), "a workflow")
    planner = _Planner()
    planner.add(flow, "", None, NEEDS_COMPLETED)
    return planner.nodes
