"""Internal: stopping a running job from another thread, on every platform.

On POSIX, when the job runs in the main thread (as in worker processes), a signal is sent to that
thread; its handler raises :class:`~jobkit.exceptions.JobInterrupted`, which also breaks out of
blocking calls such as ``time.sleep``. Elsewhere the exception is set asynchronously in the job's
thread (``PyThreadState_SetAsyncExc``), which takes effect at the next Python bytecode.

The exception is raised only while the job's own code runs (the interrupter is *armed*), and
never inside a :func:`jobkit.shield.shielded` block on the job's thread (jobkit's job-facing
calls, such as ``self.progress`` or ``run_background_job``): there it is deferred to the block's
end. A job that will not stop is ended with its process by the worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from jobkit import shield
from jobkit.exceptions import JobInterrupted

_SIGNAL = getattr(signal, "SIGUSR1", None)


class Interrupter:
    """Raises ``JobInterrupted`` in the thread that created it, while armed."""

    def __init__(self) -> None:
        self._thread_id = threading.get_ident()
        self._lock = threading.Lock()
        self._armed = False
        self._reason: str | None = None
        self._sent = False  # an interrupt was sent (thread mode: it will be delivered)
        self._raised = False  # the job's thread received it (signal mode knows exactly)
        self._shield = 0  # touched only by the job's thread
        self._deferred = False
        self._use_signal = (
            _SIGNAL is not None and threading.current_thread() is threading.main_thread()
        )
        self._handler_installed = False

    def arm(self) -> None:
        """The job's code starts: interrupts may be raised from now on."""
        if self._use_signal and not self._handler_installed:
            assert _SIGNAL is not None
            signal.signal(_SIGNAL, self._on_signal)  # installed on first use, never in a
            self._handler_installed = True  # process that only records outcomes
        with self._lock:
            self._reason = None
            self._sent = self._raised = self._deferred = False
            self._armed = True
        shield.activate(self)

    def disarm(self) -> bool:
        """The job's code has returned: no interrupt is raised any more.

        Returns whether the job's code received an interrupt (so its ending is the stop's).
        """
        self._armed = False  # first: a signal handled from here on raises nothing
        shield.activate(None)
        with self._lock:
            if self._use_signal:
                return self._raised
            # drop an asynchronous exception not yet delivered; one sent counts as received
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._thread_id), None)
            return self._sent

    def interrupt(self, reason: str) -> bool:
        """Ask the job's thread to stop; ``False`` when the job's code is not running.

        May be called again: a job that swallowed the exception gets another.
        """
        with self._lock:
            if not self._armed:
                return False
            self._reason = reason
            if self._shield:
                self._deferred = True
                return True
            self._sent = True
            if self._use_signal:
                assert _SIGNAL is not None
                signal.pthread_kill(self._thread_id, _SIGNAL)
            else:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self._thread_id), ctypes.py_object(JobInterrupted)
                )
            return True

    @contextlib.contextmanager
    def shielded(self) -> Iterator[None]:
        """On the job's thread: defer an interrupt that arrives inside the block to its end."""
        if threading.get_ident() != self._thread_id:
            yield
            return
        with self._lock:
            self._shield += 1
        try:
            yield
        finally:
            with self._lock:
                self._shield -= 1
                raise_now = not self._shield and self._deferred and self._armed
                if raise_now:
                    self._deferred = False
                    self._sent = self._raised = True
            if raise_now:
                raise JobInterrupted(self._reason or "interrupted")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self._armed:
            return
        if self._shield:  # a signal sent just before the shield went up
            self._deferred = True
            return
        self._raised = True
        raise JobInterrupted(self._reason or "interrupted")
