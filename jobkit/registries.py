"""The registries plugins fill through hooks: URL scheme -> storage class, name -> notifier class.

Kept apart from the plugin manager (:mod:`jobkit.plugins`) and the hook specifications that
name them (:mod:`jobkit.hookspecs`), so each of the three imports only what it uses. A plugin's
hooks receive a :class:`StorageRegistry` or a :class:`NotifierRegistry` and call ``add``.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from jobkit.exceptions import ConfigError

if TYPE_CHECKING:
    from jobkit.notify import Notifier  # noqa: F401 - named in a string below
    from jobkit.storage.base import Storage

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
