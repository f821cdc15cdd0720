"""jobkit's side of the benchmark: each public function is one measurement.

Each runs in a fresh interpreter started by the harness (``child.py``), in a folder of its own.

``storage`` is ``"sqlite"`` (a new file in the folder) or a ``postgresql://`` URL (the harness
empties the database between runs). Workers are real ``jobkit worker`` processes (a supervisor
and ``-n`` spawned processes) with default worker settings; the configuration written here
changes only where the store and the logs go, and, with ``notifier=True`` (the default
install's runs, in a virtualenv with ``jobkit-notify``), adds the notifier of
docs/notifiers.md's first example: a webhook for failed jobs, to a server on 127.0.0.1 that
this process runs.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import yaml
from common import (
    BENCH,
    StampReader,
    bench_env,
    children_cpu_seconds,
    chunks,
    pickup_loop,
    settle,
    spawn,
    stop,
    tail,
    tree_cpu_seconds,
    watch_drain,
)

from jobkit import JobKit
from jobkit.records import JobStatus

#: The ``async`` drain's job, in every drain's jobs.yaml.
WAITER = {"Waiter": {"class": "jobkit_jobs:Waiter"}}
#: Statuses of a job that is not finished yet.
UNFINISHED = "('pending', 'retrying', 'running')"


class _Receiver(BaseHTTPRequestHandler):
    """The webhook's receiving end: counts the POSTs, answers 204."""

    received = 0

    def do_POST(self) -> None:
        """Read the body, count it, answer."""
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received += 1
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        """Quiet."""


_SERVER: ThreadingHTTPServer | None = None


