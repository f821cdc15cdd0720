"""Schedules: ``schedules:`` parsed and checked, the tick arithmetic, and the app's methods.

The ticks of cron (time zones, both daylight saving days) and of ``every:``, catch-up and
overlap, on the memory store under a clock the tests move. The stores' own rules are in the
conformance suite (``ScheduleConformance``); workers firing them in tests/test_schedule_workers.py.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import jobkit_process, make_config, write_config

from jobkit import JobKit, JobStatus
from jobkit.config import Config
from jobkit.exceptions import ConfigError, UnknownSchedule
from jobkit.schedules import Schedule
from jobkit.storage.memory import MemoryStorage

UTC = timezone.utc


def at(text: str) -> datetime:
    """An aware datetime from ISO text (UTC when the text has no offset)."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def every(interval: str, **fields: Any) -> Schedule:
    """An ``every:`` schedule of the Recorder job."""
    return Schedule(name="s", job="Recorder", every=interval, **fields)


def cron(expression: str, zone: str = "UTC", **fields: Any) -> Schedule:
    """A ``cron:`` schedule of the Recorder job."""
    return Schedule(name="s", job="Recorder", cron=expression, timezone=zone, **fields)


class TestTicks:
    def test_every_ticks_are_multiples_of_the_interval_since_the_epoch(self) -> None:
        assert every("30s").next_tick(at("2026-01-01T00:00:10")) == at("2026-01-01T00:00:30")
        assert every("30s").next_tick(at("2026-01-01T00:00:30")) == at("2026-01-01T00:01:00")
        assert every("1d").next_tick(at("2026-01-01T13:00:00+05:00")) == at("2026-01-02")
        assert every("7m").next_tick(at("1970-01-01T00:00:00")) == at("1970-01-01T00:07:00")

    def test_interval_forms(self) -> None:
        assert [every(text).describe() for text in ("30s", "90s", "5m", "2h", "1d", "48h")] == [
            "every 30s", "every 90s", "every 5m", "every 2h", "every 1d", "every 2d"]
        assert every("1s").every == timedelta(seconds=1)
        # the same durations as retention: (jobkit.durations), in whole seconds
        assert every("1w").describe() == "every 7d"
        assert every("1.5m").every == timedelta(seconds=90)
        for bad in ("0s", "1.5s", "5 m", "5", "5y", "-1s", 5):
            with pytest.raises(ValueError):
                every(bad)  # type: ignore[arg-type]
        assert every("3650d").next_tick(at("2026-01-01")) == at("2029-12-17")
        for huge in ("3651d", "36500000d", "9999999999d", "99999999999999999999s"):
            with pytest.raises(ValueError, match=rf"expected an interval of at most 3650d "
                               rf"\(for a yearly time, use cron: .*\), got '{huge}'"):
                every(huge)
        with pytest.raises(ValueError, match="at most 3650d"):
            every(timedelta(days=5000))  # type: ignore[arg-type]

    def test_cron_in_a_time_zone(self) -> None:
        nightly = cron("0 3 * * *", "Europe/Berlin")
        assert nightly.describe() == "cron 0 3 * * * (Europe/Berlin)"
        assert nightly.next_tick(at("2026-12-06T23:00:00")) == at("2026-12-07T02:00:00")
        assert nightly.next_tick(at("2026-07-06T23:00:00")) == at("2026-07-07T01:00:00")
        assert cron("@daily").next_tick(at("2026-12-06T23:00:00")) == at("2026-12-07")

    def test_spring_forward_a_job_in_the_skipped_hour_runs_once(self) -> None:
        """Berlin, 2026-03-29: 02:00 jumps to 03:00; a 02:30 job runs once, at 03:00."""
        job = cron("30 2 * * *", "Europe/Berlin")
        ticks = job.ticks_before(at("2026-03-31"), at("2026-03-27"), 10)
        assert sorted(ticks) == [at("2026-03-27T02:30:00+01:00"), at("2026-03-28T02:30:00+01:00"),
                                 at("2026-03-29T03:00:00+02:00"), at("2026-03-30T02:30:00+02:00")]
        assert job.next_tick(at("2026-03-28T02:00:00")) == at("2026-03-29T03:00:00+02:00")

    def test_fall_back_a_job_in_the_repeated_hour_runs_once(self) -> None:
        """Berlin, 2026-10-25: 03:00 goes back to 02:00; a 02:30 job runs once, the first time."""
        job = cron("30 2 * * *", "Europe/Berlin")
        ticks = job.ticks_before(at("2026-10-27"), at("2026-10-24"), 10)
        assert sorted(ticks) == [at("2026-10-24T02:30:00+02:00"), at("2026-10-25T02:30:00+02:00"),
                                 at("2026-10-26T02:30:00+01:00")]
        first = at("2026-10-25T02:30:00+02:00")
        assert job.next_tick(first) == at("2026-10-26T02:30:00+01:00")
        # a job of every hour runs in both passes of the repeated hour, as with cron
        hourly = cron("0 * * * *", "Europe/Berlin")
        assert hourly.ticks_before(at("2026-10-25T02:00:00"), at("2026-10-24T23:30:00"), 9) == [
            at("2026-10-25T02:00:00"), at("2026-10-25T01:00:00"), at("2026-10-25T00:00:00")]

    def test_next_tick_needs_an_aware_time(self) -> None:
        with pytest.raises(ValueError, match="naive"):
            every("1s").next_tick(datetime(2026, 1, 1))


