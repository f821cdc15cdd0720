"""The body of one claim-racing process (tests/reliability/test_volume.py, scenario 2).

It lives here, not in the test module, so that a *spawned* process can import it: tests/ is on
every process's path, and importing it pulls in nothing but jobkit.
"""

from __future__ import annotations

import traceback
from typing import Any

from jobkit import JobKit
from jobkit.config import Config


def claim_racer(
    url: str, number: int, rounds: int, lease: float, timeout: float, barrier: Any, results: Any
) -> None:
    """Open the store at ``url``; each round wait at ``barrier``, then claim as ``racer-<number>``
    until nothing is due, and put ``(round, number, [claimed ids])`` on ``results``. On an error,
    put ``(round, number, traceback text)`` and break the barrier so nobody waits for us."""
    round_number = -1
    try:
        with JobKit(Config.from_dict({"storage": url}), load_entrypoints=False) as app:
            storage = app.storage
            worker = f"racer-{number}"
            for round_number in range(rounds):
                barrier.wait(timeout=timeout)
                claimed: list[str] = []
                while (record := storage.claim(worker, lease)) is not None:
                    claimed.append(record.id)
                results.put((round_number, number, claimed))
    except BaseException:
        results.put((round_number, number, traceback.format_exc()))
        barrier.abort()
        raise
