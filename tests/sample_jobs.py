"""Job classes the tests run. Importable by spawned worker processes (tests/ is on sys.path)."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import attrs

import jobkit
from jobkit import Job, JobInterrupted, Retry


def append(ledger: str | None, **entry: Any) -> None:
    """Append one JSON line to the ledger file: the tests' record of what ran, outside the store."""
    if ledger:
        entry.setdefault("pid", os.getpid())
        entry.setdefault("at", time.time())
        with open(ledger, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")


def read_ledger(ledger: str) -> list[dict[str, Any]]:
    """The ledger's entries in the order they were written."""
    try:
        with open(ledger, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except FileNotFoundError:
        return []


@attrs.frozen
class Address:
    """A structured parameter."""

    street: str
    number: int


class Recorder(Job):
    """Records each run in a ledger; fails, sleeps or retries on request."""

    methods = (
        "record",
        "fail",
        "sleep",
        "stubborn",
        "typed",
        "progress_steps",
        "retry_later",
        "address_of",
        "bad_result",
        "log_lines",
        "exits",
        "busy_in_c",
        "swallow",
        "abort",
        "die",
        "crash_after_effect",
        "chatty",
        "log_levels",
        "log_odd",
    )

    def record(self, ledger: str, tag: str) -> str:
        append(ledger, tag=tag, job=self.context.job_id, attempt=self.context.attempt)
        return tag

    def fail(self, ledger: str, times: int = 1_000_000, tag: str = "") -> str:
        append(ledger, tag=tag, job=self.context.job_id, attempt=self.context.attempt)
        if self.context.attempt <= times:
            raise RuntimeError(f"planned failure {self.context.attempt}")
        return "recovered"

    def sleep(self, seconds: float, ledger: str | None = None) -> str:
        append(ledger, tag="start", job=self.context.job_id, attempt=self.context.attempt)
        time.sleep(seconds)
        append(ledger, tag="end", job=self.context.job_id, attempt=self.context.attempt)
        return "slept"

    def stubborn(self, seconds: float) -> str:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                time.sleep(0.02)
            except JobInterrupted:
                continue  # ignores every interrupt: only killing the process stops it
        return "survived"

    def typed(
        self,
        count: int,
        ratio: float,
        name: str,
        tags: list[str],
        flag: bool = False,
        extra: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        return {"count": count, "ratio": ratio, "name": name, "tags": tags, "flag": flag}

    def progress_steps(self, steps: int) -> int:
        for step in range(1, steps + 1):
            self.progress(step / steps, f"step {step}")
        return steps

    def retry_later(self, ledger: str, delay: float) -> str:
        append(ledger, attempt=self.context.attempt)
        if self.context.attempt == 1:
            raise Retry("not yet", delay=delay)
        return "done"

    def address_of(self, address: Address) -> str:
        assert isinstance(address, Address)
        return f"{address.number} {address.street}"

    def bad_result(self) -> Any:
        return {1, 2}

    def log_lines(self, text: str) -> str:
        self.log.info("job says {text}", text=text)
        return text

    def chatty(self, lines: int, sleep: float = 0.0) -> int:
        """Logs ``lines`` lines through self.log, then sleeps."""
        for n in range(lines):
            self.log.info("line {n} of {total}", n=n, total=lines)
        time.sleep(sleep)
        return lines

    def log_odd(self) -> None:
        """A line no store keeps as it is: a lone surrogate (a file name decoded with
        surrogateescape) and a NUL."""
        self.log.info("bad\udcff and \x00 nul")

    def log_levels(self) -> None:
        """One line at each of five levels."""
        self.log.trace("trace line")
        self.log.debug("debug line")
        self.log.info("info line")
        self.log.warning("warning line")
        self.log.log(5, "level five")

    def busy_in_c(self, n: int) -> int:
        return sum(range(n))  # one long C call that holds the GIL: no thread can interrupt it

    def swallow(self, seconds: float) -> str:
        try:
            time.sleep(seconds)
        except Exception:  # swallows jobkit's interrupt too
            return "partial"
        return "complete"

    def abort(self) -> None:
        os.abort()  # the worker process dies with this job

    def die(self, how: str, ledger: str | None = None) -> None:
        """End this worker process every time: ``exit`` (os._exit) or ``kill`` (SIGKILL, as the
        kernel's OOM killer does)."""
        append(ledger, tag="die", job=self.context.job_id, attempt=self.context.attempt)
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(1)

    def crash_after_effect(self, ledger: str) -> str:
        """Do the side effect, then (first attempt only) die before jobkit commits the result."""
        append(ledger, tag="effect", job=self.context.job_id, attempt=self.context.attempt)
        if self.context.attempt == 1:
            os._exit(1)
        return "done"

    def exits(self) -> None:
        raise SystemExit(3)

    def _private(self) -> None:
        """Never approved."""

    def helper(self) -> None:
        """Public but not declared: never approved."""


class Other(Job):
    """A second job class, for name clashes."""

    methods = ("handle",)

    def handle(self) -> str:
        return "other"


class Waiter(Job):
    """A job that waits for another job's end (``jobkit.wait_job`` on the default app)."""

    methods = ("wait_for",)

    def wait_for(self, job_id: str) -> str:
        return str(jobkit.wait_job(job_id, timeout=120).status.value)


class Slow(Job):
    """Slow on its first attempt only: for killed workers and hand-backs."""

    methods = ("slow_first",)

    def slow_first(self, seconds: float, ledger: str | None = None) -> int:
        append(ledger, tag="start", job=self.context.job_id, attempt=self.context.attempt)
        if self.context.attempt == 1:
            time.sleep(seconds)
        append(ledger, tag="end", job=self.context.job_id, attempt=self.context.attempt)
        return self.context.attempt


class Busy(Job):
    """Records its run in a ledger (one entry), then keeps its worker busy a little while: for
    tests that must catch worker processes in the middle of a job."""

    methods = ("record",)

    def record(self, ledger: str, tag: str, hold: float) -> str:
        append(ledger, tag=tag, job=self.context.job_id, attempt=self.context.attempt)
        time.sleep(hold)
        return tag


class Rerun(Job):
    """Long on its first run only, counted in the ledger: for hand-backs that run elsewhere."""

    methods = ("long_once",)

    def long_once(self, seconds: float, ledger: str) -> int:
        """Sleep ``seconds`` unless the ledger shows this job started before."""
        earlier = [e for e in read_ledger(ledger) if e.get("job") == self.context.job_id]
        append(ledger, tag="start", job=self.context.job_id, attempt=self.context.attempt)
        if not earlier:
            time.sleep(seconds)
        append(ledger, tag="end", job=self.context.job_id, attempt=self.context.attempt)
        return len(earlier)


class BadStr(Exception):
    """An exception whose message cannot be built."""

    def __str__(self) -> str:
        raise RuntimeError("boom in __str__")


class Awkward(Job):
    """Jobs that break jobkit's bookkeeping rather than their own work."""

    methods = ("bad_exc", "circular", "bad_retry")

    def bad_exc(self) -> None:
        raise BadStr()

    def circular(self) -> list[Any]:
        loop: list[Any] = []
        loop.append(loop)
        return loop

    def bad_retry(self) -> None:
        raise Retry(delay="5")  # type: ignore[arg-type]


#: Text a job could store in its error or params: terminal escapes (retitle the window, clear
#: the screen), rich markup and a line break; and how jobkit shows it (escaped, on one line).
HOSTILE = "bad\x1b]0;pwned\x07 [bold red]red[/] \x1b[2J\r\nsecond line"
HOSTILE_SHOWN = "bad\\x1b]0;pwned\\x07 [bold red]red[/] \\x1b[2J\\r\\nsecond line"


class Hostile(Job):
    """Fails with the text it is given as its error."""

    methods = ("explode", "report")

    def explode(self, text: str) -> None:
        raise ValueError(text)

    def report(self, text: str) -> str:
        """Shows ``text`` as its progress message for a second."""
        self.progress(0.5, text)
        time.sleep(1.0)
        return "reported"


@attrs.frozen
class GreeterOptions:
    """The options of Configured."""

    greeting: str = "Hello"
    times: int = 1


class Configured(Job):
    """A job with an Options class: jobkit structures its options: from jobs.yaml."""

    methods = ("greet",)
    Options = GreeterOptions

    def greet(self, name: str) -> str:
        assert isinstance(self.options, GreeterOptions)
        return " ".join([f"{self.options.greeting}, {name}"] * self.options.times)


class Limited(Job):
    """Sleeps, noting its start and end with its customer: for concurrency and rate limits."""

    methods = ("work",)

    def work(self, seconds: float, customer_id: int = 0, ledger: str | None = None) -> int:
        append(ledger, tag="start", job=self.context.job_id, customer=customer_id)
        time.sleep(seconds)
        append(ledger, tag="end", job=self.context.job_id, customer=customer_id)
        return customer_id