class TestPlan:
    def test_latest_runs_the_newest_missed_tick_once(self) -> None:
        plan = every("1m").plan(at("2026-01-01T00:00:00"), at("2026-01-01T00:10:30"))
        assert plan.ticks == (at("2026-01-01T00:10:00"),)
        assert plan.newest == at("2026-01-01T00:10:00")
        assert every("1m").plan(at("2026-01-01T00:10:00"), at("2026-01-01T00:10:59")).ticks == ()

    def test_none_runs_only_a_tick_due_within_the_grace(self) -> None:
        late = every("1h", catch_up="none").plan(at("2026-01-01"), at("2026-01-01T01:01:01"))
        assert late.ticks == () and late.newest == at("2026-01-01T01:00:00")
        fresh = every("1h", catch_up="none").plan(at("2026-01-01"), at("2026-01-01T01:00:59"))
        assert fresh.ticks == (at("2026-01-01T01:00:00"),)

    def test_all_runs_every_missed_tick_the_latest_100_at_most(self) -> None:
        few = every("1m", catch_up="all").plan(at("2026-01-01"), at("2026-01-01T00:03:00"))
        assert few.ticks == tuple(at(f"2026-01-01T00:0{n}:00") for n in (1, 2, 3))
        many = every("1s", catch_up="all").plan(at("2026-01-01"), at("2026-01-01T01:00:00"))
        assert len(many.ticks) == 100 and many.ticks[-1] == many.newest == at("2026-01-01T01:00")
        assert many.ticks[0] == at("2026-01-01T00:58:21")


