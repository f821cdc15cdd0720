"""When the next attempt of a failed job may start."""

from __future__ import annotations

import random

from jobkit.limits import MAX_DELAY
from jobkit.records import RetryPolicy

#: Doublings past this many cannot matter: 2 ** 64 times any delay is over ``MAX_DELAY``
#: (and a larger power of two overflows a float).
_MAX_DOUBLINGS = 64


def retry_delay(policy: RetryPolicy, failures: int, *, rng: random.Random | None = None) -> float:
    """Seconds to wait before the next attempt after the ``failures``-th failure (1-based).

    ``fixed`` waits ``retry_delay`` every time; ``exponential`` doubles it after each failure,
    capped by ``max_delay``. ``jitter`` adds up to that fraction of the delay at random, so
    jobs that failed together do not all come back at once. Never more than ``MAX_DELAY``
    (ten years), whatever the policy and the count of failures.
    """
    delay = policy.retry_delay
    if policy.backoff == "exponential" and delay:
        delay = policy.retry_delay * 2.0 ** min(max(0, failures - 1), _MAX_DOUBLINGS)
    if policy.max_delay is not None:
        delay = min(delay, policy.max_delay)
    delay = min(delay, MAX_DELAY)
    if policy.jitter:
        delay += (rng or random).uniform(0.0, policy.jitter * delay)
    return min(delay, MAX_DELAY)
