"""`jobkit workflow ID` (a tree, and --json) and `jobkit workflow cancel ID`, on each store.

On SQLite and PostgreSQL the commands read what an app in the test wrote, as any other
process would; on
memory (and on a store without the ``workflows`` capability) the command is given the test's
app, since a memory store lives in one process.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import config_data, write_config

from jobkit import JobKit, chain, group, step
from jobkit.cli import main
from jobkit.cli.group import State
from jobkit.cli.workflows import MAX_DEPTH
from jobkit.config import Config
from jobkit.records import JobStatus
from jobkit.storage import MemoryStorage
from jobkit.testing.coreonly import CoreOnlyStorage
from jobkit.worker import run_until_empty
from jobkit.workflow_report import tree, workflow_json


def record(ledger: str, tag: str, **options: Any) -> Any:
    """A step of Recorder.record."""
    return step("Recorder", "record", {"ledger": ledger, "tag": tag}, **options)


def fan_in(ledger: str) -> Any:
    """A step, a group of three with a callback, a last step: six steps."""
    return chain(record(ledger, "first"),
                 group(record(ledger, "a"), record(ledger, "b"), record(ledger, "c"),
                       then=record(ledger, "then")),
                 record(ledger, "last"))


@pytest.fixture(params=["sqlite", "memory", "postgres"])
def cli(request: pytest.FixtureRequest, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[JobKit, Any]]:
    """An app with the sample jobs, and `jobkit --config <its jobs.yaml> ARGS` in-process."""
    monkeypatch.chdir(tmp_path)
    if request.param != "memory":
        storage = (config_data(tmp_path)["storage"] if request.param == "sqlite"
                   else request.getfixturevalue("empty_postgres_url"))
        config = write_config(tmp_path, storage=storage)
        app = JobKit(Config.from_dict(config_data(tmp_path, storage=storage)),
                     load_entrypoints=False)
    else:
        config = write_config(tmp_path, storage="memory://")
        app = JobKit(Config.from_dict(config_data(tmp_path, storage="memory://")),
                     load_entrypoints=False)
        monkeypatch.setattr(State, "app", lambda self, log=True: app)

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, ["--config", str(config), *args])

    with app:
        yield app, invoke


def step_lines(output: str) -> dict[str, str]:
    """The tree's lines by job id (``#ID``), each job id on one line only."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        match = re.search(r"  #(\d+)  ", line)
        if match:
            assert match.group(1) not in found, f"job {match.group(1)} shown twice"
            found[match.group(1)] = line
    return found


