"""Test helpers for jobkit users and backend authors.

:class:`StorageConformance` is the suite every ``Storage`` backend passes (subclass it in your
backend's test module; a store that lives in one process, like ``memory://``, subclasses
:class:`InProcessStorageConformance`); :class:`FakeClock` moves a store's time without sleeping.
"""

from __future__ import annotations

from jobkit.testing.conformance import FakeClock, InProcessStorageConformance, StorageConformance

__all__ = ["FakeClock", "InProcessStorageConformance", "StorageConformance"]
