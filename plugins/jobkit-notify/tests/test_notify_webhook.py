"""The webhook notifier, end to end: jobs run through jobkit, POSTs to a real local server."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

from jobkit import Job, JobKit
from jobkit.config import Config
from jobkit.records import JobStatus
from jobkit.worker import run_until_empty

SECRET = "s3cret-key"


class FlakyJob(Job):
    """Always fails."""

    methods = ("run",)

    def run(self, password: str = "", count: int = 0) -> None:
        raise RuntimeError("disk full")


class FineJob(Job):
    """Always succeeds."""

    methods = ("run",)

    def run(self) -> str:
        return "ok"


def make_app(tmp_path: Path, notification: dict[str, Any], **config: Any) -> JobKit:
    """An app on a fresh SQLite file, with the entry-point plugins and one notification."""
    data = {
        "storage": f"sqlite:///{tmp_path}/j.db",
        "defaults": {"retry_attempts": 0, "retry_delay": 0},
        "notifications": [notification],
        **config,
    }
    app = JobKit(Config.from_dict(data))
    app.register("Flaky", FlakyJob)
    app.register("Fine", FineJob)
    app.register("Other", FlakyJob)
    return app


class TestWebhookDelivery:
    """What is posted, and when."""

    def test_failed_job_posts_once_with_signed_json(self, tmp_path, webhook_server):
        """A failed job (after a retry) gives exactly one POST, its JSON right and HMAC valid."""
        server = webhook_server()
        app = make_app(
            tmp_path,
            {"plugin": "webhook", "url": server.url, "secret": SECRET, "events": ["failed"],
             "headers": {"X-Team": "ops"}},
            defaults={"retry_attempts": 1, "retry_delay": 0},
        )
        job_id = app.run_background_job("Flaky", "run", {"password": "hunter2", "count": 3})
        run_until_empty(app)
        app.close()

        assert len(server.requests) == 1
        request = server.requests[0]
        assert request.path == "/hook"
        assert request.headers["X-Jobkit-Event"] == "failed"
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["X-Team"] == "ops"
        expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(request.headers["X-Jobkit-Signature"], f"sha256={expected}")

        payload = json.loads(request.body)
        assert payload["kind"] == "failed"
        assert payload["error"] == "RuntimeError: disk full"
        job = payload["job"]
        assert job["id"] == job_id
        assert (job["name"], job["method"], job["status"]) == ("Flaky", "run", "failed")
        assert (job["attempts"], job["max_attempts"]) == (2, 2)
        assert job["params"]["count"] == 3
        assert job["params"]["password"] != "hunter2"  # masked by jobkit
        assert job["error"] == "RuntimeError: disk full"
        assert job["result"] is None
        for key in ("created_at", "available_at", "started_at", "finished_at"):
            assert isinstance(job[key], str) and "T" in job[key]
        assert payload["at"].endswith("+00:00")

    def test_tampered_body_fails_the_signature(self, tmp_path, webhook_server):
        """The signature covers the body: another body or another key does not verify."""
        server = webhook_server()
        app = make_app(tmp_path, {"plugin": "webhook", "url": server.url, "secret": SECRET,
                                  "events": ["failed"]})
        app.run_background_job("Flaky", "run")
        run_until_empty(app)
        app.close()

        (request,) = server.requests
        signature = request.headers["X-Jobkit-Signature"]
        tampered = request.body.replace(b"disk full", b"disk fine")
        for key, body in ((SECRET, tampered), ("other-key", request.body)):
            digest = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
            assert not hmac.compare_digest(signature, f"sha256={digest}")

    def test_no_signature_without_secret(self, tmp_path, webhook_server):
        """Without a secret, the POST has no signature header."""
        server = webhook_server()
        app = make_app(tmp_path, {"plugin": "webhook", "url": server.url, "events": ["failed"]})
        app.run_background_job("Flaky", "run")
        run_until_empty(app)
        app.close()

        (request,) = server.requests
        assert "X-Jobkit-Signature" not in request.headers

    def test_succeeded_job_posts_nothing_when_only_failed_wanted(self, tmp_path, webhook_server):
        """With events: [failed], a job that succeeds sends no POST."""
        server = webhook_server()
        app = make_app(tmp_path, {"plugin": "webhook", "url": server.url, "events": ["failed"]})
        job_id = app.run_background_job("Fine", "run")
        run_until_empty(app)
        app.close()

        assert app.get_job(job_id).status is JobStatus.COMPLETED
        assert server.requests == []

    def test_every_event_without_filter(self, tmp_path, webhook_server):
        """Without events:, every state change is posted, in order."""
        server = webhook_server()
        app = make_app(tmp_path, {"plugin": "webhook", "url": server.url})
        app.run_background_job("Fine", "run")
        run_until_empty(app)
        app.close()

        kinds = [request.headers["X-Jobkit-Event"] for request in server.requests]
        assert kinds == ["enqueued", "started", "succeeded"]
        assert json.loads(server.requests[-1].body)["job"]["result"] == "ok"

    def test_jobs_filter(self, tmp_path, webhook_server):
        """With jobs: [Flaky], a failure of another job sends nothing."""
        server = webhook_server()
        app = make_app(tmp_path, {"plugin": "webhook", "url": server.url,
                                  "events": ["failed"], "jobs": ["Flaky"]})
        other_id = app.run_background_job("Other", "run")
        flaky_id = app.run_background_job("Flaky", "run")
        run_until_empty(app)
        app.close()

        assert app.get_job(other_id).status is JobStatus.FAILED
        ids = [json.loads(request.body)["job"]["id"] for request in server.requests]
        assert ids == [flaky_id]


class TestWebhookFailures:
    """A slow or failing webhook never delays or changes a job."""

    def test_slow_server_does_not_delay_the_job(self, tmp_path, webhook_server, jobkit_logs):
        """A server that takes 3 s, with timeout 0.5: the job ends at once and stays completed."""
        delay = 3.0
        server = webhook_server(delay=delay)
        app = make_app(tmp_path, {"plugin": "webhook", "url": server.url, "timeout": 0.5,
                                  "events": ["succeeded"]})
        job_id = app.run_background_job("Fine", "run")
        started = time.monotonic()
        run_until_empty(app)
        ran_for = time.monotonic() - started
        record = app.get_job(job_id)
        closing = time.monotonic()
        app.close()
        closed_after = time.monotonic() - closing

        assert ran_for < 1.0
        assert record.status is JobStatus.COMPLETED
        (request,) = server.requests
        # the job had finished long before the server would have answered
        assert record.finished_at is not None
        assert record.finished_at.timestamp() < request.at + delay - 2.0
        assert closed_after < delay  # the notifier gave up after its timeout
        assert any("notifier WebhookNotifier failed" in line for line in jobkit_logs)
        reopened = make_app(tmp_path, {"plugin": "webhook", "url": server.url})
        try:
            assert reopened.get_job(job_id).status is JobStatus.COMPLETED
            assert reopened.get_job(job_id).result == "ok"
        finally:
            reopened.close()

    def test_server_error_is_logged_and_changes_nothing(self, tmp_path, webhook_server,
                                                        jobkit_logs):
        """A 500 answer is logged as a notifier failure; the job stays completed."""
        server = webhook_server(status=500)
        app = make_app(tmp_path, {"plugin": "webhook", "url": server.url,
                                  "events": ["succeeded"]})
        job_id = app.run_background_job("Fine", "run")
        run_until_empty(app)
        app.close()

        assert len(server.requests) == 1
        errors = [line for line in jobkit_logs if "notifier WebhookNotifier failed" in line]
        assert len(errors) == 1
        assert errors[0].startswith("ERROR")
        assert job_id in errors[0]
        assert "500" in "\n".join(jobkit_logs)
        assert app.get_job(job_id).status is JobStatus.COMPLETED

    def test_unreachable_server_changes_nothing(self, tmp_path, webhook_server, jobkit_logs):
        """A refused connection is logged; the failed job stays failed, with its own error."""
        server = webhook_server()
        url = server.url
        server.stop()
        app = make_app(tmp_path, {"plugin": "webhook", "url": url, "timeout": 1.0,
                                  "events": ["failed"]})
        job_id = app.run_background_job("Flaky", "run")
        run_until_empty(app)
        app.close()

        record = app.get_job(job_id)
        assert record.status is JobStatus.FAILED
        assert record.error == "RuntimeError: disk full"
        assert any("notifier WebhookNotifier failed" in line for line in jobkit_logs)
