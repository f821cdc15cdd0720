"""Masking secrets in params before they reach logs, events and the dashboard."""

from __future__ import annotations

import functools
import re
from typing import Any

MASK = "***"
#: Words that mark a key as secret wherever they appear in it (separators ignored).
SECRET_WORDS = ("password", "passwd", "passphrase", "secret", "token", "apikey", "privatekey",
                "accesskey", "credential", "authorization", "cookie", "session")
#: Words that mark a key as secret only as a whole part of it (``auth``, not ``author``).
SECRET_PARTS = frozenset({"auth", "pwd", "pass", "key"})
_PARTS = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z])(?=[A-Z])")


@functools.lru_cache(maxsize=4096)  # the same few param names, over and over
def is_secret(key: str) -> bool:
    """Whether a param named ``key`` holds a secret (``password``, ``api_key``, ``X-Auth``...)."""
    compact = re.sub(r"[^a-z0-9]", "", key.lower())
    if any(word in compact for word in SECRET_WORDS):
        return True
    return any(part.lower() in SECRET_PARTS for part in _PARTS.split(key) if part)


def mask_secrets(value: Any) -> Any:
    """A copy of ``value`` with the values of secret-looking keys replaced by ``***``."""
    if isinstance(value, dict):
        return {
            key: MASK if isinstance(key, str) and is_secret(key) else mask_secrets(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [mask_secrets(item) for item in value]
    return value


def has_secrets(value: Any) -> bool:
    """Whether ``value`` holds a secret-looking key anywhere (cheaper than masking a copy and
    comparing it, for the many params that hold none)."""
    if isinstance(value, dict):
        for key, item in value.items():  # a loop, not any(): this runs for every job enqueued
            if isinstance(key, str) and is_secret(key):
                return True
            if isinstance(item, _NESTED) and has_secrets(item):
                return True
        return False
    if isinstance(value, (list, tuple)):
        return any(isinstance(item, _NESTED) and has_secrets(item) for item in value)
    return False


_NESTED = (dict, list, tuple)
