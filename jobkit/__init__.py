"""jobkit: run registered Python job classes in the background.

>>> from jobkit import run_background_job
>>> job_id = run_background_job("Email", "send_email", {"to": "ana@example.com"}, priority=5)

Importing jobkit has no side effects beyond loguru's ``logger.disable("jobkit")`` (at once if
loguru is imported, else when it is: :mod:`jobkit.lazylog`): the library adds no log sinks; the
worker and the CLI do.
"""

from __future__ import annotations

from jobkit.app import (
    JobKit,
    acancel_job,
    aenqueue_many,
    aget_job,
    arun_background_job,
    await_job,
    cancel_job,
    cancel_workflow,
    enqueue_many,
    get_attempts,
    get_default_app,
    get_job,
    get_workflow,
    list_jobs,
    reset_default_app,
    retry_job,
    run_background_job,
    run_workflow,
    set_default_app,
    wait_job,
)
from jobkit.exceptions import (
    ConfigError,
    InvalidParameters,
    JobInterrupted,
    JobkitError,
    JobNotFound,
    JobNotFoundInStorage,
    JobWaitTimeout,
    MethodNotAllowed,
    Retry,
    StorageError,
)
from jobkit.hookspecs import hookimpl
from jobkit.job import Job, JobContext
from jobkit.lazylog import disable_jobkit
from jobkit.records import Attempt, AttemptOutcome, EventKind, JobEvent, JobRecord, JobStatus
from jobkit.workflows import chain, group, step

disable_jobkit()

__version__ = "0.1.0"

__all__ = [
    "Attempt",
    "AttemptOutcome",
    "ConfigError",
    "EventKind",
    "InvalidParameters",
    "Job",
    "JobContext",
    "JobEvent",
    "JobInterrupted",
    "JobKit",
    "JobNotFound",
    "JobNotFoundInStorage",
    "JobRecord",
    "JobStatus",
    "JobWaitTimeout",
    "JobkitError",
    "MethodNotAllowed",
    "Retry",
    "StorageError",
    "acancel_job",
    "aenqueue_many",
    "aget_job",
    "arun_background_job",
    "await_job",
    "cancel_job",
    "cancel_workflow",
    "chain",
    "enqueue_many",
    "get_attempts",
    "get_default_app",
    "get_job",
    "get_workflow",
    "group",
    "hookimpl",
    "list_jobs",
    "reset_default_app",
    "retry_job",
    "run_background_job",
    "run_workflow",
    "set_default_app",
    "step",
    "wait_job",
]
