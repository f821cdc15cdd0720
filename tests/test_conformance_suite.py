"""The conformance suite as a backend's author meets it: run by pytest in a child process on a
backend of the test's own, its optional capabilities skipped or insisted on; the core's size."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from test_docs_storage import outcomes, run_pytest, write_files

from jobkit.records import AttemptOutcome, JobLogLine, Lease
from jobkit.storage import MemoryStorage, SQLiteStorage, Storage
from jobkit.storage.capabilities import KeepsJobLogs, supports
from jobkit.testing.conformance import new_job
from jobkit.testing.coreonly import CoreOnlyStorage

#: A test module for the memory store's core alone: the core suite and the capabilities' tests.
BACKEND = '''
import pytest

from jobkit.storage import MemoryStorage
from jobkit.testing import InProcessStorageConformance
from jobkit.testing.coreonly import CoreOnlyStorage


class TestCoreOnlyStorage(InProcessStorageConformance):
    @pytest.fixture
    def storage(self, clock):
        store = CoreOnlyStorage(MemoryStorage(clock=clock))
        yield store
        store.close()
'''


def run_suite(folder: Path, *args: str) -> tuple[dict[str, int], str]:
    """Run the in-process suite on the memory store's core alone."""
    write_files(folder, {"test_core_only.py": BACKEND})
    result = run_pytest(folder, *args)
    return outcomes(result.stdout), result.stdout + result.stderr


class HalfLogs(CoreOnlyStorage, KeepsJobLogs):
    """Keeps job log lines but cannot read them back."""

    def add_job_logs(self, job_id: str, lines: list[JobLogLine]) -> None:
        """Keep nothing, in truth."""


class TestCoreContract:
    def test_the_core_is_small(self) -> None:
        """Storage has at most 12 abstract methods (the hooks a backend writes) and at most
        18 public ones (what callers use)."""
        public = [name for name in dir(Storage) if not name.startswith("_")]
        assert len(Storage.__abstractmethods__) <= 12, sorted(Storage.__abstractmethods__)
        assert len([name for name in public if callable(getattr(Storage, name))]) <= 18, public

    def test_the_public_methods_check_their_arguments(self) -> None:
        """Bad arguments are refused by the base class, naming what is wrong, before any hook
        runs."""
        store = CoreOnlyStorage(MemoryStorage())
        lease = Lease("1", "w1", 1)
        with pytest.raises(TypeError, match="expected a Lease"):
            store.heartbeat(("1", "w1", 1), 30.0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="lease_seconds must be a finite number"):
            store.claim("w1", float("nan"))
        with pytest.raises(ValueError, match="job 1: a failed attempt needs an error"):
            store.settle(lease, AttemptOutcome.FAILED)
        with pytest.raises(ValueError, match="job 1: settle takes an outcome of"):
            store.settle(lease, AttemptOutcome.LOST)
        with pytest.raises(ValueError, match="only a succeeded attempt has a result"):
            store.settle(lease, AttemptOutcome.HANDED_BACK, result=1)
        with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
            store.prune(store.now(), batch_size=0)
        with pytest.raises(ValueError, match="finished_before must be a timezone-aware"):
            store.prune(datetime(2024, 1, 1))
        with pytest.raises(TypeError, match="item 1 is a dict"):
            store.enqueue_many([new_job(store.now()), {}])  # type: ignore[list-item]
        assert store.list() == []


class TestOptionalCapabilities:
    def test_the_built_in_stores_have_all_three(self) -> None:
        """SQLite and memory keep workers, job logs and throughput; the base class none."""
        for capability in ("workers", "job_logs", "throughput"):
            assert supports(SQLiteStorage, capability) and supports(MemoryStorage, capability)
            assert not supports(Storage, capability)

    def test_an_unknown_capability_is_named(self) -> None:
        """supports() of a name that is no capability is a ValueError listing the known ones."""
        with pytest.raises(ValueError, match=r"'nosuch' \(known: search, workers, job_logs, "):
            supports(MemoryStorage, "nosuch")

    def test_a_capability_kept_in_part_fails_saying_what_is_missing(
        self, tmp_path: Path
    ) -> None:
        """A backend that keeps job log lines but cannot read them back cannot be built,
        naming the method it lacks; the tests of a capability a backend does not have are
        skipped, saying what to write, and the core alone passes the rest."""
        with pytest.raises(TypeError, match=r"abstract method.*job_logs"):
            HalfLogs(MemoryStorage())
        counts, output = run_suite(tmp_path)
        assert "failed" not in counts and "error" not in counts, output
        assert counts.get("passed", 0) >= 90, output
        assert ("CoreOnlyStorage keeps no worker processes (optional capability 'workers': "
                "inherit KeepsWorkers and write register_worker, beat_workers, remove_worker, "
                "forget_workers, list_workers to keep them)") in output
        for what in ("job log lines", "throughput", "progress", "queues", "schedules",
                     "workflows"):
            assert f"CoreOnlyStorage keeps no {what} (optional capability" in output
        assert counts.get("skipped") == 44, output  # 44 tests of 7 capabilities


#: A memory store that lists jobs oldest first, against the contract.
BROKEN = '''
import pytest

from jobkit.storage import MemoryStorage
from jobkit.testing import InProcessStorageConformance


class OldestFirstStorage(MemoryStorage):
    def _list(self, status, name, limit, offset):
        return super()._list(status, name, limit, offset)[::-1]


class TestOldestFirstStorage(InProcessStorageConformance):
    @pytest.fixture
    def storage(self, clock):
        store = OldestFirstStorage(clock=clock)
        yield store
        store.close()
'''


class TestAssertionRewriting:
    def test_a_failed_check_shows_the_values_it_compared(self, tmp_path: Path) -> None:
        """A backend that breaks a rule sees both sides of the suite's comparison, not a bare
        AssertionError: the suite's module is rewritten by pytest like a test module."""
        write_files(tmp_path, {"test_broken.py": BROKEN})
        result = run_pytest(tmp_path, "-k", "test_list_is_newest_first")
        counts = outcomes(result.stdout)
        counts.pop("deselected", None)  # the rest of the suite, which grows
        assert counts == {"failed": 1}, result.stdout
        assert "AssertionError: assert ['1', '2', '3'] == ['3', '2', '1']" in result.stdout
        assert "At index 0 diff: '1' != '3'" in result.stdout

    def test_values_show_with_the_plugin_autoload_off(self, tmp_path: Path) -> None:
        """Without jobkit's pytest11 plugin (PYTEST_DISABLE_PLUGIN_AUTOLOAD), importing
        jobkit.testing from the test module still registers the suite for rewriting."""
        write_files(tmp_path, {"test_broken.py": BROKEN})
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k",
             "test_list_is_newest_first"], cwd=tmp_path, capture_output=True, text=True,
            timeout=300, check=False, env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
        assert "assert ['1', '2', '3'] == ['3', '2', '1']" in result.stdout, result.stdout
