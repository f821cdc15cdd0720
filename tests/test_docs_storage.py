"""The plugin authors' pages against the real conformance suite, so they cannot drift from it.

A ```python block whose previous non-blank line is ``<!-- file: NAME -->`` belongs to the file
``NAME``: the blocks of a page are joined into their files in a temporary folder, and pytest runs
there in a child process (as a backend author would run it). ``tests/test_docs.py`` runs every
other block of these pages. The tables of ``docs/storage.md#records`` name every field of the
records a backend handles, and a backend's ``from_url`` gets the options the page promises.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from test_docs import DOCS, NOT_TESTED, code_blocks

from jobkit import ConfigError, JobKit, hookimpl, records
from jobkit.config import Config
from jobkit.plugins import StorageRegistry
from jobkit.storage import MemoryStorage

#: The repository: jobkit's sources, for mypy (an editable install hides them from it).
ROOT = DOCS.parent
#: Marks a block as part of a file the test assembles.
FILE_MARK = re.compile(r"^<!-- file: ([\w./-]+) -->$")
#: The pages whose samples a plugin author copies; none of their Python samples goes untested.
PLUGIN_PAGES = ("storage.md", "hooks.md")
#: The test module that runs the suite on docs/hooks.md's ScratchStorage, opened with the
#: options the app and the tests pass to from_url.
SCRATCH_TEST = '''
import pytest

from jobkit.testing import InProcessStorageConformance

from scratch import ScratchStorage


class TestScratchStorage(InProcessStorageConformance):
    @pytest.fixture
    def storage(self, clock):
        store = ScratchStorage.from_url("scratch://", durability="full", clock=clock)
        yield store
        store.close()
'''


def file_samples(page: str) -> dict[str, str]:
    """The files the marked blocks of ``docs/<page>`` make up, by name, blocks in page order."""
    files: dict[str, str] = {}
    for _, language, code, before in code_blocks(DOCS / page):
        found = FILE_MARK.match(before)
        if found and language == "python":
            files[found.group(1)] = files.get(found.group(1), "") + code + "\n\n"
    return files


def write_files(folder: Path, files: dict[str, str]) -> None:
    """Write ``files`` (name -> text) under ``folder``."""
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def run_pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest in a child process, in ``folder`` (on its import path), as a backend's author
    runs it: no repository configuration, jobkit's pytest plugin loaded from its entry point."""
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=600,
                          check=False)


def outcomes(output: str) -> dict[str, int]:
    """The counts of pytest's last line: ``{"passed": 94, "skipped": 3}``."""
    last = output.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", last)}


