"""Turn the harness's results into tables (printed, and in ``RESULTS.md``) and a plot.

Every row compares a jobkit number with a reference (a peer, a raw SQLite limit, jobkit itself
in another state), gives the ratio jobkit / reference, the issue's target when it has one, and
a verdict, and says which of jobkit's virtualenvs it ran in: the *bare* install (jobkit alone)
or the *default* one (jobkit and every first-party plugin, a notifier configured). Each number
is the median of the runs; a run that failed leaves the cell empty.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Results = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """A target of the issue: ``kind`` is what is compared with ``threshold``.

    ``ratio_min``/``ratio_max``: the ratio jobkit / reference; ``value_min``/``value_max``:
    jobkit's own number.
    """

    kind: str
    threshold: float
    text: str

    def met(self, value: float | None, ratio: float | None) -> bool | None:
        """Whether the target is met (``None`` when a number is missing)."""
        subject = ratio if self.kind.startswith("ratio") else value
        if subject is None or math.isnan(subject):
            return None
        if self.kind.endswith("min"):
            return subject >= self.threshold
        return subject <= self.threshold

    def progress(self, value: float | None, ratio: float | None) -> float | None:
        """How far along the target is: 1.0 exactly met, above 1 beaten (for the plot)."""
        subject = ratio if self.kind.startswith("ratio") else value
        if subject is None or math.isnan(subject) or subject == 0:
            return None
        return subject / self.threshold if self.kind.endswith("min") else self.threshold / subject


@dataclass(frozen=True)
class Row:
    """One line of a table."""

    metric: str
    unit: str
    jobkit: float | None
    reference: str
    value: float | None
    target: Target | None = None
    note: str = ""
    venv: str = "bare"

    @property
    def ratio(self) -> float | None:
        """jobkit / reference."""
        if self.jobkit is None or self.value is None or self.value == 0:
            return None
        return self.jobkit / self.value

    @property
    def verdict(self) -> str:
        """met / NOT met / not measured, or empty without a target."""
        if self.target is None:
            return ""
        met = self.target.met(self.jobkit, self.ratio)
        return "not measured" if met is None else ("met" if met else "NOT met")


def runs(results: Results, backend: str, key: str, system: str) -> list[dict[str, Any]]:
    """The successful runs of one measurement."""
    found = results.get(backend, {}).get(key, {})
    if not isinstance(found, dict):
        return []
    return [run for run in found.get(system, []) if "error" not in run]


def med(results: Results, backend: str, key: str, system: str, field: str) -> float | None:
    """The median of ``field`` over the runs, or ``None``."""
    values = [run[field] for run in runs(results, backend, key, system)
              if isinstance(run.get(field), (int, float)) and not math.isnan(run[field])]
    return float(statistics.median(values)) if values else None


#: jobkit's systems in the results and the virtualenv each names (``run.py``).
VENVS = {"jobkit": "bare", "jobkit_default": "default"}


def measured_systems(results: Results, backend: str, key: str) -> list[str]:
    """jobkit's systems that ran ``key``: always the bare install, the default one if run."""
    found = results.get(backend, {}).get(key, {})
    return ["jobkit", *(["jobkit_default"] if isinstance(found, dict)
                        and "jobkit_default" in found else [])]


def per_venv(results: Results, backend: str, key: str, field: str, metric: str, unit: str,
             reference: str, value: float | None, target: Target | None = None) -> list[Row]:
    """One row per virtualenv jobkit ran ``key`` in, each against the same reference."""
    return [
        Row(metric, unit, med(results, backend, key, system, field), reference, value, target,
            venv=VENVS[system])
        for system in measured_systems(results, backend, key)
    ]


def _huey_full(results: Results, key: str) -> tuple[str, float | None]:
    """Huey at FULL: its default when that is FULL (measured once), else ``fsync=True``."""
    mode = results.get("sqlite", {}).get("huey_mode", {}).get("synchronous")
    if mode == "FULL":
        base = key.replace("_full", "")
        return "Huey, default (= FULL)", med(results, "sqlite", base, "huey", "rate")
    return "Huey, fsync=True (FULL)", med(results, "sqlite", key, "huey", "rate")


