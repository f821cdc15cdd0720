"""Internal: the lines a job logs through ``self.log``, kept in the store per attempt.

``self.log`` is a loguru logger with a patcher that copies each record it logs (after loguru's
level checks: a line no sink takes is not kept either) into the attempt's buffer. The buffer is
written to the store once a second while the job runs (the monitor thread does it, so a running
job's page shows its lines live) and when the attempt ends. An attempt keeps at most
:data:`MAX_LINES` lines and :data:`MAX_CHARS` characters; past that, one line says how many were
left out. A line is capped at :data:`MAX_LINE_CHARS` characters.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from loguru import logger

from jobkit.exceptions import StorageError
from jobkit.records import JobLogLine
from jobkit.storage.capabilities import job_logs_of

if TYPE_CHECKING:
    from loguru import Logger, Record

    from jobkit.storage.base import Storage

MAX_LINES = 500
MAX_CHARS = 64 * 1024
MAX_LINE_CHARS = 2000


class AttemptLog:
    """One attempt's lines: captured from ``self.log``, written to the store in batches."""

    def __init__(self, storage: Storage, job_id: str, attempt: int, min_level: int = 0) -> None:
        self.storage = storage
        self.job_id = job_id
        self.attempt = attempt
        #: Lines under this loguru level number are not kept (the log's configured level).
        self.min_level = min_level
        self._lock = threading.Lock()
        self._pending: list[JobLogLine] = []
        self._kept_lines = 0
        self._kept_chars = 0
        self._dropped = 0
        self._dropped_reported = 0

    def logger(self, base: Logger) -> Logger:
        """``base`` with this attempt's capture attached."""
        return base.patch(self._capture)

    def _capture(self, record: Record) -> None:
        if record["level"].no < self.min_level:
            return
        message = _storable(record["message"])
        if len(message) > MAX_LINE_CHARS:
            message = f"{message[:MAX_LINE_CHARS]} [... {len(message) - MAX_LINE_CHARS} " \
                      "characters cut]"
        with self._lock:
            if self._kept_lines >= MAX_LINES or self._kept_chars + len(message) > MAX_CHARS:
                self._dropped += 1
                return
            self._kept_lines += 1
            self._kept_chars += len(message)
            self._pending.append(JobLogLine(self.attempt, record["time"], record["level"].name,
                                            message))

    def flush(self, *, final: bool = False) -> None:
        """Write the lines captured since the last flush.

        At the end (``final``), with a line saying how many were left out. Never raises: the
        job's outcome matters more than its lines; a store that is down keeps them for the next
        flush (none after the final one).
        """
        try:
            dropped_note = None
            if final and self._dropped:
                dropped_note = JobLogLine(
                    self.attempt, self.storage.now(), "WARNING",
                    f"[{self._dropped} more line(s) not kept: an attempt keeps at most "
                    f"{MAX_LINES} lines and {MAX_CHARS} characters]")
            with self._lock:
                lines, self._pending = self._pending, []
                if dropped_note is not None:
                    lines.append(dropped_note)
                    self._dropped = 0
            if lines:
                self._write(lines)
        except Exception as exc:  # the clock or the store: keep going without the lines
            logger.warning("job {job_id}: its log lines could not be stored: {error}",
                           job_id=self.job_id, error=str(exc))

    def _write(self, lines: list[JobLogLine]) -> None:
        try:
            job_logs_of(self.storage).add_job_logs(self.job_id, lines)
        except StorageError as exc:
            with self._lock:
                self._pending[:0] = lines
            logger.warning("job {job_id}: its log lines could not be stored yet: {error}",
                           job_id=self.job_id, error=str(exc))


def _storable(text: str) -> str:
    """``text`` as every store can keep it.

    A NUL (PostgreSQL's text refuses it) and lone surrogates (not UTF-8) are shown as escapes.
    """
    text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
