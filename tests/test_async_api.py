"""The async API (issue 21, item 2): ``arun_background_job`` and the rest, ``await_job``.

With real worker processes on SQLite and PostgreSQL: the caller's event loop keeps running
while it enqueues and awaits (a ticker coroutine measures it), ``await_job`` hears of the end
from the store's signal (its fallback read is pushed out of reach, so only the signal can end
the wait), cancel and timeout. Plain ``asyncio.run``: no async test plugin is configured.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import make_config, wait_for, write_config

import jobkit
from jobkit import JobKit, JobNotFoundInStorage, JobStatus, JobWaitTimeout
from jobkit.exceptions import ConfigError, JobkitError, StorageError
from jobkit.records import AttemptOutcome
from jobkit.storage.base import Storage
from jobkit.storage.capabilities import supports
from jobkit.storage.memory import MemoryStorage
from jobkit.testing.conformance import lease_of, new_job

T = TypeVar("T")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """jobs.yaml's overrides for a store of each backend (PostgreSQL: a fresh database)."""
    if request.param == "sqlite":
        return {}
    return {"storage": request.getfixturevalue("empty_postgres_url")}


@pytest.fixture
def worker_app(tmp_path: Path, store_config: dict[str, Any], start_worker: Callable[..., Any],
               signal_only: None) -> Iterator[JobKit]:
    """An app on each backend with a `jobkit worker` of two processes running its jobs."""
    config = write_config(tmp_path, **store_config)
    start_worker(config, "-n", "2")
    with JobKit.from_config(str(config), load_entrypoints=False) as app:
        yield app


@pytest.fixture
def signal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The watch of ends reads the jobs only when the store signals.

    Its fallback read (once a second) is pushed past every wait of the test."""
    monkeypatch.setattr("jobkit.job_ends.FALLBACK", 120.0)


class Ticker:
    """A coroutine that sleeps 10 ms at a time and keeps the longest gap between two ticks."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.ticks = 0

    async def run(self, stop: asyncio.Event) -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            self.longest = max(self.longest, now - last)
            self.ticks += 1
            last = now


async def ticking(work: Callable[[], Awaitable[T]]) -> tuple[T, Ticker]:
    """``work()``'s result, awaited while a :class:`Ticker` runs beside it."""
    ticker, stop = Ticker(), asyncio.Event()
    task = asyncio.create_task(ticker.run(stop))
    try:
        return await work(), ticker
    finally:
        stop.set()
        await task


def lag(finished_at: datetime | None) -> float:
    """Seconds from the job's end (the store's clock, this machine's) to now."""
    assert finished_at is not None
    return (datetime.now(timezone.utc) - finished_at).total_seconds()


