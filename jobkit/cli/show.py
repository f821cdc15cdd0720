"""Internal: ``jobkit status``, ``list`` and ``jobs``: what the store and the registry hold."""

from __future__ import annotations

import json
import sys
from typing import Any

import attrs
import click

from jobkit.cli.group import State, app_command, json_option, main
from jobkit.cli.output import echo, record_dict, storage_url
from jobkit.masking import mask_secrets
from jobkit.records import JobRecord, JobStatus

#: Bounds of `list`'s options (usage errors past them): the rows one page shows, and the
#: offset (a 64-bit integer, as the stores take it). The others are in jobkit.limits.
MAX_ROWS = 1_000_000
MAX_OFFSET = 2**63 - 1


@main.command()
@click.argument("job_id")
@json_option("Print JSON.")
@app_command
def status(state: State, job_id: str, as_json: bool) -> None:
    """Show a job: its record, progress and attempts."""
    app = state.app()
    record = app.get_job(job_id)
    attempts = app.get_attempts(job_id)
    waiting = app.why_waiting(job_id)
    if as_json:
        data = {**record_dict(record), "waiting": waiting}
        data["attempts_history"] = [
            json.loads(json.dumps(attrs.asdict(a), default=str)) for a in attempts
        ]
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in record_dict(record).items():
        if value is not None and (value or key != "unreadable"):
            echo(f"{key:>17}: {value}")
    if waiting is not None:
        echo(f"{'waiting':>17}: {waiting}")
    for attempt in attempts:
        echo(
            f"  attempt {attempt.attempt}: {attempt.outcome or 'running'} "
            f"{attempt.started_at:%Y-%m-%d %H:%M:%S} {attempt.error or ''}".rstrip()
        )


@main.command(name="list")
@click.option("--status", "status_", type=click.Choice([s.value for s in JobStatus]))
@click.option("--name", help="Only this job name.")
@click.option("--limit", type=click.IntRange(1, MAX_ROWS), default=50, show_default=True,
              help="Show at most this many jobs.")
@click.option("--offset", type=click.IntRange(0, MAX_OFFSET), default=0,
              help="Skip this many jobs first.")
@json_option("Print JSON lines.")
@app_command
def list_(
    state: State, status_: str | None, name: str | None, limit: int, offset: int, as_json: bool
) -> None:
    """List jobs, newest first: a table on a terminal, one line per job otherwise."""
    app = state.app()
    records = app.list_jobs(status_, name, limit, offset)
    if not as_json and sys.stdout.isatty():
        if records:
            print_table(records)
        else:  # said on a terminal only: a script reads no output as no jobs
            echo(_no_jobs(app, status_, name, offset))
        return
    for record in records:
        if as_json:
            click.echo(json.dumps(record_dict(record)))
        else:
            echo(
                f"{record.id:>8}  {record.status.value:<9}  p{record.priority:<3} "
                f"{record.attempts}/{record.max_attempts}  {record.name}.{record.method}  "
                f"{record.error or ''}{_unreadable(record)}".rstrip()
            )


def _unreadable(record: JobRecord) -> str:
    """The mark of a row with fields that could not be read (they show stand-ins)."""
    return f"  [unreadable: {', '.join(record.unreadable)}]" if record.unreadable else ""


def _no_jobs(app: Any, status: str | None, name: str | None, offset: int) -> str:
    """What `list` says on a terminal when no job matches: the filters and the store."""
    filters = [f"--{option} {value}" for option, value in
               (("status", status), ("name", name), ("offset", offset or None)) if value]
    where = f"storage {storage_url(app)}"
    return f"no jobs match {' '.join(filters)} ({where})" if filters else f"no jobs in {where}"


def print_table(records: list[JobRecord]) -> None:
    """The jobs as `list` shows them on a terminal: a rich table, stored text never markup."""
    from rich.console import Console
    from rich.table import Table

    from jobkit.demo import COLOURS, table_cell

    table = Table(box=None, header_style="bold")
    for column in ("id", "status", "priority", "attempts", "job", "progress", "error"):
        table.add_column(column, justify="right" if column in ("id", "priority") else "left")
    for record in records:
        progress = "" if record.progress is None else f"{record.progress:.0%}"
        table.add_row(
            table_cell(record.id),
            f"[{COLOURS[record.status]}]{record.status.value}[/]",
            str(record.priority),
            f"{record.attempts}/{record.max_attempts}",
            table_cell(f"{record.name}.{record.method}"),
            progress,
            table_cell(record.error or "", width=80) + _unreadable(record),
        )
    Console().print(table)


@main.command()
@json_option("Print one JSON object per job.")
@app_command
def jobs(state: State, as_json: bool) -> None:
    """List registered jobs, their approved methods and effective settings (with sources)."""
    from jobkit.factory import describe

    app = state.app(log=False)
    for spec in app.registry:
        resolved = app.job_settings(spec.name)
        settings = attrs.asdict(resolved.settings)
        options = _options_dict(app.job_options(spec.name))
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "name": spec.name,
                        "class": spec.import_path,
                        "source": spec.source,
                        "methods": {method: describe(spec.cls, method) for method in spec.methods},
                        "settings": settings,
                        "sources": {key: resolved.sources.get(key, "built-in") for key in settings},
                        "options": options,
                    }
                )
            )
            continue
        echo(f"{spec.name}  ({spec.import_path}; from {spec.source})")
        echo("  methods:")  # headers: the settings are the job's, not its last method's
        for method in spec.methods:
            echo(f"    {describe(spec.cls, method)}")
        echo("  settings:")
        for key, value in settings.items():
            echo(f"    {key} = {value!r}  [{resolved.sources.get(key, 'built-in')}]")
        if options:
            echo(f"  options = {json.dumps(options, default=str)}")


def _options_dict(options: Any) -> dict[str, Any]:
    """A job's effective options as a dict, secrets masked."""
    data = attrs.asdict(options) if attrs.has(type(options)) else dict(options)
    masked: dict[str, Any] = mask_secrets(data)
    return masked
