"""Test helpers for jobkit users and backend authors.

:class:`CoreConformance` is the suite every ``Storage`` backend passes (subclass it in your
backend's test module, with :class:`ConcurrencyTests` for a store shared by processes), and each
optional capability has its class (:class:`SearchConformance`, :class:`WorkersConformance`...).
:class:`StorageConformance` is all of them (:class:`InProcessStorageConformance` without the
processes, for a store like ``memory://``); :class:`FakeClock` moves a store's time without
sleeping.

The suite's module is registered for pytest's assertion rewriting before it is imported, so a
failed check shows the values it compared (pytest rewrites only test modules and modules so
registered). Outside pytest the registration does nothing.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("jobkit.testing.conformance")

from jobkit.testing.conformance import (  # noqa: E402 - after the registration, on purpose
    BatchesConformance,
    ConcurrencyTests,
    CoreConformance,
    FakeClock,
    FlowConformance,
    InProcessStorageConformance,
    JobLogsConformance,
    LimitConformance,
    ProgressConformance,
    ScheduleConformance,
    SearchConformance,
    SessionsConformance,
    SpoiledRowConformance,
    StorageConformance,
    ThroughputConformance,
    UniqueConformance,
    WorkersConformance,
)

__all__ = [
    "BatchesConformance",
    "ConcurrencyTests",
    "CoreConformance",
    "FakeClock",
    "FlowConformance",
    "InProcessStorageConformance",
    "JobLogsConformance",
    "LimitConformance",
    "ProgressConformance",
    "ScheduleConformance",
    "SearchConformance",
    "SessionsConformance",
    "SpoiledRowConformance",
    "StorageConformance",
    "ThroughputConformance",
    "UniqueConformance",
    "WorkersConformance",
]
