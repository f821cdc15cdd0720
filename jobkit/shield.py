"""Internal: deferring a running job's interrupt while jobkit works on the job's behalf.

A job's code may call jobkit while it runs: ``self.progress``, ``run_background_job``,
``get_job``. The worker stops a job by raising an exception in its thread; raised halfway through
one of those calls, it would cut a store's transaction in two (keeping SQLite's write lock, or
leaving a PostgreSQL connection in an unknown state). So the job-facing side of jobkit (the
:class:`~jobkit.app.JobKit` methods a job calls, and the worker's
:class:`~jobkit.job.JobContext`) runs inside :func:`shielded`: an interrupt that arrives there is
deferred to the block's end. The stores themselves know nothing of interrupts.

The worker's interrupter (:class:`jobkit.worker.interrupt.Interrupter`) makes itself the
thread's shield while the job's code runs (:func:`activate`); elsewhere :func:`shielded` costs
one attribute lookup.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class Shield(Protocol):
    """What defers an interrupt of the running job's thread (the worker's interrupter)."""

    def shielded(self) -> AbstractContextManager[None]:
        """On the job's thread: defer an interrupt that arrives inside the block to its end."""


_active = threading.local()  # the shield of this thread's running job, if any


def activate(shield: Shield | None) -> None:
    """Make ``shield`` this thread's (``None``: the job's code has returned)."""
    _active.shield = shield


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Defer an interrupt of this thread's running job to the end of the block."""
    shield: Shield | None = getattr(_active, "shield", None)
    if shield is None:
        yield
        return
    with shield.shielded():
        yield


def shielded_call(function: Callable[P, T]) -> Callable[P, T]:
    """``function``, run inside :func:`shielded` (for jobkit's job-facing methods)."""

    @functools.wraps(function)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        # :func:`shielded` inlined: no generator-based context manager on every enqueue
        shield: Shield | None = getattr(_active, "shield", None)
        if shield is None:
            return function(*args, **kwargs)
        with shield.shielded():
            return function(*args, **kwargs)

    return call
