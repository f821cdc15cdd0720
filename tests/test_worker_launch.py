"""Worker processes started ahead of the supervisor's set-up (jobkit.worker.launch).

``jobkit worker`` starts its processes right after reading the configuration; each waits for its
spec while the supervisor builds its app, checks it and opens the store. A process the
supervisor never sends a spec to (it stopped at a start-up error) exits having done nothing.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import make_config, write_config
from sample_jobs import read_ledger

from jobkit import JobKit, JobStatus
from jobkit.worker import Worker, launch
from jobkit.worker.launch import Starter, start_method

pytestmark = pytest.mark.slow


def test_the_processes_started_ahead_run_the_jobs(tmp_path: Path, ledger: str) -> None:
    """The supervisor runs the jobs in the processes started ahead, none started twice.

    It takes them (the same pids ran the jobs) and sends each its spec."""
    starter = Starter()
    starter.prestart(2)
    ahead = {started.process.pid for started in starter._waiting.values()}
    with JobKit(make_config(tmp_path), load_entrypoints=False) as app:
        ids = [app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": str(i)})
               for i in range(6)]
        code = Worker(app, concurrency=2, burst=True, starter=starter).run(install_signals=False)
        assert code == 0
        records = [app.get_job(job_id) for job_id in ids]
        attempts = [attempt for job_id in ids for attempt in app.get_attempts(job_id)]
    assert {record.status for record in records} == {JobStatus.COMPLETED}
    ran_in = {int((attempt.worker_id or "").split(":")[1]) for attempt in attempts}
    assert ran_in <= ahead, (ran_in, ahead)
    assert sorted(int(entry["tag"]) for entry in read_ledger(ledger)) == list(range(6))
    assert starter._waiting == {}


def test_processes_started_ahead_and_not_taken_end(tmp_path: Path) -> None:
    """Closing the starter ends the processes it started ahead and did not hand out.

    Whether they are still starting or already waiting for their spec."""
    starter = Starter()
    starter.prestart(2)
    processes = [started.process for started in starter._waiting.values()]
    starter.close()
    assert [process.is_alive() for process in processes] == [False, False]
    assert all(process.exitcode is not None for process in processes)


def test_a_start_up_error_ends_the_processes_started_ahead(
    tmp_path: Path, start_worker: Any
) -> None:
    """A start-up error after the processes started is one line and exit 2, as before.

    The problem (a ``jobs:`` entry naming no job) is found by the supervisor after it started
    its processes; they exit with it, having logged nothing, and the store is not created."""
    config = write_config(tmp_path, jobs={"Nope": {"retry_attempts": 1}})
    worker = start_worker(config, "-n", "2")
    code, out = worker.wait()
    assert code == 2, out
    assert out.startswith("jobkit: error: "), out
    assert "Nope" in out and "worker process" not in out and "Traceback" not in out, out
    assert worker.children() == []
    assert not (tmp_path / "jobkit.db").exists()
    with pytest.raises(psutil.NoSuchProcess):
        psutil.Process(worker.pid).children()


def test_a_config_that_does_not_load_ends_the_processes_started_with_n(
    tmp_path: Path, start_worker: Any
) -> None:
    """With ``-n``, a file that does not load is still one error line and exit status 2.

    The processes started before the file was read exit with the supervisor."""
    config = tmp_path / "jobs.yaml"
    config.write_text("bogus: 1\n")
    worker = start_worker(config, "-n", "2")
    code, out = worker.wait()
    assert code == 2, out
    assert out.startswith("jobkit: error: ") and "jobs.yaml:1" in out, out
    assert len(out.strip().splitlines()) == 1 and "Traceback" not in out, out
    assert worker.children() == []


def test_processes_fork_only_on_linux_and_while_the_supervisor_is_one_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Forked on Linux while one thread runs; spawned with a second thread, and elsewhere."""
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setattr(sys, "platform", "linux")
    assert start_method() == "fork"
    for platform in ("darwin", "win32"):
        monkeypatch.setattr(sys, "platform", platform)
        assert start_method() == "spawn"
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    assert start_method() == "spawn"


