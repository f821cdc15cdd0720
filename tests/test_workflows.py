"""Workflows (issue 20): flows flattened into graphs, checked, stored and run.

Every step checked before anything is stored, result_as against return annotations, and flows
run end to end on the memory store, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jobkit
import jobkit.notify
from jobkit import ConfigError, InvalidParameters, Job, JobKit, JobNotFound, MethodNotAllowed
from jobkit.config import Config
from jobkit.exceptions import StorageError
from jobkit.records import NEEDS_COMPLETED, NEEDS_ENDED, JobStatus
from jobkit.storage import MemoryStorage
from jobkit.storage.sql_workflows import decoded_results
from jobkit.testing.coreonly import CoreOnlyStorage
from jobkit.worker import run_until_empty
from jobkit.workflow_check import fits
from jobkit.workflows import Node, chain, group, plan, step


class Numbers(Job):
    """Small typed methods whose results flow on."""

    methods = ("count", "double", "total", "text", "fail", "loose", "maybe", "pair", "floaty",
               "summed")

    def count(self, n: int) -> int:
        return n

    def double(self, value: int) -> int:
        return value * 2

    def total(self, values: list[int | None]) -> int:
        return sum(value or 0 for value in values)

    def text(self, value: str = "") -> str:
        return f"text {value}"

    def fail(self, value: int = 0) -> int:
        raise ValueError("this step fails")

    def loose(self, value=None):  # type: ignore[no-untyped-def]  # unannotated on purpose
        return value

    def maybe(self, value: int | None = None) -> int | None:
        return value

    def pair(self) -> tuple[int, int]:
        return (1, 2)

    def floaty(self, value: float) -> float:
        return value

    def summed(self, values: list[int] | None = None) -> int:
        return sum(values or [])


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobKit]:
    """An app on the memory store, a SQLite file, then PostgreSQL, with Numbers registered."""
    url = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path / 'jobs.db'}",
           "postgres": None}[request.param] or request.getfixturevalue("empty_postgres_url")
    application = JobKit(Config.from_dict({"storage": url}), load_entrypoints=False)
    application.register("Numbers", Numbers)
    yield application
    application.close()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def small_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobKit]:
    """As ``app``, with ``max_params_bytes: 100`` for every job."""
    url = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path / 'jobs.db'}",
           "postgres": None}[request.param] or request.getfixturevalue("empty_postgres_url")
    application = JobKit(Config.from_dict({"storage": url, "defaults": {
        "max_params_bytes": 100}}), load_entrypoints=False)
    application.register("Numbers", Numbers)
    yield application
    application.close()


def edges(nodes: list[Node]) -> list[tuple[str, str, tuple[int, ...], str, bool]]:
    """(label, method, parents, needs, collect) of each node."""
    return [(node.label, node.step.method, node.parents, node.needs, node.collect)
            for node in nodes]


C, E = NEEDS_COMPLETED, NEEDS_ENDED


class TestPlan:
    def test_a_step_alone_and_a_chain(self) -> None:
        """A chain's element waits for the previous one to complete."""
        assert edges(plan(step("N", "a"))) == [("0", "a", (), C, False)]
        assert edges(plan(chain(step("N", "a"), step("N", "b"), step("N", "c")))) == [
            ("0", "a", (), C, False), ("1", "b", (0,), C, False), ("2", "c", (1,), C, False)]

    def test_a_group_with_a_callback_then_a_step(self) -> None:
        """Members wait for what precedes the group; the callback for every member to end.

        What follows waits for the callback.
        """
        flow = chain(step("N", "a"), group(step("N", "b"), step("N", "c"), then=step("N", "d")),
                     step("N", "e"))
        assert edges(plan(flow)) == [
            ("0", "a", (), C, False), ("1.0", "b", (0,), C, False), ("1.1", "c", (0,), C, False),
            ("1.then", "d", (1, 2), E, True), ("2", "e", (3,), C, False)]

    def test_nesting(self) -> None:
        """A group without callback hands its terminal steps on, as a list.

        A chain inside a group waits in itself; a group inside a callback chain waits for the
        members.
        """
        flow = group(
            chain(step("N", "a"), step("N", "b")),
            group(step("N", "c"), step("N", "d")),
            then=chain(group(step("N", "e"), step("N", "f")), step("N", "g")),
        )
        assert edges(plan(chain(flow, step("N", "h")))) == [
            ("0.0.0", "a", (), C, False), ("0.0.1", "b", (0,), C, False),
            ("0.1.0", "c", (), C, False), ("0.1.1", "d", (), C, False),
            ("0.then.0.0", "e", (1, 2, 3), E, True), ("0.then.0.1", "f", (1, 2, 3), E, True),
            ("0.then.1", "g", (4, 5), C, True), ("1", "h", (6,), C, False)]

    def test_on_failure_overrides_what_the_place_says(self) -> None:
        """``run`` makes a chain's element wait for an end; ``cancel`` makes a callback strict.

        A strict callback needs every member completed; on a first step it means nothing.
        """
        flow = chain(step("N", "a", on_failure="run"), step("N", "b", on_failure="run"),
                     group(step("N", "c"), then=step("N", "d", on_failure="cancel")))
        assert [node.needs for node in plan(flow)] == [C, E, C, C]

    def test_bad_parts_are_refused(self) -> None:
        """Not a step, an empty chain or group, a bad on_failure or result_as."""
        with pytest.raises(TypeError, match="item 1 is a str"):
            chain(step("N"), "N")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="at least one"):
            chain()
        with pytest.raises(ValueError, match="at least one"):
            group(then=step("N"))
        with pytest.raises(ValueError, match="on_failure"):
            step("N", on_failure="ignore")
        with pytest.raises(ValueError, match="result_as"):
            step("N", result_as="not a name")

    def test_jobkit_exports_the_builders(self) -> None:
        """``from jobkit import step, chain, group`` and the workflow functions."""
        assert (jobkit.step, jobkit.chain, jobkit.group) == (step, chain, group)
        assert callable(jobkit.run_workflow) and callable(jobkit.get_workflow)


