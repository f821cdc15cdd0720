"""examples/fastapi for real: uvicorn and ``jobkit worker`` as processes on one SQLite store."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from workers import REPO, WorkerProcess, free_port, subprocess_env

EXAMPLE = REPO / "examples" / "fastapi"


def call(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """One HTTP request: its status and its JSON body."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.load(exc)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The example served by uvicorn, with a ``jobkit worker`` beside it; the base URL.

    Both run on a SQLite store in ``tmp_path`` and are stopped at the end, whatever happened."""
    # what a deployment would set: both processes on one store (the environment beats jobs.yaml)
    monkeypatch.setenv("JOBKIT_STORAGE", f"sqlite:///{tmp_path / 'reports.db'}")
    monkeypatch.setenv("JOBKIT_LOGGING__DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("PYTHONPATH", str(EXAMPLE))  # `class: jobs:ReportJob`, for the worker
    monkeypatch.delenv("JOBKIT_CONFIG", raising=False)
    config = tmp_path / "jobs.yaml"  # the worker's --config (it runs, and writes, in tmp_path)
    config.write_text((EXAMPLE / "jobs.yaml").read_text())
    port = free_port()
    log = open(tmp_path / "uvicorn.out", "w")  # noqa: SIM115 (closed in the finally)
    api = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "main:api", "--host", "127.0.0.1", "--port", str(port)],
        cwd=EXAMPLE, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT)
    worker = None
    base = f"http://127.0.0.1:{port}"
    try:
        worker = WorkerProcess(config)
        deadline = time.monotonic() + 30
        while True:
            try:
                if call("GET", f"{base}/openapi.json")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert api.poll() is None, (tmp_path / "uvicorn.out").read_text()
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.1)
        yield base
    finally:
        api.terminate()
        try:
            api.wait(timeout=15)
        except subprocess.TimeoutExpired:
            api.kill()
            api.wait()
        if worker is not None:
            worker.stop()
        log.close()
        print(f"--- uvicorn\n{(tmp_path / 'uvicorn.out').read_text()}")


def test_enqueue_then_wait_returns_the_result(server: str) -> None:
    """POST /reports enqueues (202, the id); the wait returns the async job's result."""
    status, body = call("POST", f"{server}/reports", {"title": "sales of the week"})
    assert status == 202
    job_id = body["id"]
    status, report = call("POST", f"{server}/reports/{job_id}/wait?timeout=30")
    assert status == 200, report
    assert report["status"] == "completed", report
    assert report["result"] == {"title": "sales of the week", "words": 4}
    status, again = call("GET", f"{server}/reports/{job_id}")
    assert (status, again) == (200, report)


def test_unknown_id_is_404_and_a_wait_that_runs_out_is_504(server: str) -> None:
    """An unknown id is a 404; a wait whose timeout passes first is a 504.

    404 from GET, the wait and DELETE. The job of a 504 goes on (cancelled here by DELETE)."""
    for method, path in [("GET", ""), ("POST", "/wait?timeout=1"), ("DELETE", "")]:
        status, body = call(method, f"{server}/reports/no-such-job{path}")
        assert status == 404, (method, path, body)
    _, body = call("POST", f"{server}/reports", {"title": "slow", "seconds": 60})
    job_id = body["id"]
    status, body = call("POST", f"{server}/reports/{job_id}/wait?timeout=0.5")
    assert status == 504, body
    status, report = call("GET", f"{server}/reports/{job_id}")
    assert status == 200 and report["status"] in ("pending", "running"), report
    assert call("DELETE", f"{server}/reports/{job_id}") == (200, {"cancelled": True})
    status, report = call("POST", f"{server}/reports/{job_id}/wait?timeout=30")
    assert (status, report["status"]) == (200, "cancelled"), report

