"""Internal: the jobs a store's writes changed in passing, kept per thread until taken.

A workflow's cascade changes jobs nobody named: the children a failed parent cancels, the
children a manual retry makes ``blocked`` again. The store's calls return the one record they
were asked about, so the store keeps the others here, per thread: :meth:`Cascades.add` inside
the transaction, :meth:`Cascades.committed` once it committed (:meth:`Cascades.discard` when it
did not), and the app takes them (:meth:`Cascades.take`, through
:meth:`~jobkit.storage.capabilities.RunsWorkflows.take_cascaded`) right after the call, to
announce them after the event of the job whose change caused them.
"""

from __future__ import annotations

import collections
import threading

from jobkit.records import JobRecord

#: The most records a thread keeps untaken (a store used without an app, which never takes
#: them, must not grow without end); past it the oldest go.
MAX_UNTAKEN = 100_000


class _PerThread(threading.local):
    """One thread's records: of the transaction running (``pending``), of committed ones."""

    pending: list[JobRecord] | None = None  # class defaults: a read finds them, never raises
    done: collections.deque[JobRecord] | None = None


class Cascades:
    """Per thread: the records of the transaction running now, and of those committed."""

    def __init__(self) -> None:
        self._local = _PerThread()

    def add(self, record: JobRecord) -> None:
        """Keep ``record``, changed in passing by the transaction running in this thread."""
        local = self._local
        if local.pending is None:
            local.pending = []
        local.pending.append(record)

    def committed(self) -> None:
        """The transaction of this thread committed: what it changed can be taken."""
        local = self._local
        if local.pending:
            if local.done is None:
                local.done = collections.deque(maxlen=MAX_UNTAKEN)
            local.done.extend(local.pending)
            local.pending = None

    def discard(self) -> None:
        """The transaction of this thread rolled back: nothing it changed happened."""
        self._local.pending = None

    def take(self) -> list[JobRecord]:
        """The records this thread's committed transactions changed, in order, since the last."""
        done = self._local.done
        if not done:
            return []
        taken = list(done)
        done.clear()
        return taken
