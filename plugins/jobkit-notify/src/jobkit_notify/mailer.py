"""The ``email`` notifier: a short plain-text message about each event, through SMTP."""

from __future__ import annotations

import smtplib
import ssl as ssl_module
from email.message import EmailMessage
from typing import Any

import attrs

from jobkit.limits import NETWORK_TIMEOUT, within
from jobkit.notify import Notifier
from jobkit.records import JobEvent


def _check_to(instance: Any, attribute: attrs.Attribute[Any], value: list[str]) -> None:
    if not value:
        raise ValueError("to must name at least one recipient")


def _check_tls(instance: Any, attribute: attrs.Attribute[Any], value: bool) -> None:
    if value and instance.starttls:
        raise ValueError("ssl and starttls cannot both be true")


class EmailNotifier(Notifier):
    """Mail ``to`` about each event it is given."""

    @attrs.frozen
    class Options:
        """``plugin: email`` options."""

        to: list[str] = attrs.field(validator=_check_to)
        host: str = "localhost"
        port: int = 25
        sender: str = "jobkit@localhost"
        starttls: bool = False
        ssl: bool = attrs.field(default=False, validator=_check_tls)
        username: str | None = None
        password: str | None = attrs.field(default=None, repr=False)
        timeout: float = attrs.field(default=10.0, validator=within(NETWORK_TIMEOUT))
        subject_prefix: str = "[jobkit]"

    options: Options

    def message(self, event: JobEvent) -> EmailMessage:
        """The message that reports ``event``."""
        job = event.job
        message = EmailMessage()
        message["From"] = self.options.sender
        message["To"] = ", ".join(self.options.to)
        message["Subject"] = f"{self.options.subject_prefix} {job.name}.{job.method} {event.kind}"
        lines = [
            f"Job {job.id} ({job.name}.{job.method}) {event.kind} at {event.at.isoformat()}.",
            f"Status: {job.status}; attempt {job.attempts} of {job.max_attempts}.",
        ]
        if event.error:
            lines.append(f"Error: {event.error}")
        if event.traceback:
            lines += ["", event.traceback.rstrip()]
        message.set_content("\n".join(lines) + "\n")
        return message

    def notify(self, event: JobEvent) -> None:
        """Send the message; raises on any SMTP error."""
        options = self.options
        smtp: smtplib.SMTP
        if options.ssl:
            smtp = smtplib.SMTP_SSL(options.host, options.port, timeout=options.timeout,
                                    context=ssl_module.create_default_context())
        else:
            smtp = smtplib.SMTP(options.host, options.port, timeout=options.timeout)
        with smtp:
            if options.starttls:
                smtp.starttls(context=ssl_module.create_default_context())
            if options.username:
                smtp.login(options.username, options.password or "")
            smtp.send_message(self.message(event))