class TestStorageSamples:
    def test_the_dict_store_passes_the_conformance_suite(self, tmp_path: Path) -> None:
        """docs/storage.md's dict:// backend, assembled from its blocks, implements the core
        alone in under 300 lines, passes the core suite and serves a real app through its
        jobkit_register_storage hook."""
        files = file_samples("storage.md")
        assert set(files) == {"dictstore.py", "test_dictstore.py", "test_shared_store.py"}
        assert files["dictstore.py"].count("\n") < 300
        write_files(tmp_path, files)
        result = run_pytest(tmp_path, "test_dictstore.py")
        assert result.returncode == 0, result.stdout + result.stderr
        counts = outcomes(result.stdout)
        assert counts.get("passed", 0) >= 70 and "failed" not in counts, result.stdout
        assert "skipped" not in counts, result.stdout  # Python objects: no spoiled rows
        app_test = run_pytest(tmp_path, "test_dictstore.py::test_an_app_runs_jobs_on_it")
        assert outcomes(app_test.stdout) == {"passed": 1}, app_test.stdout

    def test_the_dict_store_has_the_core_alone(self, tmp_path: Path) -> None:
        """The sample implements no optional capability: the capabilities' tests skip for it,
        saying what to inherit and write, and those with a fallback over the core pass."""
        write_files(tmp_path, {**file_samples("storage.md"), "test_capabilities.py": (
            "import pytest\n"
            "from jobkit.testing import InProcessStorageConformance\n"
            "import dictstore\n\n\n"
            "class TestDictCapabilities(InProcessStorageConformance):\n"
            "    @pytest.fixture\n"
            "    def storage(self, clock):\n"
            "        store = dictstore.DictStorage.from_url('dict://', clock=clock)\n"
            "        yield store\n"
            "        store.close()\n")})
        result = run_pytest(tmp_path, "test_capabilities.py")
        assert result.returncode == 0, result.stdout + result.stderr
        assert outcomes(result.stdout).get("skipped") == 44, result.stdout
        for what in ("worker processes", "job log lines", "throughput", "progress", "queues",
                     "schedules", "workflows"):
            assert f"DictStorage keeps no {what} (optional capability" in result.stdout

    def test_the_shared_store_sample_runs_the_multi_process_test(self, tmp_path: Path) -> None:
        """docs/storage.md's test module for a store shared by processes gives the suite what
        its multi-process claim test needs (that test and one other are run: jobkit's own
        SQLite tests run the rest)."""
        write_files(tmp_path, file_samples("storage.md"))
        result = run_pytest(tmp_path, "test_shared_store.py", "-k",
                            "processes_never_claim or claim_starts_the_job")
        assert result.returncode == 0, result.stdout + result.stderr
        assert outcomes(result.stdout).get("passed") == 2, result.stdout

    def test_the_dict_store_passes_mypy_strict(self, tmp_path: Path) -> None:
        """The backend an author copies type-checks under ``mypy --strict`` against jobkit."""
        write_files(tmp_path, file_samples("storage.md"))
        result = subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"),
             "dictstore.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
            check=False, env={**os.environ, "MYPYPATH": str(ROOT)})
        assert result.returncode == 0, result.stdout + result.stderr

    def test_the_scratch_store_of_the_hooks_page_passes_the_suite(self, tmp_path: Path) -> None:
        """docs/hooks.md's ScratchStorage sample runs (with durability: full), and the store
        it registers passes the suite, its optional capabilities included."""
        files = file_samples("hooks.md")
        assert set(files) == {"scratch.py"}
        write_files(tmp_path, {**files, "test_scratch.py": SCRATCH_TEST})
        result = run_pytest(tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        counts = outcomes(result.stdout)
        assert counts.get("passed", 0) >= 90 and "failed" not in counts, result.stdout
        assert "skipped" not in counts, result.stdout

    @pytest.mark.parametrize("page", PLUGIN_PAGES)
    def test_no_sample_of_a_plugin_page_goes_untested(self, page: str) -> None:
        """Every Python block of the page runs: in tests/test_docs.py or as part of a file."""
        untested = [line for line, language, _, before in code_blocks(DOCS / page)
                    if language == "python" and before == NOT_TESTED]
        assert untested == [], f"{page}: untested Python samples at lines {untested}"


def table_fields(cls: type) -> set[str]:
    """The field names docs/storage.md's table for ``cls`` lists (its ``### `Name` `` section;
    in a section of two classes, the rows whose meaning starts with ``Name:``)."""
    text = (DOCS / "storage.md").read_text(encoding="utf-8")
    name = cls.__name__
    sections = re.split(r"^#{2,3} ", text, flags=re.MULTILINE)
    [section] = [s for s in sections if f"`{name}`" in s.splitlines()[0]]
    found: set[str] = set()
    shared = section.splitlines()[0].count("`") > 2
    for line in section.splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if not cells or not cells[0].startswith("`"):
            continue
        if shared and not cells[-1].startswith(f"`{name}`:"):
            continue
        found.update(re.findall(r"`(\w+)`", cells[0]))
    return found


class TestRecordDocs:
    @pytest.mark.parametrize(
        "cls",
        [records.NewJob, records.JobRecord, records.Attempt, records.Lease, records.RetryPolicy,
         records.JobLogLine, records.WorkerInfo],
        ids=lambda cls: cls.__name__,
    )
    def test_every_field_is_documented(self, cls: type) -> None:
        """The record's table in docs/storage.md lists exactly its fields."""
        assert table_fields(cls) == {field.name for field in attrs.fields(cls)}


class UrlOnlyStorage(MemoryStorage):
    """A store whose from_url takes the URL alone."""

    scheme = "urlonly"

    @classmethod
    def from_url(cls, url: str) -> UrlOnlyStorage:  # type: ignore[override]
        return cls()


class UrlOnlyPlugin:
    @hookimpl
    def jobkit_register_storage(self, registry: StorageRegistry) -> None:
        registry.add("urlonly", UrlOnlyStorage)


class TestFromUrlOptions:
    def test_a_from_url_without_options_is_a_config_error(self) -> None:
        """A backend whose from_url takes only the URL (as this page once showed), opened with
        durability: full, is a ConfigError naming its class and the option, not a TypeError."""
        config = Config.from_dict({"storage": "urlonly://", "durability": "full"})
        with (JobKit(config, plugins=(UrlOnlyPlugin(),), load_entrypoints=False) as app,
              pytest.raises(ConfigError) as info):
            app.storage  # noqa: B018 - opens the store
        assert str(info.value) == (
            "storage: 'urlonly://': test_docs_storage.UrlOnlyStorage.from_url does not take "
            "durability='full' (jobs.yaml's durability: full); a backend's from_url(url, "
            "**options) accepts it (see docs/storage.md)"
        )
        plain = Config.from_dict({"storage": "urlonly://"})
        with JobKit(plain, plugins=(UrlOnlyPlugin(),), load_entrypoints=False) as app:
            assert isinstance(app.storage, UrlOnlyStorage)  # nothing passed: it opens
