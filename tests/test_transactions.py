"""Enqueue in the caller's transaction (``connection=``), SQLite and PostgreSQL, real servers.

Each kind of connection (``sqlite3`` or psycopg, a SQLAlchemy session, a SQLAlchemy
connection) on each backend: a rollback leaves no job, a commit makes it visible, and an idle
``jobkit worker`` that polls only once a minute picks it up at once after the commit (SQLite's
WAL watch, PostgreSQL's ``NOTIFY``, which the same statement sends and the server delivers at
the commit only).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_config, wait_for, write_config
from workers import subprocess_env

from jobkit import JobKit
from jobkit.exceptions import ConfigError, JobNotFoundInStorage
from jobkit.records import JobStatus

#: A connection given to jobkit, and how to commit and roll back its transaction.
Given = tuple[Any, Callable[[], None], Callable[[], None]]
KINDS = ["dbapi", "sqlalchemy_session", "sqlalchemy_connection"]


class Backend:
    """One backend under test: its storage URL and how to open a connection to it."""

    def __init__(self, name: str, url: str, tmp_path: Path) -> None:
        self.name = name
        self.url = url
        self.tmp_path = tmp_path

    def dbapi(self) -> Any:
        """A plain DBAPI connection to the store's database, in a transaction of its own."""
        if self.name == "sqlite":
            return sqlite3.connect(self.url.removeprefix("sqlite:///"))
        import psycopg

        return psycopg.connect(self.url)

    def sqlalchemy_url(self) -> str:
        if self.name == "sqlite":
            return self.url
        return self.url.replace("postgresql://", "postgresql+psycopg://", 1)

    @contextlib.contextmanager
    def given(self, kind: str) -> Iterator[Given]:
        """A connection of ``kind``, open; closed at the end."""
        if kind == "dbapi":
            conn = self.dbapi()
            try:
                yield conn, conn.commit, conn.rollback
            finally:
                conn.close()
            return
        from sqlalchemy import create_engine
        from sqlalchemy.orm import Session

        engine = create_engine(self.sqlalchemy_url())
        try:
            if kind == "sqlalchemy_session":
                with Session(engine) as session:
                    yield session, session.commit, session.rollback
            else:
                with engine.connect() as connection:
                    yield connection, connection.commit, connection.rollback
        finally:
            engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", f"sqlite:///{tmp_path / 'jobkit.db'}", tmp_path)
    url = request.getfixturevalue("empty_postgres_url")
    return Backend("postgres", url, tmp_path)


@pytest.fixture
def tx_app(backend: Backend) -> Iterator[JobKit]:
    """An app on ``backend``, its store opened (the schema is there)."""
    application = JobKit(make_config(backend.tmp_path, storage=backend.url),
                         load_entrypoints=False)
    application.storage  # noqa: B018 - opened: jobkit's schema exists before a caller writes
    yield application
    application.close()


def _record(app: JobKit, connection: Any, ledger: str, tag: str = "t") -> str:
    return app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": tag},
                                  connection=connection)


@pytest.mark.parametrize("kind", KINDS)
class TestEachConnection:
    """Rollback and commit through each kind of connection, both backends."""

    def test_a_rollback_leaves_no_job(self, backend: Backend, tx_app: JobKit, kind: str,
                                      ledger: str) -> None:
        with backend.given(kind) as (connection, _, rollback):
            job_id = _record(tx_app, connection, ledger)
            rollback()
        with pytest.raises(JobNotFoundInStorage):
            tx_app.get_job(job_id)
        assert tx_app.list_jobs() == []

    def test_a_commit_makes_it_visible(self, backend: Backend, tx_app: JobKit, kind: str,
                                       ledger: str) -> None:
        with backend.given(kind) as (connection, commit, _):
            job_id = _record(tx_app, connection, ledger)
            (other,) = tx_app.enqueue_many("Recorder", "record",
                                           [{"ledger": ledger, "tag": "many"}],
                                           connection=connection)
            assert tx_app.list_jobs() == []  # the store's own connections do not see it yet
            commit()
        assert tx_app.get_job(job_id).status is JobStatus.PENDING
        assert tx_app.get_job(other).params == {"ledger": ledger, "tag": "many"}
        assert [job.id for job in tx_app.list_jobs()] == [other, job_id]

    def test_the_callers_own_writes_go_with_it(self, backend: Backend, tx_app: JobKit,
                                               kind: str, ledger: str) -> None:
        """The job and the caller's row commit or roll back together."""
        with backend.dbapi() as setup:
            setup.execute("DROP TABLE IF EXISTS orders")
            setup.execute("CREATE TABLE orders (id integer)")
            setup.commit()
        statement = "INSERT INTO orders (id) VALUES (7)"
        with backend.given(kind) as (connection, commit, rollback):
            _execute(connection, statement)
            _record(tx_app, connection, ledger, "first")
            rollback()
            _execute(connection, statement)
            _record(tx_app, connection, ledger, "second")
            commit()
        with contextlib.closing(backend.dbapi()) as check:
            assert check.execute("SELECT count(*) FROM orders").fetchone()[0] == 1
        assert [job.params["tag"] for job in tx_app.list_jobs()] == ["second"]


