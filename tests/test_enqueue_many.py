"""enqueue_many: many jobs of one method validated together and stored in one transaction."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_config
from sample_jobs import read_ledger

import jobkit
from jobkit import InvalidParameters, JobKit, JobStatus
from jobkit.worker import run_until_empty


def test_stores_in_order_and_runs(app: JobKit, ledger: str) -> None:
    """Ids come back in the order of the params; every job runs; one enqueued event each."""
    ids = app.enqueue_many(
        "Recorder", "record", [{"ledger": ledger, "tag": str(n)} for n in range(30)], priority=2
    )
    assert len(set(ids)) == 30 and [int(i) for i in ids] == sorted(int(i) for i in ids)
    records = [app.get_job(job_id) for job_id in ids]
    assert [r.params["tag"] for r in records] == [str(n) for n in range(30)]
    assert {(r.status, r.priority) for r in records} == {(JobStatus.PENDING, 2)}
    run_until_empty(app)
    assert [entry["tag"] for entry in read_ledger(ledger)] == [str(n) for n in range(30)]


def test_one_bad_params_stores_nothing_and_names_its_index(app: JobKit, ledger: str) -> None:
    """A missing param in the third params: InvalidParameters naming params[2], nothing stored."""
    params = [{"ledger": ledger, "tag": "a"}, {"ledger": ledger, "tag": "b"}, {"ledger": ledger}]
    with pytest.raises(InvalidParameters, match=r"params\[2\] tag: missing"):
        app.enqueue_many("Recorder", "record", params)
    assert app.storage.count() == 0


def test_size_cap_names_the_index(tmp_path: Path, ledger: str) -> None:
    """max_params_bytes applies to each params, naming the one over it."""
    config = make_config(tmp_path, defaults={"max_params_bytes": 200})
    with JobKit(config, load_entrypoints=False) as app:
        params = [{"ledger": ledger, "tag": "x"}, {"ledger": ledger, "tag": "y" * 300}]
        with pytest.raises(InvalidParameters, match=r"params\[1\]: \d+ bytes of JSON"):
            app.enqueue_many("Recorder", "record", params)
        assert app.storage.count() == 0


def test_empty_and_default_app(tmp_path: Path, ledger: str) -> None:
    """An empty list stores nothing; jobkit.enqueue_many uses the default app."""
    with JobKit(make_config(tmp_path), load_entrypoints=False) as app:
        jobkit.set_default_app(app)
        assert jobkit.enqueue_many("Recorder", "record", []) == []
        (job_id,) = jobkit.enqueue_many("Recorder", "record", [{"ledger": ledger, "tag": "d"}])
        assert app.get_job(job_id).params == {"ledger": ledger, "tag": "d"}