class TestChecks:
    def refused(self, app: JobKit, flow: Any, error: type[Exception] = InvalidParameters) -> str:
        """The error run_workflow raises for ``flow``, having stored nothing."""
        before = app.storage.count()
        with pytest.raises(error) as caught:
            app.run_workflow(flow)
        assert app.storage.count() == before
        return str(caught.value)

    def test_every_step_is_checked_before_anything_is_stored(self, app: JobKit) -> None:
        """A bad step stops the workflow: the error names the step and nothing is stored.

        An unknown job, a method not approved, params that do not fit, a bad option.
        """
        ok = step("Numbers", "count", {"n": 1})
        assert "step 1 n" in self.refused(app, chain(ok, step("Numbers", "count", {"n": "x"})))
        self.refused(app, chain(ok, step("Nope")), JobNotFound)
        self.refused(app, group(ok, step("Numbers", "secret")), MethodNotAllowed)
        self.refused(app, chain(ok, step("Numbers", "count", {"n": 1}, priority="high")),
                     ConfigError)
        message = self.refused(app, chain(ok, step("Numbers", "count")))
        assert "step 1 n: missing (required)" in message

    def test_a_bad_member_among_alike_ones_is_named(self, app: JobKit) -> None:
        """Alike steps (a group's members) are checked together; an error names its step.

        The first step at fault, by its label, as when each step was checked alone (not the
        index of its params among the alike ones); a bad result_as too.
        """
        members = [step("Numbers", "count", {"n": n}) for n in range(6)]
        members[3] = step("Numbers", "count", {"n": "x"})
        members[5] = step("Numbers", "count", {"n": "y"})
        message = self.refused(app, group(*members, then=step("Numbers", "total",
                                                              result_as="values")))
        assert "step 3 n" in message
        assert "params[" not in message and "step 5" not in message and "step 0" not in message
        doubles = [step("Numbers", "double", result_as="value") for _ in range(3)]
        message = self.refused(app, chain(step("Numbers", "count", {"n": 1}), group(
            *doubles[:2], step("Numbers", "double", {"value": 1}, result_as="value"))))
        assert "step 1.2 result_as value: given in params too" in message
        ok = [step("Numbers", "count", {"n": n}) for n in range(40)]
        workflow_id = app.run_workflow(group(*ok, then=step("Numbers", "total",
                                                            result_as="values")))
        steps = app.get_workflow(workflow_id).steps
        assert [one.label for one in steps] == [*map(str, range(40)), "then"]
        assert [app.get_job(one.job_id).params for one in steps[:3]] == [
            {"n": 0}, {"n": 1}, {"n": 2}]
        assert steps[-1].status is JobStatus.BLOCKED and len(steps[-1].parents) == 40

    def test_string_results_that_look_like_json_reach_the_callback_as_strings(
            self, app: JobKit) -> None:
        """Members returning "1" and "[2]" give the callback those strings, not 1 and [2]."""
        workflow_id = app.run_workflow(group(
            step("Numbers", "loose", {"value": "1"}), step("Numbers", "loose", {"value": "[2]"}),
            step("Numbers", "loose", {"value": None}),
            then=step("Numbers", "loose", result_as="value")))
        run_until_empty(app, timeout=15)
        callback = app.get_workflow(workflow_id).steps[-1]
        assert app.get_job(callback.job_id).result == ["1", "[2]", None]

    def test_result_as_is_a_parameter_not_given_twice_and_after_a_step(self, app: JobKit) -> None:
        """result_as names a parameter, not also in params, of a step that follows another.

        The parameter it names is not missing.
        """
        ok = step("Numbers", "count", {"n": 1})
        assert "no parameter of this name" in self.refused(
            app, chain(ok, step("Numbers", "count", {"n": 1}, result_as="m")))
        assert "given in params too" in self.refused(
            app, chain(ok, step("Numbers", "double", {"value": 2}, result_as="value")))
        assert "waits for no step" in self.refused(
            app, step("Numbers", "double", result_as="value"))
        # given by position it is given too: before, stored, and overwritten by the result
        assert "step 1 result_as value: given in params too" in self.refused(
            app, chain(ok, step("Numbers", "double", [2], result_as="value")))
        assert app.run_workflow(chain(ok, step("Numbers", "double", result_as="value")))

    def test_annotations_that_cannot_match_name_both_steps(self, app: JobKit) -> None:
        """str returned into an int parameter: refused, naming the producing step too."""
        message = self.refused(app, chain(step("Numbers", "text"),
                                          step("Numbers", "double", result_as="value")))
        assert "step 1 value: expected int, but step 0 (Numbers.text) returns str" in message
        message = self.refused(app, chain(step("Numbers", "floaty", {"value": 1.5}),
                                          step("Numbers", "double", result_as="value")))
        assert "returns float" in message

    def test_a_group_callback_takes_a_list(self, app: JobKit) -> None:
        """A callback's parameter receives a list: list[int | None] takes ints.

        An int parameter cannot take a list.
        """
        members = (step("Numbers", "count", {"n": 1}), step("Numbers", "count", {"n": 2}))
        assert app.run_workflow(group(*members, then=step("Numbers", "total",
                                                          result_as="values")))
        message = self.refused(app, group(
            *members, then=step("Numbers", "double", result_as="value")))
        assert "receives the list of 2 results of a group" in message

    def test_an_optional_list_takes_the_results_and_an_optional_int_does_not(
            self, app: JobKit) -> None:
        """list[int] | None = None takes a group's ints (its items are int, not the list).

        int | None cannot take a list. Both were wrong: the union's first member was read as
        the item type (the kill storm's callback, annotated list[str | None] | None, was
        refused).
        """
        members = (step("Numbers", "count", {"n": 1}), step("Numbers", "count", {"n": 2}))
        workflow_id = app.run_workflow(group(*members, then=step("Numbers", "summed",
                                                                 result_as="values")))
        run_until_empty(app, timeout=15)
        callback = app.get_workflow(workflow_id).steps[-1]
        assert app.get_job(callback.job_id).result == 3
        message = self.refused(app, group(
            *members, then=step("Numbers", "maybe", result_as="value")))
        assert "receives the list of 2 results of a group, but is annotated int | None" in message
        message = self.refused(app, group(step("Numbers", "text"), step("Numbers", "text"),
                                          then=step("Numbers", "summed", result_as="values")))
        assert "expected int, but step 0 (Numbers.text) returns str" in message

    def test_a_member_returning_the_wrong_type_is_refused(self, app: JobKit) -> None:
        """Each member's return is checked against the list's item type."""
        message = self.refused(app, group(step("Numbers", "count", {"n": 1}), step("Numbers",
                               "text"), then=step("Numbers", "total", result_as="values")))
        assert "step then values: expected int | None, but step 1 (Numbers.text)" in message

    def test_unannotated_or_loose_annotations_pass(self, app: JobKit) -> None:
        """No annotation on either side, Optional, a tuple into a list: nothing refused."""
        assert app.run_workflow(chain(step("Numbers", "loose"),
                                      step("Numbers", "double", result_as="value")))
        assert app.run_workflow(chain(step("Numbers", "count", {"n": 1}),
                                      step("Numbers", "loose", result_as="value")))
        assert app.run_workflow(chain(step("Numbers", "maybe"),
                                      step("Numbers", "double", result_as="value")))
        assert app.run_workflow(chain(step("Numbers", "pair"),
                                      step("Numbers", "total", result_as="values")))

    @pytest.mark.parametrize(("produced", "wanted", "ok"), [
        (int, int, True), (int, float, True), (float, int, False), (bool, int, False),
        (str, int, False), (type(None), int, False), (int | None, int, True),
        (list[int], list[str], False), (list[int], tuple[int, ...], True),
        (dict[str, int], dict[str, str], False), (dict[str, Any], dict[str, int], True),
        (Any, int, True), (tuple[int, int], list[int], True),
    ])
    def test_fits(self, produced: Any, wanted: Any, ok: bool) -> None:
        """What may fit, compared as JSON."""
        assert fits(produced, wanted) is ok

    def test_stored_results_are_decoded_as_one_array_or_one_by_one(self) -> None:
        """A release reads its parents' JSON texts as one array; a bad text still raises.

        None (no result) is None; a text that is not one JSON value (``1, 2``) is not read
        as two results; results the driver decoded (PostgreSQL: the string "1") stay as they
        are.
        """
        texts = ["1", None, '[2, "x"]', "null", '{"a": 1.5}']
        assert decoded_results(texts, json.loads, texts=True) == [
            1, None, [2, "x"], None, {"a": 1.5}]
        with pytest.raises(json.JSONDecodeError):
            decoded_results(["1, 2", "3"], json.loads, texts=True)
        assert decoded_results(["1", {"a": 1}, None], lambda value: value, texts=False) == [
            "1", {"a": 1}, None]

    def test_a_store_without_the_capability_is_refused(self) -> None:
        """The core alone: run_workflow and depends_on say the store cannot."""
        store = CoreOnlyStorage(MemoryStorage())
        with JobKit(storage=store, load_entrypoints=False) as app:
            app.register("Numbers", Numbers)
            with pytest.raises(StorageError, match="no 'workflows' capability"):
                app.run_workflow(step("Numbers", "count", {"n": 1}))
            first = app.run_background_job("Numbers", "count", {"n": 1})
            with pytest.raises(StorageError, match="no 'workflows' capability"):
                app.run_background_job("Numbers", "count", {"n": 1}, depends_on=[first])


