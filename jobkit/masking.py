"""Internal: masking secrets in params before they reach logs, events, the CLI and the dashboard.

A value is masked when its key looks secret (:func:`is_secret`), and the password of a URL
(``postgresql://user:PASSWORD@host``) is masked in any string value. docs/logging.md lists the
words below; a test keeps that list equal to these.
"""

from __future__ import annotations

import functools
import re
from typing import Any

MASK = "***"
#: Words that mark a key as secret wherever they appear in it (lower-cased, separators removed).
SECRET_WORDS = ("password", "passwd", "passphrase", "secret", "token", "apikey", "privatekey",
                "accesskey", "credential", "authorization", "cookie", "session", "bearer",
                "signature", "cardnumber", "creditcard")
#: Words that mark a key as secret only as a whole part of it (``auth``, not ``author``;
#: ``pin``, not ``shipping``): short words that hide inside ordinary ones.
SECRET_PARTS = frozenset({"auth", "pwd", "pass", "key", "jwt", "otp", "pin", "ssn", "cc", "cvv",
                          "cvc", "pan"})
#: A key's parts: split at anything but letters and digits, and where case or digits change
#: (``apiKey``, ``CCNumber``, ``cvv2``).
_PARTS = re.compile(
    r"[^A-Za-z0-9]+|(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])"
    r"|(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])"
)
#: ``scheme://user:PASSWORD@host``: the user may hold ``@`` (an e-mail address); the password
#: runs to the last ``@`` before the path, query or fragment.
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s/?#:]*:)[^\s/?#]+(?=@)")


@functools.lru_cache(maxsize=4096)  # the same few param names, over and over
def is_secret(key: str) -> bool:
    """Whether a param named ``key`` holds a secret.

    Such names are ``password``, ``api_key``, ``X-Auth``, ``user_pin``...
    """
    compact = re.sub(r"[^a-z0-9]", "", key.lower())
    if any(word in compact for word in SECRET_WORDS):
        return True
    return any(part.lower() in SECRET_PARTS for part in _PARTS.split(key) if part)


def mask_url_passwords(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    if "://" not in text:  # most strings: one scan in C, no regex
        return text
    return _URL_PASSWORD.sub(rf"\g<1>{MASK}", text)


def _has_url_password(text: str) -> bool:
    return "://" in text and _URL_PASSWORD.search(text) is not None


def mask_secrets(value: Any) -> Any:
    """A copy of ``value`` with the values of secret-looking keys replaced by ``***``.

    The passwords of URLs in its strings are replaced too.
    """
    if isinstance(value, dict):
        return {
            key: MASK if isinstance(key, str) and is_secret(key) else mask_secrets(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [mask_secrets(item) for item in value]
    if isinstance(value, str):
        return mask_url_passwords(value)
    return value


def has_secrets(value: Any) -> bool:
    """Whether ``value`` holds a secret-looking key or a URL with a password anywhere.

    Cheaper than masking a copy and comparing it, for the many params that hold none.
    """
    if isinstance(value, dict):
        for key, item in value.items():  # a loop, not any(): this runs for every job enqueued
            if isinstance(key, str) and is_secret(key):
                return True
            if isinstance(item, str):  # most values: checked here, without a call
                if "://" in item and _has_url_password(item):
                    return True
            elif isinstance(item, _NESTED) and has_secrets(item):
                return True
        return False
    if isinstance(value, (list, tuple)):
        return any(isinstance(item, _NESTED) and has_secrets(item) for item in value)
    if isinstance(value, str):
        return _has_url_password(value)
    return False


_NESTED = (dict, list, tuple, str)