def _execute(connection: Any, statement: str) -> None:
    """Run ``statement`` on a DBAPI or SQLAlchemy connection or session."""
    if type(connection).__module__.startswith("sqlalchemy."):
        from sqlalchemy import text

        connection.execute(text(statement))
    else:
        connection.execute(statement)


@pytest.mark.parametrize("kind", ["dbapi", "sqlalchemy_session"])
def test_an_idle_worker_picks_it_up_after_the_commit(
        backend: Backend, tx_app: JobKit, kind: str, ledger: str,
        start_worker: Callable[..., Any]) -> None:
    """The worker polls once a minute: only the wake-up (NOTIFY, the WAL watch) is prompt."""
    config = write_config(backend.tmp_path, storage=backend.url,
                          worker={"poll_interval": 60, "concurrency": 1})
    start_worker(config)
    first = tx_app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "up"})
    wait_for(lambda: tx_app.get_job(first).status is JobStatus.COMPLETED, timeout=30,
             what="the worker to start")  # and then it waits, idle
    with backend.given(kind) as (connection, commit, _):
        job_id = _record(tx_app, connection, ledger)
        commit()
    wait_for(lambda: tx_app.get_job(job_id).status is JobStatus.COMPLETED, timeout=20,
             what="the worker to run the committed job")


class TestRefused:
    """A connection jobkit cannot use is a ConfigError naming what was given and needed."""

    def test_a_psycopg_connection_for_a_sqlite_store(self, app: JobKit, ledger: str,
                                                     empty_postgres_url: str) -> None:
        import psycopg

        with psycopg.connect(empty_postgres_url) as conn, \
                pytest.raises(ConfigError) as caught:
            _record(app, conn, ledger)
        assert "SQLite store" in str(caught.value)
        assert "needs a sqlite3.Connection" in str(caught.value)
        assert "psycopg.Connection" in str(caught.value)

    def test_a_sqlite3_connection_for_a_postgres_store(self, empty_postgres_url: str,
                                                       tmp_path: Path, ledger: str) -> None:
        with JobKit(make_config(tmp_path, storage=empty_postgres_url),
                    load_entrypoints=False) as app, \
                contextlib.closing(sqlite3.connect(tmp_path / "other.db")) as conn, \
                pytest.raises(ConfigError) as caught:
            _record(app, conn, ledger)
        assert "PostgreSQL store needs a psycopg (3) connection" in str(caught.value)
        assert "sqlite3.Connection" in str(caught.value)

    def test_a_sqlalchemy_session_over_the_wrong_driver(self, empty_postgres_url: str,
                                                       tmp_path: Path, ledger: str) -> None:
        """The error names the wrapper and the DBAPI connection it holds."""
        from sqlalchemy import create_engine
        from sqlalchemy.orm import Session

        engine = create_engine(f"sqlite:///{tmp_path / 'other.db'}")
        with JobKit(make_config(tmp_path, storage=empty_postgres_url),
                    load_entrypoints=False) as app, Session(engine) as session, \
                pytest.raises(ConfigError) as caught:
            _record(app, session, ledger)
        engine.dispose()
        assert ("got sqlalchemy.orm.session.Session (its DBAPI connection: sqlite3.Connection)"
                in str(caught.value))

    def test_a_connection_to_another_sqlite_file(self, app: JobKit, tmp_path: Path,
                                                 ledger: str) -> None:
        other = tmp_path / "other.db"
        with contextlib.closing(sqlite3.connect(other)) as conn, \
                pytest.raises(ConfigError) as caught:
            _record(app, conn, ledger)
        assert str(other) in str(caught.value)
        assert str(tmp_path / "jobkit.db") in str(caught.value)
        assert app.list_jobs() == []

    def test_a_sqlalchemy_engine(self, app: JobKit, tmp_path: Path, ledger: str) -> None:
        from sqlalchemy import create_engine

        engine = create_engine(f"sqlite:///{tmp_path / 'jobkit.db'}")
        with pytest.raises(ConfigError, match="Engine has no transaction"):
            _record(app, engine, ledger)
        engine.dispose()

    def test_a_store_without_it(self, tmp_path: Path, ledger: str) -> None:
        with JobKit(make_config(tmp_path, storage="memory://"), load_entrypoints=False) as app, \
                contextlib.closing(sqlite3.connect(tmp_path / "x.db")) as conn, \
                pytest.raises(ConfigError, match="MemoryStorage cannot store a job"):
            _record(app, conn, ledger)

    def test_unique_jobs_and_depends_on(self, app: JobKit, tmp_path: Path,
                                        ledger: str) -> None:
        """Their checks run in jobkit's own transaction: refused, nothing stored."""
        params = {"ledger": ledger, "tag": "t"}
        with contextlib.closing(sqlite3.connect(tmp_path / "jobkit.db")) as conn:
            with pytest.raises(ConfigError, match="is unique"):
                app.run_background_job("Recorder", "record", params, idempotency_key="k",
                                       connection=conn)
            first = app.run_background_job("Recorder", "record", params)
            with pytest.raises(ConfigError, match="depends_on"):
                app.run_background_job("Recorder", "record", params, depends_on=[first],
                                       connection=conn)
        assert [job.id for job in app.list_jobs()] == [first]


