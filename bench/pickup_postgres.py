"""Pick-up latency and idle CPU of an idle worker on PostgreSQL (`make bench-pickup-postgres`).

Starts a throw-away server from the installed binaries (as the tests do, `tests/pg_server.py`)
and runs `bench/pickup.py` against it twice: with a 2 s poll interval, where only LISTEN/NOTIFY
can explain a fast pick-up, and with SQLite's 50 ms default.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from pg_server import PostgresServer, find_bin_dir, reset  # noqa: E402


def main() -> None:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        sys.exit("the PostgreSQL server binaries (pg_ctl, initdb) are not installed")
    server = PostgresServer(bin_dir)
    server.start()
    try:
        url = server.create_database("bench")
        for poll in ("2", "0.05"):
            command = [sys.executable, str(ROOT / "bench" / "pickup.py"), "--storage", url,
                       "--poll-interval", poll, "--samples", "60"]
            subprocess.run(command, check=True)
            reset(url)
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
