"""A worker process's crash journal (jobkit.worker.journal): what it writes, what is read."""

from __future__ import annotations

from pathlib import Path

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


def test_any_job_id_reads_back(tmp_path: Path) -> None:
    """A store's own ids (not digits: quotes, backslashes, other digits) read back as written."""
    ids = ["0042", 'a"b\\c', "٣", "é\n"]
    journal = Journal(tmp_path / "j")
    for job_id in ids:
        journal.started(job_id, 1)
        journal.done(job_id, 1, "null")
    journal.close()
    entries = read_journal(tmp_path / "j")
    assert entries.started == {(job_id, 1) for job_id in ids}
    assert entries.done == {(job_id, 1): None for job_id in ids}


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


def test_committed_keeps_the_starts_of_running_coroutines(tmp_path: Path) -> None:
    """A commit while async jobs run writes their starts again: a crash still counts them."""
    from jobkit.records import Lease

    journal = Journal(tmp_path / "j")
    journal.started("1", 1)
    journal.started("2", 3)
    journal.done("1", 1, "null")
    journal.committed([Lease("2", "w", 3)])
    journal.close()
    entries = read_journal(tmp_path / "j")
    assert entries.started == {("2", 3)} and entries.done == {}
