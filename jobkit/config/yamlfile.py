"""Internal: YAML read for :mod:`jobkit.config`: a file with the line of each key, within limits.

Only ``yaml.SafeLoader`` is used, so loading is exactly as safe as ``yaml.safe_load``: the node
tree is composed, its marks give every key's line, and the same tree is then constructed.
Before that, one pass over the parser's events (which nest no Python calls) refuses what would
exhaust the loader: mappings and lists nested deeper than :data:`MAX_DEPTH` (the limit params
have at enqueue), and aliases that repeat more than :data:`MAX_ALIASED_VALUES` values (an
"alias bomb": a few lines that expand to millions of values). A file is read only up to
:data:`MAX_FILE_BYTES`. Imported by :func:`jobkit.config.load_config` and the environment's
reader when they run, not by ``import jobkit`` (PyYAML costs about 11 ms to import).
"""

from __future__ import annotations

from typing import Any

import attrs
import yaml

from jobkit.config_yaml import Check, Invalid, KeyPath
from jobkit.exceptions import ConfigError
from jobkit.limits import MAX_DEPTH

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
