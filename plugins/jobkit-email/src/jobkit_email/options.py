"""The transport settings of the ``Email`` job: its ``options:`` in ``jobs.yaml``, checked."""

from __future__ import annotations

from typing import Any, Literal

import attrs

from jobkit.limits import NETWORK_TIMEOUT, within
from jobkit.options import structure_options


def _port(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 1 <= value <= 65535:
        raise ValueError(f"port must be from 1 to 65535, got {value!r}")


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
    timeout: float = attrs.field(default=10.0, validator=within(NETWORK_TIMEOUT))
    transport: Literal["smtp", "console"] = "smtp"


def parse_options(options: Any, *, where: str = "jobs.Email.options") -> EmailOptions:
    """Check ``options`` and build ``EmailOptions`` (an instance passes through); ``ConfigError``
    names every bad key. jobkit does this itself for the job's ``options:`` (``Options``)."""
    return structure_options(EmailOptions, options, where)
