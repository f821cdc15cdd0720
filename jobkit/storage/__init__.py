"""Job stores: the ``Storage`` core, its capabilities and the built-in backends.

The optional capabilities are in :mod:`.capabilities`.

The backends are imported lazily so that importing :mod:`jobkit.storage` loads no driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobkit.storage.base import Storage

if TYPE_CHECKING:
    from jobkit.storage.memory import MemoryStorage
    from jobkit.storage.postgres import PostgresStorage
    from jobkit.storage.sqlite import SQLiteStorage

__all__ = ["MemoryStorage", "PostgresStorage", "SQLiteStorage", "Storage"]

_LAZY = {
    "MemoryStorage": "jobkit.storage.memory",
    "PostgresStorage": "jobkit.storage.postgres",
    "SQLiteStorage": "jobkit.storage.sqlite",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jobkit.storage' has no attribute {name!r}")
