"""Flow control: which queues a claim may take jobs from, and what each queue holds.

A job waits in one named queue (``queue:`` of its job in ``jobs.yaml``, or the call's
``queue=``; ``default`` otherwise). A worker takes jobs from the queues it is given
(``jobkit worker --queues mail,default``; all of them by default), and no worker takes a job
from a paused queue. The pause is kept in the store, so it reaches every worker on every
machine at its next claim. The stores that do this have the ``flow`` capability
(:class:`jobkit.storage.capabilities.ControlsFlow`); see docs/queues.md.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import datetime

import attrs

from jobkit.records import DEFAULT_QUEUE, WAITING_STATUSES, JobRecord

__all__ = ["DEFAULT_QUEUE", "QUEUE_NAME", "Flow", "QueueState", "check_queue_name", "why_waiting"]

#: What a queue name may be: a letter or digit, then letters, digits, ``_``, ``-`` and ``.``,
#: at most 64 characters.
QUEUE_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_QUEUE_NAME = re.compile(QUEUE_NAME)


def check_queue_name(name: object, what: str = "queue") -> str:
    """``name`` if it is a queue name; ``ValueError`` saying what a queue name is otherwise."""
    if isinstance(name, str) and _QUEUE_NAME.fullmatch(name):
        return name
    raise ValueError(
        f"{what}: expected a queue name (a letter or digit, then letters, digits, '_', '-' or "
        f"'.', at most 64 characters), got {name!r}"
    )


def _queues(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise TypeError(f"queues must be a list of queue names or None, got {value!r}")
    names = tuple(check_queue_name(name, "queues") for name in value)
    if not names:
        raise ValueError("queues: give at least one queue, or None for every queue")
    return tuple(dict.fromkeys(names))  # in order, once each


@attrs.frozen
class Flow:
    """What one claim may take: the worker's queues (``None``: every queue).

    Paused queues are never claimed from, whatever the flow says.
    """

    queues: tuple[str, ...] | None = attrs.field(default=None, converter=_queues)

    @property
    def restricted(self) -> bool:
        """Whether this flow narrows what a claim may take (a store needs ``flow`` for it)."""
        return self.queues is not None

    def takes(self, queue: str) -> bool:
        """Whether a job of ``queue`` may be claimed under this flow (pauses aside)."""
        return self.queues is None or queue in self.queues


#: Every queue, nothing narrowed: what a worker started without ``--queues`` claims with.
EVERY_QUEUE = Flow()


@attrs.frozen
class QueueState:
    """One queue as the store knows it: paused or not, and how many of its jobs are where."""

    name: str
    paused: bool = False
    #: Jobs waiting (pending or retrying), due or not.
    waiting: int = 0
    #: Jobs running now.
    running: int = 0
    #: Attempts that ended (succeeded or failed) in the last 60 seconds.
    done_last_minute: int = 0


def why_waiting(record: JobRecord, now: datetime, paused: Collection[str]) -> str | None:
    """Why a pending or retrying job has not started (``None`` for a job in another status).

    ``paused`` are the paused queues; the reasons, first that holds: ``queue NAME is paused``,
    ``not due until TIME`` (its delay or retry), ``due: waiting for a free worker``.
    """
    if record.status not in WAITING_STATUSES:
        return None
    if record.queue in paused:
        return f"queue {record.queue} is paused"
    if record.available_at > now:
        return f"not due until {record.available_at:%Y-%m-%d %H:%M:%S} UTC"
    return f"due: waiting for a free worker of queue {record.queue}"
