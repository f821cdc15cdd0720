"""Test helpers for jobkit users and backend authors.

:class:`StorageConformance` is the suite every ``Storage`` backend passes (subclass it in your
backend's test module); :class:`FakeClock` moves a store's time without sleeping.
"""

from __future__ import annotations

from jobkit.testing.conformance import FakeClock, StorageConformance

__all__ = ["FakeClock", "StorageConformance"]
