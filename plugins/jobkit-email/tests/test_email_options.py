"""The Email job's ``options:`` are checked strictly; a bad one is an error naming the key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from jobkit_email import EmailOptions, parse_options

from jobkit import ConfigError, JobKit
from jobkit.worker import run_until_empty

AppFactory = Callable[..., JobKit]


class TestParseOptions:
    """``parse_options`` builds EmailOptions from a jobs.yaml mapping."""

    def test_defaults(self) -> None:
        """An empty mapping gives the documented defaults."""
        options = parse_options({})
        assert options == EmailOptions(
            host="127.0.0.1",
            port=25,
            starttls=False,
            ssl=False,
            username=None,
            password=None,
            sender="jobkit@localhost",
            timeout=10.0,
            transport="smtp",
        )

    def test_every_key_is_read(self) -> None:
        """Each documented key is taken from the mapping; an int is fine for the timeout."""
        options = parse_options(
            {
                "host": "mail.example.com",
                "port": 587,
                "starttls": True,
                "username": "bot",
                "password": "s3cret",
                "sender": "bot@example.com",
                "timeout": 3,
                "transport": "console",
            }
        )
        assert (options.host, options.port, options.starttls) == ("mail.example.com", 587, True)
        assert (options.username, options.password) == ("bot", "s3cret")
        assert (options.sender, options.timeout, options.transport) == (
            "bot@example.com",
            3.0,
            "console",
        )

    def test_password_is_not_in_the_repr(self) -> None:
        """The password never shows up when the options are printed or logged."""
        assert "s3cret" not in repr(parse_options({"password": "s3cret"}))

    @pytest.mark.parametrize(
        ("options", "key"),
        [
            ({"hots": "x"}, "hots"),
            ({"port": "25"}, "port"),
            ({"port": 70000}, "port"),
            ({"starttls": "yes"}, "starttls"),
            ({"timeout": 0}, "timeout"),
            ({"transport": "pigeon"}, "transport"),
            ({"sender": " "}, "sender"),
        ],
    )
    def test_bad_option_names_the_key(self, options: dict[str, Any], key: str) -> None:
        """Unknown keys, wrong types and bad values raise ConfigError naming the key."""
        with pytest.raises(ConfigError) as info:
            parse_options(options)
        assert key in str(info.value)
        assert "jobs.Email.options" in str(info.value)

    def test_ssl_and_starttls_exclude_each_other(self) -> None:
        """Both TLS modes at once is refused."""
        with pytest.raises(ConfigError, match="ssl and starttls cannot both be true"):
            parse_options({"ssl": True, "starttls": True})

    def test_not_a_mapping(self) -> None:
        """Options that are not a mapping are refused."""
        with pytest.raises(ConfigError, match="must be a mapping"):
            parse_options(["host"])  # type: ignore[arg-type]


class TestBadOptionsInAJob:
    """A job whose options are bad fails with an error that names the key."""

    def test_attempt_fails_naming_the_key(self, make_app: AppFactory) -> None:
        """``port: "x"`` makes the attempt fail with a ConfigError about ``port``."""
        app = make_app({"Email": {"options": {"port": "x"}, "retry_attempts": 0}})
        job_id = app.run_background_job(
            "Email", "send_email", {"to": "a@example.com", "subject": "s", "message": "m"}
        )
        run_until_empty(app)

        record = app.get_job(job_id)
        assert record.status == "failed"
        assert "jobs.Email.options.port" in (record.error or "")
