"""Internal: ``jobkit queues`` and ``jobkit queue pause|resume NAME``: queues and their pauses."""

from __future__ import annotations

import json

import attrs
import click

from jobkit.cli.group import State, app_command, json_option, main
from jobkit.cli.output import echo


@main.command()
@json_option("Print one JSON object per queue.")
@app_command
def queues(state: State, as_json: bool) -> None:
    """List the queues: paused or not, jobs waiting and running, done in the last minute, limits.

    A queue is listed when it holds a waiting or running job, was ever paused, or has limits
    in jobs.yaml's queues:."""
    app = state.app()
    found = app.queues()
    limits = app.queue_limits()
    if as_json:
        for queue in found:
            click.echo(json.dumps({**attrs.asdict(queue), "limits": limits.get(queue.name)}))
        return
    if not found:
        echo("no queues: no job is waiting or running, and none was paused")
        return
    width = max(len("queue"), *(len(queue.name) for queue in found))
    echo(f"{'queue':<{width}}  {'state':<7}  {'waiting':>8}  {'running':>8}  {'done/min':>8}"
         "  limits")
    for queue in found:
        state_text = "paused" if queue.paused else "active"
        echo(f"{queue.name:<{width}}  {state_text:<7}  {queue.waiting:>8}  {queue.running:>8}  "
             f"{queue.done_last_minute:>8}  {limits.get(queue.name, '-')}")


@main.group()
def queue() -> None:
    """Pause or resume one queue, for every worker on every machine."""


@queue.command()
@click.argument("name")
@app_command
def pause(state: State, name: str) -> None:
    """Stop every worker from claiming jobs of queue NAME (running ones finish).

    Its jobs wait, spending none of their retries, until `jobkit queue resume NAME`."""
    changed = state.app().pause_queue(name)
    echo(f"queue {name} paused" if changed else f"queue {name} was paused already")


@queue.command()
@click.argument("name")
@app_command
def resume(state: State, name: str) -> None:
    """Let workers claim jobs of queue NAME again."""
    changed = state.app().resume_queue(name)
    echo(f"queue {name} resumed" if changed else f"queue {name} was not paused")
