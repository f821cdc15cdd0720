"""Internal: ``jobkit cancel`` and ``jobkit retry``, the two commands that act on one job."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from jobkit.cli.group import State, config_option, json_option, main, pass_state
from jobkit.cli.output import echo, fail, handle_errors, outcome


def _job_action(name: str, help_text: str, act: Callable[[Any, str], bool], verb: str,
                refusal: str) -> click.Command:
    """A command ``jobkit NAME JOB_ID`` that calls ``act(app, job_id)`` and reports it.

    It prints ``VERB JOB_ID`` (with ``--json``: the job's outcome and ``{VERB: done}``) and
    exits 1 with ``job JOB_ID REFUSAL`` when ``act`` did nothing.
    """

    @main.command(name=name, help=help_text)
    @click.argument("job_id")
    @json_option("Print {id, status} as JSON.")
    @config_option
    @pass_state
    @handle_errors
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


cancel = _job_action(
    "cancel",
    "Cancel a pending, retrying or running job (a running one is interrupted).",
    lambda app, job_id: app.cancel_job(job_id),
    "cancelled",
    "has already finished",
)
retry = _job_action(
    "retry",
    "Run a failed or cancelled job again.",
    lambda app, job_id: app.retry_job(job_id),
    "retried",
    "is neither failed nor cancelled",
)