class TestConfiguration:
    def test_schedules_are_read_from_jobs_yaml(self, tmp_path: Path) -> None:
        config = make_config(tmp_path, schedules={
            "nightly": {"job": "Recorder", "method": "record", "params": {"ledger": "x", "tag": 1},
                        "cron": "0 3 * * *", "timezone": "Europe/Berlin", "queue": "night",
                        "priority": 5, "catch_up": "all", "overlap": "allow"},
            "tick": {"job": "Slow", "every": "30s", "enabled": False}})
        nightly, tick = config.schedules["nightly"], config.schedules["tick"]
        assert (nightly.name, nightly.method, nightly.queue, nightly.priority) == (
            "nightly", "record", "night", 5)
        assert (nightly.catch_up, nightly.overlap, tick.enabled) == ("all", "allow", False)
        assert tick.every == timedelta(seconds=30) and tick.params == {}
        assert Config().schedules == {}
        assert len({nightly, tick, nightly}) == 2  # hashable, though params is a mapping

    def test_every_problem_names_the_schedule_file_and_line(self, tmp_path: Path) -> None:
        path = write_config(tmp_path, schedules={
            "a": {"job": "Recorder", "cron": "61 * * * *"},
            "b": {"job": "Recorder"},
            "c": {"job": "Recorder", "every": "1s", "timezone": "Mars/Base"},
            "d": {"job": "Recorder", "every": "1s", "catch_up": "sometimes", "bogus": 1}})
        lines = path.read_text().splitlines()
        with pytest.raises(ConfigError) as info:
            JobKit.from_config(str(path), load_entrypoints=False)
        errors = info.value.errors
        assert len(errors) == 5, errors

        def line_of(key: str) -> int:
            return next(n for n, line in enumerate(lines, 1) if line.strip().startswith(key))

        assert f"jobs.yaml:{line_of('cron:')}: schedules.a.cron: expected a cron" in errors[0]
        assert "got '61 * * * *' (bad minute)" in errors[0]  # cronsim's reason
        assert any("schedules.b.every: a schedule needs exactly one of cron" in e for e in errors)
        assert any("schedules.c.timezone: expected an IANA time zone" in e for e in errors)
        assert any("schedules.d.catch_up: expected one of latest, none, all" in e
                   for e in errors)
        assert any("schedules.d.bogus: unknown key" in e for e in errors)

    def test_the_machines_own_zone_is_refused(self) -> None:
        """``localtime`` (a file in many zone databases) is each machine's own zone."""
        for zone in ("localtime", "posixrules"):
            with pytest.raises(ValueError, match=r"timezone: expected an IANA time zone name.*"
                               r"not the machine's localtime"):
                cron("0 3 * * *", zone)
        assert cron("0 3 * * *", "America/New_York").timezone == "America/New_York"

    def test_a_bad_cron_expression_says_what_is_wrong(self) -> None:
        """cronsim's reason follows the expected form: the field, or the count of fields."""
        for expression, reason in (("0 0 30 2 *", "bad day-of-month"), ("0 25 * * *", "bad hour"),
                                   ("* * * *", "wrong number of fields"),
                                   ("0 0 * * 8", "bad day-of-week")):
            with pytest.raises(ValueError, match=rf"cron: expected a cron expression of five "
                               rf"fields.*got '{re.escape(expression)}' \({reason}\)$"):
                cron(expression)
        with pytest.raises(ValueError, match=r"cron: expected a cron expression.*got 5$"):
            cron(5)  # type: ignore[arg-type]
        assert cron("0 0 L * *").cron == "0 0 L * *"

    def test_params_are_checked_by_the_job_factory_at_check(self, tmp_path: Path) -> None:
        path = write_config(tmp_path, schedules={
            "ok": {"job": "Recorder", "method": "record", "params": {"ledger": "l", "tag": "t"},
                   "every": "1m"},
            "typo": {"job": "Recorder", "method": "record", "params": {"ledgr": "l"},
                     "every": "1m"},
            "nojob": {"job": "Nope", "every": "1m"},
            "method": {"job": "Recorder", "method": "_private", "every": "1m"}})
        with JobKit.from_config(str(path), load_entrypoints=False) as app:
            problems = [p for p in app.check() if "schedules." in p]
        assert len(problems) == 3, problems
        assert all("jobs.yaml:" in problem for problem in problems)
        assert any("schedules.typo:" in p and "ledgr" in p for p in problems)
        assert any("schedules.nojob:" in p and "'Nope'" in p for p in problems)
        assert any("schedules.method:" in p and "_private" in p for p in problems)


class Clock:
    """A clock the test moves."""

    def __init__(self, start: str) -> None:
        self.now = at(start)

    def __call__(self) -> datetime:
        return self.now


def scheduled_app(tmp_path: Path, clock: Clock, **schedules: dict[str, Any]) -> JobKit:
    """An app on a memory store under ``clock`` with these schedules of Recorder.record."""
    entries = {name: {"job": "Recorder", "method": "record",
                      "params": {"ledger": str(tmp_path / "l"), "tag": name}, **fields}
               for name, fields in schedules.items()}
    return JobKit(make_config(tmp_path, schedules=entries), load_entrypoints=False,
                  storage=MemoryStorage(clock=clock))


