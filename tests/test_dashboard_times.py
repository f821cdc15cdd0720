"""Times and durations in the dashboard as the server renders them (jobkit/dashboard/times.py):
plain UTC text inside <time datetime=...> for the script to make relative, waits and durations
of jobs and attempts, in the pages and the JSON API. The browser's side is in
test_dashboard_browser.py."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

pytest.importorskip("starlette")

from starlette.testclient import TestClient
from test_dashboard import app, client, sign_in  # noqa: F401 - fixtures

from jobkit import JobKit, JobStatus
from jobkit.dashboard.times import (
    attempt_spans,
    duration_text,
    job_spans,
    span_html,
    time_html,
)
from jobkit.records import Attempt, AttemptOutcome, JobLogLine, JobRecord, WorkerInfo
from jobkit.worker import run_until_empty

T0 = datetime(2026, 11, 23, 18, 44, 9, 939082, tzinfo=timezone.utc)
#: Raw ISO text shown as a value (the issue's "2026-11-23T18:44:09.939082+00:00").
RAW_ISO = re.compile(r">\s*\d{4}-\d\d-\d\dT\d\d:")


def record(status: JobStatus, *, available: float = 0, started: float | None = None,
           finished: float | None = None, attempts: int = 1) -> JobRecord:
    """A job created at T0, due ``available`` s later, started and finished at the given
    seconds after T0."""
    def at(seconds: float | None) -> datetime | None:
        return None if seconds is None else T0 + timedelta(seconds=seconds)

    return JobRecord(id="1", name="Recorder", method="record", params={}, status=status,
                     priority=0, attempts=attempts, max_attempts=3, result=None, error=None,
                     created_at=T0, available_at=T0 + timedelta(seconds=available),
                     started_at=at(started), finished_at=at(finished))


def fixed(seconds: float) -> dict[str, Any]:
    return {"seconds": pytest.approx(seconds), "since": None}


class TestDurationText:
    @pytest.mark.parametrize(("seconds", "text"), [
        (0, "0 ms"), (0.0004, "0 ms"), (0.25, "250 ms"), (0.999, "999 ms"), (1, "1.0 s"),
        (4.25, "4.2 s"), (9.99, "9.9 s"), (10, "10 s"), (59.9, "59 s"), (60, "1 min"),
        (61, "1 min 1 s"), (3599, "59 min 59 s"), (3600, "1 h"), (3660, "1 h 1 min"),
        (7199, "1 h 59 min"), (86400, "1 d"), (90000, "1 d 1 h"), (400 * 86400, "400 d"),
        (-3, "0 ms"),
    ])
    def test_a_duration_reads_at_a_glance(self, seconds: float, text: str) -> None:
        """Milliseconds under a second, tenths under ten seconds, then two units at most,
        rounded down (never "60 s")."""
        assert duration_text(seconds) == text


class TestTimeHtml:
    def test_a_time_is_utc_text_in_a_time_element(self) -> None:
        """The issue's time: readable UTC text without script, the exact time to the
        millisecond on hover, a valid HTML datetime for the script."""
        assert str(time_html(T0.isoformat())) == (
            '<time datetime="2026-11-23T18:44:09.939+00:00" data-format="relative" '
            'title="2026-11-23 18:44:09.939 UTC">2026-11-23 18:44:09 UTC</time>')

    def test_another_offset_is_shown_in_utc(self) -> None:
        """A time with another offset (or a datetime) is converted to UTC."""
        other = T0.astimezone(timezone(timedelta(hours=5, minutes=30)))
        assert ">2026-11-23 18:44:09 UTC</time>" in str(time_html(other.isoformat()))
        assert ">2026-11-23 18:44:09 UTC</time>" in str(time_html(other))

    def test_a_log_lines_time_is_a_clock_time(self) -> None:
        """Log lines show the time of day to the millisecond."""
        assert ">18:44:09.939 UTC</time>" in str(time_html(T0, "clock"))
        assert 'data-format="clock"' in str(time_html(T0, "clock"))

    def test_a_missing_time(self) -> None:
        """Nothing, or an empty element that a live update fills."""
        assert str(time_html(None)) == ""
        assert str(time_html(None, field="started_at")) == (
            '<time data-format="relative" data-field="started_at"></time>')

    def test_text_that_is_no_time_is_shown_escaped(self) -> None:
        """A value that is not a time (a damaged row) is shown as it is, escaped."""
        assert str(time_html("<b>soon</b>")) == "&lt;b&gt;soon&lt;/b&gt;"

    def test_spans(self) -> None:
        """A fixed span is an ISO duration; an open one counts on from its start; a span
        that does not apply is a dash."""
        assert str(span_html({"seconds": 4.2134, "since": None})) == (
            '<time class="span" datetime="PT4.213S" title="4.213 s">4.2 s</time>')
        waiting = str(span_html({"seconds": 75.0, "since": T0.isoformat()}))
        assert waiting == ('<span class="span open" data-since="2026-11-23T18:44:09.939+00:00" '
                           'title="since 2026-11-23 18:44:09.939 UTC">1 min 15 s</span>')
        assert ">due in 20 s</span>" in str(span_html({"seconds": -20.5,
                                                          "since": T0.isoformat()}))
        assert str(span_html(None)) == '<span class="span none">—</span>'


class TestJobSpans:
    def test_a_finished_job_waited_from_due_to_start_and_ran_to_its_end(self) -> None:
        """Completed: wait = started - due, duration = finished - started."""
        done = record(JobStatus.COMPLETED, available=5, started=7.5, finished=10)
        assert job_spans(done) == {"wait": fixed(2.5), "duration": fixed(2.5)}

    def test_a_waiting_job_counts_its_wait(self) -> None:
        """Pending: the wait is open from its due time (negative before it is due)."""
        now = T0 + timedelta(seconds=30)
        overdue = job_spans(record(JobStatus.PENDING, available=10), now)
        assert overdue == {"wait": {"seconds": 20.0, "since": (T0 + timedelta(seconds=10))
                                    .isoformat()}, "duration": None}
        later = job_spans(record(JobStatus.PENDING, available=90), now)["wait"]
        assert later is not None and later["seconds"] == -60.0

    def test_a_running_job_counts_its_duration(self) -> None:
        """Running: the wait is fixed, the duration open from its start."""
        now = T0 + timedelta(seconds=12)
        spans = job_spans(record(JobStatus.RUNNING, started=2), now)
        assert spans["wait"] == fixed(2)
        assert spans["duration"] == {"seconds": 10.0,
                                     "since": (T0 + timedelta(seconds=2)).isoformat()}

    def test_a_retrying_job_waits_again(self) -> None:
        """Retrying: its started_at is the last attempt's, so only the new wait is shown."""
        now = T0 + timedelta(seconds=12)
        spans = job_spans(record(JobStatus.RETRYING, available=20, started=1, finished=2), now)
        assert spans["duration"] is None
        assert spans["wait"] is not None and spans["wait"]["seconds"] == -8.0

    @pytest.mark.parametrize("job", [
        record(JobStatus.CANCELLED, finished=4),  # never started
        record(JobStatus.CANCELLED, available=20, started=1, finished=4),  # while retrying
    ])
    def test_a_job_cancelled_before_it_ran_again_has_neither(self, job: JobRecord) -> None:
        """Cancelled while waiting: no wait to its start, no duration."""
        assert job_spans(job) == {"wait": None, "duration": None}


