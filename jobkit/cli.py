"""The ``jobkit`` command.

Exit codes: 0 success; 1 the operation failed (unknown job id, a job that cannot be cancelled,
invalid params, a failed job with ``--wait``); 2 bad usage or configuration. Errors are printed
as one line on stderr, never as a traceback.

Stored text (a job's error, params, result, name) is shown with its control characters escaped
(:func:`jobkit.logs.escape`, as in the log files) and never read as rich markup, so no job can
move the cursor, retitle the terminal or split one job's line in two; ``--json`` output is JSON.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import attrs
import click
from loguru import logger

from jobkit.exceptions import ConfigError, JobkitError
from jobkit.limits import CONCURRENCY, MAX_DEPTH, PRUNE_AGE, PRUNE_BATCH
from jobkit.logs import escape
from jobkit.masking import mask_secrets
from jobkit.records import FINAL_STATUSES, JobRecord, JobStatus

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILED = 1
EXIT_USAGE = 2

#: Bounds of `list`'s options (usage errors past them): the rows one page shows, and the
#: offset (a 64-bit integer, as the stores take it). The others are in jobkit.limits.
MAX_ROWS = 1_000_000
MAX_OFFSET = 2**63 - 1


def _fail(message: str, code: int = EXIT_FAILED, *, details: Sequence[str] = ()) -> NoReturn:
    """``jobkit: error: MESSAGE`` on stderr, then each of ``details`` indented on a line of its
    own (each escaped); exit ``code``."""
    lines = [f"jobkit: error: {escape(message)}", *(f"  {escape(detail)}" for detail in details)]
    click.echo("\n".join(lines), err=True)
    sys.exit(code)


def _echo(line: str) -> None:
    """Print one line of output that holds stored text, its control characters escaped."""
    click.echo(escape(line))


def handle_errors(command: F) -> F:
    """Turn jobkit's exceptions into one line on stderr and an exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ConfigError as exc:
            if len(exc.errors) > 1:
                _fail("invalid configuration:", EXIT_USAGE, details=exc.errors)
            _fail(str(exc), EXIT_USAGE)
        except JobkitError as exc:
            _fail(str(exc))
        except click.ClickException:
            raise  # usage errors: click prints them and exits 2
        except BrokenPipeError:
            sys.stderr.close()  # `jobkit list | head`: the reader left; nothing to report
            sys.exit(0)
        except OSError as exc:
            _fail(str(exc))
        except Exception as exc:  # a bug: still one line; JOBKIT_DEBUG=1 shows the traceback
            if os.environ.get("JOBKIT_DEBUG"):
                raise
            _fail(f"unexpected {type(exc).__name__}: {exc} (set JOBKIT_DEBUG=1 for a traceback)")

    return wrapper  # type: ignore[return-value]


class State:
    """The ``--config`` path, and the app built from it on first use."""

    def __init__(self, config: str | None = None) -> None:
        self.config = config
        self._app: Any = None

    def close(self) -> None:
        """Deliver pending events and close the store, if the app was built."""
        if self._app is not None:
            self._app.close()

    def app(self, *, log: bool = True) -> Any:
        """The app, with the job log configured."""
        if self._app is None:
            from jobkit.app import JobKit
            from jobkit.logs import configure_logging

            self._app = JobKit.from_config(self.config)
            if log:
                logger.remove()  # the CLI owns this process: only jobkit's files, no stderr noise
                configure_logging(self._app.config.logging, self._app.pm)
        return self._app


pass_state = click.make_pass_decorator(State)


class JobkitGroup(click.Group):
    """Click's group, with usage errors as one line (``jobkit: error: ...``) like every other."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command; on a usage error print one line on stderr and exit 2."""
        run = functools.partial(super().main, args, prog_name, complete_var, standalone_mode=False)
        if not standalone_mode:
            return run(**extra)
        try:
            code: Any = run(**extra)
        except click.ClickException as exc:
            context = getattr(exc, "ctx", None)
            hint = f" (see '{context.command_path} --help')" if context is not None else ""
            _fail(f"{exc.format_message()}{hint}", exc.exit_code)
        except click.Abort:
            _fail("aborted")
        sys.exit(code if isinstance(code, int) else 0)


