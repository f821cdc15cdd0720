"""Internal: ``jobkit schedules`` and ``jobkit schedules pause|resume NAME``: the periodic jobs."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import click

from jobkit.cli.group import State, app_command, json_option, main
from jobkit.cli.output import echo, fail

#: The headings of the table's columns.
COLUMNS = ("schedule", "job", "when", "state", "last run (UTC)", "next run (UTC)", "last job")


@main.group(invoke_without_command=True)
@json_option("Print one JSON object per schedule.")
@app_command
def schedules(state: State, as_json: bool) -> None:
    """List the schedules of jobs.yaml: what each runs and when, paused or not, last and next run.

    `jobkit schedules pause NAME` and `jobkit schedules resume NAME` stop and restart one
    schedule for every worker. Times are in UTC; `when` names the schedule's time zone."""
    if click.get_current_context().invoked_subcommand is not None:
        return  # `jobkit schedules pause NAME`: the subcommand does the work
    from jobkit.schedule_report import job_of, schedule_json, state_of

    found = state.app().schedules()
    if as_json:
        for view in found:
            click.echo(json.dumps(schedule_json(view)))
        return
    if not found:
        echo("no schedules: jobs.yaml has no schedules: section")
        return
    rows = [(view.schedule.name, job_of(view), view.schedule.describe(), state_of(view),
             _time(view.last_run_at), _time(view.next_run_at), view.last_job_id or "-")
            for view in found]
    for line in table_lines(rows):
        echo(line)


def table_lines(rows: Sequence[Sequence[str]]) -> list[str]:
    """The table's lines: :data:`COLUMNS`, then ``rows``, each column as wide as its widest."""
    widths = [max(len(cells[i]) for cells in (COLUMNS, *rows)) for i in range(len(COLUMNS))]
    return ["  ".join(cell.ljust(width)
                      for cell, width in zip(cells, widths, strict=True)).rstrip()
            for cells in (COLUMNS, *rows)]


def _time(when: datetime | None) -> str:
    """A time in UTC to the second, ``-`` for none."""
    return "-" if when is None else when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _change(state: State, name: str, act: Callable[[Any, str], bool]) -> bool:
    """Pause or resume schedule ``name``; an unknown name fails (exit 1) naming the known ones."""
    from jobkit.exceptions import UnknownSchedule

    try:
        return act(state.app(), name)
    except UnknownSchedule as exc:  # a ConfigError, but the name came from the command line
        fail(str(exc))


@schedules.command()
@click.argument("name")
@app_command
def pause(state: State, name: str) -> None:
    """Pause schedule NAME for every worker on every machine.

    No tick of it starts a job until `jobkit schedules resume NAME`; jobs it started already
    run as usual."""
    changed = _change(state, name, lambda app, name: app.pause_schedule(name))
    echo(f"schedule {name} paused" if changed else f"schedule {name} was paused already")


@schedules.command()
@click.argument("name")
@app_command
def resume(state: State, name: str) -> None:
    """Resume schedule NAME: it starts jobs again from its next tick.

    The ticks that passed while it was paused are not run."""
    changed = _change(state, name, lambda app, name: app.resume_schedule(name))
    echo(f"schedule {name} resumed" if changed else f"schedule {name} was not paused")
