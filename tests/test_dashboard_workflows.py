"""The dashboard's workflow page, its API, cancel and the job page's links to its workflow.

The page's SVG graph, its API, the cancel action and the job page's links, on SQLite, memory
and PostgreSQL; a store without the capability.

Sign-in for these routes is in test_dashboard.py's PAGES, API and POSTS lists.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import config_data
from test_dashboard import ADMIN, HASHES, VIEWER, PlainPlugin, sign_in
from test_workflow_commands import fan_in

pytest.importorskip("starlette")

from starlette.testclient import TestClient

from jobkit import JobKit, JobStatus
from jobkit.config import Config
from jobkit.dashboard import graph
from jobkit.dashboard.web import create_app
from jobkit.worker import run_until_empty
from jobkit.workflow_report import workflow_json


@pytest.fixture(params=["sqlite", "memory", "postgres"])
def board(request: pytest.FixtureRequest,
          tmp_path: Path) -> Iterator[tuple[JobKit, TestClient, str]]:
    """An app, its dashboard (not signed in) and a workflow of six steps (fan_in)."""
    storage = {"sqlite": config_data(tmp_path)["storage"], "memory": "memory://",
               "postgres": None}[request.param] or request.getfixturevalue("empty_postgres_url")
    data = config_data(tmp_path, storage=storage, dashboard={
        "password_hash": HASHES[ADMIN], "readonly_password_hash": HASHES[VIEWER]})
    with JobKit(Config.from_dict(data), load_entrypoints=False) as app, \
            TestClient(create_app(app), base_url="http://127.0.0.1") as client:
        yield app, client, app.run_workflow(fan_in(str(tmp_path / "ledger")))


def boxes(page: str) -> dict[str, str]:
    """The graph's step boxes by job id: each ``<g data-step>``'s markup."""
    return dict(re.findall(r'<g class="wf-step [^"]*" data-step="([^"]+)">(.*?)</g>', page))


class TestWorkflowPage:
    def test_the_graph_draws_each_step_with_its_status_and_a_link(
        self, board: tuple[JobKit, TestClient, str]
    ) -> None:
        """Every step is a box with its label, job id, Name.method and status, a link to its job.

        The callback's three parents share one dashed bus; the other edges are curves."""
        app, client, workflow_id = board
        sign_in(client)
        page = client.get(f"/workflows/{workflow_id}")
        assert page.status_code == 200
        text = page.text
        steps = app.get_workflow(workflow_id).steps
        drawn = boxes(text)
        assert list(drawn) == [s.job_id for s in steps]
        for found in steps:
            assert (f'<a href="/jobs/{found.job_id}"><g class="wf-step '
                    f'status-{found.status.value}" data-step="{found.job_id}">') in text
            box = drawn[found.job_id]
            assert f"{found.label} · #{found.job_id}" in box and "Recorder.record" in box
            assert f'class="wf-status">{found.status.value}<' in box
        assert text.count("<svg") == 1 and "<script" not in text.split("<svg")[1]
        assert text.count('class="wf-edge"') == 4  # first to each member, callback to last
        assert text.count('class="wf-edge wf-ended wf-bus"') == 1
        assert f'data-live="/api/workflows/{workflow_id}?view=statuses"' in text
        assert 'data-live-kind="workflow"' in text
        assert '<span class="status status-pending">pending 1</span>' in text

        run_until_empty(app)
        done = client.get(f"/workflows/{workflow_id}").text
        assert all("status-completed" in tag for tag in re.findall(r'<g class="[^"]*"', done))

    def test_the_api_is_the_workflow_as_json(
        self, board: tuple[JobKit, TestClient, str]
    ) -> None:
        app, client, workflow_id = board
        sign_in(client, VIEWER)
        data = client.get(f"/api/workflows/{workflow_id}").json()
        assert data == workflow_json(app.get_workflow(workflow_id))
        assert [s["status"] for s in data["steps"]] == ["pending"] + ["blocked"] * 5
        statuses = client.get(f"/api/workflows/{workflow_id}?view=statuses").json()
        assert statuses == {"id": workflow_id, "finished": False,
                            "counts": {"pending": 1, "blocked": 5},
                            "statuses": {s["job_id"]: s["status"] for s in data["steps"]}}
        refused = client.get(f"/api/workflows/{workflow_id}?view=everything")
        assert refused.status_code == 400 and "view must be statuses" in refused.text

    def test_an_unknown_workflow_is_404(self, board: tuple[JobKit, TestClient, str]) -> None:
        _, client, _ = board
        csrf = sign_in(client)
        for answer in (client.get("/workflows/999"), client.get("/api/workflows/999"),
                       client.post("/api/workflows/999/cancel",
                                   headers={"X-CSRF-Token": csrf})):
            assert answer.status_code == 404
            assert "no workflow with id '999'" in answer.text

    @pytest.mark.parametrize(("limit", "value", "said", "drawn"), [
        ("MAX_DRAWN", 4, "4 of 6 steps are drawn, in the first 2 of 4 layers", [0, 1, 2, 3]),
        ("MAX_ROW", 2, "5 of 6 steps are drawn: a layer shows at most 2 steps", [0, 1, 2, 4, 5]),
    ])
    def test_past_a_limit_the_page_says_what_is_drawn(
        self, board: tuple[JobKit, TestClient, str], monkeypatch: pytest.MonkeyPatch,
        limit: str, value: int, said: str, drawn: list[int]
    ) -> None:
        """Whole layers until MAX_DRAWN steps; a layer wider than MAX_ROW counts the rest."""
        app, client, workflow_id = board
        sign_in(client)
        monkeypatch.setattr(graph, limit, value)
        text = client.get(f"/workflows/{workflow_id}").text
        assert said in text
        steps = app.get_workflow(workflow_id).steps
        assert list(boxes(text)) == [steps[i].job_id for i in drawn]
        assert ("+ 1 more in this layer" in text) is (limit == "MAX_ROW")


