"""A stored row whose numbers are out of every bound (written by an older version, or forged in
the database) never stops a real worker: its values are clamped (jobkit/limits.py), the job ends
as its own code says, and every other job runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from sample_jobs import read_ledger

from jobkit import JobKit, JobStatus
from jobkit.limits import MAX_DELAY
from reliability.conftest import store_config
from reliability.test_trust import forge

pytestmark = pytest.mark.slow

#: A policy no version of jobkit accepts: a 31,700-year timeout, an infinite retry delay.
HUGE = '{"retry_delay": 1e400, "backoff": "fixed", "max_delay": null, "jitter": 0, ' \
       '"timeout": 1e12}'
#: Values of the wrong sign and type where numbers belong.
ODD = '{"retry_delay": "soon", "backoff": 7, "max_delay": -1, "jitter": "lots", "timeout": -5}'
EXPONENTIAL = '{"retry_delay": 1, "backoff": "exponential", "max_delay": null, "jitter": 0.5, ' \
              '"timeout": null}'


@pytest.fixture
def app(store_url: str, tmp_path: Path) -> Iterator[JobKit]:
    """An app on the backend under test (conftest's fast worker timings, no retries)."""
    application = JobKit.from_config(store_config(tmp_path, store_url), load_entrypoints=False)
    yield application
    application.close()


class TestStoredValuesOutOfBounds:
    def test_a_real_worker_survives_them_and_runs_every_other_job(
        self, app: JobKit, store_url: str, ledger: str, start_worker: Callable[..., Any]
    ) -> None:
        """Forged timeouts of 1e12 and -5, an infinite retry delay, exponential backoff after
        100,000 attempts and a negative max_attempts: the supervisor keeps running, each job
        ends as its code says (retries at most ten years out), and the plain jobs all run."""

        def enqueue(method: str, **params: Any) -> str:
            return app.run_background_job("Recorder", method, {"ledger": ledger, **params},
                                          retry_attempts=2)

        slow = enqueue("sleep", seconds=1.5)  # running while the supervisor checks its timeout
        forge(store_url, slow, policy=HUGE)
        far = enqueue("fail", times=1)
        forge(store_url, far, policy=HUGE)
        late = enqueue("fail")  # fails every attempt
        forge(store_url, late, policy=EXPONENTIAL, attempts=100_000, max_attempts=2**31 - 1)
        odd = enqueue("sleep", seconds=0.3)
        forge(store_url, odd, policy=ODD)
        negative = enqueue("fail", times=1)
        forge(store_url, negative, max_attempts=-5)
        plain = [enqueue("record", tag=str(n)) for n in range(3)]
        expected = {
            slow: JobStatus.COMPLETED, far: JobStatus.RETRYING, late: JobStatus.RETRYING,
            odd: JobStatus.COMPLETED, negative: JobStatus.FAILED,
            **dict.fromkeys(plain, JobStatus.COMPLETED),
        }

        worker = start_worker(Path(app.config.path or ""))
        wait_for(lambda: {job_id: app.get_job(job_id).status for job_id in expected} == expected,
                 timeout=30, what=f"the jobs to settle: {worker.text()}")
        assert worker.process.poll() is None, worker.text()  # the supervisor still runs
        output = worker.text()
        for sign in ("OverflowError", "could not record", "unexpected", "killing it"):
            assert sign not in output, output

        ceiling = app.storage.now() + timedelta(seconds=MAX_DELAY + 60)
        for job_id in (far, late):
            record = app.get_job(job_id)
            assert record.error == "RuntimeError: planned failure " + str(record.attempts)
            assert record.available_at <= ceiling
            assert record.available_at > app.storage.now() + timedelta(days=3000)
        assert app.get_job(negative).error == "RuntimeError: planned failure 1"
        assert app.get_job(slow).policy.timeout == 7 * 24 * 3600  # read as the bound
        assert app.get_job(odd).policy.timeout is None  # read as the default: no limit
        tags = [entry["tag"] for entry in read_ledger(ledger) if entry["tag"] not in ("", "start")]
        assert sorted(tags) == ["0", "1", "2", "end", "end"]

    def test_counters_at_the_column_maximum_stop_nothing(
        self, app: JobKit, store_url: str, ledger: str, start_worker: Callable[..., Any]
    ) -> None:
        """attempts, crashes and max_attempts forged to the largest integer the column holds
        (2^31 - 1 on PostgreSQL, 2^63 - 1 on SQLite): claiming the job, taking it back after its
        worker died and retrying it by hand never overflow, and a real `jobkit worker --burst`
        runs every job (on PostgreSQL, the claim failed in a loop and no job ran)."""
        top = 2**31 - 1 if store_url.startswith("postgresql") else 2**63 - 1
        last = datetime.now(timezone.utc) - timedelta(minutes=1)
        lost_at: Any = last if store_url.startswith("postgresql") else last.timestamp()

        def record(tag: str) -> str:
            return app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": tag})

        claimed = record("claimed")
        forge(store_url, claimed, attempts=top)
        lost = record("lost")  # running on a worker that died a minute ago: its last crash
        forge(store_url, lost, status="running", worker_id="gone:1:dead", started_at=lost_at,
              lease_expires_at=lost_at, attempts=top, crashes=top, max_crashes=top)
        given_back = record("given back")  # the same, with crashes left: an attempt back
        forge(store_url, given_back, status="running", worker_id="gone:1:dead",
              started_at=lost_at, lease_expires_at=lost_at, attempts=top, max_attempts=top)
        retried = record("retried")
        forge(store_url, retried, status="failed", finished_at=lost_at, attempts=top)
        assert app.retry_job(retried)
        behind = record("behind")

        worker = start_worker(Path(app.config.path or ""), "-n", "1", "--burst")
        code, output = worker.wait(timeout=30)
        assert code == 0, output
        assert "out of range" not in output and "overflow" not in output.lower(), output
        for job_id in (claimed, given_back, retried, behind):
            assert app.get_job(job_id).status is JobStatus.COMPLETED, (job_id, output)
        failed = app.get_job(lost)
        assert failed.status is JobStatus.FAILED
        assert failed.error is not None and failed.error.endswith(
            f"stopped heartbeating; failed after {top} crashes (max_crashes)")
        assert sorted(entry["tag"] for entry in read_ledger(ledger)) == [
            "behind", "claimed", "given back", "retried"]
