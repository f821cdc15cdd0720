"""The dashboard through Starlette's ASGI test client: sign-in, roles, CSRF, escaping, filters,
headers, the JSON API; and `jobkit dashboard` as a real uvicorn server."""

from __future__ import annotations

import html
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import config_data
from test_schedule_commands import SCHEDULES
from test_schedules import Clock, at
from workers import dashboard_process, free_port, subprocess_env

pytest.importorskip("starlette")
pytest.importorskip("httpx2")

from starlette.testclient import TestClient

from jobkit import Job, JobKit, JobStatus, hookimpl
from jobkit.config import Config, DashboardSettings
from jobkit.dashboard.passwords import hash_password, verify_password
from jobkit.dashboard.security import Access, check_listen, is_loopback
from jobkit.dashboard.web import create_app
from jobkit.exceptions import ConfigError
from jobkit.records import JobLogLine, WorkerInfo
from jobkit.storage import MemoryStorage
from jobkit.storage.capabilities import OPTIONAL_CAPABILITIES, supports
from jobkit.storage.sqlite import SQLiteStorage
from jobkit.testing.coreonly import CoreOnlyStorage

ADMIN, VIEWER = "admin-password-1", "viewer-password-2"
#: Made once: scrypt takes ~50 ms by design.
HASHES = {ADMIN: hash_password(ADMIN), VIEWER: hash_password(VIEWER)}
#: Every page, and every API route, an anonymous caller must not see.
PAGES = ["/", "/jobs", "/jobs/1", "/registry", "/jobs?status=failed", "/queues", "/schedules",
         "/schedules/sweep", "/workflows/1"]
API = ["/api/overview", "/api/jobs", "/api/jobs/1", "/api/registry", "/api/queues",
       "/api/schedules", "/api/schedules/sweep", "/api/workflows/1"]
POSTS = ["/jobs/1/cancel", "/jobs/1/retry", "/api/jobs/1/cancel", "/api/jobs/1/retry",
         "/queues/mail/pause", "/api/queues/mail/pause", "/api/queues/mail/resume",
         "/schedules/sweep/pause", "/api/schedules/sweep/pause", "/api/schedules/sweep/resume",
         "/workflows/1/cancel", "/api/workflows/1/cancel"]


def dashboard_config(tmp_path: Path, **dashboard: Any) -> Config:
    settings = {"password_hash": HASHES[ADMIN], "readonly_password_hash": HASHES[VIEWER],
                **dashboard}
    return Config.from_dict(config_data(tmp_path, dashboard=settings))


@pytest.fixture
def app(tmp_path: Path) -> Iterator[JobKit]:
    with JobKit(dashboard_config(tmp_path), load_entrypoints=False) as built:
        yield built


@pytest.fixture
def client(app: JobKit) -> Iterator[TestClient]:
    with TestClient(create_app(app), base_url="http://127.0.0.1") as test_client:
        yield test_client


def csrf_of(client: TestClient, path: str = "/login") -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(path).text)
    assert found, "no CSRF token in the form"
    return found.group(1)


