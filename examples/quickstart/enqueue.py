"""Enqueue a few jobs, then `jobkit worker --burst` runs them (see the Makefile's demo target)."""

from __future__ import annotations

from jobkit import InvalidParameters, JobKit

with JobKit.from_config("jobs.yaml") as app:
    app.configure_logging()  # log this process's "enqueued" events too
    for priority, name in enumerate(["Ana", "Bo", "Cy"]):
        job_id = app.run_background_job("Greeter", "greet", {"name": name}, priority=priority)
        print(f"enqueued Greeter.greet({name!r}) priority {priority}: job {job_id}")
    app.run_background_job("Greeter", "greet", {"name": "Later", "excited": True}, delay=1)
    app.run_background_job("Flaky", "work", {"fail_times": 2})
    app.run_background_job("Flaky", "work", {"fail_times": 9})  # fails for good after 4 tries
    try:
        app.run_background_job("Greeter", "greet", {"name": 42})
    except InvalidParameters as exc:
        print(f"refused at once, nothing stored: {exc}")