class TestRunning:
    def test_a_chain_runs_end_to_end_passing_results(self, app: JobKit) -> None:
        """count -> double -> double: each result given to the next step."""
        workflow_id = app.run_workflow(chain(
            step("Numbers", "count", {"n": 3}), step("Numbers", "double", result_as="value"),
            step("Numbers", "double", result_as="value")))
        assert run_until_empty(app, timeout=15) == 3
        steps = app.get_workflow(workflow_id).steps
        assert [s.status for s in steps] == [JobStatus.COMPLETED] * 3
        assert [app.get_job(s.job_id).result for s in steps] == [3, 6, 12]

    def test_a_group_callback_runs_after_a_failure(self, app: JobKit) -> None:
        """A member fails (no retries): the callback runs with None for it.

        The chain goes on after the callback.
        """
        workflow_id = app.run_workflow(chain(
            group(step("Numbers", "count", {"n": 2}), step("Numbers", "fail", retry_attempts=0),
                  then=step("Numbers", "total", result_as="values")),
            step("Numbers", "double", result_as="value")))
        run_until_empty(app, timeout=15)
        steps = app.get_workflow(workflow_id).steps
        assert [str(s.status) for s in steps] == ["completed", "failed", "completed",
                                                   "completed"]
        assert app.get_job(steps[2].job_id).params == {"values": [2, None]}
        assert app.get_job(steps[3].job_id).result == 4

    def test_a_failure_before_a_group_cancels_its_callback_and_what_follows(
            self, app: JobKit) -> None:
        """The chain's first step fails: the group never runs, nor does anything after it.

        docs/workflows.md: "a member fails for good | chain: what follows is cancelled". Before,
        the callback (needing its members *ended*) was released once the cascade cancelled
        them, with [None, None], and the chain went on after it.
        """
        workflow_id = app.run_workflow(chain(
            step("Numbers", "fail", retry_attempts=0),
            group(step("Numbers", "count", {"n": 1}), step("Numbers", "count", {"n": 2}),
                  then=step("Numbers", "total", result_as="values")),
            step("Numbers", "double", result_as="value")))
        run_until_empty(app, timeout=15)
        steps = app.get_workflow(workflow_id).steps
        assert [str(s.status) for s in steps] == ["failed"] + ["cancelled"] * 4
        assert app.get_job(steps[3].job_id).error == (
            f"cancelled: job {steps[0].job_id}, before the group it waits for, is failed")
        # a failure inside a member (a chain's first step) still lets the callback run
        workflow_id = app.run_workflow(chain(
            step("Numbers", "count", {"n": 1}),
            group(chain(step("Numbers", "fail", retry_attempts=0),
                        step("Numbers", "count", {"n": 5})),
                  step("Numbers", "count", {"n": 2}),
                  then=step("Numbers", "total", result_as="values"))))
        run_until_empty(app, timeout=15)
        steps = app.get_workflow(workflow_id).steps
        assert [str(s.status) for s in steps] == ["completed", "failed", "cancelled",
                                                   "completed", "completed"]
        assert app.get_job(steps[4].job_id).params == {"values": [None, 2]}

    def test_a_step_cancelled_while_blocked_gets_its_results_when_retried(
            self, app: JobKit) -> None:
        """Cancelled by hand before its release, retried once its parent completed.

        The retry writes the parent's result in as ``result_as``, as a release does; before,
        it ran without it and failed ('value: missing').
        """
        workflow_id = app.run_workflow(chain(step("Numbers", "count", {"n": 3}),
                                             step("Numbers", "double", result_as="value")))
        second = app.get_workflow(workflow_id).steps[1].job_id
        assert app.cancel_job(second)
        run_until_empty(app, timeout=15)
        assert app.retry_job(second)
        assert app.get_job(second).params == {"value": 3}
        run_until_empty(app, timeout=15)
        assert app.get_job(second).result == 6

    def test_on_failure_run_goes_on_after_a_failed_step(self, app: JobKit) -> None:
        """A step with on_failure="run" runs after its parent failed, receiving None.

        The steps after it go on.
        """
        workflow_id = app.run_workflow(chain(
            step("Numbers", "fail", retry_attempts=0),
            step("Numbers", "maybe", result_as="value", on_failure="run"),
            step("Numbers", "text")))
        run_until_empty(app, timeout=15)
        steps = app.get_workflow(workflow_id).steps
        assert [str(s.status) for s in steps] == ["failed", "completed", "completed"]
        assert app.get_job(steps[1].job_id).params == {"value": None}

    def test_depends_on_and_cancel_workflow(self, app: JobKit) -> None:
        """A job with depends_on waits, blocked, for a workflow's step.

        Cancelling the workflow cancels its steps and what needs them.
        """
        workflow_id = app.run_workflow(chain(step("Numbers", "count", {"n": 1}),
                                             step("Numbers", "count", {"n": 2})))
        last = app.get_workflow(workflow_id).steps[-1].job_id
        after = app.run_background_job("Numbers", "count", {"n": 3}, depends_on=[last])
        assert app.get_job(after).status is JobStatus.BLOCKED
        assert app.cancel_workflow(workflow_id) == 2
        assert app.get_job(after).status is JobStatus.CANCELLED
        with pytest.raises(ConfigError, match="depends_on"):
            app.run_background_job("Numbers", "count", {"n": 3}, depends_on=last)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="call: depends_on: no job with id '999999' in"):
            app.run_background_job("Numbers", "count", {"n": 3}, depends_on=[last, "999999"])