class TestAppMethods:
    def test_schedules_lists_last_and_next_runs(self, tmp_path: Path) -> None:
        clock = Clock("2026-01-01T00:00:10")
        with scheduled_app(tmp_path, clock, b={"every": "1m"}, a={"every": "30s"},
                           off={"every": "1m", "enabled": False}) as app:
            views = app.schedules()
            assert [view.schedule.name for view in views] == ["a", "b", "off"]
            assert [view.next_run_at for view in views] == [
                at("2026-01-01T00:00:30"), at("2026-01-01T00:01:00"), None]
            assert all(view.last_run_at is None and not view.paused for view in views)
            assert app.fire_schedule(app.config.schedules["a"]) == []  # first seen: none due
            clock.now = at("2026-01-01T00:00:45")
            (record,) = app.fire_schedule(app.config.schedules["a"])
            assert record.name == "Recorder" and record.params["tag"] == "a"
            view = app.schedules()[0]
            assert (view.last_run_at, view.last_job_id) == (at("2026-01-01T00:00:30"), record.id)
            assert view.next_run_at == at("2026-01-01T00:01:00")
            assert [job.id for job in app.schedule_runs("a")] == [record.id]

    def test_pause_and_resume(self, tmp_path: Path) -> None:
        clock = Clock("2026-01-01T00:00:00")
        with scheduled_app(tmp_path, clock, a={"every": "1m", "overlap": "allow"}) as app:
            schedule = app.config.schedules["a"]
            app.fire_schedule(schedule)
            assert app.pause_schedule("a") is True
            assert app.pause_schedule("a") is False
            assert app.schedules()[0].paused and app.schedules()[0].next_run_at is None
            clock.now = at("2026-01-01T00:05:00")
            assert app.fire_schedule(schedule) == []  # paused: the tick is skipped, not kept
            assert app.resume_schedule("a") is True and app.resume_schedule("a") is False
            assert app.fire_schedule(schedule) == []
            clock.now = at("2026-01-01T00:06:00")
            assert len(app.fire_schedule(schedule)) == 1

    def test_an_unknown_name_lists_the_configured_schedules(self, tmp_path: Path) -> None:
        with scheduled_app(tmp_path, Clock("2026-01-01"), nightly={"every": "1d"}) as app:
            for call in (app.pause_schedule, app.resume_schedule, app.schedule_runs):
                with pytest.raises(UnknownSchedule, match=r"'weekly'.*configured: nightly"):
                    call("weekly")  # type: ignore[operator]
            assert isinstance(UnknownSchedule("x"), ConfigError)

    def test_overlap_skip_and_allow(self, tmp_path: Path) -> None:
        clock = Clock("2026-01-01T00:00:00")
        with scheduled_app(tmp_path, clock, skip={"every": "1m"},
                           allow={"every": "1m", "overlap": "allow"}) as app:
            skip, allow = app.config.schedules["skip"], app.config.schedules["allow"]
            for schedule in (skip, allow):
                app.fire_schedule(schedule)
            fired: dict[str, list[str]] = {"skip": [], "allow": []}
            for minute in (1, 2, 3):
                clock.now = at(f"2026-01-01T00:0{minute}:00")
                for schedule in (skip, allow):
                    fired[schedule.name] += [r.id for r in app.fire_schedule(schedule)]
            assert len(fired["skip"]) == 1 and len(fired["allow"]) == 3
            app.storage.cancel(fired["skip"][0])
            clock.now = at("2026-01-01T00:04:00")
            assert len(app.fire_schedule(skip)) == 1  # the run ended: the next tick runs

    def test_catch_up_all_runs_each_missed_tick(self, tmp_path: Path) -> None:
        clock = Clock("2026-01-01T00:00:00")
        with scheduled_app(tmp_path, clock, a={"every": "1m", "catch_up": "all",
                                               "overlap": "allow"}) as app:
            app.fire_schedule(app.config.schedules["a"])
            clock.now = at("2026-01-01T00:05:30")
            assert len(app.fire_schedule(app.config.schedules["a"])) == 5
            runs = app.schedule_runs("a", limit=3)
            assert [job.status for job in runs] == [JobStatus.PENDING] * 3
            assert len(app.schedule_runs("a")) == 5

    def test_deleted_jobs_leave_the_runs_not_the_last_tick(self, tmp_path: Path) -> None:
        clock = Clock("2026-01-01T00:00:00")
        with scheduled_app(tmp_path, clock, a={"every": "1m"}) as app:
            app.fire_schedule(app.config.schedules["a"])
            clock.now = at("2026-01-01T00:01:00")
            (record,) = app.fire_schedule(app.config.schedules["a"])
            app.storage.cancel(record.id)
            app.storage.prune(at("2026-01-02"))
            assert app.schedule_runs("a") == []
            view = app.schedules()[0]
            assert (view.last_run_at, view.last_job_id) == (at("2026-01-01T00:01:00"), None)
            assert app.fire_schedule(app.config.schedules["a"]) == []  # the tick is not re-run


