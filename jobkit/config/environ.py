"""Internal: the ``JOBKIT_*`` environment variables, read and checked as a layer of settings.

``JOBKIT_STORAGE``, ``JOBKIT_<SECTION>__<KEY>`` and ``JOBKIT_JOBS__<NAME>__<KEY>``: each value is
read as a YAML scalar and checked by the rule of the setting it names (see :mod:`jobkit.config`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from jobkit.config.retention import Retention
from jobkit.config.settings import (
    JOB_RULES,
    DashboardSettings,
    JobSettings,
    LoggingSettings,
    WorkerSettings,
)
from jobkit.config_yaml import Check, Invalid, KeyPath, rules_of

#: JOBKIT_* variables that are not configuration keys.
_NOT_SETTINGS = frozenset({"JOBKIT_CONFIG", "JOBKIT_TRACE_PLUGINS", "JOBKIT_DEBUG"})
_SECTIONS: dict[str, type] = {
    "defaults": JobSettings, "logging": LoggingSettings, "worker": WorkerSettings,
    "dashboard": DashboardSettings, "retention": Retention,
}
_ENV_HELP = ("not a jobkit setting (known: JOBKIT_STORAGE, JOBKIT_DURABILITY, "
             "JOBKIT_DEFAULTS__<KEY>, JOBKIT_LOGGING__<KEY>, JOBKIT_WORKER__<KEY>, "
             "JOBKIT_DASHBOARD__<KEY>, JOBKIT_RETENTION__<STATUS>, "
             "JOBKIT_JOBS__<NAME>__<KEY>)")

EnvValue = tuple[Any, str]  # a checked value and the variable that set it


@attrs.frozen
class Environment:
    """The ``JOBKIT_*`` settings of one environment, checked, and the problems found."""

    #: The top-level keys (storage, durability) and those of logging, worker, dashboard and
    #: retention.
    sections: dict[KeyPath, EnvValue] = attrs.Factory(dict)
    #: ``JOBKIT_DEFAULTS__<KEY>``, by key.
    defaults: dict[str, EnvValue] = attrs.Factory(dict)
    #: ``JOBKIT_JOBS__<NAME>__<KEY>``, by upper-cased job name, then key.
    jobs: dict[str, dict[str, EnvValue]] = attrs.Factory(dict)
    #: One message for each variable that is no setting or holds a bad value.
    errors: list[str] = attrs.Factory(list)

    def overlay(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of the file's data with the environment's top-level and section values."""
        merged = dict(data)
        for path, (value, _) in self.sections.items():
            if len(path) == 1:
                merged[path[0]] = value
                continue
            section = merged.get(path[0]) or {}
            if isinstance(section, dict):  # otherwise the file's error is reported
                merged[path[0]] = {**section, path[1]: value}
        return merged


def _env_rule(parts: list[str], top: Mapping[str, Check]) -> Check | None:
    """The rule of the setting that ``JOBKIT_<PARTS>`` names, or None."""
    if len(parts) >= 3 and parts[0] == "jobs" and all(parts[1:-1]):
        return JOB_RULES.get(parts[-1])
    if len(parts) == 1:
        return top.get(parts[0])
    if len(parts) == 2 and parts[0] in _SECTIONS:
        return rules_of(_SECTIONS[parts[0]]).get(parts[1])
    return None


def read_environ(environ: Mapping[str, str], top: Mapping[str, Check]) -> Environment:
    """The ``JOBKIT_*`` settings of ``environ``; ``top`` holds the rules of the top-level keys."""
    found = Environment()
    for var in sorted(environ):
        if not var.startswith("JOBKIT_") or var in _NOT_SETTINGS:
            continue
        parts = var[len("JOBKIT_"):].lower().split("__")
        rule = _env_rule(parts, top)
        if rule is None:
            found.errors.append(f"environment {var}: {_ENV_HELP}")
            continue
        from jobkit.config.yamlfile import env_value  # PyYAML: only for a JOBKIT_ variable

        try:
            value = (env_value(rule, environ[var]), var)
        except Invalid as exc:
            found.errors.append(f"environment {var}: {exc.message}")
            continue
        if parts[0] == "defaults":
            found.defaults[parts[1]] = value
        elif parts[0] == "jobs":
            found.jobs.setdefault("__".join(parts[1:-1]).upper(), {})[parts[-1]] = value
        else:
            found.sections[tuple(parts)] = value
    return found
