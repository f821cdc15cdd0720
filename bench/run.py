"""jobkit against its peers, side by side in one run on this machine: ``make bench``.

SQLite: jobkit against Huey 3 (``SqliteHuey``); PostgreSQL: jobkit against procrastinate 3
(psycopg 3), on a throw-away server. Every measurement runs in a fresh interpreter
(``child.py``) in a folder of its own, runs of jobkit and its peer alternate, and each number is
the median of ``--runs`` runs. The tables (with the issue's targets and a verdict for each) are
printed and written to ``bench/RESULTS.md`` with the machine and every package's version, the
raw numbers to ``bench/results.json``, and a plot to ``bench/results.png``.

jobkit's side runs in two virtualenvs (issue 17): the harness's own (``.venv-bench``: jobkit
alone, the *bare* install, system ``jobkit``) and ``--default-python``'s (``.venv-bench-default``:
the same plus every first-party plugin of ``plugins/``, with a webhook notifier configured, the
*default* install, system ``jobkit_default``). Before measuring, jobkit's sources are compiled
to bytecode (as an installed jobkit's are).

``--quick`` is a smoke run of a minute or two: small sizes, one run each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import machine
import report
from child import run_child
from common import BENCH, ROOT, bench_env, settle


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does.

    The defaults keep ``make bench`` near 20 minutes on a 2-core machine.
    """

    runs: int = 3
    enqueue_jobs: int = 5_000
    bulk_jobs: int = 50_000
    bulk_batch: int = 1_000
    drain_jobs: int = 10_000
    pg_enqueue_jobs: int = 3_000
    pg_bulk_jobs: int = 20_000
    pg_drain_jobs: int = 3_000
    pickup_samples: int = 40
    idle_seconds: float = 10.0
    rss_early: int = 1_000
    rss_jobs: int = 100_000
    scale_rows: int = 1_000_000
    raw_jobs: int = 20_000
    listener_jobs: int = 10_000
    startup_runs: int = 11
    flow_jobs: int = 600
    #: Jobs each side of a retention pair enqueues, and the seconds its rate is counted over.
    retention_jobs: int = 150_000
    retention_window: float = 8.0
    #: The members of the stored group (issue 20), and the turns of each run.
    workflow_members: int = 10_000
    workflow_repeats: int = 5
    #: The small groups and chains whose released steps' latency is measured (issue 20).
    workflow_groups: int = 200
    workflow_group_members: int = 5
    workflow_chains: int = 100
    workflow_chain_length: int = 5
    #: The async drain (issue 21): jobs whose ``async def`` method awaits ``async_wait`` s.
    async_jobs: int = 5_000
    async_wait: float = 0.01


QUICK = Sizes(
    runs=1, enqueue_jobs=1_000, bulk_jobs=5_000, drain_jobs=1_500, pg_enqueue_jobs=500,
    pg_bulk_jobs=5_000, pg_drain_jobs=500, pickup_samples=15, idle_seconds=3.0,
    rss_early=1_000, rss_jobs=5_000, scale_rows=100_000, raw_jobs=3_000,
    listener_jobs=2_000, startup_runs=5, flow_jobs=150, retention_jobs=60_000,
    retention_window=3.0, workflow_repeats=3, workflow_groups=50, workflow_chains=25,
    async_jobs=1_000,
)

SECTIONS = ("startup", "sqlite", "limits", "flow", "memory", "scale", "retention", "postgres",
            "workflows", "async")

#: The systems of jobkit's side: the virtualenv each runs in.
BARE, DEFAULT = "jobkit", "jobkit_default"
#: The system of the ``flow`` section's drains in ``--base-python``'s virtualenv (an older jobkit).
BASE = "jobkit_base"


