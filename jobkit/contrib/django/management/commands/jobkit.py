"""Internal: ``python manage.py jobkit ...``: jobkit's command with the ``JOBKIT`` setting.

Every subcommand of ``jobkit`` (``worker``, ``status``, ``list``, ``dashboard``...) runs with
the configuration read from the Django settings instead of ``jobs.yaml``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import connections


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no type hints
    """Hands its arguments to jobkit's click group, its app built from the settings."""

    help = "Run a jobkit command (worker, status, list...) with settings.JOBKIT."

    def run_from_argv(self, argv: list[str]) -> None:
        """Run ``jobkit`` with ``argv[2:]`` (after ``manage.py jobkit``); it exits the process."""
        _run(argv[2:], f"{argv[0]} {argv[1]}")

    def print_help(self, prog_name: str, subcommand: str) -> None:
        """``manage.py help jobkit``: jobkit's own help."""
        _run(["--help"], f"{prog_name} {subcommand}")

    def handle(self, *args: Any, **options: Any) -> None:  # call_command: not supported
        """Refused: ``call_command("jobkit", ...)`` would exit the caller's process."""
        from django.core.management.base import CommandError

        raise CommandError("run 'python manage.py jobkit ...' from a shell")


def _run(args: list[str], prog_name: str) -> None:
    """jobkit's click group on ``args``, with the configuration of the Django settings."""
    from jobkit.cli import main
    from jobkit.cli.group import State
    from jobkit.contrib.django import get_app

    # worker processes fork from this one: no Django connection may be shared with them
    connections.close_all()
    main.main(args, prog_name=prog_name, obj=State(settings=get_app().config))