def sqlite_rows(results: Results) -> list[Row]:
    """The SQLite table: jobkit's defaults against Huey's."""
    if not results.get("sqlite"):
        return []
    sizes = results.get("meta", {}).get("sizes", {})

    def m(key: str, system: str, field: str = "rate") -> float | None:
        return med(results, "sqlite", key, system, field)

    huey = "Huey (SqliteHuey, default)"
    idle = sizes.get("idle_seconds", 10)

    def both(key: str, metric: str, unit: str = "jobs/s", field: str = "rate",
             target: Target | None = None) -> list[Row]:
        return per_venv(results, "sqlite", key, field, metric, unit, huey,
                        m(key, "huey", field), target)

    listener = runs(results, "sqlite", "listener", "jobkit")
    rows = [
        *both("enqueue", "enqueue, one call at a time",
              target=Target("ratio_min", 2, ">= 2x Huey")),
        Row("do-nothing jobkit_job_event listener, cost per event to the caller "
            "(lower is better)", "us", m("listener", "jobkit", "cost_us"),
            "enqueue, one at a time, with / without it" if listener else "", None,
            Target("value_max", 5, "<= 5 us"),
            note=(f"{m('listener', 'jobkit'):,.0f} / {m('listener', 'jobkit', 'rate_without'):,.0f}"
                  " jobs/s") if listener else ""),
        *per_venv(results, "sqlite", "bulk", "rate",
                  f"enqueue_many, batches of {sizes.get('bulk_batch', '?'):,}", "jobs/s",
                  "Huey: no bulk API", None, Target("value_min", 50_000, ">= 50,000 jobs/s")),
        *both("drain_1", "drain, 1 process"),
        *both("drain_2", "drain, 2 processes", target=Target("ratio_min", 3, ">= 3x Huey")),
        *both("drain_2", "CPU per job of a drain, 2 processes (lower is better)", "us",
              "cpu_per_job_us", Target("value_max", 150, "< 150 us")),
        *both("drain_1", "CPU per job of a drain, 1 process (lower is better)", "us",
              "cpu_per_job_us"),
        Row("drain, 2 processes, both FULL", "jobs/s", m("drain_full_2", "jobkit"),
            *_huey_full(results, "drain_full_2"), Target("ratio_min", 2, ">= 2x Huey")),
        Row("enqueue, one at a time, both FULL", "jobs/s", m("enqueue_full", "jobkit"),
            *_huey_full(results, "enqueue_full")),
        *both("drain_1", "worker start-up, 1 process (lower is better)", "s", "startup_s",
              Target("ratio_max", 2, "<= 2x Huey")),
        *both("drain_2", "worker start-up, 2 processes (lower is better)", "s", "startup_s",
              Target("ratio_max", 2, "<= 2x Huey")),
        Row("pick-up p50, idle worker (lower is better)", "ms", m("pickup", "jobkit", "p50_ms"),
            huey, m("pickup", "huey", "p50_ms"), Target("value_max", 5, "<= 5 ms")),
        Row("pick-up p95, idle worker (lower is better)", "ms", m("pickup", "jobkit", "p95_ms"),
            huey, m("pickup", "huey", "p95_ms")),
        Row(f"first pick-up after {idle:g} s idle (lower is better)", "ms",
            m("pickup", "jobkit", "after_idle_ms"), huey, m("pickup", "huey", "after_idle_ms")),
        Row("idle worker CPU, 1 process (lower is better)", "% core",
            m("pickup", "jobkit", "idle_cpu_percent"), huey,
            m("pickup", "huey", "idle_cpu_percent"), Target("value_max", 2, "< 2 % of a core")),
        Row("drain, 1 process, vs the raw claim+finish limit (information: target retired)",
            "jobs/s", m("drain_1", "jobkit"),
            "raw SQLite claim+finish, 1 process", m("raw_claim_finish", "raw")),
    ]
    rss = runs(results, "sqlite", "rss", "jobkit")
    if rss or "rss" in results["sqlite"]:
        last = rss[-1] if rss else {}
        rows.append(Row(
            f"worker RSS after {last.get('jobs', sizes.get('rss_jobs', 0)):,} jobs",
            "MB", last.get("late_mb"),
            f"RSS after {last.get('early_done', sizes.get('rss_early', 0)):,} jobs",
            last.get("early_mb"), Target("ratio_max", 1.10, "within 10 %"),
        ))
    if "scale_full" in results["sqlite"]:
        rows_in = results["sqlite"].get("scale_template", {}).get("rows", 0)
        rows.append(Row(
            f"drain, 1 process, {rows_in:,} finished jobs in the store", "jobs/s",
            m("scale_full", "jobkit"), "jobkit, empty store", m("scale_empty", "jobkit"),
            Target("ratio_min", 0.8, "within 20 %"),
        ))
    return rows


def startup_rows(results: Results) -> list[Row]:
    """How long jobkit takes to import and to print its help, in each virtualenv."""
    if not results.get("startup", {}).get("startup"):
        return []
    reference = "python -c pass (the interpreter alone)"

    def python(system: str) -> float | None:
        return med(results, "startup", "startup", system, "python_ms")

    return [
        Row(metric, "ms", med(results, "startup", "startup", system, field), reference,
            python(system), target, venv=VENVS[system])
        for metric, field, target in (
            ("import jobkit, in the interpreter (lower is better)", "import_ms",
             Target("value_max", 100, "<= 100 ms")),
            ("jobkit --help, the whole command (lower is better)", "help_ms",
             Target("value_max", 150, "<= 150 ms")),
        )
        for system in measured_systems(results, "startup", "startup")
    ]


