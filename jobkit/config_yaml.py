"""Internal: the machinery under :mod:`jobkit.config`: YAML with lines, value rules, cattrs hooks.

Only ``yaml.SafeLoader`` is used, so loading is exactly as safe as ``yaml.safe_load``: the node
tree is composed, its marks give every key's line, and the same tree is then constructed.
Before that, one pass over the parser's events (which nest no Python calls) refuses what would
exhaust the loader: mappings and lists nested deeper than :data:`MAX_DEPTH` (the limit params
have at enqueue), and aliases that repeat more than :data:`MAX_ALIASED_VALUES` values (an
"alias bomb": a few lines that expand to millions of values). A file is read only up to
:data:`MAX_FILE_BYTES`.

A rule (:func:`bounded`, :func:`choice`, ...) checks and normalises one value and raises
:class:`Invalid` with a message like ``expected an integer >= 0 and <= 5000, got 'five'``.
Fields made with :func:`setting` carry their rule as attrs metadata, which both the attrs
validator and the cattrs hooks of :func:`mapping_hook` apply; :func:`problems` turns a cattrs
validation error into ``(key path, message)`` pairs, which the line table of the file places.
Numeric settings take their bounds from :mod:`jobkit.limits`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

import attrs
import cattrs
import yaml
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)
from cattrs.gen import make_dict_structure_fn, override

from jobkit.exceptions import ConfigError
from jobkit.limits import MAX_DEPTH, Bound

#: The place of a value in the configuration: mapping keys and list indexes, outermost first.
KeyPath = tuple[Any, ...]
#: A value rule: returns the value (normalised) or raises Invalid.
Check = Callable[[Any], Any]
#: attrs metadata keys: the field's rule; whether None means "not set" (then always allowed).
CHECK, UNSET_OK = "jobkit.check", "jobkit.unset_ok"


# -- loading -----------------------------------------------------------------------------------

#: The largest configuration file jobkit reads, in bytes (1 MB); a jobs.yaml is a few kB.
MAX_FILE_BYTES = 1_048_576
#: The most values that aliases (``*name``) may repeat in one document, counted expanded:
#: plenty for ``<<: *defaults`` in every job, far too few for an alias bomb.
MAX_ALIASED_VALUES = 10_000


class OverLimit(yaml.YAMLError):
    """A YAML document over one of the loader's limits (nesting, alias expansion).

    The problem, and the 1-based line of the node at fault."""

    def __init__(self, problem: str, event: yaml.Event) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = event.start_mark.line + 1 if event.start_mark else 1


def check_limits(text: str) -> None:
    """Raise :class:`OverLimit` when ``text`` nests too deep or its aliases expand too far.

    Raise :class:`OverLimit`, marked at the node at fault, when ``text`` nests mappings and
    lists deeper than :data:`MAX_DEPTH` or its aliases repeat more than
    :data:`MAX_ALIASED_VALUES` values (or an alias sits inside the node it names)."""
    open_nodes: list[tuple[str | None, list[int]]] = []  # anchor and expanded size of each
    sizes: dict[str, int] = {}
    repeated = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        anchor: str | None = None
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_nodes) >= MAX_DEPTH:
                raise OverLimit(f"mappings and lists nest deeper than {MAX_DEPTH} levels", event)
            open_nodes.append((event.anchor, [1]))
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, (size,) = open_nodes.pop()
        elif isinstance(event, yaml.ScalarEvent):
            anchor, size = event.anchor, 1
        elif isinstance(event, yaml.AliasEvent):
            if any(name == event.anchor for name, _ in open_nodes):
                raise OverLimit(f"alias *{event.anchor} is inside the mapping or list it names, "
                                "which would then contain itself", event)
            size = sizes.get(event.anchor or "", 0)  # an unknown alias: the composer names it
            repeated += size
            if repeated > MAX_ALIASED_VALUES:
                raise OverLimit(f"aliases repeat more than {MAX_ALIASED_VALUES:,} values in all "
                                "(an alias bomb?); write the values out", event)
        else:
            continue
        if anchor is not None:
            sizes[anchor] = size
        if open_nodes:
            open_nodes[-1][1][0] += size


@attrs.frozen
class YamlDocument:
    """A loaded YAML document: its data, the 1-based line of each key and item, and duplicates."""

    data: Any
    lines: dict[KeyPath, int]
    duplicates: list[KeyPath]


def load_yaml(text: str) -> YamlDocument:
    """Load one YAML document with ``SafeLoader``, within the loader's limits.

    Load one YAML document with ``SafeLoader``; raises ``yaml.YAMLError`` on bad syntax,
    :class:`OverLimit` (one) over the loader's limits."""
    check_limits(text)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(None, {}, [])
        lines: dict[KeyPath, int] = {(): node.start_mark.line + 1}
        duplicates: list[KeyPath] = []
        _walk(loader, node, (), lines, duplicates, set())
        return YamlDocument(loader.construct_document(node), lines, duplicates)
    finally:
        loader.dispose()


def _walk(loader: yaml.SafeLoader, node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int],
          duplicates: list[KeyPath], walked: set[int]) -> None:
    """Record the line of every key and list item under ``node``.

    A node reached again through an alias is not walked again (aliases can nest exponentially,
    or recurse); errors under it are placed at the line of the key that holds the alias.
    """
    if id(node) in walked:
        return
    walked.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            # the constructed key, so that `1:` or `yes:` match the keys of the loaded data
            key = loader.construct_object(key_node)
            if key in seen:
                duplicates.append((*path, key))
            seen.add(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _walk(loader, value_node, (*path, key), lines, duplicates, walked)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _walk(loader, item, (*path, index), lines, duplicates, walked)


def read_yaml_file(file: str) -> YamlDocument:
    """Read and load ``file``, naming the file (and line) in a ``ConfigError`` when that fails.

    Read and load ``file`` (at most :data:`MAX_FILE_BYTES`); ``ConfigError`` names the file
    (and line) when that fails."""
    try:
        with open(file, "rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ConfigError(errors=[f"{file}: configuration file larger than 1 MB "
                                      f"({MAX_FILE_BYTES:,} bytes)"])
        return load_yaml(data.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(errors=[f"{file}: configuration file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(errors=[f"{file}: cannot read the configuration file: {exc}"]) from None
    except OverLimit as exc:
        raise ConfigError(errors=[f"{file}:{exc.line}: {exc.problem}"]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}" if mark else file
        problem = exc.problem or exc.context or "cannot parse"
        raise ConfigError(errors=[f"{where}: YAML syntax error: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(errors=[f"{file}: YAML error: {exc}"]) from None


def env_value(rule: Check, raw: str) -> Any:
    """An environment variable's value, read as a YAML scalar or kept as text.

    An environment variable's value: a YAML scalar (``5``, ``null``, ``1.5``), or the raw
    text where the rule wants a string that YAML reads as something else (``00:00``)."""
    try:
        check_limits(raw)
        parsed = yaml.safe_load(raw)
    except OverLimit as exc:
        raise Invalid(exc.problem) from None
    except yaml.YAMLError:
        parsed = raw
    try:
        return rule(parsed)
    except Invalid:
        if isinstance(parsed, str):
            raise
        try:
            return rule(raw)
        except Invalid:
            pass
        raise


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


def loguru_option(option: str, what: str) -> Rule:
    """A ``rotation`` or ``retention`` that loguru accepts (tried on a sink never opened)."""

    def test(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return False
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

    return Rule(what, test, lambda v: _loguru_value(option, v), nullable=True)


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
