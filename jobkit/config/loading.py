"""Internal: reading ``jobs.yaml`` and the environment into a :class:`~jobkit.config.Config`.

:func:`load_config` finds the file (``path``, ``JOBKIT_CONFIG`` or ``./jobs.yaml``), reads it
with line numbers, overlays the ``JOBKIT_*`` variables and takes the file's relative paths
from its folder. Import it from :mod:`jobkit.config`.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import attrs

from jobkit.config.environ import read_environ
from jobkit.config.model import Config, Provenance, build
from jobkit.config_yaml import KeyPath, rules_of
from jobkit.exceptions import ConfigError

_SQLITE_PREFIX = "sqlite:///"


def load_config(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> Config:
    """Load the configuration: the file, then the ``JOBKIT_*`` variables of ``environ``.

    ``path`` None means ``environ["JOBKIT_CONFIG"]`` if set, else ``./jobs.yaml`` if it exists,
    else the built-in defaults. ``environ`` defaults to ``os.environ``. Raises ``ConfigError``
    listing every problem of the file and the environment.

    The relative paths of a file (a ``sqlite:///`` store, ``logging.dir``, and their built-in
    defaults when it leaves them) are made absolute from the file's folder; those of the
    environment are kept, relative to the working directory.
    """
    env = os.environ if environ is None else environ
    file = _config_file(path, env)
    environment = read_environ(env, rules_of(Config))
    if file is None:
        return build({}, Provenance(), environment)
    from jobkit.config.yamlfile import read_yaml_file  # PyYAML: only to read a file

    document = read_yaml_file(file)
    data = {} if document.data is None else document.data
    config = build(data, Provenance(source=file, lines=document.lines), environment,
                   duplicates=document.duplicates)
    config = _paths_from(config, Path(file).absolute().parent, set(environment.sections))
    return attrs.evolve(config, path=file)


def _config_file(path: str | os.PathLike[str] | None, env: Mapping[str, str]) -> str | None:
    """The file :func:`load_config` reads, or None for the built-in defaults.

    The file :func:`load_config` reads: ``path``, else ``JOBKIT_CONFIG``, else an existing
    ``./jobs.yaml``; None for the built-in defaults."""
    if path is None and env.get("JOBKIT_CONFIG"):
        path = env["JOBKIT_CONFIG"]
    elif path is None and Path("jobs.yaml").is_file():
        path = "jobs.yaml"
    return None if path is None else os.fspath(path)


def raw_notifications(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """The ``notifications:`` entries of the config file, unchecked, each with where it is.

    The ``notifications:`` entries of the file :func:`load_config` reads, unchecked, each
    with where it is (``jobs.yaml:12: notifications[0]``): for the notifier plugins to check
    when the file has other problems, so that one ``ConfigError`` names them all. Empty when
    the file cannot be read."""
    file = _config_file(path, os.environ if environ is None else environ)
    if file is None:
        return []
    from jobkit.config.yamlfile import read_yaml_file  # PyYAML: only to read a file

    try:
        document = read_yaml_file(file)
    except ConfigError:
        return []
    data = document.data if isinstance(document.data, Mapping) else {}
    entries = data.get("notifications")
    if not isinstance(entries, list):
        return []
    provenance = Provenance(source=file, lines=document.lines)
    return [(f"{provenance.where(('notifications', index))}: notifications[{index}]", entry)
            for index, entry in enumerate(entries) if isinstance(entry, dict)]


def _paths_from(config: Config, folder: Path, from_env: Collection[KeyPath]) -> Config:
    """``config`` with the relative paths of its file taken from ``folder``.

    ``config`` with the relative paths of its file (or the built-in defaults it left) taken
    from ``folder``, as docker compose does; a path from the environment is left relative to
    the working directory, as one given on a command line is."""
    storage, log_dir = config.storage, config.logging.dir
    if ("storage",) not in from_env:
        storage = _sqlite_url_from(folder, storage)
    if ("logging", "dir") not in from_env:
        log_dir = _path_from(folder, log_dir)
    return attrs.evolve(config, storage=storage,
                        logging=attrs.evolve(config.logging, dir=log_dir))


def _path_from(folder: Path, path: str) -> str:
    """``path`` if absolute, else ``folder / path`` (``..`` resolved, symlinks kept)."""
    return path if os.path.isabs(path) else os.path.normpath(folder / path)


def _sqlite_url_from(folder: Path, url: str) -> str:
    """A relative ``sqlite:///`` URL taken from ``folder``; any other URL as it is.

    A ``sqlite:///relative/path`` URL taken from ``folder``: ``sqlite:////folder/relative/
    path``; any other URL (absolute, ``memory://``, ``postgresql://...``, the in-memory and
    ``file:`` forms the SQLite store refuses) as it is."""
    if not url.startswith(_SQLITE_PREFIX):
        return url
    path = url[len(_SQLITE_PREFIX):]
    if path in ("", ":memory:") or path.startswith("file:") or os.path.isabs(path):
        return url
    return _SQLITE_PREFIX + Path(_path_from(folder, path)).as_posix()
