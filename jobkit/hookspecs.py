"""Every hook a jobkit plugin can implement (pluggy project name ``jobkit``).

A plugin is a module or object with functions marked ``@jobkit.hookimpl``; installed packages
expose it through the entry-point group ``jobkit``. Built-in features (the SQLite and memory
stores) are plugins registered through these same hooks. jobkit calls every hook through
pluggy's hook caller, so hook wrappers and pluggy's hook call monitoring (``JOBKIT_TRACE_PLUGINS``)
apply; no hook is ``firstresult``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from loguru import Logger

    from jobkit.config import LoggingSettings
    from jobkit.records import JobEvent
    from jobkit.registries import NotifierRegistry, StorageRegistry

#: pluggy's project name of jobkit's hooks and the entry-point group of installed plugins.
PROJECT_NAME = "jobkit"

#: Internal: marks the hook specifications below (plugins use :data:`hookimpl`).
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Marks a function as the implementation of a jobkit hook.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def jobkit_register_storage(registry: StorageRegistry) -> None:
    """Add storage backends: ``registry.add("redis", RedisStorage)``.

    Called once when an app is built, before the store is opened. ``registry.add`` maps a URL
    scheme to a ``jobkit.storage.Storage`` subclass, whose ``from_url(url)`` builds the store.
    Returns nothing; not ``firstresult``. Two plugins adding one scheme is an error.
    """


@hookspec
def jobkit_register_notifiers(registry: NotifierRegistry) -> None:
    """Add notifier classes: ``registry.add("webhook", WebhookNotifier)``.

    Called once when an app is built. Each entry of ``notifications:`` in ``jobs.yaml`` names a
    notifier with ``plugin:``; the class is built from the entry's other keys. Returns nothing.
    """


@hookspec
def jobkit_job_event(event: JobEvent) -> None:
    """Called after every state change of a job has been committed.

    ``event.kind`` is one of ``enqueued``, ``started``, ``succeeded``, ``retrying``, ``failed``,
    ``cancelled``; ``event.job`` is the ``JobRecord`` after the change. Called in the process
    where the change happened (the caller for ``enqueued`` and ``cancelled``, a worker process
    otherwise), on the app's event thread. Each implementation is called on its own, through a
    pluggy caller of its own (hook wrappers run around each): one that raises is logged and the
    others still run, and nothing it does changes the job's outcome. Returns nothing.
    """


@hookspec
def jobkit_configure_logging(logger: Logger, settings: LoggingSettings) -> None:
    """Add loguru sinks: called when the worker or the CLI configures logging.

    ``logger`` is loguru's logger with jobkit's two files already added; ``settings`` is the
    ``logging:`` section of ``jobs.yaml``. Returns nothing.
    """
