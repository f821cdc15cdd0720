"""Concurrency and rate limits under real claim races, on SQLite and PostgreSQL.

Four `jobkit worker -n 4` (16 worker processes) race for the jobs of one limited job; the
ledger the jobs write, and the attempts in the store, show that no limit was ever overshot.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for, write_config
from sample_jobs import read_ledger

from jobkit import JobKit, JobStatus

pytestmark = pytest.mark.slow

WORKERS, PROCESSES = 4, 4


@pytest.fixture(params=["sqlite", "postgresql"])
def store_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """jobs.yaml's overrides for a store of each backend (PostgreSQL: a fresh database)."""
    if request.param == "sqlite":
        return {}
    return {"storage": request.getfixturevalue("empty_postgres_url")}


def most_at_once(entries: list[dict[str, Any]], group: Callable[[dict[str, Any]], Any]
                 ) -> dict[Any, int]:
    """The most jobs of each group that ran at once, from their start and end entries."""
    events = sorted((entry["at"], 0 if entry["tag"] == "end" else 1, group(entry))
                    for entry in entries)
    running: dict[Any, int] = {}
    most: dict[Any, int] = {}
    for _, starting, key in events:
        running[key] = running.get(key, 0) + (1 if starting else -1)
        most[key] = max(most.get(key, 0), running[key])
    return most


def run_all(tmp_path: Path, store_config: dict[str, Any], start_worker: Callable[..., Any],
            entry: dict[str, Any], params: list[dict[str, Any]], timeout: float = 120
            ) -> JobKit:
    """Run ``params`` of job ``Limited`` with four workers of four processes each.

    ``entry`` is its jobs.yaml entry; the app is returned open on the store once all are done.
    """
    jobs = {"Limited": {"class": "sample_jobs:Limited", **entry}}
    config = write_config(tmp_path, **store_config, jobs=jobs)
    app = JobKit.from_config(str(config), load_entrypoints=False)
    app.enqueue_many("Limited", "work", params)
    for _ in range(WORKERS):
        start_worker(config, "-n", str(PROCESSES))
    wait_for(lambda: app.storage.count(status=JobStatus.COMPLETED) == len(params),
             timeout=timeout, what="every limited job to complete")
    return app


class TestConcurrency:
    def test_never_more_than_the_limit_at_once(
        self, tmp_path: Path, ledger: str, store_config: dict[str, Any],
        start_worker: Callable[..., Any],
    ) -> None:
        """200 jobs of 50 ms under ``concurrency: 2``: at most 2 overlap, and 2 do overlap."""
        params = [{"seconds": 0.05, "ledger": ledger}] * 200
        with run_all(tmp_path, store_config, start_worker, {"concurrency": 2}, params):
            pass
        most = most_at_once(read_ledger(ledger), lambda entry: "all")
        assert most == {"all": 2}

    def test_a_keyed_limit_holds_per_customer(
        self, tmp_path: Path, ledger: str, store_config: dict[str, Any],
        start_worker: Callable[..., Any],
    ) -> None:
        """``{limit: 1, key: customer_id}``: one at a time per customer, customers in parallel."""
        params = [{"seconds": 0.05, "customer_id": n % 5, "ledger": ledger} for n in range(100)]
        entry = {"concurrency": {"limit": 1, "key": "customer_id"}}
        with run_all(tmp_path, store_config, start_worker, entry, params):
            pass
        entries = read_ledger(ledger)
        assert most_at_once(entries, lambda entry: entry["customer"]) == dict.fromkeys(
            range(5), 1)
        assert most_at_once(entries, lambda entry: "all")["all"] > 1


class TestRate:
    def test_no_window_holds_more_starts_than_the_rate(
        self, tmp_path: Path, ledger: str, store_config: dict[str, Any],
        start_worker: Callable[..., Any],
    ) -> None:
        """``rate_limit: 20/s``: no 1 s window of the store's start times holds over 20."""
        params = [{"seconds": 0, "ledger": ledger}] * 100
        with run_all(tmp_path, store_config, start_worker, {"rate_limit": "20/s"},
                     params) as app:
            starts = sorted(attempt.started_at for job in app.storage.list(limit=200)
                            for attempt in app.get_attempts(job.id))
        assert len(starts) == 100
        second = timedelta(seconds=1)
        busiest = max(sum(1 for other in starts if start <= other < start + second)
                      for start in starts)
        assert busiest == 20
        assert starts[-1] - starts[0] >= timedelta(seconds=4)  # 100 starts at 20 a second


