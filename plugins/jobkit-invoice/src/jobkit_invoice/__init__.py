"""jobkit-invoice: the ``Invoice`` job, which completes an invoice and fails at a chosen rate."""

from __future__ import annotations

from jobkit_invoice.jobs import CompleteInvoiceJob, InvoiceFailed, fails
from jobkit_invoice.options import InvoiceOptions, parse_options

__all__ = ["CompleteInvoiceJob", "InvoiceFailed", "InvoiceOptions", "fails", "parse_options"]
