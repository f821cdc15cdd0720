"""Internal: waiting for a file to be written to, without polling (inotify, via ctypes).

SQLite cannot notify other processes of a commit, but every commit appends to the database's
``-wal`` file; an idle worker that waits for that file to change wakes within a fraction of a
millisecond of an enqueue and costs nothing while it waits. Where inotify is missing (macOS,
Windows) :func:`watch` returns ``None`` and the caller polls instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import sys
from pathlib import Path

_IN_MODIFY = 0x00000002
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class FileWatch:
    """An inotify descriptor watching one file for writes."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._poll = select.poll()  # not select.select: a descriptor above 1023 is fine
        self._poll.register(fd, select.POLLIN)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a write (or one since the last wait).

        Whether there was one. Reads every pending event, so the next wait waits for a new write. A
        closed watch returns at once.
        """
        if self._fd < 0 or not self._poll.poll(max(0.0, timeout) * 1000):
            return False
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._fd, 65536):
                pass
        return True

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._fd < 0

    def close(self) -> None:
        """Stop watching (once; later calls do nothing)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                self._poll.unregister(fd)
                os.close(fd)


def watch(path: Path) -> FileWatch | None:
    """A watch on ``path``'s writes, or ``None`` where there can be none.

    ``None`` where inotify is not available or the file cannot be watched (it does not exist, the
    watch limit is reached).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
    except (OSError, AttributeError):
        return None
    if fd < 0:
        return None
    if libc.inotify_add_watch(fd, os.fsencode(path), _IN_MODIFY) < 0:
        os.close(fd)
        return None
    return FileWatch(fd)
