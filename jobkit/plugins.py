"""Internal: the plugin manager factory, with jobkit's hook specs and its built-in plugins.

The manager also loads the installed plugins (entry-point group ``jobkit``). The registries
those plugins fill live in :mod:`jobkit.registries`; job events are delivered to them by
:mod:`jobkit.events`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import pluggy

from jobkit import hookspecs
from jobkit.exceptions import ConfigError

# re-exported: plugins that imported the registries from here keep working
from jobkit.registries import NotifierRegistry as NotifierRegistry
from jobkit.registries import StorageRegistry as StorageRegistry

#: Built-in features, registered as plugins exactly like a third party's (datasette's pattern).
#: jobkit's own job log is no plugin: the event dispatcher calls it (:mod:`jobkit.events`).
DEFAULT_PLUGINS = ("jobkit.storage.plugin",)

def get_plugin_manager(
    plugins: Iterable[object] = (),
    *,
    load_entrypoints: bool = True,
    environ: Mapping[str, str] | None = None,
) -> pluggy.PluginManager:
    """Build jobkit's plugin manager.

    Adds the hook specs, registers the built-in plugins and ``plugins``, loads the entry-point
    group ``jobkit``, and checks that every implementation matches a spec (so a misspelled hook
    fails at start). ``JOBKIT_TRACE_PLUGINS=1`` prints every hook call to stderr (pluggy's own
    hook call monitoring: every hook, job events included, is called through pluggy's caller).
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
    return pm


def _not_valid(pm: pluggy.PluginManager, exc: pluggy.PluginValidationError) -> str:
    """What is wrong with a plugin, on one line: the plugin, the hook, and what the hook takes.

    Pluggy's own message names the plugin by an id, over three lines.
    """
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


def _trace_before(hook_name: str, impls: Any, kwargs: Mapping[str, Any]) -> None:
    names = ", ".join(impl.plugin_name for impl in impls)
    print(f"jobkit hook {hook_name}({', '.join(kwargs)}) -> [{names}]", file=sys.stderr)


def _trace_after(outcome: Any, hook_name: str, impls: Any, kwargs: Mapping[str, Any]) -> None:
    error = outcome.exception
    if error is not None:
        print(f"jobkit hook {hook_name} raised {error!r}", file=sys.stderr)


def storage_registry(pm: pluggy.PluginManager) -> StorageRegistry:
    """The storage backends the plugins of ``pm`` add (``jobkit_register_storage``)."""
    registry = StorageRegistry()
    pm.hook.jobkit_register_storage(registry=registry)
    return registry


def notifier_registry(pm: pluggy.PluginManager) -> NotifierRegistry:
    """The notifier classes the plugins of ``pm`` add (``jobkit_register_notifiers``)."""
    registry = NotifierRegistry()
    pm.hook.jobkit_register_notifiers(registry=registry)
    return registry
