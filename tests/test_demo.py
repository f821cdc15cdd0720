"""`jobkit demo`: the first thing a new user runs, end to end with the first-party plugins."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from conftest import jobkit_process
from workers import REPO, dashboard_process, printed_dashboard_command

from jobkit import JobKit, JobStatus

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
