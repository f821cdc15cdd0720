"""The dashboard in a real browser: Playwright driving Debian's Chromium (headless) against a
real `jobkit dashboard` server and a real `jobkit worker`.

Skips without Playwright or /usr/bin/chromium; fails instead under CI=true (`.ci/run` installs
the `chromium` package). Screenshots of each page are saved as test artifacts in
``$JOBKIT_ARTIFACTS/dashboard`` (default ``test-artifacts/dashboard``).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from conftest import IN_CI, config_data, jobkit_process
from workers import REPO, dashboard_process, printed_dashboard_command

from jobkit import JobKit, JobStatus
from jobkit.dashboard.passwords import hash_password
from jobkit.dashboard.times import duration_text
from jobkit.records import WorkerInfo

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "browser-test-password"
ARTIFACTS = Path(os.environ.get("JOBKIT_ARTIFACTS", "test-artifacts")) / "dashboard"


def _need(ok: bool, why: str) -> None:
    if not ok:
        if IN_CI:
            pytest.fail(f"{why} (CI=true: the browser test must run; .ci/run installs it)")
        pytest.skip(why)


def _require_browser() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _need(False, "playwright is not installed")
    _need(CHROMIUM.exists(), f"no Chromium at {CHROMIUM}")


@contextlib.contextmanager
def dashboard(config: Path) -> Iterator[str]:
    """A real `jobkit dashboard` for ``config``, started in another folder than the config's
    (its relative paths must not depend on where it runs); its base URL, once it answers."""
    elsewhere = config.parent / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    with dashboard_process(["--config", str(config), "dashboard"], cwd=elsewhere) as served:
        yield served.base
    assert list(elsewhere.iterdir()) == [], "the dashboard wrote to its working directory"


@contextlib.contextmanager
def chromium(**options: Any) -> Iterator[Any]:
    """A headless Chromium page (``options`` for Playwright's ``new_page``: a time zone, no
    script...), and the script errors it met."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 860}, **options)
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        # script errors, and what the Content-Security-Policy refused; not the 401 and 400
        # answers a test asks for on purpose
        page.on("console", lambda message: page.errors.append(message.text)
                if message.type == "error" and "Failed to load resource" not in message.text
                else None)
        try:
            yield page
        finally:
            browser.close()


@pytest.fixture
def site(tmp_path: Path, start_worker: Callable[..., Any]) -> Iterator[dict[str, Any]]:
    """A store, its jobs.yaml (with relative paths, as users write them), a running `jobkit
    dashboard`; `start_worker` starts the worker."""
    _require_browser()
    config = tmp_path / "jobs.yaml"
    config.write_text(yaml.safe_dump(config_data(
        tmp_path, storage="sqlite:///jobkit.db", logging={"dir": "logs"},
        dashboard={"password_hash": hash_password(PASSWORD)})))
    with dashboard(config) as base, JobKit.from_config(config, load_entrypoints=False) as app:
        yield {"base": base, "config": config, "app": app,
               "worker": lambda: start_worker(config, "-n", "2")}