def limit_rows(results: Results) -> list[Row]:
    """What SQLite allows on this disk (no reference, no target)."""
    def m(key: str) -> float | None:
        return med(results, "sqlite", key, "raw", "rate")

    return [
        Row("claim (UPDATE ... RETURNING) + separate finish, 1 process, NORMAL", "jobs/s",
            m("raw_claim_finish"), "", None),
        Row("one-row inserts, a commit each, synchronous=NORMAL", "rows/s",
            m("raw_insert_normal"), "", None),
        Row("one-row inserts, a commit each, synchronous=FULL", "rows/s",
            m("raw_insert_full"), "", None),
        Row("10,000-row batches, NORMAL", "rows/s", m("raw_batch"), "", None),
    ]


def flow_rows(results: Results) -> list[Row]:
    """Flow control (issue 18): how a concurrency limit is filled, drains against the base.

    The limit on SQLite and PostgreSQL; drains with no limit against the jobkit of
    ``--base-python``.
    """
    rows: list[Row] = []
    for backend, name in (("flow", "SQLite"), ("postgres", "PostgreSQL")):
        measured = runs(results, backend, "flow_concurrency", "jobkit")
        if not measured:
            continue
        first = measured[0]

        def m(field: str, scale: float = 1.0, backend: str = backend) -> float | None:
            value = med(results, backend, "flow_concurrency", "jobkit", field)
            return None if value is None else value * scale

        limit = first["concurrency"]
        what = (f"{name}, concurrency: {limit}, worker -n {first['processes']}, "
                f"{first['jobs']:,} jobs of {first['job_seconds'] * 1000:.0f} ms")
        rows += [
            Row(f"{what}: running / limit, mean of samples every ~{m('sample_ms') or 0:.0f} ms",
                "%", m("utilisation", 100), "", None, Target("value_min", 95, ">= 95 %")),
            Row(f"{what}: samples with {limit} running", "%", m("at_limit", 100), "", None),
            Row(f"{what}: most running at once, any sample", "jobs", m("peak"), "", None,
                Target("value_max", limit, f"<= {limit}")),
            Row(f"{what}: jobs finished per second", "jobs/s", m("rate"),
                f"{limit} / {first['job_seconds'] * 1000:.0f} ms", m("ideal_rate")),
        ]
    meta = results.get("meta", {})
    base = f"jobkit {meta.get('base_commit') or 'base'} (--base-python)"
    venv = "default" if (meta.get("virtualenvs") or {}).get("jobkit_default") else "bare"
    for processes in (1, 2):
        key = f"flow_drain_{processes}"
        if not runs(results, "flow", key, "jobkit"):
            continue
        rows += [
            Row(f"drain, no limits, {processes} process(es), this jobkit vs the base", "jobs/s",
                med(results, "flow", key, "jobkit", "rate"), base,
                med(results, "flow", key, "jobkit_base", "rate"),
                Target("ratio_min", 0.95, "within 5 %"), venv=venv),
            Row(f"drain, no limits, {processes} process(es): CPU per job (lower is better)",
                "us", med(results, "flow", key, "jobkit", "cpu_per_job_us"), base,
                med(results, "flow", key, "jobkit_base", "cpu_per_job_us"),
                Target("ratio_max", 1.05, "within 5 %"), venv=venv),
        ]
    return rows


def retention_rows(results: Results) -> list[Row]:
    """Retention (issue 19): a worker's drain beside a retention pass, against the same alone."""
    if not runs(results, "sqlite", "retention_drain", "jobkit"):
        return []
    return [Row("SQLite drain, worker -n 1, beside a retention pass over old jobs", "jobs/s",
                med(results, "sqlite", "retention_drain", "jobkit", "with"),
                "the same drain at the same time, no pass",
                med(results, "sqlite", "retention_drain", "jobkit", "without"),
                Target("ratio_min", 0.9, ">= 0.9 (noise about 10 %)"))]


