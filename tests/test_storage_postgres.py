"""The PostgreSQL store passes the storage conformance suite, and behaves as a shared server
store: database clock, schema versions, LISTEN/NOTIFY, clean errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from completed_records import CompletedRecords
from pg_server import PostgresServer

from jobkit.exceptions import ConfigError, StorageError
from jobkit.records import JobRecord, JobStatus, NewStep
from jobkit.storage import postgres_db
from jobkit.storage.postgres import PostgresStorage, redact, split_url
from jobkit.storage.sqlfile import migrations
from jobkit.testing import FakeClock, SpoiledRowConformance, StorageConformance
from jobkit.testing.conformance import new_job

#: migration_8's CHECK of ``created_at``, as the spoiling fixture puts it back.
READABLE_CREATED_AT = (b"created_at >= '0001-01-02 00:00:00+00'::timestamptz"
                       b" AND created_at < '9999-12-31 00:00:00+00'::timestamptz")


#: The schema version this jobkit migrates to.
LATEST = migrations(postgres_db.queries(), "postgres.sql")[-1][0]


def _up_to(version: int) -> dict[str, str]:
    """``postgres.sql``'s sections without the migrations after ``version``."""
    return {name: sql for name, sql in postgres_db.queries().items()
            if not name.startswith("migration_") or int(name[len("migration_"):]) <= version}


def _old_database(server: PostgresServer, version: int,
                  monkeypatch: pytest.MonkeyPatch) -> tuple[str, JobRecord]:
    """A new database migrated to ``version`` only, with one job enqueued: its URL and job."""
    url = server.create_database(f"jobkit_upgrade_{version}")
    sections = _up_to(version)
    with monkeypatch.context() as patch:
        patch.setattr(postgres_db, "queries", lambda: sections)
        with PostgresStorage(url) as old:
            assert old.migrate() == version
            return url, old.enqueue(new_job(old.now()))


def _time_checks(url: str) -> dict[str, str]:
    """The definitions of the CHECKs of ``jobkit_jobs`` on times, by name."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(b"SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                            b" WHERE conrelid = 'jobkit_jobs'::regclass"
                            b" AND conname LIKE '%_readable'").fetchall()
    return {str(name): str(definition) for name, definition in rows}


@pytest.fixture
def empty_url(empty_postgres_url: str) -> str:
    """The test database with jobkit's tables emptied."""
    return empty_postgres_url


class TestPostgresStorage(StorageConformance, SpoiledRowConformance):
    """PostgresStorage follows every rule of the Storage core (shared by processes) and of every
    optional capability, subclassing the suite's class as a third party's backend would."""

    @pytest.fixture
    def storage(self, empty_url: str, clock: FakeClock) -> Iterator[PostgresStorage]:
        """An emptied database on the fake clock."""
        store = PostgresStorage(empty_url, clock=clock)
        yield store
        store.close()

    @pytest.fixture
    def storage_url(self, storage: PostgresStorage) -> str:
        """The same database, for child processes."""
        return storage.url

    @pytest.fixture
    def spoil_row(self, storage: PostgresStorage) -> Iterator[Callable[[str], str]]:
        """'infinity' in a job's created_at, its CHECK dropped (PostgreSQL checks every CHECK
        on each update of a row, so a row that breaks one cannot even be claimed); the CHECK
        is back, and the rows readable, after the test."""
        import psycopg

        def spoil(job_id: str) -> str:
            with psycopg.connect(storage.url, autocommit=True) as conn:
                conn.execute(b"ALTER TABLE jobkit_jobs "
                             b"DROP CONSTRAINT IF EXISTS jobkit_jobs_created_at_readable")
                conn.execute(b"UPDATE jobkit_jobs SET created_at = 'infinity' WHERE id = %s",
                             (int(job_id),))
            return "created_at"

        yield spoil
        with psycopg.connect(storage.url, autocommit=True) as conn:
            conn.execute(b"UPDATE jobkit_jobs SET created_at = now() "
                         b"WHERE NOT jobkit_readable(created_at)")
            conn.execute(b"ALTER TABLE jobkit_jobs "
                         b"DROP CONSTRAINT IF EXISTS jobkit_jobs_created_at_readable")
            conn.execute(b"ALTER TABLE jobkit_jobs ADD CONSTRAINT jobkit_jobs_created_at_readable"
                         b" CHECK (" + READABLE_CREATED_AT + b")")