def _webhook_url() -> str:
    """The URL of a webhook receiver on 127.0.0.1, started once in this process."""
    global _SERVER
    if _SERVER is None:
        _SERVER = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
        threading.Thread(target=_SERVER.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{_SERVER.server_port}/jobkit"


def setup(
    workdir: str,
    storage: str,
    durability: str = "default",
    poll_interval: float | None = None,
    notifier: bool = False,
    name: str = "jobkit.db",
    jobs: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write ``jobs.yaml`` into ``workdir``; the file's path.

    Puts ``bench/`` on this process's import path too. ``durability="full"`` sets ``durability:
    full`` (SQLite fsyncs every commit); the default leaves it out. ``notifier=True`` adds a webhook
    for failed jobs (``jobkit-notify`` must be installed). ``jobs``: more jobs, next to ``Noop``.
    """
    folder = Path(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "storage": storage if storage != "sqlite" else f"sqlite:///{folder / name}",
        "logging": {"dir": str(folder / "logs")},
        "jobs": {"Noop": {"class": "jobkit_jobs:Noop"}, **(jobs or {})},
    }
    if durability != "default":
        config["durability"] = durability
    if poll_interval is not None:
        config["worker"] = {"poll_interval": poll_interval}
    if notifier:
        config["notifications"] = [
            {"plugin": "webhook", "url": _webhook_url(), "events": ["failed"]}]
    path = folder / f"{Path(name).stem}.yaml" if name != "jobkit.db" else folder / "jobs.yaml"
    path.write_text(yaml.safe_dump(config))
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return path


def _app(config: Path, plugins: tuple[object, ...] = ()) -> JobKit:
    return JobKit.from_config(config, plugins=plugins)


def _enqueue_many(app: JobKit) -> tuple[Callable[[list[dict[str, int]]], object], str]:
    """``app.enqueue_many`` if jobkit has it yet, else a loop of ``run_background_job``."""
    bulk = getattr(app, "enqueue_many", None)
    if bulk is not None:
        return (lambda batch: bulk("Noop", "run", batch)), "enqueue_many"
    warnings.warn(
        "JobKit.enqueue_many does not exist yet: bulk enqueue falls back to a loop of "
        "run_background_job", stacklevel=2,
    )

    def loop(batch: list[dict[str, int]]) -> None:
        for params in batch:
            app.run_background_job("Noop", "run", params)

    return loop, "loop (no enqueue_many yet)"


def prefill(app: JobKit, jobs: int, batch: int = 1000) -> str:
    """Enqueue ``jobs`` no-op jobs, as fast as jobkit can; which API did it."""
    bulk, api = _enqueue_many(app)
    for part in chunks(jobs, batch):
        bulk(part)
    return api


# -- measurements ----------------------------------------------------------------------------------


def enqueue_one(
    workdir: str, storage: str, jobs: int, durability: str = "default", notifier: bool = False
) -> dict[str, Any]:
    """Enqueue throughput, one ``run_background_job`` call at a time (jobs/s).

    ``cpu_us``: this process's CPU (all its threads) per enqueue while it enqueued.
    """
    config = setup(workdir, storage, durability, notifier=notifier)
    with _app(config) as app:
        app.run_background_job("Noop", "run", {"n": -1})  # opens (and migrates) the store
        cpu = time.process_time()
        started = time.perf_counter()
        for n in range(jobs):
            app.run_background_job("Noop", "run", {"n": n})
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
    return {"rate": jobs / seconds, "seconds": seconds, "cpu_us": cpu / jobs * 1e6,
            "webhooks": _Receiver.received}


def listener_cost(workdir: str, jobs: int, block: int = 250) -> dict[str, Any]:
    """What a ``jobkit_job_event`` listener that does nothing costs the caller, per event.

    Two apps in this process, each on a store of its own (SQLite), one with
    :class:`listener.Listener` registered through ``plugins=``, enqueue ``jobs`` jobs each one
    call at a time, taking turns by blocks of ``block`` calls; one event (``enqueued``) per call.
    """
    from listener import Listener

    apps = {
        "without": _app(setup(workdir, "sqlite", name="without.db")),
        "with": _app(setup(workdir, "sqlite", name="with.db"), plugins=(Listener(),)),
    }
    seconds = dict.fromkeys(apps, 0.0)
    try:
        for app in apps.values():
            app.run_background_job("Noop", "run", {"n": -1})
        for start in range(0, jobs, block):
            count = min(block, jobs - start)
            for key, app in apps.items():
                began = time.perf_counter()
                for n in range(start, start + count):
                    app.run_background_job("Noop", "run", {"n": n})
                seconds[key] += time.perf_counter() - began
    finally:
        for app in apps.values():
            app.close()
    return {
        "rate": jobs / seconds["with"],
        "rate_without": jobs / seconds["without"],
        "cost_us": (seconds["with"] - seconds["without"]) / jobs * 1e6,
    }


def startup(runs: int) -> dict[str, Any]:
    """Start-up of this virtualenv's jobkit, in fresh interpreters, medians of ``runs``.

    ``import_ms``: ``import jobkit`` alone, timed inside the interpreter; ``help_ms``: the whole
    ``jobkit --help`` command (the console script next to this interpreter), interpreter
    start included; ``python_ms``: the whole ``python -c pass``, what any command pays.
    """
    script = ("import time; t = time.perf_counter(); import jobkit; "
              "print(time.perf_counter() - t)")
    console = Path(sys.executable).with_name("jobkit")
    env = bench_env()
    found: dict[str, list[float]] = {"import_ms": [], "help_ms": [], "python_ms": []}
    for _ in range(runs + 1):  # the first round warms the disk cache and is not counted
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=env, check=True, cwd="/")
        imported = float(done.stdout.strip().splitlines()[-1]) * 1000
        began = time.perf_counter()
        subprocess.run([str(console), "--help"], capture_output=True, env=env, check=True,
                       cwd="/")
        helped = (time.perf_counter() - began) * 1000
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], capture_output=True, env=env, check=True,
                       cwd="/")
        bare = (time.perf_counter() - began) * 1000
        for key, value in (("import_ms", imported), ("help_ms", helped), ("python_ms", bare)):
            found[key].append(value)
    return {key: statistics.median(values[1:]) for key, values in found.items()} | {
        "runs": runs}


def enqueue_bulk(workdir: str, storage: str, jobs: int, batch: int,
                 notifier: bool = False) -> dict[str, Any]:
    """Bulk enqueue throughput (jobs/s): ``enqueue_many`` with ``batch`` jobs per call."""
    config = setup(workdir, storage, notifier=notifier)
    with _app(config) as app:
        app.run_background_job("Noop", "run", {"n": -1})
        bulk, api = _enqueue_many(app)
        parts = chunks(jobs, batch)
        started = time.perf_counter()
        for part in parts:
            bulk(part)
        seconds = time.perf_counter() - started
    return {"rate": jobs / seconds, "seconds": seconds, "api": api}


def _remaining(storage: str, workdir: str) -> tuple[Callable[[], int], Callable[[], None]]:
    """A function that counts the unfinished jobs, and one that closes its connection."""
    ask, close = _asker(storage, workdir,
                        f"SELECT count(*) FROM jobkit_jobs WHERE status IN {UNFINISHED}")
    return (lambda: ask()[0]), close


def _asker(storage: str, workdir: str,
           query: str) -> tuple[Callable[[], tuple[int, ...]], Callable[[], None]]:
    """A function that runs ``query`` on the store, and one that closes its connection.

    ``query`` returns one row of integers.
    """
    if storage == "sqlite":
        conn = sqlite3.connect(Path(workdir) / "jobkit.db", isolation_level=None)
        return (lambda: tuple(int(v or 0) for v in conn.execute(query).fetchone())), conn.close
    import psycopg

    pg = psycopg.connect(storage, autocommit=True)

    def ask() -> tuple[int, ...]:
        row = pg.execute(query.encode()).fetchone()
        return tuple(int(v or 0) for v in row) if row else (0,)

    return ask, pg.close


def _worker(config: Path, workdir: str, processes: int, *args: str,
            **env: str) -> tuple[Any, Path]:
    log = Path(workdir) / f"worker-{time.monotonic_ns()}.out"
    command = [sys.executable, "-m", "jobkit", "--config", str(config), "--path", str(BENCH),
               "worker", "-n", str(processes), *args]
    return spawn(command, log, bench_env(**env), cwd=Path(workdir)), log


def drain(
    workdir: str,
    storage: str,
    jobs: int,
    processes: int,
    durability: str = "default",
    seed: str | None = None,
    timeout: float = 1800,
    notifier: bool = False,
    wait: float | None = None,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """Drain throughput of ``jobkit worker -n processes --burst`` over ``jobs`` jobs.

    The jobs are enqueued first: no-ops, or with ``wait`` jobs of ``Waiter.wait``, an ``async
    def`` method awaiting ``wait`` seconds. ``seed`` is a store file to start from, e.g. one with
    a million finished jobs. ``cpu_per_job_us``: the CPU (user + system) of the worker's
    processes, supervisor and spawned ones, from the first poll that sees a job started until
    they have all exited (read from ``RUSAGE_CHILDREN`` once the worker is waited for, less the
    CPU they had used at that first poll), per job timed; ``worker_cpu_us`` the same until the
    poll that sees none left (see :func:`common.watch_drain`), and with ``server_pid`` (the
    PostgreSQL server's postmaster) ``server_cpu_us``, the server's.
    """
    before = 0
    if seed is not None:
        before = completed_in(seed)
        Path(workdir).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(seed, Path(workdir) / "jobkit.db")
    config = setup(workdir, storage, durability, notifier=notifier,
                   jobs=WAITER if wait is not None else None)
    with _app(config) as app:
        if wait is None:
            api = prefill(app, jobs)
        else:
            for part in chunks(jobs, 1000):
                app.enqueue_many("Waiter", "wait", [params | {"seconds": wait} for params in part])
            api = "enqueue_many"
    settle()
    remaining, close = _remaining(storage, workdir)
    try:
        cpu_before = children_cpu_seconds()
        spawned = time.perf_counter()
        worker, log = _worker(config, workdir, processes, "--burst")
        try:
            result: dict[str, Any] = watch_drain(
                remaining, jobs, [worker], spawned, log, timeout,
                cpu=lambda: tree_cpu_seconds(worker.pid),
                server_cpu=(lambda: tree_cpu_seconds(server_pid)) if server_pid else None)
            worker.wait(120)
            result["exit_s"] = time.perf_counter() - spawned
            result["exit_code"] = worker.returncode
            result["cpu_total_s"] = children_cpu_seconds() - cpu_before
            busy = result["cpu_total_s"] - result.get("cpu_at_first", 0.0)
            if result["jobs_timed"]:
                result["cpu_per_job_us"] = busy / result["jobs_timed"] * 1e6
        finally:
            stop(worker)
    finally:
        close()
    with _app(config) as app:
        done = app.storage.count(status=JobStatus.COMPLETED)
    if done != jobs + before:
        raise RuntimeError(f"{done} jobs completed, expected {jobs + before}:\n{tail(log)}")
    result["prefill_api"] = api
    result["webhooks"] = _Receiver.received
    return result


def limited_drain(
    workdir: str,
    storage: str,
    jobs: int,
    processes: int = 8,
    concurrency: int = 4,
    seconds: float = 0.05,
    sample: float = 0.01,
    timeout: float = 900,
) -> dict[str, Any]:
    """How well ``jobkit worker -n processes --burst`` fills a ``concurrency`` limit.

    ``jobs`` jobs that each sleep ``seconds``, of a job with ``concurrency: N`` in jobs.yaml,
    are enqueued first. While they drain, the store is asked every ``sample`` seconds how many
    are running and how many are unfinished. The window runs from the first sample that sees
    ``concurrency`` running (``ramp_s``: from the first that sees one running until then) to the
    last one that still sees ``concurrency`` or more unfinished (the tail, where fewer are left
    than the limit, is left out). ``utilisation``: mean running / ``concurrency`` over the
    window's samples; ``at_limit``: the fraction of samples with exactly ``concurrency``
    running; ``over``: samples with more (the limit broken; must be 0 over the whole drain,
    ramp and tail included, as ``peak``); ``rate``: jobs finished in the window per second,
    against ``ideal_rate`` (``concurrency / seconds``).
    """
    config = setup(workdir, storage, jobs={
        "Sleeper": {"class": "jobkit_jobs:Sleeper", "concurrency": concurrency}})
    with _app(config) as app:
        app.enqueue_many("Sleeper", "nap", [{"n": n, "seconds": seconds} for n in range(jobs)])
    settle()
    ask, close = _asker(storage, workdir, (
        "SELECT sum(CASE WHEN status = 'running' THEN 1 ELSE 0 END), "
        f"sum(CASE WHEN status IN {UNFINISHED} THEN 1 ELSE 0 END) FROM jobkit_jobs"))
    counts: list[int] = []
    peak = over = 0
    seen: float | None = None  # when a sample first saw a job running
    window: list[tuple[float, int]] = []  # (time, unfinished) at the window's first, last sample
    spawned = time.perf_counter()
    worker, log = _worker(config, workdir, processes, "--burst")
    try:
        while True:
            running, left = ask()
            now = time.perf_counter()
            peak, over = max(peak, running), over + (running > concurrency)
            if seen is None and running:
                seen = now
            if not window and running >= concurrency:
                window.append((now, left))
            if window and left >= concurrency:
                counts.append(running)
                window[1:] = [(now, left)]
            if left == 0 or worker.poll() is not None:
                break
            if now - spawned > timeout:
                raise TimeoutError(f"{left} jobs still left after {timeout:g} s:\n{tail(log)}")
            time.sleep(sample)
        worker.wait(120)
        left = ask()[1]
    finally:
        stop(worker)
        close()
    if left or len(window) < 2:
        raise RuntimeError(f"the drain did not finish or never reached the limit:\n{tail(log)}")
    (began, left_first), (ended, left_last) = window
    return {
        "samples": len(counts),
        "sample_ms": (ended - began) / max(1, len(counts) - 1) * 1000,
        "mean_running": statistics.fmean(counts),
        "utilisation": statistics.fmean(counts) / concurrency,
        "at_limit": sum(count == concurrency for count in counts) / len(counts),
        "over": over,
        "peak": peak,
        "ramp_s": window[0][0] - (seen or window[0][0]),
        "startup_s": (seen or spawned) - spawned,
        "window_s": ended - began,
        "rate": (left_first - left_last) / (ended - began) if ended > began else float("nan"),
        "ideal_rate": concurrency / seconds,
        "concurrency": concurrency,
        "processes": processes,
        "job_seconds": seconds,
        "jobs": jobs,
    }


def completed_in(seed: str) -> int:
    """How many completed jobs a seed store holds."""
    conn = sqlite3.connect(seed)
    try:
        return int(conn.execute(
            "SELECT count(*) FROM jobkit_jobs WHERE status = 'completed'").fetchone()[0])
    finally:
        conn.close()


def pickup(
    workdir: str,
    storage: str,
    samples: int,
    idle_seconds: float,
    poll_interval: float | None = None,
) -> dict[str, Any]:
    """Pick-up latency and idle CPU of an idle ``jobkit worker -n 1`` (see
    :func:`common.pickup_loop`)."""
    config = setup(workdir, storage, poll_interval=poll_interval)
    stamps = StampReader(Path(workdir) / "stamps.txt")
    worker, log = _worker(config, workdir, 1, BENCH_STAMP_FILE=str(stamps.path))
    try:
        with _app(config) as app:

            def enqueue(n: int) -> None:
                app.run_background_job("Noop", "stamp", {"n": n})

            result = pickup_loop(
                enqueue, stamps, samples=samples, idle_pid=worker.pid,
                idle_seconds=idle_seconds, alive=lambda: worker.poll() is None,
            )
    except Exception as exc:
        raise RuntimeError(f"{exc}\n{tail(log)}") from exc
    finally:
        stop(worker)
    result["poll_interval"] = poll_interval if poll_interval is not None else "default"
    return result


def _worker_processes(supervisor: int) -> list[psutil.Process]:
    """The spawned worker processes of a supervisor (not multiprocessing's resource tracker)."""
    found = []
    for child in psutil.Process(supervisor).children():
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "resource_tracker" not in cmdline:
            found.append(child)
    return found


def rss(workdir: str, jobs: int, early: int, timeout: float = 3600) -> dict[str, Any]:
    """RSS of a worker process (``jobkit worker -n 1`` on SQLite) after ``early`` jobs and after
    ``jobs`` jobs, in MB."""
    config = setup(workdir, "sqlite")
    with _app(config) as app:
        api = prefill(app, jobs, batch=5000)
    settle()
    remaining, close = _remaining("sqlite", workdir)
    worker, log = _worker(config, workdir, 1)
    samples: dict[str, float] = {}
    started = time.monotonic()
    try:
        while True:
            done = jobs - remaining()
            if "early_mb" not in samples and done >= early:
                [process] = _worker_processes(worker.pid)
                samples["early_mb"] = process.memory_info().rss / 2**20
                samples["early_done"] = done
                supervisor = psutil.Process(worker.pid)
                samples["early_supervisor_mb"] = supervisor.memory_info().rss / 2**20
            if done >= jobs:
                [process] = _worker_processes(worker.pid)
                samples["late_mb"] = process.memory_info().rss / 2**20
                supervisor = psutil.Process(worker.pid)
                samples["late_supervisor_mb"] = supervisor.memory_info().rss / 2**20
                break
            if worker.poll() is not None or time.monotonic() - started > timeout:
                raise RuntimeError(f"worker gone or too slow with {jobs - done} jobs left:\n"
                                   f"{tail(log)}")
            time.sleep(0.01 if "early_mb" not in samples else 0.2)
    finally:
        close()
        stop(worker, signal.SIGTERM)
    samples["ratio"] = samples["late_mb"] / samples["early_mb"]
    return {**samples, "jobs": jobs, "early": early, "prefill_api": api}


def scale_template(workdir: str, rows: int) -> dict[str, Any]:
    """A store file holding ``rows`` completed jobs (each with its succeeded attempt), built by
    SQL from one job that a real worker loop ran (so every column is as jobkit writes it)."""
    from jobkit.worker import run_until_empty

    config = setup(workdir, "sqlite")
    path = Path(workdir) / "jobkit.db"
    started = time.perf_counter()
    with _app(config) as app:
        app.run_background_job("Noop", "run", {"n": 0})
        run_until_empty(app)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        [template] = conn.execute("SELECT id FROM jobkit_jobs").fetchone()
        job_columns = [row[1] for row in conn.execute("PRAGMA table_info(jobkit_jobs)")]
        attempt_columns = [row[1] for row in conn.execute("PRAGMA table_info(jobkit_attempts)")]
        timed = {"created_at", "available_at", "started_at", "finished_at"}
        job_values = {
            column: (
                f"t.{column} - (:rows - seq.i) * 0.001" if column in timed
                else "'{\"n\": ' || seq.i || '}'" if column == "params"
                else f"t.{column}"
            )
            for column in job_columns if column != "id"
        }
        attempt_values = {
            column: (
                "j.id" if column == "job_id"
                else f"j.{column}" if column in ("started_at", "finished_at")
                else f"a.{column}"
            )
            for column in attempt_columns if column != "id"
        }
        conn.execute("BEGIN")
        conn.execute(
            f"WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < :rows) "
            f"INSERT INTO jobkit_jobs ({', '.join(job_values)}) "
            f"SELECT {', '.join(job_values.values())} FROM seq, jobkit_jobs AS t "
            f"WHERE t.id = :template",
            {"rows": rows - 1, "template": template},
        )
        conn.execute(
            f"INSERT INTO jobkit_attempts ({', '.join(attempt_values)}) "
            f"SELECT {', '.join(attempt_values.values())} FROM jobkit_jobs AS j, "
            f"jobkit_attempts AS a WHERE a.job_id = :template AND j.id > :template",
            {"template": template},
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        count = conn.execute("SELECT count(*) FROM jobkit_jobs").fetchone()[0]
    finally:
        conn.close()
    return {
        "path": str(path),
        "rows": count,
        "seconds": time.perf_counter() - started,
        "mb": path.stat().st_size / 2**20,
    }
