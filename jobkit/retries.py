"""When the next attempt of a failed job may start."""

from __future__ import annotations

import random

from jobkit.records import RetryPolicy


def retry_delay(policy: RetryPolicy, failures: int, *, rng: random.Random | None = None) -> float:
    """Seconds to wait before the next attempt after the ``failures``-th failure (1-based).

    ``fixed`` waits ``retry_delay`` every time; ``exponential`` doubles it after each failure,
    capped by ``max_delay``. ``jitter`` adds up to that fraction of the delay at random, so
    jobs that failed together do not all come back at once.
    """
    delay = policy.retry_delay
    if policy.backoff == "exponential":
        delay = policy.retry_delay * 2.0 ** max(0, failures - 1)
    if policy.max_delay is not None:
        delay = min(delay, policy.max_delay)
    if policy.jitter:
        delay += (rng or random).uniform(0.0, policy.jitter * delay)
    return delay