@pytest.mark.skipif(sys.platform != "linux", reason="processes fork on Linux only")
def test_a_forked_process_ends_when_its_supervisor_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """A forked process keeps none of the supervisor's pipe ends: their closing ends it.

    It inherits them, its own control pipe's other end and the other processes' included; held
    open, the supervisor's death would never reach the process waiting for its spec.
    """
    monkeypatch.setattr(launch, "start_method", lambda: "fork")
    starter = Starter()
    starter.prestart(2)
    waiting = list(starter._waiting.values())
    try:
        for started in waiting:  # what the supervisor's death does: no stop, no signal
            started.control.close()
            started.logs.close()
        for started in waiting:
            started.process.join(20)
        assert [started.process.exitcode for started in waiting] == [0, 0]
    finally:
        starter.close()


def test_a_process_started_later_is_spawned(monkeypatch: pytest.MonkeyPatch) -> None:
    """One not started ahead (a replacement) is spawned: the supervisor has its store open."""
    monkeypatch.setattr(launch, "start_method", lambda: "fork")
    starter = Starter()
    started = starter.take(0)
    try:
        assert isinstance(started.process, multiprocessing.context.SpawnProcess)
    finally:
        started.control.close()
        started.logs.close()
        started.process.join(20)
    assert started.process.exitcode == 0


def test_a_process_loads_the_entry_points_while_it_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waiting for its spec, a process reads the entry points; what fails is left to the app.

    Both groups are read (the plugins, then the jobs), and an error raised there (a plugin
    that does not load, one that exits) is the app's build's to report, not the wait's.
    """
    from jobkit import plugins, registry
    from jobkit.worker import process

    read: list[str] = []

    def plugin_manager() -> None:
        read.append("plugins")
        raise SystemExit(3)

    monkeypatch.setattr(plugins, "get_plugin_manager", plugin_manager)
    process._warm_up()
    monkeypatch.setattr(plugins, "get_plugin_manager", lambda: read.append("plugins"))
    monkeypatch.setattr(registry.Registry, "load_entry_points",
                        lambda self: read.append("jobs"))
    process._warm_up()
    assert read == ["plugins", "plugins", "jobs"]


@pytest.mark.parametrize(("method", "started"), [("spawn", True), ("fork", False)])
def test_forked_processes_start_once_the_app_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, started: bool
) -> None:
    """``jobkit worker`` starts spawned processes first, forked ones after building its app.

    A spawned process takes long to start, so it starts before the supervisor sets up; a
    forked one starts in a moment, and inherits the app's imports, plugins and jobs if it
    starts after the app is built (before the store is opened). A ``class:`` that does not
    import, found while the app is built, thus stops the worker before any forked process
    starts.
    """
    from click.testing import CliRunner

    from jobkit.cli import main

    calls: list[int] = []
    monkeypatch.setattr(launch, "start_method", lambda: method)
    monkeypatch.setattr(Starter, "prestart", lambda self, count: calls.append(count))
    config = write_config(tmp_path, jobs={"Nope": {"class": "nowhere_at_all:Nope"}})
    result = CliRunner().invoke(main, ["--config", str(config), "worker", "-n", "2"])
    assert result.exit_code == 2, result.output
    assert "nowhere_at_all" in result.output
    assert bool(calls) is started, calls


def test_the_command_freezes_its_objects_at_exit(tmp_path: Path) -> None:
    """``jobkit`` registers ``gc.freeze`` to run at exit, once, after its own exit handlers.

    The interpreter's shutdown then does not walk every object of jobkit, loguru, click and the
    app (25-40 ms of CPU at the end of ``jobkit worker``).
    """
    import atexit
    import gc

    from click.testing import CliRunner

    from jobkit.cli import group, main

    registered: list[object] = []
    before = group._exit_hooked
    try:
        group._exit_hooked = False
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(atexit, "register", registered.append)
            for _ in range(2):
                CliRunner().invoke(main, ["--help"])
    finally:
        group._exit_hooked = before
    assert registered == [gc.freeze]