class TestWhyWaiting:
    def test_a_job_held_back_by_a_limit_says_which(self, tmp_path: Path, ledger: str) -> None:
        """`why_waiting` names the limit: its job or queue, key value, and what it has used."""
        from jobkit.storage.capabilities import ControlsFlow

        jobs = {"Limited": {"class": "sample_jobs:Limited",
                            "concurrency": {"limit": 1, "key": "customer_id"},
                            "rate_limit": "2/h"}}
        with JobKit.from_config(str(write_config(tmp_path, jobs=jobs)),
                                load_entrypoints=False) as app:
            ids = app.enqueue_many("Limited", "work", [{"seconds": 0, "customer_id": n}
                                                       for n in (7, 7, 8, 9)])
            store = app.storage
            assert isinstance(store, ControlsFlow)
            assert len(store.claim_from(app.flow(), "w1", 30.0, 1)) == 1
            assert app.why_waiting(ids[1]) == (
                "concurrency limit of job Limited for customer_id=7: 1 of 1 running")
            assert app.why_waiting(ids[2]).startswith("due: waiting for a free worker")
            assert len(store.claim_from(app.flow(), "w2", 30.0, 1)) == 1
            reason = app.why_waiting(ids[3])
            assert reason.startswith("rate limit of job Limited (2/h): next start after "), reason


