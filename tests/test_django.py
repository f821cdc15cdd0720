"""jobkit.contrib.django in a real Django project, made in a temporary folder, on both backends.

Each step runs in a process of its own (Django's settings are per process): ``manage.py
migrate``, a function that saves an order and enqueues its job inside ``transaction.atomic()``,
``manage.py jobkit worker --burst`` and the checks after it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import subprocess_env

from jobkit.contrib.django.settings import storage_url
from jobkit.exceptions import ConfigError

FILES = {
    "manage.py": """
        import os, sys
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
        from django.core.management import execute_from_command_line
        execute_from_command_line(sys.argv)
    """,
    "proj/__init__.py": "",
    "proj/settings.py": """
        import json, os
        SECRET_KEY = "test"
        USE_TZ = True
        INSTALLED_APPS = ["shop", "jobkit.contrib.django"]
        DATABASES = {"default": json.loads(os.environ["TEST_DATABASE"])}
        DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
        JOBKIT = {"jobs": {"Ship": {"class": "shop.jobs:Ship"}}, "worker": {"concurrency": 1}}
        JOBKIT.update(json.loads(os.environ.get("TEST_JOBKIT", "{}")))
    """,
    "shop/__init__.py": "",
    "shop/models.py": """
        from django.db import models

        class Order(models.Model):
            name = models.CharField(max_length=50)
            shipped = models.BooleanField(default=False)
    """,
    "shop/migrations/__init__.py": "",
    "shop/migrations/0001_initial.py": """
        from django.db import migrations, models

        class Migration(migrations.Migration):
            initial = True
            operations = [migrations.CreateModel("Order", [
                ("id", models.AutoField(primary_key=True)),
                ("name", models.CharField(max_length=50)),
                ("shipped", models.BooleanField(default=False)),
            ])]
    """,
    "shop/jobs.py": """
        import jobkit
        from shop.models import Order

        class Ship(jobkit.Job):
            methods = ("ship",)

            def ship(self, order_id: int) -> None:
                Order.objects.filter(id=order_id).update(shipped=True)
    """,
    "shop/views.py": """
        import jobkit
        from django.db import connection, transaction
        from shop.models import Order

        def place_order(name, fail=False):
            with transaction.atomic():
                order = Order.objects.create(name=name)
                jobkit.run_background_job("Ship", "ship", {"order_id": order.id},
                                          connection=connection)
                if fail:
                    raise RuntimeError("rolled back")
    """,
    "report.py": """
        import json, os, sys
        import django
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
        django.setup()
        import jobkit
        from shop.models import Order
        from shop.views import place_order

        if sys.argv[1:] == ["place"]:
            try:
                place_order("lost", fail=True)
            except RuntimeError:
                pass
            place_order("kept")
        print(json.dumps({
            "orders": [[o.name, o.shipped] for o in Order.objects.order_by("id")],
            "jobs": [[j.params["order_id"], j.status.value] for j in jobkit.list_jobs()],
        }))
    """,
}


def make_project(folder: Path) -> None:
    """The project's files in ``folder``."""
    for name, text in FILES.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def run(folder: Path, database: dict[str, Any], *args: str,
        jobkit_setting: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
    """``python args...`` in the project, with its database and extra ``JOBKIT`` keys."""
    env = subprocess_env()
    env["TEST_DATABASE"] = json.dumps(database)
    env["TEST_JOBKIT"] = json.dumps(jobkit_setting or {})
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["PYTHONPATH"] = os.pathsep.join([str(folder), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=120)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    """The output of a process that must have succeeded."""
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Django's ``DATABASES['default']``: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")}
    from psycopg.conninfo import conninfo_to_dict

    server = request.getfixturevalue("postgres_server")
    info = conninfo_to_dict(server.create_database("jobkit_django"))
    return {"ENGINE": "django.db.backends.postgresql", "NAME": info["dbname"],
            "USER": info["user"], "HOST": info["host"], "PORT": info["port"]}


def test_jobs_share_the_transaction_and_the_worker_runs_them(
        tmp_path: Path, database: dict[str, Any]) -> None:
    """A rollback leaves neither order nor job; a commit both; ``manage.py jobkit worker``."""
    make_project(tmp_path)
    ok(run(tmp_path, database, "manage.py", "migrate"))
    placed = json.loads(ok(run(tmp_path, database, "report.py", "place")))
    assert placed["orders"] == [["kept", False]]
    (order_id, status), = placed["jobs"]
    assert status == "pending"
    ok(run(tmp_path, database, "manage.py", "jobkit", "worker", "--burst"))
    after = json.loads(ok(run(tmp_path, database, "report.py")))
    assert after == {"orders": [["kept", True]], "jobs": [[order_id, "completed"]]}
    status_line = ok(run(tmp_path, database, "manage.py", "jobkit", "list", "--json"))
    assert json.loads(status_line.splitlines()[0])["status"] == "completed"


def test_help_and_a_bad_setting(tmp_path: Path) -> None:
    """``manage.py jobkit --help`` is jobkit's help; a bad ``JOBKIT`` key names the setting."""
    make_project(tmp_path)
    database = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")}
    helped = ok(run(tmp_path, database, "manage.py", "jobkit", "--help"))
    assert "worker" in helped and "manage.py jobkit" in helped
    assert ok(run(tmp_path, database, "manage.py", "help", "jobkit")) == helped
    bad = run(tmp_path, database, "manage.py", "jobkit", "status",
              jobkit_setting={"wroker": {"concurrency": 2}})
    assert bad.returncode != 0
    assert "settings.JOBKIT: wroker: unknown key (did you mean 'worker'?)" in bad.stderr


def test_storage_url_from_django_databases(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's file as an absolute path; PostgreSQL's keys and OPTIONS as libpq parameters."""
    monkeypatch.chdir(tmp_path)
    assert storage_url({"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}) == \
        f"sqlite:///{tmp_path.resolve() / 'db.sqlite3'}"
    url = storage_url({"ENGINE": "django.db.backends.postgresql", "NAME": "shop",
                       "HOST": "/run/pg sock", "PORT": 5433, "USER": "app", "PASSWORD": "p@ss",
                       "OPTIONS": {"sslmode": "require", "server_side_binding": True}})
    assert url == "postgresql://app:p%40ss@%2Frun%2Fpg%20sock:5433/shop?sslmode=require"


@pytest.mark.parametrize("database", [{"ENGINE": "django.db.backends.mysql", "NAME": "shop"},
                                      {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}])
def test_a_default_database_jobkit_cannot_share(database: dict[str, Any]) -> None:
    """Without ``storage``, a database jobkit cannot use is an error naming the settings."""
    with pytest.raises(ConfigError, match=r"settings.JOBKIT: no 'storage', and "
                       r"DATABASES\['default'\] .* set JOBKIT\['storage'\]"):
        storage_url(database)


def test_the_package_imports_no_django(tmp_path: Path) -> None:
    """Importing :mod:`jobkit.contrib.django` (settings.py may) imports no Django or store."""
    code = ("import sys, jobkit.contrib.django\n"
            "print(sorted(m for m in ('django', 'jobkit.storage.sqlite')"
            " if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env=subprocess_env(), timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