def sign_in(client: TestClient, password: str = ADMIN) -> str:
    """Sign in; the session's CSRF token."""
    response = client.post("/login", data={"csrf": csrf_of(client), "password": password},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    return csrf_of(client, "/")


class TestPasswords:
    def test_a_hash_verifies_its_password_only(self) -> None:
        stored = HASHES[ADMIN]
        assert stored.startswith("scrypt$16384$8$1$")
        assert verify_password(ADMIN, stored)
        assert not verify_password(ADMIN + "x", stored)
        assert hash_password(ADMIN) != stored  # salted

    @pytest.mark.parametrize("stored", ["", "plain", "scrypt$3$8$1$AAAA$AAAA",
                                        "scrypt$16384$8$1$!!$AAAA", "md5$x"])
    def test_a_malformed_hash_never_verifies(self, stored: str) -> None:
        assert not verify_password("anything", stored)

    def test_jobs_yaml_refuses_a_plain_password(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError,
                           match=r"dashboard\.password_hash: expected a password hash, not a"):
            Config.from_dict(config_data(tmp_path, dashboard={"password_hash": "hunter2"}))


class TestAccess:
    def test_sign_in_required_without_a_password_is_refused(self) -> None:
        with pytest.raises(ConfigError, match="jobkit dashboard hash-password"):
            Access.from_settings(DashboardSettings())

    def test_no_sign_in_only_on_the_loopback(self) -> None:
        open_access = Access.from_settings(DashboardSettings(auth=False))
        check_listen("127.0.0.1", open_access)
        check_listen("::1", open_access)
        check_listen("localhost", open_access)
        for host in ("0.0.0.0", "192.168.1.10", "::"):
            with pytest.raises(ConfigError, match=f"refusing to listen on {re.escape(host)}"):
                check_listen(host, open_access)
        locked = Access.from_settings(DashboardSettings(password_hash=HASHES[ADMIN]))
        check_listen("0.0.0.0", locked)
        assert not is_loopback("no-such-host.invalid")


class TestAnonymous:
    @pytest.mark.parametrize("path", PAGES)
    def test_pages_send_to_sign_in(self, client: TestClient, path: str) -> None:
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")

    @pytest.mark.parametrize("path", API)
    def test_the_api_answers_401(self, client: TestClient, path: str) -> None:
        response = client.get(path)
        assert response.status_code == 401
        assert response.json() == {"error": "sign-in required"}

    @pytest.mark.parametrize("path", POSTS)
    def test_actions_are_refused(self, client: TestClient, app: JobKit, path: str) -> None:
        job_id = app.run_background_job("Recorder", "record", {"ledger": "x", "tag": "t"})
        response = client.post(path.replace("/1/", f"/{job_id}/"), follow_redirects=False)
        assert response.status_code in (303, 401)
        assert app.get_job(job_id).status is JobStatus.PENDING

    def test_a_wrong_bearer_token_is_refused(self, client: TestClient) -> None:
        response = client.get("/api/jobs", headers={"Authorization": "Bearer nope"})
        assert response.status_code == 401


class TestSignIn:
    def test_sign_in_needs_the_forms_csrf_token(self, client: TestClient) -> None:
        client.get("/login")
        response = client.post("/login", data={"password": ADMIN}, follow_redirects=False)
        assert response.status_code == 403

    def test_a_wrong_password_is_refused(self, client: TestClient) -> None:
        response = client.post("/login", data={"csrf": csrf_of(client), "password": "wrong",
                                               "next": "/jobs/7"})
        assert response.status_code == 401
        assert "wrong password" in response.text
        assert 'name="next" value="/jobs/7"' in response.text  # still going there

    def test_sign_in_goes_back_to_the_page_asked_for_on_this_site_only(
        self, client: TestClient
    ) -> None:
        for given, expected in [("/jobs?status=failed", "/jobs?status=failed"),
                                ("//evil.example/", "/"), ("https://evil.example/", "/"),
                                ("/\\evil.example", "/")]:
            client.cookies.clear()
            response = client.post(
                "/login", data={"csrf": csrf_of(client), "password": ADMIN, "next": given},
                follow_redirects=False,
            )
            assert response.headers["location"] == expected

    def test_the_session_cookie_is_httponly_and_samesite(self, client: TestClient) -> None:
        response = client.post("/login", data={"csrf": csrf_of(client), "password": ADMIN},
                               follow_redirects=False)
        cookie = response.headers["set-cookie"].lower()
        assert "jobkit_session=" in cookie and "httponly" in cookie
        assert "samesite=strict" in cookie

    def test_a_session_ends_after_session_seconds(self, tmp_path: Path) -> None:
        # 3 s: a loaded machine (CI) once took over 1 s between the sign-in and the next page
        config = dashboard_config(tmp_path, session_seconds=3)
        with (
            JobKit(config, load_entrypoints=False) as app,
            TestClient(create_app(app), base_url="http://127.0.0.1") as client,
        ):
            sign_in(client)
            assert client.get("/", follow_redirects=False).status_code == 200
            time.sleep(4.1)
            assert client.get("/", follow_redirects=False).status_code == 303

    def test_sign_out_ends_the_session(self, client: TestClient) -> None:
        csrf = sign_in(client)
        response = client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
        assert response.status_code == 303
        assert client.get("/", follow_redirects=False).status_code == 303


class TestPages:
    def test_every_page_answers_with_security_headers(
        self, client: TestClient, app: JobKit
    ) -> None:
        job_id = app.run_background_job("Recorder", "record", {"ledger": "x", "tag": "t"})
        sign_in(client)
        for path in ["/", "/jobs", f"/jobs/{job_id}", "/registry", "/login"]:
            response = client.get(path)
            assert response.status_code == 200, path
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "unsafe-inline" not in csp
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["x-content-type-options"] == "nosniff"
        assert "<script>" not in client.get("/").text.replace(
            '<script src="/static/dashboard.js" defer></script>', "")

    def test_a_jobs_log_lines_are_shown_escaped(self, client: TestClient, app: JobKit) -> None:
        job_id = app.run_background_job("Recorder", "record", {"ledger": "x", "tag": "t"})
        now = app.storage.now()
        app.storage.add_job_logs(job_id, [JobLogLine(1, now, "INFO", "<script>alert(1)</script>"),
                                          JobLogLine(1, now, "ERROR", "second")])
        sign_in(client)
        page = client.get(f"/jobs/{job_id}").text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
        assert f"<title>Job #{job_id} · jobkit</title>" in page
        logs = client.get(f"/api/jobs/{job_id}").json()["logs"]
        assert [(line["attempt"], line["level"], line["message"]) for line in logs] == [
            (1, "INFO", "<script>alert(1)</script>"), (1, "ERROR", "second")]

    def test_script_in_params_and_errors_is_shown_escaped(
        self, client: TestClient, app: JobKit
    ) -> None:
        evil = "<script>alert(1)</script>"
        job_id = app.run_background_job("Recorder", "record", {"ledger": evil, "tag": evil})
        sign_in(client)
        for path in [f"/jobs/{job_id}", "/jobs"]:
            text = client.get(path).text
            assert evil not in text, path
            assert "\\u003cscript\\u003e" in text or "&lt;script&gt;" in text

    @pytest.mark.parametrize(
        "query",
        ["status=bogus", "page=2", "sort=id", "sort=name", "name=" + "n" * 201,
         "status=pending&order=desc", "priority=high", "priority=99999999999",
         "since=yesterday", "after=1;drop", "sort=next&after=5", "sort=finished",
         "text=" + "t" * 201],
    )
    def test_filters_outside_the_allow_list_are_400(self, client: TestClient, query: str) -> None:
        sign_in(client)
        assert client.get(f"/jobs?{query}").status_code == 400
        response = client.get(f"/api/jobs?{query}")
        assert response.status_code == 400 and "error" in response.json()

    def test_the_list_filters_and_pages(self, client: TestClient, app: JobKit) -> None:
        ids = app.enqueue_many("Recorder", "record",
                               [{"ledger": "x", "tag": str(n)} for n in range(60)])
        app.cancel_job(ids[0])
        sign_in(client)
        first = client.get("/api/jobs?status=pending").json()
        assert first["total"] == 59 and first["total_text"] == "59"
        assert len(first["jobs"]) == 50 and first["jobs"][0]["id"] == ids[-1]  # newest first
        second = client.get(f"/api/jobs?{first['next']}").json()
        assert [job["id"] for job in second["jobs"]] == ids[1:10][::-1]
        assert second["next"] is None
        both = client.get("/api/jobs?status=pending&status=cancelled&sort=oldest").json()
        assert both["jobs"][0]["id"] == ids[0] and both["total"] == 60
        queue = client.get("/api/jobs?sort=next").json()  # claim order; one due time for all
        assert [job["id"] for job in queue["jobs"]] == ids[1:51]
        rest = client.get(f"/api/jobs?{queue['next']}").json()
        assert [job["id"] for job in rest["jobs"]] == ids[51:] and rest["next"] is None
        found = client.get("/api/jobs", params={"text": '"tag": "42"'}).json()
        assert [job["id"] for job in found["jobs"]] == [ids[42]]
        assert client.get("/api/jobs?method=nope").json()["total"] == 0
        page = client.get("/jobs?status=pending")
        assert 'rel="next"' in page.text and "59</span> job(s)" in page.text
        assert client.get("/api/jobs/999999").status_code == 404

    def test_a_time_range_in_utc(self, client: TestClient, app: JobKit) -> None:
        job_id = app.run_background_job("Recorder", "record", {"ledger": "x", "tag": "t"})
        created = app.get_job(job_id).created_at
        sign_in(client)
        before = (created.replace(tzinfo=None) - timedelta(minutes=1)).isoformat(timespec="minutes")
        after = (created.replace(tzinfo=None) + timedelta(minutes=1)).isoformat(timespec="minutes")
        inside = client.get("/api/jobs", params={"since": before, "until": after}).json()
        assert [job["id"] for job in inside["jobs"]] == [job_id]
        assert client.get("/api/jobs", params={"since": after}).json()["total"] == 0

    def test_secrets_in_params_are_masked(self, client: TestClient, tmp_path: Path) -> None:
        sign_in(client)
        job = client.get("/api/registry").json()["jobs"]
        assert {entry["name"] for entry in job} >= {"Recorder", "Slow"}
        recorder = next(entry for entry in job if entry["name"] == "Recorder")
        assert any(m.startswith("record(ledger: str, tag: str)") for m in recorder["methods"])
        sources = {s["key"]: s["source"] for s in recorder["settings"]}
        assert "defaults" in sources["retry_attempts"]


class TestOverview:
    def test_workers_what_they_run_and_the_oldest_wait(
        self, client: TestClient, app: JobKit
    ) -> None:
        storage = app.storage
        now = storage.now()
        storage.register_worker(WorkerInfo("h:1:a", "h", 1, 9, now, now))
        storage.register_worker(WorkerInfo("h:2:b", "h", 2, 9, now - timedelta(hours=1),
                                           now - timedelta(minutes=5)))
        waiting = app.run_background_job("Recorder", "record", {"ledger": "x", "tag": "a"})
        busy = app.run_background_job("Recorder", "record", {"ledger": "x", "tag": "b"},
                                      priority=5)
        assert storage.claim("h:1:a", 30).id == busy
        sign_in(client)
        data = client.get("/api/overview").json()
        assert data["counts"]["running"] == 1 and data["counts"]["pending"] == 1
        first, second = data["workers"]
        assert first["alive"] and first["job"]["id"] == busy
        assert not second["alive"] and second["job"] is None
        assert 0 <= data["oldest_wait"] < 60
        page = client.get("/").text
        assert "h:2:b" in page and ">lost</span>" in page and f"#{busy} Recorder.record" in page
        assert app.get_job(waiting).status is JobStatus.PENDING

    def test_the_throughput_chart(self, client: TestClient, app: JobKit) -> None:
        now = app.storage.now()
        minute = now.replace(second=0, microsecond=0)
        app.storage.add_throughput(minute, 7, 2)
        app.storage.add_throughput(minute - timedelta(hours=2), 40, 0)  # outside the hour
        assert client.get("/charts/hour.svg").status_code == 401
        sign_in(client)
        data = client.get("/api/overview").json()["throughput"]
        assert len(data["hour"]) == 60 and len(data["day"]) == 24
        assert data["hour"][-1]["succeeded"] == 7 and data["hour"][-1]["failed"] == 2
        assert sum(bar["succeeded"] for bar in data["hour"]) == 7
        assert sum(bar["succeeded"] for bar in data["day"]) == 47
        svg = client.get("/charts/hour.svg")
        assert svg.headers["content-type"].startswith("image/svg+xml")
        assert "7 succeeded, 2 failed" in svg.text and "<script" not in svg.text
        assert client.get("/charts/week.svg").status_code == 404


class PlainMemoryStorage(CoreOnlyStorage):
    """The memory store's core alone, as a minimal third-party backend would be: no optional
    capability."""

    scheme = "plain"

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PlainMemoryStorage:
        options.pop("durability", None)
        return cls(MemoryStorage(**options))


class PlainPlugin:
    @hookimpl
    def jobkit_register_storage(self, registry: Any) -> None:
        registry.add("plain", PlainMemoryStorage)


class TestWithoutOptionalCapabilities:
    @pytest.fixture
    def plain(self, tmp_path: Path) -> Iterator[tuple[JobKit, TestClient]]:
        data = {**config_data(tmp_path, dashboard={"password_hash": HASHES[ADMIN]}),
                "storage": "plain://"}
        with JobKit(Config.from_dict(data), plugins=(PlainPlugin(),),
                    load_entrypoints=False) as app, TestClient(
                create_app(app), base_url="http://127.0.0.1") as test_client:
            sign_in(test_client)
            yield app, test_client

    def test_the_overview_says_what_the_store_does_not_keep(
        self, plain: tuple[JobKit, TestClient]
    ) -> None:
        """Without workers and throughput, the overview says the store keeps none of them
        instead of an empty workers table and empty charts."""
        _, client = plain
        assert not supports(PlainMemoryStorage, "workers")
        data = client.get("/api/overview").json()
        assert data["keeps"] == dict.fromkeys(OPTIONAL_CAPABILITIES, False)
        assert data["workers"] == []
        page = client.get("/").text
        assert "This job store keeps no worker processes, so none is listed." in page
        assert "This job store keeps no throughput, so no chart is drawn." in page
        assert "No worker is running." not in page and "/charts/hour.svg" not in page

    def test_a_job_page_says_the_store_keeps_no_log_lines(
        self, plain: tuple[JobKit, TestClient]
    ) -> None:
        """A job's page says its lines are in the log files, not that it logged nothing."""
        app, client = plain
        job_id = app.run_background_job("Recorder", "record", {"ledger": "x", "tag": "a"})
        assert client.get(f"/api/jobs/{job_id}").json()["keeps"]["job_logs"] is False
        page = client.get(f"/jobs/{job_id}").text
        assert "This job store keeps no log lines of jobs; they are in the log files." in page
        assert "logged nothing" not in page
        assert "This job store keeps no progress of running jobs." in page

    def test_the_jobs_page_says_the_store_has_no_search_index(
        self, plain: tuple[JobKit, TestClient]
    ) -> None:
        """Without the search capability, jobs are still found (every one read) and the page
        says so."""
        app, client = plain
        job_id = app.run_background_job("Recorder", "record", {"ledger": "x", "tag": "a"})
        assert [job["id"] for job in client.get("/api/jobs?status=pending").json()["jobs"]] == [
            job_id]
        assert "This job store has no search index" in client.get("/jobs").text

    def test_the_schedules_page_says_the_store_keeps_none(
        self, plain: tuple[JobKit, TestClient]
    ) -> None:
        """Without the schedules capability the page says no worker starts them."""
        _, client = plain
        assert client.get("/api/schedules").json()["schedules"] == []
        assert "This job store keeps no schedules" in client.get("/schedules").text
        assert client.get("/schedules/any").status_code == 404

    def test_a_store_with_them_shows_them(self, client: TestClient) -> None:
        """The built-in stores keep all three, and the pages show them as before."""
        sign_in(client)
        keeps = client.get("/api/overview").json()["keeps"]
        assert set(keeps) == set(OPTIONAL_CAPABILITIES)
        assert {name: keeps[name] for name in ("workers", "job_logs", "throughput")} == {
            "workers": True, "job_logs": True, "throughput": True}
        page = client.get("/").text
        assert "No worker is running." in page and "/charts/hour.svg" in page
        assert "no search index" not in client.get("/jobs").text


class TestQueues:
    def test_pause_and_resume_from_the_page(self, client: TestClient, app: JobKit) -> None:
        """The queues page pauses and resumes a queue in the store, guarded by CSRF.

        It lists each queue, and a job of the paused queue says why it waits."""
        job_id = app.run_background_job("Recorder", "record", {"ledger": "x", "tag": "t"},
                                        queue="mail")
        csrf = sign_in(client)
        page = client.get("/queues").text
        assert 'data-queue="mail"' in page and 'action="/queues/mail/pause"' in page
        assert client.post("/queues/mail/pause", follow_redirects=False).status_code == 403
        done = client.post("/queues/mail/pause", data={"csrf": csrf}, follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"] == "/queues"
        assert app.storage.paused_queues() == {"mail"}  # type: ignore[attr-defined]
        page = client.get("/queues").text
        assert "queue mail paused" in page and 'action="/queues/mail/resume"' in page
        assert "Waiting: queue mail is paused" in client.get(f"/jobs/{job_id}").text
        assert client.get(f"/api/jobs/{job_id}").json()["waiting"] == "queue mail is paused"
        answer = client.post("/api/queues/mail/resume", headers={"X-CSRF-Token": csrf})
        assert answer.json() == {"queue": "mail", "paused": False, "changed": True}
        assert client.get("/api/queues").json()["queues"] == [
            {"name": "mail", "paused": False, "waiting": 1, "running": 0,
             "done_last_minute": 0, "limits": None}]
        assert client.get(f"/api/jobs/{job_id}").json()["waiting"].startswith("due: waiting")
        bad = client.post("/api/queues/a%20b/pause", headers={"X-CSRF-Token": csrf})
        assert bad.status_code == 400

    def test_the_registry_shows_limits(self, tmp_path: Path) -> None:
        """A job's concurrency and rate limit show on the registry page and in its API."""
        data = config_data(tmp_path, jobs={"Recorder": {
            "class": "sample_jobs:Recorder", "concurrency": {"limit": 2, "key": "tag"},
            "rate_limit": "10/s"}})
        data["dashboard"] = {"auth": False}
        with JobKit(Config.from_dict(data), load_entrypoints=False) as limited, \
                TestClient(create_app(limited), base_url="http://127.0.0.1") as client:
            jobs = client.get("/api/registry").json()["jobs"]
            [job] = [job for job in jobs if job["name"] == "Recorder"]
            settings = {entry["key"]: entry["value"] for entry in job["settings"]}
            assert settings["concurrency"] == {"limit": 2, "key": "tag"}
            assert settings["rate_limit"] == {"limit": 10, "per": 1.0, "key": None}
            assert client.get("/registry").status_code == 200

    def test_a_viewer_sees_the_queues_but_cannot_pause(self, client: TestClient,
                                                       app: JobKit) -> None:
        """The read-only role gets the table without buttons, and a 403 for a pause."""
        app.run_background_job("Recorder", "record", {"ledger": "x", "tag": "t"}, queue="mail")
        csrf = sign_in(client, VIEWER)
        page = client.get("/queues").text
        assert 'data-queue="mail"' in page and "/queues/mail/pause" not in page
        refused = client.post("/queues/mail/pause", data={"csrf": csrf}, follow_redirects=False)
        assert refused.status_code == 403
        assert app.storage.paused_queues() == set()  # type: ignore[attr-defined]


class TestSchedules:
    @pytest.fixture
    def scheduled(self, tmp_path: Path) -> Iterator[tuple[JobKit, TestClient, str]]:
        """An app on a SQLite file with SCHEDULES, its dashboard, and a job of ``sweep``.

        ``sweep`` fired its tick of 2026-01-01 00:01 under a clock the test moves."""
        data = config_data(tmp_path, schedules=SCHEDULES, dashboard={
            "password_hash": HASHES[ADMIN], "readonly_password_hash": HASHES[VIEWER]})
        clock = Clock("2026-01-01T00:00:30")
        storage = SQLiteStorage.from_url(data["storage"], clock=clock)
        with JobKit(Config.from_dict(data), load_entrypoints=False, storage=storage) as app, \
                TestClient(create_app(app), base_url="http://127.0.0.1") as client:
            app.fire_schedule(app.config.schedules["sweep"])
            clock.now = at("2026-01-01T00:01:30")
            (record,) = app.fire_schedule(app.config.schedules["sweep"])
            yield app, client, record.id

    def test_the_page_lists_pauses_and_resumes(
        self, scheduled: tuple[JobKit, TestClient, str]
    ) -> None:
        """Each schedule is listed with its state, runs and last job; a pause is kept.

        Pause and Resume are guarded by the CSRF token; the pause is kept in the store."""
        app, client, job_id = scheduled
        csrf = sign_in(client)
        page = client.get("/schedules").text
        assert 'href="/schedules">Schedules</a>' in page
        for name in ("nightly", "off", "sweep"):
            assert f'data-schedule="{name}"' in page and f'href="/schedules/{name}"' in page
        assert "cron 0 3 * * * (Europe/Berlin)" in page and "every 1m" in page
        assert f'href="/jobs/{job_id}">#{job_id}</a>' in page
        assert 'datetime="2026-01-01T00:01:00.000+00:00"' in page  # sweep's last run
        assert 'action="/schedules/sweep/pause"' in page
        assert client.post("/schedules/sweep/pause", follow_redirects=False).status_code == 403
        done = client.post("/schedules/sweep/pause", data={"csrf": csrf}, follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"] == "/schedules"
        assert [view.paused for view in app.schedules()] == [False, False, True]
        page = client.get("/schedules").text
        assert "schedule sweep paused" in page and 'action="/schedules/sweep/resume"' in page
        again = client.post("/schedules/sweep/pause", data={"csrf": csrf})
        assert "schedule sweep was paused already" in again.text
        answer = client.post("/api/schedules/sweep/resume", headers={"X-CSRF-Token": csrf})
        assert answer.json() == {"schedule": "sweep", "paused": False, "changed": True}
        listed = client.get("/api/schedules").json()
        assert set(listed) == {"keeps", "schedules"} and listed["keeps"]["schedules"] is True
        sweep = listed["schedules"][2]
        assert (sweep["name"], sweep["state"], sweep["paused"], sweep["last_run_at"],
                sweep["last_job_id"], sweep["next_run_at"]) == (
            "sweep", "active", False, "2026-01-01T00:01:00+00:00", job_id,
            "2026-01-01T00:02:00+00:00")
        assert listed["schedules"][1]["state"] == "disabled"

    def test_each_schedule_links_to_its_runs(
        self, scheduled: tuple[JobKit, TestClient, str]
    ) -> None:
        """A schedule's page lists the jobs of its runs with their status, each a link."""
        app, client, job_id = scheduled
        sign_in(client)
        page = client.get("/schedules/sweep").text
        assert f'data-job="{job_id}"' in page and f'href="/jobs/{job_id}"' in page
        assert "status-pending" in page and "Recorder.record" in page
        data = client.get("/api/schedules/sweep").json()
        assert data["schedule"]["name"] == "sweep"
        assert [(run["id"], run["status"]) for run in data["runs"]] == [(job_id, "pending")]
        assert "No run yet" in client.get("/schedules/nightly").text
        assert client.get("/api/schedules/nightly").json()["runs"] == []
        assert app.cancel_job(job_id) is True
        assert "status-cancelled" in client.get("/schedules/sweep").text

    def test_an_unknown_schedule_is_404_naming_the_configured_ones(
        self, scheduled: tuple[JobKit, TestClient, str]
    ) -> None:
        _, client, _ = scheduled
        csrf = sign_in(client)
        for answer in (client.get("/api/schedules/nope"),
                       client.post("/api/schedules/nope/pause", headers={"X-CSRF-Token": csrf})):
            assert answer.status_code == 404
            assert answer.json()["error"].endswith("(configured: nightly, off, sweep)")
        page = client.get("/schedules/nope")
        assert page.status_code == 404 and "configured: nightly, off, sweep" in page.text

    def test_a_viewer_sees_the_schedules_but_cannot_pause(
        self, scheduled: tuple[JobKit, TestClient, str]
    ) -> None:
        app, client, _ = scheduled
        csrf = sign_in(client, VIEWER)
        page = client.get("/schedules").text
        assert 'data-schedule="sweep"' in page and "/schedules/sweep/pause" not in page
        assert "/schedules/sweep/pause" not in client.get("/schedules/sweep").text
        refused = client.post("/schedules/sweep/pause", data={"csrf": csrf},
                              follow_redirects=False)
        assert refused.status_code == 403
        assert not any(view.paused for view in app.schedules())


class TestActions:
    def test_cancel_needs_the_csrf_token(self, client: TestClient, app: JobKit) -> None:
        job_id = app.run_background_job("Recorder", "record", {"ledger": "x", "tag": "t"})
        csrf = sign_in(client)
        refused = client.post(f"/jobs/{job_id}/cancel", follow_redirects=False)
        assert refused.status_code == 403
        wrong = client.post(f"/jobs/{job_id}/cancel", data={"csrf": "forged"},
                            follow_redirects=False)
        assert wrong.status_code == 403
        assert app.get_job(job_id).status is JobStatus.PENDING
        done = client.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf}, follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"] == f"/jobs/{job_id}"
        assert app.get_job(job_id).status is JobStatus.CANCELLED

    def test_retry_through_the_api_with_the_header(self, client: TestClient, app: JobKit) -> None:
        job_id = app.run_background_job("Recorder", "record", {"ledger": "x", "tag": "t"})
        app.cancel_job(job_id)
        csrf = sign_in(client)
        assert client.post(f"/api/jobs/{job_id}/retry").status_code == 403
        response = client.post(f"/api/jobs/{job_id}/retry", headers={"X-CSRF-Token": csrf})
        assert response.status_code == 200 and response.json()["changed"] is True
        assert app.get_job(job_id).status is JobStatus.PENDING
        again = client.post(f"/api/jobs/{job_id}/retry", headers={"X-CSRF-Token": csrf})
        assert again.status_code == 409
        assert again.json()["message"] == "only failed or cancelled jobs can be retried"

    def test_bulk_cancel_and_retry_of_a_filtered_selection(
        self, client: TestClient, app: JobKit
    ) -> None:
        records = app.enqueue_many("Recorder", "record",
                                   [{"ledger": "x", "tag": f"t{n % 2}"} for n in range(10)])
        others = app.enqueue_many("Slow", "slow_first", [{"seconds": 1}] * 3)
        csrf = sign_in(client)
        refused = client.post("/jobs/bulk", data={"action": "cancel", "name": "Recorder"},
                              follow_redirects=False)
        assert refused.status_code == 403  # no CSRF token
        done = client.post("/jobs/bulk", follow_redirects=False, data={
            "csrf": csrf, "action": "cancel", "name": "Recorder", "text": '"tag": "t1"'})
        assert done.status_code == 303
        assert done.headers["location"].startswith("/jobs?name=Recorder")
        assert "5 of 5 matching job(s) cancelled" in client.get(done.headers["location"]).text
        statuses = [app.get_job(job_id).status for job_id in records]
        assert statuses == [JobStatus.PENDING, JobStatus.CANCELLED] * 5
        assert {app.get_job(job_id).status for job_id in others} == {JobStatus.PENDING}
        api = client.post("/api/jobs/bulk", headers={"X-CSRF-Token": csrf}, json={
            "action": "retry", "filters": {"status": ["cancelled", "pending"]}})
        assert api.json() == {"action": "retry", "matched": 5, "changed": 5, "more": False,
                              "message": "5 of 5 matching job(s) queued again"}
        assert {app.get_job(job_id).status for job_id in records} == {JobStatus.PENDING}
        bad = client.post("/api/jobs/bulk", headers={"X-CSRF-Token": csrf},
                          json={"action": "delete", "filters": {}})
        assert bad.status_code == 400
        bad = client.post("/api/jobs/bulk", headers={"X-CSRF-Token": csrf},
                          json={"action": "cancel", "filters": {"sort": "id"}})
        assert bad.status_code == 400

    def test_a_viewer_sees_but_cannot_act(self, client: TestClient, app: JobKit) -> None:
        job_id = app.run_background_job("Recorder", "record", {"ledger": "x", "tag": "t"})
        csrf = sign_in(client, VIEWER)
        page = client.get(f"/jobs/{job_id}")
        assert page.status_code == 200 and "Cancel</button>" not in page.text
        response = client.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf})
        assert response.status_code == 403
        bulk = client.post("/jobs/bulk", data={"csrf": csrf, "action": "cancel"})
        assert bulk.status_code == 403 and "Cancel all" not in client.get("/jobs").text
        assert app.get_job(job_id).status is JobStatus.PENDING

    def test_a_bearer_token_acts_without_a_session(self, client: TestClient, app: JobKit) -> None:
        job_id = app.run_background_job("Recorder", "record", {"ledger": "x", "tag": "t"})
        viewer = {"Authorization": f"Bearer {VIEWER}"}
        assert client.get(f"/api/jobs/{job_id}", headers=viewer).status_code == 200
        assert client.post(f"/api/jobs/{job_id}/cancel", headers=viewer).status_code == 403
        admin = {"Authorization": f"Bearer {ADMIN}"}
        assert client.post(f"/api/jobs/{job_id}/cancel", headers=admin).status_code == 200
        assert app.get_job(job_id).status is JobStatus.CANCELLED


