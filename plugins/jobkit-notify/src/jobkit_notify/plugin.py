"""The pluggy plugin (entry point ``jobkit``: ``notify``) that registers the notifiers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobkit import hookimpl
from jobkit_notify.mailer import EmailNotifier
from jobkit_notify.webhook import WebhookNotifier

if TYPE_CHECKING:
    from jobkit.registries import NotifierRegistry


@hookimpl
def jobkit_register_notifiers(registry: NotifierRegistry) -> None:
    """Make ``plugin: webhook`` and ``plugin: email`` available in ``notifications:``."""
    registry.add("webhook", WebhookNotifier)
    registry.add("email", EmailNotifier)
