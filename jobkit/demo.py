"""Internal: ``jobkit demo``, a mix of jobs moving through their states live, in a fresh folder.

It writes a ``jobs.yaml`` for the first-party ``Email`` and ``Invoice`` jobs (console email
transport, invoices that fail at random) plus a ``Report`` job of its own that always fails,
enqueues emails at several priorities, delayed jobs, invoices and one job it cancels, runs
``jobkit worker --burst`` over them, shows the jobs moving live, and ends with a summary table and
the paths of the two log files and how to open the dashboard (with a random password it made).
Nothing is left running afterwards.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

from jobkit.dashboard.passwords import hash_password
from jobkit.job import Job
from jobkit.logs import escape
from jobkit.records import JobStatus

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.text import Text

    from jobkit.app import JobKit

DEMO_CONFIG = """\
# Written by `jobkit demo`. Every key is explained in docs/configuration.md.
storage: sqlite:///jobkit.db
defaults:
  retry_attempts: 2
  retry_delay: 0.5
logging: {dir: logs, format: text}
worker: {poll_interval: 0.02, heartbeat: 0.2, lease: 10, shutdown_grace: 5}
jobs:
  Email:                      # from the jobkit-email package (entry point jobkit.jobs)
    options: {transport: console, sender: demo@example.com}
  Invoice:                    # from the jobkit-invoice package
    retry_attempts: 4         # overrides the package's own default
    retry_delay: 0.3
    options: {failure_rate: 0.35, work_seconds: 0.3, seed: 7}
  Report:                     # registered without an entry point
    class: jobkit.demo:ReportJob
    retry_attempts: 2
    retry_delay: 0.4
"""

#: The demo's dashboard section: a random password's hash (the password is printed at the end
#: and kept in dashboard-password.txt beside jobs.yaml).
DASHBOARD_CONFIG = """\
dashboard:
  password_hash: "{hash}"     # `jobkit dashboard hash-password` makes one
"""

#: The widest error the demo's table shows, in characters; a longer one ends with "…".
ERROR_WIDTH = 60

COLOURS = {
    JobStatus.PENDING: "white",
    JobStatus.RUNNING: "cyan",
    JobStatus.RETRYING: "yellow",
    JobStatus.COMPLETED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "magenta",
    JobStatus.BLOCKED: "blue",
}


def table_cell(value: str, *, width: int | None = None) -> Text:
    """Stored text as a rich table cell, safe to show whatever it holds.

    Control characters are escaped (as in the log files), the text is never read as markup,
    and it is cut to ``width`` characters with an ellipsis when longer.
    """
    from rich.text import Text

    shown = escape(value)
    if width is not None and len(shown) > width:
        shown = shown[: width - 1] + "\u2026"
    return Text(shown)


class ReportJob(Job):
    """The demo's job that fails for good: its report service never answers."""

    methods = ("build",)

    def build(self, month: str) -> None:
        self.log.info("building the report for {month}", month=month)
        raise ConnectionError(f"report service unreachable while building {month}")


def enqueue_mix(app: JobKit) -> str:
    """Enqueue the demo's jobs; return the id of the one to cancel."""
    people = ["ana", "bo", "chen", "dara", "eli", "fay", "gus", "hana", "ivo", "jun"]
    for index, name in enumerate(people):
        app.run_background_job(
            "Email",
            "send_email",
            {
                "to": f"{name}@example.com",
                "subject": f"Welcome, {name}",
                "message": f"Hello {name}, your account is ready.",
            },
            priority=index % 4,
        )
    app.run_background_job(
        "Email",
        "send_email",
        {"to": "ops@example.com", "subject": "Nightly digest", "message": "Sent after a delay."},
        delay=3,
    )
    for invoice_id in range(1001, 1013):
        app.run_background_job("Invoice", "complete", {"invoice_id": invoice_id}, priority=5)
    app.run_background_job("Invoice", "complete", {"invoice_id": 2001}, delay=2, priority=9)
    app.run_background_job("Report", "build", {"month": "2026-10"}, priority=1)
    return app.run_background_job(
        "Email",
        "send_email",
        {
            "to": "nobody@example.com",
            "subject": "Never sent",
            "message": "Cancelled before it ran.",
        },
        delay=30,
    )


def _table(app: JobKit, title: str) -> RenderableType:
    from rich.table import Table

    jobs = app.list_jobs(limit=1000)
    counts = Counter(job.status for job in jobs)
    summary = "  ".join(
        f"[{COLOURS[status]}]{status.value} {counts.get(status, 0)}[/]" for status in JobStatus
    )
    table = Table(title=f"{title}\n{summary}", expand=False)
    for column in ("id", "job", "priority", "status", "attempts", "error"):
        table.add_column(column)
    for job in sorted(jobs, key=lambda j: int(j.id)):
        colour = COLOURS[job.status]
        table.add_row(
            table_cell(job.id),
            table_cell(f"{job.name}.{job.method}"),
            str(job.priority),
            f"[{colour}]{job.status.value}[/]",
            f"{job.attempts}/{job.max_attempts}",
            table_cell(job.error or "", width=ERROR_WIDTH),
        )
    return table


def run_demo(folder: Path, *, workers: int = 2, timeout: float = 60.0) -> int:
    """Run the demo in ``folder``; return the worker's exit code."""
    from rich.console import Console

    folder.mkdir(parents=True, exist_ok=True)
    # jobs.yaml's relative paths (store, logs) are taken from its folder, wherever this runs
    return _run(Console(), folder, workers, timeout)


def _run(console: Console, folder: Path, workers: int, timeout: float) -> int:
    from rich.live import Live
    from rich.markup import escape as markup_escape

    from jobkit.app import JobKit

    for stale in folder.glob("jobkit.db*"):
        stale.unlink()
    config = folder / "jobs.yaml"
    password = secrets.token_urlsafe(9)
    config.write_text(DEMO_CONFIG + DASHBOARD_CONFIG.format(hash=hash_password(password)))
    password_file = folder / "dashboard-password.txt"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    console.print(f"[bold]jobkit demo[/] in {markup_escape(str(folder))} "
                  f"(config: {markup_escape(str(config))})")
    with JobKit.from_config(config) as app:
        logger.remove()  # the demo owns this process's output: the table, not log lines
        app.configure_logging()
        to_cancel = enqueue_mix(app)
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jobkit",
                "--config",
                str(config),
                "worker",
                "--concurrency",
                str(workers),
                "--burst",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        try:
            live = Live(_table(app, "jobs"), console=console, refresh_per_second=8, transient=True)
            with live:  # transient: the summary below replaces it (printed once when piped)
                time.sleep(0.5)
                app.cancel_job(to_cancel)
                while worker.poll() is None and time.monotonic() < deadline:
                    live.update(_table(app, "jobs"))
                    time.sleep(0.15)
        finally:
            if worker.poll() is None:
                worker.terminate()
            code = worker.wait(timeout=30)
        console.print(_table(app, "summary"))
        logs = Path(app.config.logging.dir)
    print(f"job log:   {logs / 'background_jobs.log'}")  # plain: a path must not wrap
    print(f"error log: {logs / 'background_jobs_errors.log'}")
    print(f"dashboard: jobkit --config {config} dashboard  ->  http://127.0.0.1:8000/ "
          f"(password: {password}, also in {password_file})")
    return code
