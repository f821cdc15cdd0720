"""A plugin or notifier that raises is logged with its whole traceback, in a worker process as
in the CLI's process: the same lines in both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_logs import log_config_data
from workers import subprocess_env

from jobkit.logs import ERRORS_FILE

#: A plugin package, installed as a distribution would be: a module and its dist-info with an
#: entry point in the group ``jobkit``.
PLUGIN = '''
from jobkit import hookimpl
from jobkit.notify import Notifier


def explain(kind):
    raise ValueError(f"cannot explain {kind}")


class Broken(Notifier):
    def notify(self, event):
        raise RuntimeError("notifier broke")


@hookimpl
def jobkit_register_notifiers(registry):
    registry.add("broken", Broken)


@hookimpl
def jobkit_job_event(event):
    if event.kind in ("enqueued", "started"):
        explain("the event")
'''


def install_plugin(site: Path) -> None:
    """The broken plugin as a distribution in ``site`` (a folder put on PYTHONPATH)."""
    site.mkdir()
    (site / "broken_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "broken_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[jobkit]\nbroken = broken_plugin\n")


def run(config: Path, site: Path, *args: str) -> None:
    """`python -m jobkit --config CONFIG ARGS` with the plugin installed; it must exit 0."""
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
    result = subprocess.run([sys.executable, "-m", "jobkit", "--config", str(config), *args],
                            cwd=config.parent, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def records(text: str) -> list[tuple[str, list[str]]]:
    """The records of a text log file: (message, traceback lines)."""
    found: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("  | "):
            found[-1][1].append(line[4:])
        else:
            found.append((line.rsplit(" | ", 1)[-1], []))
    return found


def traceback_of(found: list[tuple[str, list[str]]], message: str) -> list[str]:
    """The traceback of the one record whose message starts with ``message``."""
    matching = [lines for text, lines in found if text.startswith(message)]
    assert len(matching) == 1, (message, found)
    return matching[0]


@pytest.fixture
def broken_setup(tmp_path: Path) -> tuple[Path, Path]:
    """A jobs.yaml with the broken notifier configured, and the plugin's site folder."""
    site = tmp_path / "site"
    install_plugin(site)
    data = log_config_data(tmp_path, format="text")
    data["notifications"] = [{"plugin": "broken", "events": ["enqueued", "started"]}]
    config = tmp_path / "jobs.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config, site


class TestTracebacksFromWorkerProcesses:
    def test_same_traceback_in_the_worker_as_in_the_cli(
        self, broken_setup: tuple[Path, Path], tmp_path: Path
    ) -> None:
        """A raising event hook and notifier: the worker's lines show the whole traceback,
        line for line the one the CLI's process logs for the same error."""
        config, site = broken_setup
        run(config, site, "run", "Recorder", "record", "-p", f"ledger={tmp_path / 'l'}",
            "-p", "tag=t")
        run(config, site, "worker", "--burst", "-n", "1")
        found = records((tmp_path / "logs" / ERRORS_FILE).read_text())
        for cli, worker in [
            ("plugin broken raised in jobkit_job_event(enqueued)",
             "plugin broken raised in jobkit_job_event(started)"),
            ("notifier Broken failed for job 1 (enqueued)",
             "notifier Broken failed for job 1 (started)"),
        ]:
            in_cli, in_worker = traceback_of(found, cli), traceback_of(found, worker)
            assert in_cli[0] == "Traceback (most recent call last):", in_cli
            assert any("broken_plugin.py" in line for line in in_cli), in_cli
            assert in_worker == in_cli

    def test_json_records_carry_the_traceback_text(
        self, broken_setup: tuple[Path, Path], tmp_path: Path
    ) -> None:
        """In the JSON format the record of either process holds the traceback as text."""
        config, site = broken_setup
        data = yaml.safe_load(config.read_text())
        data["logging"]["format"] = "json"
        config.write_text(yaml.safe_dump(data, sort_keys=False))
        run(config, site, "run", "Recorder", "record", "-p", f"ledger={tmp_path / 'l'}",
            "-p", "tag=t")
        run(config, site, "worker", "--burst", "-n", "1")
        lines = [json.loads(line) for line in
                 (tmp_path / "logs" / ERRORS_FILE).read_text().splitlines()]
        hooks: dict[str, Any] = {line["record"]["extra"]["kind"]: line for line in lines
                                 if line["record"]["message"].startswith("plugin broken")}
        assert set(hooks) == {"enqueued", "started"}
        tracebacks = {kind: hook["record"]["extra"]["traceback"] for kind, hook in hooks.items()}
        assert tracebacks["enqueued"] == tracebacks["started"]
        assert "in explain" in tracebacks["started"], tracebacks
        for hook in hooks.values():
            assert tracebacks["started"].rstrip() in hook["text"]


class TestUnpicklableErrors:
    def test_the_traceback_text_survives_an_exception_that_cannot_be_pickled(self) -> None:
        """A record whose exception class only the worker process knows still sends its
        traceback as text, not as a repr on one line."""
        import pickle

        from loguru import logger

        from jobkit.worker.logpipe import _line, _pickled

        class OnlyHere(Exception):
            pass

        lines: list[Any] = []
        handler = logger.add(lambda message: lines.append(_line(message.record)), level=0)
        try:
            try:
                raise OnlyHere("local")
            except OnlyHere:
                logger.opt(exception=True).error("it broke")
        finally:
            logger.remove(handler)
        sent = pickle.loads(_pickled(lines))
        text = sent[0].extra["traceback"]
        assert text.startswith("Traceback (most recent call last):\n"), text
        assert text.rstrip().endswith("OnlyHere: local")
