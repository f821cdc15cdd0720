"""The settings of the ``Invoice`` job: its ``options:`` in ``jobs.yaml``, checked."""

from __future__ import annotations

from typing import Any

import attrs

from jobkit.options import structure_options

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


def parse_options(options: Any, *, where: str = "jobs.Invoice.options") -> InvoiceOptions:
    """Check ``options`` and build ``InvoiceOptions`` (an instance passes through); ``ConfigError``
    names every bad key. jobkit does this itself for the job's ``options:`` (``Options``)."""
    return structure_options(InvoiceOptions, options, where)
