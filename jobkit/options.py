"""Structuring the free-form options of jobs and notifiers into their attrs classes.

A job's ``options:`` in ``jobs.yaml`` and a notifier's entry under ``notifications:`` are checked
by the same strict converter as params (``"25"`` is not an int, unknown keys are refused), and
every problem is reported as ``<where>.<key>: <what is wrong>``. Plugin authors call
:func:`structure_options` to check options of their own the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache, partial
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from jobkit.exceptions import ConfigError
from jobkit.factory import make_converter

if TYPE_CHECKING:
    import cattrs

T = TypeVar("T")


@cache
def _converter() -> cattrs.Converter:
    return make_converter()


def _describe(fields: frozenset[str], exc: BaseException, kind: type[Any] | None) -> str:
    """The message of one error: plain wording where we have it, cattrs' otherwise."""
    import cattrs

    if isinstance(exc, KeyError):
        return "required key missing"
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        known = ", ".join(sorted(fields))
        return f"unknown key(s) {', '.join(sorted(exc.extra_fields))} (known: {known})"
    if isinstance(exc, (TypeError, ValueError)) and str(exc):
        return str(exc)
    return cattrs.v.format_exception(exc, kind)


def _key_first(fields: frozenset[str], where: str, error: str) -> str:
    """``"msg @ path"`` as ``"path.key: msg"`` (a validator's message starts with its key)."""
    message, _, path = error.rpartition(" @ ")
    if not message:
        return error
    key = message.split(" ", 1)[0]
    if path == where and key in fields:
        path = f"{where}.{key}"
    return f"{path}: {message}"


def structure_options(cls: type[T], options: Any, where: str) -> T:
    """``options`` (a mapping) as an instance of the attrs class ``cls``.

    An instance of ``cls`` is returned as it is. Raises ``ConfigError`` naming every bad key,
    each prefixed with ``where`` (e.g. ``jobs.yaml:12: jobs.Email.options``).
    """
    if isinstance(options, cls):
        return options
    if not isinstance(options, Mapping):
        raise ConfigError(errors=[f"{where}: must be a mapping, got {type(options).__name__}"])
    fields = frozenset(field.name for field in attrs.fields(cls))  # type: ignore[arg-type]
    import cattrs  # here: import jobkit does not need it

    try:
        return _converter().structure(dict(options), cls)
    except cattrs.BaseValidationError as exc:
        messages = cattrs.transform_error(
            exc, path=where, format_exception=partial(_describe, fields)
        )
        raise ConfigError(errors=[_key_first(fields, where, m) for m in messages]) from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(errors=[f"{where}: {exc}"]) from exc
