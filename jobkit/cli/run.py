"""Internal: ``jobkit run``: params from the command line, the enqueue, and ``--wait``."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from typing import Any

import click

from jobkit.cli.group import State, app_command, json_option, main
from jobkit.cli.output import fail, outcome
from jobkit.limits import MAX_DEPTH
from jobkit.records import FINAL_STATUSES, JobRecord, JobStatus


def _nesting(value: Any) -> int:
    """How many levels of lists and objects ``value`` nests (0 for a scalar); iterative."""
    depth, level = 0, [value]
    while level := [item for item in level if isinstance(item, (list, dict))]:
        depth += 1
        level = [x for item in level for x in (item.values() if isinstance(item, dict) else item)]
    return depth


def _json(text: str, hint: str, *, inside: int = 0) -> Any:
    """``text`` parsed as JSON, refused as a usage error when it nests too deep.

    ``json.JSONDecodeError`` when it is not JSON; a usage error when it nests, with the
    ``inside`` levels around it, deeper than params may.
    """
    try:
        value = json.loads(text)
    except RecursionError:  # far deeper than the limit: Python's parser gave up
        value, depth = None, MAX_DEPTH + 1
    else:
        depth = inside + _nesting(value)
    if depth > MAX_DEPTH:
        raise click.BadParameter(
            f"params nest deeper than {MAX_DEPTH} levels of lists and objects", param_hint=hint
        )
    return value


def _params(pairs: tuple[str, ...], params_json: str | None) -> dict[str, Any] | list[Any]:
    params: dict[str, Any] | list[Any] = {}
    if params_json is not None:
        try:
            params = _json(params_json, "--params-json")
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--params-json") from None
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="--param")
        if not isinstance(params, dict):
            raise click.BadParameter("cannot mix --param with a JSON list", param_hint="--param")
        try:
            params[key] = _json(raw, "--param", inside=1)
        except json.JSONDecodeError:
            params[key] = raw  # a bare word is a string
    return params


def _run_at(text: str | None) -> datetime | None:
    """``--at``: an ISO 8601 time with its offset (``Z`` for UTC); a usage error otherwise."""
    if text is None:
        return None
    iso = text.strip()
    if iso.endswith(("Z", "z")):  # Python 3.10's fromisoformat does not read a "Z"
        iso = iso[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 time like 2026-12-24T18:00:00+01:00", param_hint="--at"
        ) from None
    if when.utcoffset() is None:
        raise click.BadParameter(
            f"{text!r} has no UTC offset: write it as 2026-12-24T18:00:00+01:00 (or ...Z for "
            "UTC)", param_hint="--at")
    return when


@main.command()
@click.argument("name")
@click.argument("method", required=False)
@click.option(
    "--param",
    "-p",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A parameter; VALUE is parsed as JSON, else taken as a string. Repeatable.",
)
@click.option("--params-json", metavar="JSON", help="All parameters as a JSON object or list.")
@click.option("--priority", type=int, help="Higher runs first (default: the job's priority).")
@click.option("--delay", type=click.FloatRange(min=0), default=0, help="Seconds to wait.")
@click.option("--at", "at", metavar="TIME",
              help="When the job becomes due: ISO 8601 with an offset (2026-12-24T18:00:00+01:00"
              ", or ...Z); a past time is now. Not with --delay.")
@click.option("--retry-attempts", type=click.IntRange(min=0), help="Override the job's retries.")
@click.option("--queue", metavar="NAME", help="The queue to wait in (default: the job's queue).")
@click.option("--idempotency-key", metavar="KEY",
              help="Store nothing when a job of this name was enqueued with KEY (in the last day,"
              " or the job's unique.period, or while it waits or runs); print its id.")
@click.option("--wait", is_flag=True, help="Wait for the job to finish; print result or error.")
@json_option("Print {id} (with --wait: {id, status, result, error}) as JSON.")
@app_command
def run(
    state: State,
    name: str,
    method: str,
    pairs: tuple[str, ...],
    params_json: str | None,
    priority: int | None,
    delay: float,
    at: str | None,
    retry_attempts: int | None,
    queue: str | None,
    idempotency_key: str | None,
    wait: bool,
    as_json: bool,
) -> None:
    """Enqueue job NAME's METHOD and print its id.

    METHOD may be left out when the job has a single approved method."""
    run_at = _run_at(at)
    if run_at is not None and delay:
        raise click.UsageError("give --at or --delay, not both")
    app = state.app()
    job_id = app.run_background_job(
        name,
        method or _only_method(app, name),
        _params(pairs, params_json),
        priority=priority,
        delay=delay,
        run_at=run_at,
        retry_attempts=retry_attempts,
        queue=queue,
        idempotency_key=idempotency_key,
    )
    if not wait:
        click.echo(json.dumps({"id": job_id}) if as_json else job_id)
        return
    if not as_json:
        click.echo(job_id)
    record = _wait(app, job_id, show=sys.stderr.isatty())
    if as_json:
        click.echo(json.dumps(outcome(record)))
    elif record.status == JobStatus.COMPLETED:
        click.echo(json.dumps(record.result))
    if record.status != JobStatus.COMPLETED:
        fail(f"job {job_id} {record.status}: {record.error}")


def _only_method(app: Any, name: str) -> str:
    """The job's one approved method; with several, an error naming them."""
    methods = app.registry.get(name).methods
    if len(methods) == 1:
        return str(methods[0])
    raise click.UsageError(
        f"job {name!r} has several approved methods ({', '.join(methods)}): name one"
    )


def _wait(app: Any, job_id: str, *, show: bool) -> JobRecord:
    """Poll the job until it finishes; on a terminal, show its status and progress on stderr."""
    record: JobRecord = app.get_job(job_id)
    if not show:
        while record.status not in FINAL_STATUSES:
            time.sleep(0.1)
            record = app.get_job(job_id)
        return record
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from jobkit.logs import escape

    columns = (  # markup=False: a job's progress message is shown as written, escaped
        TextColumn("job {task.fields[job]}: {task.description}", markup=False),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(record.status.value, total=1.0, job=job_id)
        while record.status not in FINAL_STATUSES:
            message = escape(record.progress_message or record.status.value)
            progress.update(task, completed=record.progress or 0.0, description=message)
            time.sleep(0.1)
            record = app.get_job(job_id)
    return record