def workflow_rows(results: Results) -> list[Row]:
    """Workflows (issue 20): a big group stored, and how soon released steps start.

    The stored group against ``enqueue_many`` of as many jobs and against a peer storing as
    many (no peer has groups); the latencies from the store's times, the jobs' clock beside.
    """
    rows: list[Row] = []
    peers = {"sqlite": ("huey", "Huey, the same number of tasks one at a time (no groups, "
                                "no bulk API)"),
             "postgres": ("procrastinate", "procrastinate, batch_defer of the same number "
                                           "of jobs (no groups)")}
    for backend, name in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        key = f"store_{backend}"
        measured = runs(results, "workflows", key, "jobkit")
        if measured:
            members = measured[0]["members"]
            jobs = f"{members + 1:,} jobs"

            def m(field: str, system: str = "jobkit", key: str = key) -> float | None:
                return med(results, "workflows", key, system, field)

            what = f"{name}: run_workflow, group of {members:,} + a callback given the results"
            peer, text = peers[backend]
            rows += [
                Row(f"{what} (lower is better)", "s", m("workflow_s"),
                    f"jobkit enqueue_many of the same {jobs}", m("enqueue_many_s"),
                    Target("value_max", 1.0, "< 1 s") if backend == "sqlite" else None),
                Row(f"{what}, CPU (lower is better)", "s",
                    m("workflow_cpu_s"), f"jobkit enqueue_many of the same {jobs}, CPU",
                    m("enqueue_many_cpu_s")),
                Row(f"{what}, vs a peer (lower is better)", "s", m("workflow_s"), text,
                    m("seconds", peer)),
            ]
        key = f"latency_{backend}"
        measured = runs(results, "workflows", key, "jobkit")
        if not measured:
            continue
        first = measured[0]

        def ms(field: str, key: str = key) -> str:
            value = med(results, "workflows", key, "jobkit", field)
            return "-" if value is None else f"{value:.1f} ms"

        where = f"{name}, worker -n {first['processes']}, store's times: "
        rows += [
            Row(f"{where}callback start - last member's finish, p50, {first['groups']} groups "
                f"of {first['members']} (lower is better)",
                "ms", med(results, "workflows", key, "jobkit", "group_p50_ms"),
                f"p95 {ms('group_p95_ms')}; the jobs' own clock (from the last member's "
                f"return): p50 {ms('group_job_p50_ms')}, p95 {ms('group_job_p95_ms')}", None,
                Target("value_max", 50, "p50 <= 50 ms")),
            Row(f"{where}chain step start - parent's finish, p50, "
                f"{first['chains'] * (first['length'] - 1)} steps (lower is better)", "ms",
                med(results, "workflows", key, "jobkit", "chain_p50_ms"),
                f"p95 {ms('chain_p95_ms')}; the jobs' own clock: p50 "
                f"{ms('chain_job_p50_ms')}, p95 {ms('chain_job_p95_ms')}", None),
        ]
        big = runs(results, "workflows", f"big_release_{backend}", "jobkit")
        if big:
            value = med(results, "workflows", f"big_release_{backend}", "jobkit", "group_job_ms")
            rows.append(Row(
                f"{where}the callback of a group of {big[0]['members']:,}: start - last "
                "member's finish (lower is better)", "ms",
                med(results, "workflows", f"big_release_{backend}", "jobkit", "group_ms"),
                f"the jobs' own clock: {'-' if value is None else f'{value:.1f}'} ms", None))
    return rows


def async_rows(results: Results) -> list[Row]:
    """Async jobs (issue 21): one worker process drains jobs that await I/O.

    On PostgreSQL against procrastinate's async worker (one process, concurrency 100); on
    SQLite jobkit alone, against the ceiling its concurrency allows.
    """
    rows: list[Row] = []
    first = next(iter(runs(results, "async", "drain_sqlite", "jobkit")
                      or runs(results, "async", "drain_postgres", "jobkit")), None)
    if first is None:
        return rows
    sizes = results.get("meta", {}).get("sizes", {})
    wait = sizes.get("async_wait", 0.01)
    what = f"async drain, 1 process, {sizes.get('async_jobs', '?'):,} jobs awaiting " \
           f"{wait * 1000:g} ms"

    def m(key: str, field: str, system: str = "jobkit") -> float | None:
        return med(results, "async", key, system, field)

    if runs(results, "async", "drain_sqlite", "jobkit"):
        rows += [
            Row(f"SQLite: {what}", "jobs/s", m("drain_sqlite", "rate"),
                "the ceiling of 100 at once (async_concurrency / the wait)", 100 / wait),
            Row(f"SQLite: {what}, worker CPU per job (lower is better)", "us",
                m("drain_sqlite", "worker_cpu_us"), "", None),
        ]
    if runs(results, "async", "drain_postgres", "jobkit"):
        peer = "procrastinate worker --concurrency 100"
        rows += [
            Row(f"PostgreSQL: {what}", "jobs/s", m("drain_postgres", "rate"), peer,
                m("drain_postgres", "rate", "procrastinate")),
            Row(f"PostgreSQL: {what}, worker CPU per job (lower is better)", "us",
                m("drain_postgres", "worker_cpu_us"), peer,
                m("drain_postgres", "worker_cpu_us", "procrastinate")),
            Row(f"PostgreSQL: {what}, server CPU per job (lower is better)", "us",
                m("drain_postgres", "server_cpu_us"), peer,
                m("drain_postgres", "server_cpu_us", "procrastinate")),
            Row("PostgreSQL: async drain, worker start-up (lower is better)", "s",
                m("drain_postgres", "startup_s"), peer,
                m("drain_postgres", "startup_s", "procrastinate")),
        ]
    return rows


