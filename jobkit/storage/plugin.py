"""The built-in storage backends, registered through the same hook a third party uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobkit.hookspecs import hookimpl

if TYPE_CHECKING:
    from jobkit.plugins import StorageRegistry


@hookimpl
def jobkit_register_storage(registry: StorageRegistry) -> None:
    """Add ``sqlite://`` and ``memory://``."""
    from jobkit.storage.memory import MemoryStorage
    from jobkit.storage.sqlite import SQLiteStorage

    registry.add("sqlite", SQLiteStorage)
    registry.add("memory", MemoryStorage)