class TestCancel:
    def test_an_admin_cancels_with_the_csrf_token(
        self, board: tuple[JobKit, TestClient, str]
    ) -> None:
        """The button posts with the token; without it 403 and nothing changes."""
        app, client, workflow_id = board
        csrf = sign_in(client)
        page = client.get(f"/workflows/{workflow_id}").text
        assert f'action="/workflows/{workflow_id}/cancel"' in page
        refused = client.post(f"/workflows/{workflow_id}/cancel", follow_redirects=False)
        assert refused.status_code == 403
        assert not app.get_workflow(workflow_id).finished
        done = client.post(f"/workflows/{workflow_id}/cancel", data={"csrf": csrf},
                           follow_redirects=False)
        assert done.status_code == 303
        assert done.headers["location"] == f"/workflows/{workflow_id}"
        assert {s.status for s in app.get_workflow(workflow_id).steps} == {JobStatus.CANCELLED}
        after = client.get(f"/workflows/{workflow_id}").text
        assert f"workflow {workflow_id}: 6 step(s) cancelled" in after
        assert re.search(r"<form[^>]*/cancel\"[^>]*data-unfinished hidden", after)
        again = client.post(f"/api/workflows/{workflow_id}/cancel",
                            headers={"X-CSRF-Token": csrf})
        assert again.json() == {"workflow_id": workflow_id, "cancelled": 0}

    def test_a_viewer_sees_no_button_and_is_refused(
        self, board: tuple[JobKit, TestClient, str]
    ) -> None:
        app, client, workflow_id = board
        csrf = sign_in(client, VIEWER)
        assert "/cancel" not in client.get(f"/workflows/{workflow_id}").text
        refused = client.post(f"/workflows/{workflow_id}/cancel", data={"csrf": csrf},
                              follow_redirects=False)
        assert refused.status_code == 403
        assert not app.get_workflow(workflow_id).finished


class TestJobPage:
    def test_a_step_links_to_its_workflow_and_what_it_waits_for(
        self, board: tuple[JobKit, TestClient, str]
    ) -> None:
        """A blocked callback names the steps it waits for, each a link, and its workflow.

        A step not blocked names only its workflow; a job of no workflow neither."""
        app, client, workflow_id = board
        sign_in(client)
        steps = app.get_workflow(workflow_id).steps
        page = html.unescape(client.get(f"/jobs/{steps[4].job_id}").text)
        assert f'<a href="/workflows/{workflow_id}">workflow {workflow_id}</a>' in page
        for member in steps[1:4]:
            assert (f'<a href="/jobs/{member.job_id}">#{member.job_id}</a> ({member.label}, '
                    f'<span class="status status-blocked">blocked</span>)') in page
        first = client.get(f"/jobs/{steps[0].job_id}").text
        assert f'href="/workflows/{workflow_id}"' in first and "waits for" not in first
        alone = app.run_background_job("Recorder", "record", {"ledger": "x", "tag": "t"})
        assert "/workflows/" not in client.get(f"/jobs/{alone}").text

    def test_a_blocked_step_can_be_cancelled_from_its_page(
        self, board: tuple[JobKit, TestClient, str]
    ) -> None:
        app, client, workflow_id = board
        csrf = sign_in(client)
        blocked = app.get_workflow(workflow_id).steps[5].job_id
        page = client.get(f"/jobs/{blocked}").text
        assert re.search(r'data-when="pending retrying running blocked">', page)
        client.post(f"/jobs/{blocked}/cancel", data={"csrf": csrf})
        assert app.get_job(blocked).status is JobStatus.CANCELLED