class TestAttemptSpans:
    def test_only_the_latest_attempts_due_time_is_known(self) -> None:
        """The latest attempt waited from the job's due time; an earlier one's due time is not
        stored; each finished attempt has its duration."""
        job = record(JobStatus.COMPLETED, available=30, started=31, finished=33, attempts=2)
        first = Attempt("1", 1, "w", T0, T0 + timedelta(seconds=1), AttemptOutcome.FAILED)
        second = Attempt("1", 2, "w", T0 + timedelta(seconds=31), T0 + timedelta(seconds=33),
                         AttemptOutcome.SUCCEEDED)
        assert attempt_spans(job, first) == {"wait": None, "duration": fixed(1)}
        assert attempt_spans(job, second) == {"wait": fixed(1), "duration": fixed(2)}

    def test_a_running_attempt_counts_on(self) -> None:
        """The running attempt's duration is open from its start."""
        job = record(JobStatus.RUNNING, started=3)
        running = Attempt("1", 1, "w", T0 + timedelta(seconds=3))
        spans = attempt_spans(job, running, T0 + timedelta(seconds=5))
        assert spans["duration"] == {"seconds": 2.0,
                                     "since": (T0 + timedelta(seconds=3)).isoformat()}


class TestPages:
    @pytest.fixture
    def jobs(self, app: JobKit, ledger: str) -> dict[str, str]:  # noqa: F811
        """A completed job (run by a real worker loop), a pending one due in 2 minutes and a
        running one (claimed)."""
        done = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "a"})
        run_until_empty(app, timeout=10)
        later = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "b"},
                                       delay=120)
        running = app.run_background_job("Recorder", "record", {"ledger": ledger, "tag": "c"})
        assert app.storage.claim("h:1:a", 30).id == running
        return {"done": done, "later": later, "running": running}

    def test_the_list_shows_times_waits_and_durations(
        self, client: TestClient, app: JobKit, jobs: dict[str, str]  # noqa: F811
    ) -> None:
        """No raw ISO text: each creation time in UTC text in a <time datetime>; the completed
        job's wait and duration, the running one's open duration, the delayed one's due."""
        sign_in(client)
        page = client.get("/jobs").text
        assert RAW_ISO.search(page) is None
        assert "<th" in page and ">Waited</th>" in page and ">Duration</th>" in page
        for job_id in jobs.values():
            created = app.get_job(job_id).created_at
            assert f'title="{created:%Y-%m-%d %H:%M:%S}.' in page
            assert f">{created:%Y-%m-%d %H:%M:%S} UTC</time>" in page
        rows = {job_id: re.search(rf'<tr data-job="{job_id}">(.*?)</tr>', page, re.S)
                for job_id in jobs.values()}
        done = rows[jobs["done"]]
        assert done is not None and done.group(1).count('<time class="span" datetime="PT') == 2
        later = rows[jobs["later"]]
        assert later is not None and re.search(r">due in 1 min 5\d s</span>", later.group(1))
        running = rows[jobs["running"]]
        assert running is not None and 'class="span open"' in running.group(1)

    def test_the_job_page_shows_its_and_its_attempts_times(
        self, client: TestClient, app: JobKit, jobs: dict[str, str]  # noqa: F811
    ) -> None:
        """Created, due, started, finished as <time>; its wait and duration; each attempt's
        too; log lines at their time of day."""
        job_id = jobs["done"]
        job = app.get_job(job_id)
        assert job.started_at is not None and job.finished_at is not None
        app.storage.add_job_logs(job_id, [JobLogLine(1, job.started_at, "INFO", "hello")])
        sign_in(client)
        page = client.get(f"/jobs/{job_id}").text
        assert RAW_ISO.search(page) is None
        for field in ("available_at", "started_at", "finished_at"):
            assert re.search(rf'<time datetime="[^"]+" data-format="relative" '
                             rf'data-field="{field}" title="[^"]+">[^<]+ UTC</time>', page)
        ran = (job.finished_at - job.started_at).total_seconds()
        assert (f'<dd data-field="duration"><time class="span" datetime="PT{ran:.3f}S"'
                in page)
        assert '<dd data-field="wait"><time class="span" datetime="PT' in page
        attempts = page.split('id="attempts"')[1].split("</table>")[0]
        assert attempts.count('<time class="span" datetime="PT') == 2  # waited, ran
        assert f">{job.started_at:%H:%M:%S}." in page.split('id="logs"')[1]
        assert '<meta name="jobkit-now" content="' in page

    def test_the_api_gives_waits_and_durations(
        self, client: TestClient, app: JobKit, jobs: dict[str, str]  # noqa: F811
    ) -> None:
        """The API keeps ISO times and adds each job's and attempt's wait and duration."""
        sign_in(client)
        data = client.get(f"/api/jobs/{jobs['done']}").json()
        job = app.get_job(jobs["done"])
        assert job.started_at is not None and job.finished_at is not None
        assert data["job"]["started_at"] == job.started_at.isoformat()
        assert data["job"]["wait"] == fixed((job.started_at - job.available_at).total_seconds())
        assert data["job"]["duration"] == fixed(
            (job.finished_at - job.started_at).total_seconds())
        (attempt,) = data["attempts"]
        assert attempt["duration"] == data["job"]["duration"]
        listed = client.get("/api/jobs").json()["jobs"]
        running = next(job for job in listed if job["id"] == jobs["running"])
        assert running["duration"]["since"] == running["started_at"]
        overview = client.get("/api/overview").json()
        assert [job["duration"]["since"] for job in overview["running"]] == [
            running["started_at"]]

    def test_the_overview_shows_workers_and_running_jobs_times(
        self, client: TestClient, app: JobKit, jobs: dict[str, str]  # noqa: F811
    ) -> None:
        """Workers' start and last beat and the running job's start as <time>; how long it
        has run; the oldest wait as a duration; still no inline script."""
        now = app.storage.now()
        app.storage.register_worker(WorkerInfo("h:1:a", "h", 1, 9, now - timedelta(hours=1),
                                                now))
        sign_in(client)
        page = client.get("/").text
        assert RAW_ISO.search(page) is None
        workers = page.split('id="workers"')[1].split("</table>")[0]
        assert workers.count('data-format="relative"') == 2
        running = page.split('id="running"')[1].split("</table>")[0]
        assert 'data-format="relative"' in running and 'class="span open"' in running
        assert re.search(r"<strong data-oldest-wait>(none|\d+(\.\d)? m?s)</strong>", page)
        assert page.count("<script") == 1 and '<script src="/static/dashboard.js"' in page
