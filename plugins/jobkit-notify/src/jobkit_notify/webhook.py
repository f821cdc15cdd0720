"""The ``webhook`` notifier: POSTs each event as JSON, signed with a shared secret."""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import attrs

from jobkit.limits import NETWORK_TIMEOUT, within
from jobkit.notify import Notifier
from jobkit.records import JobEvent
from jobkit_notify.payload import event_payload

SIGNATURE_HEADER = "X-Jobkit-Signature"
EVENT_HEADER = "X-Jobkit-Event"


def sign(body: bytes, secret: str) -> str:
    """The signature header value: ``sha256=<hex HMAC-SHA256 of body keyed by secret>``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _check_url(instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"url must be an http:// or https:// URL, got {value!r}")


class WebhookNotifier(Notifier):
    """POST ``{"kind", "at", "error", "job"}`` to ``url``; a non-2xx answer raises."""

    @attrs.frozen
    class Options:
        """``plugin: webhook`` options."""

        url: str = attrs.field(validator=_check_url)
        secret: str | None = None
        timeout: float = attrs.field(default=5.0, validator=within(NETWORK_TIMEOUT))
        headers: dict[str, str] = attrs.field(factory=dict)

    options: Options

    def request(self, event: JobEvent) -> urllib.request.Request:
        """The HTTP request that reports ``event``."""
        body = json.dumps(event_payload(event), default=str, sort_keys=True).encode("utf-8")
        headers = {
            **self.options.headers,
            "Content-Type": "application/json",
            "User-Agent": "jobkit-notify",
            EVENT_HEADER: str(event.kind),
        }
        if self.options.secret:
            headers[SIGNATURE_HEADER] = sign(body, self.options.secret)
        return urllib.request.Request(self.options.url, data=body, headers=headers, method="POST")

    def notify(self, event: JobEvent) -> None:
        """Send the event; raises on a network error, a timeout or a non-2xx status."""
        request = self.request(event)
        # urlopen raises HTTPError for 4xx/5xx; redirects of a POST are not followed.
        with urllib.request.urlopen(request, timeout=self.options.timeout) as response:
            status = int(response.status)
            if not 200 <= status < 300:
                raise RuntimeError(f"webhook {self.options.url} answered HTTP {status}")
