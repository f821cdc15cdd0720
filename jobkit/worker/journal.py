"""Internal: a worker process's crash journal, what it started and finished since its commit.

A busy worker process claims several short jobs at once and records their completions together,
in one transaction with its next claim (see :class:`jobkit.worker.executor.Executor`). Until that
commit, a completed job lives only in the process. So before it runs a job, and after the job's
code returns, the process appends a line to its journal: a plain file, written with one
``write()`` each (no fsync: it has to survive the process, not the machine). If the process
dies (a job that calls ``os._exit``, a segfault, the supervisor's kill), its supervisor reads
the journal (:func:`read_journal`) and records the completions the process could not, so a
poison job never makes the jobs before it run again; it tells a job the process started (a
crash) from one it only claimed (handed back, uncounted). After each commit the journal is
emptied.

Lines are JSON: ``["start", job_id, attempt]`` and ``["done", job_id, attempt, result]``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from jobkit.records import Lease


@attrs.define
class JournalEntries:
    """What a dead process's journal says about its jobs, by ``(job_id, attempt)``."""

    started: set[tuple[str, int]] = attrs.Factory(set)
    #: The result each completed job returned (JSON-compatible).
    done: dict[tuple[str, int], Any] = attrs.Factory(dict)
    #: False when the file could not be read (removed by a temp cleaner, say): then nothing
    #: is known, and every job the process held counts as started.
    readable: bool = True


class Journal:
    """The writing end, owned by one worker process."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)  # a temp cleaner may remove it
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)

    def started(self, job_id: str, attempt: int) -> None:
        """The job's code is about to run."""
        os.write(self._fd, f'["start",{_quoted(job_id)},{int(attempt)}]\n'.encode())

    def done(self, job_id: str, attempt: int, result_json: str) -> None:
        """The job's code returned ``result_json`` (its result as JSON text); not committed."""
        os.write(self._fd, f'["done",{_quoted(job_id)},{int(attempt)},{result_json}]\n'.encode())

    def committed(self, running: Iterable[Lease] = ()) -> None:
        """Everything journalled so far is in the store: start afresh.

        The starts of the attempts still ``running`` (async jobs) are written again.
        """
        os.ftruncate(self._fd, 0)
        for lease in running:
            self.started(lease.job_id, lease.attempt)

    def close(self) -> None:
        """Close the file (it stays, for the supervisor to read and remove)."""
        os.close(self._fd)


def _quoted(job_id: str) -> str:
    """``json.dumps(job_id)``, at once for the usual id of ASCII digits (a row id)."""
    return f'"{job_id}"' if job_id.isascii() and job_id.isdigit() else json.dumps(job_id)


def read_journal(path: str | os.PathLike[str]) -> JournalEntries:
    """The entries of the journal at ``path``, as far as they can be read.

    A line cut short reads as one entry fewer (a line is written by one ``write()``, so only a
    crash of the machine cuts one); a file that cannot be read is
    :attr:`~JournalEntries.readable` ``False``.
    """
    entries = JournalEntries()
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        entries.readable = False
        return entries
    for line in text.splitlines():
        try:
            entry = json.loads(line)
            kind, key = entry[0], (str(entry[1]), int(entry[2]))
        except (ValueError, TypeError, IndexError):
            continue
        if kind == "start":
            entries.started.add(key)
        elif kind == "done" and len(entry) == 4:
            entries.done[key] = entry[3]
    return entries
