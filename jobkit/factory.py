"""Internal: the factory: checks params against an approved method's signature and builds the job.

Params must be JSON (no NaN, bytes, sets or other objects) and must fit the method: no missing
or unexpected names, and values of the annotated types. Types are checked with a strict cattrs
converter (``"5"`` is not an ``int``); a parameter annotated with an attrs class is given as a dict
and structured into the class when the job runs. The worker runs the same checks again before it
runs a stored row: the database is a trust boundary.
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import math
import threading
import typing
from collections import abc
from collections.abc import Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

import attrs

from jobkit.exceptions import ConfigError, InvalidParameters
from jobkit.job import Job
from jobkit.limits import MAX_DEPTH
from jobkit.masking import is_secret, mask_secrets
from jobkit.records import UnreadableJSON
from jobkit.registry import JobSpec, Registry

if TYPE_CHECKING:
    import cattrs

Params = dict[str, Any]


def _strict(kind: type[Any], accept: tuple[type[Any], ...]) -> Callable[[Any, Any], Any]:
    def structure(value: Any, _: Any) -> Any:
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {kind.__name__}, got a boolean")
        if not isinstance(value, accept):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__} {value!r:.60}")
        return kind(value)

    return structure


def _json_kind(hint: Any) -> str | None:
    """The JSON shape a value for ``hint`` must have: ``"array"``, ``"object"`` or ``None``.

    ``"array"`` when ``hint`` is a sequence or set (only a JSON array may become one),
    ``"object"`` when a mapping or an attrs or data class; ``None`` for anything else."""
    origin = typing.get_origin(hint) or hint
    if not isinstance(origin, type) or issubclass(origin, (str, bytes, bytearray)):
        return None  # str is a Sequence, but a JSON string is no array
    if attrs.has(origin) or dataclasses.is_dataclass(origin) or issubclass(origin, abc.Mapping):
        return "object"
    if issubclass(origin, (abc.Sequence, abc.Set, collections.deque)):
        return "array"
    return None


def _fixed_length(hint: Any) -> int | None:
    """The length of a fixed tuple type (``tuple[str, int]``: 2); ``None`` for others."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is not tuple or not args or args[-1] is Ellipsis:
        return None
    return len(args)


class _ShapeChecks(threading.local):
    """The types whose shape-checked hook is being made on this thread (see below)."""

    def __init__(self) -> None:
        self.making: set[Any] = set()


def _register_shape_checks(converter: cattrs.Converter) -> None:
    """Make every container and class hook of ``converter`` check the JSON shape first.

    cattrs structures any iterable into a list (``"pdf"`` into ``["p", "d", "f"]``, a dict into
    its keys) and any mapping into a dict. The factory below wraps the hook cattrs would make:
    while it is made, the predicate steps aside for that type, so the lookup falls through to
    cattrs' own factory; nested types get their checked hooks from the same converter.
    """
    checks = _ShapeChecks()

    def wanted(hint: Any) -> bool:
        return hint not in checks.making and _json_kind(hint) is not None

    def factory(hint: Any) -> Callable[[Any, Any], Any]:
        checks.making.add(hint)
        try:
            inner = converter.get_structure_hook(hint, cache_result=False)
        finally:
            checks.making.discard(hint)
        array = _json_kind(hint) == "array"
        accept: tuple[type[Any], ...] = (list, tuple) if array else (abc.Mapping,)
        shape = "a JSON array" if array else "a JSON object"
        length = _fixed_length(hint)

        def structure(value: Any, kind: Any) -> Any:
            if not isinstance(value, accept):
                raise TypeError(
                    f"expected {hint_name(hint)} ({shape}), got {type(value).__name__} "
                    f"{value!r:.60}"
                )
            if length is not None and len(value) != length:
                raise TypeError(
                    f"expected {hint_name(hint)} of {length} items, got {len(value)}"
                )
            return inner(value, kind)

        return structure

    converter.register_structure_hook_factory(wanted, factory)


def _strict_literal(value: Any, hint: Any) -> Any:
    """A ``Literal`` member, matched by type as well: ``True`` and ``1.0`` are not ``1``."""
    for choice in typing.get_args(hint):
        if value == choice and type(value) is type(choice):
            return choice
    choices = ", ".join(map(repr, typing.get_args(hint)))
    raise TypeError(f"expected one of {choices}, got {type(value).__name__} {value!r:.60}")


