"""``CompleteInvoiceJob``, registered as ``Invoice`` through the ``jobkit.jobs`` entry point."""

from __future__ import annotations

import random
import time

from jobkit import Job
from jobkit_invoice.options import InvoiceOptions, parse_options

#: How many progress updates an attempt with simulated work reports.
PROGRESS_STEPS = 5


class InvoiceFailed(RuntimeError):
    """The simulated failure of one attempt to complete an invoice."""


def fails(invoice_id: int, attempt: int, options: InvoiceOptions) -> bool:
    """Whether this attempt at this invoice fails: reproducible for a given seed."""
    rng = random.Random(f"{invoice_id}:{attempt}:{options.seed}")
    return rng.random() < options.failure_rate


class CompleteInvoiceJob(Job):
    """Complete an invoice; for demos of retries, fail at random at ``options.failure_rate``.

    ``options.work_seconds`` of simulated work are reported through ``self.progress``. Whether an
    attempt fails is drawn from ``random.Random(f"{invoice_id}:{attempt}:{seed}")``, so a given
    invoice, attempt and seed always end the same way.
    """

    methods = ("complete",)
    Options = InvoiceOptions  # jobkit checks jobs.Invoice.options against it
    #: The package's own settings; the application's jobs.yaml overrides them.
    defaults = {"retry_attempts": 3, "retry_delay": 1}

    def complete(self, invoice_id: int) -> dict[str, int | str]:
        """Complete invoice ``invoice_id``; raise ``InvoiceFailed`` when this attempt fails."""
        options = parse_options(self.options)
        attempt = self.context.attempt
        self.log.info("completing invoice {invoice_id}", invoice_id=invoice_id)
        steps = PROGRESS_STEPS if options.work_seconds > 0 else 1
        for step in range(1, steps + 1):
            if options.work_seconds > 0:
                time.sleep(options.work_seconds / steps)
            self.progress(step / steps, f"invoice {invoice_id}: step {step} of {steps}")
        if fails(invoice_id, attempt, options):
            raise InvoiceFailed(
                f"invoice {invoice_id}: attempt {attempt} failed "
                f"(simulated, failure_rate {options.failure_rate:g})"
            )
        return {"invoice_id": invoice_id, "status": "completed", "attempt": attempt}
