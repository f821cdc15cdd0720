"""The SQLite store passes the storage conformance suite, and keeps its file healthy."""

from __future__ import annotations

import contextlib
import os
import pickle
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from completed_records import CompletedRecords

from jobkit import JobKit
from jobkit.config import load_config
from jobkit.exceptions import ConfigError, StorageError, StoreLost
from jobkit.records import AttemptOutcome, JobStatus, Lease, NewStep
from jobkit.storage import filewatch, sqlite_file
from jobkit.storage import sqlite as sqlite_module
from jobkit.storage.capabilities import complete_and_claim_many
from jobkit.storage.sqlite import SQLiteStorage
from jobkit.storage.sqlite_file import migrations
from jobkit.testing import FakeClock, SpoiledRowConformance, StorageConformance
from jobkit.testing.conformance import lease_of, new_job, run_in_processes

#: The schema version this jobkit writes.
LATEST = migrations()[-1][0]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the test's database lives."""
    return tmp_path / "jobs.db"


class TestSQLiteStorage(StorageConformance, SpoiledRowConformance):
    """SQLiteStorage follows every rule of the Storage core (shared by processes) and of every
    optional capability, subclassing the suite's class as a third party's backend would."""

    @pytest.fixture
    def storage(self, db_path: Path, clock: FakeClock) -> Iterator[SQLiteStorage]:
        """A fresh database file on the fake clock."""
        store = SQLiteStorage(db_path, clock=clock)
        yield store
        store.close()

    @pytest.fixture
    def storage_url(self, storage: SQLiteStorage) -> str:
        """The same file, for child processes."""
        return storage.url

    @pytest.fixture
    def spoil_row(self, storage: SQLiteStorage) -> Callable[[str], str]:
        """Text in a job's priority, past the CHECKs (``ignore_check_constraints``)."""

        def spoil(job_id: str) -> str:
            with contextlib.closing(sqlite3.connect(storage.path)) as conn, conn:
                conn.execute("PRAGMA ignore_check_constraints = ON")
                conn.execute("UPDATE jobkit_jobs SET priority = 'high' WHERE id = ?",
                             (int(job_id),))
            return "priority"

        return spoil


class TestEnqueuedRecordParams:
    """The record enqueue gives back holds what a read of its row gives, in a mapping of its own."""

    PARAMS = [
        {"s": "t\u2028\u00e9", "i": 2**70, "f": 0.1, "e": 1e16, "z": -0.0, "b": True, "n": None},
        {"nested": {"a": (1, 2)}, "t": (3,)},
        {"sub": JobStatus.PENDING, "big": True},
    ]

    @pytest.mark.parametrize("params", PARAMS)
    def test_as_a_read_gives(self, db_path: Path, params: dict[str, Any]) -> None:
        clock = FakeClock()
        with contextlib.closing(SQLiteStorage(db_path, clock=clock)) as store:
            record = store.enqueue(new_job(store.now(), params=params))
            read = store.get(record.id)
            assert record == read
            assert [type(v) for v in record.params.values()] == [
                type(v) for v in read.params.values()]
            assert record.params is not params
            many = store.enqueue_many([new_job(store.now(), params=params)] * 2)
            assert [r.params for r in many] == [read.params] * 2


