"""Test helpers for jobkit users and backend authors.

:class:`StorageConformance` is the suite every ``Storage`` backend passes (subclass it in your
backend's test module; a store that lives in one process, like ``memory://``, subclasses
:class:`InProcessStorageConformance`); :class:`FakeClock` moves a store's time without sleeping.

The suite's module is registered for pytest's assertion rewriting before it is imported, so a
failed check shows the values it compared (pytest rewrites only test modules and modules so
registered). Outside pytest the registration does nothing.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("jobkit.testing.conformance")

from jobkit.testing.conformance import (  # noqa: E402 - after the registration, on purpose
    FakeClock,
    InProcessStorageConformance,
    StorageConformance,
)

__all__ = ["FakeClock", "InProcessStorageConformance", "StorageConformance"]
