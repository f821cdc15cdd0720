"""The body of one enqueue-racing process (tests/test_flow_limits.py, unique jobs).

It lives here, not in the test module, so that a *spawned* process can import it: tests/ is on
every process's path, and importing it pulls in nothing but jobkit.
"""

from __future__ import annotations

from typing import Any


def enqueue_same(config: str, times: int, barrier: Any) -> list[tuple[str, bool]]:
    """Enqueue the same unique job ``times`` times, once every racer is ready.

    The app is opened from ``config`` first; returns each call's ``(id, new)``."""
    from jobkit import JobKit

    with JobKit.from_config(config, load_entrypoints=False) as app:
        app.storage  # noqa: B018 - open (and migrate) the store before the race
        barrier.wait(timeout=60)
        return [attrs_tuple(app.enqueue("Limited", "work", {"seconds": 0, "customer_id": 7}))
                for _ in range(times)]


def attrs_tuple(enqueued: Any) -> tuple[str, bool]:
    """``Enqueued`` as a picklable tuple."""
    return str(enqueued.id), bool(enqueued.new)
