"""Two small jobs for the quickstart: one that greets, one that fails before it succeeds."""

from __future__ import annotations

from jobkit import Job


class Greeter(Job):
    """Says hello."""

    methods = ("greet",)

    def greet(self, name: str, excited: bool = False) -> str:
        greeting = f"Hello, {name}{'!' if excited else '.'}"
        self.log.info(greeting)
        return greeting


class Flaky(Job):
    """Fails on its first attempts, to show retries."""

    methods = ("work",)

    def work(self, fail_times: int) -> str:
        if self.context.attempt <= fail_times:
            raise RuntimeError(f"attempt {self.context.attempt} failed on purpose")
        return f"succeeded on attempt {self.context.attempt}"