def _set_config(ctx: click.Context, _: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(State).config = value


def config_option(command: F) -> F:
    """``--config`` after the subcommand too (``jobkit worker -c jobs.yaml``)."""
    option = click.option(
        "--config",
        "-c",
        type=click.Path(dir_okay=False),
        expose_value=False,
        is_eager=True,
        callback=_set_config,
        help="Path of jobs.yaml (as before the command; env JOBKIT_CONFIG).",
    )
    return option(command)


def json_option(help_text: str = "Print JSON, for scripts.") -> Callable[[F], F]:
    """``--json``: machine-readable output, passed as ``as_json``."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)


@click.group(
    cls=JobkitGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Exit codes: 0 success; 1 the operation failed (unknown id, invalid params, a failed "
    "job with --wait); 2 bad usage or configuration. Docs: docs/cli.md.",
)
@click.option(
    "--config",
    "-c",
    envvar="JOBKIT_CONFIG",
    type=click.Path(dir_okay=False),
    help="Path of jobs.yaml (env JOBKIT_CONFIG; default ./jobs.yaml if present).",
)
@click.option(
    "--path",
    "paths",
    multiple=True,
    default=["."],
    show_default=True,
    type=click.Path(file_okay=False),
    help="Put this directory first on the import path, "
    "so jobs.yaml's class: entries import from it. Repeatable.",
)
@click.version_option(package_name="jobkit")
@click.pass_context
def main(ctx: click.Context, config: str | None, paths: tuple[str, ...]) -> None:
    """jobkit: run registered Python job classes in the background."""
    for path in reversed(paths):
        sys.path.insert(0, os.path.abspath(path))  # as `rq worker` does; spawned workers inherit it
    state = ctx.ensure_object(State)
    state.config = config
    ctx.call_on_close(state.close)


@main.command()
@click.option(
    "--concurrency",
    "-n",
    type=click.IntRange(1, int(CONCURRENCY.high)),
    help="Worker processes (default: worker.concurrency in jobs.yaml, else CPU count).",
)
@click.option(
    "--burst",
    is_flag=True,
    help="Exit when no job is pending, retrying (delayed included) or running.",
)
@config_option
@pass_state
@handle_errors
def worker(state: State, concurrency: int | None, burst: bool) -> None:
    """Run jobs: start worker processes and supervise them until SIGINT/SIGTERM."""
    from jobkit.logs import configure_logging, console_format
    from jobkit.worker import Worker

    app = state.app(log=False)
    logger.remove()
    # worker processes send their records to this process, which logs them from one thread per
    # process (jobkit.logs.relay): loguru's own lock is enough, no enqueue=True queue is needed
    logger.add(sys.stderr, level="INFO", format=console_format)
    files = configure_logging(app.config.logging, app.pm)
    try:
        code = Worker(app, concurrency=concurrency, burst=burst).run()
    finally:
        files.remove()
    sys.exit(code)


@main.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; beyond the loopback only with sign-in on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535),
              help="Port to listen on.")
@config_option
@click.pass_context
@handle_errors
def dashboard(ctx: click.Context, host: str, port: int) -> None:
    """Serve the web dashboard: see, search, cancel and retry jobs (docs/dashboard.md).

    Sign-in is required unless dashboard.auth is false in jobs.yaml; make a password hash
    with 'jobkit dashboard hash-password'. Behind a reverse proxy, name it in
    dashboard.trusted_proxies: X-Forwarded-For is believed from no one else. Needs: pip
    install 'jobkit[dashboard]'.
    """
    if ctx.invoked_subcommand is not None:
        return
    from jobkit.dashboard.serve import serve

    state = ctx.find_object(State)
    assert state is not None
    app = state.app()  # cancels and retries are job events: they go to the job log
    from jobkit.logs import console_format

    logger.add(sys.stderr, level="INFO", format=console_format)  # one line each, escaped
    serve(app, host, port)


@dashboard.command("hash-password")
@handle_errors
def hash_password() -> None:
    """Ask for a password (twice, never shown) and print its hash for dashboard.password_hash
    (or readonly_password_hash) in jobs.yaml, or JOBKIT_DASHBOARD__PASSWORD_HASH."""
    from jobkit.dashboard.passwords import hash_password as make_hash

    password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        raise click.BadParameter("use 8 characters or more", param_hint="password")
    click.echo(make_hash(password))


def _nesting(value: Any) -> int:
    """How many levels of lists and objects ``value`` nests (0 for a scalar); iterative."""
    depth, level = 0, [value]
    while level := [item for item in level if isinstance(item, (list, dict))]:
        depth += 1
        level = [x for item in level for x in (item.values() if isinstance(item, dict) else item)]
    return depth


def _json(text: str, hint: str, *, inside: int = 0) -> Any:
    """``text`` parsed as JSON (``json.JSONDecodeError`` when it is not), refused as a usage
    error when it nests, with the ``inside`` levels around it, deeper than params may."""
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
@click.option("--retry-attempts", type=click.IntRange(min=0), help="Override the job's retries.")
@click.option("--wait", is_flag=True, help="Wait for the job to finish; print result or error.")
@json_option("Print {id} (with --wait: {id, status, result, error}) as JSON.")
@config_option
@pass_state
@handle_errors
def run(
    state: State,
    name: str,
    method: str,
    pairs: tuple[str, ...],
    params_json: str | None,
    priority: int | None,
    delay: float,
    retry_attempts: int | None,
    wait: bool,
    as_json: bool,
) -> None:
    """Enqueue job NAME's METHOD and print its id.

    METHOD may be left out when the job has a single approved method."""
    app = state.app()
    job_id = app.run_background_job(
        name,
        method or _only_method(app, name),
        _params(pairs, params_json),
        priority=priority,
        delay=delay,
        retry_attempts=retry_attempts,
    )
    if not wait:
        click.echo(json.dumps({"id": job_id}) if as_json else job_id)
        return
    if not as_json:
        click.echo(job_id)
    record = _wait(app, job_id, show=sys.stderr.isatty())
    if as_json:
        click.echo(json.dumps(_outcome(record)))
    elif record.status == JobStatus.COMPLETED:
        click.echo(json.dumps(record.result))
    if record.status != JobStatus.COMPLETED:
        _fail(f"job {job_id} {record.status}: {record.error}")


def _only_method(app: Any, name: str) -> str:
    """The job's one approved method; with several, an error naming them."""
    methods = app.registry.get(name).methods
    if len(methods) == 1:
        return str(methods[0])
    raise click.UsageError(
        f"job {name!r} has several approved methods ({', '.join(methods)}): name one"
    )


def _outcome(record: JobRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "status": record.status.value,
        "result": record.result,
        "error": record.error,
    }


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


def _record_dict(record: JobRecord) -> dict[str, Any]:
    data = attrs.asdict(record, recurse=True)
    data["params"] = mask_secrets(record.params)
    return json.loads(json.dumps(data, default=str))  # type: ignore[no-any-return]


@main.command()
@click.argument("job_id")
@json_option("Print JSON.")
@config_option
@pass_state
@handle_errors
def status(state: State, job_id: str, as_json: bool) -> None:
    """Show a job: its record, progress and attempts."""
    app = state.app()
    record = app.get_job(job_id)
    attempts = app.get_attempts(job_id)
    if as_json:
        data = _record_dict(record)
        data["attempts_history"] = [
            json.loads(json.dumps(attrs.asdict(a), default=str)) for a in attempts
        ]
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in _record_dict(record).items():
        if value is not None and (value or key != "unreadable"):
            _echo(f"{key:>17}: {value}")
    for attempt in attempts:
        _echo(
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
@config_option
@pass_state
@handle_errors
def list_(
    state: State, status_: str | None, name: str | None, limit: int, offset: int, as_json: bool
) -> None:
    """List jobs, newest first: a table on a terminal, one line per job otherwise."""
    app = state.app()
    records = app.list_jobs(status_, name, limit, offset)
    if not as_json and sys.stdout.isatty():
        if records:
            _print_table(records)
        else:  # said on a terminal only: a script reads no output as no jobs
            _echo(_no_jobs(app, status_, name, offset))
        return
    for record in records:
        if as_json:
            click.echo(json.dumps(_record_dict(record)))
        else:
            _echo(
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
    where = f"storage {_storage(app)}"
    return f"no jobs match {' '.join(filters)} ({where})" if filters else f"no jobs in {where}"


def _print_table(records: list[JobRecord]) -> None:
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
@click.argument("job_id")
@json_option("Print {id, status} as JSON.")
@config_option
@pass_state
@handle_errors
def cancel(state: State, job_id: str, as_json: bool) -> None:
    """Cancel a pending, retrying or running job (a running one is interrupted)."""
    app = state.app()
    done = app.cancel_job(job_id)
    _report(app, job_id, done, as_json, "cancelled", "has already finished")


def _report(app: Any, job_id: str, done: bool, as_json: bool, verb: str, refusal: str) -> None:
    """Print what cancel or retry did; exit 1 when it did nothing."""
    if as_json:
        click.echo(json.dumps({**_outcome(app.get_job(job_id)), verb: done}))
    elif done:
        _echo(f"{verb} {job_id}")
    if not done:
        _fail(f"job {job_id} {refusal}")


@main.command()
@click.argument("job_id")
@json_option("Print {id, status} as JSON.")
@config_option
@pass_state
@handle_errors
def retry(state: State, job_id: str, as_json: bool) -> None:
    """Run a failed or cancelled job again."""
    app = state.app()
    done = app.retry_job(job_id)
    _report(app, job_id, done, as_json, "retried", "is neither failed nor cancelled")


@main.command()
@json_option("Print one JSON object per job.")
@config_option
@pass_state
@handle_errors
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
        _echo(f"{spec.name}  ({spec.import_path}; from {spec.source})")
        _echo("  methods:")  # headers: the settings are the job's, not its last method's
        for method in spec.methods:
            _echo(f"    {describe(spec.cls, method)}")
        _echo("  settings:")
        for key, value in settings.items():
            _echo(f"    {key} = {value!r}  [{resolved.sources.get(key, 'built-in')}]")
        if options:
            _echo(f"  options = {json.dumps(options, default=str)}")


def _options_dict(options: Any) -> dict[str, Any]:
    """A job's effective options as a dict, secrets masked."""
    data = attrs.asdict(options) if attrs.has(type(options)) else dict(options)
    masked: dict[str, Any] = mask_secrets(data)
    return masked


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


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
        text = str(value).strip().lower()
        number, unit = text[:-1], text[-1:]
        if unit not in _UNITS or not number.replace(".", "", 1).isdigit():
            self.fail(f"{value!r} is not a duration like 30s, 15m, 12h, 7d or 2w", param, ctx)
        seconds = float(number) * _UNITS[unit]
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
@config_option
@pass_state
@handle_errors
def prune(state: State, older_than: float, batch_size: int, as_json: bool) -> None:
    """Delete completed, failed and cancelled jobs (and their attempts) older than a duration."""
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
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False),
    default="jobkit-demo",
    show_default=True,
    help="The folder the demo writes its jobs.yaml, store and logs to.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, int(CONCURRENCY.high)),
    default=2,
    show_default=True,
    help="Worker processes.",
)
@handle_errors
def demo(folder: str, workers: int) -> None:
    """Show jobkit at work: a mix of jobs moving through their states, live (needs the
    jobkit-email and jobkit-invoice packages)."""
    from pathlib import Path

    from jobkit.demo import run_demo

    sys.exit(run_demo(Path(folder).resolve(), workers=workers))


@main.command()
@config_option
@pass_state
@handle_errors
def migrate(state: State) -> None:
    """Create or upgrade the job store's schema (stores also do this when first opened)."""
    app = state.app(log=False)
    version = app.storage.migrate()
    _echo(f"storage {_storage(app)}: schema at version {version}")


@main.command()
@config_option
@pass_state
@handle_errors
def check(state: State) -> None:
    """Validate jobs.yaml and every plugin and job it names; exit 1 listing the errors."""
    try:
        app = state.app(log=False)
    except ConfigError as exc:  # for check, a file that does not load is a finding too
        _fail("configuration problems:", details=exc.errors or [str(exc)])
    problems = app.check()
    if problems:
        _fail("configuration problems:", details=problems)
    _echo(f"ok: {len(app.registry)} job(s), storage {_storage(app)}")


def _storage(app: Any) -> str:
    """The app's storage URL, its password hidden."""
    from jobkit.storage.postgres import redact

    return redact(str(app.config.storage))