def test_a_store_without_workflows_keeps_none(tmp_path: Path) -> None:
    """The core alone: a workflow page is a 404 saying so; a job page links to none."""
    data = {**config_data(tmp_path, dashboard={"password_hash": HASHES[ADMIN]}),
            "storage": "plain://"}
    with JobKit(Config.from_dict(data), plugins=(PlainPlugin(),),
                load_entrypoints=False) as app, TestClient(
            create_app(app), base_url="http://127.0.0.1") as client:
        csrf = sign_in(client)
        for answer in (client.get("/workflows/1"), client.get("/api/workflows/1"),
                       client.post("/api/workflows/1/cancel", headers={"X-CSRF-Token": csrf})):
            assert answer.status_code == 404
            assert "this job store keeps no workflows" in answer.text
        job_id = app.run_background_job("Recorder", "record", {"ledger": "x", "tag": "t"})
        page: Any = client.get(f"/jobs/{job_id}")
        assert page.status_code == 200 and "/workflows/" not in page.text


def test_a_thousand_steps_in_fifty_layers_draw_in_one_svg() -> None:
    """Fifty layers of 20, each step waiting for all 20 before, draw one bus per layer.

    1,000 boxes, 49 buses and no line per pair; every layer a row of its own."""
    from jobkit.records import NEEDS_COMPLETED, WorkflowStep

    steps = []
    for layer in range(50):
        before = tuple(str(20 * (layer - 1) + i) for i in range(20)) if layer else ()
        steps.extend(WorkflowStep(str(20 * layer + i), f"{layer}.{i}", "Recorder", "record",
                                  JobStatus.BLOCKED, before, NEEDS_COMPLETED)
                     for i in range(20))
    placed = graph.layout(steps).boxes
    assert {box.layer for box in placed.values()} == set(range(50))
    assert len({box.y for box in placed.values()}) == 50
    drawn = graph.draw(steps, "big")
    assert drawn.drawn == 1000 and drawn.layers == drawn.all_layers == 50
    assert drawn.svg.count("<g class=") == 1000
    assert drawn.svg.count("wf-bus") == 49 and drawn.svg.count("<path") == 49
    assert len(drawn.svg) < 600_000


def test_a_group_of_ten_thousand_draws_a_row_of_max_row() -> None:
    """A group of 10,000 with a callback: 40 members, a fold counting 9,960, the callback."""
    from jobkit.records import NEEDS_COMPLETED, NEEDS_ENDED, WorkflowStep

    members = [WorkflowStep(str(i), f"0.{i}", "Recorder", "record", JobStatus.PENDING, (),
                            NEEDS_COMPLETED) for i in range(10_000)]
    callback = WorkflowStep("callback", "then", "Recorder", "record", JobStatus.BLOCKED,
                            tuple(step.job_id for step in members), NEEDS_ENDED)
    drawn = graph.draw([*members, callback], "wide")
    assert drawn.drawn == graph.MAX_ROW + 1
    assert "+ 9,960 more in this layer" in drawn.svg
    assert 'data-step="callback"' in drawn.svg and drawn.svg.count("wf-bus") == 1
    width = int(re.search(r'width="(\d+)"', drawn.svg).group(1))  # type: ignore[union-attr]
    assert width < (graph.MAX_ROW + 2) * (graph.BOX_W + graph.GAP_X)


def test_a_workflow_with_no_step_left_draws_a_valid_svg() -> None:
    """Every step pruned (retention): the workflow's page draws an empty SVG, no negative size.

    Before, its height was -32 (viewBox "0 0 192 -32"), which a browser refuses.
    """
    drawn = graph.draw([], "workflow 1: 0 steps")
    sizes = re.search(r'viewBox="0 0 (-?\d+) (-?\d+)" width="(-?\d+)" height="(-?\d+)"',
                      drawn.svg)
    assert sizes is not None and all(int(value) >= 0 for value in sizes.groups())
    assert drawn.drawn == drawn.layers == drawn.all_layers == 0
