"""Internal: the built-in storage backends, registered by the hook a third party uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobkit.hookspecs import hookimpl

if TYPE_CHECKING:
    from jobkit.registries import StorageRegistry


@hookimpl
def jobkit_register_storage(registry: StorageRegistry) -> None:
    """Add ``sqlite://``, ``memory://`` and ``postgresql://`` (alias ``postgres://``)."""
    from jobkit.storage.memory import MemoryStorage
    from jobkit.storage.postgres import PostgresStorage
    from jobkit.storage.sqlite import SQLiteStorage

    registry.add("sqlite", SQLiteStorage)
    registry.add("memory", MemoryStorage)
    registry.add("postgresql", PostgresStorage)
    registry.add("postgres", PostgresStorage)
