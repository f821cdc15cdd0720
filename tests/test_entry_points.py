"""An outside package, installed with pip, ships a job through the ``jobkit.jobs`` entry point;
the app's jobs.yaml overrides the package's defaults; `jobkit worker` runs it exactly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest
import yaml
from sample_jobs import read_ledger

from jobkit import AttemptOutcome, JobKit, JobStatus

pytestmark = pytest.mark.slow
FIXTURE = Path(__file__).parent / "fixtures" / "acme_jobs"


@pytest.fixture(scope="module")
def acme_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """acme-jobs installed by pip into a directory of its own (a copy is built, not the tree)."""
    source = tmp_path_factory.mktemp("acme-src") / "acme_jobs"
    shutil.copytree(FIXTURE, source)
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
    )
    return site


@pytest.fixture
def acme_config(tmp_path: Path) -> Path:
    """The application's jobs.yaml: per-job overrides for the package's job."""
    path = tmp_path / "jobs.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "storage": f"sqlite:///{tmp_path / 'jobkit.db'}",
                "logging": {"dir": str(tmp_path / "logs")},
                "worker": {"poll_interval": 0.02, "heartbeat": 0.1, "requeue_interval": 0.2},
                "jobs": {"Acme": {"retry_attempts": 2, "retry_delay": 0.3}},
            }
        )
    )
    return path


class TestOutsidePackage:
    def test_registered_from_its_entry_point_with_layered_settings(
        self, acme_site: Path, acme_config: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The job is found through the entry point; jobs.yaml beats the package's defaults."""
        monkeypatch.syspath_prepend(str(acme_site))
        with JobKit.from_config(acme_config) as app:
            spec = app.registry.get("Acme")
            resolved = app.job_settings("Acme")
        assert "entry point jobkit.jobs: Acme = acme_jobs:AcmeJob (package acme-jobs 1.0.0)" in (
            spec.source
        )
        assert (resolved.settings.retry_attempts, resolved.settings.retry_delay) == (2, 0.3)
        assert resolved.sources["retry_attempts"].endswith("(jobs.Acme)")
        assert resolved.settings.priority == 1
        assert resolved.sources["priority"] == "package acme-jobs"

    def test_runs_through_the_worker_exactly(
        self,
        acme_site: Path,
        acme_config: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Priority order, delays, attempt counts, retry gaps, logs: all as configured."""
        monkeypatch.syspath_prepend(str(acme_site))
        ledger = str(tmp_path / "ledger.jsonl")
        with JobKit.from_config(acme_config) as app:
            files = app.configure_logging()
            a = app.run_background_job("Acme", "work", {"ledger": ledger, "tag": "a"})
            b = app.run_background_job("Acme", "work", {"ledger": ledger, "tag": "b"}, priority=5)
            c = app.run_background_job(
                "Acme", "work", {"ledger": ledger, "tag": "c"}, priority=9, delay=0.6
            )
            d = app.run_background_job(
                "Acme", "work", {"ledger": ledger, "tag": "d", "fail_times": 9}, priority=3
            )
            e = app.run_background_job(
                "Acme", "work", {"ledger": ledger, "tag": "e", "fail_times": 1}, priority=0
            )
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(acme_site)])}
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "jobkit",
                    "--config",
                    str(acme_config),
                    "worker",
                    "--concurrency",
                    "1",
                    "--burst",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            records = {
                key: app.get_job(job_id) for key, job_id in dict(a=a, b=b, c=c, d=d, e=e).items()
            }
            d_attempts = app.get_attempts(d)
            files.remove()

        tags = [entry["tag"] for entry in read_ledger(ledger)]
        # due at once: highest priority first (c, delayed, may come first if the worker
        # started after its delay on a loaded machine; its delay is checked below)
        assert [tag for tag in tags if tag != "c"][:4] == ["b", "d", "a", "e"]
        assert records["a"].priority == 1  # the package's default priority
        c_record = records["c"]
        assert c_record.started_at is not None
        # the delay counts from the enqueue call's clock reading; the INSERT stamps created_at
        # a few microseconds later (and SQLite keeps times as float seconds)
        assert c_record.started_at >= c_record.available_at
        assert (c_record.available_at - c_record.created_at).total_seconds() > 0.599
        assert (records["d"].status, records["d"].attempts) == (JobStatus.FAILED, 3)
        assert records["d"].error == "ValueError: acme failure 3 of d"
        assert [x.outcome for x in d_attempts] == [AttemptOutcome.FAILED] * 3
        for before, after in pairwise(d_attempts):
            assert before.finished_at is not None
            assert (after.started_at - before.finished_at).total_seconds() >= 0.3
        assert (records["e"].status, records["e"].attempts, records["e"].result) == (
            JobStatus.COMPLETED,
            2,
            "e done",
        )
        assert tags.count("d") == 3 and tags.count("e") == 2 and len(tags) == 8

        events = (tmp_path / "logs" / "background_jobs.log").read_text()
        errors = (tmp_path / "logs" / "background_jobs_errors.log").read_text()
        for job_id in (a, b, c, d, e):
            assert f"job_id={job_id} job_name=Acme method=work" in events
        assert events.count("event=enqueued") == 5
        assert events.count("event=succeeded") == 4
        assert events.count("event=retrying") == 3
        assert f"job_id={d} job_name=Acme method=work attempt=3 status=failed event=failed" in (
            errors
        )
        assert "  | ValueError: acme failure 3 of d" in errors
        assert "event=succeeded" not in errors
