"""The plugin manager factory, and the registries plugins fill through hooks."""

from __future__ import annotations

import inspect
import os
import sys
import weakref
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pluggy
from loguru import logger

from jobkit import hookspecs
from jobkit.delivery import DeliveryThread, close_all
from jobkit.exceptions import ConfigError

if TYPE_CHECKING:
    from pluggy import HookImpl

    from jobkit.notify import Notifier  # noqa: F401 - named in a string below
    from jobkit.records import JobEvent
    from jobkit.storage.base import Storage

#: Built-in features, registered as plugins exactly like a third party's (datasette's pattern).
DEFAULT_PLUGINS = ("jobkit.storage.plugin", "jobkit.logs")

T = TypeVar("T")


class ClassRegistry(Generic[T]):
    """A name -> class mapping that refuses two classes under one name."""

    kind = "class"

    def __init__(self) -> None:
        self._classes: dict[str, type[T]] = {}

    def add(self, name: str, cls: type[T]) -> None:
        """Register ``cls`` under ``name``."""
        existing = self._classes.get(name)
        if existing is not None and existing is not cls:
            raise ConfigError(
                f"{self.kind} {name!r} is registered twice: by {existing.__module__}."
                f"{existing.__qualname__} and by {cls.__module__}.{cls.__qualname__}"
            )
        self._classes[name] = cls

    def get(self, name: str) -> type[T]:
        """The class registered under ``name``; ``KeyError`` names the known ones."""
        try:
            return self._classes[name]
        except KeyError:
            known = ", ".join(sorted(self._classes)) or "none"
            raise KeyError(f"no {self.kind} {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._classes)


class StorageRegistry(ClassRegistry["Storage"]):
    """URL scheme -> ``Storage`` subclass, filled by ``jobkit_register_storage``."""

    kind = "storage scheme"

    def build(self, url: str, **options: Any) -> Storage:
        """Open the store that ``url`` names; ``ConfigError`` for an unknown scheme."""
        scheme, sep, _ = url.partition("://")
        if not sep:
            raise ConfigError(f"storage: {url!r} is not a URL like sqlite:///jobkit.db")
        try:
            cls = self.get(scheme)
        except KeyError as exc:
            raise ConfigError(f"storage: {url!r}: {exc.args[0]}") from None
        try:
            inspect.signature(cls.from_url).bind(url, **options)
        except TypeError:
            given = ", ".join(f"{key}={value!r}" for key, value in options.items())
            settings = ", ".join(f"{key}: {value}" for key, value in options.items())
            raise ConfigError(
                f"storage: {url!r}: {cls.__module__}.{cls.__qualname__}.from_url does not take "
                f"{given} (jobs.yaml's {settings}); a backend's from_url(url, **options) "
                "accepts it (see docs/storage.md)"
            ) from None
        return cls.from_url(url, **options)


class NotifierRegistry(ClassRegistry["Notifier"]):
    """Notifier name -> ``Notifier`` subclass, filled by ``jobkit_register_notifiers``."""

    kind = "notifier"


def get_plugin_manager(
    plugins: Iterable[object] = (),
    *,
    load_entrypoints: bool = True,
    environ: Mapping[str, str] | None = None,
) -> pluggy.PluginManager:
    """Build jobkit's plugin manager.

    Adds the hook specs, registers the built-in plugins and ``plugins``, loads the entry-point
    group ``jobkit``, and checks that every implementation matches a spec (so a misspelled hook
    fails at start). ``JOBKIT_TRACE_PLUGINS=1`` prints every hook call to stderr.
    """
    import importlib

    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    try:
        for name in DEFAULT_PLUGINS:
            pm.register(importlib.import_module(name), name=name)
        for plugin in plugins:
            pm.register(plugin)
    except pluggy.PluginValidationError as exc:
        raise ConfigError(_not_valid(pm, exc)) from exc
    if load_entrypoints:
        try:
            pm.load_setuptools_entrypoints(hookspecs.PROJECT_NAME)
        except pluggy.PluginValidationError as exc:
            raise ConfigError(f"entry point group 'jobkit': {_not_valid(pm, exc)}") from exc
        except Exception as exc:
            raise ConfigError(f"entry point group 'jobkit': cannot load a plugin: {exc}") from exc
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigError(_not_valid(pm, exc)) from exc
    env = os.environ if environ is None else environ
    if env.get("JOBKIT_TRACE_PLUGINS", "") not in ("", "0"):
        pm.add_hookcall_monitoring(_trace_before, _trace_after)
        _TRACED.add(pm)
    return pm


def _not_valid(pm: pluggy.PluginManager, exc: pluggy.PluginValidationError) -> str:
    """What is wrong with a plugin, on one line: the plugin, the hook, and what the hook takes
    (pluggy's own message names the plugin by an id, over three lines)."""
    import difflib
    import re  # here: only a plugin that does not fit needs them

    first, *rest = str(exc).splitlines()
    # register refuses before naming the plugin: its message holds the name
    found = re.match(r"Plugin '([^']*)' for hook '([^']+)'", first)
    name = pm.get_name(exc.plugin) or (found.group(1) if found else None)
    who = _plugin_label(exc.plugin, name)
    if found is None:
        unknown_hook = re.match(r"unknown hook '([^']+)'", first)  # from check_pending
        if unknown_hook is None:  # a message this code does not know: all of it, on one line
            return f"plugin {who}: {' '.join([first, *rest])}"
        hook = unknown_hook.group(1)
        close = difflib.get_close_matches(hook, _hook_names(pm), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(_hook_names(pm))}"
        return f"plugin {who}: unknown hook {hook!r} ({hint})"
    hook = found.group(2)
    caller = getattr(pm.hook, hook, None)
    spec = caller.spec if caller is not None else None
    takes = f" (the hook takes: {', '.join(spec.argnames) or 'nothing'})" if spec else ""
    reason = " ".join(rest[1:]) or " ".join(rest)  # rest[0] repeats the implementation's def
    unknown = re.match(r"Argument\(s\) \{(.*)\} are declared in the hookimpl", reason)
    if unknown:
        reason = f"unknown argument(s) {unknown.group(1).replace(chr(39), '')}"
    return f"plugin {who}: hook {hook}: {reason}{takes}"


def _plugin_label(plugin: object, name: str | None) -> str:
    """A plugin as people know it: its module, or its class (pluggy names an instance by id)."""
    import types

    if isinstance(plugin, types.ModuleType):
        return plugin.__name__ if name in (None, plugin.__name__) else (
            f"{name!r} (module {plugin.__name__})")
    cls = type(plugin)
    label = f"{cls.__module__}.{cls.__qualname__}"
    return label if name is None or name.isdigit() else f"{name!r} ({label})"


def _hook_names(pm: pluggy.PluginManager) -> list[str]:
    """The hooks jobkit specifies."""
    return sorted(name for name, caller in vars(pm.hook).items()
                  if isinstance(caller, pluggy.HookCaller) and caller.has_spec())


#: Plugin managers that trace hook calls (``JOBKIT_TRACE_PLUGINS``); events are dispatched
#: without pluggy's caller (see :func:`dispatch_event`), so their calls are traced there.
_TRACED: weakref.WeakSet[pluggy.PluginManager] = weakref.WeakSet()


def _trace_before(hook_name: str, impls: Any, kwargs: Mapping[str, Any]) -> None:
    names = ", ".join(impl.plugin_name for impl in impls)
    print(f"jobkit hook {hook_name}({', '.join(kwargs)}) -> [{names}]", file=sys.stderr)


def _trace_after(outcome: Any, hook_name: str, impls: Any, kwargs: Mapping[str, Any]) -> None:
    error = outcome.exception
    if error is not None:
        print(f"jobkit hook {hook_name} raised {error!r}", file=sys.stderr)


#: Plugins whose event hook runs in the caller's thread: jobkit's own job log, which is fast and
#: must keep state changes in order with the lines jobs log themselves.
INLINE_EVENT_PLUGINS = frozenset({"jobkit.logs"})


def dispatch_event(pm: pluggy.PluginManager, event: JobEvent, *, inline: bool) -> None:
    """Call the ``jobkit_job_event`` implementations (the inline ones, or the others) one by
    one; log the ones that raise.

    pluggy stops at the first implementation that raises; an event must reach every plugin, and
    no plugin may change a job's outcome, so each is called separately (directly: this runs for
    every state change of every job, and a pluggy subset caller per call costs more than the
    log line).
    """
    call_each(pm, _event_impls(pm, inline=inline), event)


def _event_impls(pm: pluggy.PluginManager, *, inline: bool) -> list[HookImpl]:
    """The ``jobkit_job_event`` implementations that run inline (or the others), in call order."""
    return [
        impl
        for impl in reversed(pm.hook.jobkit_job_event.get_hookimpls())
        if (impl.plugin_name in INLINE_EVENT_PLUGINS) == inline
    ]


def call_each(pm: pluggy.PluginManager, impls: list[HookImpl], event: JobEvent) -> None:
    """Call each of ``impls`` with ``event``; log the ones that raise (see
    :func:`dispatch_event`)."""
    for impl in impls:
        if pm in _TRACED:
            _trace_before("jobkit_job_event", [impl], {"event": event})
        try:
            impl.function(**{name: event for name in impl.argnames})
        except Exception:
            logger.opt(exception=True).error(
                "plugin {plugin} raised in jobkit_job_event({kind}) for job {job_id}",
                plugin=impl.plugin_name,
                kind=str(event.kind),
                job_id=event.job.id,
            )


class EventDispatcher:
    """Delivers job events to ``jobkit_job_event``: jobkit's own log at once, every other
    plugin on a delivery thread, in order; each notifier has a thread of its own as well.

    A plugin's hook that is slow or hangs delays only later events to plugins, never the job or
    the caller that changed its state. :meth:`flush` waits (boundedly) for the events emitted.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self._plugins = DeliveryThread(
            "jobkit-events", lambda event: dispatch_event(pm, event, inline=False)
        )
        #: Threads fed by plugins (one per notifier), flushed and closed with this one.
        self.downstream: list[DeliveryThread] = []

    def emit(self, event: JobEvent) -> None:
        """Log ``event`` and queue it for the other plugins."""
        self.emit_all((event,))

    def emit_all(self, events: Iterable[JobEvent]) -> None:
        """:meth:`emit` each of ``events`` in order (the hook implementations looked up once)."""
        inline = _event_impls(self.pm, inline=True)
        # with no other listener, no thread is started
        others = bool(_event_impls(self.pm, inline=False))
        for event in events:
            call_each(self.pm, inline, event)
            if others:
                self._plugins.emit(event)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event emitted so far was delivered; ``False`` on timeout."""
        return close_all([self._plugins, *self.downstream], timeout, flush_only=True)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (waiting at most ``timeout`` in all), then stop the threads."""
        close_all([self._plugins, *self.downstream], timeout)
