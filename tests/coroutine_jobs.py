"""``async def`` job methods the tests run (importable by spawned worker processes)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sample_jobs import append

from jobkit import Job


class Waiter(Job):
    """Coroutine jobs: they await, fail, block the loop or will not stop, on request."""

    methods = ("nap", "fail", "hang", "stubborn", "block", "plain")

    async def nap(self, seconds: float = 0.5, tag: str = "") -> dict[str, Any]:
        """Await ``seconds`` of sleep, log a line and report progress; return when it ran."""
        started = time.time()
        self.log.info("napping {seconds}", seconds=seconds)
        await asyncio.sleep(seconds)
        self.progress(1.0, "rested")
        return {"tag": tag, "started": started, "ended": time.time()}

    async def fail(self, ledger: str) -> None:
        """Record the attempt in the ledger, then fail."""
        append(ledger, tag="async-fail", attempt=self.context.attempt)
        await asyncio.sleep(0)
        raise RuntimeError(f"planned async failure {self.context.attempt}")

    async def hang(self, ledger: str) -> None:
        """Await for ever; record in the ledger that the cancel reached it."""
        append(ledger, tag="hang-start")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            append(ledger, tag="hang-cancelled")
            raise

    async def stubborn(self, ledger: str) -> None:
        """Swallow every cancel and await on, for ever."""
        append(ledger, tag="stubborn-start")
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                append(ledger, tag="stubborn-swallowed")

    async def block(self, seconds: float = 1.0) -> str:
        """Block the event loop with a plain sleep (the mistake the worker reports)."""
        time.sleep(seconds)
        return "blocked"

    def plain(self, tag: str = "") -> str:
        """A sync method beside the coroutines."""
        time.sleep(0.01)
        return f"sync {tag}"
