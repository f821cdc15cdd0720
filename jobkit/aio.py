"""Internal: the pieces of the async API (``arun_background_job``, ``await_job`` ...).

A store's calls are short (a few milliseconds at most), so the async methods run the sync ones
in a thread of the event loop's default executor (:func:`asyncio.to_thread`): the loop goes on
meanwhile. A wait for a job's end holds no thread: it is an :class:`asyncio.Future` that the
app's watch of ends (:mod:`jobkit.job_ends`) settles. asyncio is imported on the first call,
not with jobkit.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar

from jobkit.exceptions import JobWaitTimeout
from jobkit.records import FINAL_STATUSES, JobRecord

if TYPE_CHECKING:
    import asyncio

    from jobkit.job_ends import EndWatch

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")


class Waits(Protocol):
    """What a wait for a job's end needs of the app (``JobKit``)."""

    end_watch: EndWatch

    def get_job(self, job_id: str) -> JobRecord:
        """The job's record; ``JobNotFoundInStorage`` for an unknown id."""


def in_thread(
    method: Callable[Concatenate[S, P], R],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """The coroutine method ``a<name>`` that runs the method ``method`` in a thread.

    Same arguments, same checks, same exceptions (raised by the ``await``); its docstring is
    the method's, after a line that says so.
    """

    async def in_a_thread(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        import asyncio

        if kwargs.get("connection") is not None:
            from jobkit.exceptions import ConfigError

            raise ConfigError(errors=[
                f"call: connection: not with a{method.__name__}: it runs in a thread, where "
                f"your connection's transaction is not (a sqlite3 connection may not even be "
                f"used there); call {method.__name__} with it"])
        return await asyncio.to_thread(method, self, *args, **kwargs)

    functools.update_wrapper(in_a_thread, method)
    name = f"a{method.__name__}"
    in_a_thread.__name__ = name
    in_a_thread.__qualname__ = f"{method.__qualname__.rpartition('.')[0]}.{name}"
    in_a_thread.__doc__ = (
        f":meth:`{method.__name__}` from async code: run in a thread, awaited.\n\n"
        f"{inspect.cleandoc(method.__doc__ or '')}")
    return in_a_thread


def _outcome(record: JobRecord, outcome: list[JobRecord | BaseException]) -> JobRecord:
    """The record a wait returns: ``record`` when final, else the watch's (or its error)."""
    if record.status in FINAL_STATUSES:
        return record
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


async def await_end(app: Waits, job_id: str, timeout: float | None) -> JobRecord:
    """``app.await_job``: the job's final record, without holding a thread while it waits."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    future: asyncio.Future[JobRecord | BaseException] = loop.create_future()

    def deliver(outcome: JobRecord | BaseException) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(_settle, future, outcome)

    token = app.end_watch.add(job_id, deliver)
    try:
        record = await asyncio.to_thread(app.get_job, job_id)
        if record.status in FINAL_STATUSES:
            return record
        left = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            outcome = await asyncio.wait_for(future, left)
        except TimeoutError:
            raise JobWaitTimeout(job_id, timeout or 0.0) from None
        return _outcome(record, [outcome])
    finally:
        app.end_watch.remove(job_id, token)


def _settle(future: asyncio.Future[JobRecord | BaseException],
            outcome: JobRecord | BaseException) -> None:
    """On the loop: give ``future`` its outcome unless it was cancelled (timed out)."""
    if not future.done():
        future.set_result(outcome)


def wait_end(app: Waits, job_id: str, timeout: float | None) -> JobRecord:
    """``app.wait_job``: the job's final record, blocking this thread until it ends."""
    ended = threading.Event()
    outcome: list[JobRecord | BaseException] = []

    def deliver(found: JobRecord | BaseException) -> None:
        outcome.append(found)
        ended.set()

    token = app.end_watch.add(job_id, deliver)
    try:
        record = app.get_job(job_id)
        if record.status not in FINAL_STATUSES and not ended.wait(timeout):
            raise JobWaitTimeout(job_id, timeout or 0.0)
        return _outcome(record, outcome)
    finally:
        app.end_watch.remove(job_id, token)
