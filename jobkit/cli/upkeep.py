"""Internal: ``jobkit prune``, ``migrate`` and ``check``: the upkeep of the store and the config."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from jobkit.cli.group import State, app_command, json_option, main
from jobkit.cli.output import echo, fail, storage_url
from jobkit.exceptions import ConfigError
from jobkit.limits import PRUNE_AGE, PRUNE_BATCH

if TYPE_CHECKING:
    _ParamType = click.ParamType[float]
else:  # click < 8.2 has no generic ParamType at run time
    _ParamType = click.ParamType


class Duration(_ParamType):
    """``30s``, ``15m``, ``12h``, ``7d``, ``2w`` -> seconds."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        from jobkit.durations import parse_duration

        try:
            seconds = parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if not PRUNE_AGE.accepts(seconds):
            self.fail(f"{value!r} is over {PRUNE_AGE.span}", param, ctx)
        return seconds


@main.command()
@click.option(
    "--older-than",
    "older_than",
    type=Duration(),
    required=True,
    help="Delete finished jobs that finished longer ago than this (30s, 15m, 12h, 7d, 2w).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, int(PRUNE_BATCH.high)),
    default=1000,
    show_default=True,
    help="Rows deleted per transaction, so workers are never blocked for long.",
)
@json_option("Print {deleted, finished_before} as JSON.")
@app_command
def prune(state: State, older_than: float, batch_size: int, as_json: bool) -> None:
    """Delete completed, failed and cancelled jobs (and their attempts) older than a duration.

    Workers already delete finished jobs that retention: (jobs.yaml, 14 days by default) no
    longer keeps, in the background; this is for one-off clean-ups."""
    from datetime import timedelta

    app = state.app()
    cutoff = app.storage.now() - timedelta(seconds=older_than)
    if sys.stderr.isatty() and not as_json:
        from rich.console import Console

        with Console(stderr=True).status("pruning...") as shown:
            deleted = app.storage.prune(
                cutoff,
                batch_size=batch_size,
                progress=lambda n: shown.update(f"pruning... {n} deleted"),
            )
    else:
        deleted = app.storage.prune(cutoff, batch_size=batch_size)
    if as_json:
        click.echo(json.dumps({"deleted": deleted, "finished_before": cutoff.isoformat()}))
        return
    click.echo(
        f"deleted {deleted} finished job(s) that finished before {cutoff:%Y-%m-%d %H:%M:%S} UTC"
    )


@main.command()
@app_command
def migrate(state: State) -> None:
    """Create or upgrade the job store's schema (stores also do this when first opened)."""
    app = state.app(log=False)
    version = app.storage.migrate()
    echo(f"storage {storage_url(app)}: schema at version {version}")


@main.command()
@app_command
def check(state: State) -> None:
    """Validate jobs.yaml and every plugin and job it names; exit 1 listing the errors."""
    try:
        app = state.app(log=False)
    except ConfigError as exc:  # for check, a file that does not load is a finding too
        fail("configuration problems:", details=exc.errors or [str(exc)])
    problems = app.check()
    if problems:
        fail("configuration problems:", details=problems)
    echo(f"ok: {len(app.registry)} job(s), storage {storage_url(app)}")
