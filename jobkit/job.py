"""``Job``, the base class of every background job, and ``JobContext``, its running attempt."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from jobkit.exceptions import JobkitError
from jobkit.lazylog import logger

if TYPE_CHECKING:
    from loguru import Logger


@attrs.frozen
class JobContext:
    """What a job knows about the attempt it is running in."""

    job_id: str
    name: str
    method: str
    attempt: int
    max_attempts: int
    log: Logger
    report_progress: Callable[[float, str | None], None] = attrs.field(repr=False)


class Job(abc.ABC):  # noqa: B024 - jobs declare their methods by name; none is abstract
    """The base class of background jobs.

    Subclass it, declare the methods that may run in the background in ``methods``, and register
    the class under a short name (entry point group ``jobkit.jobs``, ``class:`` in ``jobs.yaml``, or
    ``app.register``). Only the declared methods can ever be run; ``jobs.yaml`` may narrow the
    list, never widen it. ``defaults`` holds the package's own per-job settings (``retry_attempts``,
    ``retry_delay``, ``backoff``, ``max_delay``, ``jitter``, ``timeout``, ``priority``), which the
    application's ``jobs.yaml`` overrides.

    jobkit builds the instance with no arguments, so a subclass that defines ``__init__`` must
    accept none and call ``super().__init__()``.
    """

    methods: ClassVar[tuple[str, ...]] = ()
    defaults: ClassVar[Mapping[str, Any]] = {}
    #: An attrs class for the job's ``options:`` in ``jobs.yaml``: jobkit structures them into it
    #: (strictly; unknown keys refused), ``jobkit check`` and the worker's start check them, and
    #: ``self.options`` is the instance. ``None``: ``self.options`` is the plain mapping.
    Options: ClassVar[type[Any] | None] = None

    def __init__(self) -> None:
        self._context: JobContext | None = None
        #: The job's ``options:`` from ``jobs.yaml``: an ``Options`` instance, or the mapping.
        self.options: Any = {}

    def bind(self, context: JobContext, options: Any) -> None:
        """Attach the running attempt; internal, called by jobkit before the method runs."""
        self._context = context
        self.options = options

    @property
    def context(self) -> JobContext:
        """The running attempt; raises ``JobkitError`` outside a worker."""
        if self._context is None:
            raise JobkitError(f"{type(self).__name__} is not running inside a jobkit worker")
        return self._context

    @property
    def log(self) -> Logger:
        """A loguru logger bound to the job (``job_id``, ``job_name``, ``method``, ``attempt``)."""
        if self._context is None:
            return logger.bind(job_name=type(self).__name__)
        return self._context.log

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Record how far the running attempt is, from 0.0 to 1.0, with an optional message."""
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
            raise TypeError(f"progress fraction must be a number, got {fraction!r}")
        if not 0.0 <= float(fraction) <= 1.0:
            raise ValueError(f"progress fraction must be between 0 and 1, got {fraction!r}")
        self.context.report_progress(float(fraction), message)