def _plain_literal(hint: Any) -> bool:
    return typing.get_origin(hint) is typing.Literal and all(
        choice is None or type(choice) in (str, int, bool) for choice in typing.get_args(hint)
    )


def make_converter() -> cattrs.Converter:
    """A strict cattrs converter: no lossy coercions, no unknown keys, JSON shapes kept.

    A cattrs converter that refuses lossy coercions, unknown keys of attrs classes, and
    values of the wrong JSON shape: only an array becomes a list, tuple or set, and only an
    object a dict, mapping or attrs class."""
    import cattrs  # here: import jobkit does not need it

    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(int, _strict(int, (int,)))
    converter.register_structure_hook(float, _strict(float, (int, float)))
    converter.register_structure_hook(str, _strict(str, (str,)))
    converter.register_structure_hook(bool, _strict(bool, (bool,)))
    converter.register_structure_hook_func(_plain_literal, _strict_literal)
    _register_shape_checks(converter)
    return converter


#: The most digits an integer may have: any Python reads it back (their default limit is 4300).
MAX_INT_DIGITS = 4000
_INT_LIMIT = 10**MAX_INT_DIGITS


def text_problem(text: str) -> str | None:
    """Why a string cannot be stored alike by every store, or ``None`` when it can.

    Why a string cannot be stored alike everywhere: a NUL character (PostgreSQL's text
    refuses it) or a lone surrogate (not UTF-8); ``None`` when it can."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid UTF-8)"
    return None


def json_problem(value: Any, path: str = "") -> str | None:
    """Why ``value`` is not plain JSON, naming where inside it; ``None`` when it is.

    Iterative, with a depth limit, so a circular or absurdly deep value is reported, not crashed on.
    """
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        name = where or "value"
        if isinstance(item, str):
            if problem := text_problem(item):
                return f"{name} {problem}"
            continue
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) >= _INT_LIMIT:
            return f"{name} is an integer of more than {MAX_INT_DIGITS} digits, too long for JSON"
        if item is None or isinstance(item, (bool, int)):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                return f"{name} is {item!r}, not JSON"
            continue
        if depth >= MAX_DEPTH:
            return f"{name} nests deeper than {MAX_DEPTH} levels (or refers to itself)"
        if isinstance(item, (list, tuple)):
            stack.extend(
                (x, f"{where}[{i}]", depth + 1) for i, x in reversed(list(enumerate(item)))
            )
        elif isinstance(item, dict):
            for key in item:
                if not isinstance(key, str):
                    return f"{name} has a non-string key {key!r}"
                if problem := text_problem(key):
                    return f"{name} has a key that {problem.removeprefix('contains ')}"
            stack.extend(
                (x, f"{where}.{k}" if where else k, depth + 1) for k, x in reversed(item.items())
            )
        else:
            return f"{name} is a {type(item).__name__}, not JSON"
    return None


def _keyword_names(signature: MethodSignature) -> tuple[str, ...]:
    return tuple(p.name for p in signature.parameters
                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


@attrs.frozen
class MethodSignature:
    """What the factory needs to know of one approved method."""

    parameters: tuple[inspect.Parameter, ...]
    hints: Mapping[str, Any]
    accepts_any_keyword: bool
    #: Parameter names that can be given by keyword (found once per method, not per job).
    names: tuple[str, ...] = attrs.field(
        init=False, eq=False, repr=False, default=attrs.Factory(_keyword_names, takes_self=True)
    )
    #: :attr:`names` as a set.
    allowed: frozenset[str] = attrs.field(
        init=False, eq=False, repr=False,
        default=attrs.Factory(lambda signature: frozenset(signature.names), takes_self=True),
    )


@cache
def signature_of(cls: type[Job], method: str) -> MethodSignature:
    """The signature and resolved type hints of ``cls.method`` (without ``self``)."""
    function = inspect.getattr_static(cls, method)
    if isinstance(function, (staticmethod, classmethod)):
        function = function.__func__
    try:
        hints = typing.get_type_hints(function)
    except Exception as exc:
        raise ConfigError(
            f"{cls.__module__}:{cls.__qualname__}.{method}: cannot resolve type hints: {exc}"
        ) from exc
    hints.pop("return", None)
    parameters = list(inspect.signature(function).parameters.values())
    if parameters and not isinstance(inspect.getattr_static(cls, method), staticmethod):
        parameters = parameters[1:]  # self (or cls)
    return MethodSignature(
        parameters=tuple(p for p in parameters if p.kind is not p.VAR_KEYWORD),
        hints=hints,
        accepts_any_keyword=any(p.kind is p.VAR_KEYWORD for p in parameters),
    )


def describe(cls: type[Job], method: str) -> str:
    """``method(name: type = default, ...)`` with resolved type names, for people to read."""
    signature = signature_of(cls, method)
    parts = []
    for param in signature.parameters:
        text = param.name
        if param.name in signature.hints:
            text += f": {hint_name(signature.hints[param.name])}"
        if param.default is not param.empty:
            text += f" = {param.default!r}"
        parts.append(("*" if param.kind is param.VAR_POSITIONAL else "") + text)
    if signature.accepts_any_keyword:
        parts.append("**kwargs")
    return f"{method}({', '.join(parts)})"


class Factory:
    """Validates params for a registered job and builds instances ready to run."""

    def __init__(self, registry: Registry, converter: cattrs.Converter | None = None) -> None:
        self.registry = registry
        self.converter = converter or make_converter()
        #: The scalar types whose values need no converter call: with jobkit's own converter,
        #: a JSON value of exactly the type fits (a float hint takes an int too).
        self._plain_scalars: frozenset[Any] = (
            frozenset() if converter is not None else frozenset({int, float, str, bool}))
        #: (job, method) -> the spec and check :meth:`validator` last gave for them.
        self._validators: dict[tuple[str, str], tuple[JobSpec, Callable[[Any], Params]]] = {}

    def validate(self, name: str, method: str, params: Any) -> tuple[JobSpec, Params]:
        """Check that ``name.method`` is approved and ``params`` fit it.

        ``params`` is a dict of keyword arguments, a list of positional ones, or ``None``.
        Returns the spec and the params as a dict keyed by parameter name. Raises
        ``JobNotFound``, ``MethodNotAllowed`` or ``InvalidParameters`` naming every bad parameter.
        """
        spec, check = self.validator(name, method)
        return spec, check(params)

    def validator(
        self, name: str, method: str, supplied: frozenset[str] = frozenset()
    ) -> tuple[JobSpec, Callable[[Any], Params]]:
        """:meth:`validate` in two steps, for many params of one method.

        The spec (raising ``JobNotFound`` or ``MethodNotAllowed`` now), and a function that checks
        one params and returns them by name (raising ``InvalidParameters``). ``supplied`` names
        parameters given later (a workflow step's ``result_as``): not missing when absent."""
        spec = self.registry.method(name, method)  # checked on every call: it may change
        cached = None if supplied else self._validators.get((name, method))
        if cached is not None and cached[0] is spec:
            return cached
        signature = signature_of(spec.cls, method)
        made = spec, lambda params: self._checked(name, method, signature, signature.allowed,
                                                  params, supplied)
        if not supplied:
            self._validators[name, method] = made
        return made

    def _checked(
        self,
        name: str,
        method: str,
        signature: MethodSignature,
        allowed: frozenset[str],
        params: Any,
        supplied: frozenset[str] = frozenset(),
    ) -> Params:
        by_name = self._by_name(name, method, signature, params)
        problems: dict[str, str] = {}
        for param in signature.parameters:
            if param.kind is param.VAR_POSITIONAL:
                continue
            if param.name not in by_name:
                if param.default is param.empty and param.name not in supplied:
                    problems[param.name] = "missing (required)"
                continue
            value = by_name[param.name]
            problem = json_problem(value, param.name)
            if problem is None and param.name in signature.hints:
                problem = self._type_problem(value, signature.hints[param.name])
                if problem is not None:
                    problem = self._without_secrets(problem, param.name, value, signature.hints)
            if problem:
                problems[param.name] = problem
        for key, value in by_name.items():
            if key in allowed:
                continue
            if problem := text_problem(key):  # named escaped: the message must be valid UTF-8
                problems[ascii(key)] = f"the parameter name {problem}"
            elif not signature.accepts_any_keyword:
                problems[key] = "unexpected parameter (the method has no parameter of this name)"
            elif problem := json_problem(value, key):
                problems[key] = problem
        if problems:
            raise InvalidParameters(name, method, problems)
        return by_name

    def build(self, name: str, method: str, params: Any) -> tuple[Job, Callable[..., Any], Params]:
        """Validate again, instantiate the job and structure the params for the call.

        Returns the instance, its bound method and the keyword arguments to call it with.
        """
        spec, by_name = self.validate(name, method, params)
        hints = signature_of(spec.cls, method).hints
        kwargs = {
            key: self.converter.structure(value, hints[key]) if key in hints else value
            for key, value in by_name.items()
        }
        instance = spec.cls()
        return instance, getattr(instance, method), kwargs

    def _by_name(self, name: str, method: str, signature: MethodSignature, params: Any) -> Params:
        if params is None:
            return {}
        if isinstance(params, UnreadableJSON):  # a stored row the backend could not decode
            raise InvalidParameters(name, method, {"params": str(params)})
        if isinstance(params, Mapping):
            bad_keys = [k for k in params if not isinstance(k, str)]
            if bad_keys:
                raise InvalidParameters(
                    name, method, {repr(k): "parameter names must be strings" for k in bad_keys}
                )
            return dict(params)
        if isinstance(params, (list, tuple)):
            positional = [
                p.name
                for p in signature.parameters
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            if len(params) > len(positional):
                raise InvalidParameters(
                    name,
                    method,
                    {
                        "params": f"{len(params)} positional values given, the method takes "
                        f"at most {len(positional)}"
                    },
                )
            return dict(zip(positional, params, strict=False))
        raise InvalidParameters(
            name, method, {"params": f"must be a dict or a list, got {type(params).__name__}"}
        )

    def _without_secrets(
        self, problem: str, name: str, value: Any, hints: Mapping[str, Any]
    ) -> str:
        """``problem``, or a version of it that cannot quote a secret.

        ``problem`` unless it could quote a secret (the messages show the value): then the
        problem of the masked value, or no value at all. Errors reach logs, events and CLI."""
        if is_secret(name):
            return (
                f"expected {hint_name(hints[name])}, got {type(value).__name__} "
                "(the value is not shown: a secret)"
            )
        masked = mask_secrets(value)
        if masked == value:
            return problem
        return self._type_problem(masked, hints[name]) or (
            f"expected {hint_name(hints[name])} (details not shown: the value holds secrets)"
        )

    def _type_problem(self, value: Any, hint: Any) -> str | None:
        if hint is Any:
            return None
        # what the strict hooks accept, without the converter's dispatch (``hint`` is a type
        # here, so hashable: a hint such as Annotated[...] may not be)
        if (type(value) is hint or (hint is float and type(value) is int)) \
                and hint in self._plain_scalars:
            return None
        try:
            self.converter.structure(value, hint)
        except Exception as exc:
            import cattrs

            expected = f"expected {hint_name(hint)}"
            if not isinstance(exc, cattrs.BaseValidationError):
                message = str(exc)  # a scalar: our strict hooks already say what was expected
                return message if message.startswith("expected") else f"{message} ({expected})"
            messages = cattrs.transform_error(exc, path="", format_exception=_format_exception)
            where = (m.removesuffix(" @ ").replace(" @ ", " at ") for m in messages)  # "": top
            return f"{'; '.join(where)} ({expected})"
        return None


def _format_exception(exc: BaseException, kind: Any) -> str:
    """One nested problem: our strict hooks' own words, else cattrs' default."""
    if isinstance(exc, TypeError) and str(exc).startswith("expected"):
        return str(exc)
    import cattrs

    return cattrs.v.format_exception(exc, kind)


def hint_name(hint: Any) -> str:
    """A type hint as people write it (``list[int]``, ``str``); internal to jobkit."""
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("collections.abc.", "")
