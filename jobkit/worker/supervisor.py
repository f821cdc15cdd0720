"""Internal: the supervisor, which starts N worker processes, watches them and stops them.

Worker processes (:mod:`jobkit.worker.process`) are started by :mod:`jobkit.worker.launch`
(forked or spawned). The supervisor settles the jobs of a process that died as its crash journal
says (:mod:`jobkit.worker.journal`), takes back jobs whose leases expired, kills a process whose
job is past its timeout, starts a new process for one that died, deletes old finished jobs in a
thread (:mod:`jobkit.worker.retention`), and shuts down gracefully: on the first SIGINT or
SIGTERM no new job is claimed, running jobs get ``shutdown_grace`` seconds to finish, then are
handed back; the worker exits 0.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import multiprocessing.connection
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import attrs
from loguru import logger

from jobkit.config import WorkerSettings
from jobkit.exceptions import ConfigError, StorageError, StoreLost
from jobkit.records import JobRecord, JobStatus, Lease
from jobkit.storage.capabilities import check_flow, check_health, housekeep
from jobkit.transitions import Transitions
from jobkit.worker.journal import read_journal
from jobkit.worker.launch import Starter, process_count
from jobkit.worker.process import ChildSpec
from jobkit.worker.retention import Retainer
from jobkit.worker.roster import Roster
from jobkit.worker.scheduler import Scheduler, check_schedules
from jobkit.worker.throughput import Tally

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from jobkit.app import JobKit


@attrs.define
class _Child:
    """One worker process as the supervisor sees it."""

    index: int
    process: BaseProcess
    control: Connection
    #: Its crash journal (jobkit.worker.journal): what it ran and finished since its last commit.
    journal: Path
    worker_id: str | None = None  # reported by the process once its app is built ("ready")
    killed: bool = False  # by the supervisor, for a job past its timeout or lease
    taken_back: bool = False  # its job, once it died, was taken back
    listed: bool = False  # registered in the store's list of worker processes
    #: Attempts that ended, by event kind, reported and not yet added to the throughput.
    outcomes: collections.Counter[str] = attrs.Factory(collections.Counter)

    def read(self) -> None:
        """Take in what the process reported."""
        with contextlib.suppress(EOFError, OSError):
            while self.control.poll():
                kind, value = self.control.recv()
                if kind == "ready":
                    self.worker_id = value
                elif kind == "outcomes":
                    self.outcomes.update(value)

    def tell(self, message: str) -> None:
        """Send a message; a process that is gone cannot hear it and needs none."""
        with contextlib.suppress(OSError, ValueError):
            self.control.send(message)


#: Worker processes that exit before they are ready this many times in a row stop the worker.
_MAX_START_FAILURES = 5


#: Seconds between two runs of ``Storage.housekeep`` by the supervisor.
UPKEEP_INTERVAL = 1.0

class Worker:
    """The supervisor: starts, watches and stops the worker processes."""

    def __init__(
        self,
        app: JobKit,
        *,
        concurrency: int | None = None,
        burst: bool = False,
        settings: WorkerSettings | None = None,
        queues: Sequence[str] | None = None,
        starter: Starter | None = None,
    ) -> None:
        self.app = app
        self.settings = settings or app.config.worker
        if queues is not None:  # --queues: over worker.queues
            self.settings = attrs.evolve(self.settings, queues=list(queues))
        self.concurrency = process_count(concurrency, self.settings)
        self.burst = burst
        #: Starts the worker processes; ``jobkit worker`` passes one that started them ahead
        #: (internal: :mod:`jobkit.worker.launch`).
        self._starter = starter or Starter()
        self._children: list[_Child] = []
        self._stop_requests = 0  # set by signal handlers, acted on by the supervise loop
        self._stopping_since: float | None = None
        self._handing_back = False
        self._start_failures = 0
        self._exit_code = 0
        self._store_lost = False  # its file was deleted or replaced: the worker is stopping
        self._check_failing = False  # the last check of the store could not tell
        self._log_relays: list[threading.Thread] = []
        #: Lists the worker processes in the store, for the dashboard.
        self._roster = Roster(lambda: app.storage)
        #: Adds the attempts the processes report to the store's throughput, every second.
        self._tally = Tally(lambda: app.storage)
        #: Deletes old finished jobs as ``retention:`` says, in a thread of its own.
        self.retainer = Retainer(lambda: app.storage, app.config.retention)
        #: Records the timeouts it enforces and what dead processes left, counting the attempts
        #: for the throughput (added with the processes' own counts).
        self._transitions = Transitions(app)
        config = app.config
        if self.settings != config.worker:  # the worker processes read their settings there
            config = attrs.evolve(config, worker=self.settings)
        self._spec = ChildSpec(config, self._registrations(), burst)
        #: The folder of the worker processes' crash journals (made by :meth:`run`).
        self._journals = Path(tempfile.gettempdir())
        self._spawned = 0
        #: Dead processes whose jobs could not be settled yet (the store was down).
        self._unsettled: list[_Child] = []
        #: Fires the schedules of the configuration (none with ``burst``), from :meth:`run`.
        self._scheduler = Scheduler(app, [], self.settings.poll_interval)

    def _check_queues(self) -> None:
        """Refuse ``--queues`` on a store without ``flow``; warn of queues nothing uses."""
        flow = self.app.flow(self.settings.queues)
        check_flow(self.app.storage, flow)
        if flow.queues is None:
            return
        known = self.app.known_queues()
        for name in flow.queues:
            if name not in known:
                logger.warning(
                    "worker: queue {queue!r} of --queues is no registered job's queue and "
                    "holds no job (known: {known}); is it misspelt?",
                    queue=name, known=", ".join(sorted(known)) or "none")

    def _registrations(self) -> tuple[tuple[str, str], ...]:
        """Jobs registered in code, as import paths a spawned process can import again."""
        found = []
        for spec in self.app.registry:
            if spec.source != "JobKit.register()":
                continue
            path = spec.import_path
            if "<locals>" in path or path.startswith("__main__:"):
                raise ConfigError(
                    f"job {spec.name!r} ({path}) was registered in code but cannot be imported "
                    "by a worker process; define it at the top level of an importable module"
                )
            found.append((spec.name, path))
        return tuple(found)

    def request_stop(self) -> None:
        """Stop claiming; running jobs get ``shutdown_grace`` seconds, then are handed back.

        A second request hands them back at once. Safe to call from a signal handler.
        """
        self._stop_requests += 1

    def run(self, install_signals: bool = True) -> int:
        """Run until stopped (or, with ``burst``, until no job is left); return the exit code.

        The exit code is 0, or 1 when worker processes kept failing to start or the store was
        lost (its SQLite file deleted or replaced).
        """
        try:
            return self._run(install_signals)
        finally:
            self._starter.close()  # processes started ahead and not used (a start-up error)

    def _run(self, install_signals: bool) -> int:
        problems = self.app.check()
        if problems:
            raise ConfigError(errors=problems)
        if self.app.config.storage.startswith("memory:"):
            raise ConfigError(
                "storage: memory:// lives in one process; worker processes need "
                "a shared store such as sqlite:///jobkit.db"
            )
        self.app.storage  # noqa: B018 - open (and migrate) the store before the children do
        self._check_queues()
        schedules = [] if self.burst else check_schedules(self.app)
        self._scheduler = Scheduler(self.app, schedules, self.settings.poll_interval)
        restore = self._install_signals() if install_signals else (lambda: None)
        self._journals = Path(tempfile.mkdtemp(prefix="jobkit-worker-"))
        try:
            logger.info(
                "worker starting {n} process(es) on {storage}",
                n=self.concurrency,
                storage=self.app.config.storage,
            )
            self._children = [self._spawn(i) for i in range(self.concurrency)]
            self._scheduler.start()
            self.retainer.start()
            self._supervise()
        finally:
            self._scheduler.stop()
            restore()
            self.retainer.stop()
            self._stop_all()
            shutil.rmtree(self._journals, ignore_errors=True)
        logger.info("worker stopped")
        return self._exit_code

    def _spawn(self, index: int) -> _Child:
        """Start worker process ``index`` (or take the one started ahead) and send its spec."""
        from jobkit.worker.logpipe import relay

        started = self._starter.take(index)
        self._spawned += 1
        journal = self._journals / f"{index}-{self._spawned}.journal"
        child = _Child(index, started.process, started.control, journal)
        with contextlib.suppress(OSError):  # it died already: reaped as a failed start
            started.control.send(attrs.evolve(self._spec, journal=str(journal)))
        self._log_relays = [thread for thread in self._log_relays if thread.is_alive()]
        self._log_relays.append(relay(started.logs, started.process.name))
        return child

    def _supervise(self) -> None:
        next_requeue = next_upkeep = next_check = 0.0
        while True:
            if time.monotonic() >= next_check and not self._store_lost:
                next_check = time.monotonic() + self.settings.heartbeat
                self._check_store()
            if time.monotonic() >= next_requeue:
                next_requeue = time.monotonic() + self.settings.requeue_interval
                try:
                    self._enforce_deadlines()
                    # a dead process's journal first: its finished jobs' leases may have
                    # expired, and they must be recorded as completed, not taken back
                    self._take_back_dead()
                    self._transitions.recover_expired()
                except StorageError as exc:
                    logger.error("could not take back expired leases: {error}", error=str(exc))
                except Exception:  # a bug here must not end the supervisor and every job
                    logger.opt(exception=True).error("checking timeouts and leases failed")
            if time.monotonic() >= next_upkeep:
                next_upkeep = time.monotonic() + UPKEEP_INTERVAL
                self._upkeep()
            self._follow_stop_requests()
            self._reap()
            live = [child for child in self._children if child.process.is_alive()]
            if not live and (self.burst or self._stopping_since is not None):
                # a process's sentinel fires as it exits, a moment before its exit status
                # can be read: one that died since the reap above (a job that would not
                # stop, exit 75) is replaced there, not left with the jobs it gave back
                self._reap()
                live = [child for child in self._children if child.process.is_alive()]
                if not live:
                    return
            if self._stopping_since is not None:
                waited = time.monotonic() - self._stopping_since
                if waited > self.settings.shutdown_grace and not self._handing_back:
                    self._hand_back("the grace period is over")
                if waited > self.settings.shutdown_grace + self.settings.kill_grace + 5:
                    return
            sentinels = [child.process.sentinel for child in live]
            if sentinels:
                multiprocessing.connection.wait(sentinels, timeout=0.2)
            else:
                time.sleep(0.2)

    def _check_store(self) -> None:
        """Stop, exit status 1, when the store is gone for good (its file deleted or replaced).

        Going on would serve a file nobody enqueues to any more, while new jobs wait in a new
        one. A supervisor (systemd, Docker) starts the worker again on the new file.
        """
        try:
            check_health(self.app.storage)
        except StoreLost as exc:
            logger.error(
                "{error}; stopping the worker (exit status 1): restart it to serve the store "
                "at {storage}",
                error=str(exc),
                storage=self.app.config.storage,
            )
            self._store_lost = True
            self._exit_code = 1
            self.request_stop()
        except Exception as exc:  # a check that cannot tell (the store is down) decides nothing
            if not self._check_failing:  # said once, not every heartbeat
                logger.warning("could not check the store: {error}", error=str(exc))
            self._check_failing = True
        else:
            self._check_failing = False

    def _upkeep(self) -> None:
        """Do the once-a-second upkeep: beats, throughput, and the store's own upkeep.

        Beats the listed processes, adds their outcomes to the throughput and runs the store's
        own upkeep. A failure is logged; the supervisor goes on.
        """
        try:
            self._roster.beat([child.worker_id for child in self._children
                               if child.worker_id and child.process.is_alive()])
            for child in self._children:
                self._tally.add(child.outcomes)
                child.outcomes.clear()
            self._count_own()
            self._tally.flush()
            housekeep(self.app.storage)
        except Exception as exc:  # the store is down (or a bug): never the supervisor's end
            logger.warning("store upkeep failed: {error}", error=str(exc))

    def _count_own(self) -> None:
        """Add the attempts the supervisor itself recorded to the throughput."""
        self._tally.add({kind.value: n for kind, n in self._transitions.outcomes.items()})
        self._transitions.outcomes.clear()

    def _enforce_deadlines(self) -> None:
        """Kill a worker process whose job is past its timeout or lease, then record the timeout.

        The timeout counts ``kill_grace`` on top. The process's own monitor does this, but
        cannot while the job holds the GIL in C code; and a process whose lease expired must not
        run on beside the one that takes its job.
        """
        by_worker = {
            child.worker_id: child
            for child in self._children
            if child.worker_id is not None and child.process.is_alive()
        }
        if not by_worker:
            return
        storage = self.app.storage
        now = storage.now()
        slack = self.settings.kill_grace + 2 * self.settings.heartbeat + 1
        for record in storage.list(status=JobStatus.RUNNING, limit=10_000):
            child = by_worker.get(record.worker_id or "")
            if child is None or record.started_at is None:
                continue
            try:
                self._enforce_deadline(record, record.started_at, child, now, slack)
            except StorageError:
                raise
            except Exception:  # one odd row (or a bug) must not stop the supervisor
                logger.opt(exception=True).error(
                    "job {job_id}: could not check its timeout and lease", job_id=record.id
                )

    def _enforce_deadline(
        self, record: JobRecord, started_at: datetime, child: _Child, now: datetime, slack: float
    ) -> None:
        """Kill ``child`` if ``record``, which it runs, is past its timeout or its lease."""
        # a difference of two dates never overflows, as a date plus a huge timeout would
        running = (now - started_at).total_seconds()
        timeout = record.policy.timeout
        overdue = timeout is not None and running > timeout + slack
        expired = record.lease_expires_at is not None and now > record.lease_expires_at
        if overdue and not expired:
            # a job claimed with others (its started_at) may not have started yet, or may
            # have finished, its completion waiting for the batch's commit
            key = (record.id, record.attempts)
            journal = read_journal(child.journal)
            overdue = key in journal.started and key not in journal.done
        if not (overdue or expired):
            return
        logger.error(
            "job {job_id} is {what}; its worker process {name} does not respond: killing it",
            job_id=record.id,
            name=child.process.name,
            what="past its timeout" if overdue else "past its lease",
        )
        child.killed = True
        child.process.kill()
        child.process.join(timeout=5)
        if overdue:
            lease = Lease(record.id, child.worker_id or "", record.attempts)
            self._transitions.timed_out(lease, record)
        self._take_back_dead()  # its other jobs, as its journal says

    def _follow_stop_requests(self) -> None:
        if self._stop_requests and self._stopping_since is None:
            logger.info(
                "shutting down: waiting up to {grace:g} s for running jobs",
                grace=self.settings.shutdown_grace,
            )
            self._stopping_since = time.monotonic()
            self._scheduler.stop(timeout=None)
            for child in self._children:
                child.tell("stop")
        if self._stop_requests > 1 and not self._handing_back:
            self._hand_back("second stop request")

    def _hand_back(self, why: str) -> None:
        logger.warning("{why}: handing running jobs back", why=why)
        self._handing_back = True
        for child in self._children:
            child.tell("hand_back")

    def _reap(self) -> None:
        for position, child in enumerate(self._children):
            child.read()
            if child.worker_id is not None and not child.listed and child.process.is_alive():
                child.listed = self._roster.joined(child.worker_id, child.process.pid or 0)
            process = child.process
            if process.is_alive() or process.exitcode is None:
                continue
            if not child.taken_back:
                self._take_back_dead()
                if child.worker_id is not None:
                    self._roster.left(child.worker_id)
            if self._stopping_since is not None or (self.burst and process.exitcode == 0):
                continue
            # a process that died before it was ready could not start (bad import, store
            # unreachable); one that died later was ended by, or with, a job: start another
            self._start_failures = self._start_failures + 1 if child.worker_id is None else 0
            if self._start_failures >= _MAX_START_FAILURES:
                logger.error(
                    "worker processes keep failing at start (last status {code}); stopping",
                    code=process.exitcode,
                )
                self._exit_code = 1
                self.request_stop()
                continue
            if not child.killed:
                logger.warning(
                    "worker process {name} exited with status {code}; starting another",
                    name=process.name,
                    code=process.exitcode,
                )
            child.control.close()
            process.close()
            self._tally.add(child.outcomes)  # what it reported before it died still counts
            self._children[position] = self._spawn(child.index)

    def _take_back_dead(self) -> None:
        """Settle the jobs of every worker process that died and was not settled yet.

        A process whose settling failed (the store being down) is tried again.
        """
        dead = [child for child in self._children
                if not child.taken_back and child.process.exitcode is not None]
        for child in [*self._unsettled, *dead]:
            child.taken_back = True
            if child in self._unsettled:
                self._unsettled.remove(child)
            if not self._take_back(child):
                self._unsettled.append(child)

    def _take_back(self, child: _Child) -> bool:
        """Settle a dead worker process's jobs as its journal says; ``False`` if the store failed.

        This happens now, rather than when their leases run out. A job it finished is recorded
        as completed; the job it was running is taken back (a crash, counted against
        ``max_crashes``); a job it claimed but never started is handed back, uncounted. Without
        a journal to read, every job it held is taken back as a crash. When the store failed,
        try again later.
        """
        if child.worker_id is None:
            return True  # it died before it could claim anything
        storage = self.app.storage
        journal = read_journal(child.journal)
        try:
            for record in storage.list(status=JobStatus.RUNNING, limit=10_000):
                if record.worker_id != child.worker_id:
                    continue
                lease = Lease(record.id, child.worker_id, record.attempts)
                key = (record.id, record.attempts)
                if key in journal.done:
                    self._transitions.recovered_completion(lease, journal.done[key])
                elif journal.readable and key not in journal.started:
                    self._transitions.handed_back(lease)
                else:
                    self._transitions.crashed(lease, child.process.name, child.process.exitcode)
            self._transitions.recover_expired()
        except StorageError as exc:  # tried again each second; the leases expire meanwhile
            logger.error("could not take back the jobs of a dead worker: {error}", error=str(exc))
            return False
        child.journal.unlink(missing_ok=True)
        return True

    def _stop_all(self) -> None:
        for child in self._children:
            child.tell("stop")
        for child in self._children:
            try:
                child.process.join(timeout=2)
                if child.process.is_alive():
                    logger.error(
                        "worker process {name} did not stop; killing it", name=child.process.name
                    )
                    child.process.kill()
                    child.process.join(timeout=2)
            except ValueError:  # already closed
                pass
            child.read()  # its last report
            if child.process.exitcode is not None:
                self._take_back_dead()  # killed just now, or died while the loop ended
            child.control.close()
            self._tally.add(child.outcomes)
            child.outcomes.clear()
            if child.worker_id is not None:
                self._roster.left(child.worker_id)
        self._count_own()
        self._tally.flush()
        for thread in self._log_relays:  # the last records of the stopped processes
            thread.join(timeout=2)
        logger.complete()

    def _install_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handle(signum: int, frame: FrameType | None) -> None:
            self.request_stop()

        previous: dict[int, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handle)

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore
