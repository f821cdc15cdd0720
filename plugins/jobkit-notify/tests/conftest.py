"""Real local servers for the notifier tests: an HTTP server that records POSTs, an SMTP server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs
import pytest
from aiosmtpd.controller import Controller
from loguru import logger


@attrs.define
class Received:
    """One request the webhook server got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class WebhookServer:
    """A ThreadingHTTPServer on 127.0.0.1 that records every POST and answers ``status``."""

    def __init__(self, status: int = 204, delay: float = 0.0) -> None:
        self.status = status
        self.delay = delay
        self.requests: list[Received] = []
        self._stop = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.requests.append(
                    Received(self.path, dict(self.headers.items()), body, time.time())
                )
                if outer.delay:
                    outer._stop.wait(outer.delay)
                try:
                    self.send_response(outer.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client gave up (timeout)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> WebhookServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


@pytest.fixture
def webhook_server() -> Iterator[Any]:
    """A factory: ``webhook_server(status=500, delay=3)`` starts a server, stopped afterwards."""
    servers: list[WebhookServer] = []

    def start(status: int = 204, delay: float = 0.0) -> WebhookServer:
        server = WebhookServer(status, delay).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


class MailHandler:
    """Records every message the SMTP server accepts."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, MailHandler]]:
    """An aiosmtpd server on 127.0.0.1: (port, handler with the received envelopes)."""
    handler = MailHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield controller.port, handler
    finally:
        controller.stop()


@pytest.fixture
def jobkit_logs() -> Iterator[list[str]]:
    """jobkit's log records (enabled for the test), as formatted lines."""
    lines: list[str] = []
    logger.enable("jobkit")
    sink = logger.add(lines.append, level="DEBUG", format="{level} {message}")
    try:
        yield lines
    finally:
        logger.remove(sink)
        logger.disable("jobkit")
