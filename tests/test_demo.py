"""`jobkit demo`: the first thing a new user runs, end to end with the first-party plugins."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import urllib.request
from pathlib import Path

import pytest
from conftest import jobkit_process
from rich.console import Console
from sample_jobs import HOSTILE, HOSTILE_SHOWN, Hostile
from workers import REPO, dashboard_process, printed_dashboard_command

from jobkit import JobKit, JobStatus
from jobkit.config import Config
from jobkit.demo import _table
from jobkit.worker import run_until_empty

pytestmark = pytest.mark.slow


class TestDemo:
    def test_runs_the_mix_to_its_end(self, tmp_path: Path) -> None:
        """Every job ends: the report fails for good, one email is cancelled, the rest complete;
        both log files exist and nothing is left running; the dashboard command it prints
        shows those jobs when pasted in the repository's root folder."""
        folder = tmp_path / "demo"
        result = jobkit_process(tmp_path, "demo", "--dir", str(folder), timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert [path.name for path in tmp_path.iterdir()] == ["demo"]  # nothing where it ran
        assert f"job log:   {folder / 'logs' / 'background_jobs.log'}" in result.stdout
        with JobKit.from_config(folder / "jobs.yaml") as app:  # from another folder
            jobs = app.list_jobs(limit=1000)
            by_status = {status: [j for j in jobs if j.status == status] for status in JobStatus}
            retried = [j for j in by_status[JobStatus.COMPLETED] if j.attempts > 1]
            reports = [j.name for j in by_status[JobStatus.FAILED]]
            storage_url = app.config.storage
        assert reports == ["Report"]
        assert len(by_status[JobStatus.CANCELLED]) == 1
        assert not by_status[JobStatus.PENDING] and not by_status[JobStatus.RUNNING]
        assert not by_status[JobStatus.RETRYING]
        assert retried, "some invoices fail at random and complete on a later attempt"
        # jobs.yaml says sqlite:///jobkit.db: beside it, whatever the working directory
        assert storage_url == f"sqlite:///{folder / 'jobkit.db'}"
        assert (folder / "jobkit.db").exists()
        assert "ConnectionError" in (folder / "logs" / "background_jobs_errors.log").read_text()
        # the dashboard is ready to open: its password printed, kept beside jobs.yaml, hashed
        from jobkit.dashboard.passwords import verify_password

        password = (folder / "dashboard-password.txt").read_text().strip()
        assert f"(password: {password}, also in" in result.stdout
        assert verify_password(password, app.config.dashboard.password_hash or "")

        # the dashboard command it printed works as pasted in the repository's root folder
        command = printed_dashboard_command(result.stdout)
        assert command == ["--config", str(folder / "jobs.yaml"), "dashboard"]
        stray = [REPO / "jobkit.db", REPO / "logs"]
        assert not any(path.exists() for path in stray), "left by an earlier run: remove them"
        with dashboard_process(command, cwd=REPO) as served:
            request = urllib.request.Request(f"{served.base}/api/jobs?status=failed",
                                              headers={"Authorization": f"Bearer {password}"})
            with urllib.request.urlopen(request, timeout=10) as response:
                shown = json.load(response)
        assert [job["name"] for job in shown["jobs"]] == ["Report"]
        assert not any(path.exists() for path in stray), "the dashboard made its own store"

class TestDemoTable:
    def test_errors_are_cut_with_an_ellipsis_and_escaped(self) -> None:
        """The demo's error column shows at most 60 characters, a cut one ending with "…",
        with control characters escaped and markup shown as written."""
        config = Config.from_dict({"storage": "memory://", "defaults": {"retry_attempts": 0}})
        with JobKit(config, load_entrypoints=False) as app:
            app.register("Hostile", Hostile)
            for text in (HOSTILE + " and more" * 10, "x" * 48, "y" * 49):
                app.run_background_job("Hostile", "explode", {"text": text})
            assert run_until_empty(app) == 3
            console = Console(file=io.StringIO(), width=400, color_system=None)
            console.print(_table(app, "summary"))
        shown = console.file.getvalue()  # type: ignore[attr-defined]
        assert f"ValueError: {HOSTILE_SHOWN}"[:59] + "\u2026 " in shown
        assert f"ValueError: {'x' * 48} " in shown  # 60 characters: shown whole
        assert f"ValueError: {'y' * 47}\u2026 " in shown
        assert "\x1b" not in shown and "second line" not in shown.split("\n", 1)[0]



def quick_start_blocks() -> list[tuple[str, str]]:
    """The (language, code) of each fenced block of README.md's Quick start section."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```(\w+)\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)


def quick_start_script(blocks: list[tuple[str, str]], start: Path) -> str:
    """One shell session that does what the Quick start says, as typed: its shell lines run in
    order from the repository root (then from ``start``, once the environment is active), and
    each file block is written to the file its first line names (``# myapp/jobs.py``)."""
    script = ["set -eu"]
    for language, code in blocks:
        if language == "sh":
            script.append(code)
            if ".venv/bin/activate" in code:  # the setup done, the user goes on elsewhere
                script.append(f"cd {shlex.quote(str(start))}")
            continue
        name = code.splitlines()[0].lstrip("#").strip()
        script.append(f"cat > {shlex.quote(name)} <<'QUICK_START_FILE'\n{code}QUICK_START_FILE")
    return "\n".join(script) + "\n"


class TestReadmeQuickStart:
    def test_works_as_typed(self, tmp_path: Path) -> None:
        """README's Quick start, typed into a shell with no jobkit on its path: the environment
        activated, both jobs enqueued, `jobkit worker --burst` runs them and exits, status and
        list show them completed."""
        if subprocess.run(["make", "-q", "install"], cwd=REPO).returncode != 0:
            if os.environ.get("CI") == "true":
                pytest.fail("the repository's .venv is missing or stale: run make install")
            pytest.skip("the repository's .venv is missing or stale (make install)")
        blocks = quick_start_blocks()
        assert [language for language, _ in blocks] == ["sh", "sh", "python", "yaml", "sh"]
        start = tmp_path / "start"
        start.mkdir()
        venv_bin = str(REPO / ".venv" / "bin")
        path = [p for p in os.environ["PATH"].split(os.pathsep) if p != venv_bin]
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("JOBKIT_", "VIRTUAL_ENV", "PYTHON"))}
        env["PATH"] = os.pathsep.join(path)
        result = subprocess.run(
            ["bash", "-c", quick_start_script(blocks, start)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        out = [line for line in result.stdout.splitlines() if not line.startswith("make")]
        assert out[:2] == ["1", "2"], result.stdout  # the two ids, from Python and the shell
        assert "           result: welcomed Ana" in out
        assert "           status: completed" in out
        listed = [line.split() for line in out if "Welcome.send_welcome" in line]
        assert [(line[0], line[1]) for line in listed] == [("2", "completed"), ("1", "completed")]
        assert (tmp_path / "welcome" / "jobkit.db").exists()
        log = tmp_path / "welcome" / "logs" / "background_jobs.log"
        assert "event=succeeded" in log.read_text()