class Login(Job):
    """A job with a secret parameter, for the edit form."""

    methods = ("login", "connect")

    def login(self, user: str, api_key: str, retries: int = 1) -> str:
        return user

    def connect(self, server: dict[str, Any], api_key: str) -> None:
        return None


class TestRetryWithEditedParams:
    @pytest.fixture
    def cancelled(self, app: JobKit) -> str:
        app.register("Login", Login)
        job_id = app.run_background_job("Login", "login", {"user": "ana", "api_key": "s3cr3t"})
        app.cancel_job(job_id)
        return job_id

    def test_the_form_shows_every_parameter_but_never_a_secret(
        self, client: TestClient, cancelled: str
    ) -> None:
        sign_in(client)
        page = client.get(f"/jobs/{cancelled}").text
        assert 'name="param.user" value="&#34;ana&#34;"' in page
        assert 'name="param.api_key" value="" placeholder="unchanged (secret)"' in page
        assert 'name="param.retries" value=""' in page
        assert "s3cr3t" not in page

    def test_errors_are_shown_beside_their_fields(
        self, client: TestClient, app: JobKit, cancelled: str
    ) -> None:
        csrf = sign_in(client)
        response = client.post(f"/jobs/{cancelled}/retry-edited",
                               data={"csrf": csrf, "param.user": "bob", "param.retries": "many"})
        assert response.status_code == 400
        field = re.search(r'name="param\.retries".*?</label>', response.text, re.S)
        assert field and "expected int" in field.group(0), response.text
        assert 'value="bob"' in response.text  # what was typed is shown again
        assert app.storage.count() == 1  # nothing was stored

    def test_a_valid_edit_runs_as_a_new_job_keeping_the_secret(
        self, client: TestClient, app: JobKit, cancelled: str
    ) -> None:
        csrf = sign_in(client)
        response = client.post(f"/jobs/{cancelled}/retry-edited", follow_redirects=False,
                               data={"csrf": csrf, "param.user": "bob", "param.retries": "3",
                                     "param.api_key": ""})
        assert response.status_code == 303
        new_id = response.headers["location"].rsplit("/", 1)[-1]
        assert new_id != cancelled
        new = app.get_job(new_id)
        assert new.params == {"user": "bob", "retries": 3, "api_key": "s3cr3t"}
        assert new.status is JobStatus.PENDING
        assert app.get_job(cancelled).status is JobStatus.CANCELLED  # history kept

    def test_through_the_api(self, client: TestClient, app: JobKit, cancelled: str) -> None:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        bad = client.post(f"/api/jobs/{cancelled}/retry-edited", headers=admin,
                          json={"params": {"user": 5}})
        assert bad.status_code == 400 and set(bad.json()["errors"]) == {"user"}
        good = client.post(f"/api/jobs/{cancelled}/retry-edited", headers=admin,
                           json={"params": {"user": "eve"}})
        assert good.status_code == 200
        assert app.get_job(good.json()["job_id"]).params == {"user": "eve", "api_key": "s3cr3t"}
        pending = app.run_background_job("Login", "login", {"user": "x", "api_key": "k"})
        refused = client.post(f"/api/jobs/{pending}/retry-edited", headers=admin,
                              json={"params": {}})
        assert refused.status_code == 409
        assert client.post(f"/api/jobs/{cancelled}/retry-edited", content=b"{not json",
                           headers={**admin, "Content-Type": "application/json"}
                           ).status_code == 400
        assert client.post(f"/api/jobs/{cancelled}/retry-edited", headers=admin,
                           content=b'{"params": {}}').status_code == 415  # not sent as JSON

    def test_a_nested_secret_is_masked_in_the_form_and_kept(
        self, client: TestClient, app: JobKit
    ) -> None:
        app.register("Login", Login)
        job_id = app.run_background_job("Login", "connect", {
            "server": {"name": "ana", "password": "NESTED-SECRET"}, "api_key": "k"})
        app.cancel_job(job_id)
        csrf = sign_in(client)
        page = client.get(f"/jobs/{job_id}").text
        assert "NESTED-SECRET" not in page and "&#34;***&#34;" in page
        new_id = retry_from_form(client, job_id, csrf, "server", form_value(page, "server"))
        assert app.get_job(new_id).params == {
            "server": {"name": "ana", "password": "NESTED-SECRET"}, "api_key": "k"}

    def test_a_url_password_is_masked_in_the_form_and_kept(
        self, client: TestClient, app: JobKit
    ) -> None:
        """A URL's password shows as *** in the form; sent back unchanged, the stored one runs."""
        app.register("Login", Login)
        url = "postgresql://ana:URL-SECRET@db/app"
        job_id = app.run_background_job("Login", "login", {"user": url, "api_key": "k"})
        app.cancel_job(job_id)
        csrf = sign_in(client)
        page = client.get(f"/jobs/{job_id}").text
        assert "URL-SECRET" not in page and "postgresql://ana:***@db/app" in page
        for shown in (form_value(page, "user"), "postgresql://ana:***@db/app"):
            new_id = retry_from_form(client, job_id, csrf, "user", shown)
            assert app.get_job(new_id).params == {"user": url, "api_key": "k"}


