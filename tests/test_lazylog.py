"""jobkit's lazy logger (jobkit.lazylog): loguru imported on first use, messages off by default.

A user's ``logger.enable("jobkit")`` is kept whenever it comes; records are named after the
jobkit module that logged. Each case runs in a fresh interpreter (loguru is imported here).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import subprocess_env

#: Logs one error from a jobkit module (jobkit.events) through the lazy logger.
JOBKIT_LOGS = """
from types import SimpleNamespace
import jobkit.events
jobkit.events._log_failure("probe", SimpleNamespace(kind="k", job=SimpleNamespace(id=7)))
"""

#: A sink that keeps the module name and message of every record.
SINK = """
from loguru import logger
seen = []
logger.remove()
logger.add(lambda m: seen.append([m.record["name"], m.record["message"]]), level=0)
"""


def run(*steps: str) -> list[list[str]]:
    """Run the steps in a fresh interpreter; the records its sink saw."""
    tell = "print(__import__('json').dumps(seen))"
    code = "\n".join(textwrap.dedent(step) for step in [*steps, tell])
    result = subprocess.run([sys.executable, "-c", code], env=subprocess_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    seen: list[list[str]] = json.loads(result.stdout.splitlines()[-1])
    return seen


PROBE = ["jobkit.events", "probe raised in jobkit_job_event(k) for job 7"]


class TestOffByDefault:
    """An application that adds a sink gets no jobkit record unless it enables "jobkit"."""

    @pytest.mark.parametrize("order", ["loguru first", "jobkit first"])
    def test_disabled_whichever_is_imported_first(self, order: str) -> None:
        """Whether loguru or jobkit is imported first, jobkit's message reaches no sink."""
        steps = [SINK, "import jobkit"] if order == "loguru first" else ["import jobkit", SINK]
        assert run(*steps, JOBKIT_LOGS, "logger.info('mine')") == [["__main__", "mine"]]

    def test_disabled_when_jobkit_imports_loguru(self) -> None:
        """jobkit's own first message imports loguru: it is disabled then, before it logs."""
        seen = run("import jobkit, sys", "assert 'loguru' not in sys.modules", JOBKIT_LOGS,
                   "assert 'loguru' in sys.modules", SINK, JOBKIT_LOGS, "logger.info('mine')")
        assert seen == [["__main__", "mine"]]


class TestUserEnables:
    """``logger.enable("jobkit")`` shows jobkit's messages, whenever the user calls it."""

    def test_enabled_before_jobkit_first_logs(self) -> None:
        """Enabled after import jobkit, before jobkit's first message: seen, not disabled again.

        The user imported loguru, so jobkit's first message imports nothing then.
        """
        assert run("import jobkit", SINK, "logger.enable('jobkit')", JOBKIT_LOGS) == [PROBE]

    def test_enabled_after_jobkit_first_logs(self) -> None:
        """Enabled after jobkit logged once (and imported loguru): later messages are seen."""
        seen = run("import jobkit", JOBKIT_LOGS, SINK, "logger.enable('jobkit')", JOBKIT_LOGS)
        assert seen == [PROBE]

    def test_enabled_through_configure(self) -> None:
        """``logger.configure(activation=...)`` after import jobkit is kept as well."""
        seen = run("import jobkit", SINK, "logger.configure(activation=[('jobkit', True)])",
                   JOBKIT_LOGS)
        assert seen == [PROBE]


class TestRecordNames:
    """loguru finds the caller past the stand-in: records name the module that logged."""

    def test_the_jobkit_module_names_the_record(self) -> None:
        """A jobkit module's record is named after it, and ``{name}`` formats it."""
        seen = run("import jobkit", SINK, "logger.enable('jobkit')", JOBKIT_LOGS)
        assert [name for name, _ in seen] == ["jobkit.events"]

    def test_a_caller_of_the_stand_in_names_the_record(self) -> None:
        """Any module logging through ``jobkit.lazylog.logger`` is the record's name."""
        seen = run(SINK, "from jobkit.lazylog import logger as lazy", "lazy.info('through')",
                   "lazy.opt(depth=0).bind(a=1).warning('bound')")
        assert seen == [["__main__", "through"], ["__main__", "bound"]]

    def test_text_format_names_the_module(self) -> None:
        """A sink's ``{name}:{function}`` shows the jobkit module and function that logged."""
        seen = run("import jobkit", """
            from loguru import logger
            seen = []
            logger.remove()
            logger.add(lambda m: seen.append([str(m).splitlines()[0]]), format="{name}:{function}")
            logger.enable('jobkit')
        """, JOBKIT_LOGS)
        assert seen == [["jobkit.events:_log_failure"]]


def test_the_loader_of_loguru_is_its_own() -> None:
    """The watch hands loguru back its own loader and leaves the import system after."""
    code = """
        import sys, jobkit
        from jobkit.lazylog import _LoguruWatch
        assert any(isinstance(f, _LoguruWatch) for f in sys.meta_path)
        import loguru, loguru._logger
        assert not any(isinstance(f, _LoguruWatch) for f in sys.meta_path)
        assert type(loguru.__loader__).__name__ == "SourceFileLoader", loguru.__loader__
        assert loguru.__spec__.loader is loguru.__loader__
        seen = []
    """
    assert run(code) == []
