"""Job classes of the trust-boundary tests (tests/reliability/test_trust.py).

Importable by spawned worker processes (tests/ is on their PYTHONPATH). Every run appends a line
to the ledger (``sample_jobs.append``), so a test can tell whether a job ran at all.
"""

from __future__ import annotations

from typing import Any

from sample_jobs import append

from jobkit import Job


class Echo(Job):
    """Takes any JSON value: only jobkit's own checks stand between a value and the store."""

    methods = ("take",)

    def take(self, value: Any) -> Any:
        return value


class Vault(Job):
    """Jobs that handle secrets and awkward text."""

    methods = ("open", "login", "say")

    def open(self, ledger: str = "", fail: bool = False, **params: Any) -> str:
        """Any params; fails (with a message free of secrets) when ``fail``."""
        append(ledger, job=self.context.job_id, tag="open")
        if fail:
            raise RuntimeError("the vault stayed shut")
        return "opened"

    def login(self, user: str, password: str) -> str:
        """A typed secret: a wrong type must not echo the value in the error."""
        return user

    def say(self, text: str, error: str | None = None) -> str:
        """Log ``text`` through self.log; raise RuntimeError(``error``) when given."""
        self.log.info("job says {text}", text=text)
        if error is not None:
            raise RuntimeError(error)
        return text
