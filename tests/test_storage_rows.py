"""A malformed row in a SQLite or PostgreSQL store (issue 15): the schema refuses it where it
can; a row that gets in anyway (a constraint dropped, a store written before the constraints)
is set aside as ``failed``, its error naming the column and the value, while every other job
goes on; the reading commands and pages show it instead of failing."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import config_data
from sample_jobs import read_ledger

from jobkit import JobKit, JobStatus
from jobkit.cli import main
from jobkit.records import Lease
from jobkit.storage.base import Storage

BACKENDS = ("sqlite", "postgresql")

#: (column, forged value, what the job's error must say) per backend: values the schema of
#: jobkit <= 0.x (schema version 5) accepted and Python cannot read.
FORGERIES: dict[str, list[tuple[str, Any, str]]] = {
    "sqlite": [
        ("priority", "high", "priority: 'high' (text) is not an integer"),
        ("created_at", "2026-11-23 18:44:09", "created_at: '2026-11-23 18:44:09' (text) is not"),
        ("created_at", 1_763_923_449_939, "created_at: 1763923449939"),
    ],
    "postgresql": [
        ("created_at", "infinity", "created_at: infinity is not"),
        ("available_at", "-infinity", "available_at: -infinity is not"),
        ("created_at", "20000-01-01 00:00:00+00", "created_at: 20000-01-01"),
    ],
}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test."""
    return str(request.param)


@pytest.fixture
def store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new store: a SQLite file in tmp_path, or a database of its own (its constraints are
    dropped by some tests)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'jobkit.db'}"
    server = request.getfixturevalue("postgres_server")
    return str(server.create_database("jobkit_rows"))


@pytest.fixture
def config(store_url: str, tmp_path: Path) -> Path:
    """jobs.yaml on the store, with the sample jobs and no sign-in to the dashboard."""
    path = tmp_path / "jobs.yaml"
    data = config_data(tmp_path, storage=store_url, dashboard={"auth": False})
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def app(config: Path) -> Iterator[JobKit]:
    """An app on the store (its schema made)."""
    with JobKit.from_config(config, load_entrypoints=False) as application:
        yield application


