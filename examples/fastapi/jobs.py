"""The FastAPI example's job: a report built by an ``async def`` method."""

from __future__ import annotations

import asyncio
from typing import Any

from jobkit import Job


class ReportJob(Job):
    """Builds a report; ``seconds`` stands for the I/O a real one awaits (queries, HTTP calls)."""

    methods = ("build",)

    async def build(self, title: str, seconds: float = 0.0) -> dict[str, Any]:
        self.progress(0.0, "gathering")
        await asyncio.sleep(seconds)  # an async database driver's or HTTP client's await
        self.progress(1.0, "built")
        self.log.info("report {title} built", title=title)
        return {"title": title, "words": len(title.split())}
