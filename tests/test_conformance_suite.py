"""The conformance suite as a backend's author meets it: run by pytest in a child process on a
backend of the test's own, its optional capabilities skipped or insisted on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_docs_storage import outcomes, run_pytest, write_files

from jobkit.storage import MemoryStorage, SQLiteStorage, Storage

#: A test module for a memory store with some methods put back to the base class's defaults.
BACKEND = '''
import pytest

from jobkit.storage import MemoryStorage, Storage
from jobkit.testing import InProcessStorageConformance


class PartialStorage(MemoryStorage):
    """The memory store without {without}."""


for name in {without!r}:
    setattr(PartialStorage, name, getattr(Storage, name))


class TestPartialStorage(InProcessStorageConformance):
    @pytest.fixture
    def storage(self, clock):
        store = PartialStorage(clock=clock)
        yield store
        store.close()
'''


def run_suite(folder: Path, without: tuple[str, ...], *args: str) -> tuple[dict[str, int], str]:
    """Run the in-process suite on the memory store without the ``without`` methods."""
    write_files(folder, {"test_partial.py": BACKEND.format(without=without)})
    result = run_pytest(folder, *args)
    return outcomes(result.stdout), result.stdout + result.stderr


class TestOptionalCapabilities:
    def test_the_built_in_stores_have_all_three(self) -> None:
        """SQLite and memory keep workers, job logs and throughput; the base class none."""
        for capability in ("workers", "job_logs", "throughput"):
            assert SQLiteStorage.supports(capability) and MemoryStorage.supports(capability)
            assert not Storage.supports(capability)

    def test_an_unknown_capability_is_named(self) -> None:
        """supports() of a name that is no capability is a ValueError listing the known ones."""
        with pytest.raises(ValueError, match=r"'search' \(known: workers, job_logs, throughput\)"):
            MemoryStorage.supports("search")

    def test_a_capability_kept_in_part_fails_saying_what_is_missing(
        self, tmp_path: Path
    ) -> None:
        """A backend that keeps job log lines but cannot read them back fails the suite's test
        with the method it lacks; one without any of them is skipped."""
        counts, output = run_suite(tmp_path, ("job_logs", "register_worker", "beat_workers",
                                              "remove_worker", "forget_workers",
                                              "list_workers"), "-k", "registered or log_lines")
        counts.pop("deselected", None)  # the rest of the suite, which grows
        assert counts == {"failed": 1, "skipped": 1}, output
        assert ("PartialStorage keeps job log lines in part: it overrides add_job_logs but not "
                "job_logs (optional capability 'job_logs' needs all of them)") in output
        assert "PartialStorage keeps no worker processes (optional capability 'workers'" in output

#: A memory store that lists jobs oldest first, against the contract.
BROKEN = '''
import pytest

from jobkit.storage import MemoryStorage
from jobkit.testing import InProcessStorageConformance


class OldestFirstStorage(MemoryStorage):
    def list(self, **filters):
        return super().list(**filters)[::-1]


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