class TestScheduler:
    def test_it_fires_each_enabled_schedule_when_due(self, tmp_path: Path) -> None:
        """Each enabled schedule fires when due, each tick once; a disabled one never.

        The first firing is at start (nothing is due on first sight); the thread sleeps until
        the next tick, a poll at most."""
        from jobkit.worker.scheduler import Scheduler, check_schedules

        clock = Clock("2026-01-01T00:00:00.5")
        with scheduled_app(tmp_path, clock, fast={"every": "1s", "overlap": "allow"},
                           slow={"every": "1h"}, off={"every": "1s", "enabled": False}) as app:
            enabled = check_schedules(app)
            assert [schedule.name for schedule in enabled] == ["fast", "slow"]
            scheduler = Scheduler(app, enabled, poll_interval=5.0, clock=clock)
            assert scheduler.fire_due() == 0.5  # fast's first tick
            assert app.storage.count() == 0
            for step in range(1, 4):
                clock.now = at(f"2026-01-01T00:00:0{step}")
                assert scheduler.fire_due() == 1.0
            assert [job.params["tag"] for job in app.list_jobs()] == ["fast"] * 3
            assert "off" not in app.storage.schedule_states()  # type: ignore[attr-defined]

    def test_idle_it_sleeps_until_the_next_tick_a_second_at_most(self, tmp_path: Path) -> None:
        """Not every poll interval (0.05 s by default): until the next tick, bounded.

        The bound is a second (so that a machine clock set forward is noticed), or the poll
        interval when that is longer."""
        from jobkit.worker.scheduler import MAX_SLEEP, Scheduler

        clock = Clock("2026-01-01T00:00:00")
        with scheduled_app(tmp_path, clock, slow={"every": "1h"}, fast={"every": "1s"}) as app:
            slow, fast = app.config.schedules["slow"], app.config.schedules["fast"]
            assert MAX_SLEEP == 1.0
            assert Scheduler(app, [slow], poll_interval=0.05, clock=clock).fire_due() == 1.0
            assert Scheduler(app, [slow], poll_interval=5.0, clock=clock).fire_due() == 5.0
            clock.now = at("2026-01-01T00:00:00.75")
            assert Scheduler(app, [fast], poll_interval=0.05, clock=clock).fire_due() == 0.25

    def test_a_store_that_fails_is_said_once_and_tried_again(self, tmp_path: Path) -> None:
        """Its clock unreadable or a firing failing: one warning each, a retry, no exception."""
        from jobkit.exceptions import StorageError
        from jobkit.worker import scheduler as module
        from jobkit.worker.scheduler import RETRY_AFTER, Scheduler

        warnings: list[str] = []

        class Logger:
            def warning(self, message: str, **fields: Any) -> None:
                warnings.append(message.format(**fields))

            def debug(self, message: str, **fields: Any) -> None:
                pass

        clock = Clock("2026-01-01T00:00:00")
        with scheduled_app(tmp_path, clock, a={"every": "1s"}) as app:
            store = app.storage
            scheduler = Scheduler(app, list(app.config.schedules.values()), poll_interval=0.05,
                                  clock=clock)
            down = StorageError("the server is down")
            with pytest.MonkeyPatch.context() as logs:
                logs.setattr(module, "logger", Logger())
                with pytest.MonkeyPatch.context() as patch:
                    patch.setattr(store, "now", lambda: (_ for _ in ()).throw(down))
                    assert scheduler.fire_due() == RETRY_AFTER
                    assert scheduler.fire_due() == RETRY_AFTER
                assert scheduler.fire_due() == 1.0  # the store is back: fired (first sight)
                with pytest.MonkeyPatch.context() as patch:
                    patch.setattr(store, "fire_schedule", lambda *_: (_ for _ in ()).throw(down))
                    clock.now = at("2026-01-01T00:00:01")
                    assert scheduler.fire_due() == RETRY_AFTER
                    clock.now = at("2026-01-01T00:00:02")
                    assert scheduler.fire_due() == RETRY_AFTER
                clock.now = at("2026-01-01T00:00:03")
                assert scheduler.fire_due() == 1.0
            assert warnings == ["schedules: could not read the store's clock: the server is down",
                                "schedule a: could not fire: the server is down"]
            assert len(app.schedule_runs("a")) == 1

    def test_a_store_without_the_capability_is_refused_at_start(self, tmp_path: Path) -> None:
        from jobkit.exceptions import StorageError
        from jobkit.testing.coreonly import CoreOnlyStorage
        from jobkit.worker.scheduler import check_schedules

        config = make_config(tmp_path, schedules={"nightly": {"job": "Recorder", "cron": "@daily"},
                                                  "off": {"job": "Slow", "every": "1s",
                                                          "enabled": False}})
        store = CoreOnlyStorage(MemoryStorage())
        with JobKit(config, load_entrypoints=False, storage=store) as app:
            with pytest.raises(StorageError, match=r"cannot fire the schedules of the "
                               r"configuration \(nightly\): storage CoreOnlyStorage has no "
                               r"'schedules' capability"):
                check_schedules(app)
            with pytest.raises(StorageError, match="cannot list the schedules"):
                app.schedules()
        unscheduled = make_config(tmp_path, schedules={"off": {
            "job": "Slow", "every": "1s", "enabled": False}})
        with JobKit(unscheduled, load_entrypoints=False,
                    storage=CoreOnlyStorage(MemoryStorage())) as app:
            assert check_schedules(app) == []


