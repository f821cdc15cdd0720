"""``SendEmailJob``, registered as ``Email`` through the ``jobkit.jobs`` entry point."""

from __future__ import annotations

import smtplib
import ssl as ssl_module
from email.message import EmailMessage
from email.utils import make_msgid

from jobkit import Job
from jobkit_email.options import EmailOptions, parse_options


class SendEmailJob(Job):
    """Send one email through SMTP, or write it to the job's log (``transport: console``).

    Transport settings come from the job's ``options:`` in ``jobs.yaml`` (see ``EmailOptions``);
    an SMTP error fails the attempt, so jobkit retries it as configured.
    """

    methods = ("send_email",)
    Options = EmailOptions  # jobkit checks jobs.Email.options against it (jobkit check too)
    #: The package's own settings; the application's jobs.yaml overrides them.
    defaults = {"retry_attempts": 5, "retry_delay": 2}

    def settings(self) -> EmailOptions:
        """The checked transport options of this job (``ConfigError`` when they are bad)."""
        return parse_options(self.options)

    def build_message(
        self, settings: EmailOptions, to: str, subject: str, message: str, html: str | None
    ) -> EmailMessage:
        """The message to send: plain text, or multipart/alternative when ``html`` is given."""
        email = EmailMessage()
        email["From"] = settings.sender
        email["To"] = to
        email["Subject"] = subject
        domain = settings.sender.rpartition("@")[2] or "localhost"
        email["Message-ID"] = make_msgid(domain=domain)
        email.set_content(message)
        if html is not None:
            email.add_alternative(html, subtype="html")
        return email

    def send_email(
        self, to: str, subject: str, message: str, html: str | None = None
    ) -> dict[str, str]:
        """Send ``message`` (and its ``html`` alternative) to ``to``; return the Message-ID."""
        settings = self.settings()
        email = self.build_message(settings, to, subject, message, html)
        message_id = str(email["Message-ID"])
        if settings.transport == "console":
            self.log.info(
                "email to {to} (console transport, not sent):\n{email}",
                to=to,
                email=email.as_string(),
            )
        else:
            self._send_smtp(settings, email)
            self.log.info("sent email {message_id} to {to}", message_id=message_id, to=to)
        return {"to": to, "message_id": message_id}

    def _send_smtp(self, settings: EmailOptions, email: EmailMessage) -> None:
        smtp: smtplib.SMTP
        if settings.ssl:
            smtp = smtplib.SMTP_SSL(
                settings.host,
                settings.port,
                timeout=settings.timeout,
                context=ssl_module.create_default_context(),
            )
        else:
            smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
        with smtp:
            if settings.starttls:
                smtp.starttls(context=ssl_module.create_default_context())
            if settings.username:
                smtp.login(settings.username, settings.password or "")
            smtp.send_message(email)
