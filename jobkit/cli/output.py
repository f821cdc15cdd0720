"""Internal: how every ``jobkit`` command reports: exit codes, error lines, escaped output.

Stored text (a job's error, params, result, name) is printed through :func:`echo`, its control
characters escaped; errors go through :func:`fail`, one line on stderr.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import attrs
import click

from jobkit.exceptions import ConfigError, JobkitError
from jobkit.masking import mask_secrets
from jobkit.records import JobRecord

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILED = 1
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_FAILED, *, details: Sequence[str] = ()) -> NoReturn:
    """Print ``jobkit: error: MESSAGE`` on stderr and exit ``code``.

    Each of ``details`` follows on a line of its own, indented; all of it escaped.
    """
    from jobkit.logs import escape  # here: jobkit.logs imports loguru, which --help does without

    lines = [f"jobkit: error: {escape(message)}", *(f"  {escape(detail)}" for detail in details)]
    click.echo("\n".join(lines), err=True)
    sys.exit(code)


def echo(line: str) -> None:
    """Print one line of output that holds stored text, its control characters escaped."""
    from jobkit.logs import escape

    click.echo(escape(line))


def handle_errors(command: F) -> F:
    """Turn jobkit's exceptions into one line on stderr and an exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ConfigError as exc:
            if len(exc.errors) > 1:
                fail("invalid configuration:", EXIT_USAGE, details=exc.errors)
            fail(str(exc), EXIT_USAGE)
        except JobkitError as exc:
            fail(str(exc))
        except click.ClickException:
            raise  # usage errors: click prints them and exits 2
        except BrokenPipeError:
            sys.stderr.close()  # `jobkit list | head`: the reader left; nothing to report
            sys.exit(0)
        except OSError as exc:
            fail(str(exc))
        except Exception as exc:  # a bug: still one line; JOBKIT_DEBUG=1 shows the traceback
            if os.environ.get("JOBKIT_DEBUG"):
                raise
            fail(f"unexpected {type(exc).__name__}: {exc} (set JOBKIT_DEBUG=1 for a traceback)")

    return wrapper  # type: ignore[return-value]


def outcome(record: JobRecord) -> dict[str, Any]:
    """A job's id, status, result and error: the ``--json`` output of run, cancel and retry."""
    return {
        "id": record.id,
        "status": record.status.value,
        "result": record.result,
        "error": record.error,
    }


def record_dict(record: JobRecord) -> dict[str, Any]:
    """A whole job record as JSON-ready data, the secrets in its params masked."""
    data = attrs.asdict(record, recurse=True)
    data["params"] = mask_secrets(record.params)
    return json.loads(json.dumps(data, default=str))  # type: ignore[no-any-return]


def storage_url(app: Any) -> str:
    """The app's storage URL, its password hidden."""
    from jobkit.storage.postgres import redact

    return redact(str(app.config.storage))
