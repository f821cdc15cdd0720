"""Internal: which address a request came from, believing trusted proxies only.

Which address a request came from: the peer's, or, when the peer is a proxy named in
``dashboard.trusted_proxies``, the client that proxy says it forwarded for.

``X-Forwarded-For`` is a list that every proxy appends to: only the entries written by proxies
we trust can be believed, and those are at its right end. So the list is read from the right,
skipping trusted proxies; the first address that is not one is the client (anything to its
left was written by the client itself, and may be forged). No header is trusted unless the
peer is (the default: none), so nobody escapes the sign-in lockout by sending one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

import attrs

from jobkit.dashboard.security import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(value: str) -> Network:
    """An IP address or network; ``ValueError`` for anything else.

    An address (``10.0.0.1``) or a network (``10.0.0.0/8``, ``fd00::/8``); ``ValueError``
    for anything else."""
    return ipaddress.ip_network(value.strip(), strict=False)


def _address(entry: str) -> str:
    """One ``X-Forwarded-For`` entry without its port.

    One ``X-Forwarded-For`` entry without a port: ``[2001:db8::1]:80`` -> ``2001:db8::1``,
    ``192.0.2.1:80`` -> ``192.0.2.1``; anything else as it is."""
    entry = entry.strip()
    if entry.startswith("[") and "]" in entry:
        return entry[1:entry.index("]")]
    if entry.count(":") == 1:
        return entry.partition(":")[0]
    return entry


@attrs.frozen
class TrustedProxies:
    """The proxies whose forwarding headers are believed."""

    networks: tuple[Network, ...] = ()

    @classmethod
    def of(cls, values: Iterable[str]) -> TrustedProxies:
        """The proxies of ``dashboard.trusted_proxies`` (checked when the config loaded)."""
        return cls(tuple(parse_network(value) for value in values))

    def trusts(self, address: str) -> bool:
        """Whether ``address`` is one of the trusted proxies.

        Whether ``address`` is one of the trusted proxies (never for a name or garbage; an
        IPv4 address seen as IPv6, ``::ffff:10.0.0.1``, as itself)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def client(self, peer: str, forwarded_for: Sequence[str]) -> str:
        """The client's address, through the trusted proxies.

        The client's address: ``peer`` unless it is trusted; then the rightmost entry of
        the ``X-Forwarded-For`` headers (in order) that is not a trusted proxy, or the leftmost
        when every one is."""
        if not self.trusts(peer):
            return peer
        entries = [_address(entry) for value in forwarded_for for entry in value.split(",")]
        entries = [entry for entry in entries if entry]
        for entry in reversed(entries):
            if not self.trusts(entry):
                return entry
        return entries[0] if entries else peer


def throttle_key(address: str) -> str:
    """Whose failed sign-ins ``address`` counts as: itself, or its IPv6 /64.

    Whose failed sign-ins ``address`` counts as: itself, or for IPv6 its /64 network (one
    machine usually holds a whole /64, and could try each address of it in turn)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class ForwardedClient:
    """ASGI middleware: the request's client as a trusted proxy forwarded it.

    ASGI middleware: the request's ``client`` (and ``scheme``, from ``X-Forwarded-Proto``)
    as a trusted proxy forwarded them; untouched when the peer is not trusted."""

    def __init__(self, app: ASGIApp, proxies: TrustedProxies) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        peer = scope.get("client")
        if scope["type"] == "http" and peer and self.proxies.trusts(peer[0]):
            headers = scope.get("headers", [])
            forwarded = [value.decode("latin-1") for name, value in headers
                         if name == b"x-forwarded-for"]
            if forwarded:
                scope = {**scope, "client": (self.proxies.client(peer[0], forwarded), 0)}
            proto = [value.decode("latin-1").strip().lower() for name, value in headers
                     if name == b"x-forwarded-proto"]
            if proto and proto[-1] in ("http", "https"):
                scope = {**scope, "scheme": proto[-1]}
        await self.app(scope, receive, send)
