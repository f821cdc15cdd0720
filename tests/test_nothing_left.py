"""``nothing_left``: when a ``--burst`` worker may stop, and which reads it takes to know.

The store's counts by status settle the common cases (nothing left at all; a job running, for a
worker of every queue) without the queues' states, whose count of the attempts ended in the last
minute grows with the throughput; the other cases read the states, paused queues and
``--queues`` as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import make_config

from jobkit import JobKit
from jobkit.storage.base import Storage
from jobkit.worker import nothing_left

QUEUED = {"Recorder": {"class": "sample_jobs:Recorder", "queue": "mail"},
          "Slow": {"class": "sample_jobs:Slow"}}


@pytest.fixture
def app(tmp_path: Path) -> Any:
    """An app on a SQLite store with a ``mail`` queue (Recorder) and ``default`` (Slow)."""
    with JobKit(make_config(tmp_path, jobs=QUEUED), load_entrypoints=False) as kit:
        yield kit


def states_read(app: JobKit, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one at every read of the store's queue states."""
    reads: list[int] = []
    store: Storage = app.storage
    original = store.queue_states  # type: ignore[attr-defined]

    def counted() -> Any:
        reads.append(1)
        return original()

    monkeypatch.setattr(store, "queue_states", counted)
    return reads


def enqueue_mail(app: JobKit, ledger: Path) -> str:
    """One Recorder job, in the ``mail`` queue."""
    return app.run_background_job("Recorder", "record",
                                  {"ledger": str(ledger), "tag": "a"})


class TestWithoutTheQueueStates:
    def test_an_empty_store_has_nothing_left(self, app: JobKit,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
        reads = states_read(app, monkeypatch)
        assert nothing_left(app)
        assert nothing_left(app, app.flow(["mail"]))
        assert reads == []

    def test_a_running_job_is_left_for_a_worker_of_every_queue(
        self, app: JobKit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        enqueue_mail(app, tmp_path / "ledger")
        assert app.storage.claim("w", 30) is not None
        app.pause_queue("mail")  # a paused queue's running jobs still count
        reads = states_read(app, monkeypatch)
        assert not nothing_left(app)
        assert reads == []


class TestWithTheQueueStates:
    def test_a_paused_queue_s_waiting_jobs_are_not_left(
        self, app: JobKit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        enqueue_mail(app, tmp_path / "ledger")
        reads = states_read(app, monkeypatch)
        assert not nothing_left(app)
        app.pause_queue("mail")
        assert nothing_left(app)
        app.resume_queue("mail")
        assert not nothing_left(app)
        assert reads

    def test_only_the_worker_s_queues_count(
        self, app: JobKit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        enqueue_mail(app, tmp_path / "ledger")
        assert app.storage.claim("w", 30) is not None
        reads = states_read(app, monkeypatch)
        assert nothing_left(app, app.flow(["default"]))
        assert not nothing_left(app, app.flow(["mail"]))
        assert reads