class Heard:
    """A plugin that keeps every ``jobkit_job_event`` it is told, as (kind, job id, status)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    @jobkit.hookimpl
    def jobkit_job_event(self, event: jobkit.JobEvent) -> None:
        self.events.append((str(event.kind), event.job.id, str(event.job.status)))


@pytest.fixture
def heard(app: JobKit) -> Iterator[tuple[JobKit, list[jobkit.JobEvent], Heard]]:
    """The app, the events its listeners hear (in the changing thread) and a plugin's."""
    listened: list[jobkit.JobEvent] = []
    app.events.listeners.append(listened.append)
    plugin = Heard()
    app.pm.register(plugin)
    yield app, listened, plugin


def told(events: list[jobkit.JobEvent], *job_ids: str) -> list[tuple[str, str]]:
    """(kind, job id) of the events about ``job_ids``, in order."""
    return [(str(e.kind), e.job.id) for e in events if e.job.id in job_ids]


class TestEvents:
    def test_a_failure_announces_the_steps_it_cancels_after_its_own_end(
            self, heard: tuple[JobKit, list[jobkit.JobEvent], Heard]) -> None:
        """A step fails: a ``cancelled`` event for each step its end cancelled, after ``failed``.

        To jobkit's listeners and to the plugins, with the error naming the failed parent.
        """
        app, listened, plugin = heard
        workflow_id = app.run_workflow(chain(
            step("Numbers", "fail", retry_attempts=0), step("Numbers", "double", result_as="value"),
            step("Numbers", "double", result_as="value")))
        first, second, third = (s.job_id for s in app.get_workflow(workflow_id).steps)
        run_until_empty(app, timeout=15)
        assert told(listened, first, second, third)[3:] == [
            ("started", first), ("failed", first), ("cancelled", second), ("cancelled", third)]
        cancels = [e for e in listened if str(e.kind) == "cancelled"]
        assert {e.job.status for e in cancels} == {JobStatus.CANCELLED}
        assert cancels[0].error is not None and cancels[0].error.startswith("cancelled: job ")
        assert app.events.flush()
        assert [(kind, job) for kind, job, _ in plugin.events] == told(
            listened, first, second, third)

    def test_cancel_job_and_cancel_workflow_announce_what_waited(
            self, heard: tuple[JobKit, list[jobkit.JobEvent], Heard]) -> None:
        """A job that waits for a cancelled one is announced ``cancelled`` too.

        ``cancel_job`` of a first step, and ``cancel_workflow`` for a job outside the
        workflow that waited for one of its steps.
        """
        app, listened, _ = heard
        workflow_id = app.run_workflow(chain(step("Numbers", "count", {"n": 1}),
                                             step("Numbers", "count", {"n": 2})))
        first, last = (s.job_id for s in app.get_workflow(workflow_id).steps)
        after = app.run_background_job("Numbers", "count", {"n": 3}, depends_on=[last])
        assert app.cancel_job(first)
        assert told(listened, first, last, after)[-3:] == [
            ("cancelled", first), ("cancelled", last), ("cancelled", after)]
        other = app.run_workflow(chain(step("Numbers", "count", {"n": 1}),
                                       step("Numbers", "count", {"n": 2})))
        one, two = (s.job_id for s in app.get_workflow(other).steps)
        outside = app.run_background_job("Numbers", "count", {"n": 3}, depends_on=[two])
        listened.clear()
        assert app.cancel_workflow(other) == 2
        assert told(listened, one, two, outside) == [
            ("cancelled", one), ("cancelled", two), ("cancelled", outside)]

    def test_a_job_stored_after_its_parent_failed_is_announced_cancelled(
            self, heard: tuple[JobKit, list[jobkit.JobEvent], Heard]) -> None:
        """``depends_on`` a failed job: ``enqueued`` then ``cancelled``, at once."""
        app, listened, _ = heard
        failed = app.run_background_job("Numbers", "fail", retry_attempts=0)
        run_until_empty(app, timeout=15)
        after = app.run_background_job("Numbers", "count", {"n": 1}, depends_on=[failed])
        assert told(listened, after) == [("enqueued", after), ("cancelled", after)]

    def test_a_retry_announces_the_steps_it_makes_wait_again(
            self, heard: tuple[JobKit, list[jobkit.JobEvent], Heard]) -> None:
        """``retry_job`` of a failed step: ``enqueued`` for it and for each step it revives.

        A release (``blocked`` to ``pending``) is announced by nothing: the step's next event
        is ``started``.
        """
        app, listened, _ = heard
        workflow_id = app.run_workflow(chain(
            step("Numbers", "fail", retry_attempts=0), step("Numbers", "maybe", result_as="value")))
        first, second = (s.job_id for s in app.get_workflow(workflow_id).steps)
        run_until_empty(app, timeout=15)
        listened.clear()
        assert app.retry_job(first)
        assert [(str(e.kind), e.job.id, e.job.status) for e in listened] == [
            ("enqueued", first, JobStatus.PENDING), ("enqueued", second, JobStatus.BLOCKED)]
        run_until_empty(app, timeout=15)
        assert [kind for kind, job in told(listened, second)] == [
            "enqueued", "cancelled"]  # its parent failed again

    def test_a_notification_on_cancel_is_sent_for_a_cascaded_step(self, tmp_path: Path) -> None:
        """``notifications:`` with ``events: [cancelled]`` hears of the steps a failure cancels."""
        sent: list[tuple[str, str, str | None]] = []

        class Chat(jobkit.notify.Notifier):
            def notify(self, event: jobkit.JobEvent) -> None:
                sent.append((str(event.kind), event.job.method, event.error))

        class ChatPlugin:
            @jobkit.hookimpl
            def jobkit_register_notifiers(self, registry: Any) -> None:
                registry.add("chat", Chat)

        config = Config.from_dict({
            "storage": f"sqlite:///{tmp_path / 'jobs.db'}",
            "notifications": [{"plugin": "chat", "events": ["cancelled"]}]})
        with JobKit(config, plugins=(ChatPlugin(),), load_entrypoints=False) as app:
            app.register("Numbers", Numbers)
            workflow_id = app.run_workflow(chain(
                step("Numbers", "fail", retry_attempts=0),
                step("Numbers", "double", result_as="value")))
            first = app.get_workflow(workflow_id).steps[0].job_id
            run_until_empty(app, timeout=15)
            assert app.events.flush()
        assert sent == [("cancelled", "double", f"cancelled: job {first}, which it waits for, "
                                                "is failed")]