def form_value(page: str, param: str) -> str:
    """The value the edit form shows for ``param``."""
    field = re.search(rf'name="param\.{param}" value="([^"]*)"', page)
    assert field is not None
    return html.unescape(field.group(1))


def retry_from_form(client: TestClient, job_id: str, csrf: str, param: str, value: str) -> str:
    """Post the edit form of ``job_id`` with ``param`` set to ``value``; the new job's id."""
    response = client.post(f"/jobs/{job_id}/retry-edited", follow_redirects=False,
                           data={"csrf": csrf, f"param.{param}": value})
    assert response.status_code == 303, response.text
    return str(response.headers["location"].rsplit("/", 1)[-1])


class TestReviewFindings:
    """What a security review of the dashboard found, each pinned."""

    def test_without_sign_in_posts_still_need_the_token_and_a_loopback_host(
        self, tmp_path: Path
    ) -> None:
        with JobKit(dashboard_config(tmp_path, auth=False), load_entrypoints=False) as app, \
                TestClient(create_app(app), base_url="http://127.0.0.1") as client:
            job_id = app.run_background_job("Recorder", "record", {"ledger": "x", "tag": "t"})
            forged = client.post("/jobs/bulk", data={"action": "cancel"},
                                 headers={"Origin": "https://evil.example"})
            assert forged.status_code == 403
            text = client.post("/api/jobs/bulk", content=b'{"action": "cancel"}',
                               headers={"Content-Type": "text/plain"})
            assert text.status_code == 415
            rebound = client.get("/api/jobs", headers={"Host": "evil.example"})
            assert rebound.status_code == 400
            assert client.get("/api/jobs", headers={"Host": "localhost:8000"}).status_code == 200
            assert app.get_job(job_id).status is JobStatus.PENDING
            csrf = csrf_of(client, f"/jobs/{job_id}")
            done = client.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf},
                               follow_redirects=False)
            assert done.status_code == 303
            assert app.get_job(job_id).status is JobStatus.CANCELLED

    def test_text_search_never_looks_inside_a_secret(self, app: JobKit) -> None:
        from jobkit.storage.search import JobQuery

        app.register("Login", Login)
        app.run_background_job("Login", "login", {"user": "ana", "api_key": "sk-LIVE-7f"})
        app.enqueue_many("Login", "login", [{"user": "bo", "api_key": "sk-LIVE-7f"}] * 3)
        storage = app.storage
        # not even a candidate for the SQL: neither the answer nor its time can tell
        assert storage._find(JobQuery(text="sk-LIVE")) == []  # type: ignore[attr-defined]
        assert storage.search(JobQuery(text="sk-LIVE")).jobs == []
        assert len(storage.search(JobQuery(text='"api_key": "***"')).jobs) == 4

    def test_a_text_search_in_claim_order_stops_in_time(
        self, app: JobKit, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from jobkit.storage import sql_search
        from jobkit.storage.search import JobQuery

        monkeypatch.setattr(sql_search, "TEXT_BATCH", 5)
        monkeypatch.setattr(sql_search, "SCAN_BUDGET", 0.0)
        app.enqueue_many("Recorder", "record", [{"ledger": "x", "tag": "t"}] * 30)
        page = app.storage.search(JobQuery(text='"tag"', sort="next"))
        assert not page.complete and page.next is not None and len(page.jobs) == 5
        rest = app.storage.search(JobQuery(text='"tag"', sort="next", after=page.next))
        assert {job.id for job in rest.jobs}.isdisjoint(job.id for job in page.jobs)

    def test_failed_bearer_tokens_are_throttled(self, client: TestClient) -> None:
        for _ in range(10):
            assert client.get("/api/jobs", headers={"Authorization": "Bearer no"}
                              ).status_code == 401
        right = client.get("/api/jobs", headers={"Authorization": f"Bearer {ADMIN}"})
        assert right.status_code == 401  # blocked for a minute, even with the right one

    def test_odd_input_is_a_400_not_a_500(self, client: TestClient) -> None:
        csrf = sign_in(client)
        for query in ["after=9999999999999999999",
                      "sort=next&after=99999999999999999999|2024-01-01T00:00:00%2B00:00|5"]:
            assert client.get(f"/api/jobs?{query}").status_code == 400, query
        bad = client.post("/api/jobs/bulk", headers={"X-CSRF-Token": csrf},
                          json={"action": [], "filters": {}})
        assert bad.status_code == 400

    def test_big_bodies_are_refused_before_they_are_read(self, client: TestClient) -> None:
        huge = b"password=" + b"x" * (300 * 1024)
        response = client.post("/login", content=huge,
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert response.status_code == 413
        csrf = sign_in(client)
        response = client.post("/api/jobs/bulk", content=b"[" + b"0," * 200_000 + b"0]",
                               headers={"X-CSRF-Token": csrf,
                                        "Content-Type": "application/json"})
        assert response.status_code == 413

    def test_a_secure_cookie_when_asked(self, tmp_path: Path) -> None:
        config = dashboard_config(tmp_path, secure_cookie=True)
        with JobKit(config, load_entrypoints=False) as app, \
                TestClient(create_app(app), base_url="https://127.0.0.1") as client:
            response = client.post("/login", data={"csrf": csrf_of(client), "password": ADMIN},
                                   follow_redirects=False)
            assert "secure" in response.headers["set-cookie"].lower()

    def test_errors_carry_the_security_headers(self, client: TestClient) -> None:
        response = client.get("/jobs?status=nope", follow_redirects=False)
        assert response.status_code in (303, 400)
        assert "content-security-policy" in response.headers

    def test_the_day_chart_leaves_out_a_minute_before_its_first_bar(self) -> None:
        from datetime import datetime, timezone

        from jobkit.dashboard.chart import bars

        now = datetime(2024, 5, 1, 10, 30, tzinfo=timezone.utc)
        early = datetime(2024, 4, 30, 10, 40, tzinfo=timezone.utc)  # before 11:00, bar 0
        found = bars([(early, 5, 0)], "day", now)
        assert sum(bar.succeeded for bar in found) == 0


def run_cli(tmp_path: Path, *args: str, dashboard: dict[str, Any] | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "jobs.yaml"
    config.write_text(yaml.safe_dump(config_data(tmp_path, dashboard=dashboard or {})))
    return subprocess.run(
        [sys.executable, "-m", "jobkit", "--config", str(config), *args],
        env=subprocess_env(), capture_output=True, text=True, timeout=60, input=stdin,
        check=False, cwd=tmp_path,
    )


class TestCommand:
    def test_without_a_password_it_says_how_to_make_one(self, tmp_path: Path) -> None:
        done = run_cli(tmp_path, "dashboard", "--port", str(free_port()))
        assert done.returncode == 2
        assert done.stderr.startswith("jobkit: error: dashboard: sign-in is required")
        assert "Traceback" not in done.stderr

    def test_no_sign_in_beyond_the_loopback_is_refused(self, tmp_path: Path) -> None:
        done = run_cli(tmp_path, "dashboard", "--host", "0.0.0.0", "--port", str(free_port()),
                       dashboard={"auth": False})
        assert done.returncode == 2
        assert "refusing to listen on 0.0.0.0" in done.stderr

    def test_hash_password_prints_a_hash_for_jobs_yaml(self, tmp_path: Path) -> None:
        done = run_cli(tmp_path, "dashboard", "hash-password", stdin="s3cret-pass\ns3cret-pass\n")
        assert done.returncode == 0, done.stderr
        stored = done.stdout.strip().splitlines()[-1]
        assert verify_password("s3cret-pass", stored)

    def test_it_serves_the_dashboard(self, tmp_path: Path) -> None:
        """A real uvicorn server: the sign-in page, the API refusing an anonymous caller and
        answering a bearer token; it stops on SIGTERM."""
        config = tmp_path / "jobs.yaml"
        config.write_text(yaml.safe_dump(config_data(
            tmp_path, dashboard={"password_hash": HASHES[ADMIN]})))
        with dashboard_process(["--config", str(config), "dashboard"], cwd=tmp_path) as served:
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"{served.base}/api/jobs", timeout=5)
            assert refused.value.code == 401
            request = urllib.request.Request(f"{served.base}/api/overview",
                                             headers={"Authorization": f"Bearer {ADMIN}"})
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.status == 200
        assert "dashboard on http://127.0.0.1:" in served.stderr
