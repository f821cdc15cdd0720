"""A worker process's crash journal (jobkit.worker.journal): what it writes, what is read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jobkit.worker.journal import Journal, read_journal


def test_entries_read_back(tmp_path: Path) -> None:
    """Starts and completions (with their results) are read back by job and attempt."""
    journal = Journal(tmp_path / "j")
    journal.started("1", 1)
    journal.done("1", 1, '{"sum": 3, "text": "é\\n"}')
    journal.started("2", 4)
    journal.close()
    entries = read_journal(tmp_path / "j")
    assert entries.started == {("1", 1), ("2", 4)}
    assert entries.done == {("1", 1): {"sum": 3, "text": "é\n"}}


def test_committed_empties_it(tmp_path: Path) -> None:
    """After a commit the journal holds only what came after it."""
    journal = Journal(tmp_path / "j")
    journal.started("1", 1)
    journal.done("1", 1, "null")
    journal.committed()
    journal.started("2", 1)
    entries = read_journal(tmp_path / "j")
    journal.close()
    assert (entries.started, entries.done) == ({("2", 1)}, {})


def test_a_new_journal_starts_empty(tmp_path: Path) -> None:
    """A process started again on the same path does not inherit the old entries."""
    Journal(tmp_path / "j").started("1", 1)
    Journal(tmp_path / "j").close()
    assert read_journal(tmp_path / "j").started == set()


def test_missing_file_and_cut_lines_read_as_fewer_entries(tmp_path: Path) -> None:
    """A missing journal is unreadable (nothing is known); a line cut short or not an entry is
    skipped."""
    assert not read_journal(tmp_path / "none").readable
    assert read_journal(tmp_path / "none").started == set()
    (tmp_path / "j").write_text('["start","1",1]\n["done","1",1,{"a"\n[1]\n"x"\n["start","2"\n')
    entries = read_journal(tmp_path / "j")
    assert (entries.started, entries.done) == ({("1", 1)}, {})


def test_a_completion_is_written_with_the_next_start(tmp_path: Path, monkeypatch: Any) -> None:
    """A busy worker writes once per job: a completion goes with the next job's start, in one
    write(); the last one of a batch is written by flush() (before its commit), or close()."""
    writes: list[bytes] = []
    write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: writes.append(data) or write(fd, data))
    journal = Journal(tmp_path / "j")
    journal.started("1", 1)
    journal.done("1", 1, '"a"')
    assert read_journal(tmp_path / "j").done == {}
    journal.started("2", 1)
    journal.done("2", 1, "null")
    journal.flush()
    journal.flush()
    journal.started("3", 1)
    journal.done("3", 1, "3")
    journal.close()
    assert writes == [b'["start","1",1]\n', b'["done","1",1,"a"]\n["start","2",1]\n',
                      b'["done","2",1,null]\n', b'["start","3",1]\n', b'["done","3",1,3]\n']
    entries = read_journal(tmp_path / "j")
    assert entries.done == {("1", 1): "a", ("2", 1): None, ("3", 1): 3}


def test_ids_of_any_text_are_written_as_json(tmp_path: Path) -> None:
    """A job id that is not a row id's digits (another backend's) is escaped as JSON."""
    journal = Journal(tmp_path / "j")
    for job_id in ('a"b\\', "²", "١٢"):
        journal.started(job_id, 2)
        journal.done(job_id, 2, "null")
    journal.close()
    entries = read_journal(tmp_path / "j")
    assert entries.started == {('a"b\\', 2), ("²", 2), ("١٢", 2)}
    assert set(entries.done) == entries.started
