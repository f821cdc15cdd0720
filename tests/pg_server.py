"""A throw-away PostgreSQL server for the tests, run from the installed server binaries.

``initdb`` into a fresh folder, ``pg_ctl start`` on 127.0.0.1 and a free port (and a Unix socket
in the same folder), ``pg_ctl stop`` and the folder removed afterwards. PostgreSQL refuses to run
as root, so as root the server runs as the ``postgres`` user that Debian's package creates.
Without the binaries, tests that need the server skip, or fail when ``CI=true``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def find_bin_dir() -> Path | None:
    """The folder of pg_ctl and initdb: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(os.path.realpath(on_path)).parent
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda path: int(Path(path).parent.parent.name.split(".")[0]),
    )
    return Path(found[-1]).parent if found else None


def missing(reason: str) -> None:
    """Skip the test, or fail it under CI=true (where the server must be there)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One server: :meth:`start`, :meth:`url`, :meth:`restart`, :meth:`stop`."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.folder = Path(tempfile.mkdtemp(prefix="jobkit-pg-"))  # not under pytest's 0700 tmp
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.port = free_port()
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam("postgres").pw_name
            except KeyError:
                missing("running as root and there is no 'postgres' user to run the server as")
            entry = pwd.getpwnam("postgres")
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self.folder.chmod(0o700)

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {result.stderr}{result.stdout}\n{log[-2000:]}")
        return result

    def start(self) -> None:
        """initdb (once), then start the server and wait until it accepts connections."""
        if not self.data.exists():
            self._run(
                "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                "--no-sync", "--no-instructions",
            )
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=300"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients; ``immediate``: like a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop and start again on the same port: every connection is broken."""
        self.stop()
        self.start()

    def url(self, dbname: str = "postgres") -> str:
        """A URL for the server's database ``dbname``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` (dropped first if it exists); its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url(name)

    def cleanup(self) -> None:
        """Stop the server if it runs and remove its folder."""
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):  # not running
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


def reset(url: str) -> None:
    """Empty jobkit's tables (ids start at 1 again), keeping the schema."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        # every table jobkit_schema_version does not describe: the jobs, their attempts and
        # log lines (by CASCADE), the workers and the throughput
        conn.execute(
            b"DO $$ DECLARE t text; BEGIN FOR t IN SELECT tablename FROM pg_tables "
            b"WHERE schemaname = current_schema() AND tablename LIKE 'jobkit\\_%' "
            b"AND tablename <> 'jobkit_schema_version' LOOP "
            b"EXECUTE format('TRUNCATE %I RESTART IDENTITY CASCADE', t); END LOOP; END $$"
        )
