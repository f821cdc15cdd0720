"""A real local SMTP server (aiosmtpd) and a jobkit app that finds ``Email`` by its entry point."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from aiosmtpd.controller import Controller
from email_servers import MailHandler, free_port

from jobkit import JobKit


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., tuple[int, MailHandler]]]:
    """A factory: ``smtp_server(refuse=2)`` starts a server on 127.0.0.1, stopped afterwards."""
    controllers: list[Controller] = []

    def start(refuse: int = 0) -> tuple[int, MailHandler]:
        handler = MailHandler(refuse)
        controller = Controller(handler, hostname="127.0.0.1", port=free_port())
        controller.start()
        controllers.append(controller)
        return controller.port, handler

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def make_app(jobkit_app_factory: Callable[..., JobKit]) -> Callable[..., JobKit]:
    """A factory: ``make_app(jobs={...})`` builds a JobKit on SQLite (jobkit's own fixture)."""
    return jobkit_app_factory
