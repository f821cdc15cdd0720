"""Stopping a running job from another thread, on every platform.

On POSIX, when the job runs in the main thread (as in worker processes), a signal is sent to that
thread; its handler raises :class:`~jobkit.exceptions.JobInterrupted`, which also breaks out of
blocking calls such as ``time.sleep``. Elsewhere the exception is set asynchronously in the job's
thread (``PyThreadState_SetAsyncExc``), which takes effect at the next Python bytecode. Either way
the exception is raised only while the job's own code runs (the interrupter is *armed*), never
inside jobkit's bookkeeping; a job that will not stop is ended with its process by the worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from jobkit.exceptions import JobInterrupted

_SIGNAL = getattr(signal, "SIGUSR1", None)


class Interrupter:
    """Raises ``JobInterrupted`` in the thread that created it, while armed."""

    def __init__(self) -> None:
        self._thread_id = threading.get_ident()
        self._lock = threading.Lock()
        self._armed = False
        self._reason: str | None = None
        self._shield = 0
        self._deferred = False
        self._use_signal = (
            _SIGNAL is not None and threading.current_thread() is threading.main_thread()
        )
        if self._use_signal:
            assert _SIGNAL is not None
            signal.signal(_SIGNAL, self._on_signal)

    def arm(self) -> None:
        """The job's code starts: interrupts may be raised from now on."""
        with self._lock:
            self._reason = None
            self._deferred = False
            self._armed = True

    def disarm(self) -> None:
        """The job's code has returned: no interrupt is raised any more."""
        self._armed = False  # first: a signal handled from here on raises nothing
        with self._lock:
            if not self._use_signal:  # drop an asynchronous exception not yet delivered
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._thread_id), None)

    def interrupt(self, reason: str) -> bool:
        """Ask the job's thread to stop; ``False`` when the job's code is not running."""
        with self._lock:
            if not self._armed:
                return False
            self._reason = reason
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
        """Defer an interrupt that arrives inside this block (jobkit's own writes) to its end."""
        self._shield += 1
        try:
            yield
        finally:
            self._shield -= 1
            if not self._shield and self._deferred and self._armed:
                self._deferred = False
                raise JobInterrupted(self._reason or "interrupted")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self._armed:
            return
        if self._shield:
            self._deferred = True
            return
        raise JobInterrupted(self._reason or "interrupted")
