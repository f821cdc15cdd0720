"""The settings of the ``Invoice`` job: its ``options:`` in ``jobs.yaml``, checked."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
import cattrs

from jobkit import ConfigError

#: The longest simulated work accepted, in seconds (it is a demo, not a sleep service).
MAX_WORK_SECONDS = 3600.0


def _rate(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"failure_rate must be from 0 to 1, got {value!r}")


def _seconds(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= MAX_WORK_SECONDS:
        raise ValueError(f"work_seconds must be from 0 to {MAX_WORK_SECONDS:g}, got {value!r}")


@attrs.frozen
class InvoiceOptions:
    """``jobs: Invoice: options:`` — how often the job fails and how long it works."""

    #: Probability (0..1) that one attempt fails; drawn from a seeded RNG, so reproducible.
    failure_rate: float = attrs.field(default=0.0, validator=_rate)
    #: Mixed into the RNG seed with the invoice id and the attempt number.
    seed: int = 0
    #: Simulated work per attempt, in seconds, reported as progress.
    work_seconds: float = attrs.field(default=0.0, validator=_seconds)


def _strict(kind: type[Any], accepted: tuple[type[Any], ...]) -> Callable[[Any, Any], Any]:
    """A structure hook refusing lossy coercions (``"0.5"`` is not a float, nor ``True``)."""

    def structure(value: Any, _: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, accepted):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__} {value!r}")
        return kind(value)

    return structure


_CONVERTER = cattrs.Converter(forbid_extra_keys=True)
_CONVERTER.register_structure_hook(int, _strict(int, (int,)))
_CONVERTER.register_structure_hook(float, _strict(float, (int, float)))
_FIELDS = frozenset(field.name for field in attrs.fields(InvoiceOptions))


def _describe(exc: BaseException, kind: type[Any] | None) -> str:
    """The message of one error: our own wording where we have it, cattrs' otherwise."""
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        known = ", ".join(sorted(_FIELDS))
        return f"unknown key(s) {', '.join(sorted(exc.extra_fields))} (known: {known})"
    if isinstance(exc, (TypeError, ValueError)) and str(exc):
        return str(exc)
    return cattrs.v.format_exception(exc, kind)


def _key_first(error: str, where: str) -> str:
    """``"msg @ path"`` as ``"path.key: msg"``; a validator's message starts with its key."""
    message, _, path = error.rpartition(" @ ")
    if not message:
        return error
    key = message.split(" ", 1)[0]
    if path == where and key in _FIELDS:
        path = f"{where}.{key}"
    return f"{path}: {message}"


def parse_options(
    options: Mapping[str, Any], *, where: str = "jobs.Invoice.options"
) -> InvoiceOptions:
    """Check ``options`` and build ``InvoiceOptions``; ``ConfigError`` names every bad key."""
    if not isinstance(options, Mapping):
        raise ConfigError(errors=[f"{where}: must be a mapping, got {type(options).__name__}"])
    try:
        return _CONVERTER.structure(dict(options), InvoiceOptions)
    except cattrs.BaseValidationError as exc:
        errors = cattrs.transform_error(exc, path=where, format_exception=_describe)
        raise ConfigError(errors=[_key_first(error, where) for error in errors]) from exc
