"""Internal: the ``jobkit`` group: its global options, the app it builds, its usage errors.

The commands, in the sibling modules, register on :data:`main` and reach the app through
:data:`pass_state`; :func:`config_option` and :func:`json_option` are the options they share.
"""

from __future__ import annotations

import atexit
import functools
import gc
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, cast

import click

from jobkit.cli.output import F, fail, handle_errors


class State:
    """The ``--config`` path, and the app built from it on first use.

    ``settings``, a ``Config`` already read, is used instead of the file (``manage.py jobkit``
    passes the one of the Django settings).
    """

    def __init__(self, config: str | None = None, settings: Any = None) -> None:
        self.config = config
        self._app: Any = None
        self._settings: Any = settings

    def settings(self) -> Any:
        """The configuration the app is built from, read on first use.

        ``jobkit worker`` reads it before the app, to start its processes."""
        if self._settings is None:
            from jobkit.app import load_app_config

            self._settings = load_app_config(self.config)
        return self._settings

    def close(self) -> None:
        """Deliver pending events and close the store, if the app was built."""
        if self._app is not None:
            self._app.close()

    def app(self, *, log: bool = True) -> Any:
        """The app, with the job log configured."""
        if self._app is None:
            from loguru import logger  # here: --help and usage errors do without it

            from jobkit.app import JobKit
            from jobkit.logs import configure_logging

            self._app = JobKit(self.settings())  # as JobKit.from_config(self.config)
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
        _freeze_at_exit()
        try:
            code: Any = run(**extra)
        except click.ClickException as exc:
            context = getattr(exc, "ctx", None)
            hint = f" (see '{context.command_path} --help')" if context is not None else ""
            fail(f"{exc.format_message()}{hint}", exc.exit_code)
        except click.Abort:
            fail("aborted")
        sys.exit(code if isinstance(code, int) else 0)


def _freeze_at_exit() -> None:
    """Spare the interpreter's exit a walk of every object: the command's objects, frozen.

    At exit, after the other ``atexit`` handlers (registered later, called first), the objects
    alive are moved out of the garbage collector's reach (``gc.freeze``), so the collections of
    the interpreter's shutdown do not walk them all: 25-40 ms of CPU less at the end of
    ``jobkit worker`` (the objects of jobkit, loguru, click and the app). Python does not
    promise to finalize objects still alive at exit, and jobkit closes what it opened (the
    store, the log files) before. Registered once per process.
    """
    global _exit_hooked
    if not _exit_hooked:
        atexit.register(gc.freeze)
        _exit_hooked = True


_exit_hooked = False


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


def app_command(command: F) -> F:
    """A command that works on the app: ``--config`` after its name too, the State passed.

    It gets the :class:`State` as its first argument; jobkit's errors end it as one line on
    stderr (:func:`~jobkit.cli.output.handle_errors`).
    """
    return config_option(cast(F, pass_state(handle_errors(command))))


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
