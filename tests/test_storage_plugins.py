"""Storage backends from an outside package, installed with pip and found through the ``jobkit``
entry point: a plain subclass of the SQLite store under a scheme of its own, and a store with
the ``Storage`` core alone, each running real jobs in real worker processes and every CLI
command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jobkit import JobKit, JobStatus
from jobkit.storage.capabilities import OPTIONAL_CAPABILITIES, supports

pytestmark = pytest.mark.slow
FIXTURE = Path(__file__).parent / "fixtures" / "acme_storage"


@pytest.fixture(scope="module")
def acme_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """acme-storage installed by pip into a directory of its own (a copy is built)."""
    source = tmp_path_factory.mktemp("acme-storage-src") / "acme_storage"
    shutil.copytree(FIXTURE, source)
    site = tmp_path_factory.mktemp("storage-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(site), str(source)], check=True)
    return site


def write_config(tmp_path: Path, storage: str) -> Path:
    """A jobs.yaml naming ``storage``, with a quick worker."""
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump({
        "storage": storage,
        "logging": {"dir": str(tmp_path / "logs")},
        "worker": {"poll_interval": 0.02, "heartbeat": 0.1, "requeue_interval": 0.2},
    }))
    return path


def jobkit_cli(site: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m jobkit --config CONFIG ARGS``, with the package on the import path."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "jobkit", "--config", str(config), *args],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    """The command's output, once it exited 0."""
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


class TestSubclassUnderItsOwnScheme:
    def test_a_plain_sqlite_subclass_runs_jobs_as_acme(
        self, acme_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``storage: acme:///...`` opens the package's AcmeStorage (SQLiteStorage with no
        from_url of its own), which reopens as acme:// and runs jobs in worker processes."""
        monkeypatch.syspath_prepend(str(acme_site))
        db = tmp_path / "data" / "jobs.db"
        config = write_config(tmp_path, f"acme:///{db}")
        ledger = str(tmp_path / "ledger.jsonl")
        with JobKit.from_config(config) as app:
            assert type(app.storage).__name__ == "AcmeStorage"
            assert app.storage.url == f"acme:///{db}"
            ids = [app.run_background_job("Tally", "add", {"ledger": ledger, "tag": str(n)})
                   for n in range(6)]
            ok(jobkit_cli(acme_site, config, "worker", "--concurrency", "2", "--burst"))
            records = [app.get_job(job_id) for job_id in ids]
        assert [(r.status, r.result) for r in records] == [
            (JobStatus.COMPLETED, f"{n} counted") for n in range(6)]
        assert db.is_file()
        lines = Path(ledger).read_text().splitlines()
        assert sorted(json.loads(line)["tag"] for line in lines) == [str(n) for n in range(6)]


class TestCoreAlone:
    def test_the_worker_and_every_cli_command_work_on_the_core_alone(
        self, acme_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A store with no optional capability runs jobs in worker processes, and run, list,
        status, cancel, retry, prune, migrate, check and jobs answer as on SQLite."""
        monkeypatch.syspath_prepend(str(acme_site))
        config = write_config(tmp_path, f"coreonly+sqlite:///{tmp_path / 'jobs.db'}")
        ledger = str(tmp_path / "ledger.jsonl")
        with JobKit.from_config(config) as app:
            assert not any(supports(app.storage, name) for name in OPTIONAL_CAPABILITIES)
        cli = lambda *args: jobkit_cli(acme_site, config, *args)  # noqa: E731
        ok(cli("check"))
        assert "Tally" in ok(cli("jobs"))
        ok(cli("migrate"))
        first = ok(cli("run", "Tally", "add", "-p", f"ledger={ledger}", "-p", "tag=a")).strip()
        ok(cli("worker", "--concurrency", "2", "--burst"))
        later = ok(cli("run", "Tally", "add", "-p", f"ledger={ledger}", "-p", "tag=b",
                       "--delay", "3600")).strip()
        status = json.loads(ok(cli("status", first, "--json")))
        assert status["status"] == "completed" and status["result"] == "a counted"
        assert json.loads(ok(cli("cancel", later, "--json")))["status"] == "cancelled"
        assert json.loads(ok(cli("retry", later, "--json")))["status"] == "pending"
        listed = [json.loads(line) for line in ok(cli("list", "--json")).splitlines()]
        assert [job["id"] for job in listed] == [later, first]
        pruned = json.loads(ok(cli("prune", "--older-than", "0s", "--json")))
        assert pruned["deleted"] == 1
        assert json.loads(ok(cli("status", later, "--json")))["status"] == "pending"