class TestShow:
    def test_the_tree_shows_each_step_once_with_its_status(
        self, cli: tuple[JobKit, Any], ledger: str
    ) -> None:
        """Each step once: label, Name.method, job id, status, nested under its parent.

        The callback is under the last member and names the other two; what follows the
        callback is under it."""
        app, invoke = cli
        workflow_id = app.run_workflow(fan_in(ledger))
        ids = [s.job_id for s in app.get_workflow(workflow_id).steps]
        result = invoke("workflow", workflow_id)
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[0] == (
            f"workflow {workflow_id}: 6 step(s); pending 1, blocked 5")
        lines = step_lines(result.stdout)
        assert list(lines) == ids
        first, a, _, c, then, _ = (lines[job_id] for job_id in ids)
        assert re.fullmatch(rf"└── 0  Recorder\.record  #{ids[0]}  pending", first)
        assert a.endswith(f"├── 1.0  Recorder.record  #{ids[1]}  blocked")
        assert c.endswith(f"└── 1.2  Recorder.record  #{ids[3]}  blocked")
        assert then.endswith(f"└── 1.then  Recorder.record  #{ids[4]}  blocked  "
                             f"(also waits for 1.0 #{ids[1]}, 1.1 #{ids[2]})")
        # nested: each under the step it waits for (the last one for the callback)
        depth = {job_id: len(line) - len(line.lstrip(" │├└─")) for job_id, line in lines.items()}
        assert depth[ids[1]] == depth[ids[3]] > depth[ids[0]]
        assert depth[ids[5]] > depth[ids[4]] > depth[ids[3]]

        run_until_empty(app)
        done = invoke("workflow", "show", workflow_id)
        assert done.exit_code == 0, done.output
        assert done.stdout.splitlines()[0].endswith("6 step(s); completed 6")
        assert all(line.endswith("completed") or "completed  (also" in line
                   for line in step_lines(done.stdout).values())

    def test_json_is_the_workflow_and_each_step(
        self, cli: tuple[JobKit, Any], ledger: str
    ) -> None:
        """`--json`: id, counts, finished and each step's job id, label, status and parents."""
        app, invoke = cli
        workflow_id = app.run_workflow(fan_in(ledger))
        result = invoke("workflow", workflow_id, "--json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data == workflow_json(app.get_workflow(workflow_id))
        assert data["finished"] is False and data["counts"] == {"pending": 1, "blocked": 5}
        steps = data["steps"]
        assert [s["label"] for s in steps] == ["0", "1.0", "1.1", "1.2", "1.then", "2"]
        assert steps[4]["parents"] == [s["job_id"] for s in steps[1:4]]
        assert steps[4]["needs"] == "ended" and steps[5]["needs"] == "completed"
        assert {s["name"] + "." + s["method"] for s in steps} == {"Recorder.record"}
        assert set(steps[0]) == {"job_id", "label", "name", "method", "status", "parents",
                                 "needs", "result_as"}

    def test_a_deep_chain_continues_in_a_tree_of_its_own(
        self, cli: tuple[JobKit, Any], ledger: str
    ) -> None:
        """A chain deeper than MAX_DEPTH: every step once, the rest in a part below."""
        app, invoke = cli
        length = MAX_DEPTH * 2 + 3
        workflow_id = app.run_workflow(chain(*(record(ledger, str(i)) for i in range(length))))
        result = invoke("workflow", workflow_id)
        assert result.exit_code == 0, result.output
        assert len(step_lines(result.stdout)) == length
        assert result.stdout.count("1 more below") == 2
        steps = app.get_workflow(workflow_id).steps
        cut = steps[MAX_DEPTH - 1]
        assert f"after {cut.label} #{cut.job_id}:" in result.stdout
        assert max(len(line) for line in result.stdout.splitlines()) < 80

    def test_an_unknown_id_is_one_line_and_exit_1(self, cli: tuple[JobKit, Any]) -> None:
        _, invoke = cli
        for args in (("workflow", "999"), ("workflow", "999", "--json"),
                     ("workflow", "cancel", "999")):
            result = invoke(*args)
            assert result.exit_code == 1
            assert result.stderr == "jobkit: error: no workflow with id '999' in the store\n"
            assert "Traceback" not in result.output

    def test_help_names_show_and_cancel(self, cli: tuple[JobKit, Any]) -> None:
        _, invoke = cli
        result = invoke("workflow", "--help")
        assert result.exit_code == 0
        assert "jobkit workflow ID" in result.stdout
        assert re.search(r"^\s+cancel\s+Cancel every step", result.stdout, re.M)
        assert re.search(r"^\s+show\s+Show workflow", result.stdout, re.M)
        assert "--json" in invoke("workflow", "show", "--help").stdout
        assert "workflow" in invoke("--help").stdout
        missing = invoke("workflow")
        assert missing.exit_code == 2
        assert missing.stderr.startswith("jobkit: error: Missing argument 'WORKFLOW_ID'. ")
        assert missing.stderr.endswith(" workflow show --help')\n")


class TestCancel:
    def test_cancel_ends_every_unfinished_step_once(
        self, cli: tuple[JobKit, Any], ledger: str
    ) -> None:
        """Every step not ended is cancelled; again, nothing is left: exit 1."""
        app, invoke = cli
        workflow_id = app.run_workflow(fan_in(ledger))
        result = invoke("workflow", "cancel", workflow_id)
        assert result.exit_code == 0, result.output
        assert result.stdout == f"cancelled 6 step(s) of workflow {workflow_id}\n"
        assert {s.status for s in app.get_workflow(workflow_id).steps} == {JobStatus.CANCELLED}
        again = invoke("workflow", "cancel", workflow_id, "--json")
        assert again.exit_code == 1
        assert json.loads(again.stdout) == {"workflow_id": workflow_id, "cancelled": 0}
        assert again.stderr == f"jobkit: error: workflow {workflow_id} has no unfinished step\n"


def test_a_store_without_the_capability_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The core alone: one line naming the capability, exit 1, no traceback."""
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, storage="memory://")
    with JobKit(storage=CoreOnlyStorage(MemoryStorage()), load_entrypoints=False) as app:
        monkeypatch.setattr(State, "app", lambda self, log=True: app)
        for args in (("workflow", "1"), ("workflow", "cancel", "1")):
            result = CliRunner().invoke(main, ["--config", str(config), *args])
            assert result.exit_code == 1
            assert "no 'workflows' capability" in result.stderr
            assert result.stderr.startswith("jobkit: error: cannot ")
            assert "Traceback" not in result.output


def test_the_tree_is_built_without_recursion() -> None:
    """A chain of 3,000 steps (past Python's recursion limit) is a tree 3,000 deep."""
    with JobKit(Config.from_dict({"storage": "memory://"}), load_entrypoints=False) as app:
        app.register("Recorder", __import__("sample_jobs").Recorder)
        workflow_id = app.run_workflow(chain(*(record("l", str(i)) for i in range(3000))))
        (root,) = tree(app.get_workflow(workflow_id))
        depth = 1
        while root.children:
            (root,) = root.children
            depth += 1
        assert depth == 3000
