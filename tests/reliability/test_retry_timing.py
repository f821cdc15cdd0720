"""Scenario 10: retries keep their timing, and a failure's record stays small.

A job set to ``retry_attempts: 3, retry_delay: 1`` in jobs.yaml that always fails runs exactly
four times, each run starting 1 to 1.5 s after the one before (the ledger's wall-clock times,
and the attempts' ``started_at`` in the store), and ends ``failed`` with four failed attempts.
Jobs whose exceptions are huge (a 5 MB message; a chain of hundreds of causes) fail the same way,
but what jobkit stores, logs and reports of them is capped in size, cut with a marker.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from fault_jobs import HUGE
from sample_jobs import read_ledger

from jobkit import JobKit, JobStatus
from jobkit.records import AttemptOutcome
from jobkit.transitions import MAX_ERROR_CHARS, MAX_TRACEBACK_CHARS
from reliability.conftest import store_config

pytestmark = pytest.mark.slow

RETRIES = {"retry_attempts": 3, "retry_delay": 1, "backoff": "fixed", "jitter": 0}
#: A retry may start this much later than its delay (claiming, a loaded 2-core machine).
SLACK = 0.5
#: Causes chained onto the last exception of Huge.chained: about 160 KB of traceback.
LINKS = 500


def runs_of(ledger: str, job_id: str) -> list[dict[str, Any]]:
    """The ledger's entries of one job, in the order they were written."""
    return [entry for entry in read_ledger(ledger) if entry["job"] == job_id]


def gaps(times: list[float]) -> list[float]:
    """The time between each start and the next."""
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def test_an_always_failing_job_runs_four_times_a_second_apart_and_fails(
    tmp_path: Path, store_url: str, ledger: str, start_worker: Callable[..., Any]
) -> None:
    """retry_attempts 3, retry_delay 1: exactly four runs, gaps within [1 s, 1.5 s] by the ledger
    and by the attempts' started_at, then ``failed`` with four failed attempts, each with the
    error and traceback of its own run. A 5 MB exception message and a 500-link exception chain
    fail the same way, but their stored error (at most MAX_ERROR_CHARS) and traceback (at most
    MAX_TRACEBACK_CHARS) are cut, keeping head and tail around a marker; the log files and the
    worker's output stay small too."""
    config = store_config(
        tmp_path,
        store_url,
        jobs={
            "Recorder": {"class": "sample_jobs:Recorder", **RETRIES},
            "Huge": {"class": "fault_jobs:Huge", **RETRIES},
        },
    )
    with JobKit.from_config(config, load_entrypoints=False) as app:
        failing = app.run_background_job("Recorder", "fail", {"ledger": ledger, "tag": "timing"})
        huge = app.run_background_job("Huge", "explode", {"ledger": ledger})
        chained = app.run_background_job("Huge", "chained", {"ledger": ledger, "links": LINKS})
        worker = start_worker(config, "-n", "3")
        wait_for(
            lambda: all(app.get_job(job).status.is_final for job in (failing, huge, chained)),
            timeout=30,
            what="the three jobs to end",
        )
        records = {job: app.get_job(job) for job in (failing, huge, chained)}
        attempts = {job: app.get_attempts(job) for job in records}

    # exactly four runs of each job, attempts 1..4, the last ending the job as failed
    for job, record in records.items():
        assert [entry["attempt"] for entry in runs_of(ledger, job)] == [1, 2, 3, 4], job
        assert record.status is JobStatus.FAILED, record
        assert record.attempts == record.max_attempts == 4, record
        assert [a.attempt for a in attempts[job]] == [1, 2, 3, 4]
        assert all(a.outcome is AttemptOutcome.FAILED for a in attempts[job]), attempts[job]

    # the gaps: by the worker's clock (ledger) and by the store's (attempts' started_at)
    ledger_gaps = gaps([entry["at"] for entry in runs_of(ledger, failing)])
    store_gaps = gaps([a.started_at.timestamp() for a in attempts[failing]])
    for measured in (ledger_gaps, store_gaps):
        assert len(measured) == 3
        assert all(1.0 <= gap <= 1.0 + SLACK for gap in measured), measured

    # the ordinary failure: each attempt's own message and traceback, whole
    for number, attempt in enumerate(attempts[failing], start=1):
        assert attempt.error == f"RuntimeError: planned failure {number}"
        assert attempt.traceback is not None
        assert attempt.traceback.startswith("Traceback (most recent call last):")
        assert attempt.traceback.rstrip().endswith(f"RuntimeError: planned failure {number}")
        assert "cut by jobkit" not in attempt.traceback
    assert records[failing].error == "RuntimeError: planned failure 4"

    # the 5 MB message: error and traceback cut, head and tail kept, the cut marked
    for text in [records[huge].error] + [a.error for a in attempts[huge]]:
        assert text is not None and len(text) <= MAX_ERROR_CHARS
        assert text.startswith("RuntimeError: HEADxxx") and text.endswith("xxxTAIL")
        assert "cut by jobkit" in text
    for attempt in attempts[huge]:
        trace = attempt.traceback
        assert trace is not None and len(trace) <= MAX_TRACEBACK_CHARS
        assert trace.startswith("Traceback (most recent call last):")
        assert "fault_jobs.py" in trace and "in explode" in trace  # where it was raised
        assert trace.rstrip().endswith("xxxTAIL") and "cut by jobkit" in trace

    # the long chain: the innermost cause (head) and the final exception (tail) both kept
    for attempt in attempts[chained]:
        trace = attempt.traceback
        assert trace is not None and len(trace) <= MAX_TRACEBACK_CHARS
        assert "KeyError: 'first link'" in trace[:2000]
        assert trace.rstrip().endswith(f"RuntimeError: link {LINKS}")
        assert "cut by jobkit" in trace

    # nothing else kept the whole text either: logs and the worker's output stay small
    logs = sum(path.stat().st_size for path in (tmp_path / "logs").rglob("*") if path.is_file())
    assert logs < HUGE, f"{logs} bytes of logs"
    assert worker.output.stat().st_size < HUGE
