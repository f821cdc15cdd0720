"""Internal: the built-in storage backends, registered by the hook a third party uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobkit.hookspecs import hookimpl

if TYPE_CHECKING:
    from jobkit.registries import StorageRegistry


@hookimpl
def jobkit_register_storage(registry: StorageRegistry) -> None:
    """Add ``sqlite://``, ``memory://`` and ``postgresql://`` (alias ``postgres://``).

    Each is imported when the app opens a store of its scheme, not when it is built: a process
    on SQLite never imports :mod:`jobkit.storage.postgres`.
    """
    registry.add_lazy("sqlite", "jobkit.storage.sqlite:SQLiteStorage")
    registry.add_lazy("memory", "jobkit.storage.memory:MemoryStorage")
    registry.add_lazy("postgresql", "jobkit.storage.postgres:PostgresStorage")
    registry.add_lazy("postgres", "jobkit.storage.postgres:PostgresStorage")