def postgres_rows(results: Results) -> list[Row]:
    """The PostgreSQL table: jobkit against procrastinate."""
    pg = results.get("postgres", {})
    if not pg or pg.get("skipped"):
        return []
    sizes = results.get("meta", {}).get("sizes", {})

    def m(key: str, system: str, field: str = "rate") -> float | None:
        return med(results, "postgres", key, system, field)

    peer = "procrastinate (defaults)"
    idle = sizes.get("idle_seconds", 10)
    return [
        *per_venv(results, "postgres", "enqueue", "rate", "enqueue, one call at a time",
                  "jobs/s", peer, m("enqueue", "procrastinate"),
                  Target("ratio_min", 2, ">= 2x procrastinate")),
        Row("enqueue, one at a time, vs the raw one-row commit limit", "jobs/s",
            m("enqueue", "jobkit"), "raw psycopg INSERT, a commit each", m("raw_insert", "raw")),
        Row(f"enqueue_many vs batch_defer, batches of {sizes.get('bulk_batch', '?'):,}",
            "jobs/s", m("bulk", "jobkit"), "procrastinate batch_defer",
            m("bulk", "procrastinate")),
        Row("drain, 1 process", "jobs/s", m("drain_1", "jobkit"), peer,
            m("drain_1", "procrastinate")),
        Row("drain, 2 processes", "jobs/s", m("drain_2", "jobkit"), peer,
            m("drain_2", "procrastinate"), Target("ratio_min", 2, ">= 2x procrastinate")),
        Row("worker start-up, 1 process (lower is better)", "s",
            m("drain_1", "jobkit", "startup_s"), peer,
            m("drain_1", "procrastinate", "startup_s")),
        Row("worker start-up, 2 processes (lower is better)", "s",
            m("drain_2", "jobkit", "startup_s"), peer,
            m("drain_2", "procrastinate", "startup_s")),
        Row("pick-up p50, idle worker (lower is better)", "ms", m("pickup", "jobkit", "p50_ms"),
            peer, m("pickup", "procrastinate", "p50_ms"), Target("value_max", 5, "<= 5 ms")),
        Row("pick-up p95, idle worker (lower is better)", "ms", m("pickup", "jobkit", "p95_ms"),
            peer, m("pickup", "procrastinate", "p95_ms")),
        Row(f"first pick-up after {idle:g} s idle (lower is better)", "ms",
            m("pickup", "jobkit", "after_idle_ms"), peer,
            m("pickup", "procrastinate", "after_idle_ms")),
        Row("idle worker CPU, 1 process (lower is better)", "% core",
            m("pickup", "jobkit", "idle_cpu_percent"), peer,
            m("pickup", "procrastinate", "idle_cpu_percent")),
    ]


# -- formatting ------------------------------------------------------------------------------------


def number(value: float | None, unit: str) -> str:
    """A number as the tables show it."""
    if value is None or math.isnan(value):
        return "-"
    if unit in ("jobs/s", "rows/s"):
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:.1f}"
    if unit == "%":
        return f"{value:.1f}"
    if unit == "jobs":
        return f"{value:.0f}"
    if unit == "% core":
        return f"{value:.2f}"
    if unit == "us":
        return f"{value:.1f}"
    return f"{value:.2f}"


def cells(row: Row) -> list[str]:
    """A row's cells: metric, jobkit, reference, its value, ratio, target, verdict."""
    ratio = "-" if row.ratio is None else (
        f"{row.ratio:.2f}x" if row.ratio >= 0.1 else f"{row.ratio:.3f}x")
    reference = row.reference or "-"
    if row.note:
        reference += f" ({row.note})"
    return [
        f"{row.metric} ({row.unit})", row.venv, number(row.jobkit, row.unit), reference,
        number(row.value, row.unit), ratio, row.target.text if row.target else "-",
        row.verdict or "-",
    ]


HEADER = ["metric", "jobkit's virtualenv", "jobkit", "compared with", "its value",
          "jobkit / it", "target", "verdict"]


def text_table(rows: list[Row], header: list[str] = HEADER,
               render: Callable[[Row], list[str]] = cells) -> str:
    """An aligned plain-text table."""
    body = [render(row) for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
             for line in [header, *body]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(rows: list[Row], header: list[str] = HEADER,
                   render: Callable[[Row], list[str]] = cells) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in render(row)) + " |")
    return "\n".join(lines)


def limit_cells(row: Row) -> list[str]:
    """A limits row: what and how fast."""
    return [row.metric, f"{number(row.jobkit, row.unit)} {row.unit}"]


def _versions_line(results: Results) -> str:
    versions = results.get("meta", {}).get("versions", {})
    wanted = ["jobkit", "huey", "procrastinate", "psycopg", "psycopg-binary", "psycopg-pool"]
    return ", ".join(f"{name} {versions[name]}" for name in wanted if name in versions)


def print_tables(results: Results) -> None:
    """The tables on stdout."""
    meta = results.get("meta", {})
    print()
    print(f"jobkit benchmark ({'quick' if meta.get('quick') else 'full'} run, medians of "
          f"{meta.get('sizes', {}).get('runs', '?')} runs, jobkit commit "
          f"{meta.get('jobkit_commit', 'unknown')}; {_versions_line(results)})")
    for title, rows in (("Start-up", startup_rows(results)),
                        ("SQLite: jobkit vs Huey", sqlite_rows(results)),
                        ("PostgreSQL: jobkit vs procrastinate", postgres_rows(results)),
                        ("Flow control (issue 18)", flow_rows(results)),
                        ("Retention (issue 19)", retention_rows(results)),
                        ("Workflows (issue 20)", workflow_rows(results)),
                        ("Async jobs (issue 21)", async_rows(results))):
        if rows:
            print(f"\n{title}\n{text_table(rows)}")
    limits = [row for row in limit_rows(results) if row.jobkit is not None]
    if limits:
        print("\nSQLite on this disk (limits)\n"
              + text_table(limits, ["raw SQLite", "rate"], limit_cells))
    print(f"\nload average before: {meta.get('machine', {}).get('load_before')}; "
          f"after: {meta.get('machine', {}).get('load_after')}")


