"""The worker's house: stores know nothing of it; a job's calls into jobkit are shielded at the
job-facing boundary instead."""

from __future__ import annotations

import ast
import builtins
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import make_config

import jobkit
from jobkit import JobInterrupted, JobKit
from jobkit.records import JobRecord
from jobkit.storage.memory import MemoryStorage
from jobkit.worker.interrupt import Interrupter

STORAGE = Path(jobkit.__file__).parent / "storage"


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


class TestStoresKnowNoWorker:
    """Arrows point one way: storage backends know records, never the worker."""

    def test_no_storage_module_imports_the_worker_or_its_interrupts(self) -> None:
        """jobkit/storage/* imports nothing from jobkit.worker, nor the interrupt shield."""
        for path in sorted(STORAGE.glob("*.py")):
            bad = {
                name
                for name in imported_modules(path)
                if name.startswith(("jobkit.worker", "jobkit.interrupt", "jobkit.shield"))
            }
            assert not bad, f"{path.name} imports {sorted(bad)}"


class TestOneRoomForTransitions:
    """Outcomes are written by jobkit.transitions, not by a second executor."""

    def test_the_supervisor_builds_no_executor_to_record(self) -> None:
        """The supervisor records timeouts and a dead process's jobs through Transitions."""
        supervisor = STORAGE.parent / "worker" / "supervisor.py"
        names = {node.id for node in ast.walk(ast.parse(supervisor.read_text()))
                 if isinstance(node, ast.Name)}
        assert "Executor" not in names
        assert "Transitions" in names

    def test_nothing_but_transitions_settles_an_attempt(self) -> None:
        """Only jobkit/transitions.py calls the store's complete, fail, release, abandon,
        cancel, retry or requeue_expired (the stores and the conformance suite aside)."""
        settling = {"complete", "complete_and_claim_many", "fail", "release", "abandon",
                    "cancel", "retry", "requeue_expired"}
        package = STORAGE.parent
        for path in sorted(package.rglob("*.py")):
            if path.parent.name in ("storage", "testing") or path.name == "transitions.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Attribute) and node.attr in settling
                        and isinstance(node.value, ast.Attribute)
                        and node.value.attr == "storage"):
                    raise AssertionError(f"{path.name}:{node.lineno} calls storage.{node.attr}")


class Interrupting(MemoryStorage):
    """A store whose listing is interrupted halfway, as a job's timeout might."""

    def __init__(self, interrupter: Interrupter) -> None:
        super().__init__()
        self.interrupter = interrupter
        self.finished = False

    def list(self, **filters: Any) -> builtins.list[JobRecord]:
        """Ask for the interrupt, then go on as a transaction would."""
        self.interrupter.interrupt("timeout")
        time.sleep(0.05)  # a signal lands at once: it must wait for the call's end
        self.finished = True
        return super().list(**filters)


class TestJobFacingShield:
    """A job's own call into jobkit ends whole; its interrupt comes right after."""

    def test_an_app_call_from_a_running_job_is_never_cut_halfway(self, tmp_path: Path) -> None:
        """JobKit.list_jobs called by a job's code finishes its store call, then the job gets
        JobInterrupted."""
        interrupter = Interrupter()
        storage = Interrupting(interrupter)
        app = JobKit(make_config(tmp_path), storage=storage)
        interrupter.arm()
        try:
            with pytest.raises(JobInterrupted):
                app.list_jobs()
                time.sleep(1)  # not reached: the interrupt is raised at the call's end
        finally:
            received = interrupter.disarm()
            app.close()
        assert storage.finished
        assert received

    def test_the_same_call_outside_a_job_is_not_shielded_by_anything(self, tmp_path: Path) -> None:
        """Without an armed interrupter the shield costs nothing and changes nothing."""
        storage = MemoryStorage()
        app = JobKit(make_config(tmp_path), storage=storage)
        try:
            assert app.list_jobs() == []
        finally:
            app.close()