class TestWithWorkers:
    def test_await_job_hears_the_end_and_the_loop_keeps_running(self, worker_app: JobKit
                                                                ) -> None:
        """A job awaited from async code comes back soon after its end; the loop goes on.

        Its completed record comes back from the store's signal alone; meanwhile a ticker of
        10 ms goes on (a blocking await would stop it for the job's whole second)."""
        app = worker_app

        async def work() -> tuple[list[float], list[jobkit.JobRecord]]:
            lags, records = [], []
            for _ in range(3):
                job_id = await app.arun_background_job("Recorder", "sleep", {"seconds": 1.0})
                record = await app.await_job(job_id, timeout=60)
                lags.append(lag(record.finished_at))
                records.append(record)
            return lags, records

        (lags, records), ticker = asyncio.run(ticking(work))
        print(f"\nawait_job returned {', '.join(f'{s * 1000:.0f}' for s in lags)} ms after "
              f"the end; longest gap between ticks {ticker.longest * 1000:.0f} ms "
              f"({ticker.ticks} ticks)")
        assert [r.status for r in records] == [JobStatus.COMPLETED] * 3
        assert [r.result for r in records] == ["slept"] * 3
        assert max(lags) < 5.0  # the fallback read was 120 s away: the signal ended each wait
        assert ticker.longest < 0.5  # 1 s jobs: a loop blocked by the wait would show >= 1 s

    def test_many_awaited_at_once(self, worker_app: JobKit) -> None:
        """Twenty jobs of aenqueue_many awaited together: each gets its own record."""
        app = worker_app

        async def work() -> list[jobkit.JobRecord]:
            ids = await app.aenqueue_many("Recorder", "sleep",
                                          [{"seconds": 0.05 * (i % 4)} for i in range(20)])
            return list(await asyncio.gather(*(app.await_job(i, timeout=60) for i in ids)))

        records, ticker = asyncio.run(ticking(work))
        assert len({r.id for r in records}) == 20
        assert all(r.status is JobStatus.COMPLETED for r in records)
        assert ticker.longest < 0.5

    def test_acancel_job_of_a_running_job_ends_its_wait(self, worker_app: JobKit) -> None:
        """A running job cancelled with acancel_job: await_job returns it cancelled."""
        app = worker_app

        async def work() -> tuple[bool, jobkit.JobRecord]:
            job_id = await app.arun_background_job("Recorder", "sleep", {"seconds": 60})
            waiting = asyncio.create_task(app.await_job(job_id, timeout=60))
            while (await app.aget_job(job_id)).status is not JobStatus.RUNNING:
                await asyncio.sleep(0.02)
            cancelled = await app.acancel_job(job_id)
            return cancelled, await waiting

        (cancelled, record), ticker = asyncio.run(ticking(work))
        assert cancelled is True
        assert record.status is JobStatus.CANCELLED
        print(f"\ncancelled job's wait ended {lag(record.finished_at) * 1000:.0f} ms after")
        assert ticker.longest < 0.5


class TestTheWait:
    def test_a_timeout_raises_and_the_job_goes_on(self, app: JobKit) -> None:
        """JobWaitTimeout (a JobkitError and a TimeoutError) names the job, still pending."""
        job_id = app.run_background_job("Recorder", "sleep", {"seconds": 0})
        started = time.monotonic()
        with pytest.raises(JobWaitTimeout) as raised:
            asyncio.run(app.await_job(job_id, timeout=0.3))
        assert time.monotonic() - started >= 0.3
        assert isinstance(raised.value, TimeoutError) and isinstance(raised.value, JobkitError)
        assert raised.value.job_id == job_id and job_id in str(raised.value)
        with pytest.raises(TimeoutError):
            app.wait_job(job_id, timeout=0.1)
        assert app.get_job(job_id).status is JobStatus.PENDING

    def test_an_unknown_id_is_job_not_found_in_storage(self, app: JobKit) -> None:
        """As get_job: async and sync, and aget_job too."""
        with pytest.raises(JobNotFoundInStorage):
            asyncio.run(app.await_job("999999", timeout=5))
        with pytest.raises(JobNotFoundInStorage):
            app.wait_job("999999", timeout=5)
        with pytest.raises(JobNotFoundInStorage):
            asyncio.run(app.aget_job("999999"))

    def test_a_connection_is_refused_by_the_async_calls(self, app: JobKit,
                                                        tmp_path: Path) -> None:
        """connection= (the caller's transaction) cannot cross into the async calls' thread."""
        import sqlite3

        conn = sqlite3.connect(tmp_path / "other.db")
        try:
            for call in (app.arun_background_job("Recorder", "sleep", {"seconds": 0},
                                                 connection=conn),
                         app.aenqueue_many("Recorder", "sleep", [{"seconds": 0}],
                                           connection=conn)):
                with pytest.raises(ConfigError, match=r"call: connection: not with "
                                   r"a(run_background_job|enqueue_many): it runs in a thread"):
                    asyncio.run(call)
        finally:
            conn.close()

    def test_a_job_ended_before_the_wait_returns_at_once(self, app: JobKit) -> None:
        """A cancelled job: its record, without waiting for any signal."""
        job_id = app.run_background_job("Recorder", "sleep", {"seconds": 0})
        assert asyncio.run(app.acancel_job(job_id)) is True
        assert asyncio.run(app.await_job(job_id, timeout=0)).status is JobStatus.CANCELLED
        assert app.wait_job(job_id, timeout=0).status is JobStatus.CANCELLED

    def test_an_end_in_another_thread_ends_a_sync_wait(self, app: JobKit,
                                                       signal_only: None) -> None:
        """wait_job blocks until a cancel from another thread (another SQLite connection)."""
        job_id = app.run_background_job("Recorder", "sleep", {"seconds": 0})
        timer = threading.Timer(0.3, app.cancel_job, [job_id])
        timer.start()
        try:
            assert app.wait_job(job_id, timeout=30).status is JobStatus.CANCELLED
        finally:
            timer.join()

    def test_the_memory_store_is_read_until_the_end(self, tmp_path: Path) -> None:
        """A store without the capability ``ends`` (memory): the wait reads the job."""
        with JobKit(make_config(tmp_path), load_entrypoints=False,
                    storage=MemoryStorage()) as app:
            job_id = app.run_background_job("Recorder", "sleep", {"seconds": 0})

            async def work() -> jobkit.JobRecord:
                waiting = asyncio.create_task(app.await_job(job_id, timeout=30))
                await asyncio.sleep(0.2)
                assert not waiting.done()
                await app.acancel_job(job_id)
                return await waiting

            assert asyncio.run(work()).status is JobStatus.CANCELLED

    def test_a_wait_given_up_leaves_no_waiter(self, app: JobKit) -> None:
        """A timed-out wait, a cancelled task: the watch forgets them; two waits of one job."""
        job_id = app.run_background_job("Recorder", "sleep", {"seconds": 0})

        async def work() -> None:
            first = asyncio.create_task(app.await_job(job_id))
            second = asyncio.create_task(app.await_job(job_id, timeout=0.2))
            await asyncio.sleep(0.1)
            assert app.end_watch.waiting() == 2
            with pytest.raises(JobWaitTimeout):
                await second
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first

        asyncio.run(work())
        assert app.end_watch.waiting() == 0

    def test_a_close_ends_the_waits(self, app: JobKit) -> None:
        """app.close() while a wait goes on: the wait ends with a StorageError."""
        job_id = app.run_background_job("Recorder", "sleep", {"seconds": 0})

        async def work() -> None:
            waiting = asyncio.create_task(app.await_job(job_id, timeout=30))
            await asyncio.sleep(0.3)
            await asyncio.to_thread(app.close)
            await waiting

        with pytest.raises(StorageError, match="app was closed"):
            asyncio.run(work())


