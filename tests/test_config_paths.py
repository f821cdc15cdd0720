"""Relative paths in jobs.yaml are taken from the file's folder (as docker compose does); those
from the environment stay relative to the working directory."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from conftest import jobkit_process

from jobkit.config import Config, LoggingSettings, load_config


def project(tmp_path: Path, text: str) -> Path:
    """A jobs.yaml (dedented) in ``tmp_path/project``, and an empty ``tmp_path/elsewhere`` that
    the tests run from."""
    folder = tmp_path / "project"
    folder.mkdir()
    (tmp_path / "elsewhere").mkdir(exist_ok=True)
    path = folder / "jobs.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.as_posix()}"


class TestPathsInTheFile:
    @pytest.fixture(autouse=True)
    def _run_elsewhere(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        (tmp_path / "elsewhere").mkdir(exist_ok=True)
        monkeypatch.chdir(tmp_path / "elsewhere")

    def test_a_relative_sqlite_path_is_taken_from_the_files_folder(self, tmp_path: Path) -> None:
        """storage: sqlite:///data/jobkit.db is the data folder beside jobs.yaml, wherever
        the command runs."""
        path = project(tmp_path, "storage: sqlite:///data/jobkit.db\n")
        config = load_config(path, environ={})
        assert config.storage == sqlite_url(tmp_path / "project" / "data" / "jobkit.db")

    def test_the_logging_dir_is_taken_from_the_files_folder(self, tmp_path: Path) -> None:
        """logging.dir: logs is the logs folder beside jobs.yaml."""
        path = project(tmp_path, "logging: {dir: logs, format: json}\n")
        config = load_config(path, environ={})
        assert config.logging == LoggingSettings(dir=str(tmp_path / "project" / "logs"),
                                                 format="json")

    def test_the_built_in_defaults_are_taken_from_the_files_folder(self, tmp_path: Path) -> None:
        """A jobs.yaml that sets neither storage nor logging.dir keeps its store and logs
        beside it too: jobkit.db and logs/."""
        path = project(tmp_path, "defaults: {retry_attempts: 1}\n")
        config = load_config(path, environ={})
        assert config.storage == sqlite_url(tmp_path / "project" / "jobkit.db")
        assert config.logging.dir == str(tmp_path / "project" / "logs")

    def test_a_relative_config_path_is_resolved_when_loaded(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """--config project/jobs.yaml (relative) gives absolute paths: a later chdir, or a
        worker process started elsewhere, changes nothing."""
        project(tmp_path, "storage: sqlite:///jobkit.db\n")
        monkeypatch.chdir(tmp_path)
        config = load_config("project/jobs.yaml", environ={})
        assert config.path == "project/jobs.yaml"
        assert config.storage == sqlite_url(tmp_path / "project" / "jobkit.db")
        assert config.logging.dir == str(tmp_path / "project" / "logs")

    def test_parent_folders_are_normalised(self, tmp_path: Path) -> None:
        """sqlite:///../shared/jobkit.db and dir: ../logs name the folders beside the project."""
        path = project(tmp_path, "storage: sqlite:///../shared/jobkit.db\n"
                                 "logging: {dir: ../logs}\n")
        config = load_config(path, environ={})
        assert config.storage == sqlite_url(tmp_path / "shared" / "jobkit.db")
        assert config.logging.dir == str(tmp_path / "logs")

    def test_absolute_paths_are_kept(self, tmp_path: Path) -> None:
        """An absolute store path or log folder is used as written."""
        store, logs = tmp_path / "abs" / "store.db", tmp_path / "abs-logs"
        path = project(tmp_path, f"storage: {sqlite_url(store)}\nlogging: {{dir: '{logs}'}}\n")
        config = load_config(path, environ={})
        assert config.storage == sqlite_url(store)
        assert config.logging.dir == str(logs)

    @pytest.mark.parametrize("url", ["memory://", "postgresql://jobkit@db.example/jobs",
                                     "sqlite:///:memory:", "sqlite:///file:x.db?mode=memory"])
    def test_other_urls_are_kept(self, tmp_path: Path, url: str) -> None:
        """Only a SQLite file path is resolved; other URLs (and the SQLite forms the store
        refuses with its own error) are kept as written."""
        path = project(tmp_path, f"storage: '{url}'\n")
        assert load_config(path, environ={}).storage == url

    def test_the_environment_stays_relative_to_the_working_directory(
        self, tmp_path: Path
    ) -> None:
        """JOBKIT_STORAGE and JOBKIT_LOGGING__DIR are relative to where the command runs, as
        every path given on a command line is."""
        path = project(tmp_path, "storage: sqlite:///file.db\nlogging: {dir: file-logs}\n")
        config = load_config(path, environ={"JOBKIT_STORAGE": "sqlite:///env.db",
                                            "JOBKIT_LOGGING__DIR": "env-logs"})
        assert config.storage == "sqlite:///env.db"
        assert config.logging.dir == "env-logs"

    def test_without_a_file_paths_stay_relative(self, tmp_path: Path) -> None:
        """No jobs.yaml (nor a dict given in code): the working directory, as before."""
        assert load_config(environ={}) == Config()
        assert Config.from_dict({"storage": "sqlite:///x.db"}).storage == "sqlite:///x.db"
        assert Config().logging.dir == "logs"


class TestCommandsFromAnotherFolder:
    def test_every_command_uses_the_store_and_logs_beside_jobs_yaml(
        self, tmp_path: Path, ledger: str
    ) -> None:
        """Enqueued from one folder, run by a worker started in another, listed from a third:
        one store and one log folder, beside jobs.yaml; nothing is created where the commands
        ran."""
        path = project(tmp_path, """\
            storage: sqlite:///data/jobkit.db
            logging: {dir: logs}
            defaults: {retry_attempts: 0}
            worker: {poll_interval: 0.02, heartbeat: 0.1, lease: 2}
            jobs:
              Recorder: {class: "sample_jobs:Recorder"}
            """)
        folder, elsewhere = path.parent, tmp_path / "elsewhere"
        enqueued = jobkit_process(tmp_path, "--config", "project/jobs.yaml", "run", "Recorder",
                                  "record", "-p", f"ledger={ledger}", "-p", "tag=far")
        assert enqueued.returncode == 0, enqueued.stderr
        worked = jobkit_process(elsewhere, "--config", str(path), "worker", "-n", "1",
                                "--burst", timeout=120)
        assert worked.returncode == 0, worked.stderr
        listed = jobkit_process(folder, "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [json.loads(line)["status"] for line in listed.stdout.splitlines()] == ["completed"]
        assert (folder / "data" / "jobkit.db").exists()
        assert "succeeded" in (folder / "logs" / "background_jobs.log").read_text()
        assert sorted(p.name for p in elsewhere.iterdir()) == []
        assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "ledger.jsonl",
                                                               "project"]