class TestAnnouncedAndChecked:
    def test_a_fired_job_is_announced_to_plugins(self, tmp_path: Path) -> None:
        """Its ``enqueued`` event reaches plugins as any other job's does."""
        from jobkit import EventKind, JobEvent, hookimpl

        seen: list[JobEvent] = []

        class Listener:
            @hookimpl
            def jobkit_job_event(self, event: JobEvent) -> None:
                seen.append(event)

        clock = Clock("2026-01-01T00:00:00")
        config = make_config(tmp_path, schedules={"a": {
            "job": "Recorder", "method": "record", "every": "1m",
            "params": {"ledger": str(tmp_path / "l"), "tag": "a"}}})
        with JobKit(config, load_entrypoints=False, plugins=(Listener(),),
                    storage=MemoryStorage(clock=clock)) as app:
            app.fire_schedule(app.config.schedules["a"])
            clock.now = at("2026-01-01T00:01:00")
            (record,) = app.fire_schedule(app.config.schedules["a"])
        assert [(event.kind, event.job.id) for event in seen] == [(EventKind.ENQUEUED, record.id)]

    def test_jobkit_check_and_worker_start_name_a_bad_schedule(self, tmp_path: Path) -> None:
        """`jobkit check` (exit 1) and `jobkit worker` (2) name the schedule, file and line."""
        config = write_config(tmp_path, schedules={"typo": {
            "job": "Recorder", "method": "record", "params": {"ledgr": "l"}, "every": "1m"}})
        for command, status in ((["check"], 1), (["worker", "--burst"], 2)):
            done = jobkit_process(tmp_path, "--config", str(config), *command)
            assert done.returncode == status, done.stdout + done.stderr
            assert "jobs.yaml:" in done.stderr and "schedules.typo:" in done.stderr, done.stderr
            assert "ledgr" in done.stderr and "Traceback" not in done.stderr