def markdown(results: Results, plot: str | None, docs: str = "../docs/performance.md") -> str:
    """``RESULTS.md`` (``docs``: the relative link to docs/performance.md)."""
    meta = results.get("meta", {})
    machine = meta.get("machine", {})
    sizes = meta.get("sizes", {})
    sqlite = results.get("sqlite", {})
    pg = results.get("postgres", {})
    server = pg.get("server") or results.get("async", {}).get("server")
    out = [
        "# jobkit benchmark results",
        "",
        f"Generated by `{meta.get('command', 'python bench/run.py')}` on {meta.get('started')}"
        + (f" for jobkit `{meta['jobkit_commit']}`" if meta.get("jobkit_commit") else "")
        + f" ({meta.get('minutes', 0):.1f} min, "
        f"{'quick smoke run' if meta.get('quick') else 'full run'});"
        f" each number is the median of {sizes.get('runs', '?')} run(s). Ratios are jobkit / the"
        " compared number: above 1 is better for rates, below 1 for times and CPU. How it is"
        f" measured: [docs/performance.md]({docs}).",
        "",
        "> The machine is shared: other work ran during the benchmark (load averages below), so"
        " absolute numbers are noisy; the ratios come from runs that alternate, and move less.",
        "",
    ]
    if plot:
        out += [f"![results]({plot})", ""]
    envs = meta.get("virtualenvs", {})
    out += [
        "jobkit's virtualenv, in each row: **bare** is "
        f"`{envs.get('jobkit') or '.venv-bench'}`, jobkit alone (with its `postgres` extra); "
        f"**default** is `{envs.get('jobkit_default') or '.venv-bench-default'}`, the default "
        "install: jobkit with its `postgres` and `dashboard` extras and every first-party plugin"
        " of `plugins/` (as `make install` installs them), and one notifier configured in "
        "jobs.yaml (a `webhook` for `failed` events, the first example of docs/notifiers.md, to"
        " a server on 127.0.0.1 that the measurement runs). The peers run in the bare one, next"
        " to each of jobkit's runs (twice a round when both virtualenvs are measured). Before"
        " measuring, the harness compiles jobkit's sources to bytecode and drops"
        " PYTHONDONTWRITEBYTECODE for what it starts, as an installed jobkit runs.",
        "",
    ]
    for title, rows in (("Start-up", startup_rows(results)),
                        ("SQLite: jobkit against Huey", sqlite_rows(results)),
                        ("PostgreSQL: jobkit against procrastinate", postgres_rows(results)),
                        ("Flow control (issue 18)", flow_rows(results)),
                        ("Retention (issue 19)", retention_rows(results)),
                        ("Workflows (issue 20)", workflow_rows(results)),
                        ("Async jobs (issue 21)", async_rows(results))):
        if rows:
            out += [f"## {title}", "", markdown_table(rows), ""]
    limits = [row for row in limit_rows(results) if row.jobkit is not None]
    if limits:
        out += ["## SQLite on this disk", "",
                markdown_table(limits, ["raw SQLite (Python sqlite3, WAL, one connection)",
                                        "rate"], limit_cells), ""]
    out += ["## Setup", ""]
    if sqlite:
        mode = sqlite.get("huey_mode", {})
        out += [
            "- jobkit (SQLite): `jobkit worker -n N --burst`, default worker settings "
            "(poll_interval 50 ms, lease 30 s, heartbeat 0.5 s, prefetch 32), WAL, "
            "synchronous=NORMAL; logs to files as `jobkit worker` always does.",
            "- jobkit FULL: the same with `durability: full` in jobs.yaml (synchronous=FULL).",
            "- Huey: `SqliteHuey` with its defaults (journal mode "
            f"{mode.get('journal_mode', '?')}, synchronous {mode.get('synchronous', '?')}), "
            "`huey_consumer -w N -k process`, other consumer options at their defaults (idle "
            "polling from 0.1 s growing 1.15x per empty poll up to 10 s). Huey deletes a task "
            "when it dequeues it and keeps no history; tasks return None, so no result is stored.",
        ]
    if pg.get("server"):
        out += [
            f"- PostgreSQL {pg['server']['version']}: {pg['server']['settings']}; jobkit and "
            "procrastinate each have a database of their own, emptied before every run.",
            "- jobkit (PostgreSQL): `jobkit worker -n N --burst`, default settings (pool_size 4,"
            " LISTEN/NOTIFY wake-ups, poll_interval 50 ms).",
            "- procrastinate: `App(connector=PsycopgConnector(conninfo=...))`, deferring from "
            "sync code (its sync psycopg pool, which checks each connection it hands out); "
            "N processes of `procrastinate worker` with defaults (concurrency 1, LISTEN/NOTIFY, "
            "5 s polling fallback, finished jobs kept).",
        ]
    out += [
        "- Workload: a no-op job with one int param. Drains time the jobs left at the first "
        "poll that sees one started until a poll (every 20 ms) sees none left; start-up (spawn "
        "to first job) is reported apart. Pick-up: one worker process, one job at a time, "
        "50-150 ms apart; latency = job start (stamped by the job) - return of the enqueue call."
        " CPU per job: user + system CPU of all the worker's processes from the first poll that"
        " sees a job started until the burst worker has exited (RUSAGE_CHILDREN, less what they"
        " had used at that poll), per job timed; Huey's from psutil over the same window while"
        " its consumer lives. Listener cost: two apps in one process, one with a"
        " `jobkit_job_event` plugin that returns at once, taking turns by blocks of 250"
        " enqueues; the difference in time per enqueue (one event each). Start-up: `import"
        " jobkit` timed inside a fresh interpreter, `jobkit --help` and `python -c pass` as whole"
        " commands, medians of `--startup-runs`.",
        *([] if not results.get("flow") else [
            "- Flow control (`--only flow`): `--flow-jobs` jobs of a job with `concurrency: 4` "
            "that each sleep 50 ms, drained by `jobkit worker -n 8 --burst`; the store is asked "
            "every 10 ms (plus the query's own time) how many are running and how many are "
            "unfinished, from the first sample that sees 4 running until fewer than 4 are left "
            "(the ramp and the tail apart; the peak over the whole drain). With `--base-python`,"
            " drains of no-op jobs with no limit configured (as the SQLite drains above) in that"
            " virtualenv's older jobkit and in this one, alternating."]),
        *([] if not results.get("workflows") else [
            "- Workflows (`--only workflows`, `bench/workflows.py`): `app.run_workflow` of a group"
            " of `--workflow-members` `Flow.member` steps and a `Flow.collect` callback given "
            "their results (`result_as`), the whole call timed (check, plan, one transaction), "
            "the flow built before the clock starts; `enqueue_many` of as many jobs takes turns "
            "with it in the same process and store (`--workflow-repeats` turns a run, medians). "
            "Latency: `jobkit worker -n 2` (not burst) runs `--workflow-groups` groups of "
            "`--workflow-group-members` no-op members and a callback and `--workflow-chains` "
            "chains of `--workflow-chain-length` steps, submitted one at a time 20-60 ms apart "
            "(no backlog); each released step's succeeded attempt's start minus its parents' "
            "last finish (the store's times: on PostgreSQL a transaction's start, so a step "
            "claimed in the transaction that completed its parent reads 0 or a little below), "
            "and the same from stamps the methods write (first line of the step, last line of "
            "its parents). The big group's callback: the stored group of `--workflow-members`, "
            "stored before the worker starts, drained by `jobkit worker -n 2`; one sample a "
            "run."]),
        *([] if not results.get("async") else [
            "- Async jobs (`--only async`): `--async-jobs` jobs whose `async def` method does "
            "`await asyncio.sleep(--async-wait)`, enqueued first, then drained by `jobkit worker"
            " -n 1 --burst` (`worker.async_concurrency` at its default, 100) on SQLite and on a"
            " PostgreSQL server of its own (the postgres section's settings), and by "
            "`procrastinate worker --concurrency 100` (one process, an `async def` task) in "
            "another database of that server, alternating. Rates as the drains above; CPU per "
            "job: the worker's process tree, and the server's (the postmaster's tree: its "
            "backends, and the ones it reaped, the harness's polling connection included for "
            "both), from the first poll that sees a job started to the one that sees none "
            "left."]),
        "",
        "## Sizes",
        "",
        ", ".join(f"{key.replace('_', ' ')} {value:,}" for key, value in sizes.items()),
        "",
        "## Machine",
        "",
        f"- CPU: {machine.get('cpu')}, {machine.get('cores')} cores, "
        f"{machine.get('memory_gib')} GiB memory",
        f"- Disk (stores): {machine.get('disk')}",
        f"- OS: {machine.get('os')}",
        f"- Python {machine.get('python')}, SQLite {machine.get('sqlite')}"
        + (f", PostgreSQL {server['version']} ({server['settings']})" if server else ""),
        f"- Load average (1, 5, 15 min) before: {machine.get('load_before')}; after: "
        f"{machine.get('load_after')}",
        "",
        "## Package versions (bench environment)",
        "",
        ", ".join(f"{name} {version}" for name, version in meta.get("versions", {}).items()),
        "",
    ]
    default_versions = meta.get("default_versions") or {}
    added = {name: version for name, version in default_versions.items()
             if meta.get("versions", {}).get(name) != version}
    if added:
        out += ["## Added in the default install's virtualenv", "",
                ", ".join(f"{name} {version}" for name, version in added.items()), ""]
    failures = [
        f"- {backend} {key} {system}: {run['error'].strip().splitlines()[-1]}"
        for backend in ("startup", "sqlite", "flow", "postgres", "workflows", "async")
        for key, systems in results.get(backend, {}).items() if isinstance(systems, dict)
        for system, measured in systems.items() if isinstance(measured, list)
        for run in measured if isinstance(run, dict) and "error" in run
    ]
    if failures:
        out += ["## Failed runs", "", *failures, ""]
    return "\n".join(out)


