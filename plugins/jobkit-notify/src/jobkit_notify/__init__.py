"""jobkit notifiers: ``webhook`` (a signed JSON POST) and ``email`` (SMTP).

Installed, the package registers both through the entry-point group ``jobkit``; configure them
under ``notifications:`` in ``jobs.yaml``.
"""

from __future__ import annotations

from jobkit_notify.mailer import EmailNotifier
from jobkit_notify.payload import event_payload
from jobkit_notify.webhook import SIGNATURE_HEADER, WebhookNotifier, sign

__all__ = ["SIGNATURE_HEADER", "EmailNotifier", "WebhookNotifier", "event_payload", "sign"]
