"""The Email job, found through its entry point, sends through a real local SMTP server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from email_servers import MailHandler, free_port
from jobkit_email import SendEmailJob
from loguru import logger

from jobkit import JobKit
from jobkit.worker import run_until_empty

SmtpFactory = Callable[..., tuple[int, MailHandler]]
AppFactory = Callable[..., JobKit]


def _received(handler: MailHandler, index: int = 0) -> EmailMessage:
    message = message_from_bytes(handler.envelopes[index].content, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _email_jobs(port: int, **settings: Any) -> dict[str, Any]:
    options = {"port": port, "sender": "billing@example.com", "timeout": 5}
    return {"Email": {"options": options, "retry_delay": 0, **settings}}


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Every log line written while the test runs."""
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG", format="{message}")
    try:
        yield lines
    finally:
        logger.remove(sink)


class TestEntryPoint:
    """The installed distribution registers its job as jobkit would find a third party's."""

    def test_email_is_registered_from_the_entry_point(self, make_app: AppFactory) -> None:
        """``Email`` resolves to SendEmailJob with its one approved method."""
        spec = make_app().registry.get("Email")
        assert spec.cls is SendEmailJob
        assert spec.methods == ("send_email",)
        assert "jobkit_email.jobs:SendEmailJob" in spec.source


class TestSending:
    """Messages reach the SMTP server with the right envelope, headers and parts."""

    def test_plain_message(self, smtp_server: SmtpFactory, make_app: AppFactory) -> None:
        """A plain-text email arrives with its recipient, subject and body."""
        port, handler = smtp_server()
        app = make_app(_email_jobs(port))
        job_id = app.run_background_job(
            "Email", "send_email", {"to": "ana@example.com", "subject": "Hi", "message": "Hello"}
        )
        run_until_empty(app)

        record = app.get_job(job_id)
        assert record.status == "completed", record.error
        assert len(handler.envelopes) == 1
        envelope = handler.envelopes[0]
        assert envelope.rcpt_tos == ["ana@example.com"]
        assert envelope.mail_from == "billing@example.com"
        received = _received(handler)
        assert received["Subject"] == "Hi"
        assert received["To"] == "ana@example.com"
        assert received.get_content_type() == "text/plain"
        assert received.get_content().strip() == "Hello"
        assert record.result == {"to": "ana@example.com", "message_id": received["Message-ID"]}

    def test_html_alternative(self, smtp_server: SmtpFactory, make_app: AppFactory) -> None:
        """With ``html`` the message is multipart/alternative: text first, then HTML."""
        port, handler = smtp_server()
        app = make_app(_email_jobs(port))
        params = {
            "to": "bo@example.com",
            "subject": "Invoice",
            "message": "Your invoice is ready",
            "html": "<p>Your <b>invoice</b> is ready</p>",
        }
        job_id = app.run_background_job("Email", "send_email", params)
        run_until_empty(app)

        assert app.get_job(job_id).status == "completed"
        received = _received(handler)
        assert received.get_content_type() == "multipart/alternative"
        parts = list(received.iter_parts())
        assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
        assert parts[0].get_content().strip() == "Your invoice is ready"
        assert parts[1].get_content().strip() == "<p>Your <b>invoice</b> is ready</p>"

    def test_console_transport_logs_instead_of_sending(
        self, smtp_server: SmtpFactory, make_app: AppFactory, log_lines: list[str]
    ) -> None:
        """``transport: console`` writes the message to the job's log and sends nothing."""
        port, handler = smtp_server()
        jobs = _email_jobs(port)
        jobs["Email"]["options"]["transport"] = "console"
        app = make_app(jobs)
        job_id = app.run_background_job(
            "Email", "send_email", {"to": "cy@example.com", "subject": "Demo", "message": "Body"}
        )
        run_until_empty(app)

        assert app.get_job(job_id).status == "completed"
        assert handler.envelopes == []
        logged = "\n".join(log_lines)
        assert "console transport" in logged
        assert "Subject: Demo" in logged
        assert "To: cy@example.com" in logged


class TestRetries:
    """A refusing server fails the attempt; jobkit retries it as configured."""

    def test_refusing_server_fails_after_all_attempts(
        self, smtp_server: SmtpFactory, make_app: AppFactory
    ) -> None:
        """With retry_attempts 2 a server that always refuses means 3 attempts, then failed."""
        port, handler = smtp_server(refuse=100)
        app = make_app(_email_jobs(port, retry_attempts=2))
        job_id = app.run_background_job(
            "Email", "send_email", {"to": "ana@example.com", "subject": "Hi", "message": "x"}
        )
        run_until_empty(app)

        record = app.get_job(job_id)
        assert record.status == "failed"
        assert record.attempts == 3
        assert handler.refused == 3
        assert handler.envelopes == []
        attempts = app.get_attempts(job_id)
        assert [str(attempt.outcome) for attempt in attempts] == ["failed"] * 3
        assert all("550" in (attempt.error or "") for attempt in attempts)

    def test_server_that_refuses_twice_then_accepts(
        self, smtp_server: SmtpFactory, make_app: AppFactory
    ) -> None:
        """Two refusals, then the third attempt is delivered and the job completes."""
        port, handler = smtp_server(refuse=2)
        app = make_app(_email_jobs(port, retry_attempts=2))
        job_id = app.run_background_job(
            "Email", "send_email", {"to": "ana@example.com", "subject": "Hi", "message": "x"}
        )
        run_until_empty(app)

        record = app.get_job(job_id)
        assert record.status == "completed"
        assert record.attempts == 3
        assert len(handler.envelopes) == 1
        outcomes = [str(attempt.outcome) for attempt in app.get_attempts(job_id)]
        assert outcomes == ["failed", "failed", "succeeded"]

    def test_unreachable_server_fails_the_attempt(self, make_app: AppFactory) -> None:
        """No server listening on the port: the attempt fails with a connection error."""
        app = make_app(_email_jobs(free_port(), retry_attempts=0))
        job_id = app.run_background_job(
            "Email", "send_email", {"to": "ana@example.com", "subject": "Hi", "message": "x"}
        )
        run_until_empty(app)

        record = app.get_job(job_id)
        assert record.status == "failed"
        assert record.attempts == 1
        assert "Connection" in (record.error or "") or "refused" in (record.error or "")


class TestPackageDefaults:
    """The package's defaults apply unless the application's jobs.yaml sets the value."""

    def test_package_defaults_apply_when_jobs_yaml_is_silent(self, make_app: AppFactory) -> None:
        """Without a jobs.yaml entry, retry_attempts is 5 and retry_delay 2, from the package."""
        resolved = make_app().job_settings("Email")
        assert resolved.settings.retry_attempts == 5
        assert resolved.settings.retry_delay == 2
        assert resolved.sources["retry_attempts"].startswith("package")

    def test_jobs_yaml_overrides_the_package_default(self, make_app: AppFactory) -> None:
        """A jobs.yaml value wins over the package's; the rest still comes from the package."""
        resolved = make_app({"Email": {"retry_attempts": 1}}).job_settings("Email")
        assert resolved.settings.retry_attempts == 1
        assert resolved.settings.retry_delay == 2
        assert not resolved.sources["retry_attempts"].startswith("package")
        assert resolved.sources["retry_delay"].startswith("package")

    def test_enqueued_job_stores_the_package_default(self, make_app: AppFactory) -> None:
        """A job enqueued without overrides gets 1 + 5 attempts."""
        app = make_app()
        job_id = app.run_background_job(
            "Email", "send_email", {"to": "a@example.com", "subject": "s", "message": "m"}
        )
        assert app.get_job(job_id).max_attempts == 6
