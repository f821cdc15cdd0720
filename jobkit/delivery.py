"""Internal: ordered delivery of job events on a background thread, in batches.

The thread that changed a job only appends its event to a deque: no lock, no notify, so it does
not trade the GIL with the delivery thread for every event. The delivery thread is woken (one
``Event.set``) only when it sleeps. Woken after :data:`QUIET` seconds without events, it
delivers at once; woken sooner (events keep coming), it first waits :data:`LINGER` seconds for
more, so that a burst costs one wake-up per batch. Either way it delivers all it finds, in
order. A flush does not wait for the linger; what is queued is flushed (boundedly) when the
interpreter exits.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable

from jobkit.lazylog import logger
from jobkit.records import JobEvent

#: How long the delivery thread, woken while events keep coming, waits for more before it
#: delivers (seconds): the most an event waits for its thread, and what lets a burst of events
#: cost one wake-up.
LINGER = 0.05

#: After this long without a batch (seconds), the delivery thread delivers the next event at once.
QUIET = 0.1


class _Flush:
    """A mark in the queue: set when every event queued before it was delivered."""

    def __init__(self) -> None:
        self.done = threading.Event()


#: The mark that ends the delivery thread.
_STOP = _Flush()


class _Run:
    """One run of a delivery thread: its queue, its signals and its loop.

    A thread that is stopped, or forgotten in a forked child, keeps its own run; the next
    event starts a new one, so an old thread that ends late never touches the new one's state.
    """

    def __init__(self, name: str, deliver: Callable[[list[JobEvent]], None]) -> None:
        self.name = name
        self.deliver = deliver
        self.queue: deque[JobEvent | _Flush] = deque()
        self.wake = threading.Event()  # set to wake the thread when it sleeps
        self.hurry = threading.Event()  # set to cut the linger short (a flush, a close)
        self.idle = False  # the thread sleeps (or is about to) until woken
        self.in_hand = 0  # how many events the deliverer was given and has not returned
        self.thread = threading.Thread(target=self.loop, name=name, daemon=True)

    def emit(self, event: JobEvent) -> None:
        """Queue ``event``; wake the thread if it sleeps."""
        self.queue.append(event)
        if self.idle:  # read after the append: see loop() for why no event is left asleep
            self.idle = False
            self.wake.set()

    def mark(self, item: _Flush) -> None:
        """Queue ``item`` and have the thread reach it without lingering."""
        self.queue.append(item)
        self.hurry.set()
        self.idle = False
        self.wake.set()

    def loop(self) -> None:
        """Deliver batches until the stop mark."""
        queue, wake, hurry = self.queue, self.wake, self.hurry
        last_batch = -QUIET
        while True:
            # Say "asleep" first, then look: an emit either appended before the look (and is
            # seen now) or reads ``idle`` after it (and wakes the thread).
            self.idle = True
            if not queue:
                wake.wait()
            wake.clear()
            self.idle = False
            if time.monotonic() - last_batch < QUIET:  # events keep coming: gather a batch
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
                    self.deliver_batch(events)
                if mark is _STOP:
                    return
                if mark is not None:
                    mark.done.set()
            last_batch = time.monotonic()

    def deliver_batch(self, events: list[JobEvent]) -> None:
        """Hand ``events`` to the deliverer; log what escapes it."""
        self.in_hand = len(events)
        try:
            self.deliver(events)
        except BaseException:  # the deliverer's own protection failed: log, go on
            logger.opt(exception=True).error("{name}: delivering events failed", name=self.name)
        finally:
            self.in_hand = 0

    def undelivered(self) -> int:
        """How many events wait, at most: those queued and those in the deliverer's hands."""
        queued = sum(not isinstance(item, _Flush) for item in list(self.queue))
        return queued + self.in_hand


class DeliveryThread:
    """Hands events to ``deliver`` on a thread of its own, in batches, in the order emitted.

    ``deliver`` gets a list of events and must try each of them, in order, whatever one of them
    raises (what escapes it is logged, and the rest of that list is not delivered). A ``deliver``
    that is slow or hangs delays only the later events of this thread. The thread starts on
    first use (again in a forked child), and is flushed when the interpreter exits.
    """

    def __init__(self, name: str, deliver: Callable[[list[JobEvent]], None]) -> None:
        self.name = name
        self.deliver = deliver
        self._run: _Run | None = None
        self._start_lock = threading.Lock()
        _ALL.add(self)

    def emit(self, event: JobEvent) -> None:
        """Queue ``event`` for delivery."""
        run = self._run
        if run is None:  # first use, after close, or in a forked child (see _forget_threads)
            run = self._start()
        run.emit(event)

    def _start(self) -> _Run:
        with self._start_lock:
            if self._run is None:  # else another thread started it meanwhile
                run = _Run(self.name, self.deliver)
                run.thread.start()
                self._run = run
                atexit.register(self.close)  # a script that never closes its app loses nothing
            return self._run

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event emitted so far was delivered; ``False`` on timeout."""
        run = self._run
        if run is None:
            return True  # nothing was emitted in this process since the last close
        mark = _Flush()
        run.mark(mark)
        return mark.done.wait(max(0.0, timeout))

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (waiting at most ``timeout``), then stop the thread."""
        run = self._run
        if run is None:
            return
        if not self.flush(timeout):
            logger.warning(
                "{name}: still busy after {t:g} s; up to {n} event(s) not delivered",
                name=self.name,
                t=timeout,
                n=run.undelivered(),
            )
        run.mark(_STOP)
        self._run = None

    def undelivered(self) -> int:
        """How many events wait, at most (a snapshot).

        Those queued and those in the deliverer's hands, some of which it may have delivered.
        """
        run = self._run
        return 0 if run is None else run.undelivered()


#: Every delivery thread, so that a forked child forgets the threads of its parent.
_ALL: weakref.WeakSet[DeliveryThread] = weakref.WeakSet()


def _forget_threads() -> None:
    """Forget the parent's threads, in a forked child.

    No delivery thread runs in the child; each starts anew on its first event, with a queue of
    its own, without its parent's events.
    """
    for delivery in list(_ALL):
        delivery._run = None
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
