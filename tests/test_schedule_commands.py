"""`jobkit schedules` (table and --json) and `jobkit schedules pause|resume NAME`, on a SQLite file.

A tick is fired beforehand by an app on the same file under a clock the test moves, as a
worker's scheduler fires it; the commands then read the store as any other process would.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import config_data, write_config
from test_docs import DOCS, code_blocks
from test_schedules import Clock, at

from jobkit import JobKit
from jobkit.cli import main
from jobkit.cli.schedules import table_lines
from jobkit.config import Config
from jobkit.masking import MASK
from jobkit.schedule_report import schedule_json
from jobkit.schedules import Schedule, ScheduleView
from jobkit.storage.sqlite import SQLiteStorage

#: The schedules of these tests: one of every minute, one at 03:00 in Berlin, one disabled.
SCHEDULES: dict[str, dict[str, Any]] = {
    "sweep": {"job": "Recorder", "method": "record", "params": {"ledger": "l", "tag": "s"},
              "every": "1m", "queue": "maintenance", "priority": -1},
    "nightly": {"job": "Recorder", "method": "record", "params": {"ledger": "l", "tag": "n"},
                "cron": "0 3 * * *", "timezone": "Europe/Berlin"},
    "off": {"job": "Recorder", "method": "record", "params": {"ledger": "l", "tag": "o"},
            "every": "1h", "enabled": False},
}


def fire_sweep_once(tmp_path: Path) -> str:
    """Fire schedule ``sweep``'s tick of 2026-01-01 00:01 into the test's SQLite file; its job."""
    data = config_data(tmp_path, schedules=SCHEDULES)
    clock = Clock("2026-01-01T00:00:30")
    storage = SQLiteStorage.from_url(data["storage"], clock=clock)
    with JobKit(Config.from_dict(data), load_entrypoints=False, storage=storage) as app:
        sweep = app.config.schedules["sweep"]
        assert app.fire_schedule(sweep) == []  # first seen: no tick before it
        clock.now = at("2026-01-01T00:01:30")
        (record,) = app.fire_schedule(sweep)
        assert (record.queue, record.priority) == ("maintenance", -1)
        return record.id


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`jobkit --config <jobs.yaml with SCHEDULES> ARGS` in-process."""
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, schedules=SCHEDULES)

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, ["--config", str(config), *args])

    return invoke


