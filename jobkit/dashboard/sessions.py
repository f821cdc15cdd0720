"""Internal: dashboard sessions the server can end.

A session is a signed cookie (Starlette's ``SessionMiddleware``) that holds the role, when it
expires, the CSRF token, a random session id and a fingerprint of the password hash it signed
in with. It is good while all of these hold:

- it has not expired (``session_seconds`` after the sign-in);
- its id was not revoked: signing out revokes it in the job store
  (:meth:`~jobkit.storage.Storage.revoke_session`), where every dashboard process over that
  store looks, so a copied cookie is refused everywhere at once;
- the hash it signed in with is still its role's hash: a new password (a new hash in the
  configuration, even of the same password) ends every session made before.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Mapping, MutableMapping
from datetime import datetime, timezone
from typing import Any

from jobkit.dashboard.security import Access, Role, new_csrf_token, same_token
from jobkit.storage.base import Storage
from jobkit.storage.capabilities import revoke_session, session_revoked


def fingerprint(password_hash: str) -> str:
    """What a session keeps of the hash it signed in with.

    Enough to notice a new one, nothing that helps to guess the password (the hash is salted; this
    is a digest of it)."""
    return hashlib.sha256(b"jobkit-session\0" + password_hash.encode("utf-8")).hexdigest()[:32]


def start(session: MutableMapping[str, Any], access: Access, role: Role, seconds: float
          ) -> None:
    """Begin a new session for ``role`` (the old one's content is dropped: no fixation)."""
    session.clear()
    session.update(
        role=role.value,
        expires=time.time() + seconds,
        csrf=new_csrf_token(),
        sid=secrets.token_urlsafe(18),
        pw=fingerprint(access.hash_of(role) or ""),
    )


def role_of(session: Mapping[str, Any], access: Access, storage: Storage) -> Role | None:
    """The role of a session that is still good, else ``None``.

    The role of a session that is still good (see the module's docstring), else ``None``.
    Reads the store once (by primary key) for a session that passed the other checks."""
    value = session.get("role")
    expires = session.get("expires")
    sid = session.get("sid")
    if value not in (Role.ADMIN.value, Role.VIEWER.value) or not isinstance(sid, str):
        return None
    if not isinstance(expires, (int, float)) or time.time() >= expires:
        return None
    role = Role(value)
    stored = access.hash_of(role)
    if stored is None or not same_token(session.get("pw"), fingerprint(stored)):
        return None
    return None if session_revoked(storage, sid) else role


def end(session: MutableMapping[str, Any], storage: Storage) -> None:
    """Sign out, in the store and in this browser.

    Sign out: revoke the session in the store (until its cookie would have expired), then
    forget it in this browser. ``StorageError`` when the store cannot keep the revocation (the
    cookie is forgotten all the same)."""
    sid = session.get("sid")
    expires = session.get("expires")
    session.clear()
    if isinstance(sid, str) and isinstance(expires, (int, float)):
        revoke_session(storage, sid, datetime.fromtimestamp(expires, timezone.utc))
