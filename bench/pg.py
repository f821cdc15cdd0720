"""The throw-away PostgreSQL server of the benchmark: the tests' ``PostgresServer``
(``tests/pg_server.py``: initdb and pg_ctl from the installed binaries, 127.0.0.1, a free port,
as the ``postgres`` user when root), started with PostgreSQL's durable defaults unless asked
for the tests' fast settings (``fsync=off``, ``synchronous_commit=off``, ...).
"""

from __future__ import annotations

import sys
from pathlib import Path

from common import ROOT

sys.path.insert(0, str(ROOT / "tests"))

from pg_server import PostgresServer, find_bin_dir, reset

__all__ = ["BenchServer", "find_bin_dir", "reset"]


class BenchServer(PostgresServer):
    """A :class:`PostgresServer` whose durability settings the benchmark chooses."""

    def __init__(self, bin_dir: Path, *, durable: bool = True) -> None:
        super().__init__(bin_dir)
        self.durable = durable

    @property
    def settings(self) -> str:
        """The server settings, as the report states them."""
        if self.durable:
            return "PostgreSQL defaults (fsync on, synchronous_commit on), max_connections=300"
        return "tests' settings: fsync=off, synchronous_commit=off, full_page_writes=off"

    def start(self) -> None:
        """initdb (once), then start the server and wait until it accepts connections."""
        if not self.durable:
            super().start()
            return
        if not self.data.exists():
            self._run(
                "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                "--no-instructions",
            )
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            "-c max_connections=300"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def version(self) -> str:
        """The server's version string."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            row = conn.execute(b"SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def postmaster(self) -> int:
        """The process id of the server's postmaster (its backends are its children)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])
