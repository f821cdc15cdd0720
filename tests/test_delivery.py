"""The delivery thread of job events (jobkit.delivery).

It delivers batches in order, wakes when it sleeps, flushes without lingering, survives a
deliverer that raises, and starts anew in a forked child.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import make_config, wait_for

import jobkit.delivery
from jobkit import EventKind, JobEvent, JobKit, hookimpl
from jobkit.delivery import DeliveryThread
from jobkit.records import JobRecord, JobStatus


def _event(number: int) -> JobEvent:
    now = datetime.now(UTC)
    job = JobRecord(id=str(number), name="Job", method="handle", params={},
                    status=JobStatus.PENDING, priority=0, attempts=0, max_attempts=1,
                    result=None, error=None, created_at=now, available_at=now)
    return JobEvent(kind=EventKind.ENQUEUED, job=job)


class Recorder:
    """A deliverer that records each batch; ``gate`` (set by default) holds it back."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, events: list[JobEvent]) -> None:
        self.entered.set()
        self.gate.wait(10)
        self.batches.append([event.job.id for event in events])

    @property
    def ids(self) -> list[str]:
        return [job_id for batch in self.batches for job_id in batch]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def delivery(recorder: Recorder) -> Iterator[DeliveryThread]:
    thread = DeliveryThread("test-delivery", recorder)
    yield thread
    recorder.gate.set()
    thread.close(timeout=5)


class TestBatches:
    def test_a_burst_is_delivered_in_order_in_batches(
        self, delivery: DeliveryThread, recorder: Recorder
    ) -> None:
        """Events emitted while the deliverer is busy come in a few batches, in order."""
        recorder.gate.clear()
        delivery.emit(_event(0))
        assert recorder.entered.wait(5)
        for number in range(1, 1000):
            delivery.emit(_event(number))
        recorder.gate.set()
        assert delivery.flush(timeout=10)
        assert recorder.ids == [str(number) for number in range(1000)]
        assert len(recorder.batches) < 1000
        assert max(len(batch) for batch in recorder.batches) > 1

    def test_a_sleeping_thread_wakes_for_one_event(
        self, delivery: DeliveryThread, recorder: Recorder
    ) -> None:
        """Without a flush, an event emitted to an idle thread is delivered (after the linger)."""
        delivery.emit(_event(1))
        assert delivery.flush(timeout=5)
        wait_for(lambda: delivery._run is not None and delivery._run.idle, 5,
                 "the thread to fall asleep")
        delivery.emit(_event(2))
        wait_for(lambda: recorder.ids == ["1", "2"], 5, "the second event")

    def test_a_flush_does_not_wait_for_the_linger(
        self, delivery: DeliveryThread, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With a linger of a minute, a flush still delivers at once."""
        monkeypatch.setattr(jobkit.delivery, "LINGER", 60.0)
        for number in range(3):
            delivery.emit(_event(number))
            assert delivery.flush(timeout=5)
        assert recorder.ids == ["0", "1", "2"]

    def test_a_closed_thread_starts_again_on_the_next_event(
        self, delivery: DeliveryThread, recorder: Recorder
    ) -> None:
        """After close, the next event starts a new thread; the old one ends on its own."""
        delivery.emit(_event(1))
        delivery.close(timeout=5)
        delivery.emit(_event(2))
        assert delivery.flush(timeout=5)
        assert recorder.ids == ["1", "2"]

    def test_events_of_several_threads_all_arrive_each_in_order(
        self, delivery: DeliveryThread, recorder: Recorder
    ) -> None:
        """Emitting from 4 threads at once loses no event and keeps each thread's order."""
        def emit(first: int) -> None:
            for number in range(first, first + 500):
                delivery.emit(_event(number))

        threads = [threading.Thread(target=emit, args=(first,)) for first in (0, 1000, 2000, 3000)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert delivery.flush(timeout=10)
        ids = [int(job_id) for job_id in recorder.ids]
        assert sorted(ids) == [first + n for first in (0, 1000, 2000, 3000) for n in range(500)]
        for first in (0, 1000, 2000, 3000):
            assert [n for n in ids if first <= n < first + 500] == list(range(first, first + 500))


class TestFailures:
    def test_a_hung_deliverer_delays_no_caller_and_close_is_bounded(
        self, recorder: Recorder
    ) -> None:
        """emit returns while the deliverer hangs; flush and close give up after their timeout."""
        delivery = DeliveryThread("test-hung", recorder)
        recorder.gate.clear()
        delivery.emit(_event(0))
        assert recorder.entered.wait(5)
        for number in range(1, 10):
            delivery.emit(_event(number))  # returns although nothing can be delivered
        assert not delivery.flush(timeout=0.2)
        assert delivery.undelivered() == 10  # the one in the deliverer's hands, and 9 queued
        delivery.close(timeout=0.2)
        recorder.gate.set()

    def test_what_escapes_the_deliverer_is_logged_and_delivery_goes_on(self) -> None:
        seen: list[str] = []

        def deliver(events: list[JobEvent]) -> None:
            for event in events:
                if event.job.id == "1":
                    raise SystemExit(1)
                seen.append(event.job.id)

        delivery = DeliveryThread("test-raising", deliver)
        try:
            delivery.emit(_event(1))
            assert delivery.flush(timeout=5)
            delivery.emit(_event(2))
            assert delivery.flush(timeout=5)
        finally:
            delivery.close(timeout=5)
        assert seen == ["2"]

    def test_a_plugin_raising_systemexit_keeps_the_event_from_no_other(
        self, tmp_path: Path
    ) -> None:
        """A plugin's SystemExit is logged like any error; the other plugins still get the event."""
        seen: list[str] = []

        class Exiting:
            @hookimpl
            def jobkit_job_event(self, event: JobEvent) -> None:
                raise SystemExit(2)

        class Recording:
            @hookimpl
            def jobkit_job_event(self, event: JobEvent) -> None:
                seen.append(str(event.kind))

        plugins = (Recording(), Exiting())  # pluggy calls the one registered last first
        with JobKit(make_config(tmp_path), load_entrypoints=False, plugins=plugins) as app:
            app.run_background_job("Recorder", "record", {"ledger": "", "tag": "a"})
            app.run_background_job("Recorder", "record", {"ledger": "", "tag": "b"})
            assert app.events.flush()
        assert seen == ["enqueued", "enqueued"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_delivers_its_own_events_only(
    delivery: DeliveryThread, recorder: Recorder
) -> None:
    """The child starts a thread of its own; the parent's queued events stay the parent's."""
    recorder.gate.clear()
    delivery.emit(_event(0))
    assert recorder.entered.wait(5)
    delivery.emit(_event(1))  # queued in the parent when it forks
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its copy of the recorder was held at the gate
        try:
            child = Recorder()
            delivery.deliver = child
            delivery.emit(_event(2))
            ok = delivery.flush(timeout=5)
            os.write(write, f"{ok} {','.join(child.ids)}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    assert answer == "True 2"
    recorder.gate.set()
    assert delivery.flush(timeout=5)
    assert recorder.ids == ["0", "1"]
