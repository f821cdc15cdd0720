"""Short jobs in batches (worker.prefetch): whatever holds a batch up (a job that holds the GIL,
jobs that are short but not very short, a job longer than the hold, a shutdown), a job that
finished is recorded once and never runs again, a job handed back runs once and counts one
attempt, jobs are not killed for leases or timeouts that batching stretched, and only a job that
was running when its process died counts a crash."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from sample_jobs import read_ledger

from jobkit import AttemptOutcome, JobKit, JobStatus
from reliability.conftest import counted_attempts, runs_per_job, store_config
from reliability.test_crashes import FINAL, count

pytestmark = pytest.mark.slow


def short_jobs(app: JobKit, ledger: str, n: int, tag: str = "ok", priority: int = 3) -> list[str]:
    """``n`` very short jobs: enough of them grow a process's batches to 32."""
    return [app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": tag},
                                   priority=priority) for _ in range(n)]


def test_a_job_holding_the_gil_after_a_batch_reruns_no_neighbour(
    tmp_path: Path, store_url: str, ledger: str, start_worker: Any
) -> None:
    """40 short jobs, then one that holds the GIL past the lease: its process can neither beat
    nor commit, and is killed for its expired lease. The jobs it had finished are recorded
    from its journal, before the expired leases are swept: none runs again or counts a
    crash."""
    config = store_config(tmp_path, store_url, defaults={"retry_attempts": 0},
                          worker={"lease": 2.0, "heartbeat": 0.5})
    with JobKit.from_config(config, load_entrypoints=False) as app:
        ok = short_jobs(app, ledger, 40)
        app.run_background_job("Recorder", "busy_in_c", {"n": 3 * 10**8}, priority=2)
        start_worker(config, "-n", "1")
        wait_for(lambda: count(app, *FINAL) == 41, timeout=120, what="every job final")
        assert [app.get_job(job_id).crashes for job_id in ok] == [0] * len(ok)
    assert runs_per_job(ledger, "ok") == dict.fromkeys(ok, 1)


def test_batches_of_jobs_of_150_ms_keep_their_leases(
    tmp_path: Path, store_url: str, ledger: str, start_worker: Any
) -> None:
    """With a 2 s lease, 31 very short jobs grow the batch, then 32 jobs of 150 ms each (under
    the 0.2 s after which the monitor steps in): a batch is never held long enough for the
    leases of the jobs it holds to expire. No process is killed, no job crashes or runs
    twice."""
    config = store_config(tmp_path, store_url, defaults={"retry_attempts": 0},
                          worker={"lease": 2.0, "heartbeat": 0.5})
    with JobKit.from_config(config, load_entrypoints=False) as app:
        short_jobs(app, ledger, 31)
        slow = [app.run_background_job("Recorder", "sleep", {"seconds": 0.15, "ledger": ledger},
                                       priority=2) for _ in range(32)]
        worker = start_worker(config, "-n", "1")
        wait_for(lambda: count(app, *FINAL) == 63, timeout=120, what="every job final")
        assert sum(app.get_job(job_id).crashes for job_id in slow) == 0
    assert "past its lease" not in worker.text()
    assert runs_per_job(ledger, "start") == dict.fromkeys(slow, 1)


def test_a_job_is_timed_from_its_start_not_its_batch(
    tmp_path: Path, store_url: str, ledger: str, start_worker: Any
) -> None:
    """A job of 3 s with a 5 s timeout, claimed after 30 jobs of 150 ms: it completes; the
    supervisor does not count the time before it started against its timeout."""
    config = store_config(tmp_path, store_url, defaults={"retry_attempts": 0},
                          worker={"lease": 10.0})
    with JobKit.from_config(config, load_entrypoints=False) as app:
        short_jobs(app, ledger, 31)
        for _ in range(30):
            app.run_background_job("Recorder", "sleep", {"seconds": 0.15}, priority=2)
        target = app.run_background_job("Recorder", "sleep", {"seconds": 3.0}, priority=1,
                                        timeout=5)
        start_worker(config, "-n", "1")
        wait_for(lambda: count(app, *FINAL) == 62, timeout=120, what="every job final")
        record = app.get_job(target)
    assert record.status == JobStatus.COMPLETED, record.error


