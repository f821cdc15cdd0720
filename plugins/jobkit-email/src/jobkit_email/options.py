"""The transport settings of the ``Email`` job: its ``options:`` in ``jobs.yaml``, checked."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import attrs
import cattrs

from jobkit import ConfigError


def _port(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 1 <= value <= 65535:
        raise ValueError(f"port must be from 1 to 65535, got {value!r}")


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be more than 0, got {value!r}")


def _not_empty(instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value.strip():
        raise ValueError(f"{attribute.name} must not be empty")


def _tls(instance: Any, attribute: attrs.Attribute[Any], value: bool) -> None:
    if value and instance.starttls:
        raise ValueError("ssl and starttls cannot both be true")


@attrs.frozen
class EmailOptions:
    """``jobs: Email: options:`` — where and how the job sends its messages."""

    host: str = attrs.field(default="127.0.0.1", validator=_not_empty)
    port: int = attrs.field(default=25, validator=_port)
    starttls: bool = False
    ssl: bool = attrs.field(default=False, validator=_tls)
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    sender: str = attrs.field(default="jobkit@localhost", validator=_not_empty)
    timeout: float = attrs.field(default=10.0, validator=_positive)
    transport: Literal["smtp", "console"] = "smtp"


def _strict(kind: type[Any], accepted: tuple[type[Any], ...]) -> Callable[[Any, Any], Any]:
    """A structure hook that refuses lossy coercions (``"25"`` is not an int, ``True`` neither)."""

    def structure(value: Any, _: Any) -> Any:
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {kind.__name__}, got a bool")
        if not isinstance(value, accepted):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__} {value!r}")
        return kind(value)

    return structure


def _converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(int, _strict(int, (int,)))
    converter.register_structure_hook(float, _strict(float, (int, float)))
    converter.register_structure_hook(str, _strict(str, (str,)))
    converter.register_structure_hook(bool, _strict(bool, (bool,)))
    return converter


_CONVERTER = _converter()


_FIELDS = frozenset(field.name for field in attrs.fields(EmailOptions))


def _describe(exc: BaseException, kind: type[Any] | None) -> str:
    """The message of one error: our own wording where we have it, cattrs' otherwise."""
    if isinstance(exc, KeyError):
        return "required key missing"
    if "not in literal" in str(exc):
        return f"must be 'smtp' or 'console', got {str(exc).split(' not in literal')[0]!r}"
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


def parse_options(options: Mapping[str, Any], *, where: str = "jobs.Email.options") -> EmailOptions:
    """Check ``options`` and build ``EmailOptions``; ``ConfigError`` names every bad key."""
    if not isinstance(options, Mapping):
        raise ConfigError(errors=[f"{where}: must be a mapping, got {type(options).__name__}"])
    try:
        return _CONVERTER.structure(dict(options), EmailOptions)
    except cattrs.BaseValidationError as exc:
        errors = cattrs.transform_error(exc, path=where, format_exception=_describe)
        raise ConfigError(errors=[_key_first(error, where) for error in errors]) from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(errors=[f"{where}: {exc}"]) from exc