class TestSQLiteFile:
    """The database file: journal mode, schema version, URLs."""

    def test_wal_mode_is_on(self, db_path: Path) -> None:
        """The file uses the write-ahead log."""
        with SQLiteStorage(db_path):
            pass
        with sqlite3.connect(db_path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    def test_commits_leave_checkpoints_to_housekeep(self, db_path: Path) -> None:
        """Commits checkpoint by themselves only past WAL_AUTOCHECKPOINT pages; housekeep copies
        the whole WAL into the file without waiting for anyone."""
        with SQLiteStorage(db_path) as store:
            for _ in range(300):  # more than SQLite's default threshold of 1,000 pages
                store.enqueue(new_job(store.now()))
            conn = store._connection("test")
            assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == (
                sqlite_file.WAL_AUTOCHECKPOINT
            )
            wal = db_path.with_name(db_path.name + "-wal")
            # nothing copied into the file yet: it holds the schema only
            assert db_path.stat().st_size < 64 * 1024 < wal.stat().st_size
            store.housekeep()
            assert db_path.stat().st_size > 64 * 1024
            assert store.count() == 300

    @pytest.mark.parametrize(
        ("yaml_text", "environ", "level"),
        [
            ("", {}, 1),  # NORMAL
            ("durability: full\n", {}, 2),  # FULL
            ("", {"JOBKIT_DURABILITY": "full"}, 2),
        ],
    )
    def test_durability_sets_synchronous(
        self, tmp_path: Path, yaml_text: str, environ: dict[str, str], level: int
    ) -> None:
        """jobs.yaml's (or JOBKIT_DURABILITY's) durability reaches every connection."""
        path = tmp_path / "jobs.yaml"
        path.write_text(f"storage: sqlite:///{tmp_path / 'j.db'}\n{yaml_text}")
        with JobKit(load_config(path, environ=environ), load_entrypoints=False) as app:
            storage = app.storage
            assert isinstance(storage, SQLiteStorage)
            conn = storage._connection("test")
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == level

    def test_a_bad_durability_names_file_and_line(self, tmp_path: Path) -> None:
        """durability must be normal or full; the error names the file and the line."""
        path = tmp_path / "jobs.yaml"
        path.write_text("storage: memory://\ndurability: paranoid\n")
        with pytest.raises(ConfigError, match=r"jobs\.yaml:2: durability: expected one of"):
            load_config(path, environ={})

    def test_schema_version_is_recorded(self, db_path: Path) -> None:
        """A new file records the latest schema version in one row."""
        with SQLiteStorage(db_path):
            pass
        with sqlite3.connect(db_path) as conn:
            rows = conn.execute("SELECT version FROM jobkit_schema_version").fetchall()
        assert rows == [(LATEST,)] and LATEST == 11

    def test_a_version_1_file_is_upgraded(
        self, db_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A file of jobkit's first schema gains crash accounting and the workers table; its
        jobs keep their data."""
        clock = FakeClock()
        first = {k: v for k, v in sqlite_file.queries().items()
                 if not k.startswith("migration_") or k == "migration_1"}
        with monkeypatch.context() as patch:
            patch.setattr(sqlite_file, "queries", lambda: first)
            SQLiteStorage(db_path, clock=clock).close()
        with sqlite3.connect(db_path) as conn:
            job_id = str(conn.execute(
                "INSERT INTO jobkit_jobs (name, method, params, status, max_attempts, policy,"
                " created_at, available_at)"
                " VALUES ('Email', 'send', '{\"to\": \"ana@example.com\"}',"
                " 'pending', 1, '{}', 0, 0) RETURNING id"
            ).fetchone()[0])
        with SQLiteStorage(db_path, clock=clock) as store:
            record = store.get(job_id)
            assert (record.crashes, record.max_crashes, record.params) == (
                0, 3, {"to": "ana@example.com"}
            )
            assert store.list_workers() == []
        with sqlite3.connect(db_path) as conn:
            assert conn.execute("SELECT version FROM jobkit_schema_version").fetchall() == [
                (LATEST,)]

    def test_a_version_9_file_gains_workflows_and_keeps_its_rows(
        self, db_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Migration 10 rebuilds jobkit_jobs ('blocked'): attempts, queue, keys and ids stay.

        Foreign keys are off while the table is rebuilt: the attempts of the old jobs are not
        deleted with the old table.
        """
        clock = FakeClock()
        before = {k: v for k, v in sqlite_file.queries().items()
                  if k not in ("migration_10", "migration_11")}
        with monkeypatch.context() as patch:
            patch.setattr(sqlite_file, "queries", lambda: before)
            with SQLiteStorage(db_path, clock=clock) as store:
                old = store.enqueue(attrs.evolve(new_job(clock()), queue="mail", unique_key="k1"))
                running = store.claim("w1", 30)
                assert running is not None and running.id == old.id
        with SQLiteStorage(db_path, clock=clock) as store:
            assert store.get(old.id) == running
            assert [a.worker_id for a in store.attempts(old.id)] == ["w1"]
            _, (a, b) = store.enqueue_steps([NewStep(new_job(clock())),
                                             NewStep(new_job(clock()), parents=(0,))])
            assert int(a.id) > int(old.id) and b.status is JobStatus.BLOCKED
            again = attrs.evolve(new_job(clock()), unique_key="k1")
            assert store.enqueue_unique([again])[0][1] is False  # the old job holds its key
        with sqlite3.connect(db_path) as conn:
            assert conn.execute("SELECT version FROM jobkit_schema_version").fetchall() == [
                (LATEST,)]
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []

    def test_reopening_keeps_the_jobs(self, db_path: Path) -> None:
        """Opening an existing file again migrates nothing and finds its jobs."""
        clock = FakeClock()
        with SQLiteStorage(db_path, clock=clock) as store:
            job = store.enqueue(new_job(clock()))
        with SQLiteStorage(db_path, clock=clock) as store:
            assert store.get(job.id) == job
        with sqlite3.connect(db_path) as conn:
            rows = conn.execute("SELECT version FROM jobkit_schema_version").fetchall()
            assert rows == [(LATEST,)]

    def test_a_new_migration_upgrades_an_old_file(
        self, db_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A migration appended to sqlite.sql is applied once to an existing file."""
        clock = FakeClock()
        with SQLiteStorage(db_path, clock=clock) as store:
            job = store.enqueue(new_job(clock()))
        sections = dict(sqlite_file.queries())
        sections[f"migration_{LATEST + 1}"] = (
            "ALTER TABLE jobkit_jobs ADD COLUMN tag TEXT;\nUPDATE jobkit_jobs SET tag = 'old';"
        )
        monkeypatch.setattr(sqlite_file, "queries", lambda: sections)
        for _ in range(2):
            with SQLiteStorage(db_path, clock=clock) as store:
                assert store.get(job.id) == job
        with sqlite3.connect(db_path) as conn:
            rows = conn.execute("SELECT version FROM jobkit_schema_version").fetchall()
            assert rows == [(LATEST + 1,)]
            assert conn.execute("SELECT tag FROM jobkit_jobs").fetchall() == [("old",)]

    def test_a_newer_schema_is_refused(self, db_path: Path) -> None:
        """A file written by a newer jobkit is not touched."""
        SQLiteStorage(db_path).close()
        with sqlite3.connect(db_path) as conn:
            conn.execute("UPDATE jobkit_schema_version SET version = 99")
        with pytest.raises(StorageError, match="version 99"):
            SQLiteStorage(db_path)

    def test_from_url_relative_and_absolute(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """sqlite:///rel.db is relative to the working directory, sqlite:////abs.db absolute."""
        monkeypatch.chdir(tmp_path)
        store = SQLiteStorage.from_url("sqlite:///sub/dir/rel.db")
        store.close()
        assert store.path == tmp_path / "sub" / "dir" / "rel.db" and store.path.exists()
        assert store.url == f"sqlite:///{tmp_path.as_posix()}/sub/dir/rel.db"
        again = SQLiteStorage.from_url(store.url)
        again.close()
        assert again.path == store.path

    @pytest.mark.parametrize(
        "url", ["sqlite://", "sqlite:///", "postgresql://x/y", "sqlite:///:memory:"]
    )
    def test_bad_urls_are_config_errors(self, url: str) -> None:
        """URLs that name no file are refused."""
        with pytest.raises(ConfigError):
            SQLiteStorage.from_url(url)

    def test_a_store_cannot_be_pickled(self, db_path: Path) -> None:
        """Pickling fails with a hint to reopen from the URL."""
        with SQLiteStorage(db_path) as store, pytest.raises(TypeError, match="from_url"):
            pickle.dumps(store)

    def test_driver_errors_become_storage_errors(self, db_path: Path) -> None:
        """A broken database raises StorageError naming the operation and the file."""
        clock = FakeClock()
        with SQLiteStorage(db_path, clock=clock) as store:
            job = store.enqueue(new_job(clock()))
            with sqlite3.connect(db_path) as conn:
                conn.execute("DROP TABLE jobkit_attempts")
            with pytest.raises(StorageError, match=f"read the attempts of job {job.id}") as info:
                store.attempts(job.id)
            assert str(db_path) in str(info.value)
            assert isinstance(info.value.__cause__, sqlite3.Error)

    def test_threads_share_a_store(self, db_path: Path) -> None:
        """Each thread gets its own connection and all are closed with the store."""
        clock = FakeClock()
        store = SQLiteStorage(db_path, clock=clock)
        job = store.enqueue(new_job(clock()))
        record = store.claim("w1", 30)
        assert record is not None
        beats: list[bool] = []
        thread = threading.Thread(
            target=lambda: beats.append(store.heartbeat(Lease(job.id, "w1", 1), 30))
        )
        thread.start()
        thread.join()
        assert beats == [True]
        store.close()
        with pytest.raises(StorageError, match="closed"):
            store.get(job.id)

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
    def test_a_forked_child_opens_its_own_connection(self, db_path: Path) -> None:
        """After a fork the child never reuses the parent's connection."""
        clock = FakeClock()
        with SQLiteStorage(db_path, clock=clock) as store:
            store.enqueue(new_job(clock()))
            pid = os.fork()
            if pid == 0:  # the child: report through the exit code only
                ok = store.count() == 1 and store.enqueue(new_job(clock())).id == "2"
                os._exit(0 if ok else 1)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            assert store.count() == 2


def open_and_enqueue(storage_class: type[SQLiteStorage], url: str, worker_id: str) -> str:
    """Open the file (racing the others to create it) and enqueue one job (in a child)."""
    store = storage_class.from_url(url)
    try:
        return store.enqueue(new_job(store.now(), params={"by": worker_id})).id
    finally:
        store.close()


def enqueue_and_work(storage_class: type[SQLiteStorage], url: str, worker_id: str) -> int:
    """Enqueue jobs while claiming and completing others (runs in a child process)."""
    done = 0
    with storage_class.from_url(url) as store:
        for n in range(TestSQLiteContention.per_process):
            store.enqueue(new_job(store.now(), params={"by": worker_id, "n": n}))
            record = store.claim(worker_id, 60)
            if record is not None:
                lease = Lease(record.id, worker_id, record.attempts)
                assert store.settle(lease, AttemptOutcome.SUCCEEDED, result=n) is not None
                done += 1
    return done


class TestCompletedRecords(CompletedRecords):
    """SQLite's completions built from their claims (see :mod:`completed_records`)."""

    decoder, storage_class, location = sqlite_file, SQLiteStorage, "db_path"

    def test_a_row_edited_by_hand_since_its_claim_is_read(self, db_path: str) -> None:
        """The completion that reads no row back compares the claim's in its UPDATE.

        A row changed behind jobkit's back while its job ran (its priority, by hand) is
        completed all the same, and its record is the row read again, as a read gives it.
        """
        with SQLiteStorage(db_path) as store:
            store.enqueue(new_job(store.now()))
            _, [record] = complete_and_claim_many(store, [], "w1", 30.0, 1)
            with sqlite3.connect(db_path) as other:
                other.execute("UPDATE jobkit_jobs SET priority = 7 WHERE id = ?", (int(record.id),))
            [done], _ = complete_and_claim_many(store, [(lease_of(record), 2)], "w1", 30.0, 0)
            assert done is not None and done == store.get(record.id)
            assert (done.priority, done.result, done.status.value) == (7, 2, "completed")


class TestWaitForJobs:
    """An idle worker's wait ends soon after another connection commits: on the -wal file's
    writes (inotify), or where there is none by reading PRAGMA data_version."""

    @pytest.fixture(autouse=True, params=["inotify", "data_version"])
    def how(self, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
        if request.param == "data_version":
            monkeypatch.setattr(sqlite_module, "watch", lambda path: None)
        elif not sys.platform.startswith("linux"):
            pytest.skip("inotify is Linux's")
        return str(request.param)

    def test_the_wait_uses_inotify_on_linux(self, db_path: Path, how: str) -> None:
        """On Linux the store watches its -wal file (no polling)."""
        with SQLiteStorage(db_path) as store:
            store.claim("w", 30)
            assert (store._wal_watch() is not None) == (how == "inotify")

    def test_an_enqueue_wakes_a_waiting_store(self, db_path: Path) -> None:
        """A commit by another connection ends a 30 s wait within a fraction of a second."""
        with SQLiteStorage(db_path) as waiting, SQLiteStorage(db_path) as other:
            assert waiting.claim("w", 30) is None
            timer = threading.Timer(0.3, lambda: other.enqueue(new_job(other.now())))
            timer.start()
            started = time.monotonic()
            waiting.wait_for_jobs(30.0)
            waited = time.monotonic() - started
            timer.join()
        assert waited < 10, f"woke only after {waited:.1f} s"

    def test_a_commit_between_the_look_and_the_wait_is_not_missed(self, db_path: Path) -> None:
        """A job enqueued after the worker found none, before it waits, ends the wait at once."""
        with SQLiteStorage(db_path) as waiting, SQLiteStorage(db_path) as other:
            assert waiting.claim("w", 30) is None
            other.enqueue(new_job(other.now()))
            started = time.monotonic()
            waiting.wait_for_jobs(30.0)
        assert time.monotonic() - started < 10

    def test_without_commits_the_wait_lasts_its_timeout(self, db_path: Path) -> None:
        """Nothing committed: the wait returns after its timeout, not before."""
        with SQLiteStorage(db_path) as waiting:
            assert waiting.claim("w", 30) is None
            started = time.monotonic()
            waiting.wait_for_jobs(0.3)
        assert time.monotonic() - started >= 0.29

    def test_stop_ends_the_wait(self, db_path: Path) -> None:
        """A set stop event ends the wait."""
        stop = threading.Event()
        with SQLiteStorage(db_path) as waiting:
            threading.Timer(0.2, stop.set).start()
            started = time.monotonic()
            waiting.wait_for_jobs(30.0, stop)
        assert time.monotonic() - started < 10


class _CommitAfterItsWrite:
    """A stand-in for the -wal watch: the write is seen before the commit it belongs to.

    A writer appends its frames to the -wal file (the event) and only then makes them visible in
    the WAL index, which writes nothing the watch sees. The first wait reports the write, with
    nothing committed yet; the next wait commits the job and reports nothing. A third wait means
    the store went back to waiting for another write while the job was there to claim, a wake-up
    missed: it is noted and ``stop`` ends the test's (60 s) wait at once.
    """

    closed = False

    def __init__(self, commit: Callable[[], object], stop: threading.Event) -> None:
        self.commit, self.stop = commit, stop
        self.waits = 0
        self.missed = False

    def wait(self, timeout: float) -> bool:
        self.waits += 1
        if self.waits == 1:
            return True
        if self.waits == 2:
            self.commit()
            return False
        self.missed = True
        self.stop.set()
        return False

    def close(self) -> None:
        """Nothing to close."""


class TestWakeAfterAWrite:
    """A write to the -wal file ends an idle worker's wait only once its commit is visible."""

    @pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
    @pytest.mark.parametrize("busy", [False, True], ids=["idle", "after-a-job"])
    def test_a_commit_made_visible_after_its_write_wakes_the_worker(
        self, db_path: Path, busy: bool
    ) -> None:
        """The worker's loop (look for a job, else wait) is woken for the job, not polled.

        Before, the wait ended on the write itself; the look that followed found nothing (the
        commit was not visible yet) and the next wait waited for another write, until its
        timeout: one pick-up in ten took the 50 ms poll interval. ``after-a-job``: the worker
        has just run a job, so its next claim is a write, not the read-only look.
        """
        stop = threading.Event()
        with SQLiteStorage(db_path) as waiting, SQLiteStorage(db_path) as other:
            if busy:
                other.enqueue(new_job(other.now()))
                done = waiting.claim("w", 30)
                assert done is not None
                lease = Lease(done.id, "w", done.attempts)
                assert waiting.settle(lease, AttemptOutcome.SUCCEEDED, result=None) is not None
            watch = _CommitAfterItsWrite(lambda: other.enqueue(new_job(other.now())), stop)
            waiting._wal = (os.getpid(), watch)  # type: ignore[assignment]
            claimed = None
            for _ in range(3):
                claimed = waiting.claim("w", 30)
                if claimed is not None:
                    break
                waiting.wait_for_jobs(60.0, stop)
        assert claimed is not None
        assert not watch.missed, "the wait went on after the job was committed (a poll, no wake)"


class TestSQLiteContention:
    """Several processes writing to one file at once."""

    per_process = 300

    @pytest.mark.slow
    def test_first_opens_race_safely(self, db_path: Path) -> None:
        """Four processes creating the same new file at once all succeed; one schema results."""
        ids = run_in_processes(open_and_enqueue, SQLiteStorage, f"sqlite:///{db_path}", 4)
        assert sorted(ids, key=int) == ["1", "2", "3", "4"]
        with sqlite3.connect(db_path) as conn:
            rows = conn.execute("SELECT version FROM jobkit_schema_version").fetchall()
            assert rows == [(LATEST,)]

    @pytest.mark.slow
    def test_concurrent_writers_lose_nothing(self, db_path: Path) -> None:
        """Four processes enqueueing, claiming and completing at once raise no error."""
        store = SQLiteStorage(db_path)  # the schema exists before the children race
        url = store.url
        store.close()
        completed = run_in_processes(enqueue_and_work, SQLiteStorage, url, 4)
        total = 4 * self.per_process
        with SQLiteStorage(db_path) as after:
            assert after.count() == total
            assert after.count(status=JobStatus.COMPLETED) == sum(completed)
            assert after.count(status=JobStatus.RUNNING) == 0
            assert after.count(status=JobStatus.PENDING) == total - sum(completed)

    def test_heartbeat_gives_up_within_a_quarter_of_the_lease(self, db_path: Path) -> None:
        """A heartbeat blocked by another writer fails fast instead of outliving the lease."""
        import time

        store = SQLiteStorage(db_path)
        try:
            store.enqueue(new_job(store.now()))
            record = store.claim("w1", 60)
            assert record is not None
            lease = Lease(record.id, "w1", record.attempts)
            blocker = sqlite3.connect(db_path, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")  # holds the write lock
            try:
                started = time.monotonic()
                with pytest.raises(StorageError):
                    store.heartbeat(lease, 0.4)  # budget 0.1 s, not the 30 s busy timeout
                assert time.monotonic() - started < 5
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            assert store.heartbeat(lease, 60)  # and the connection is usable again
        finally:
            store.close()


class TestFileWatch:
    """jobkit.storage.filewatch: inotify through ctypes."""

    @pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
    def test_a_write_ends_the_wait_and_none_times_out(self, tmp_path: Path) -> None:
        """A write to the file ends a wait at once; without one the wait times out; a write
        during no wait is reported by the next wait."""
        path = tmp_path / "watched"
        path.write_bytes(b"")
        watched = filewatch.watch(path)
        assert watched is not None
        try:
            assert watched.wait(0.05) is False
            threading.Timer(0.1, lambda: path.write_bytes(b"x")).start()
            started = time.monotonic()
            assert watched.wait(10) is True and time.monotonic() - started < 5
            with path.open("ab") as handle:
                handle.write(b"y")
            assert watched.wait(0) is True  # written while nobody waited
            time.sleep(0.05)
            watched.wait(0)  # events still arriving from those writes
            assert watched.wait(0.05) is False
        finally:
            watched.close()

    @pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
    def test_close_twice_and_wait_after_close(self, tmp_path: Path) -> None:
        """A closed watch closes its descriptor once and waits no more."""
        path = tmp_path / "watched"
        path.write_bytes(b"")
        watched = filewatch.watch(path)
        assert watched is not None
        watched.close()
        watched.close()
        assert watched.closed and watched.wait(10) is False

    @pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
    def test_a_store_behind_a_symlink_is_watched(self, tmp_path: Path) -> None:
        """SQLite names the WAL after the real path: the watch follows the link."""
        (tmp_path / "real").mkdir()
        (tmp_path / "link.db").symlink_to(tmp_path / "real" / "r.db")
        with SQLiteStorage(tmp_path / "link.db") as store:
            store.claim("w", 30)
            assert store._wal_watch() is not None

    def test_a_missing_file_cannot_be_watched(self, tmp_path: Path) -> None:
        """No file, no watch: the caller polls instead."""
        assert filewatch.watch(tmp_path / "absent") is None


class TestWindowedSearch:
    """A text search that runs out of time answers with what it found and a cursor that goes on
    from there; following the cursors finds every match, in order, once."""

    def test_pages_resume_where_the_scan_stopped(
        self, db_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from jobkit.storage import sql_search
        from jobkit.storage.search import Count, JobQuery

        monkeypatch.setattr(sql_search, "WINDOW", 7)
        monkeypatch.setattr(sql_search, "TEXT_BATCH", 3)
        monkeypatch.setattr(sql_search, "SCAN_BUDGET", 0.0)  # stop after every step
        clock = FakeClock()
        with SQLiteStorage(db_path, clock=clock) as store:
            records = store.enqueue_many(
                [new_job(clock(), params={"n": n, "hit": n % 3 == 0}) for n in range(40)]
            )
            hits = [r.id for r in records if r.params["hit"]]
            for sort, expected in (("newest", hits[::-1]), ("oldest", hits)):
                seen: list[str] = []
                after, partial = None, 0
                for _ in range(100):
                    page = store.search(JobQuery(text='"hit": true', sort=sort, limit=4,
                                                 after=after))
                    partial += not page.complete
                    seen.extend(r.id for r in page.jobs)
                    if page.next is None:
                        break
                    after = page.next
                assert seen == expected, sort
                assert partial > 0
            counted = store.count_matching(JobQuery(text='"hit": true'), budget=0.0)
            assert not counted.exact and counted.n <= len(hits)
            assert str(counted) == f"at least {counted.n}"
            assert store.count_matching(JobQuery(text='"hit": true')) == Count(len(hits))
            assert store.count_matching(JobQuery(name="Email"), budget=0.0).exact is False


class TestFileIdentity:
    """check_health: the store notices that its file was deleted or replaced under it."""

    def test_an_untouched_file_is_healthy(self, db_path: Path) -> None:
        """The file the store opened, still at its path, passes the check."""
        with SQLiteStorage(db_path) as store:
            store.enqueue(new_job(store.now()))
            store.check_health()

    def test_a_deleted_file_is_lost(self, db_path: Path) -> None:
        """Deleting the file (or its folder) under an open store is StoreLost, naming the file;
        the open connection would go on using the deleted file without a word."""
        with SQLiteStorage(db_path) as store:
            db_path.unlink()
            store.enqueue(new_job(store.now()))  # SQLite itself sees nothing wrong
            with pytest.raises(StoreLost, match=rf"{db_path}: the database file was deleted"):
                store.check_health()

    def test_a_replaced_file_is_lost(self, db_path: Path, tmp_path: Path) -> None:
        """Another file moved to the path (a restored backup, a new store) is StoreLost."""
        with SQLiteStorage(db_path) as store:
            with SQLiteStorage(tmp_path / "other.db"):
                pass
            os.replace(tmp_path / "other.db", db_path)
            with pytest.raises(StoreLost, match="the database file was replaced"):
                store.check_health()

    def test_a_store_reopened_on_the_new_file_is_healthy(self, db_path: Path) -> None:
        """A store opened after the replacement checks against the new file."""
        with SQLiteStorage(db_path):
            pass
        db_path.unlink()
        with SQLiteStorage(db_path) as store:
            store.check_health()

    def test_other_stores_have_nothing_to_check(self) -> None:
        """check_health is the optional capability "upkeep": a store without it (memory://
        here) has nothing to check."""
        from jobkit.storage import MemoryStorage
        from jobkit.storage.capabilities import check_health, supports

        store = MemoryStorage()
        assert not supports(store, "upkeep")
        check_health(store)


class TestHeldBackIdleLooks:
    """An idle worker whose due jobs are all held back by limits stays off the write lock."""

    @staticmethod
    def writes(store: SQLiteStorage, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        """The operations ``store`` runs in write transactions from now on."""
        seen: list[str] = []
        original = store._transaction

        def counted(operation: str, work: Any, **options: Any) -> Any:
            if options.get("write", True):
                seen.append(operation)
            return original(operation, work, **options)

        monkeypatch.setattr(store, "_transaction", counted)
        return seen

    def test_until_another_connection_commits(self, db_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
        """Concurrency: no write while nothing changed; a job ending elsewhere ends the wait."""
        from jobkit.flow import Flow, Limit

        flow = Flow(limits=[Limit("job", "Email", "concurrency", 1)])
        with SQLiteStorage(db_path) as store, SQLiteStorage(db_path) as other:
            for _ in range(3):
                store.enqueue(new_job(store.now()))
            [running] = store.claim_from(flow, "w1", 30.0, 5)
            assert store.claim_from(flow, "w1", 30.0, 5) == []  # held back: noted
            writes = self.writes(store, monkeypatch)
            for _ in range(5):
                assert store.claim_from(flow, "w1", 30.0, 5) == []
            assert writes == []
            lease = Lease(running.id, "w1", running.attempts)
            assert other.settle(lease, AttemptOutcome.SUCCEEDED, result=None) is not None
            assert len(store.claim_from(flow, "w1", 30.0, 5)) == 1
            assert len(writes) == 1

    def test_until_a_rate_window_frees_a_place(self, db_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
        """Rate: no write until the window's first start leaves it, then a claim."""
        from jobkit.flow import Flow, Limit

        clock = FakeClock()
        flow = Flow(limits=[Limit("job", "Email", "rate", 1, per=10.0)])
        with SQLiteStorage(db_path, clock=clock) as store:
            for _ in range(3):
                store.enqueue(new_job(clock()))
            assert len(store.claim_from(flow, "w1", 30.0, 5)) == 1
            assert store.claim_from(flow, "w1", 30.0, 5) == []
            writes = self.writes(store, monkeypatch)
            clock.advance(9.9)
            assert store.claim_from(flow, "w1", 30.0, 5) == []
            assert writes == []
            clock.advance(0.2)
            assert len(store.claim_from(flow, "w1", 30.0, 5)) == 1
            assert len(writes) == 1