def test_enqueued_is_announced_when_stored(app: JobKit, tmp_path: Path, ledger: str) -> None:
    """The documented rule: announced at once, even if the caller then rolls back."""
    seen: list[str] = []
    app.events.listeners.append(_Listener(seen))
    with contextlib.closing(sqlite3.connect(tmp_path / "jobkit.db")) as conn:
        job_id = _record(app, conn, ledger)
        conn.rollback()
    assert seen == [job_id]


class _Listener:
    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    def __call__(self, event: Any) -> None:
        self.seen.append(event.job.id)


class TestPostgresWakeUp:
    """The NOTIFY is sent by the insert and delivered at the caller's commit only."""

    def test_notify_at_commit_only(self, empty_postgres_url: str, tmp_path: Path,
                                   ledger: str) -> None:
        import psycopg

        with JobKit(make_config(tmp_path, storage=empty_postgres_url),
                    load_entrypoints=False) as app, \
                psycopg.connect(empty_postgres_url, autocommit=True) as listener, \
                psycopg.connect(empty_postgres_url) as conn:
            listener.execute("LISTEN jobkit_jobs")

            def woken(timeout: float) -> bool:
                return any(True for _ in listener.notifies(timeout=timeout, stop_after=1))

            _record(app, conn, ledger)
            assert not woken(0.3)
            conn.rollback()
            assert not woken(0.3)
            _record(app, conn, ledger)
            conn.commit()
            assert woken(10)


def test_no_import_of_sqlalchemy_or_django(tmp_path: Path) -> None:
    """The adapters import neither library unless given one of their objects."""
    code = (
        "import sqlite3, sys, jobkit\n"
        "from jobkit.config import Config\n"
        "class Noop(jobkit.Job):\n"
        "    methods = ('handle',)\n"
        "    def handle(self) -> None:\n"
        "        pass\n"
        f"app = jobkit.JobKit(Config.from_dict({{'storage': 'sqlite:///{tmp_path}/j.db'}}),"
        " load_entrypoints=False)\n"
        "app.register('Noop', Noop)\n"
        "conn = sqlite3.connect(app.storage.path)\n"
        "try:\n"
        "    app.run_background_job('Noop', connection=conn)\n"
        "except Exception as exc:\n"
        "    sys.exit(repr(exc))\n"
        "print(sorted(m for m in ('sqlalchemy', 'django') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=tmp_path)
    assert done.stdout.strip() == "[]", done.stderr


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_django_inside_atomic(backend: Backend, tx_app: JobKit) -> None:
    """A Django connection: the job commits or rolls back with ``transaction.atomic()``."""
    if backend.name == "sqlite":
        database = {"ENGINE": "django.db.backends.sqlite3",
                    "NAME": backend.url.removeprefix("sqlite:///")}
    else:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(backend.url)
        database = {"ENGINE": "django.db.backends.postgresql", "NAME": info["dbname"],
                    "USER": info["user"], "HOST": info["host"], "PORT": info["port"]}
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("django_enqueue.py")), backend.url,
         json.dumps(database)],
        capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["committed"]