def wait_status(app: JobKit, job_id: str, status: JobStatus, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while app.get_job(job_id).status is not status:
        assert time.monotonic() < deadline, f"job {job_id} never became {status}"
        time.sleep(0.05)


def test_sign_in_watch_cancel_and_retry_with_edited_params(site: dict[str, Any],
                                                          ledger: str) -> None:
    from playwright.sync_api import expect

    app: JobKit = site["app"]
    base: str = site["base"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    watched = app.run_background_job("Recorder", "sleep", {"seconds": 2, "ledger": ledger})
    with chromium() as page:
        # sign in: any page sends there first
        page.goto(f"{base}/jobs/{watched}")
        expect(page).to_have_url(f"{base}/login?next=/jobs/{watched}")
        page.screenshot(path=ARTIFACTS / "login.png")
        page.fill("input[name=password]", "wrong")
        page.click("button[type=submit]")
        expect(page.get_by_role("alert")).to_have_text("wrong password")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{base}/jobs/{watched}")

        # pending -> running -> completed, without a reload
        status = page.locator(".job [data-field=status]")
        expect(status).to_have_text("pending")
        page.evaluate("window.notReloaded = true")
        site["worker"]()
        expect(status).to_have_text("running", timeout=20_000)
        expect(status).to_have_text("completed", timeout=20_000)
        assert page.evaluate("window.notReloaded === true"), "the page reloaded"
        expect(page.locator("#attempts tbody tr")).to_have_count(1)
        page.screenshot(path=ARTIFACTS / "job.png", full_page=True)

        # cancel a running job
        running = app.run_background_job("Recorder", "sleep", {"seconds": 60})
        wait_status(app, running, JobStatus.RUNNING)
        page.goto(f"{base}/jobs/{running}")
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("button:has-text('Cancel')")
        expect(page.locator(".job [data-field=status]")).to_have_text("cancelled")
        wait_status(app, running, JobStatus.CANCELLED)

        # retry a failed job with edited params: an error beside its field, then success
        failed = app.run_background_job("Recorder", "fail", {"ledger": ledger, "times": 1})
        wait_status(app, failed, JobStatus.FAILED)
        page.goto(f"{base}/jobs/{failed}")
        page.click("summary:has-text('Retry with edited params')")
        page.fill("input[name='param.times']", "once")
        page.click("button:has-text('Retry as a new job')")
        expect(page.locator("label:has(input[name='param.times']) .field-error")).to_have_text(
            "expected int, got str 'once'")
        page.screenshot(path=ARTIFACTS / "retry-edited.png", full_page=True)
        page.fill("input[name='param.times']", "0")
        page.click("button:has-text('Retry as a new job')")
        expect(page.locator(".job [data-field=status]")).to_have_text("completed",
                                                                       timeout=20_000)
        new_id = page.url.rsplit("/", 1)[-1]
        assert new_id != failed and app.get_job(new_id).params["times"] == 0

        # the other pages
        page.goto(f"{base}/")
        expect(page.locator("[data-count=completed]")).to_have_text("2")
        expect(page.locator("#workers tbody tr.alive")).to_have_count(2)
        page.screenshot(path=ARTIFACTS / "overview.png", full_page=True)
        page.goto(f"{base}/jobs?status=failed&status=cancelled")
        expect(page.locator("#jobs tbody tr")).to_have_count(2)
        page.screenshot(path=ARTIFACTS / "jobs.png", full_page=True)
        page.goto(f"{base}/registry")
        expect(page.locator("h2", has_text="Recorder")).to_have_count(1)
        page.screenshot(path=ARTIFACTS / "registry.png", full_page=True)
        # the Content-Security-Policy let the page's own script run, and nothing failed in it
        assert not page.errors, page.errors


def test_after_the_demo_a_new_user_retries_the_failed_job_within_a_minute(
    tmp_path: Path,
) -> None:
    """The issue's yardstick: after `jobkit demo`, from the browser alone, sign in with the
    password the demo printed, find the failed job, read its traceback, retry it."""
    from playwright.sync_api import expect

    _require_browser()
    folder = tmp_path / "demo"
    demo = jobkit_process(tmp_path, "demo", "--dir", str(folder), timeout=120)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    password = (folder / "dashboard-password.txt").read_text().strip()
    # the command the demo printed, as a user pastes it in the repository's root folder
    command = printed_dashboard_command(demo.stdout)
    with dashboard_process(command, cwd=REPO) as served, chromium() as page:
        started = time.monotonic()
        page.goto(served.base)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.click("nav >> text=Failed")
        page.click("#jobs tbody tr >> a")
        expect(page.locator("h1")).to_contain_text("Report.")
        page.click("#attempts summary >> nth=-1")
        expect(page.locator("#attempts pre").last).to_contain_text("Traceback")
        page.click("button:has-text('Retry')")
        expect(page.locator(".job [data-field=status]")).to_have_text("pending")
        assert time.monotonic() - started < 60
        assert not page.errors, page.errors


def test_schedules_page_lists_runs_and_pauses_for_every_worker(
        tmp_path: Path, start_worker: Callable[..., Any], ledger: str) -> None:
    """The Schedules page shows a schedule a real worker fires, its runs, and pauses it.

    A real worker fires an `every: 1s` schedule; the Schedules page shows it, its page lists
    the runs (each a link to its job), and Pause and Resume (confirmed) change the store."""
    from playwright.sync_api import expect

    _require_browser()
    config = tmp_path / "jobs.yaml"
    config.write_text(yaml.safe_dump(config_data(
        tmp_path, storage="sqlite:///jobkit.db", logging={"dir": "logs"},
        dashboard={"password_hash": hash_password(PASSWORD)},
        schedules={"tick": {"job": "Recorder", "method": "record", "every": "1s",
                            "params": {"ledger": ledger, "tag": "tick"}}})))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with dashboard(config) as base, JobKit.from_config(config, load_entrypoints=False) as app:
        start_worker(config, "-n", "1")
        deadline = time.monotonic() + 30
        while not any(run.status is JobStatus.COMPLETED for run in app.schedule_runs("tick")):
            assert time.monotonic() < deadline, "no run of the schedule completed"
            time.sleep(0.05)
        with chromium() as page:
            sign_in(page, base)
            page.click("nav >> text=Schedules")
            row = page.locator("tr[data-schedule=tick]")
            expect(row.locator(".status")).to_have_text("active")
            expect(row).to_contain_text("every 1s")
            row.locator("a[href='/schedules/tick']").click()
            expect(page.locator("h1")).to_contain_text("tick")
            completed = page.locator(".runs tbody tr", has=page.locator(".status-completed"))
            expect(completed.first).to_be_visible()
            page.screenshot(path=ARTIFACTS / "schedule.png", full_page=True)
            completed.first.locator("a").click()
            expect(page.locator(".job [data-field=status]")).to_have_text("completed")

            page.goto(f"{base}/schedules")
            page.once("dialog", lambda dialog: dialog.accept())
            page.click("tr[data-schedule=tick] button:has-text('Pause')")
            expect(page.get_by_role("status")).to_have_text("schedule tick paused")
            expect(page.locator("tr[data-schedule=tick] .status")).to_have_text("paused")
            assert [view.paused for view in app.schedules()] == [True]
            page.screenshot(path=ARTIFACTS / "schedules.png", full_page=True)
            page.click("tr[data-schedule=tick] button:has-text('Resume')")
            expect(page.get_by_role("status")).to_have_text("schedule tick resumed")
            assert [view.paused for view in app.schedules()] == [False]
            assert not page.errors, page.errors


def test_a_workflow_page_recolours_its_steps_as_they_run(site: dict[str, Any],
                                                         ledger: str) -> None:
    """The workflow's graph follows its steps without a reload, then cancels the rest.

    A chain of two sleeps and a group: each box goes from blocked or pending to completed as
    a real worker runs it; a box links to its job, whose page links back; Cancel workflow
    (confirmed) cancels what had not run."""
    from playwright.sync_api import expect

    from jobkit import chain, group, step

    app: JobKit = site["app"]
    base: str = site["base"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    nap = {"seconds": 1, "ledger": ledger}
    workflow_id = app.run_workflow(chain(
        step("Recorder", "sleep", nap), step("Recorder", "sleep", nap),
        group(step("Recorder", "sleep", nap), step("Recorder", "sleep", nap),
              then=step("Recorder", "sleep", {"seconds": 60}))))
    first, second, *_, last = app.get_workflow(workflow_id).steps
    with chromium() as page:
        sign_in(page, base)
        page.goto(f"{base}/workflows/{workflow_id}")
        box = {job_id: page.locator(f"g[data-step='{job_id}']")
               for job_id in (first.job_id, second.job_id, last.job_id)}
        expect(box[first.job_id]).to_have_class("wf-step status-pending")
        expect(box[second.job_id]).to_have_class("wf-step status-blocked")
        expect(box[second.job_id].locator(".wf-status")).to_have_text("blocked")
        page.evaluate("window.notReloaded = true")
        site["worker"]()
        expect(box[first.job_id]).to_have_class("wf-step status-completed", timeout=20_000)
        expect(box[second.job_id].locator(".wf-status")).to_have_text("completed",
                                                                      timeout=20_000)
        expect(box[last.job_id]).to_have_class("wf-step status-running", timeout=20_000)
        expect(page.locator("[data-field=counts]")).to_contain_text("completed 4")
        assert page.evaluate("window.notReloaded === true"), "the page reloaded"
        page.screenshot(path=ARTIFACTS / "workflow.png", full_page=True)

        page.once("dialog", lambda dialog: dialog.accept())
        page.click("button:has-text('Cancel workflow')")
        expect(page.get_by_role("status")).to_have_text(
            f"workflow {workflow_id}: 1 step(s) cancelled")
        expect(page.locator(f"g[data-step='{last.job_id}']")).to_have_class(
            "wf-step status-cancelled")
        expect(page.locator("button:has-text('Cancel workflow')")).to_be_hidden()
        page.locator(f"g[data-step='{first.job_id}']").click()
        expect(page).to_have_url(f"{base}/jobs/{first.job_id}")
        page.click(f"a[href='/workflows/{workflow_id}']")
        expect(page.locator("h1")).to_contain_text(f"Workflow {workflow_id}")
        assert not page.errors, page.errors


def sign_in(page: Any, base: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def exact(when: datetime, zone: str | None = None, name: str | None = None) -> str:
    """A time to the millisecond as the page writes it: in ``zone`` (with its offset and the
    browser's ``name`` for it) then in UTC, or in UTC alone."""
    def stamp(moment: datetime) -> str:
        return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}"

    utc = f"{stamp(when.astimezone(timezone.utc))} UTC"
    if zone is None:
        return utc
    local = when.astimezone(ZoneInfo(zone))
    offset = local.strftime("%z")
    return f"{stamp(local)} UTC{offset[:3]}:{offset[3:]} ({name or zone})\n{utc}"


class TestTimes:
    ZONE = "Asia/Kolkata"  # UTC+05:30 all year: no daylight saving to trip on

    def test_times_read_relative_with_the_exact_time_on_hover(
        self, site: dict[str, Any], ledger: str
    ) -> None:
        """In the browser's time zone: "N s ago", "3 min ago", "in 2 min"; on hover the exact
        local and UTC time; waits and durations written as the server writes them, before and
        after a live update; the script runs under the CSP without an error."""
        from playwright.sync_api import expect

        app: JobKit = site["app"]
        base: str = site["base"]
        done = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "t"})
        site["worker"]()
        wait_status(app, done, JobStatus.COMPLETED)
        later = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "l"},
                                       delay=150)
        now = app.storage.now()
        app.storage.register_worker(WorkerInfo("h:1:old", "h", 1, 9,
                                               now - timedelta(minutes=3, seconds=5), now))
        record = app.get_job(done)
        assert record.started_at is not None and record.finished_at is not None
        with chromium(timezone_id=self.ZONE) as page:
            sign_in(page, base)
            zone = page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")
            assert zone in (self.ZONE, "Asia/Calcutta")  # ICU's name for it
            # the overview: a worker started 3 minutes ago
            old = page.locator("#workers tr", has_text="h:1:old").locator("time").first
            expect(old).to_have_text("3 min ago")

            # a finished job: relative times, the exact ones on hover
            page.goto(f"{base}/jobs/{done}")
            started = page.locator(".job time[data-field=started_at]")
            expect(started).to_have_text(re.compile(r"^(just now|\d+ s ago)$"))
            started.hover()
            expect(started).to_have_attribute("title", exact(record.started_at, self.ZONE, zone))
            expect(started).to_have_attribute("datetime", re.compile(r"^\d{4}-.*\+00:00$"))
            ran = duration_text((record.finished_at - record.started_at).total_seconds())
            waited = duration_text((record.started_at - record.available_at).total_seconds())
            duration = page.locator(".job [data-field=duration] time")
            expect(duration).to_have_text(ran)
            expect(page.locator(".job [data-field=wait] time")).to_have_text(waited)
            expect(page.locator("#attempts tbody tr td").nth(5)).to_have_text(ran)
            # a live update writes them again, in the script: the same text
            duration.evaluate("node => { node.dataset.mark = 'server'; }")
            expect(page.locator(".job [data-field=duration] time[data-mark]")).to_have_count(
                0, timeout=10_000)
            expect(duration).to_have_text(ran)
            expect(page.locator("#attempts tbody tr td").nth(5)).to_have_text(ran)
            page.screenshot(path=ARTIFACTS / "job-times.png", full_page=True)

            # a job due in 2.5 minutes
            page.goto(f"{base}/jobs/{later}")
            due = page.locator(".job time[data-field=available_at]")
            expect(due).to_have_text(re.compile(r"^in (2 min|\d+ s)$"))
            expect(page.locator(".job [data-field=wait] .span")).to_have_text(
                re.compile(r"^due in (2 min( \d+ s)?|\d+ s)$"))

            # the list
            page.goto(f"{base}/jobs")
            created = page.locator(f"#jobs tr[data-job='{done}'] time").first
            expect(created).to_have_text(re.compile(r"^(just now|\d+ s ago)$"))
            expect(created).to_have_attribute("title", exact(record.created_at, self.ZONE, zone))

            # one duration format in both languages
            samples = [0, 0.0004, 0.25, 1, 4.25, 9.99, 10, 59.9, 61, 3599, 3660, 90000, -3]
            assert page.evaluate(f"{samples}.map(durationText)") == [
                duration_text(seconds) for seconds in samples]
            assert not page.errors, page.errors

        with chromium(timezone_id=self.ZONE, java_script_enabled=False) as page:
            sign_in(page, base)
            page.goto(f"{base}/jobs/{done}")
            started = page.locator(".job time[data-field=started_at]")
            expect(started).to_have_text(f"{record.started_at:%Y-%m-%d %H:%M:%S} UTC")
            expect(started).to_have_attribute("title", exact(record.started_at))
