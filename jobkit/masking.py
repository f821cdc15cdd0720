"""Masking secrets in params before they reach logs, events and the dashboard."""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)?|token|secret|api[_-]?key|auth(orization)?|credential|private[_-]?key",
    re.IGNORECASE,
)


def mask_secrets(value: Any) -> Any:
    """A copy of ``value`` with the values of secret-looking keys replaced by ``***``."""
    if isinstance(value, dict):
        return {
            key: MASK if isinstance(key, str) and SECRET_KEY.search(key) else mask_secrets(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [mask_secrets(item) for item in value]
    return value
