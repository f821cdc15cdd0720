"""Internal: password hashes for the dashboard's sign-in: scrypt from the standard library.

A hash reads ``scrypt$<n>$<r>$<p>$<salt>$<key>`` (salt and key in base64), so its cost travels
with it. ``jobkit dashboard hash-password`` makes one for ``jobs.yaml``; the password itself is
never stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

#: scrypt's cost: 2**14 rounds of 8 blocks (16 MB, about 50 ms), the values Python's docs and
#: OWASP suggest for interactive sign-ins.
N, R, P = 2**14, 8, 1
_KEY_BYTES = 32
#: What a hash made by :func:`hash_password` looks like.
HASH_PATTERN = r"scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+"
_SHAPE = re.compile(HASH_PATTERN)


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=_KEY_BYTES,
        maxmem=256 * 1024 * 1024,
    )


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password`` for ``dashboard.password_hash``."""
    if not password:
        raise ValueError("the password is empty")
    salt = secrets.token_bytes(16)
    key = _derive(password, salt, N, R, P)
    encode = base64.b64encode
    return f"scrypt${N}${R}${P}${encode(salt).decode()}${encode(key).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from.

    Whether ``password`` is the one ``stored`` was made from (constant-time comparison);
    ``False`` for a hash of another shape or an absurd cost."""
    if not _SHAPE.fullmatch(stored):
        return False
    _, n, r, p, salt, key = stored.split("$")
    if not (2 <= int(n) <= 2**20 and 1 <= int(r) <= 32 and 1 <= int(p) <= 16):
        return False
    try:
        expected = base64.b64decode(key, validate=True)
        derived = _derive(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except ValueError:  # bad base64, or n not a power of two
        return False
    return hmac.compare_digest(derived, expected)
