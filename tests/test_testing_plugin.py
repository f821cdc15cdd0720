"""jobkit's pytest plugin: what users get to test their own jobs."""

from __future__ import annotations

from collections.abc import Callable

from sample_jobs import Recorder, read_ledger

import jobkit
from jobkit import JobKit, JobStatus


class TestFixtures:
    def test_jobkit_app_is_the_default_app_in_memory(self, jobkit_app: JobKit) -> None:
        """jobkit_app is an in-memory app that the module-level functions use."""
        assert jobkit.get_default_app() is jobkit_app
        assert jobkit_app.config.storage == "memory://"

    def test_jobkit_run_runs_queued_jobs(
        self, jobkit_app: JobKit, jobkit_run: Callable[[], int], ledger: str
    ) -> None:
        """jobkit_run runs everything queued, in the test's thread."""
        jobkit_app.register("Recorder", Recorder)
        job_id = jobkit.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "x"})
        assert jobkit_run() == 1
        assert jobkit.get_job(job_id).status == JobStatus.COMPLETED
        assert [e["tag"] for e in read_ledger(ledger)] == ["x"]

    def test_jobkit_app_factory_builds_configured_apps(
        self, jobkit_app_factory: Callable[..., JobKit]
    ) -> None:
        """jobkit_app_factory takes jobs: entries, so options and retries can be tested."""
        app = jobkit_app_factory(
            {"Configured": {"class": "sample_jobs:Configured", "options": {"greeting": "Hey"}}}
        )
        job_id = app.run_background_job("Configured", "greet", {"name": "Bo"})
        from jobkit.worker import run_until_empty

        run_until_empty(app)
        assert app.get_job(job_id).result == "Hey, Bo"
        assert app.config.storage.startswith("sqlite:///")
