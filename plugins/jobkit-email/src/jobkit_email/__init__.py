"""jobkit-email: the ``Email`` job, which sends one message through SMTP (or to the job's log)."""

from __future__ import annotations

from jobkit_email.jobs import SendEmailJob
from jobkit_email.options import EmailOptions, parse_options

__all__ = ["EmailOptions", "SendEmailJob", "parse_options"]
