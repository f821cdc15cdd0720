"""Internal: ``jobkit demo``, jobkit at work on a mix of jobs in a folder of its own."""

from __future__ import annotations

import sys

import click

from jobkit.cli.group import main
from jobkit.cli.output import handle_errors
from jobkit.limits import CONCURRENCY


@main.command(
    help="Show jobkit at work: a mix of jobs moving through their states, live (needs the\n"
    "jobkit-email and jobkit-invoice packages)."
)
@click.option("--dir", "folder", type=click.Path(file_okay=False), default="jobkit-demo",
              show_default=True,
              help="The folder the demo writes its jobs.yaml, store and logs to.")
@click.option("--workers", type=click.IntRange(1, int(CONCURRENCY.high)), default=2,
              show_default=True, help="Worker processes.")
@handle_errors
def demo(folder: str, workers: int) -> None:
    """Run the demo in ``folder`` with ``workers`` worker processes."""
    from pathlib import Path

    from jobkit.demo import run_demo

    sys.exit(run_demo(Path(folder).resolve(), workers=workers))
