"""Internal: importing ``module:Qualified.name`` strings, with errors that say what failed."""

from __future__ import annotations

import importlib
from typing import Any


def import_string(target: str) -> Any:
    """Import ``"package.module:Class"`` (or ``"package.module.Class"``) and return the object.

    Raises ``ImportError`` with the target in its message.
    """
    module_name, sep, qualname = target.partition(":")
    if not sep:
        module_name, _, qualname = target.rpartition(".")
    if not module_name or not qualname:
        raise ImportError(f"{target!r} is not of the form 'package.module:Class'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import module {module_name!r} for {target!r}: {exc}") from exc
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportError(f"module {module_name!r} has no attribute {qualname!r}") from None
    return obj


def import_path_of(obj: Any) -> str:
    """The ``module:qualname`` string that imports ``obj`` back."""
    return f"{obj.__module__}:{obj.__qualname__}"
