"""A real local SMTP server (aiosmtpd) and a jobkit app that finds ``Email`` by its entry point."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from email_servers import MailHandler, free_port

from jobkit import JobKit
from jobkit.config import Config


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
def make_app(tmp_path: Path) -> Iterator[Callable[..., JobKit]]:
    """A factory: ``make_app(jobs={...})`` builds a JobKit on SQLite in ``tmp_path``."""
    apps: list[JobKit] = []

    def build(jobs: dict[str, Any] | None = None) -> JobKit:
        config = {
            "storage": f"sqlite:///{tmp_path / 'jobkit.db'}",
            "logging": {"dir": str(tmp_path / "logs")},
            "jobs": jobs or {},
        }
        app = JobKit(Config.from_dict(config))
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.close()