def raw(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Run one statement behind jobkit's back (``?`` placeholders); the rows it returns."""
    if url.startswith("sqlite:///"):
        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        with contextlib.closing(db), db:
            return db.execute(sql, args).fetchall()
    import psycopg

    with psycopg.connect(url, autocommit=True) as pg:
        cursor = pg.execute(sql.replace("?", "%s").encode(), args)
        return cursor.fetchall() if cursor.description else []


def force(url: str, job_id: str, column: str, value: Any) -> None:
    """Store ``value`` in ``column`` of a job past the schema's checks, as a store written
    before them, or one whose checks were dropped, holds it."""
    if url.startswith("sqlite:///"):
        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        with contextlib.closing(db), db:
            db.execute("PRAGMA ignore_check_constraints = ON")
            db.execute(f"UPDATE jobkit_jobs SET {column} = ? WHERE id = ?", (value, int(job_id)))
        return
    checks = ("SELECT conname FROM pg_constraint WHERE contype = 'c' AND conrelid = "
              "'jobkit_jobs'::regclass AND starts_with(conname, 'jobkit_jobs_') "
              "AND conname <> 'jobkit_jobs_status_check'")
    for (name,) in raw(url, checks):
        raw(url, f"ALTER TABLE jobkit_jobs DROP CONSTRAINT {name}")
    raw(url, f"UPDATE jobkit_jobs SET {column} = ?::timestamptz WHERE id = ?", value, int(job_id))


def forgeries(backend: str) -> list[tuple[str, Any, str]]:
    """The forgeries of ``backend``."""
    return FORGERIES[backend]


def record_job(app: JobKit, ledger: str, tag: str) -> str:
    """Enqueue a Recorder job; its id."""
    return app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": tag})


class TestTheQueueGoesOn:
    """A row Python cannot read is set aside as failed; every other job runs."""

    def test_a_burst_worker_sets_the_row_aside_and_runs_the_rest(
        self, app: JobKit, backend: str, store_url: str, config: Path, ledger: str,
        start_worker: Callable[..., Any],
    ) -> None:
        """A real `jobkit worker --burst` fails each malformed row once, its error naming the
        column and the value, runs the good jobs before and after them, and exits 0."""
        first = record_job(app, ledger, "first")
        bad: dict[str, str] = {}
        for column, value, error in forgeries(backend):
            job_id = record_job(app, ledger, f"bad {column}")
            force(store_url, job_id, column, value)
            bad[job_id] = error
        last = record_job(app, ledger, "last")
        worker = start_worker(config, "-n", "1", "--burst")
        code, output = worker.wait(timeout=30)
        assert code == 0, output
        assert "worker error" not in output, output
        assert [app.get_job(job_id).status for job_id in (first, last)] == [
            JobStatus.COMPLETED] * 2
        assert sorted(entry["tag"] for entry in read_ledger(ledger)) == ["first", "last"]
        for job_id, error in bad.items():
            record = app.get_job(job_id)
            assert record.status is JobStatus.FAILED, record
            assert "could not read the stored job" in (record.error or ""), record.error
            assert error in (record.error or ""), (error, record.error)
            assert app.get_attempts(job_id)[-1].outcome is not None

    def test_a_completion_is_kept_when_the_claim_meets_a_bad_row(
        self, app: JobKit, backend: str, store_url: str, ledger: str
    ) -> None:
        """The completion committed with the next claim stays when that claim meets a bad row:
        the good job is completed, the bad row failed, and the claim takes the job behind it."""
        column, value, error = forgeries(backend)[0]
        storage: Storage = app.storage
        done_id = record_job(app, ledger, "done")
        running = storage.claim("w1", 30.0)
        assert running is not None and running.id == done_id
        bad = record_job(app, ledger, "bad")
        force(store_url, bad, column, value)
        behind = record_job(app, ledger, "behind")
        done, claimed = storage.complete_and_claim_many(
            [(Lease(done_id, "w1", 1), "ok")], "w1", 30.0, 2
        )
        assert [record.status if record else None for record in done] == [JobStatus.COMPLETED]
        assert [record.id for record in claimed] == [behind]
        assert storage.get(done_id).status is JobStatus.COMPLETED
        assert storage.get(done_id).result == "ok"
        assert storage.get(bad).status is JobStatus.FAILED
        assert error in (storage.get(bad).error or "")

    def test_a_single_claim_skips_the_bad_row(
        self, app: JobKit, backend: str, store_url: str, ledger: str
    ) -> None:
        """claim() and complete_and_claim() set the bad row aside and return the next job."""
        column, value, _ = forgeries(backend)[-1]
        storage: Storage = app.storage
        for _ in range(2):
            force(store_url, record_job(app, ledger, "bad"), column, value)
        good = record_job(app, ledger, "good")
        claimed = storage.claim("w1", 30.0)
        assert claimed is not None and claimed.id == good
        assert storage.claim("w1", 30.0) is None
        assert storage.count(status=JobStatus.FAILED) == 2


    # SQLite only: PostgreSQL's integer column holds integers only, so no such row exists there
    @pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
    @pytest.mark.parametrize(("attempts", "claimed_as"), [(1.5, 2), ("x", 1)])
    def test_a_claim_never_breaks_a_check_on_what_a_row_holds(
        self, app: JobKit, store_url: str, ledger: str, attempts: Any, claimed_as: int
    ) -> None:
        """SQLite: the claim writes attempts as an integer even when the row held something
        else (1.5 + 1 would break the CHECK and fail the claim for everyone)."""
        job_id = record_job(app, ledger, "odd")
        force(store_url, job_id, "attempts", attempts)
        claimed = app.storage.claim("w1", 30.0)
        assert claimed is not None and claimed.id == job_id
        assert claimed.attempts == claimed_as


class TestReadsShowTheRow:
    """get, list, cancel, the CLI and the dashboard show a malformed row, its bad fields
    marked, instead of failing."""

    def test_the_api_reads_and_cancels_it(
        self, app: JobKit, backend: str, store_url: str, ledger: str
    ) -> None:
        """get_job, list_jobs and cancel_job work; the record names its unreadable fields."""
        for column, value, error in forgeries(backend):
            job_id = record_job(app, ledger, column)
            force(store_url, job_id, column, value)
            record = app.get_job(job_id)
            assert column in record.unreadable, record
            assert error.split(" is not")[0].split(": ", 1)[1] in record.unreadable[column]
            assert job_id in [listed.id for listed in app.list_jobs(limit=100)]
            assert app.cancel_job(job_id)
            assert app.get_job(job_id).status is JobStatus.CANCELLED

    def test_the_cli_lists_shows_and_cancels_it(
        self, app: JobKit, backend: str, store_url: str, config: Path, ledger: str
    ) -> None:
        """`jobkit list`, `jobkit status` and `jobkit cancel` answer, marking the bad fields."""
        column, value, _ = forgeries(backend)[0]
        job_id = record_job(app, ledger, "bad")
        force(store_url, job_id, column, value)
        runner = CliRunner()
        for args in (["list"], ["list", "--json"], ["status", job_id],
                     ["status", job_id, "--json"], ["cancel", job_id]):
            result = runner.invoke(main, ["--config", str(config), *args])
            assert result.exit_code == 0, (args, result.output)
            assert column in result.output or args[0] == "cancel", (args, result.output)
        listed = json.loads(runner.invoke(main, ["--config", str(config), "list", "--json"])
                            .output.splitlines()[0])
        assert column in listed["unreadable"]

    def test_the_terminal_table_marks_it(
        self, app: JobKit, backend: str, store_url: str, ledger: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """`jobkit list` on a terminal (a rich table) shows the mark, not eaten as markup."""
        from jobkit.cli import _print_table

        column, value, _ = forgeries(backend)[0]
        job_id = record_job(app, ledger, "bad")
        force(store_url, job_id, column, value)
        monkeypatch.setenv("COLUMNS", "200")
        _print_table(app.list_jobs())
        assert f"[unreadable: {column}]" in capsys.readouterr().out

    def test_the_dashboard_shows_it(
        self, app: JobKit, backend: str, store_url: str, ledger: str
    ) -> None:
        """The jobs list, the job page and the JSON API answer 200 and mark the bad fields."""
        pytest.importorskip("starlette")
        from starlette.testclient import TestClient

        from jobkit.dashboard.web import create_app

        column, value, _ = forgeries(backend)[0]
        job_id = record_job(app, ledger, "bad")
        force(store_url, job_id, column, value)
        with TestClient(create_app(app), base_url="http://127.0.0.1") as client:
            for path in ("/", "/jobs", f"/jobs/{job_id}", "/api/jobs", f"/api/jobs/{job_id}",
                         "/api/overview", "/jobs?sort=next"):
                response = client.get(path)
                assert response.status_code == 200, (path, response.text[-2000:])
            page = client.get(f"/jobs/{job_id}").text
            assert "unreadable" in page and column in page
            assert column in client.get(f"/api/jobs/{job_id}").json()["job"]["unreadable"]


def refused(url: str) -> type[Exception]:
    """The error the driver raises when a CHECK refuses a write."""
    if url.startswith("sqlite:///"):
        return sqlite3.IntegrityError
    import psycopg

    return psycopg.errors.CheckViolation


class TestTheSchemaRefuses:
    """The schema refuses what jobkit cannot read back, naming the column."""

    def test_each_forgery_is_refused(
        self, app: JobKit, backend: str, store_url: str, ledger: str
    ) -> None:
        """Writing a malformed value behind jobkit's back fails on a CHECK naming its column;
        the row keeps its value."""
        job_id = record_job(app, ledger, "target")
        before = app.get_job(job_id)
        cast = "" if backend == "sqlite" else "::timestamptz"
        for column, value, _ in forgeries(backend):
            with pytest.raises(refused(store_url), match=column):
                raw(store_url, f"UPDATE jobkit_jobs SET {column} = ?{cast} WHERE id = ?",
                    value, int(job_id))
        assert app.get_job(job_id) == before

    @pytest.mark.parametrize("progress", [1.5, -0.1, "half"])
    def test_progress_is_a_fraction(
        self, app: JobKit, store_url: str, ledger: str, progress: Any
    ) -> None:
        """A progress outside 0..1, or text, is refused (on PostgreSQL text by the column's
        own type, before any CHECK)."""
        job_id = record_job(app, ledger, "target")
        before = app.get_job(job_id)
        error: type[Exception] = refused(store_url)
        if not isinstance(progress, float) and not store_url.startswith("sqlite:///"):
            import psycopg

            error = psycopg.errors.InvalidTextRepresentation
        with pytest.raises(error, match="progress" if error is refused(store_url) else "half"):
            raw(store_url, "UPDATE jobkit_jobs SET progress = ? WHERE id = ?", progress,
                int(job_id))
        assert app.get_job(job_id) == before


def open_store(backend: str, url: str, *, without: str | None = None,
               carry: tuple[str, ...] = ()) -> Storage:
    """The store at ``url`` opened (and migrated), short of the migration ``without``.

    The migrations after it are left out too (they are numbered without gaps), but those named
    in ``carry`` are folded into the one before ``without``, so that this version's writes (a
    later migration's columns, e.g. ``queue``) work on the old store; each of them runs again
    after ``without`` (SQLite's migration 7 rebuilds the jobs table; PostgreSQL's adds columns
    only if they are missing).
    """
    from jobkit.storage import postgres_db as postgres_module
    from jobkit.storage import sqlite_file as sqlite_module
    from jobkit.storage.postgres import PostgresStorage
    from jobkit.storage.sqlite import SQLiteStorage

    module: Any = sqlite_module if backend == "sqlite" else postgres_module
    sections = dict(module.queries())
    if without is not None:
        skipped = int(without.removeprefix("migration_"))
        later = [n for n in range(skipped, 100) if f"migration_{n}" in sections]
        dropped = {f"migration_{n}": sections.pop(f"migration_{n}") for n in later}
        folded = [dropped[name] for name in carry]
        sections[f"migration_{skipped - 1}"] += "\n" + "\n".join(folded)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "queries", lambda: sections)
        if backend == "sqlite":
            return SQLiteStorage(url.removeprefix("sqlite:///"))
        return PostgresStorage(url)


def latest_schema(backend: str) -> int:
    """The schema version this jobkit migrates ``backend``'s store to (its last migration)."""
    from jobkit.storage import postgres_db, sqlite_file

    module: Any = sqlite_file if backend == "sqlite" else postgres_db
    return max(int(name.removeprefix("migration_")) for name in module.queries()
               if name.startswith("migration_"))


class TestAnOldStoreIsUpgraded:
    """A store made before the CHECKs (schema 5) is upgraded in place: its malformed rows
    are set aside, every other row is kept as it was, and the CHECKs hold from then on."""

    def test_the_upgrade_sets_bad_rows_aside_and_keeps_the_rest(
        self, backend: str, store_url: str
    ) -> None:
        """Good rows, attempts and ids are kept; each bad row is failed naming its column and
        what it held, its value replaced; a new job gets a new id; the CHECKs refuse."""
        from jobkit.testing.conformance import new_job

        old = open_store(backend, store_url, without="migration_7", carry=("migration_8",))
        good = old.enqueue(new_job(old.now(), priority=7))
        running = old.enqueue(new_job(old.now()))
        waiting = old.enqueue(new_job(old.now()))
        old.claim("w1", 30.0)  # good is running
        old.claim("w1", 30.0)  # so is running
        gone = old.enqueue(new_job(old.now()))
        raw(store_url, "DELETE FROM jobkit_jobs WHERE id = ?", int(gone.id))
        good_now = old.get(good.id)
        old.close()
        (running_column, running_value, running_error), *rest = forgeries(backend)
        waiting_column, waiting_value, waiting_error = rest[-1]
        force(store_url, running.id, running_column, running_value)
        force(store_url, waiting.id, waiting_column, waiting_value)
        with open_store(backend, store_url) as store:
            assert store.get(good.id) == good_now
            for job_id, error in ((running.id, running_error), (waiting.id, waiting_error)):
                record = store.get(job_id)
                assert record.status is JobStatus.FAILED and not record.unreadable, record
                assert "when the schema was upgraded" in (record.error or ""), record.error
                assert error.split(" is not")[0] in (record.error or ""), record.error
            attempts = store.attempts(running.id)
            assert [a.outcome.value if a.outcome else None for a in attempts] == ["failed"]
            assert int(store.enqueue(new_job(store.now())).id) > int(gone.id)
            assert store.migrate() == latest_schema(backend)
        cast = "" if backend == "sqlite" else "::timestamptz"
        with pytest.raises(refused(store_url), match=waiting_column):
            raw(store_url, f"UPDATE jobkit_jobs SET {waiting_column} = ?{cast} WHERE id = ?",
                waiting_value, int(good.id))
