"""Internal: the check of a workflow, from its flattened steps to the steps a store keeps.

Every step is checked as ``run_background_job`` checks a job (:func:`jobkit.enqueue.new_jobs`:
job registered, method approved, params fit, options within bounds), its ``result_as``
parameter left to the store to give; then each ``result_as`` against what the steps it waits
for return. Nothing is stored when one problem is found.

The return check refuses a step only when the producing method's return annotation and the
receiving parameter's annotation are both given and no value could fit both, compared as
JSON: a result travels as JSON, so a ``tuple`` fits a ``list``, an ``int`` a ``float``, a
``dict`` an attrs class; a ``float`` does not fit an ``int``, nor a ``bool`` an ``int`` (the
factory's converter is strict). A step that waits for a group (``collect``) receives a list:
its parameter must be an array (``list[T]``), and each producer's return must fit ``T``.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections import abc
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import attrs

from jobkit.enqueue import CallOptions, SettingsOf, new_jobs
from jobkit.exceptions import ConfigError, InvalidParameters
from jobkit.factory import Factory, hint_name, signature_of
from jobkit.records import NewStep
from jobkit.workflows import Node, Step

#: No annotation given.
_UNKNOWN = object()


def return_hint(cls: type[Any], method: str) -> Any:
    """The resolved return annotation of ``cls.method``, or ``_UNKNOWN`` without one."""
    function = inspect.getattr_static(cls, method)
    if isinstance(function, (staticmethod, classmethod)):
        function = function.__func__
    try:
        return typing.get_type_hints(function).get("return", _UNKNOWN)
    except Exception:  # signature_of reports hints that do not resolve
        return _UNKNOWN


def _options(node: Node) -> CallOptions:
    try:
        return CallOptions(**node.step.options)
    except TypeError as exc:
        raise ConfigError(errors=[f"step {node.label} ({node.step.title}): {exc}"]) from None


def new_steps(factory: Factory, nodes: Sequence[Node], *, settings_of: SettingsOf,
              now: Callable[[], datetime]) -> list[NewStep]:
    """The checked steps to store, one per node; ``InvalidParameters`` naming the step.

    Steps that follow each other with the same job, method, options and ``result_as`` (a
    group's members) are checked in one call, as ``enqueue_many`` checks its jobs; when a
    problem is found, the steps are checked again one at a time, so that the error names the
    first step at fault, as a step checked alone names it.
    """
    try:
        steps = [made for run in _runs(nodes)
                 for made in _checked_steps(factory, run, settings_of=settings_of, now=now)]
    except Exception:
        for node in nodes:  # raises the first step's problem, naming the step
            _checked_steps(factory, [node], settings_of=settings_of, now=now)
        raise
    returns: dict[tuple[str, str], Any] = {}
    for node in nodes:
        if node.step.result_as is not None:
            check_results(factory, node, [nodes[index] for index in node.parents], returns)
    return steps


def _runs(nodes: Sequence[Node]) -> list[list[Node]]:
    """``nodes`` in runs of steps alike: the same job, method, options and ``result_as``."""
    runs: list[list[Node]] = []
    for node in nodes:
        if runs and _alike(runs[-1][-1].step, node.step):
            runs[-1].append(node)
        else:
            runs.append([node])
    return runs


def _alike(one: Step, other: Step) -> bool:
    return (one.name == other.name and one.method == other.method
            and one.result_as == other.result_as and one.options == other.options)


def _checked_steps(factory: Factory, run: Sequence[Node], *, settings_of: SettingsOf,
                   now: Callable[[], datetime]) -> list[NewStep]:
    """The steps of a run of alike nodes, checked in one call of ``new_jobs``."""
    first = run[0]
    part = first.step
    supplied = frozenset() if part.result_as is None else frozenset({part.result_as})
    most: list[int] = []  # the job's max_params_bytes, as new_jobs read its settings

    def settings(spec: Any, overrides: Any) -> Any:
        found = settings_of(spec, overrides)
        most.append(found[0].max_params_bytes)
        return found

    try:
        for node in run:
            _check_result_as(factory, node)
        jobs = new_jobs(factory, part.name, part.method, [node.step.params for node in run],
                        _options(first), settings_of=settings, now=now, supplied=supplied)
        for node, job in zip(run, jobs, strict=True):
            _check_given_twice(node, job.params)
    except InvalidParameters as exc:
        raise InvalidParameters(exc.name, exc.method, {
            f"step {first.label} {key}": why for key, why in exc.problems.items()}) from None
    return [NewStep(job=job if job.unique_key is None and job.unique_for is None
                    else attrs.evolve(job, unique_key=None, unique_for=None),
                    parents=node.parents, needs=node.needs, result_as=node.step.result_as,
                    collect=node.collect, label=node.label,
                    max_params_bytes=None if part.result_as is None else most[-1])
            for node, job in zip(run, jobs, strict=True)]


def _check_result_as(factory: Factory, node: Node) -> None:
    """``InvalidParameters`` when the step's ``result_as`` cannot receive a result."""
    part = node.step
    if part.result_as is None:
        return
    spec = factory.registry.method(part.name, part.method)
    signature = signature_of(spec.cls, part.method)
    problem = None
    if not node.parents:
        problem = "the step waits for no step: no result to receive"
    elif part.result_as not in signature.allowed and not signature.accepts_any_keyword:
        problem = "the method has no parameter of this name"
    if problem is not None:
        raise InvalidParameters(part.name, part.method, {f"result_as {part.result_as}": problem})


def _check_given_twice(node: Node, params: Any) -> None:
    """``InvalidParameters`` when the checked ``params`` give ``result_as`` already.

    Read from the params as checked (by name), so a value given by position counts too: the
    release would overwrite it with the result.
    """
    part = node.step
    if part.result_as is not None and isinstance(params, dict) and part.result_as in params:
        raise InvalidParameters(part.name, part.method, {
            f"result_as {part.result_as}": "given in params too (result_as gives it)"})


def check_results(factory: Factory, node: Node, parents: Sequence[Node],
                  returns: dict[tuple[str, str], Any] | None = None) -> None:
    """``InvalidParameters`` naming both steps when a parent's return cannot fit ``result_as``.

    ``returns`` keeps each producing method's return annotation across calls (job, method:
    hint), so that the 10,000 members of a group are looked up once.
    """
    part = node.step
    assert part.result_as is not None
    spec = factory.registry.method(part.name, part.method)
    wanted = signature_of(spec.cls, part.method).hints.get(part.result_as, _UNKNOWN)
    where = f"step {node.label} {part.result_as}"
    if wanted is _UNKNOWN:
        return
    accepted = _collected(wanted) if node.collect else (wanted,)
    if not accepted:
        raise InvalidParameters(part.name, part.method, {where: (
            f"receives the list of {len(parents)} results of a group, but is annotated "
            f"{hint_name(wanted)} (annotate it list[T])")})
    known = {} if returns is None else returns
    fitting: dict[tuple[str, str], bool] = {}
    for parent in parents:
        method = (parent.step.name, parent.step.method)
        if method not in known:
            producer = factory.registry.method(*method)
            known[method] = return_hint(producer.cls, parent.step.method)
        produced = known[method]
        if method not in fitting:
            fitting[method] = produced is _UNKNOWN or any(fits(produced, hint)
                                                          for hint in accepted)
        if not fitting[method]:
            expected = " or ".join(hint_name(hint) for hint in accepted)
            raise InvalidParameters(part.name, part.method, {where: (
                f"expected {expected}, but step {parent.label} "
                f"({parent.step.title}) returns {hint_name(produced)}")})


def _collected(wanted: Any) -> tuple[Any, ...]:
    """What each result may be, for a parameter given the list of a group's results.

    ``T`` for ``list[T]``, also in a union (``list[T] | None``: the ``None`` is a default, not
    a list); ``Any`` for a bare ``list`` or an annotation it cannot tell; nothing when no member
    of the annotation is an array (``int``, ``int | None``).
    """
    accepted: list[Any] = []
    for option in _options_of(wanted):
        kind = _json_kind(option)
        if kind == "array":
            args = typing.get_args(option)
            accepted.append(args[0] if args else Any)
        elif kind is None:
            accepted.append(Any)
    return tuple(accepted)


def _options_of(hint: Any) -> tuple[Any, ...]:
    """The members of a union (``int | None``: ``int`` and ``None``), else ``hint`` alone."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _json_kind(hint: Any) -> str | None:
    """What JSON a value of ``hint`` is: ``null``, ``bool``, ``int``... ``None``: can't tell."""
    if hint is None or hint is type(None):
        return "null"
    origin = typing.get_origin(hint) or hint
    if not isinstance(origin, type):
        return None
    for kind, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str")):
        if issubclass(origin, kind):
            return name
    if (attrs.has(origin) or dataclasses.is_dataclass(origin)
            or issubclass(origin, abc.Mapping)):
        return "object"
    if issubclass(origin, (abc.Sequence, abc.Set)) and not issubclass(origin, (bytes,
                                                                               bytearray)):
        return "array"
    return None


def fits(produced: Any, wanted: Any) -> bool:
    """Whether a value returned as ``produced`` may fit a parameter annotated ``wanted``.

    ``False`` only when no value could: some member of one union fits some of the other.
    """
    return any(_one_fits(p, w) for p in _options_of(produced) for w in _options_of(wanted))


def _one_fits(produced: Any, wanted: Any) -> bool:
    if produced is Any or wanted is Any:
        return True
    have, want = _json_kind(produced), _json_kind(wanted)
    if have is None or want is None:
        return True
    if have != want:
        return have == "int" and want == "float"
    inner_have, inner_want = typing.get_args(produced), typing.get_args(wanted)
    if have == "array" and inner_have and inner_want:
        if len(inner_have) > 1 or len(inner_want) > 1:  # fixed tuples: not looked into
            return True
        return fits(inner_have[0], inner_want[0])
    if have == "object" and len(inner_have) == 2 and len(inner_want) == 2:
        return fits(inner_have[1], inner_want[1])
    return True
