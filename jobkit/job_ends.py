"""Internal: the watch of job ends behind ``await_job`` and ``wait_job``, one thread per app.

A waiter adds itself (a job id and a function that takes the job's final record, or the
exception that ends the wait) and reads the job once itself: an end before it added itself is
seen by that read, an end after is seen by the watch. The watch is one daemon thread per app
that waits on the store's signal of ends (capability ``ends``: PostgreSQL's ``LISTEN`` on
``jobkit_ends``, which names the jobs that ended; SQLite's watch on its ``-wal`` file, which
says only that something was committed), then reads the jobs waited for that may have ended
and hands each final record to its waiters. It reads every job waited for at least once a
second whatever the signal says, at most :data:`MIN_ROUND` apart (a busy SQLite store commits
far more often; more apart with many jobs waited for, :data:`PER_READ`), and a store without
``ends`` (memory) every :data:`~jobkit.storage.capabilities.POLL_ENDS` seconds. The thread
ends after :data:`IDLE_EXIT` seconds without a waiter and starts again with the next one.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from jobkit.exceptions import JobNotFoundInStorage, StorageError
from jobkit.lazylog import logger
from jobkit.records import FINAL_STATUSES, JobRecord
from jobkit.storage.capabilities import wait_for_ends

if TYPE_CHECKING:
    from jobkit.storage.base import Storage

#: Seconds after which every job waited for is read, whatever the store's signal said.
FALLBACK = 1.0
#: The fewest seconds between two rounds of reads.
MIN_ROUND = 0.02
#: Seconds between two rounds per job read in the last one: many jobs waited for on a busy
#: SQLite store are read at most 2,000 times a second in all.
PER_READ = 0.0005
#: Seconds without a waiter after which the thread (and its ``LISTEN`` connection) ends.
IDLE_EXIT = 5.0

#: What a waiter is handed: the job's final record, or the exception that ends its wait.
Deliver = Callable[[JobRecord | BaseException], None]


class EndWatch:
    """The jobs some callers wait for, and the thread that hands them their ends."""

    def __init__(self, storage: Callable[[], Storage]) -> None:
        self._storage = storage
        self._lock = threading.Lock()
        self._waiters: dict[str, dict[int, Deliver]] = {}
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def add(self, job_id: str, deliver: Deliver) -> int:
        """Hand ``job_id``'s final record to ``deliver`` once it ends; the token to remove it.

        ``deliver`` is called on the watch's thread, at most once. The caller reads the job
        itself after this: an end before now is not handed on.
        """
        with self._lock:
            if self._stop.is_set():
                raise StorageError("cannot wait for a job: the app is closed")
            token = next(self._tokens)
            self._waiters.setdefault(job_id, {})[token] = deliver
            if self._thread is None or not self._thread.is_alive():  # (none across a fork)
                self._thread = threading.Thread(target=self._run, name="jobkit-job-ends",
                                                daemon=True)
                self._thread.start()
        return token

    def remove(self, job_id: str, token: int) -> None:
        """Forget the waiter ``token`` of ``job_id`` (it has its end, or has given up)."""
        with self._lock:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.pop(token, None)
                if not waiters:
                    del self._waiters[job_id]

    def waiting(self) -> int:
        """How many waits go on."""
        with self._lock:
            return sum(len(waiters) for waiters in self._waiters.values())

    def close(self) -> None:
        """Stop the thread (within a quarter of a second); each waiter gets a ``StorageError``.

        Later waits are refused.
        """
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)
        self._end_all(StorageError("the wait for the job ended: its app was closed"))

    def _end_all(self, error: BaseException) -> None:
        """Hand ``error`` to every waiter."""
        with self._lock:
            waiting, self._waiters = self._waiters, {}
        for waiters in waiting.values():
            for deliver in waiters.values():
                deliver(error)

    def _run(self) -> None:
        """The thread's life: :meth:`_watch`; what ends it unexpected ends every wait."""
        try:
            self._watch()
        except BaseException as exc:
            with self._lock:
                self._thread = None
            self._end_all(exc)
            raise

    def _watch(self) -> None:
        """Wait for the store's signal, read the jobs it may concern, hand on; until idle."""
        storage = self._storage()
        idle_since: float | None = None
        last_round, last_reads = 0.0, 0
        while not self._stop.is_set():
            with self._lock:
                if self._waiters:
                    idle_since = None
                elif idle_since is None:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > IDLE_EXIT:
                    self._thread = None  # under the lock: the next add starts another
                    return
            try:
                ended = wait_for_ends(storage, FALLBACK, self._stop)
            except StorageError as exc:
                logger.warning("waiting for job ends: {error}; reading the jobs again in "
                               "{seconds:g} s", error=exc, seconds=FALLBACK)
                self._stop.wait(FALLBACK)
                ended = None
            pause = max(MIN_ROUND, PER_READ * last_reads)
            self._stop.wait(last_round + pause - time.monotonic())
            last_round = time.monotonic()
            last_reads = self._hand_on(storage, ended)

    def _hand_on(self, storage: Storage, ended: set[str] | None) -> int:
        """Read the jobs waited for among ``ended`` (all: ``None``); hand on the final ones.

        How many were read.
        """
        with self._lock:
            job_ids = [job_id for job_id in self._waiters if ended is None or job_id in ended]
        for job_id in job_ids:
            outcome: JobRecord | BaseException
            try:
                outcome = storage.get(job_id)
            except JobNotFoundInStorage as exc:  # deleted while waited for
                outcome = exc
            except StorageError:
                continue  # logged by the next wait if the store is down; read again then
            if isinstance(outcome, JobRecord) and outcome.status not in FINAL_STATUSES:
                continue
            with self._lock:
                waiters = self._waiters.pop(job_id, {})
            for deliver in waiters.values():
                deliver(outcome)
        return len(job_ids)