def test_a_finished_job_with_a_short_timeout_is_not_timed_out(
    tmp_path: Path, store_url: str, ledger: str, start_worker: Any
) -> None:
    """A job with a 1 s timeout finishes at once, then 31 jobs of 150 ms follow it: its
    completion is recorded, never a timeout, and it runs once."""
    config = store_config(tmp_path, store_url, defaults={"retry_attempts": 1},
                          worker={"lease": 10.0})
    with JobKit.from_config(config, load_entrypoints=False) as app:
        short_jobs(app, ledger, 31, tag="warm")
        quick = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "quick"},
                                       priority=2, timeout=1)
        for _ in range(31):
            app.run_background_job("Recorder", "sleep", {"seconds": 0.15}, priority=1)
        start_worker(config, "-n", "1")
        wait_for(lambda: count(app, *FINAL) == 63, timeout=120, what="every job final")
        assert app.get_job(quick).status == JobStatus.COMPLETED
    assert runs_per_job(ledger, "quick") == {quick: 1}


def test_a_shutdown_that_kills_a_process_records_what_it_finished(
    tmp_path: Path, store_url: str, ledger: str, start_worker: Any
) -> None:
    """SIGTERM while a job holds the GIL after 40 short jobs: the process cannot stop and is
    killed at the end of the shutdown; the jobs it finished are recorded from its journal
    (none is left running), and a later worker runs none of them again."""
    config = store_config(tmp_path, store_url, defaults={"retry_attempts": 0},
                          worker={"lease": 20.0, "shutdown_grace": 1.0})
    with JobKit.from_config(config, load_entrypoints=False) as app:
        ok = short_jobs(app, ledger, 40)
        app.run_background_job("Recorder", "busy_in_c", {"n": 10**9}, priority=2)
        worker = start_worker(config, "-n", "1")
        wait_for(lambda: len(read_ledger(ledger)) == 40, timeout=30, what="40 jobs run")
        time.sleep(0.3)
        worker.process.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        assert [app.get_job(job_id).status for job_id in ok] == [JobStatus.COMPLETED] * 40
        start_worker(config, "-n", "1")
        wait_for(lambda: count(app, *FINAL) == 41, timeout=120, what="every job final")
    assert runs_per_job(ledger, "ok") == dict.fromkeys(ok, 1)


#: test_volume's scenario 1 with the batch hold forced: one job in ten sleeps longer than a
#: batch is held.
HELD_JOBS = 100
HELD_SLEEP = 0.3


def test_jobs_a_held_batch_hands_back_run_once_and_count_once(
    tmp_path: Path, store_url: str, ledger: str, start_worker: Any
) -> None:
    """What a loaded machine now and then does to test_volume's 2,000 jobs, on purpose: one
    worker process, and every tenth job sleeps longer than a batch is held (0.2 s), so the
    jobs claimed with it are handed back (docs/worker.md). Each job still runs exactly once
    and ends completed with one attempt that counts; a job handed back also has a closed
    handed_back row, numbered 1 (uncounted). The check before counted_attempts (one row per
    job) fails here every time, as it did now and then in test_volume under load."""
    config = store_config(tmp_path, store_url, defaults={"retry_attempts": 5, "retry_delay": 0})
    with JobKit.from_config(config, load_entrypoints=False) as app:
        ids = [
            app.run_background_job("Recorder", "sleep", {"seconds": HELD_SLEEP, "ledger": ledger})
            if n % 10 == 9
            else app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "held"})
            for n in range(HELD_JOBS)
        ]
        code, out = start_worker(config, "-n", "1", "--burst").wait(timeout=120)
        assert code == 0, out

        runs = Counter(str(entry["job"]) for entry in read_ledger(ledger)
                       if entry["tag"] in ("held", "start"))
        assert runs == dict.fromkeys(ids, 1), "a job never ran, or ran twice"
        storage = app.storage
        handed_back = 0
        for job_id in ids:
            record = storage.get(job_id)
            assert (record.status, record.attempts) == (JobStatus.COMPLETED, 1), record
            attempts = storage.attempts(job_id)
            (attempt,) = counted_attempts(attempts, 1)
            assert attempt.outcome == AttemptOutcome.SUCCEEDED, attempt
            handed_back += len(attempts) - 1
        # the reason for this test: without hand-backs it shows nothing
        assert handed_back > 0, "no batch was handed back"
        print(f"{handed_back} attempt(s) handed back")
