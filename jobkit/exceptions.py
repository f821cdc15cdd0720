"""The one exception tree of jobkit.

Every exception derives from :class:`JobkitError`. Like procrastinate's, each class's docstring is
its default message and the data that explains the error is kept as attributes, so callers can act
on it without parsing text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobkit.limits import DELAY, checked
from jobkit.limits import MAX_DELAY as MAX_DELAY  # defined here before jobkit.limits held it


class JobkitError(Exception):
    """A jobkit operation failed."""

    def __init__(self, message: str | None = None, **data: Any) -> None:
        self.message = message or (self.__class__.__doc__ or "").strip()
        self.data = data
        for key, value in data.items():
            setattr(self, key, value)
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class ConfigError(JobkitError):
    """The configuration is invalid."""

    errors: list[str]

    def __init__(self, message: str | None = None, *, errors: list[str] | None = None) -> None:
        errors = errors or []
        if message is None:
            if len(errors) == 1:
                message = f"invalid configuration: {errors[0]}"
            elif errors:
                message = "invalid configuration:\n  " + "\n  ".join(errors)
        super().__init__(message, errors=errors)


class UnknownSchedule(ConfigError):
    """No schedule is configured under this name."""

    name: str
    known: list[str]

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        known = sorted(known or [])
        hint = (f" (configured: {', '.join(known)})" if known
                else " (no schedule is configured: see schedules: in jobs.yaml)")
        JobkitError.__init__(self, f"no schedule is configured under the name {name!r}{hint}",
                             name=name, known=known, errors=[])


class JobNotFound(JobkitError):
    """No job is registered under this name."""

    name: str
    known: list[str]

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        known = sorted(known or [])
        hint = f" (registered: {', '.join(known)})" if known else " (no job is registered)"
        super().__init__(
            f"no job is registered under the name {name!r}{hint}", name=name, known=known
        )


class MethodNotAllowed(JobkitError):
    """This method of the job is not approved to run in the background."""

    name: str
    method: str
    allowed: tuple[str, ...]

    def __init__(self, name: str, method: str, allowed: tuple[str, ...] | list[str]) -> None:
        allowed = tuple(allowed)
        super().__init__(
            f"job {name!r}: method {method!r} is not approved "
            f"(approved: {', '.join(allowed) or 'none'})",
            name=name,
            method=method,
            allowed=allowed,
        )


class InvalidParameters(JobkitError):
    """The parameters do not fit the method's signature."""

    name: str
    method: str
    problems: dict[str, str]

    def __init__(self, name: str, method: str, problems: Mapping[str, str]) -> None:
        problems = dict(problems)
        detail = "; ".join(f"{param}: {why}" for param, why in problems.items())
        super().__init__(
            f"job {name!r}, method {method!r}: invalid parameters: {detail}",
            name=name,
            method=method,
            problems=problems,
        )


class StorageError(JobkitError):
    """The job store failed."""


class StoreLost(StorageError):
    """The store this process opened is gone for good; waiting will not bring it back."""

    # Its SQLite file was deleted or replaced: unlike a store that is down (a plain
    # StorageError), it will not come back. The docstring is the default message (one line).


class JobNotFoundInStorage(StorageError):
    """No job with this id is in the store."""

    job_id: str

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r} in the store", job_id=job_id)


class WorkflowNotFound(JobNotFoundInStorage):
    """No workflow with this id is in the store (its ``job_id`` is the workflow's id)."""

    def __init__(self, workflow_id: str) -> None:
        StorageError.__init__(self, f"no workflow with id {workflow_id!r} in the store",
                              job_id=workflow_id)


class JobWaitTimeout(JobkitError, TimeoutError):
    """The job waited for had not ended when the wait's timeout passed.

    Raised by ``await_job`` and ``wait_job``; a ``TimeoutError`` too, so code that catches
    that (``asyncio.wait_for``'s) catches it. The job goes on: only the wait ended.
    """

    job_id: str
    timeout: float

    def __init__(self, job_id: str, timeout: float) -> None:
        super().__init__(f"job {job_id} has not ended within {timeout:g} s", job_id=job_id,
                         timeout=timeout)


class JobInterrupted(JobkitError):
    """The running attempt was stopped from outside (cancel, timeout or shutdown).

    The worker remembers why it interrupted an attempt, so a job that swallows this exception
    still ends as cancelled or timed out, and a job that ignores it is killed with its process.
    """

    reason: str

    def __init__(self, reason: str = "stopped by the worker") -> None:
        super().__init__(f"job interrupted: {reason}", reason=reason)


class Retry(JobkitError):
    """Raised by a job to ask for another attempt, optionally after ``delay`` seconds."""

    delay: float | None

    def __init__(self, message: str | None = None, *, delay: float | None = None) -> None:
        if delay is not None:
            checked(DELAY, delay, "Retry(delay=...)")
        super().__init__(message or "the job asked to be retried", delay=delay)