class TestCompletedRecords(CompletedRecords):
    """PostgreSQL's completions built from their claims (see :mod:`completed_records`)."""

    decoder, storage_class, location = postgres_db, PostgresStorage, "empty_url"


def terminate_other_backends(url: str) -> int:
    """pg_terminate_backend every other connection to the database, and wait until those
    backends have exited (the function only signals them); how many.

    Until a backend has exited, its client's socket shows nothing and a query sent on it fails
    with "terminating connection due to administrator command": the pool can only replace a
    connection the server has closed.
    """
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        pids = [pid for (pid,) in conn.execute(
            b"SELECT pid FROM pg_stat_activity "
            b"WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()]
        conn.execute(b"SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [pids])
        deadline = time.monotonic() + 30
        while conn.execute(b"SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)",
                           [pids]).fetchone() != (0,):
            assert time.monotonic() < deadline, f"backends {pids} did not exit in 30 s"
            time.sleep(0.01)
    return len(pids)


class TestDatabaseClock:
    """Without a clock, times come from the database, so worker clocks may drift."""

    def test_now_is_the_database_clock(self, empty_url: str) -> None:
        """now() is the server's now(), in UTC."""
        import psycopg

        with PostgresStorage(empty_url) as store, psycopg.connect(empty_url) as conn:
            before = conn.execute(b"SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
            now = store.now()
            after = conn.execute(b"SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
        assert before <= now <= after
        assert now.utcoffset() == timedelta(0)

    def test_leases_are_measured_on_the_database_clock(self, empty_url: str) -> None:
        """A claim's lease ends lease_seconds after the database's now()."""
        with PostgresStorage(empty_url) as store:
            store.enqueue(new_job(store.now()))
            before = store.now()
            record = store.claim("w1", 30.0)
            after = store.now()
        assert record is not None and record.lease_expires_at is not None
        assert before + timedelta(seconds=30) <= record.lease_expires_at
        assert record.lease_expires_at <= after + timedelta(seconds=30)

    def test_a_job_due_by_the_database_clock_is_claimed(self, empty_url: str) -> None:
        """A job made due 'now' by the database's clock is claimable at once."""
        with PostgresStorage(empty_url) as store:
            job = store.enqueue(new_job(store.now()))
            claimed = store.claim("w1", 30.0)
        assert claimed is not None and claimed.id == job.id


class TestEnqueue:
    """An enqueue reads back only the new row's id and times, as UTC, whatever the session's
    time zone."""

    def test_the_record_equals_a_read_in_another_time_zone(
        self, empty_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With the session's TimeZone far from UTC, the enqueued record equals a later read and
        its times are in UTC."""
        monkeypatch.setenv("PGTZ", "Asia/Kathmandu")  # libpq sets the session's TimeZone
        with PostgresStorage(empty_url) as store:
            assert store.now().utcoffset() == timedelta(0)
            now = store.now()
            for job in (new_job(now), new_job(now, delay=3 * 3600)):
                record = store.enqueue(job)
                assert record == store.get(record.id)
                assert record.created_at.utcoffset() == record.available_at.utcoffset()
                assert record.created_at.utcoffset() == timedelta(0)
                assert job.available_at is None or record.available_at == job.available_at
            records = store.enqueue_many([new_job(now), new_job(now)])
            assert records == [store.get(record.id) for record in records]


class TestSchema:
    """The schema is versioned and migrated on first use, once, under a lock."""

    def test_version_is_recorded_once(self, empty_url: str) -> None:
        """Opening twice leaves one version row; migrate() returns the version."""
        import psycopg

        with PostgresStorage(empty_url) as first, PostgresStorage(empty_url) as second:
            assert first.migrate() == second.migrate() == LATEST
        with psycopg.connect(empty_url) as conn:
            rows = conn.execute(b"SELECT version FROM jobkit_schema_version").fetchall()
        assert rows == [(LATEST,)]

    def test_a_version_1_database_is_upgraded(
        self, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A database of jobkit's first schema gains crash accounting and the workers table;
        its jobs keep their data."""
        import psycopg

        url = postgres_server.create_database("jobkit_upgrade")
        clock = FakeClock()
        first = _up_to(1)
        with monkeypatch.context() as patch:
            patch.setattr(postgres_db, "queries", lambda: first)
            PostgresStorage(url, clock=clock).close()
        with psycopg.connect(url) as conn:
            row = conn.execute(
                b"INSERT INTO jobkit_jobs (name, method, params, status, max_attempts, policy,"
                b" created_at, available_at)"
                b" VALUES ('Email', 'send', '{\"to\": \"ana@example.com\"}',"
                b" 'pending', 1, '{}', now(), now()) RETURNING id"
            ).fetchone()
            assert row is not None
            job_id = str(row[0])
        with PostgresStorage(url, clock=clock) as store:
            record = store.get(job_id)
            assert (record.crashes, record.max_crashes, record.params) == (
                0, 3, {"to": "ana@example.com"}
            )
            assert store.list_workers() == []
        with psycopg.connect(url) as conn:
            rows = conn.execute(b"SELECT version FROM jobkit_schema_version").fetchall()
        assert rows == [(LATEST,)]

    def test_a_version_8_database_gets_checks_without_a_function(
        self, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Version 9 writes the time CHECKs out instead of calling ``jobkit_readable``.

        The server inlined the function again for every write; same names, same refusals, the
        jobs kept."""
        import psycopg

        url, job = _old_database(postgres_server, 8, monkeypatch)
        assert all("jobkit_readable" in check for check in _time_checks(url).values())
        with PostgresStorage(url) as store:
            assert store.migrate() == LATEST
            assert store.get(job.id) == job
        checks = _time_checks(url)
        assert sorted(checks) == sorted(
            f"jobkit_jobs_{column}_readable" for column in
            ("created_at", "available_at", "started_at", "finished_at", "lease_expires_at"))
        assert not any("jobkit_readable" in check for check in checks.values()), checks
        with psycopg.connect(url) as conn:
            for value in ("infinity", "-infinity", "10000-01-01", "0001-01-01 00:00:00+00"):
                with pytest.raises(psycopg.errors.CheckViolation, match="created_at_readable"):
                    conn.execute(b"UPDATE jobkit_jobs SET created_at = %s::timestamptz",
                                 (value,))
                conn.rollback()
            conn.execute(b"UPDATE jobkit_jobs SET created_at = '0001-01-02 00:00:00+00'")

    def test_a_version_11_database_gets_the_blocked_status(
        self, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Version 12 widens the status CHECK with ``blocked`` and adds the workflow tables.

        The jobs are kept, a workflow runs, and a status nobody knows is still refused."""
        import psycopg

        url, job = _old_database(postgres_server, 11, monkeypatch)
        with PostgresStorage(url) as store:
            assert store.migrate() == LATEST
            assert store.get(job.id) == job
            _, (first, then) = store.enqueue_steps(
                [NewStep(new_job(store.now())), NewStep(new_job(store.now()), parents=(0,))])
            assert (first.status, then.status) == (JobStatus.PENDING, JobStatus.BLOCKED)
        with psycopg.connect(url) as conn:
            with pytest.raises(psycopg.errors.CheckViolation, match="jobkit_jobs_status_check"):
                conn.execute(b"UPDATE jobkit_jobs SET status = 'waiting'")
            conn.rollback()
            validated = conn.execute(b"SELECT convalidated FROM pg_constraint"
                                     b" WHERE conname = 'jobkit_jobs_status_check'").fetchall()
        assert validated == [(True,)]

    def test_a_newer_schema_is_refused(self, postgres_server: object, empty_url: str) -> None:
        """A database migrated by a newer jobkit is refused, naming both versions."""
        import psycopg

        with PostgresStorage(empty_url):
            pass
        with psycopg.connect(empty_url) as conn:
            conn.execute(b"UPDATE jobkit_schema_version SET version = 99")
        try:
            with pytest.raises(StorageError, match="version 99, newer"):
                PostgresStorage(empty_url)
        finally:
            with psycopg.connect(empty_url) as conn:
                conn.execute(b"UPDATE jobkit_schema_version SET version = %s", (LATEST,))


class TestListenNotify:
    """Idle workers wait on LISTEN and wake when a job is enqueued."""

    def test_an_enqueue_wakes_a_waiting_store(self, empty_url: str) -> None:
        """wait_for_jobs returns soon after another connection enqueues a due job, long before
        its timeout."""
        with PostgresStorage(empty_url) as waiting, PostgresStorage(empty_url) as other:
            waiting.wait_for_jobs(0.01)  # LISTEN is in place before the job is enqueued
            timer = threading.Timer(0.3, lambda: other.enqueue(new_job(other.now())))
            timer.start()
            started = time.monotonic()
            waiting.wait_for_jobs(30.0)
            waited = time.monotonic() - started
            timer.join()
        assert waited < 10, f"woke only after {waited:.1f} s"

    def test_a_notification_while_busy_is_not_lost(self, empty_url: str) -> None:
        """A job enqueued while the worker was busy (not waiting) wakes the next wait at once."""
        with PostgresStorage(empty_url) as waiting, PostgresStorage(empty_url) as other:
            waiting.wait_for_jobs(0.01)
            other.enqueue(new_job(other.now()))
            started = time.monotonic()
            waiting.wait_for_jobs(30.0)
        assert time.monotonic() - started < 10

    def test_a_delayed_job_does_not_wake_anyone(self, empty_url: str) -> None:
        """A job that is not due yet sends no notification."""
        with PostgresStorage(empty_url) as waiting, PostgresStorage(empty_url) as other:
            waiting.wait_for_jobs(0.01)
            other.enqueue(new_job(other.now(), delay=3600))
            started = time.monotonic()
            waiting.wait_for_jobs(0.5)
        assert time.monotonic() - started >= 0.45

    def test_stop_ends_the_wait(self, empty_url: str) -> None:
        """A set stop event ends the wait within a fraction of a second."""
        stop = threading.Event()
        with PostgresStorage(empty_url) as waiting:
            threading.Timer(0.2, stop.set).start()
            started = time.monotonic()
            waiting.wait_for_jobs(30.0, stop)
        assert time.monotonic() - started < 10

    def test_listen_is_restored_after_the_connection_is_killed(self, empty_url: str) -> None:
        """After pg_terminate_backend the wait reports one StorageError, then LISTENs again and
        is woken by the next job."""
        with PostgresStorage(empty_url) as waiting, PostgresStorage(empty_url) as other:
            waiting.wait_for_jobs(0.01)
            assert terminate_other_backends(empty_url) >= 1
            with pytest.raises(StorageError, match="listen"):
                waiting.wait_for_jobs(1.0)
            waiting.wait_for_jobs(0.01)  # listens again
            other.enqueue(new_job(other.now()))
            started = time.monotonic()
            waiting.wait_for_jobs(30.0)
        assert time.monotonic() - started < 10


class TestConnections:
    """Broken connections are replaced; an unreachable server is a clean error."""

    def test_queries_work_again_after_connections_are_killed(self, empty_url: str) -> None:
        """After pg_terminate_backend, the next call gets a fresh connection from the pool, and
        the loss is logged once as a warning naming the server (password hidden)."""
        from loguru import logger

        lines: list[str] = []
        sink = logger.add(lines.append, level="WARNING", format="{level} {message}")
        logger.enable("jobkit")
        try:
            with PostgresStorage(empty_url) as store:
                job = store.enqueue(new_job(store.now()))
                terminate_other_backends(empty_url)
                assert store.get(job.id).status == JobStatus.PENDING
                store.get(job.id)
        finally:
            logger.remove(sink)
        lost = [line for line in lines if "connection lost" in line]
        assert len(lost) == 1, lines
        assert lost[0].startswith("WARNING postgresql storage postgresql://"), lost

    def test_a_connection_is_checked_with_a_round_trip_only_after_idling(
        self, empty_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A connection used moments ago is handed out without a round trip (a killed one is
        caught by its readable socket, see above); one idle past CHECK_AFTER_IDLE gets one."""
        from psycopg_pool import ConnectionPool

        from jobkit.storage import postgres_pool

        checks: list[object] = []
        original = ConnectionPool.check_connection
        monkeypatch.setattr(ConnectionPool, "check_connection",
                            staticmethod(lambda conn: (checks.append(conn), original(conn))))
        monkeypatch.setattr(postgres_pool, "CHECK_AFTER_IDLE", 0.2)
        with PostgresStorage(empty_url) as store:
            store.enqueue(new_job(store.now()))
            checks.clear()
            for _ in range(5):
                store.enqueue(new_job(store.now()))
            assert checks == []
            time.sleep(0.3)
            store.enqueue(new_job(store.now()))
            assert len(checks) == 1

    def test_an_unreachable_server_is_a_clean_error(self) -> None:
        """Nothing listening: StorageError naming the server (password hidden), soon."""
        from pg_server import free_port

        url = f"postgresql://ana:s3cret@127.0.0.1:{free_port()}/x?connect_timeout=1"
        started = time.monotonic()
        with pytest.raises(StorageError) as info:
            PostgresStorage(url)
        assert time.monotonic() - started < 15
        assert "127.0.0.1" in str(info.value) and "s3cret" not in str(info.value)

    def test_a_closed_store_does_not_listen(self, empty_url: str) -> None:
        """wait_for_jobs on a closed store raises StorageError saying so."""
        store = PostgresStorage(empty_url)
        store.close()
        with pytest.raises(StorageError, match="closed"):
            store.wait_for_jobs(0.1)


class TestUrls:
    """URL handling: jobkit's own options, libpq's, and secrets."""

    def test_own_options_are_taken_out(self) -> None:
        """pool_size and connect_timeout are jobkit's; sslmode goes to libpq."""
        conninfo, own = split_url("postgresql://u@h/db?pool_size=8&sslmode=disable")
        assert own == {"pool_size": "8"}
        assert conninfo == "postgresql://u@h/db?sslmode=disable"

    def test_libpq_options_pass_as_written(self) -> None:
        """libpq's options keep their encoding: %20 stays a space to libpq, + stays a +."""
        url = ("postgresql://u@h/db?options=-c%20TimeZone%3DAsia%2FKathmandu&pool_size=2"
               "&application_name=a+b&connect_timeout=3")
        conninfo, own = split_url(url)
        assert own == {"pool_size": "2", "connect_timeout": "3"}
        assert conninfo == ("postgresql://u@h/db?options=-c%20TimeZone%3DAsia%2FKathmandu"
                            "&application_name=a+b")

    def test_a_session_option_reaches_the_server(self, empty_url: str) -> None:
        """``options=-c TimeZone=...`` in the URL connects, and times still read in UTC."""
        from jobkit.testing.conformance import new_job

        url = f"{empty_url}?options=-c%20TimeZone%3DAsia%2FKathmandu"
        with PostgresStorage(url) as store:
            job = store.enqueue(new_job(store.now()))
            assert store.get(job.id) == job
            assert job.created_at.utcoffset() is not None
            assert job.created_at.utcoffset().total_seconds() == 0

    def test_redact_hides_the_password(self) -> None:
        """The password never appears in messages."""
        assert redact("postgresql://ana:s3cret@h/db") == "postgresql://ana:***@h/db"
        assert redact("postgresql://ana@h/db") == "postgresql://ana@h/db"

    @pytest.mark.parametrize("query", ["pool_size=0", "pool_size=x", "connect_timeout=-1"])
    def test_bad_options_are_config_errors(self, query: str) -> None:
        """A bad jobkit option is a ConfigError naming the URL, before any connection."""
        with pytest.raises(ConfigError, match="storage"):
            PostgresStorage(f"postgresql://ana:pw@127.0.0.1:1/db?{query}")

    def test_not_a_postgres_url(self) -> None:
        """Another scheme is refused."""
        with pytest.raises(ConfigError, match="not a PostgreSQL URL"):
            PostgresStorage("mysql://h/db")
