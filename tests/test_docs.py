"""The docs: every Python sample runs, every hook and every CLI command is documented.

Each ```python block of ``docs/*.md`` runs in an empty temporary directory, in a fresh module
named ``myapp.jobs`` (so a sample's ``class: myapp.jobs:SendEmailJob`` imports a class the sample
defines). A block whose previous non-blank line is ``<!-- not-tested -->`` is skipped, and so is
one marked ``<!-- file: NAME -->``: part of a file that tests/test_docs_storage.py assembles and
runs with pytest.
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from loguru import logger

from jobkit import Job, JobKit, hookspecs
from jobkit.cli import main
from jobkit.config import Config

DOCS = Path(__file__).resolve().parent.parent / "docs"
NOT_TESTED = "<!-- not-tested -->"
IN_A_FILE = "<!-- file: "
SAMPLE_MODULE = "myapp.jobs"
_FENCE = re.compile(r"^```(\w*)\s*$")


def code_blocks(page: Path) -> Iterator[tuple[int, str, str, str]]:
    """Each fenced block of ``page``: its first line, language, code and the line before it."""
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        before = next((line.strip() for line in reversed(lines[:index]) if line.strip()), "")
        yield index + 1, opening.group(1), "\n".join(lines[index + 1 : end]), before
        index = end + 1


def python_samples() -> list[object]:
    """The tested Python samples of every page, as pytest params named ``page.md:line``."""
    return [
        pytest.param(code, id=f"{page.name}:{line}")
        for page in sorted(DOCS.glob("*.md"))
        for line, language, code, before in code_blocks(page)
        if language == "python" and before != NOT_TESTED and not before.startswith(IN_A_FILE)
    ]


def headings(page: str) -> set[str]:
    """The text of every ``## `` heading of ``docs/<page>``."""
    text = (DOCS / page).read_text(encoding="utf-8")
    return {line[3:].strip() for line in text.splitlines() if line.startswith("## ")}


def anchors(page: str) -> set[str]:
    """The GitHub-style anchors of the headings of ``docs/<page>``."""
    text = (DOCS / page).read_text(encoding="utf-8")
    return {
        re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in text.splitlines()
        if line.startswith("#")
    }


@pytest.fixture
def sample_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """A fresh ``myapp.jobs`` module to run a sample in, from an empty working directory."""
    monkeypatch.chdir(tmp_path)
    package, module = types.ModuleType("myapp"), types.ModuleType(SAMPLE_MODULE)
    package.__path__ = []
    package.jobs = module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "myapp", package)
    monkeypatch.setitem(sys.modules, SAMPLE_MODULE, module)
    yield module
    logger.disable("jobkit")  # a sample that configured logging enabled it


class TestSamples:
    def test_there_are_samples(self) -> None:
        """The docs hold tested Python samples (the extraction finds them)."""
        assert len(python_samples()) >= 10

    @pytest.mark.parametrize("code", python_samples())
    def test_sample_runs(self, code: str, sample_module: types.ModuleType) -> None:
        """The sample runs to the end without raising."""
        exec(compile(code, f"<{SAMPLE_MODULE}>", "exec"), sample_module.__dict__)


class TestReference:
    def test_every_hook_has_a_heading(self) -> None:
        """Every hook in jobkit.hookspecs has a ``## <hook name>`` heading in docs/hooks.md."""
        hooks = {name for name in vars(hookspecs) if name.startswith("jobkit_")}
        assert hooks
        assert hooks - headings("hooks.md") == set()

    def test_every_cli_command_has_a_heading(self) -> None:
        """Every ``jobkit`` command has a ``## jobkit <command>`` heading in docs/cli.md."""
        commands = {f"jobkit {name}" for name in main.commands}
        assert commands
        assert commands - headings("cli.md") == set()

    def test_links_between_pages_resolve(self) -> None:
        """Every link from one docs page to another names a page and a heading that exist."""
        links = 0
        for page in sorted(DOCS.glob("*.md")):
            text = page.read_text(encoding="utf-8")
            for target, anchor in re.findall(r"\]\(([\w-]+\.md)(?:#([\w-]+))?\)", text):
                links += 1
                assert (DOCS / target).is_file(), f"{page.name} links to missing {target}"
                if anchor:
                    assert anchor in anchors(target), f"{page.name} links to {target}#{anchor}"
        assert links


class TestSchedulingPage:
    def test_its_yaml_samples_are_jobs_yaml_files_that_pass_the_checks(
        self, sample_module: types.ModuleType
    ) -> None:
        """Each ```yaml block of docs/scheduling.md is a jobs.yaml that passes the checks.

        It loads, and `jobkit check` finds nothing wrong once the classes it names exist
        (the schedules' params included)."""

        class ReportJob(Job):
            methods = ("build",)

            def build(self, kind: str) -> str:
                return kind

        class CleanupJob(Job):
            methods = ("sweep",)

            def sweep(self) -> None:
                """Nothing to sweep here."""

        sample_module.ReportJob = ReportJob  # type: ignore[attr-defined]
        sample_module.CleanupJob = CleanupJob  # type: ignore[attr-defined]
        samples = [code for _, language, code, _ in code_blocks(DOCS / "scheduling.md")
                   if language == "yaml"]
        assert samples
        for code in samples:
            data = {**yaml.safe_load(code), "storage": "memory://"}
            with JobKit(Config.from_dict(data), load_entrypoints=False) as app:
                assert app.check() == []
                assert [view.schedule.name for view in app.schedules()] == sorted(
                    data["schedules"])
