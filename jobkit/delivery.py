"""Ordered delivery of job events on a background thread, flushed (boundedly) at exit."""

from __future__ import annotations

import atexit
import os
import queue
import threading
import time
from collections.abc import Callable

from loguru import logger

from jobkit.records import JobEvent


class DeliveryThread:
    """Hands events to ``deliver`` on a thread of its own, in the order they were emitted.

    A ``deliver`` that is slow or hangs delays only the later events of this thread. The thread
    starts on first use (again in a forked child), and is flushed when the interpreter exits.
    """

    def __init__(self, name: str, deliver: Callable[[JobEvent], None]) -> None:
        self.name = name
        self._deliver_one = deliver
        self._queue: queue.SimpleQueue[JobEvent | None] = queue.SimpleQueue()
        self._done = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def emit(self, event: JobEvent) -> None:
        """Queue ``event`` for delivery."""
        with self._done:
            if self._thread is None or self._pid != os.getpid():  # first use, or a forked child
                self._pid, self._pending = os.getpid(), 0
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
                atexit.register(self.close)  # a script that never closes its app loses nothing
            self._pending += 1
        self._queue.put(event)

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            try:
                self._deliver_one(event)
            except BaseException:  # a SystemExit in a plugin must not end delivery
                logger.opt(exception=True).error(
                    "{name}: delivering an event failed", name=self.name
                )
            finally:
                with self._done:
                    self._pending -= 1
                    self._done.notify_all()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event emitted so far was delivered; ``False`` on timeout."""
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, max(0.0, timeout))

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (waiting at most ``timeout``), then stop the thread."""
        if self._thread is None or self._pid != os.getpid():
            return
        if not self.flush(timeout):
            logger.warning(
                "{name}: still busy after {t:g} s; {n} event(s) not delivered",
                name=self.name,
                t=timeout,
                n=self._pending,
            )
        self._queue.put(None)
        self._thread = None


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
