"""Internal: ``jobkit cancel`` and ``jobkit retry``, the two commands that act on one job."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from jobkit.cli.group import State, app_command, json_option, main
from jobkit.cli.output import echo, fail, outcome

Act = Callable[[Any, str], bool]


def _job_action(verb: str, refusal: str) -> Callable[[Act], click.Command]:
    """Make ``act(app, job_id)`` the command ``jobkit ACT JOB_ID``, its docstring the help.

    The command prints ``VERB JOB_ID`` (with ``--json``: the job's outcome and
    ``{VERB: done}``) and exits 1 with ``job JOB_ID REFUSAL`` when ``act`` changed nothing.
    """

    def make(act: Act) -> click.Command:
        @main.command(name=act.__name__, help=act.__doc__)
        @click.argument("job_id")
        @json_option("Print {id, status} as JSON.")
        @app_command
        def command(state: State, job_id: str, as_json: bool) -> None:
            app = state.app()
            done = act(app, job_id)
            if as_json:
                click.echo(json.dumps({**outcome(app.get_job(job_id)), verb: done}))
            elif done:
                echo(f"{verb} {job_id}")
            if not done:
                fail(f"job {job_id} {refusal}")

        return command

    return make


@_job_action("cancelled", "has already finished")
def cancel(app: Any, job_id: str) -> bool:
    """Cancel a pending, retrying or running job (a running one is interrupted)."""
    return bool(app.cancel_job(job_id))


@_job_action("retried", "is neither failed nor cancelled")
def retry(app: Any, job_id: str) -> bool:
    """Run a failed or cancelled job again."""
    return bool(app.retry_job(job_id))
