"""Internal: named SQL sections in a package file (``-- name: claim`` ... to the next).

The SQL of each backend lives in a ``.sql`` file next to it, so it reads (and diffs) as SQL.
``migration_<n>`` sections build the schema, numbered 1, 2, 3 ... without gaps.
"""

from __future__ import annotations

import functools
from importlib import resources


@functools.cache
def sections(filename: str) -> dict[str, str]:
    """The named sections of ``jobkit/storage/<filename>``, read once."""
    text = resources.files("jobkit.storage").joinpath(filename).read_text("utf-8")
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("-- name:"):
            current = found.setdefault(line.removeprefix("-- name:").strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in found.items()}


def migrations(named: dict[str, str], filename: str) -> list[tuple[int, str]]:
    """The ``migration_<n>`` sections among ``named`` as ``(n, sql)``, in order.

    ``named`` are the sections of ``filename``.
    """
    found = sorted(
        (int(name.removeprefix("migration_")), sql)
        for name, sql in named.items()
        if name.startswith("migration_")
    )
    if [version for version, _ in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{filename}: migrations must be numbered 1, 2, 3 ... without gaps")
    return found
