"""Internal: the ``flow`` capability of the SQL backends: pausing queues and reading their state.

:class:`SQLFlow` writes :class:`~jobkit.storage.capabilities.ControlsFlow`'s pause, resume and
queue states once for SQLite and PostgreSQL, each a named query of the backend's ``.sql``
file; the claims that honour the flow are :class:`~jobkit.storage.sql.SQLStorage`'s.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from jobkit.flow import Flow, QueueState, check_queue_name
from jobkit.storage.capabilities import ControlsFlow
from jobkit.storage.sql_keeps import NamedQueries

#: The window of :attr:`QueueState.done_last_minute`, in seconds.
RECENT = 60.0


class SQLFlow(NamedQueries, ControlsFlow):
    """Pause, resume and queue states as named queries (``set_queue_paused``, ``queue_states``).

    A backend supplies how a named query runs (:meth:`_named`), how a time is bound
    (:meth:`_time`) and how a flow's queues are bound (:meth:`_bind_queues`).
    """

    def _bind_queues(self, flow: Flow) -> Any:
        """``flow``'s queues as the claim query binds them (``None``: every queue)."""
        return None if flow.queues is None else list(flow.queues)

    def _set_paused(self, queue: str, paused: bool) -> bool:
        check_queue_name(queue)
        verb = "pause" if paused else "resume"
        rows = self._named(f"{verb} queue {queue!r}", "set_queue_paused",
                           {"name": queue, "paused": paused, "now": self._time(self.now())})
        return bool(rows)

    def pause_queue(self, queue: str) -> bool:
        """Pause ``queue``: no worker claims from it; whether it was running before."""
        return self._set_paused(queue, True)

    def resume_queue(self, queue: str) -> bool:
        """Resume ``queue``; whether it was paused before."""
        return self._set_paused(queue, False)

    def paused_queues(self) -> set[str]:
        """The queues paused now."""
        return {row["name"] for row in self._named("read the paused queues", "paused_queues", {})}

    def queue_states(self) -> list[QueueState]:
        """Every queue that holds a waiting or running job or was ever paused, by name."""
        since = self._time(self.now() - timedelta(seconds=RECENT))
        rows = self._named("read the queues", "queue_states", {"since": since})
        return [
            QueueState(name=row["name"], paused=bool(row["paused"]), waiting=int(row["waiting"]),
                       running=int(row["running"]), done_last_minute=int(row["done"]))
            for row in rows
        ]
