"""`jobkit worker` run as a real process, for the worker and reliability tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil

#: The tests folder: on the PYTHONPATH of every process the tests start.
TESTS = Path(__file__).parent
#: The repository's root folder.
REPO = TESTS.parent


def subprocess_env() -> dict[str, str]:
    """The environment of a real `python -m jobkit`: the sample jobs importable.

    Here, not in conftest.py: the plugins' test folders have a conftest module of their own,
    and a late ``from conftest import`` could find theirs."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }


class WorkerProcess:
    """`python -m jobkit worker` started as a real process, in a session of its own (so that
    stopping it can also end any worker process it left behind)."""

    def __init__(self, config: Path, *args: str) -> None:
        env = subprocess_env()
        self.output = config.parent / f"worker-{time.monotonic_ns()}.out"
        with open(self.output, "w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "jobkit", "--config", str(config), "worker", *args],
                cwd=config.parent,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        """The supervisor's pid (also its process group's id)."""
        return self.process.pid

    def children(self) -> list[psutil.Process]:
        """The live worker processes of this supervisor."""
        try:
            found = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []
        return [child for child in found if child.is_running()
                and child.status() != psutil.STATUS_ZOMBIE]

    def wait(self, timeout: float = 30) -> tuple[int, str]:
        """Wait for the exit; the exit code and the output. Fails after ``timeout`` seconds."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"worker did not exit within {timeout} s:\n{self.text()}"
            ) from None
        return self.process.returncode, self.text()

    def text(self) -> str:
        """Everything the worker printed so far."""
        return self.output.read_text()

    def signal_group(self, signum: int) -> None:
        """Send a signal to the supervisor and every worker process (a frozen machine: SIGSTOP)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL the supervisor and its worker processes."""
        self.signal_group(signal.SIGCONT)
        self.signal_group(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL for whatever is left after 15 s; prints the output."""
        if self.process.poll() is None:
            self.signal_group(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
        self.kill()  # worker processes the supervisor left behind too
        print(f"--- {self.output.name}\n{self.text()}")  # shown by pytest when the test fails


def free_port() -> int:
    """A TCP port free on the loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DashboardProcess:
    """A real ``jobkit ... dashboard`` server: its base URL; what it printed on stderr once
    it stopped."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.stderr = ""


@contextlib.contextmanager
def dashboard_process(command: Sequence[str], cwd: Path) -> Iterator[DashboardProcess]:
    """A real ``jobkit ... dashboard`` (``command`` after ``python -m jobkit``, with a free
    ``--port`` added) started in ``cwd``, once it answers. Stopped (SIGTERM) at the end."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "jobkit", *command, "--port", str(port)],
        env=subprocess_env(), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    )
    served = DashboardProcess(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{served.base}/login", timeout=2) as response:
                    assert response.status == 200
                    assert "Sign in" in response.read().decode()
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, server.communicate()[1]
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.1)
        yield served
    finally:
        server.terminate()
        served.stderr = server.communicate(timeout=15)[1]


def printed_dashboard_command(demo_output: str) -> list[str]:
    """The arguments after ``jobkit`` of the dashboard command ``jobkit demo`` printed
    (``dashboard: jobkit --config .../jobs.yaml dashboard  ->  http://...``)."""
    for line in demo_output.splitlines():
        if line.startswith("dashboard: jobkit "):
            return line.removeprefix("dashboard: jobkit ").split("  ->  ")[0].split()
    raise AssertionError(f"the demo printed no dashboard command:\n{demo_output}")
