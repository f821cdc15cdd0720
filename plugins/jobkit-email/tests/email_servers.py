"""Helpers for the jobkit-email tests: an SMTP handler that can refuse, a free port."""

from __future__ import annotations

import socket
from typing import Any


class MailHandler:
    """Records accepted messages; refuses the first ``refuse`` DATA commands with a 550."""

    def __init__(self, refuse: int = 0) -> None:
        self.refuse = refuse
        self.refused = 0
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refused < self.refuse:
            self.refused += 1
            return "550 mailbox unavailable (refused by the test server)"
        self.envelopes.append(envelope)
        return "250 OK"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
