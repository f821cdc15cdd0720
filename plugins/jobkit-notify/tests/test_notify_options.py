"""Bad notifier options are configuration errors that name the entry."""

from __future__ import annotations

from typing import Any

import pytest
from jobkit_notify import EmailNotifier, WebhookNotifier

from jobkit import ConfigError, JobKit
from jobkit.config import Config

URL = "http://127.0.0.1:9/hook"


def build(entry: dict[str, Any]) -> JobKit:
    """Build an app (with the entry-point plugins) from one notification entry."""
    return JobKit(Config.from_dict({"storage": "memory://", "notifications": [entry]}))


def config_error(entry: dict[str, Any]) -> str:
    """The message of the ConfigError that building an app from ``entry`` raises."""
    with pytest.raises(ConfigError) as info:
        build(entry)
    return str(info.value)


class TestWebhookOptions:
    """Options of plugin: webhook."""

    def test_registered_through_the_entry_point(self):
        """A JobKit built with entry points knows both notifiers."""
        app = build({"plugin": "webhook", "url": URL, "secret": "k", "timeout": 2,
                     "headers": {"X-A": "b"}})
        try:
            assert app.notifications is not None
            (subscription,) = app.notifications.subscriptions
            assert isinstance(subscription.notifier, WebhookNotifier)
            options = subscription.notifier.options
            assert (options.url, options.secret, options.timeout) == (URL, "k", 2.0)
            assert options.headers == {"X-A": "b"}
        finally:
            app.close()

    def test_defaults(self):
        """timeout defaults to 5 s, secret to None, headers to {}."""
        options = WebhookNotifier.Options(url=URL)
        assert (options.timeout, options.secret, options.headers) == (5.0, None, {})

    def test_unknown_key(self):
        """An unknown key is named."""
        message = config_error({"plugin": "webhook", "url": URL, "secrett": "x"})
        assert "notifications[0]" in message
        assert "secrett" in message

    def test_wrong_type(self):
        """A timeout that is not a number is refused."""
        message = config_error({"plugin": "webhook", "url": URL, "timeout": "soon"})
        assert "notifications[0]" in message
        assert "timeout" in message

    def test_wrong_header_type(self):
        """Header values must be strings."""
        message = config_error({"plugin": "webhook", "url": URL, "headers": {"X-A": 1}})
        assert "notifications[0]" in message
        assert "headers" in message

    def test_missing_url(self):
        """url is required."""
        message = config_error({"plugin": "webhook", "events": ["failed"]})
        assert "notifications[0]" in message
        assert "url" in message

    @pytest.mark.parametrize("url", ["ftp://example.com/hook", "not a url", "http://"])
    def test_bad_url(self, url):
        """Only http:// and https:// URLs with a host are accepted."""
        assert "notifications[0]" in config_error({"plugin": "webhook", "url": url})

    def test_bad_timeout(self):
        """A timeout must be positive."""
        assert "notifications[0]" in config_error({"plugin": "webhook", "url": URL,
                                                   "timeout": 0})

    def test_names_the_entry_at_fault(self):
        """The second entry's error names notifications[1]."""
        with pytest.raises(ConfigError) as info:
            JobKit(Config.from_dict({"storage": "memory://", "notifications": [
                {"plugin": "webhook", "url": URL},
                {"plugin": "webhook"},
            ]}))
        assert "notifications[1]" in str(info.value)
        assert "notifications[0]" not in str(info.value)

    def test_names_the_file_and_line(self, tmp_path):
        """Loaded from jobs.yaml, each error names the file and the entry's line."""
        path = tmp_path / "jobs.yaml"
        path.write_text(
            "storage: memory://\n"
            "notifications:\n"
            "  - plugin: webhook\n"
            f"    url: {URL}\n"
            "  - plugin: webhook\n"
            "    url: 12\n"
        )
        with pytest.raises(ConfigError) as info:
            JobKit.from_config(path)
        (error,) = info.value.errors
        assert error.startswith(f"{path}:5: notifications[1].url"), error


class TestEmailOptions:
    """Options of plugin: email."""

    def test_defaults(self):
        """Only ``to`` is required."""
        app = build({"plugin": "email", "to": ["ops@example.com"]})
        try:
            assert app.notifications is not None
            (subscription,) = app.notifications.subscriptions
            assert isinstance(subscription.notifier, EmailNotifier)
            options = subscription.notifier.options
            assert (options.host, options.port, options.ssl, options.starttls) == (
                "localhost", 25, False, False)
        finally:
            app.close()

    def test_missing_to(self):
        """to is required."""
        message = config_error({"plugin": "email", "host": "127.0.0.1"})
        assert "notifications[0]" in message
        assert "to" in message

    def test_wrong_types(self):
        """A port that is a string and a to that is a string are refused."""
        message = config_error({"plugin": "email", "to": ["a@example.com"], "port": "25"})
        assert "notifications[0]" in message
        assert "port" in message

    def test_unknown_key(self):
        """An unknown key is named."""
        message = config_error({"plugin": "email", "to": ["a@example.com"], "smtp_host": "x"})
        assert "notifications[0]" in message
        assert "smtp_host" in message

    def test_ssl_and_starttls(self):
        """ssl and starttls together are refused."""
        message = config_error({"plugin": "email", "to": ["a@example.com"], "ssl": True,
                                "starttls": True})
        assert "notifications[0]" in message
