"""The registries plugins fill through hooks: URL scheme -> storage class, name -> notifier class.

Kept apart from the plugin manager (:mod:`jobkit.plugins`) and the hook specifications that
name them (:mod:`jobkit.hookspecs`), so each of the three imports only what it uses. A plugin's
hooks receive a :class:`StorageRegistry` or a :class:`NotifierRegistry` and call ``add``.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from jobkit.exceptions import ConfigError
from jobkit.imports import import_path_of, import_string

if TYPE_CHECKING:
    from jobkit.notify import Notifier  # noqa: F401 - named in a string below
    from jobkit.storage.base import Storage

T = TypeVar("T")


class ClassRegistry(Generic[T]):
    """A name -> class mapping that refuses two classes under one name."""

    kind = "class"

    def __init__(self) -> None:
        self._classes: dict[str, type[T]] = {}
        #: name -> ``module:Class`` of a built-in class, imported when it is looked up.
        self._lazy: dict[str, str] = {}

    def add(self, name: str, cls: type[T]) -> None:
        """Register ``cls`` under ``name``."""
        self._refuse_another(name, import_path_of(cls), cls)
        self._lazy.pop(name, None)
        self._classes[name] = cls

    def add_lazy(self, name: str, path: str) -> None:
        """Internal: register the class ``path`` (``module:Class``) names, imported on lookup.

        For jobkit's built-in classes, so that building an app does not import every backend
        (a plugin calls :meth:`add`). Two names for one class are one class, as with ``add``.
        """
        self._refuse_another(name, path, None)
        if name not in self._classes:
            self._lazy[name] = path

    def _refuse_another(self, name: str, path: str, cls: type[T] | None) -> None:
        """``ConfigError`` when ``name`` holds a class other than ``cls`` (``path``)."""
        existing = self._classes.get(name)
        if existing is not None:
            if existing is cls or (cls is None and import_path_of(existing) == path):
                return
            held = import_path_of(existing)
        else:
            held = self._lazy.get(name, path)
            if held == path:
                return
        raise ConfigError(
            f"{self.kind} {name!r} is registered twice: by {held.replace(':', '.')} "
            f"and by {path.replace(':', '.')}"
        )

    def get(self, name: str) -> type[T]:
        """The class registered under ``name``; ``KeyError`` names the known ones."""
        try:
            return self._classes[name]
        except KeyError:
            if name not in self._lazy:
                known = ", ".join(self.names()) or "none"
                raise KeyError(f"no {self.kind} {name!r} (known: {known})") from None
        cls: type[T] = import_string(self._lazy[name])
        self._classes[name] = cls
        return cls

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted({*self._classes, *self._lazy})


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
