"""The Invoice job, found through its entry point, completes or fails as its options say."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from jobkit_invoice import CompleteInvoiceJob, InvoiceOptions, fails, parse_options

from jobkit import ConfigError, InvalidParameters, JobKit
from jobkit.worker import run_until_empty

AppFactory = Callable[..., JobKit]


def _invoice_jobs(retry_attempts: int = 3, **options: Any) -> dict[str, Any]:
    return {"Invoice": {"options": options, "retry_attempts": retry_attempts, "retry_delay": 0}}


def _run(app: JobKit, invoice_id: int) -> str:
    job_id = app.run_background_job("Invoice", "complete", {"invoice_id": invoice_id})
    run_until_empty(app)
    return job_id


class TestEntryPoint:
    """The installed distribution registers ``Invoice`` with its package defaults."""

    def test_registered_with_one_method(self, make_invoice_app: AppFactory) -> None:
        """``Invoice`` resolves to CompleteInvoiceJob, approving only ``complete``."""
        spec = make_invoice_app().registry.get("Invoice")
        assert spec.cls is CompleteInvoiceJob
        assert spec.methods == ("complete",)

    def test_package_defaults_and_override(self, make_invoice_app: AppFactory) -> None:
        """retry_attempts 3 / retry_delay 1 come from the package unless jobs.yaml sets them."""
        silent = make_invoice_app().job_settings("Invoice")
        assert (silent.settings.retry_attempts, silent.settings.retry_delay) == (3, 1)
        assert silent.sources["retry_attempts"].startswith("package")
        set_ = make_invoice_app({"Invoice": {"retry_attempts": 7}}).job_settings("Invoice")
        assert (set_.settings.retry_attempts, set_.settings.retry_delay) == (7, 1)
        assert not set_.sources["retry_attempts"].startswith("package")

    def test_invoice_id_must_be_an_int(self, make_invoice_app: AppFactory) -> None:
        """A string invoice id is refused when enqueued."""
        with pytest.raises(InvalidParameters, match="invoice_id"):
            make_invoice_app().run_background_job("Invoice", "complete", {"invoice_id": "12"})


class TestOutcomes:
    """failure_rate decides each attempt, reproducibly."""

    def test_rate_zero_completes_at_once(self, make_invoice_app: AppFactory) -> None:
        """With failure_rate 0 (the default) the first attempt completes."""
        app = make_invoice_app(_invoice_jobs())
        job_id = _run(app, 42)
        record = app.get_job(job_id)
        assert record.status == "completed"
        assert record.attempts == 1
        assert record.result == {"invoice_id": 42, "status": "completed", "attempt": 1}
        assert (record.progress, record.progress_message) == (1.0, "invoice 42: step 1 of 1")

    @pytest.mark.parametrize("retry_attempts", [0, 2])
    def test_rate_one_fails_after_every_attempt(
        self, make_invoice_app: AppFactory, retry_attempts: int
    ) -> None:
        """With failure_rate 1.0 the job fails after exactly 1 + retry_attempts attempts."""
        app = make_invoice_app(_invoice_jobs(retry_attempts, failure_rate=1.0))
        job_id = _run(app, 7)
        record = app.get_job(job_id)
        assert record.status == "failed"
        assert record.attempts == 1 + retry_attempts
        assert "invoice 7: attempt" in (record.error or "")
        assert [str(a.outcome) for a in app.get_attempts(job_id)] == ["failed"] * (
            1 + retry_attempts
        )

    @pytest.mark.parametrize(
        ("invoice_id", "status", "attempts"),
        [(1, "completed", 3), (2, "failed", 4), (6, "completed", 1)],
    )
    def test_seeded_rate_has_a_known_outcome(
        self, make_invoice_app: AppFactory, invoice_id: int, status: str, attempts: int
    ) -> None:
        """failure_rate 0.5 with seed 7: invoice 1 completes on attempt 3, 2 fails, 6 at once."""
        app = make_invoice_app(_invoice_jobs(3, failure_rate=0.5, seed=7))
        record = app.get_job(_run(app, invoice_id))
        assert (record.status, record.attempts) == (status, attempts)

    def test_draw_is_reproducible_and_depends_on_the_seed(self) -> None:
        """The same invoice, attempt and seed always draw alike; another seed draws otherwise."""
        seven = InvoiceOptions(failure_rate=0.5, seed=7)
        draws = [fails(i, a, seven) for i in range(1, 20) for a in range(1, 4)]
        assert draws == [fails(i, a, seven) for i in range(1, 20) for a in range(1, 4)]
        other = InvoiceOptions(failure_rate=0.5, seed=8)
        assert draws != [fails(i, a, other) for i in range(1, 20) for a in range(1, 4)]
        assert 0 < sum(draws) < len(draws)

    def test_work_seconds_takes_time_and_reports_progress(
        self, make_invoice_app: AppFactory
    ) -> None:
        """work_seconds 0.2 takes at least that long and ends with progress 1.0 in 5 steps."""
        app = make_invoice_app(_invoice_jobs(work_seconds=0.2))
        started = time.monotonic()
        record = app.get_job(_run(app, 3))
        assert time.monotonic() - started >= 0.2
        assert record.status == "completed"
        assert (record.progress, record.progress_message) == (1.0, "invoice 3: step 5 of 5")


class TestOptions:
    """Options are checked strictly; a bad one is a ConfigError naming the key."""

    def test_defaults(self) -> None:
        """No options: never fails, seed 0, no simulated work."""
        assert parse_options({}) == InvoiceOptions(failure_rate=0.0, seed=0, work_seconds=0.0)

    @pytest.mark.parametrize(
        ("options", "key"),
        [
            ({"failure_rate": 1.5}, "failure_rate"),
            ({"failure_rate": -0.1}, "failure_rate"),
            ({"failure_rate": "0.5"}, "failure_rate"),
            ({"seed": 1.5}, "seed"),
            ({"work_seconds": -1}, "work_seconds"),
            ({"fail_rate": 0.5}, "fail_rate"),
        ],
    )
    def test_bad_option_names_the_key(self, options: dict[str, Any], key: str) -> None:
        """Out of range, wrong type or unknown: the error names the key."""
        with pytest.raises(ConfigError) as info:
            parse_options(options)
        assert key in str(info.value)
        assert "jobs.Invoice.options" in str(info.value)

    def test_bad_options_fail_the_job(self, make_invoice_app: AppFactory) -> None:
        """A job run with a bad failure_rate fails with the option's name in its error."""
        app = make_invoice_app(_invoice_jobs(0, failure_rate=2))
        record = app.get_job(_run(app, 1))
        assert record.status == "failed"
        assert "jobs.Invoice.options.failure_rate" in (record.error or "")
