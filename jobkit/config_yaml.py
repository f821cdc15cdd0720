"""Internal: the machinery under :mod:`jobkit.config`: key paths, value rules, cattrs hooks.

Reading YAML (a file with the line of each key, an environment variable's value) is in
:mod:`jobkit.config.yamlfile`, imported only by what reads some: ``import jobkit`` does not
import PyYAML, nor cattrs (imported by the functions that use it).

A rule (:func:`bounded`, :func:`choice`, ...) checks and normalises one value and raises
:class:`Invalid` with a message like ``expected an integer >= 0 and <= 5000, got 'five'``.
Fields made with :func:`setting` carry their rule as attrs metadata, which both the attrs
validator and the cattrs hooks of :func:`mapping_hook` apply; :func:`problems` turns a cattrs
validation error into ``(key path, message)`` pairs, which the line table of the file places.
Numeric settings take their bounds from :mod:`jobkit.limits`.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from jobkit.limits import Bound

if TYPE_CHECKING:
    import cattrs

#: The place of a value in the configuration: mapping keys and list indexes, outermost first.
KeyPath = tuple[Any, ...]
#: A value rule: returns the value (normalised) or raises Invalid.
Check = Callable[[Any], Any]
#: attrs metadata keys: the field's rule; whether None means "not set" (then always allowed).
CHECK, UNSET_OK = "jobkit.check", "jobkit.unset_ok"


def line_of(lines: Mapping[KeyPath, int], path: KeyPath) -> int | None:
    """The line of ``path``, or of its nearest ancestor that has one (a missing key's mapping)."""
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def format_path(path: KeyPath) -> str:
    """``("jobs", "Email", "timeout")`` -> ``jobs.Email.timeout``; list indexes as ``[0]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "<top level>"


# -- value rules -------------------------------------------------------------------------------


class Invalid(ValueError):
    """A bad configuration value: the message, and the key path below the checked value."""

    def __init__(self, message: str, path: KeyPath = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return f"{format_path(self.path)}: {self.message}" if self.path else self.message


def _same(value: Any) -> Any:
    return value


@attrs.frozen
class Rule:
    """Checks and normalises one value: ``rule(value)`` returns the value or raises Invalid."""

    what: str
    test: Callable[[Any], bool]
    convert: Callable[[Any], Any] = _same
    nullable: bool = False
    #: A secret's rule: its errors never show the value (a password put where its hash goes).
    secret: bool = False

    def __call__(self, value: Any) -> Any:
        if value is None and self.nullable:
            return None
        if not self.test(value):
            shown = " (the value given is not shown)" if self.secret else f", got {value!r}"
            raise Invalid(f"expected {self.what}{shown}")
        return self.convert(value)


def bounded(bound: Bound, *, nullable: bool = False) -> Rule:
    """A number (kept as a float) or an integer within ``bound`` (jobkit/limits.py)."""
    return Rule(bound.describe(), bound.accepts, int if bound.integer else float, nullable)


def boolean() -> Rule:
    """``true`` or ``false`` (YAML's booleans; ``1`` and ``"yes"`` are refused)."""
    return Rule("true or false", lambda v: type(v) is bool)


def choice(*choices: str) -> Rule:
    """One of ``choices``, in any case; kept as spelled in ``choices``."""
    by_key = {option.upper(): option for option in choices}
    return Rule(f"one of {', '.join(choices)}",
                lambda v: isinstance(v, str) and v.upper() in by_key, lambda v: by_key[v.upper()])


def text(what: str = "a string", *, pattern: str = r".+", nullable: bool = False,
         secret: bool = False) -> Rule:
    """A non-empty string that matches ``pattern``; a ``secret`` one is never shown in errors."""
    shape = re.compile(pattern, re.DOTALL)
    return Rule(what, lambda v: isinstance(v, str) and shape.fullmatch(v) is not None,
                nullable=nullable, secret=secret)


_FILE_COUNT = re.compile(r"\s*(\d+)\s+files?\s*", re.IGNORECASE)


def _loguru_value(option: str, value: Any) -> Any:
    """``value`` as loguru takes it: ``"10 files"`` -> ``10`` for a retention."""
    if option == "retention" and isinstance(value, str) and (count := _FILE_COUNT.fullmatch(value)):
        return int(count.group(1))
    return value


def loguru_option(option: str, what: str, default: str) -> Rule:
    """A ``rotation`` or ``retention`` that loguru accepts (tried on a sink never opened).

    jobkit's ``default`` is taken untried (a test checks that loguru accepts it): a
    configuration that leaves the option alone imports no loguru to be checked, and
    ``jobkit worker`` reads it before it starts its processes.
    """

    def test(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return False
        return value == default or _loguru_accepts(option, value)

    return Rule(what, test, lambda v: _loguru_value(option, v), nullable=True)


@functools.cache
def _loguru_accepts(option: str, value: str | int) -> bool:
    """Whether loguru takes ``value`` for ``option``: tried once per process and value.

    A sink added and removed costs 3-10 ms (loguru's exception formatter reads the interpreter's
    paths), and a configuration checks each value twice (its attrs validator, its cattrs hook).
    """
    import os
    import tempfile

    from loguru import logger

    path = os.path.join(tempfile.gettempdir(), "jobkit-config-check.log")
    try:
        handler = logger.add(path, delay=True, **{option: _loguru_value(option, value)})
    except (ValueError, TypeError):
        return False
    logger.remove(handler)
    return True


def list_of(item: Rule, what: str) -> Check:
    """A list (or null) whose items each pass ``item``; an error names the bad item's index."""

    def check(value: Any) -> list[Any] | None:
        if value is None:
            return None
        if not isinstance(value, list):
            raise Invalid(f"expected a list of {what}, got {value!r}")
        items = []
        for index, element in enumerate(value):
            try:
                items.append(item(element))
            except Invalid as exc:
                raise Invalid(exc.message, (index, *exc.path)) from None
        return items

    return check


#: Free-form options: a mapping with string keys (null for empty).
OPTIONS = Rule(
    "a mapping of option names to values",
    lambda v: v is None or (isinstance(v, dict) and all(isinstance(key, str) for key in v)),
    lambda v: dict(v or {}),
)


# -- attrs fields and cattrs hooks -------------------------------------------------------------


def setting(default: Any, rule: Check, **field: Any) -> Any:
    """An attrs field checked by ``rule``, whether it is built from the file or in code."""
    return attrs.field(default=default, validator=checked, metadata={CHECK: rule}, **field)


def unset_or(rule: Check) -> Any:
    """An attrs field that is None (not set at this layer) or a value ``rule`` accepts."""
    return attrs.field(default=None, validator=checked, metadata={CHECK: rule, UNSET_OK: True})


def checked(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: the rule in the field's metadata."""
    if value is None and attribute.metadata.get(UNSET_OK):
        return
    try:
        attribute.metadata[CHECK](value)
    except Invalid as exc:
        raise Invalid(exc.message, (attribute.name, *exc.path)) from None


def rules_of(cls: type) -> dict[str, Check]:
    """The rule of each field of ``cls`` that has one."""
    return {a.name: a.metadata[CHECK] for a in attrs.fields(cls) if CHECK in a.metadata}


Hook = Callable[[Any, Any], Any]


def mapping_hook(cls: type, conv: cattrs.Converter, *, omit: Collection[str] = (),
                 rename: Mapping[str, str] | None = None, **hooks: Hook) -> Hook:
    """A cattrs structure hook for the attrs class ``cls`` from a mapping.

    A cattrs structure hook for ``cls`` from a mapping (null for empty): each field through
    its rule or its hook in ``hooks``; fields in ``omit`` are never read from the mapping."""
    from cattrs.gen import make_dict_structure_fn, override

    overrides: dict[str, Any] = {}
    for a in attrs.fields(cls):
        rule = a.metadata.get(CHECK)
        if a.name in omit:
            overrides[a.name] = override(omit=True)
        elif a.name in hooks or rule is not None:
            overrides[a.name] = override(
                rename=(rename or {}).get(a.name),
                struct_hook=hooks.get(a.name) or _through(rule),
            )
    structure: Hook = make_dict_structure_fn(cls, conv, **overrides)

    def hook(value: Any, _: Any) -> Any:
        if value is not None and not isinstance(value, dict):
            raise Invalid(f"expected a mapping, got {value!r}")
        return structure(value or {}, cls)

    return hook


def _through(rule: Check) -> Hook:
    """A cattrs structure hook that applies ``rule``."""
    return lambda value, _: rule(value)


def container_hook(kind: type, structure: Hook) -> Hook:
    """A cattrs structure hook that accepts only a ``kind`` (dict or list), or null for empty."""
    def hook(value: Any, cl: Any) -> Any:
        if value is not None and not isinstance(value, kind):
            raise Invalid(f"expected a {'mapping' if kind is dict else kind.__name__}, "
                          f"got {value!r}")
        return structure(value or kind(), cl)

    return hook


def strict_str(value: Any, _: Any) -> str:
    """A cattrs structure hook for ``str`` that refuses other types instead of calling str()."""
    if not isinstance(value, str):
        raise Invalid(f"expected a string, got {value!r}")
    return value


# -- cattrs errors -----------------------------------------------------------------------------


def problems(
    exc: BaseException,
    known_keys: Callable[[type], list[str]],
    aliases: Mapping[str, str],
    path: KeyPath = (),
) -> Iterator[tuple[KeyPath, str]]:
    """The key path and message of each error in a cattrs validation error tree.

    ``known_keys(cls)`` lists the keys a mapping for ``cls`` may hold, for unknown-key hints;
    ``aliases`` maps attribute names to the file's keys (``class_`` -> ``class``).
    """
    from cattrs.errors import (
        AttributeValidationNote,
        ClassValidationError,
        ForbiddenExtraKeysError,
        IterableValidationError,
    )

    if isinstance(exc, ForbiddenExtraKeysError):
        known = known_keys(exc.cl)
        for key in sorted(exc.extra_fields, key=str):
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
            yield (*path, key), f"unknown key ({hint})"
    elif isinstance(exc, (ClassValidationError, IterableValidationError)):
        with_notes, without_notes = exc.group_exceptions()
        for inner, note in with_notes:
            step = note.name if isinstance(note, AttributeValidationNote) else note.index
            if isinstance(step, str):
                step = aliases.get(step, step)
            yield from problems(inner, known_keys, aliases, (*path, step))
        for inner in without_notes:
            yield from problems(inner, known_keys, aliases, path)
    elif isinstance(exc, Invalid):
        yield (*path, *exc.path), exc.message
    elif isinstance(exc, KeyError):
        yield path, "required key is missing"
    else:
        yield path, str(exc)