class TestSchedulesCommand:
    def test_the_table_lists_each_schedule_with_its_last_and_next_run(
        self, tmp_path: Path, cli: Any
    ) -> None:
        """One line per schedule, by name: what it runs, when, its state, last and next run."""
        job_id = fire_sweep_once(tmp_path)
        result = cli("schedules")
        assert result.exit_code == 0, result.output
        header, *rows = result.stdout.splitlines()
        assert re.split(r"\s{2,}", header) == [
            "schedule", "job", "when", "state", "last run (UTC)", "next run (UTC)", "last job"]
        cells = {row.split()[0]: re.split(r"\s{2,}", row) for row in rows}
        assert list(cells) == ["nightly", "off", "sweep"]
        assert cells["nightly"][:5] == ["nightly", "Recorder.record",
                                        "cron 0 3 * * * (Europe/Berlin)", "active", "-"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d 0[12]:00:00", cells["nightly"][5])
        assert cells["nightly"][6] == "-"
        assert cells["off"][2:] == ["every 1h", "disabled", "-", "-", "-"]
        assert cells["sweep"][2:5] == ["every 1m", "active", "2026-01-01 00:01:00"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:00", cells["sweep"][5])
        assert cells["sweep"][6] == job_id

    def test_json_prints_one_object_per_schedule(self, tmp_path: Path, cli: Any) -> None:
        """`--json`: the schedule's settings and state, times in ISO 8601 UTC."""
        job_id = fire_sweep_once(tmp_path)
        rows = [json.loads(line) for line in cli("schedules", "--json").stdout.splitlines()]
        assert [row["name"] for row in rows] == ["nightly", "off", "sweep"]
        sweep = rows[2]
        assert {key: sweep[key] for key in sweep if key != "next_run_at"} == {
            "name": "sweep", "job": "Recorder", "method": "record",
            "params": {"ledger": "l", "tag": "s"}, "when": "every 1m", "cron": None,
            "every_seconds": 60, "timezone": "UTC", "queue": "maintenance", "priority": -1,
            "enabled": True, "catch_up": "latest", "overlap": "skip", "state": "active",
            "paused": False, "last_run_at": "2026-01-01T00:01:00+00:00", "last_job_id": job_id}
        assert sweep["next_run_at"].endswith(":00+00:00")
        assert (rows[0]["cron"], rows[0]["timezone"], rows[0]["every_seconds"]) == (
            "0 3 * * *", "Europe/Berlin", None)
        assert (rows[1]["state"], rows[1]["next_run_at"]) == ("disabled", None)

    def test_pause_and_resume(self, tmp_path: Path, cli: Any) -> None:
        """The pause is kept in the store: `schedules` shows it, and another app sees it."""
        assert cli("schedules", "pause", "sweep").stdout == "schedule sweep paused\n"
        assert cli("schedules", "pause", "sweep").stdout == "schedule sweep was paused already\n"
        row = json.loads(cli("schedules", "--json").stdout.splitlines()[2])
        assert (row["state"], row["paused"], row["next_run_at"]) == ("paused", True, None)
        table = cli("schedules").stdout.splitlines()
        assert re.split(r"\s{2,}", table[3])[3:6] == ["paused", "-", "-"]
        data = config_data(tmp_path, schedules=SCHEDULES)
        with JobKit(Config.from_dict(data), load_entrypoints=False) as app:
            assert [view.paused for view in app.schedules()] == [False, False, True]
        assert cli("schedules", "resume", "sweep").stdout == "schedule sweep resumed\n"
        assert cli("schedules", "resume", "sweep").stdout == "schedule sweep was not paused\n"
        assert json.loads(cli("schedules", "--json").stdout.splitlines()[2])["paused"] is False

    @pytest.mark.parametrize("verb", ["pause", "resume"])
    def test_an_unknown_name_names_the_configured_schedules(self, cli: Any, verb: str) -> None:
        """One line on stderr listing the configured schedules, exit 1, no traceback."""
        result = cli("schedules", verb, "nighty")
        assert result.exit_code == 1
        assert result.stderr == ("jobkit: error: no schedule is configured under the name "
                                 "'nighty' (configured: nightly, off, sweep)\n")
        assert "Traceback" not in result.output

    def test_without_schedules(self, tmp_path: Path) -> None:
        """No schedules: a line saying so (and nothing in JSON); any name is unknown."""
        config = write_config(tmp_path)
        runner = CliRunner()
        listed = runner.invoke(main, ["--config", str(config), "schedules"])
        assert (listed.exit_code, listed.stdout) == (
            0, "no schedules: jobs.yaml has no schedules: section\n")
        assert runner.invoke(main, ["--config", str(config), "schedules", "--json"]).stdout == ""
        paused = runner.invoke(main, ["--config", str(config), "schedules", "pause", "x"])
        assert paused.exit_code == 1 and "no schedule is configured" in paused.stderr

    def test_json_masks_the_secrets_in_params(self) -> None:
        """A schedule's params show as a job's do: secret-looking keys and URL passwords hidden."""
        schedule = Schedule(name="sync", job="Sync", method="run", every="1m",
                            params={"api_key": "k-123", "url": "https://bot:pw@example.com/x"})
        view = ScheduleView(schedule, paused=False, last_run_at=None, last_job_id=None,
                            next_run_at=None)
        assert schedule_json(view)["params"] == {"api_key": MASK,
                                                 "url": f"https://bot:{MASK}@example.com/x"}

    @pytest.mark.parametrize("page", ["cli.md", "scheduling.md"])
    def test_the_docs_show_the_table_as_printed(self, page: str) -> None:
        """The sample table of the page is what the command prints for its rows."""
        [sample] = [[line for line in code.splitlines() if not line.startswith("$ ")]
                    for _, language, code, _ in code_blocks(DOCS / page)
                    if language == "" and "\nschedule " in f"\n{code}"]
        rows = [tuple(re.split(r"\s{2,}", line)) for line in sample[1:]]
        assert sample == table_lines(rows)

    @pytest.mark.parametrize("args", [["schedules"], ["schedules", "pause"],
                                      ["schedules", "resume"]])
    def test_help(self, args: list[str]) -> None:
        """Each command explains itself without opening a store."""
        result = CliRunner().invoke(main, [*args, "--help"])
        assert result.exit_code == 0, result.output
        assert "schedule" in result.stdout.lower() and "Usage:" in result.stdout
