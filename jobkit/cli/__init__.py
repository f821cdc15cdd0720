"""Internal: the ``jobkit`` command, a click group (:mod:`.group`) and one module per area.

Exit codes: 0 success; 1 the operation failed (unknown job id, a job that cannot be cancelled,
invalid params, a failed job with ``--wait``); 2 bad usage or configuration. Errors are printed
as one line on stderr, never as a traceback (:mod:`.output`).

Stored text (a job's error, params, result, name) is shown with its control characters escaped
(:func:`jobkit.logs.escape`, as in the log files) and never read as rich markup, so no job can
move the cursor, retitle the terminal or split one job's line in two; ``--json`` output is JSON.

Each command module registers its commands on :data:`main` when imported, and imports what
only its commands need (the worker, the dashboard, rich) inside them.
"""

from __future__ import annotations

# each command module registers its commands on main as it is imported
from jobkit.cli import (  # noqa: F401
    act,
    dashboard,
    demo,
    queues,
    run,
    schedules,
    show,
    upkeep,
    worker,
    workflows,
)
from jobkit.cli.group import main
from jobkit.cli.show import print_table as _print_table  # as tests/test_storage_rows.py names it

__all__ = ["_print_table", "main"]
