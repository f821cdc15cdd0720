"""Internal: who may use the dashboard, and the headers and checks every response goes through.

- **Sign-in**: a password (or, for the JSON API, the same secret as a ``Bearer`` token) checked
  against the scrypt hashes in ``dashboard:``; the session is a signed cookie (Starlette's
  ``SessionMiddleware``: ``HttpOnly``, ``SameSite=strict``) that the server can end
  (:mod:`jobkit.dashboard.sessions`).
- **Roles**: ``admin`` may act (cancel, retry); ``viewer`` (the read-only password) may only see.
- **CSRF**: every POST carries the session's token (a form field or the ``X-CSRF-Token``
  header); a bearer token that signed in is no ambient credential and needs none.
- **Headers**: a Content-Security-Policy that allows only the dashboard's own scripts and
  styles, no framing, no sniffing, no caching of pages.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import attrs

from jobkit.config import DashboardSettings
from jobkit.dashboard.passwords import verify_password
from jobkit.exceptions import ConfigError

#: The policy every response carries: nothing but the dashboard's own files, no inline script.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class Role(str, enum.Enum):
    """What a signed-in user may do."""

    ADMIN = "admin"  # see and act
    VIEWER = "viewer"  # see only

    def __str__(self) -> str:
        return self.value


#: Failed sign-ins (passwords or bearer tokens) a client may make in :data:`THROTTLE_WINDOW`
#: seconds before it is refused (429) until the window has passed.
MAX_FAILURES = 10
THROTTLE_WINDOW = 60.0
#: scrypt checks running at once (each takes 16 MB and about 50 ms of a core).
_CHECKS = threading.BoundedSemaphore(2)


class Throttle:
    """Failed sign-ins per client address, in a sliding window."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, list[float]] = {}

    def blocked(self, client: str) -> bool:
        """Whether ``client`` failed too often lately."""
        with self._lock:
            recent = self._recent(client)
            return len(recent) >= MAX_FAILURES

    def failed(self, client: str) -> None:
        """Count a failure of ``client``."""
        with self._lock:
            self._recent(client).append(time.monotonic())

    def _recent(self, client: str) -> list[float]:
        cutoff = time.monotonic() - THROTTLE_WINDOW
        kept = [at for at in self._failures.get(client, []) if at > cutoff]
        self._failures[client] = kept
        if len(self._failures) > 10_000:  # forget quiet clients: the table stays small
            for key in [k for k, v in self._failures.items() if not v]:
                del self._failures[key]
        return kept


@attrs.frozen
class Access:
    """Who may sign in: the configured hashes, or nobody needs to (``auth: false``)."""

    required: bool
    hashes: tuple[tuple[Role, str], ...]
    _tokens: dict[str, Role] = attrs.field(factory=dict, eq=False, repr=False)

    @classmethod
    def from_settings(cls, settings: DashboardSettings) -> Access:
        """The access ``dashboard:`` describes.

        ``ConfigError`` when sign-in is required but no password is set."""
        hashes = tuple(
            (role, value)
            for role, value in (
                (Role.ADMIN, settings.password_hash),
                (Role.VIEWER, settings.readonly_password_hash),
            )
            if value
        )
        if settings.auth and not hashes:
            raise ConfigError(
                "dashboard: sign-in is required but no password is set: run `jobkit dashboard "
                "hash-password` and put the hash in dashboard.password_hash (or "
                "JOBKIT_DASHBOARD__PASSWORD_HASH), or set dashboard.auth: false to run "
                "without sign-in on 127.0.0.1 only"
            )
        return cls(settings.auth, hashes)

    def hash_of(self, role: Role) -> str | None:
        """The hash ``role`` signs in with now, or ``None``."""
        return next((stored for each, stored in self.hashes if each is role), None)

    def role_of(self, password: str) -> Role | None:
        """The role ``password`` signs in as, or ``None`` (two checks at most at once)."""
        with _CHECKS:
            for role, stored in self.hashes:
                if verify_password(password, stored):
                    return role
        return None

    def role_of_token(self, token: str) -> Role | None:
        """:meth:`role_of` for an API bearer token, remembered.

        :meth:`role_of` for an API bearer token, remembered (scrypt takes 50 ms by design;
        an API client calls often). Only the token's SHA-256 is kept."""
        key = hashlib.sha256(token.encode("utf-8")).hexdigest()
        if key in self._tokens:
            return self._tokens[key]
        role = self.role_of(token)
        if role is not None:
            self._tokens[key] = role
        return role


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def check_listen(host: str, access: Access) -> None:
    """Refuse to serve a dashboard without sign-in beyond the loopback."""
    if not access.required and not is_loopback(host):
        raise ConfigError(
            f"dashboard: refusing to listen on {host} with dashboard.auth: false: anyone who "
            "can reach it could cancel and retry jobs. Set a password (jobkit dashboard "
            "hash-password) or listen on 127.0.0.1"
        )


def new_csrf_token() -> str:
    """A token for a session's forms."""
    return secrets.token_urlsafe(32)


def same_token(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; ``False`` when either is missing."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class SecurityHeaders:
    """ASGI middleware: :data:`SECURITY_HEADERS` on every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in SECURITY_HEADERS}
                kept = [(n, v) for n, v in message.get("headers", []) if n.lower() not in names]
                message["headers"] = kept + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, with_headers)


#: The Host names a dashboard without sign-in answers to (anything else may be a page on another
#: site that rebound its name to 127.0.0.1, to read the dashboard from a browser).
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def host_of(header: str) -> str:
    """The name in a Host header, without its port (``[::1]:8000`` -> ``::1``)."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


class LoopbackOnly:
    """ASGI middleware: 400 for a request whose Host is not a loopback name."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers", []))
            host = host_of(headers.get(b"host", b"").decode("latin-1").lower())
            if host not in LOOPBACK_HOSTS:
                await send({"type": "http.response.start", "status": 400,
                            "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body",
                            "body": b"without sign-in the dashboard answers to 127.0.0.1, "
                                    b"localhost or [::1] only"})
                return
        await self.app(scope, receive, send)
