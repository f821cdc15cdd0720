"""Internal: ordered delivery of job events on a background thread, in batches.

The thread that changed a job only appends its event to a deque: no lock, no notify, so it does
not trade the GIL with the delivery thread for every event. The delivery thread is woken (one
``Event.set``) only when it sleeps; it then waits :data:`LINGER` seconds for more events to
come, and delivers all it finds, in order. A flush does not wait for the linger; what is
queued is flushed (boundedly) when the interpreter exits.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable

from loguru import logger

from jobkit.records import JobEvent

#: How long the delivery thread, once woken, waits for more events before it delivers (seconds):
#: the most an event waits for its thread when nothing is flushed, and what lets a burst of
#: events cost one wake-up.
LINGER = 0.005


class _Flush:
    """A mark in the queue: set when every event queued before it was delivered."""

    def __init__(self) -> None:
        self.done = threading.Event()


#: The mark that ends the delivery thread.
_STOP = _Flush()


class DeliveryThread:
    """Hands events to ``deliver`` on a thread of its own, in batches, in the order emitted.

    ``deliver`` gets a list of events and must try each of them, in order, whatever one of them
    raises (what escapes it is logged, and the rest of that list is not delivered). A ``deliver``
    that is slow or hangs delays only the later events of this thread. The thread starts on
    first use (again in a forked child), and is flushed when the interpreter exits.
    """

    def __init__(self, name: str, deliver: Callable[[list[JobEvent]], None]) -> None:
        self.name = name
        self._deliver_batch = deliver
        self._queue: deque[JobEvent | _Flush] = deque()
        self._start_lock = threading.Lock()
        self._wake = threading.Event()  # set to wake the thread when it sleeps
        self._hurry = threading.Event()  # set to cut the linger short (a flush, a close)
        self._idle = False  # the thread sleeps (or is about to) until woken
        self._in_hand = 0  # how many events the deliverer was given and has not returned
        self._thread: threading.Thread | None = None
        _ALL.add(self)

    def emit(self, event: JobEvent) -> None:
        """Queue ``event`` for delivery."""
        if self._thread is None:  # first use, or a forked child (see _forget_threads)
            self._start()
        self._queue.append(event)
        if self._idle:  # read after the append: see _run for why no event is left asleep
            self._idle = False
            self._wake.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return  # another thread started it meanwhile
            self._queue = deque()  # a forked child does not deliver its parent's events
            self._wake, self._hurry, self._idle = threading.Event(), threading.Event(), False
            thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            thread.start()
            self._thread = thread
            atexit.register(self.close)  # a script that never closes its app loses nothing

    def _run(self) -> None:
        queue, wake, hurry = self._queue, self._wake, self._hurry
        while True:
            # Say "asleep" first, then look: an emit either appended before the look (and is
            # seen now) or reads _idle after it (and wakes the thread).
            self._idle = True
            if not queue:
                wake.wait()
            wake.clear()
            self._idle = False
            hurry.wait(LINGER)
            hurry.clear()  # a flush that comes after this finds its mark delivered promptly
            while queue:
                events: list[JobEvent] = []
                mark = None
                while queue:  # the events up to the next mark, in order
                    item = queue.popleft()
                    if isinstance(item, _Flush):
                        mark = item
                        break
                    events.append(item)
                if events:
                    self._deliver(events)
                if mark is _STOP:
                    return
                if mark is not None:
                    mark.done.set()

    def _deliver(self, events: list[JobEvent]) -> None:
        self._in_hand = len(events)
        try:
            self._deliver_batch(events)
        except BaseException:  # the deliverer's own protection failed: log, go on
            logger.opt(exception=True).error("{name}: delivering events failed", name=self.name)
        finally:
            self._in_hand = 0

    def _mark(self, item: _Flush) -> None:
        """Queue ``item`` and have the thread reach it without lingering."""
        self._queue.append(item)
        self._hurry.set()
        self._idle = False
        self._wake.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event emitted so far was delivered; ``False`` on timeout."""
        if self._thread is None:
            return True  # nothing was emitted in this process
        mark = _Flush()
        self._mark(mark)
        return mark.done.wait(max(0.0, timeout))

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (waiting at most ``timeout``), then stop the thread."""
        if self._thread is None:
            return
        if not self.flush(timeout):
            logger.warning(
                "{name}: still busy after {t:g} s; up to {n} event(s) not delivered",
                name=self.name,
                t=timeout,
                n=self.undelivered(),
            )
        self._mark(_STOP)
        self._thread = None

    def undelivered(self) -> int:
        """How many events wait, at most (a snapshot).

        Those queued and those in the deliverer's hands, some of which it may have delivered.
        """
        queued = sum(not isinstance(item, _Flush) for item in list(self._queue))
        return queued + self._in_hand


#: Every delivery thread, so that a forked child forgets the threads of its parent.
_ALL: weakref.WeakSet[DeliveryThread] = weakref.WeakSet()


def _forget_threads() -> None:
    """Forget the parent's threads, in a forked child.

    No delivery thread runs in the child; each starts anew on its first event, with a queue of
    its own, without its parent's events.
    """
    for delivery in list(_ALL):
        delivery._thread = None
        delivery._start_lock = threading.Lock()  # another thread of the parent may have held it


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_threads)


def close_all(threads: list[DeliveryThread], timeout: float, *, flush_only: bool = False) -> bool:
    """Flush (and close) several delivery threads within one shared ``timeout``."""
    deadline = time.monotonic() + timeout
    delivered = True
    for thread in threads:
        remaining = deadline - time.monotonic()
        if flush_only:
            delivered = thread.flush(remaining) and delivered
        else:
            thread.close(remaining)
    return delivered
