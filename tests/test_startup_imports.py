"""What start-up imports: ``import jobkit`` and ``jobkit --help`` leave the heavy modules out.

Each check runs in a fresh interpreter and reads its ``sys.modules`` (issue 17: import jobkit
<= 100 ms, --help <= 150 ms; what only some commands or stores need is imported by them).
The built-in stores are registered by reference and imported when an app opens one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import subprocess_env

from jobkit.exceptions import ConfigError
from jobkit.registries import StorageRegistry
from jobkit.storage.postgres import PostgresStorage
from jobkit.storage.sqlite import SQLiteStorage

#: Not imported by ``import jobkit``: each is imported by what needs it.
NOT_ON_IMPORT = (
    "loguru", "yaml", "cattrs", "importlib.metadata", "psycopg", "starlette", "jinja2",
    "rich", "click", "asyncio", "croniter", "jobkit.worker", "jobkit.dashboard", "jobkit.cli",
    "jobkit.logs", "jobkit.notify", "jobkit.storage.search", "jobkit.storage.postgres",
    "jobkit.storage.sqlite", "jobkit.config.yamlfile",
)
#: Not imported by ``jobkit --help``.
NOT_ON_HELP = (
    "loguru", "yaml", "cattrs", "psycopg", "starlette", "jinja2", "rich", "asyncio",
    "jobkit.worker", "jobkit.dashboard", "jobkit.logs", "jobkit.storage.postgres",
)


def imported(code: str, names: tuple[str, ...], tmp_path: Path) -> list[str]:
    """Which of ``names`` a fresh interpreter holds after running ``code``."""
    tell = f"\nimport sys, json\nprint(json.dumps([n for n in {names!r} if n in sys.modules]))"
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code) + tell], cwd=tmp_path,
                            env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    found: list[str] = json.loads(result.stdout.splitlines()[-1])
    return found


def test_import_jobkit_imports_none_of_the_heavy_modules(tmp_path: Path) -> None:
    """``import jobkit`` (every public name with it) imports none of :data:`NOT_ON_IMPORT`."""
    assert imported("import jobkit\nfrom jobkit import *", NOT_ON_IMPORT, tmp_path) == []


def test_help_imports_no_dashboard_store_or_logging(tmp_path: Path) -> None:
    """``jobkit --help`` prints the help with none of :data:`NOT_ON_HELP` imported."""
    code = """
        import contextlib, io
        from jobkit.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out:
            try:
                main(["--help"])
            except SystemExit as exc:
                assert exc.code == 0, exc.code
        assert "worker" in out.getvalue(), out.getvalue()
    """
    assert imported(code, NOT_ON_HELP, tmp_path) == []


def test_an_app_on_sqlite_imports_no_postgres(tmp_path: Path) -> None:
    """An app that opens a SQLite store imports jobkit.storage.sqlite, not postgres."""
    code = f"""
        from jobkit import JobKit
        from jobkit.config import Config
        app = JobKit(Config.from_dict({{"storage": "sqlite:///{tmp_path / 'jobs.db'}"}}),
                     load_entrypoints=False)
        assert sorted(app.storage_registry.names()) == ["memory", "postgres", "postgresql",
                                                         "sqlite"]
        app.storage
        app.close()
    """
    names = ("jobkit.storage.sqlite", "jobkit.storage.postgres", "psycopg")
    assert imported(code, names, tmp_path) == ["jobkit.storage.sqlite"]


class TestLazyRegistration:
    """A built-in registered by reference acts as one registered with the class."""

    def test_lookup_imports_the_class(self) -> None:
        """``get`` returns the class the reference names."""
        registry = StorageRegistry()
        registry.add_lazy("postgresql", "jobkit.storage.postgres:PostgresStorage")
        assert registry.names() == ["postgresql"]
        assert registry.get("postgresql") is PostgresStorage
        assert registry.get("postgresql") is PostgresStorage

    @staticmethod
    def register_sqlite(cls: type[Any], *, lazy_first: bool) -> StorageRegistry:
        """A registry given the built-in ``sqlite`` reference and ``cls``, in either order."""
        registry = StorageRegistry()
        steps = [lambda: registry.add_lazy("sqlite", "jobkit.storage.sqlite:SQLiteStorage"),
                 lambda: registry.add("sqlite", cls)]
        for step in steps if lazy_first else steps[::-1]:
            step()
        return registry

    @pytest.mark.parametrize("lazy_first", [True, False])
    def test_another_class_under_the_name_is_refused(self, lazy_first: bool) -> None:
        """A plugin's other class under a built-in's scheme is an error, in either order."""
        with pytest.raises(ConfigError, match="'sqlite' is registered twice: by jobkit"):
            self.register_sqlite(PostgresStorage, lazy_first=lazy_first)

    @pytest.mark.parametrize("lazy_first", [True, False])
    def test_the_same_class_again_is_one_registration(self, lazy_first: bool) -> None:
        """The class and a reference to it under one name are no conflict."""
        registry = self.register_sqlite(SQLiteStorage, lazy_first=lazy_first)
        assert registry.names() == ["sqlite"]
        assert registry.get("sqlite") is SQLiteStorage

    def test_an_unknown_name_lists_the_lazy_ones(self) -> None:
        """The ``KeyError`` for an unknown scheme names the built-ins not imported yet."""
        registry = StorageRegistry()
        registry.add_lazy("memory", "jobkit.storage.memory:MemoryStorage")
        with pytest.raises(KeyError, match=r"known: memory"):
            registry.get("redis")


def test_each_log_rotation_and_retention_is_tried_on_loguru_once(tmp_path: Path) -> None:
    """Building configs tries each rotation/retention value on a loguru sink once per process.

    Three configs (the defaults and one rotation): one sink added and removed, for the one
    value that is not jobkit's default (the defaults are taken untried; each config used to add
    two per value). A bad value is still refused.
    """
    code = """
        from loguru import logger
        from jobkit.config import Config
        from jobkit.exceptions import ConfigError
        first = logger.add(lambda _: None)
        logger.remove(first)
        Config(); Config.from_dict({}); Config.from_dict({"logging": {"rotation": "1 week"}})
        last = logger.add(lambda _: None)
        assert last - first - 1 == 1, last - first - 1
        for _ in range(2):
            try:
                Config.from_dict({"logging": {"rotation": "every blue moon"}})
            except ConfigError as exc:
                assert "rotation" in str(exc), exc
            else:
                raise AssertionError("a bad rotation was taken")
    """
    assert imported(code, (), tmp_path) == []


def test_the_default_rotation_and_retention_are_what_loguru_accepts(tmp_path: Path) -> None:
    """jobkit's default rotation and retention, taken untried, are values loguru accepts.

    And reading a configuration that keeps them imports no loguru (``jobkit worker`` reads it
    before it starts its processes)."""
    from jobkit.config import LoggingSettings
    from jobkit.config_yaml import _loguru_accepts

    defaults = LoggingSettings()
    assert _loguru_accepts("rotation", defaults.rotation)
    assert _loguru_accepts("retention", defaults.retention)
    code = f"""
        from jobkit.config import load_config
        config = load_config({str(tmp_path / "jobs.yaml")!r})
        assert config.logging.rotation == "00:00", config.logging
    """
    (tmp_path / "jobs.yaml").write_text("storage: sqlite:///jobs.db\nlogging:\n  dir: logs\n")
    assert imported(code, ("loguru",), tmp_path) == []
