"""Internal: ``jobkit worker``, which runs jobs in worker processes until it is stopped."""

from __future__ import annotations

import sys
from typing import Any

import click

from jobkit.cli.group import State, app_command, main
from jobkit.limits import CONCURRENCY


@main.command()
@click.option(
    "--concurrency",
    "-n",
    type=click.IntRange(1, int(CONCURRENCY.high)),
    help="Worker processes (default: worker.concurrency in jobs.yaml, else CPU count).",
)
@click.option(
    "--queues",
    "-q",
    metavar="NAMES",
    help="Take jobs only from these queues, comma-separated, e.g. mail,default (default: "
    "worker.queues in jobs.yaml, else every queue).",
)
@click.option(
    "--burst",
    is_flag=True,
    help="Exit when no job is pending, retrying (delayed included) or running.",
)
@app_command
def worker(state: State, concurrency: int | None, queues: str | None, burst: bool) -> None:
    """Run jobs: start worker processes and supervise them until SIGINT/SIGTERM."""
    from jobkit.worker.launch import Starter, process_count, start_method

    names = _queue_names(queues)  # a usage error before any process starts
    # spawned processes start first: their interpreters start and import jobkit while this
    # process sets up, and each waits for its spec (jobkit.worker.launch); with -n, even before
    # the configuration is read (a file that does not load ends them, as any start-up error
    # does). Forked ones start once the app is built (_supervise), with all it imported.
    starter = Starter()
    try:
        early = start_method() == "spawn"
        if concurrency and early:
            starter.prestart(concurrency)
        concurrency = process_count(concurrency, state.settings().worker)
        if early:
            starter.prestart(concurrency)
        code = _supervise(state, concurrency, names, burst, starter)
    finally:
        starter.close()  # those not taken: a start-up error stopped the supervisor
    sys.exit(code)


def _supervise(state: State, concurrency: int, queues: list[str] | None, burst: bool,
               starter: Any) -> int:
    """Build the app, set up the logs and run the supervisor; its exit code."""
    from loguru import logger  # here: --help does without it

    from jobkit.logs import add_console, configure_logging
    from jobkit.worker import Worker

    app = state.app(log=False)
    # forked here, if they fork: the app built (its imports, plugins and jobs inherited), no
    # store, log file or thread yet; spawned ones were started before
    starter.prestart(concurrency)
    logger.remove()
    # worker processes send their records to this process, which logs them from one thread per
    # process (jobkit.worker.logpipe.relay): no enqueue=True queue is needed
    add_console(sys.stderr)
    files = configure_logging(app.config.logging, app.pm)
    try:
        return Worker(app, concurrency=concurrency, burst=burst, queues=queues,
                      starter=starter).run()
    finally:
        files.remove()


def _queue_names(given: str | None) -> list[str] | None:
    """``--queues a,b`` as ``["a", "b"]``; a usage error naming a bad queue name."""
    if given is None:
        return None
    from jobkit.flow import check_queue_name

    names = [name.strip() for name in given.split(",")]
    try:
        return [check_queue_name(name, "--queues") for name in names]
    except ValueError as exc:
        raise click.BadParameter(str(exc).removeprefix("--queues: "),
                                 param_hint="--queues") from None