class TestConfiguration:
    @pytest.mark.parametrize(("entry", "error"), [
        ({"rate_limit": "ten/s"}, 'jobs.Limited.rate_limit: expected a rate such as "10/s"'),
        ({"rate_limit": "5/d"}, 'jobs.Limited.rate_limit: expected a rate such as "10/s"'),
        ({"concurrency": 0}, "jobs.Limited.concurrency: expected an integer >= 1"),
        ({"concurrency": True}, "jobs.Limited.concurrency: expected an integer >= 1"),
        ({"concurrency": {"limit": 2, "per": "x"}},
         "jobs.Limited.concurrency: unknown key(s) per (known: limit, key)"),
        ({"concurrency": {"key": "customer_id"}}, "limit is missing"),
        ({"concurrency": {"limit": 1, "key": "a-b"}},
         "key: expected the name of a parameter of the job"),
    ])
    def test_a_bad_limit_names_the_file_line_and_key(self, tmp_path: Path,
                                                     entry: dict[str, Any], error: str) -> None:
        """Every malformed limit is a ConfigError at load, naming where it is."""
        from jobkit.exceptions import ConfigError

        config = write_config(tmp_path, jobs={"Limited": {"class": "sample_jobs:Limited",
                                                          **entry}})
        with pytest.raises(ConfigError) as info:
            JobKit.from_config(str(config), load_entrypoints=False)
        assert "jobs.yaml:" in str(info.value) and error in str(info.value), str(info.value)

    def test_a_key_must_be_a_parameter_and_a_queue_limit_has_none(self, tmp_path: Path
                                                                  ) -> None:
        """`check` refuses a key no approved method takes; a queue's limit refuses a key."""
        from jobkit.exceptions import ConfigError

        config = write_config(tmp_path, jobs={"Limited": {
            "class": "sample_jobs:Limited", "concurrency": {"limit": 1, "key": "customer"}}})
        with JobKit.from_config(str(config), load_entrypoints=False) as app:
            [problem] = app.check()
        assert problem.startswith(f"{config}:") or problem.startswith("jobs.yaml:"), problem
        assert ("jobs.Limited.concurrency.key: 'customer' is not a parameter of "
                "Limited.work() (its parameters: seconds, customer_id, ledger)") in problem
        config = write_config(tmp_path, queues={"mail": {"rate_limit": {"limit": "5/s",
                                                                         "key": "to"}}})
        with pytest.raises(ConfigError, match=r"queues\.mail\.rate_limit: a queue's limit takes"):
            JobKit.from_config(str(config), load_entrypoints=False)

    def test_the_environment_and_a_package_set_limits(self, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
        """Like any job setting: JOBKIT_JOBS__<NAME>__CONCURRENCY, a class's defaults."""
        from jobkit.config import load_config
        from jobkit.flow import Concurrency, Limit, RateLimit

        config = write_config(tmp_path, jobs={"Limited": {"class": "sample_jobs:Limited"}},
                              queues={"reports": {"concurrency": 3}})
        loaded = load_config(str(config), environ={"JOBKIT_JOBS__LIMITED__CONCURRENCY": "4",
                                                   "JOBKIT_JOBS__LIMITED__RATE_LIMIT": "9/m"})
        with JobKit(loaded, load_entrypoints=False) as app:
            settings = app.job_settings("Limited").settings
            assert settings.concurrency == Concurrency(4)
            assert settings.rate_limit == RateLimit(9, 60.0)
            assert set(app.flow().limits) >= {
                Limit("job", "Limited", "concurrency", 4),
                Limit("job", "Limited", "rate", 9, 60.0),
                Limit("queue", "reports", "concurrency", 3)}


class TestUnique:
    def test_eight_processes_enqueueing_the_same_job_make_one(
        self, tmp_path: Path, store_config: dict[str, Any]
    ) -> None:
        """8 processes x 50 identical enqueues of a ``unique:`` job make one job.

        Every call gets its id, and exactly one call says it was new."""
        import multiprocessing

        from unique_race import enqueue_same

        jobs = {"Limited": {"class": "sample_jobs:Limited",
                            "unique": {"keys": ["customer_id"]}}}
        config = str(write_config(tmp_path, **store_config, jobs=jobs))
        context = multiprocessing.get_context("spawn")
        with context.Manager() as manager:
            barrier = manager.Barrier(8)
            with context.Pool(8) as pool:
                results = pool.starmap(enqueue_same, [(config, 50, barrier)] * 8)
        calls = [call for result in results for call in result]
        assert len(calls) == 400
        assert len({job_id for job_id, _ in calls}) == 1
        assert sum(new for _, new in calls) == 1
        with JobKit.from_config(config, load_entrypoints=False) as app:
            assert app.storage.count() == 1

    def test_keys_period_and_idempotency(self, tmp_path: Path) -> None:
        """Unique keys and idempotency keys store one job; a duplicate is not announced.

        ``unique.keys`` pick the params that matter, a call's idempotency key holds for its
        job, and enqueue_many keeps the rule."""
        from jobkit import hookimpl

        seen: list[str] = []

        class Listener:
            @hookimpl
            def jobkit_job_event(self, event: Any) -> None:
                seen.append(event.job.id)

        jobs = {"Limited": {"class": "sample_jobs:Limited",
                            "unique": {"keys": ["customer_id"], "period": 60}}}
        with JobKit.from_config(str(write_config(tmp_path, jobs=jobs)),
                                load_entrypoints=False) as app:
            app.pm.register(Listener())
            first = app.enqueue("Limited", "work", {"seconds": 0, "customer_id": 1})
            again = app.enqueue("Limited", "work", {"seconds": 5, "customer_id": 1})
            other = app.enqueue("Limited", "work", {"seconds": 0, "customer_id": 2})
            assert (first.new, again, other.new) == (True, type(first)(first.id, False), True)
            assert app.enqueue_many("Limited", "work", [
                {"seconds": 0, "customer_id": 3}, {"seconds": 1, "customer_id": 3},
                {"seconds": 0, "customer_id": 1}]) == [
                    str(int(other.id) + 1), str(int(other.id) + 1), first.id]
            keyed = app.run_background_job("Limited", "work", {"seconds": 0, "customer_id": 9},
                                           idempotency_key="order-77")
            assert app.run_background_job("Limited", "work", {"seconds": 1, "customer_id": 8},
                                          idempotency_key="order-77") == keyed
            app.events.flush()
            assert sorted(seen, key=int) == [first.id, other.id, str(int(other.id) + 1), keyed]
            assert app.get_job(keyed).unique_key == "Limited:key:order-77"
            for bad in ("", "x" * 201):
                with pytest.raises(Exception, match="idempotency_key: expected a non-empty"):
                    app.run_background_job("Limited", "work", {"seconds": 0},
                                           idempotency_key=bad)