class TestReleasedParamsSize:
    def test_a_step_whose_results_do_not_fit_fails_naming_its_size(
            self, small_app: JobKit) -> None:
        """The results given as ``result_as`` make the params too large: the step fails.

        It never runs, its error names the step, the size and the limit (a ``failed`` event);
        what needs it completed is cancelled, what runs after failures runs. Its params are
        left as stored.
        """
        app = small_app
        listened: list[jobkit.JobEvent] = []
        app.events.listeners.append(listened.append)
        workflow_id = app.run_workflow(chain(
            group(step("Numbers", "text", {"value": "x" * 40}),
                  step("Numbers", "text", {"value": "y" * 40}),
                  then=chain(step("Numbers", "loose", result_as="value"),
                             step("Numbers", "text"))),
            step("Numbers", "maybe", on_failure="run")))
        run_until_empty(app, timeout=15)
        steps = app.get_workflow(workflow_id).steps
        assert [(s.label, str(s.status)) for s in steps] == [
            ("0.0", "completed"), ("0.1", "completed"), ("0.then.0", "failed"),
            ("0.then.1", "cancelled"), ("1", "completed")]
        failed = app.get_job(steps[2].job_id)
        assert failed.params == {} and failed.attempts == 0
        assert failed.error == (
            "step 0.then.0 (Numbers.loose): its params, with the results it waits for given as "
            "value, are 109 bytes of JSON, over max_params_bytes (100); it was not run")
        assert [str(e.kind) for e in listened if e.job.id == failed.id] == ["enqueued", "failed"]
        assert f"job {failed.id}" in (app.get_job(steps[3].job_id).error or "")