class TestTheCalls:
    def test_the_async_calls_check_as_the_sync_ones(self, app: JobKit) -> None:
        """run_at and depends_on pass through; a bad call raises at the await."""
        when = datetime.now(timezone.utc) + timedelta(hours=1)

        async def work() -> tuple[jobkit.JobRecord, jobkit.JobRecord]:
            first = await app.arun_background_job("Recorder", "sleep", {"seconds": 0},
                                                  run_at=when)
            second = await app.arun_background_job("Recorder", "sleep", {"seconds": 0},
                                                   depends_on=[first])
            with pytest.raises(ConfigError, match="no job with id"):
                await app.arun_background_job("Recorder", "sleep", {"seconds": 0},
                                              depends_on=["999999"])
            with pytest.raises(jobkit.InvalidParameters):
                await app.arun_background_job("Recorder", "sleep", {"nope": 1})
            return await app.aget_job(first), await app.aget_job(second)

        first, second = asyncio.run(work())
        assert first.available_at == when.replace(microsecond=first.available_at.microsecond)
        assert second.status is JobStatus.BLOCKED

    def test_the_module_functions_use_the_default_app(self, tmp_path: Path) -> None:
        """jobkit.arun_background_job ... await_job on the default app."""
        app = JobKit(make_config(tmp_path), load_entrypoints=False)
        jobkit.set_default_app(app)

        async def work() -> jobkit.JobRecord:
            (job_id,) = await jobkit.aenqueue_many("Recorder", "sleep", [{"seconds": 0}])
            other = await jobkit.arun_background_job("Recorder", "sleep", {"seconds": 0})
            assert (await jobkit.aget_job(other)).status is JobStatus.PENDING
            assert await jobkit.acancel_job(job_id) is True
            return await jobkit.await_job(job_id, timeout=5)

        assert asyncio.run(work()).status is JobStatus.CANCELLED
        cancelled = jobkit.list_jobs(status="cancelled")
        assert jobkit.wait_job(cancelled[0].id, timeout=0.1).status is JobStatus.CANCELLED

    def test_the_async_methods_are_coroutine_functions_with_the_same_signature(self) -> None:
        """What a framework (FastAPI) and help() see."""
        import inspect

        for name in ("run_background_job", "enqueue_many", "get_job", "cancel_job"):
            method = getattr(JobKit, f"a{name}")
            assert inspect.iscoroutinefunction(method), name
            assert inspect.signature(method) == inspect.signature(getattr(JobKit, name))
            assert method.__doc__.splitlines()[0].startswith(f":meth:`{name}` from async code")
        assert inspect.iscoroutinefunction(JobKit.await_job)



