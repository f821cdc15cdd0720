"""Internal: jobkit's logger, which imports loguru only when something logs.

``from jobkit.lazylog import logger`` gives a stand-in for loguru's ``logger``: the first
attribute looked up on it (``logger.error``, ``logger.opt``...) imports loguru and hands back
loguru's own attribute, so ``import jobkit`` does not pay loguru's import (about 50 ms, asyncio
with it). Calls go straight to loguru's methods: the stand-in is not on the stack when loguru
looks for its caller, so a record's ``name`` is the jobkit module that logged.

jobkit's messages are off for an application until it turns them on, as loguru asks of a
library: ``logger.disable("jobkit")`` runs **the moment loguru is imported**, by whoever imports
it (this module, the application, another library), or at once by :func:`disable_jobkit` when
loguru was imported before jobkit. Not later, at jobkit's first message: an application that
imported loguru and called ``logger.enable("jobkit")`` before jobkit first logs would have its
choice undone. A :data:`sys.meta_path` finder watches for ``loguru``: it hands loguru's own
loader the import, then disables ``"jobkit"``, then takes itself out of the import system.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.abc import Loader
    from importlib.machinery import ModuleSpec

    from loguru import Logger

#: The root of the names whose records :func:`disable_jobkit` turns off.
PACKAGE = "jobkit"


class _Loguru:
    """A stand-in for loguru's ``logger``: attribute look-ups import loguru and go to its logger."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        from loguru import logger as loguru_logger  # the first time: the finder disables jobkit

        return getattr(loguru_logger, name)

    def __repr__(self) -> str:
        return "<jobkit's stand-in for loguru's logger>"


#: What jobkit's modules log with instead of ``from loguru import logger``.
logger = cast("Logger", _Loguru())


class _DisableAfterLoad:
    """Loads loguru with its own loader, then disables jobkit's messages (see the module).

    A loader as :mod:`importlib` calls one (not an ``importlib.abc`` class: that module costs
    about 4 ms to import).
    """

    def __init__(self, loader: Loader, finder: _LoguruWatch) -> None:
        self._loader = loader
        self._finder = finder

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        """What loguru's own loader creates."""
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        """Run loguru's package, put its own loader back, disable ``"jobkit"``, stop watching."""
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        module.__loader__ = self._loader
        self._loader.exec_module(module)
        module.logger.disable(PACKAGE)
        self._finder.stop()


class _LoguruWatch:
    """Finds ``loguru`` only: the other finders' spec, loaded by :class:`_DisableAfterLoad`."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        """loguru's spec from the finders after this one, its loader wrapped; else None."""
        if fullname != "loguru" or self not in sys.meta_path:
            return None
        for finder in sys.meta_path[sys.meta_path.index(self) + 1:]:
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = cast("Loader", _DisableAfterLoad(spec.loader, self))
                return spec
        return None

    def stop(self) -> None:
        """Leave the import system (loguru is imported)."""
        if self in sys.meta_path:
            sys.meta_path.remove(self)


def disable_jobkit() -> None:
    """Turn jobkit's messages off now if loguru is imported, else the moment it is.

    Called once, by ``import jobkit``.
    """
    loguru = sys.modules.get("loguru")
    if loguru is not None:
        loguru.logger.disable(PACKAGE)
    elif not any(isinstance(finder, _LoguruWatch) for finder in sys.meta_path):
        sys.meta_path.insert(0, _LoguruWatch())
