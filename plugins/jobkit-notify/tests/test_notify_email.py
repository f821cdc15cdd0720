"""The email notifier, end to end: jobs run through jobkit, mail to a real aiosmtpd server."""

from __future__ import annotations

import socket
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from jobkit import Job, JobKit
from jobkit.config import Config
from jobkit.records import JobStatus
from jobkit.worker import run_until_empty


class BrokenJob(Job):
    """Always fails."""

    methods = ("run",)

    def run(self) -> None:
        raise ValueError("bad invoice")


class GoodJob(Job):
    """Always succeeds."""

    methods = ("run",)

    def run(self) -> int:
        return 42


def make_app(tmp_path: Path, **options: Any) -> JobKit:
    """An app on a fresh SQLite file with one email notification."""
    notification = {"plugin": "email", "events": ["failed"], **options}
    app = JobKit(Config.from_dict({
        "storage": f"sqlite:///{tmp_path}/j.db",
        "defaults": {"retry_attempts": 0},
        "notifications": [notification],
    }))
    app.register("Broken", BrokenJob)
    app.register("Good", GoodJob)
    return app


def free_port() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def parse(envelope: Any) -> Message:
    """The message of an aiosmtpd envelope."""
    return message_from_bytes(envelope.original_content)


class TestEmailNotifier:
    """Mail about failures."""

    def test_failure_is_mailed(self, tmp_path, smtp_server):
        """A failed job sends one plain-text message to every recipient."""
        port, handler = smtp_server
        app = make_app(tmp_path, host="127.0.0.1", port=port, sender="jobs@example.com",
                       to=["ops@example.com", "ana@example.com"], subject_prefix="[acme]")
        job_id = app.run_background_job("Broken", "run")
        run_until_empty(app)
        app.close()

        (envelope,) = handler.envelopes
        assert envelope.mail_from == "jobs@example.com"
        assert envelope.rcpt_tos == ["ops@example.com", "ana@example.com"]
        message = parse(envelope)
        assert message["Subject"] == "[acme] Broken.run failed"
        assert message.get_content_type() == "text/plain"
        body = message.get_payload(decode=True).decode()
        assert job_id in body
        assert "ValueError: bad invoice" in body
        assert "attempt 1 of 1" in body
        assert app.get_job(job_id).status is JobStatus.FAILED

    def test_success_is_not_mailed(self, tmp_path, smtp_server):
        """With events: [failed], a job that succeeds sends nothing."""
        port, handler = smtp_server
        app = make_app(tmp_path, host="127.0.0.1", port=port, to=["ops@example.com"])
        job_id = app.run_background_job("Good", "run")
        run_until_empty(app)
        app.close()

        assert handler.envelopes == []
        assert app.get_job(job_id).result == 42

    def test_jobs_filter(self, tmp_path, smtp_server):
        """With jobs: [Good], a failure of Broken sends nothing."""
        port, handler = smtp_server
        app = make_app(tmp_path, host="127.0.0.1", port=port, to=["ops@example.com"],
                       jobs=["Good"])
        app.run_background_job("Broken", "run")
        run_until_empty(app)
        app.close()

        assert handler.envelopes == []

    def test_unreachable_server_changes_nothing(self, tmp_path, jobkit_logs):
        """No SMTP server listening: the error is logged and the job keeps its own outcome."""
        app = make_app(tmp_path, host="127.0.0.1", port=free_port(), to=["ops@example.com"],
                       timeout=1.0)
        job_id = app.run_background_job("Broken", "run")
        run_until_empty(app)
        app.close()

        assert any("notifier EmailNotifier failed" in line for line in jobkit_logs)
        assert app.get_job(job_id).error == "ValueError: bad invoice"