@pytest.fixture
def store(store_config: dict[str, Any], tmp_path: Path) -> Iterator[Storage]:
    """A store of each backend, as the app opens it."""
    with JobKit(make_config(tmp_path, **store_config), load_entrypoints=False) as app:
        yield app.storage


class TestTheSignal:
    def test_wait_for_ends_wakes_on_an_end_and_not_on_a_claim(self, store: Storage) -> None:
        """Capability ``ends``: an end in another thread ends the wait, a claim does not.

        A thread's first wait returns at once; PostgreSQL names the job that ended, SQLite
        cannot (any commit of another connection wakes it; this thread's own claim does not).
        """
        assert supports(store, "ends")
        assert store.wait_for_ends(30) is None  # the first: nothing to compare with yet
        store.enqueue(new_job(store.now()))
        store.wait_for_ends(0.2)  # (SQLite: the enqueues' commits)
        claimed = store.claim("w1", 30)
        assert claimed is not None
        started = time.monotonic()
        assert store.wait_for_ends(0.3) is None  # nothing ended: the timeout
        assert time.monotonic() - started >= 0.3
        ender = threading.Timer(0.2, store.settle, [lease_of(claimed), AttemptOutcome.SUCCEEDED])
        ender.start()
        try:
            ended = store.wait_for_ends(30)
        finally:
            ender.join()
        assert time.monotonic() - started < 20
        assert ended is None or ended == {claimed.id}  # SQLite cannot say which
        assert store.get(claimed.id).status is JobStatus.COMPLETED


class TestInAJob:
    def test_a_job_that_waits_is_still_cancelled_and_sees_the_end(
        self, tmp_path: Path, start_worker: Callable[..., Any],
    ) -> None:
        """wait_job inside a running job: a cancel stops it, and a waiter sees the end.

        SQLite, a real worker of one process: the cancel stops the job's code while it waits
        (the wait is not shielded from the job's interrupt: its process is not ended), and a
        second waiting job gets the end of the job it waits for."""
        config = write_config(tmp_path, jobs={"Waiter": {"class": "sample_jobs:Waiter"}})
        worker = start_worker(config, "-n", "1")  # the next job runs once the first stopped
        with JobKit.from_config(str(config), load_entrypoints=False) as app:
            later = datetime.now(timezone.utc) + timedelta(hours=1)
            awaited = app.run_background_job("Recorder", "sleep", {"seconds": 0}, run_at=later)
            stopped = app.run_background_job("Waiter", "wait_for", {"job_id": awaited})
            wait_for(lambda: app.get_job(stopped).status is JobStatus.RUNNING, timeout=60,
                     what="the waiting job to start")
            told = app.run_background_job("Waiter", "wait_for", {"job_id": awaited})
            assert app.cancel_job(stopped) is True
            cancelled_at = time.monotonic()
            wait_for(lambda: app.get_job(told).status is JobStatus.RUNNING, timeout=60,
                     what="the second waiting job to start")
            print(f"\nthe next job started {time.monotonic() - cancelled_at:.2f} s after the "
                  "cancel of the waiting one")
            assert "did not stop within" not in worker.text()  # stopped, not its process ended
            app.cancel_job(awaited)
            record = app.wait_job(told, timeout=60)
        assert (record.status, record.result) == (JobStatus.COMPLETED, "cancelled")