def plot(results: Results, path: Path) -> bool:
    """``results.png``: throughputs, pick-up latencies and the targets. False without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(2, 2, figsize=(14, 10))
    panels = [
        ("SQLite (jobs/s, log scale)", "sqlite", "huey", "Huey",
         [("enqueue", "enqueue"), ("drain\n1 process", "drain_1"),
          ("drain\n2 processes", "drain_2"), ("drain 2 proc.\nboth FULL", "drain_full_2"),
          ("enqueue\nboth FULL", "enqueue_full")]),
        ("PostgreSQL (jobs/s, log scale)", "postgres", "procrastinate", "procrastinate",
         [("enqueue", "enqueue"), ("bulk", "bulk"), ("drain\n1 process", "drain_1"),
          ("drain\n2 processes", "drain_2")]),
    ]
    for ax, (title, backend, peer, peer_name, metrics) in zip(axes[0], panels, strict=True):
        labels = [label for label, _ in metrics]
        ours = [med(results, backend, key, "jobkit", "rate") or 0 for _, key in metrics]
        theirs = []
        for _, key in metrics:
            if backend == "sqlite" and key in ("enqueue_full", "drain_full_2"):
                value = _huey_full(results, key)[1]
            else:
                value = med(results, backend, key, peer, "rate")
            theirs.append(value or 0)
        positions = range(len(labels))
        ax.bar([p - 0.2 for p in positions], ours, 0.4, label="jobkit", color="#2b7bba")
        ax.bar([p + 0.2 for p in positions], theirs, 0.4, label=peer_name, color="#aaaaaa")
        if backend == "sqlite":
            limit = med(results, "sqlite", "raw_claim_finish", "raw", "rate")
            if limit:
                ax.axhline(limit, color="#d62728", linestyle="--", linewidth=1,
                           label="raw claim+finish limit")
        ax.set_xticks(list(positions), labels)
        if any(ours) or any(theirs):
            ax.set_yscale("log")
        ax.set_title(title)
        ax.legend()
    ax = axes[1][0]
    systems = [("jobkit\nSQLite", "sqlite", "jobkit"), ("Huey", "sqlite", "huey"),
               ("jobkit\nPostgreSQL", "postgres", "jobkit"),
               ("procrastinate", "postgres", "procrastinate")]
    p50 = [med(results, backend, "pickup", system, "p50_ms") or 0
           for _, backend, system in systems]
    p95 = [med(results, backend, "pickup", system, "p95_ms") or 0
           for _, backend, system in systems]
    positions = range(len(systems))
    ax.bar([p - 0.2 for p in positions], p50, 0.4, label="p50", color="#2b7bba")
    ax.bar([p + 0.2 for p in positions], p95, 0.4, label="p95", color="#9ecae1")
    ax.axhline(5, color="#d62728", linestyle="--", linewidth=1, label="target p50 5 ms")
    ax.set_xticks(list(positions), [label for label, _, _ in systems])
    if any(p50) or any(p95):
        ax.set_yscale("log")
    ax.set_title("pick-up latency of an idle worker (ms, log scale)")
    ax.legend()
    ax = axes[1][1]
    targeted = [(backend, row) for backend, rows in (("start", startup_rows(results)),
                                                      ("SQLite", sqlite_rows(results)),
                                                      ("PG", postgres_rows(results)))
                for row in rows if row.target is not None]
    names = [f"{backend} ({row.venv}): {row.metric.replace(' (lower is better)', '')[:60]}"
             for backend, row in targeted]
    progress = [
        (row.target.progress(row.jobkit, row.ratio) if row.target else None) or 0
        for _, row in targeted
    ]
    colors = ["#2ca02c" if row.verdict == "met" else "#d62728" for _, row in targeted]
    ax.barh(range(len(names)), [min(value, 3.0) for value in progress], color=colors)
    for position, value in enumerate(progress):
        ax.text(min(value, 3.0) + 0.03, position, f"{value:.2f}", va="center", fontsize=7)
    ax.set_xlim(0, 3.4)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_title("targets: achieved / required (>= 1 is met)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def write(results: Results, output: Path) -> None:
    """Print the tables; write ``RESULTS.md`` and ``results.png`` into ``output``."""
    print_tables(results)
    drawn = plot(results, output / "results.png")
    docs = os.path.relpath(Path(__file__).resolve().parent.parent / "docs" / "performance.md",
                           output.resolve())
    (output / "RESULTS.md").write_text(markdown(results, "results.png" if drawn else None, docs))
    print(f"\nwrote {output / 'RESULTS.md'}" + (f" and {output / 'results.png'}" if drawn else ""))
