"""Masking secrets: which keys are secret, passwords inside URLs, and the docs that list them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import jobkit_process
from test_logs import write_log_config

from jobkit import JobKit
from jobkit.logs import ERRORS_FILE, EVENTS_FILE
from jobkit.masking import SECRET_PARTS, SECRET_WORDS, has_secrets, is_secret, mask_secrets

DOCS = Path(__file__).resolve().parent.parent / "docs"


class TestSecretKeys:
    @pytest.mark.parametrize("key", [
        "password", "db_password", "apiKey", "X-Auth", "bearer", "bearer_token", "BearerToken",
        "jwt", "id_jwt", "JWT", "otp", "otp_code", "otpCode", "pin", "user_pin", "pinCode",
        "PIN", "pin2", "ssn", "customer-ssn", "signature", "webhook_signature", "card_number",
        "cardNumber", "credit_card", "creditCard", "cc", "cc_number", "CCNumber", "cvv",
        "cvv2", "cvc", "card-cvc", "pan", "card_pan",
    ])
    def test_secret_keys_are_masked(self, key: str) -> None:
        """Each of these keys holds a secret: its value becomes ***."""
        assert is_secret(key)
        assert mask_secrets({key: "v", "other": 1}) == {key: "***", "other": 1}

    @pytest.mark.parametrize("key", [
        "shipping", "spinner", "pinned_at", "opinion", "company", "panel", "expand", "accent",
        "account", "success", "author", "monkey", "notes", "lesson", "to",
        "subject", "occurred_at", "cycle",
    ])
    def test_words_that_only_contain_a_short_secret_are_not(self, key: str) -> None:
        """A short word (pin, pan, cc, otp, ssn, jwt) counts only as a whole part of the key."""
        assert not is_secret(key)
        assert mask_secrets({key: "v"}) == {key: "v"}


class TestUrlPasswords:
    @pytest.mark.parametrize(("url", "masked"), [
        ("postgresql://u:PW@h", "postgresql://u:***@h"),
        ("postgresql://u:PW@h:5432/db?sslmode=require", "postgresql://u:***@h:5432/db?sslmode=require"),
        ("redis://:PW@cache:6379/0", "redis://:***@cache:6379/0"),
        ("smtp://ana@example.com:p@ss@mail.example.com", "smtp://ana@example.com:***@mail.example.com"),
        ("connect to mysql://root:PW@db then https://x.example/a?b=c@d",
         "connect to mysql://root:***@db then https://x.example/a?b=c@d"),
    ])
    def test_the_password_in_a_url_is_masked(self, url: str, masked: str) -> None:
        """The password of a URL in any string value is ***; the rest of the URL stays."""
        assert has_secrets({"dsn": url})
        assert mask_secrets({"dsn": url}) == {"dsn": masked}

    def test_nested_urls_are_masked(self) -> None:
        """URLs in nested dicts and lists are masked too."""
        params = {"dbs": [{"url": "postgresql://u:PW@h/db"}], "notes": ["amqp://g:PW@q"]}
        assert has_secrets(params)
        assert mask_secrets(params) == {
            "dbs": [{"url": "postgresql://u:***@h/db"}], "notes": ["amqp://g:***@q"]}

    @pytest.mark.parametrize("text", [
        "https://example.com:8443/path", "https://example.com/a?x=u:p@h", "ana@example.com",
        "user:pw@host", "https://user@example.com/", "redis://u:@h",
    ])
    def test_urls_without_a_password_stay(self, text: str) -> None:
        """A URL with no password, and text that is no URL, are kept as they are."""
        assert not has_secrets({"v": text})
        assert mask_secrets({"v": text}) == {"v": text}

    def test_a_real_worker_masks_url_passwords_and_new_keys_in_its_log(
        self, tmp_path: Path
    ) -> None:
        """The files a real worker writes hold no URL password, PIN, card number or JWT."""
        config = write_log_config(tmp_path)
        extra = {"pin": 4321, "card_number": 4111111111111111, "jwt": 777123}
        with JobKit.from_config(config, load_entrypoints=False) as app:
            job_id = app.run_background_job("Recorder", "typed", {
                "count": 1, "ratio": 1.0, "name": "postgresql://app:URL-S3CRET@db/app",
                "tags": [], "extra": extra})
        result = jobkit_process(config.parent, "--config", str(config), "worker", "--burst",
                                "-n", "1")
        assert result.returncode == 0, result.stdout + result.stderr
        events = (tmp_path / "logs" / EVENTS_FILE).read_text()
        assert f"job_id={job_id} " in events
        for secret in ("URL-S3CRET", "4321", "4111111111111111", "777123"):
            assert secret not in events
            assert secret not in (tmp_path / "logs" / ERRORS_FILE).read_text()
        assert "postgresql://app:***@db/app" in events


def _backticked(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def _items(text: str) -> list[str]:
    """The paragraphs, list items and table rows of a page, each joined on one line."""
    return [" ".join(item.split("\n")) for item in re.split(r"\n\s*\n|\n(?=- |\| )", text)]


def _masking_section(page: str) -> str:
    text = (DOCS / page).read_text()
    return text.split("## Masking secrets", 1)[1].split("\n## ", 1)[0]


class TestMaskingDocs:
    def test_logging_md_lists_exactly_the_words_of_the_code(self) -> None:
        """docs/logging.md's two lists of secret words are masking.py's, no more, no less."""
        section = _masking_section("logging.md")
        rows = {line.split("|")[1].strip(): line.split("|")[2] for line in section.splitlines()
                if line.startswith("| ") and "---" not in line}
        anywhere = [row for title, row in rows.items() if title.startswith("anywhere")]
        parts = [row for title, row in rows.items() if title.startswith("a whole part")]
        assert len(anywhere) == 1 and len(parts) == 1, rows
        assert sorted(_backticked(anywhere[0])) == sorted(SECRET_WORDS)
        assert sorted(_backticked(parts[0])) == sorted(SECRET_PARTS)

    @pytest.mark.parametrize("page", ["reliability.md", "dashboard.md", "logging.md"])
    def test_every_page_says_the_same_about_what_is_masked(self, page: str) -> None:
        """Each page that speaks of masking links to the one list, names only secret keys as
        examples, and says that errors and self.log lines are not masked."""
        lines = [item for item in _items((DOCS / page).read_text())
                 if re.search(r"\bmask", item, re.I)]
        assert lines
        text = "\n".join(lines)
        if page != "logging.md":
            assert "logging.md#masking-secrets" in text
        for line in lines:
            for examples in re.findall(r"(?:secret keys|keys such as|keys like)([^)]*)", line):
                for word in _backticked(examples):
                    if re.fullmatch(r"[A-Za-z_-]+", word) and word not in ("***", "self.log"):
                        assert is_secret(word), (page, word, line)
        assert re.search(r"error messages.*`self\.log`.*not masked", text, re.S), text

    def test_no_page_says_errors_are_masked(self) -> None:
        """No page promises masked errors or log lines (they are not)."""
        for page in DOCS.glob("*.md"):
            for line in page.read_text().splitlines():
                assert not re.search(r"mask\w* (secrets )?in [^.]*\berrors\b", line), (page, line)

