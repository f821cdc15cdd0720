"""Internal: ``jobkit dashboard``, which serves the web dashboard, and its ``hash-password``."""

from __future__ import annotations

import sys

import click

from jobkit.cli.group import State, config_option, main
from jobkit.cli.output import handle_errors


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
    from loguru import logger  # here: --help does without it

    from jobkit.logs import console_format

    logger.add(sys.stderr, level="INFO", format=console_format)  # one line each, escaped
    serve(app, host, port)


@dashboard.command(
    "hash-password",
    help="Ask for a password (twice, never shown) and print its hash for dashboard.password_hash\n"
    "(or readonly_password_hash) in jobs.yaml, or JOBKIT_DASHBOARD__PASSWORD_HASH.",
)
@handle_errors
def hash_password() -> None:
    """Ask for a password twice and print its hash, for jobs.yaml or the environment."""
    from jobkit.dashboard.passwords import hash_password as make_hash

    password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        raise click.BadParameter("use 8 characters or more", param_hint="password")
    click.echo(make_hash(password))
