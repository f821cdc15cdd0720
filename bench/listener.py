"""A plugin whose ``jobkit_job_event`` does nothing.

It measures what a listener costs the caller of ``run_background_job`` (issue 17); the bench
registers it through the API (``plugins=``).
"""

from __future__ import annotations

from typing import Any

from jobkit import hookimpl


class Listener:
    """Returns at once from every job event."""

    @hookimpl
    def jobkit_job_event(self, event: Any) -> None:
        """Do nothing."""