class Harness:
    """Runs the measurements and collects their results."""

    def __init__(self, sizes: Sizes, workdir: Path, keep: bool,
                 default_python: str | None = None, base_python: str | None = None) -> None:
        self.sizes = sizes
        self.workdir = workdir
        self.keep = keep
        self.default_python = default_python
        self.base_python = base_python
        self.log = workdir / "harness.log"
        self.results: dict[str, Any] = {"startup": {}, "sqlite": {}, "flow": {},
                                        "postgres": {}, "workflows": {}, "async": {}}
        self._serial = 0

    def jobkits(self) -> list[tuple[str, dict[str, Any]]]:
        """jobkit's systems and the arguments that put a measurement in their virtualenv.

        The bare install, then the default one when ``--default-python`` names it.
        """
        found: list[tuple[str, dict[str, Any]]] = [(BARE, {})]
        if self.default_python:
            found.append((DEFAULT, {"python": self.default_python, "notifier": True}))
        return found

    def folder(self, name: str) -> Path:
        """A new folder for one measurement."""
        self._serial += 1
        return self.workdir / f"{self._serial:03d}-{name}"

    def measure(
        self,
        backend: str,
        key: str,
        system: str,
        target: str,
        show: Callable[[dict[str, Any]], str],
        **kwargs: Any,
    ) -> dict[str, Any] | None:
        """Run ``target`` in a child with ``kwargs`` (``workdir`` filled in when asked for
        with ``workdir=True``); record and print its result, or its error."""
        runs = self.results[backend].setdefault(key, {}).setdefault(system, [])
        folder = self.folder(f"{backend}-{key}-{system}")
        if kwargs.get("workdir") is True:
            kwargs["workdir"] = str(folder)
        label = f"[{backend}] {key} {system} #{len(runs) + 1}"
        print(f"{label} ...", end=" ", flush=True)
        settle()
        started = time.monotonic()
        python = kwargs.pop("python", None)
        try:
            result = run_child(target, self.log, python=python, **kwargs)
        except Exception as exc:  # one failed measurement must not lose the others
            message = str(exc).strip().splitlines()
            print(f"FAILED: {message[-1] if message else exc!r}", flush=True)
            with open(self.log, "a") as out:
                out.write(f"{label} failed:\n{exc}\n{traceback.format_exc()}\n")
            runs.append({"error": str(exc)[-2000:]})
            return None
        print(f"{show(result)}  ({time.monotonic() - started:.1f} s)", flush=True)
        runs.append(result)
        if not self.keep and folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        return result

    # -- SQLite --------------------------------------------------------------------------------

    def sqlite(self) -> None:
        """jobkit (SQLite, defaults) against Huey (SqliteHuey, defaults)."""
        s = self.sizes
        huey = run_child("huey_side:synchronous", self.log, workdir=str(self.folder("huey-mode")))
        self.results["sqlite"]["huey_mode"] = huey
        huey_full = "default" if huey["synchronous"] == "FULL" else "full"
        print(f"Huey's SQLite mode by default: {huey}; jobkit's FULL: `durability: full`")
        for _ in range(s.runs):
            for system, venv in self.jobkits():
                self.measure("sqlite", "enqueue", system, "jobkit_side:enqueue_one", rate,
                             workdir=True, storage="sqlite", jobs=s.enqueue_jobs, **venv)
                self.measure("sqlite", "enqueue", "huey", "huey_side:enqueue_one", rate,
                             workdir=True, jobs=s.enqueue_jobs)
            self.measure("sqlite", "listener", "jobkit", "jobkit_side:listener_cost",
                         lambda r: f"{r['cost_us']:.1f} us per event ({rate(r)} with, "
                                   f"{r['rate_without']:,.0f}/s without)",
                         workdir=True, jobs=s.listener_jobs)
            self.measure("sqlite", "enqueue_full", "jobkit", "jobkit_side:enqueue_one", rate,
                         workdir=True, storage="sqlite", jobs=s.enqueue_jobs, durability="full")
            if huey_full != "default":
                self.measure("sqlite", "enqueue_full", "huey", "huey_side:enqueue_one", rate,
                             workdir=True, jobs=s.enqueue_jobs, fsync="full")
            for system, venv in self.jobkits():
                self.measure("sqlite", "bulk", system, "jobkit_side:enqueue_bulk", rate,
                             workdir=True, storage="sqlite", jobs=s.bulk_jobs,
                             batch=s.bulk_batch, **venv)
        for _ in range(s.runs):
            for processes in (1, 2):
                key = f"drain_{processes}"
                for system, venv in self.jobkits():
                    self.measure("sqlite", key, system, "jobkit_side:drain", drained,
                                 workdir=True, storage="sqlite", jobs=s.drain_jobs,
                                 processes=processes, **venv)
                    self.measure("sqlite", key, "huey", "huey_side:drain", drained,
                                 workdir=True, jobs=s.drain_jobs, processes=processes)
            self.measure("sqlite", "drain_full_2", "jobkit", "jobkit_side:drain", drained,
                         workdir=True, storage="sqlite", jobs=s.drain_jobs, processes=2,
                         durability="full")
            if huey_full != "default":
                self.measure("sqlite", "drain_full_2", "huey", "huey_side:drain", drained,
                             workdir=True, jobs=s.drain_jobs, processes=2, fsync="full")
        for _ in range(s.runs):
            self.measure("sqlite", "pickup", "jobkit", "jobkit_side:pickup", picked,
                         workdir=True, storage="sqlite", samples=s.pickup_samples,
                         idle_seconds=s.idle_seconds)
            self.measure("sqlite", "pickup", "huey", "huey_side:pickup", picked,
                         workdir=True, samples=s.pickup_samples, idle_seconds=s.idle_seconds)

    def startup(self) -> None:
        """``import jobkit`` and ``jobkit --help`` in each of jobkit's virtualenvs."""
        for _ in range(self.sizes.runs):
            for system, venv in self.jobkits():
                self.measure("startup", "startup", system, "jobkit_side:startup",
                             lambda r: (f"import jobkit {r['import_ms']:.0f} ms, jobkit --help "
                                        f"{r['help_ms']:.0f} ms, python -c pass "
                                        f"{r['python_ms']:.0f} ms"),
                             runs=self.sizes.startup_runs, python=venv.get("python"))

    def limits(self) -> None:
        """Raw SQLite on the same disk: claim plus finish, one-row inserts, batches."""
        s = self.sizes
        for _ in range(s.runs):
            self.measure("sqlite", "raw_claim_finish", "raw", "raw_sqlite:claim_finish", rate,
                         workdir=True, jobs=s.raw_jobs)
            self.measure("sqlite", "raw_insert_normal", "raw", "raw_sqlite:inserts", rate,
                         workdir=True, rows=s.raw_jobs)
            self.measure("sqlite", "raw_insert_full", "raw", "raw_sqlite:inserts", rate,
                         workdir=True, rows=max(1, s.raw_jobs // 4), synchronous="FULL")
            self.measure("sqlite", "raw_batch", "raw", "raw_sqlite:batch_inserts", rate,
                         workdir=True, rows=max(s.raw_jobs * 10, 100_000))

    def flow(self) -> None:
        """Flow control (issue 18) on SQLite: how a ``concurrency: 4`` limit is filled.

        With ``--base-python``, also drains with no limit against that older jobkit,
        alternating.
        """
        s = self.sizes
        for _ in range(s.runs):
            self.measure("flow", "flow_concurrency", "jobkit", "jobkit_side:limited_drain",
                         utilised, workdir=True, storage="sqlite", jobs=s.flow_jobs)
        if not self.base_python:
            return
        new = {"python": self.default_python} if self.default_python else {}
        for _ in range(s.runs):
            for processes in (1, 2):
                for system, venv in ((BASE, {"python": self.base_python}), (BARE, new)):
                    self.measure("flow", f"flow_drain_{processes}", system,
                                 "jobkit_side:drain", drained, workdir=True, storage="sqlite",
                                 jobs=s.drain_jobs, processes=processes, **venv)

    def memory(self) -> None:
        """A worker process's RSS after ``rss_early`` and after ``rss_jobs`` jobs (once)."""
        s = self.sizes
        self.measure("sqlite", "rss", "jobkit", "jobkit_side:rss",
                     lambda r: f"{r['early_mb']:.1f} MB -> {r['late_mb']:.1f} MB",
                     workdir=True, jobs=s.rss_jobs, early=s.rss_early)

    def template(self, key: str, target: str, what: str) -> tuple[Path, dict[str, Any]]:
        """A store of ``scale_rows`` finished jobs built by ``target``: its folder and report.

        The report is kept as ``results["sqlite"][key]``."""
        folder = self.folder(key.replace("_", "-"))
        print(f"[sqlite] building a store with {self.sizes.scale_rows:,} {what} ...", end=" ",
              flush=True)
        template = run_child(target, self.log, workdir=str(folder), rows=self.sizes.scale_rows)
        print(f"{template['mb']:.0f} MB in {template['seconds']:.1f} s", flush=True)
        self.results["sqlite"][key] = template
        return folder, template

    def scale(self) -> None:
        """Drain (1 process) with ``scale_rows`` finished jobs in the store vs an empty one."""
        s = self.sizes
        folder, template = self.template("scale_template", "jobkit_side:scale_template",
                                         "finished jobs")
        for _ in range(s.runs):
            self.measure("sqlite", "scale_empty", "jobkit", "jobkit_side:drain", drained,
                         workdir=True, storage="sqlite", jobs=s.drain_jobs, processes=1)
            self.measure("sqlite", "scale_full", "jobkit", "jobkit_side:drain", drained,
                         workdir=True, storage="sqlite", jobs=s.drain_jobs, processes=1,
                         seed=template["path"])
        if not self.keep:
            shutil.rmtree(folder, ignore_errors=True)

    def retention(self) -> None:
        """A worker's drain rate beside a retention pass over ``scale_rows`` old jobs, and without.

        Two workers at once, one beside the pass (``bench/retention_drain.py``)."""
        s = self.sizes
        folder, template = self.template("retention_template", "retention_drain:template",
                                         "finished jobs 30 days old")
        for _ in range(s.runs):
            self.measure("sqlite", "retention_drain", "jobkit", "retention_drain:pair",
                         lambda r: (f"ratio {r['ratio']:.2f} ({r['with']:.0f} beside the pass"
                                    f" / {r['without']:.0f} jobs/s alone)"),
                         workdir=True, seed=template["path"], jobs=s.retention_jobs,
                         processes=1, window=s.retention_window)
        if not self.keep:
            shutil.rmtree(folder, ignore_errors=True)

    # -- workflows (issue 20) ------------------------------------------------------------------

    def workflows(self, durable: bool) -> None:
        """A group of ``workflow_members`` stored, and how soon released steps start.

        On SQLite, then on a PostgreSQL server of its own (``bench/workflows.py``). The stored
        group against ``enqueue_many`` of as many jobs (in the same child), and against a peer
        storing as many jobs its fastest way (neither has groups): Huey one task at a time (it
        has no bulk API), procrastinate's ``batch_defer`` of them all.
        """
        import workflows  # imports jobkit: only when this section runs
        from pg import BenchServer, find_bin_dir, reset

        s = self.sizes
        jobs = s.workflow_members + 1
        store = {"members": s.workflow_members, "repeats": s.workflow_repeats}
        latency = {"groups": s.workflow_groups, "members": s.workflow_group_members,
                   "chains": s.workflow_chains, "length": s.workflow_chain_length}
        for _ in range(s.runs):
            self.measure("workflows", "store_sqlite", "jobkit", "workflows:store_group",
                         workflows.shown_store, workdir=True, storage="sqlite", **store)
            self.measure("workflows", "store_sqlite", "huey", "huey_side:enqueue_one", timed,
                         workdir=True, jobs=jobs)
        for _ in range(s.runs):
            self.measure("workflows", "latency_sqlite", "jobkit", "workflows:release_latency",
                         workflows.shown_latency, workdir=True, storage="sqlite", **latency)
            self.measure("workflows", "big_release_sqlite", "jobkit", "workflows:big_release",
                         workflows.shown_big, workdir=True, storage="sqlite",
                         members=s.workflow_members)
        bin_dir = find_bin_dir()
        if bin_dir is None:
            print("workflows on PostgreSQL: no server binaries (initdb, pg_ctl); skipped")
            return
        import procrastinate_side

        server = BenchServer(bin_dir, durable=durable)
        server.start()
        try:
            ours = server.create_database("jobkit")
            theirs = server.create_database("procrastinate")
            run_child("procrastinate_side:apply_schema", self.log, url=theirs)
            for _ in range(s.runs):
                reset(ours)
                self.measure("workflows", "store_postgres", "jobkit", "workflows:store_group",
                             workflows.shown_store, workdir=True, storage=ours, **store)
                procrastinate_side.reset(theirs)
                self.measure("workflows", "store_postgres", "procrastinate",
                             "procrastinate_side:enqueue_bulk", timed, url=theirs, jobs=jobs,
                             batch=jobs)
            for _ in range(s.runs):
                reset(ours)
                self.measure("workflows", "latency_postgres", "jobkit",
                             "workflows:release_latency", workflows.shown_latency,
                             workdir=True, storage=ours, **latency)
                reset(ours)
                self.measure("workflows", "big_release_postgres", "jobkit",
                             "workflows:big_release", workflows.shown_big, workdir=True,
                             storage=ours, members=s.workflow_members)
        finally:
            server.cleanup()

    # -- async jobs (issue 21) -----------------------------------------------------------------

    def async_drain(self, durable: bool) -> None:
        """Jobs whose ``async def`` method awaits ``async_wait`` s, drained by one process.

        ``jobkit worker -n 1 --burst`` (``worker.async_concurrency`` at its default, 100) on
        SQLite, then on a PostgreSQL server of its own against ``procrastinate worker
        --concurrency 100`` (one process), each in a database of its own, alternating.
        """
        import procrastinate_side
        from pg import reset

        s = self.sizes
        work = {"jobs": s.async_jobs, "processes": 1, "wait": s.async_wait, "workdir": True}
        for _ in range(s.runs):
            self.measure("async", "drain_sqlite", "jobkit", "jobkit_side:drain", drained,
                         storage="sqlite", **work)
        with self.pg_server("async", durable) as found:
            if found is None:
                return
            server, ours, theirs = found
            for _ in range(s.runs):
                reset(ours)
                self.measure("async", "drain_postgres", "jobkit", "jobkit_side:drain", drained,
                             storage=ours, server_pid=server.postmaster(), **work)
                procrastinate_side.reset(theirs)
                self.measure("async", "drain_postgres", "procrastinate",
                             "procrastinate_side:drain", drained, url=theirs,
                             server_pid=server.postmaster(), concurrency=100, **work)

    # -- PostgreSQL ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def pg_server(self, backend: str, durable: bool) -> Iterator[tuple[Any, str, str] | None]:
        """A throw-away PostgreSQL server with a database for jobkit and one for procrastinate.

        Yields ``(server, jobkit's URL, procrastinate's URL)`` (its version and settings kept
        as ``results[backend]["server"]``), or ``None`` without the server binaries.
        """
        from pg import BenchServer, find_bin_dir

        bin_dir = find_bin_dir()
        if bin_dir is None:
            print("PostgreSQL: the server binaries (initdb, pg_ctl) are not installed; skipped")
            self.results[backend]["skipped"] = "no PostgreSQL server binaries"
            yield None
            return
        server = BenchServer(bin_dir, durable=durable)
        server.start()
        try:
            self.results[backend]["server"] = {
                "version": server.version(), "settings": server.settings}
            ours = server.create_database("jobkit")
            theirs = server.create_database("procrastinate")
            run_child("procrastinate_side:apply_schema", self.log, url=theirs)
            print(f"PostgreSQL {server.version()} on port {server.port} ({server.settings})")
            yield server, ours, theirs
        finally:
            server.cleanup()

    def postgres(self, durable: bool) -> None:
        """jobkit (PostgreSQL) against procrastinate, each in a database of its own."""
        import procrastinate_side
        from pg import reset

        with self.pg_server("postgres", durable) as found:
            if found is None:
                return
            _, ours, theirs = found
            s = self.sizes

            def jobkit(key: str, target: str, show: Callable[[dict[str, Any]], str],
                       **kwargs: Any) -> None:
                reset(ours)
                self.measure("postgres", key, "jobkit", target, show, storage=ours, **kwargs)

            def peer(key: str, target: str, show: Callable[[dict[str, Any]], str],
                     **kwargs: Any) -> None:
                procrastinate_side.reset(theirs)
                self.measure("postgres", key, "procrastinate", target, show, url=theirs,
                             **kwargs)

            def default(key: str, target: str, show: Callable[[dict[str, Any]], str],
                        **kwargs: Any) -> None:
                for system, venv in self.jobkits()[1:]:
                    reset(ours)
                    self.measure("postgres", key, system, target, show, storage=ours,
                                 **venv, **kwargs)

            for _ in range(s.runs):
                jobkit("enqueue", "jobkit_side:enqueue_one", rate, workdir=True,
                       jobs=s.pg_enqueue_jobs)
                peer("enqueue", "procrastinate_side:enqueue_one", rate, jobs=s.pg_enqueue_jobs)
                default("enqueue", "jobkit_side:enqueue_one", rate, workdir=True,
                        jobs=s.pg_enqueue_jobs)
                self.measure("postgres", "raw_insert", "raw", "raw_postgres:inserts", rate,
                             url=ours, rows=s.pg_enqueue_jobs)
                jobkit("bulk", "jobkit_side:enqueue_bulk", rate, workdir=True,
                       jobs=s.pg_bulk_jobs, batch=s.bulk_batch)
                peer("bulk", "procrastinate_side:enqueue_bulk", rate, jobs=s.pg_bulk_jobs,
                     batch=s.bulk_batch)
            for _ in range(s.runs):
                for processes in (1, 2):
                    jobkit(f"drain_{processes}", "jobkit_side:drain", drained, workdir=True,
                           jobs=s.pg_drain_jobs, processes=processes)
                    peer(f"drain_{processes}", "procrastinate_side:drain", drained,
                         workdir=True, jobs=s.pg_drain_jobs, processes=processes)
            for _ in range(s.runs):
                jobkit("flow_concurrency", "jobkit_side:limited_drain", utilised, workdir=True,
                       jobs=s.flow_jobs)
            for _ in range(s.runs):
                jobkit("pickup", "jobkit_side:pickup", picked, workdir=True,
                       samples=s.pickup_samples, idle_seconds=s.idle_seconds)
                peer("pickup", "procrastinate_side:pickup", picked, workdir=True,
                     samples=s.pickup_samples, idle_seconds=s.idle_seconds)


def compile_sources(pythons: list[str]) -> None:
    """Compile jobkit's, the plugins' and bench's sources to bytecode with each interpreter.

    So that no measurement pays for compiling them (an installed jobkit ships compiled).
    """
    for python in dict.fromkeys(pythons):
        subprocess.run([python, "-m", "compileall", "-q", "jobkit", "plugins", "bench"],
                       cwd=ROOT, env=bench_env(), check=True, stdout=subprocess.DEVNULL)


def compile_installed(python: str) -> str:
    """Compile the jobkit that ``python`` imports to bytecode; its commit, or ``unknown``.

    Wherever that jobkit lives; the commit is ``git describe --always --dirty`` in its folder.
    """
    done = subprocess.run([python, "-c", "import compileall, jobkit, os; "
                           "folder = os.path.dirname(jobkit.__file__); "
                           "compileall.compile_dir(folder, quiet=1); print(folder)"],
                          env=bench_env(), check=True, capture_output=True, text=True, cwd="/")
    described = subprocess.run(["git", "describe", "--always", "--dirty"],
                               cwd=done.stdout.strip().splitlines()[-1], capture_output=True,
                               text=True, check=False)
    return described.stdout.strip() or "unknown"


def rate(result: dict[str, Any]) -> str:
    """A throughput result, for the progress lines."""
    return f"{result['rate']:,.0f}/s"


def timed(result: dict[str, Any]) -> str:
    """A timed batch of jobs, for the progress lines."""
    return f"{result['seconds'] * 1000:,.0f} ms ({result['rate']:,.0f}/s)"


def drained(result: dict[str, Any]) -> str:
    """A drain result, for the progress lines."""
    cpu = result.get("cpu_per_job_us", result.get("worker_cpu_us"))
    server = result.get("server_cpu_us")
    return (f"{result['rate']:,.0f} jobs/s (start-up {result['startup_s']:.2f} s"
            + (f", {cpu:.0f} us CPU per job" if cpu is not None else "")
            + (f", server {server:.0f} us" if server is not None else "") + ")")


def utilised(result: dict[str, Any]) -> str:
    """A concurrency-limit drain result, for the progress lines."""
    return (f"{result['mean_running']:.2f} of {result['concurrency']} running "
            f"({result['at_limit']:.0%} of samples at the limit, peak {result['peak']}), "
            f"{result['rate']:.1f} jobs/s of {result['ideal_rate']:.0f}")


def picked(result: dict[str, Any]) -> str:
    """A pick-up result, for the progress lines."""
    return (f"p50 {result['p50_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms, "
            f"idle CPU {result['idle_cpu_percent']:.2f} %")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: ``--quick``, sizes, sections, output."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 1-2 minute smoke run")
    for field in fields(Sizes):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default),
                            default=None, help=f"default {field.default:,}")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections among {', '.join(SECTIONS)}")
    parser.add_argument("--default-python", default=None,
                        help="the interpreter of the default install's virtualenv (jobkit and "
                             "every plugin of plugins/; `make bench` passes "
                             ".venv-bench-default's); without it only the bare install is "
                             "measured")
    parser.add_argument("--base-python", default=None,
                        help="the interpreter of a virtualenv with an older jobkit (e.g. "
                             "/work/wt/base/.venv/bin/python): the flow section then drains "
                             "with no limit in it and in --default-python's (else this one's), "
                             "alternating")
    parser.add_argument("--pg-fast", action="store_true",
                        help="run PostgreSQL with the tests' fsync=off settings")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the stores go (default: a new folder in the system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the stores and logs")
    parser.add_argument("--output", type=Path, default=None,
                        help="folder of RESULTS.md, results.json, results.png (default bench/, "
                             "bench/quick/ with --quick)")
    parser.add_argument("--report-only", action="store_true",
                        help="only render the report again from OUTPUT/results.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print the tables, write the report."""
    args = parse(argv)
    output: Path = args.output or (BENCH / "quick" if args.quick else BENCH)
    if args.report_only:
        results = json.loads((output / "results.json").read_text())
        report.write(results, output)
        return
    sizes = QUICK if args.quick else Sizes()
    sizes = replace(sizes, **{
        field.name: getattr(args, field.name) for field in fields(Sizes)
        if getattr(args, field.name) is not None
    })
    sections = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        sys.exit(f"unknown sections: {', '.join(sorted(unknown))}")
    default_python, base_python = args.default_python, args.base_python
    for option, given in (("--default-python", default_python), ("--base-python", base_python)):
        if given and not Path(given).exists():
            sys.exit(f"{option} {given}: no such interpreter (make bench-install)")
    compile_sources([sys.executable, *([default_python] if default_python else [])])
    base_commit = compile_installed(base_python) if base_python else None
    workdir = Path(tempfile.mkdtemp(prefix="jobkit-bench-", dir=args.workdir))
    harness = Harness(sizes, workdir, args.keep, default_python, base_python)
    started = time.time()
    info = machine.describe(workdir)
    print(f"jobkit benchmark, {'quick' if args.quick else 'full'} run, stores in {workdir} "
          f"({info['disk']})")
    print(f"load average before: {info['load_before']}")
    try:
        if "startup" in sections:
            harness.startup()
        if "sqlite" in sections:
            harness.sqlite()
        if "limits" in sections:
            harness.limits()
        if "flow" in sections:
            harness.flow()
        if "memory" in sections:
            harness.memory()
        if "scale" in sections:
            harness.scale()
        if "retention" in sections:
            harness.retention()
        if "postgres" in sections:
            harness.postgres(durable=not args.pg_fast)
        if "workflows" in sections:
            harness.workflows(durable=not args.pg_fast)
        if "async" in sections:
            harness.async_drain(durable=not args.pg_fast)
    finally:
        info["load_after"] = machine.load()
        harness.results["meta"] = {
            "machine": info,
            "versions": machine.versions(),
            "default_versions": (
                run_child("machine:versions", harness.log, python=default_python)
                if default_python else {}),
            "base_commit": base_commit,
            "virtualenvs": {
                BASE: base_python and str(Path(base_python).absolute().parent.parent),
                BARE: os.path.relpath(sys.prefix, ROOT),
                DEFAULT: default_python and os.path.relpath(
                    Path(default_python).absolute().parent.parent, ROOT)},
            "sizes": asdict(sizes),
            "quick": args.quick,
            "sections": sections,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
            "minutes": (time.time() - started) / 60,
            "command": " ".join(["python bench/run.py", *(argv or sys.argv[1:])]),
            "jobkit_commit": machine.commit(),
        }
        output.mkdir(parents=True, exist_ok=True)
        (output / "results.json").write_text(json.dumps(harness.results, indent=1))
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report.write(harness.results, output)


if __name__ == "__main__":
    main()
