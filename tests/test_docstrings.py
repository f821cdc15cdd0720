"""The house's docstrings: one-line summaries, internal modules marked, public ones on the map."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import jobkit

PACKAGE = Path(jobkit.__file__).parent
ROOT = PACKAGE.parent
ARCHITECTURE = ROOT / "docs" / "architecture.md"
SECTION = "## Public API and internals"

#: The public API: the modules users and plugin authors import from (docs/, DESIGN.md and the
#: first-party plugins do). Every other module under jobkit/ starts its docstring with
#: ``Internal:``, and docs/architecture.md lists each of these.
PUBLIC = frozenset({
    "jobkit",
    "jobkit.config",
    "jobkit.contrib.django",
    "jobkit.exceptions",
    "jobkit.flow",
    "jobkit.hookspecs",
    "jobkit.job",
    "jobkit.limits",
    "jobkit.notify",
    "jobkit.options",
    "jobkit.records",
    "jobkit.registries",
    "jobkit.retries",
    "jobkit.schedules",
    "jobkit.storage",
    "jobkit.storage.base",
    "jobkit.storage.capabilities",
    "jobkit.storage.memory",
    "jobkit.storage.postgres",
    "jobkit.storage.sqlite",
    "jobkit.testing",
    "jobkit.testing.conformance",
    "jobkit.testing.coreonly",
    "jobkit.testing.plugin",
    "jobkit.workflows",
    "jobkit.worker",
})

INTERNAL = "Internal:"

Documented = ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef


def modules() -> Iterator[tuple[str, Path]]:
    """Every module under jobkit/, as its dotted name and its path."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def docstrings(tree: ast.Module) -> Iterator[tuple[Documented, str, int]]:
    """Each docstring of a module, its own first: the node, the cleaned text and its line."""
    nodes: list[Documented] = [tree]
    nodes += [node for node in ast.walk(tree)
              if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    for node in nodes:
        text = ast.get_docstring(node, clean=True)
        if text is not None:
            yield node, text, node.body[0].lineno


def summary_problem(text: str) -> str | None:
    """What keeps a docstring from PEP 257's one-line summary, or None when nothing does.

    A docstring of one line is fine; a longer one starts with a line that ends a sentence
    (``.``, ``:``, ``?`` or ``!``), then a blank line.
    """
    lines = text.split("\n")
    if len(lines) == 1:
        return None
    if not lines[0].strip():
        return "the first line is empty"
    if lines[1].strip():
        return "no blank line after the first line (the summary runs on to the second)"
    if not lines[0].rstrip().endswith((".", ":", "?", "!")):
        return "the first line does not end a sentence"
    return None


def where(path: Path, line: int) -> str:
    """``path:line`` relative to the repository, as editors and terminals link it."""
    return f"{path.relative_to(ROOT)}:{line}"


def report(rule: str, problems: list[str]) -> None:
    """Fail with every problem on a line of its own, under the rule they break."""
    if problems:
        pytest.fail(f"{len(problems)} break the rule: {rule}\n" + "\n".join(problems),
                    pytrace=False)


class TestDocstrings:
    """Docstrings say what a thing is on their first line; internal modules say they are."""

    def test_every_multi_line_docstring_starts_with_a_one_line_summary(self) -> None:
        """Every multi-line docstring under jobkit/ opens with one sentence, then a blank line."""
        problems = []
        for _, path in modules():
            found = sorted(docstrings(ast.parse(path.read_text(), str(path))), key=lambda d: d[2])
            for node, text, line in found:
                problem = summary_problem(text)
                if problem:
                    name = getattr(node, "name", "<module>")
                    problems.append(f"{where(path, line)}: {name}: {problem}")
        report("PEP 257: a multi-line docstring starts with a one-line summary (one sentence "
               "ending with a period), then a blank line", problems)

    def test_every_module_is_public_or_says_it_is_internal(self) -> None:
        """A module outside PUBLIC starts its docstring with 'Internal:'; one inside does not."""
        problems = []
        for name, path in modules():
            text = ast.get_docstring(ast.parse(path.read_text(), str(path)), clean=True) or ""
            internal = text.startswith(INTERNAL)
            if name in PUBLIC and internal:
                problems.append(f"{where(path, 1)}: {name} is public (in PUBLIC) but its "
                                f"docstring starts with {INTERNAL!r}")
            elif name not in PUBLIC and not internal:
                problems.append(f"{where(path, 1)}: {name} is not in PUBLIC and its docstring "
                                f"does not start with {INTERNAL!r}")
        missing = PUBLIC - {name for name, _ in modules()}
        problems += [f"tests/test_docstrings.py: PUBLIC names {name}, which is no module"
                     for name in sorted(missing)]
        report(f"a module is public (named in PUBLIC) or its docstring starts with {INTERNAL!r}",
               problems)

    def test_the_architecture_page_lists_every_public_module(self) -> None:
        """docs/architecture.md's section on the public API names every public module."""
        page = ARCHITECTURE.read_text()
        if SECTION not in page:
            report(f"docs/architecture.md has a section {SECTION!r}", ["docs/architecture.md"])
        start = page.index(SECTION)
        line = page.count("\n", 0, start) + 1
        section = page[start:].split("\n## ", 1)[0]
        named = set(re.findall(r"`(jobkit(?:\.\w+)*)`", section))
        report(f"docs/architecture.md's section {SECTION!r} names every public module, "
               "as `jobkit.x` in backticks",
               [f"docs/architecture.md:{line}: {name} is not listed"
                for name in sorted(PUBLIC - named)])
