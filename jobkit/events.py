"""Internal: delivering job events, to jobkit's listeners at once and to plugins on a thread.

jobkit's own listeners (the job log, the notifications of ``jobs.yaml``) are plain functions the
dispatcher calls in the thread that changed the job: they are fast and keep the job log in order
with the lines jobs log themselves. The plugins' ``jobkit_job_event`` implementations are called
on a thread of their own (:mod:`jobkit.delivery`), in batches: handing an event over costs the
caller an append to a queue. They are called through pluggy's hook caller, so
``JOBKIT_TRACE_PLUGINS`` (pluggy's hook call monitoring) and hook wrappers apply to them as to
every other hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from jobkit.delivery import DeliveryThread, close_all
from jobkit.lazylog import logger

if TYPE_CHECKING:
    import pluggy
    from pluggy import HookCaller, HookImpl

    from jobkit.records import JobEvent

#: A listener of jobkit's own: told of every event, in the thread that changed the job.
Listener = Callable[["JobEvent"], None]


class PluginCallers:
    """``jobkit_job_event`` through pluggy's caller, one plugin at a time.

    pluggy's caller stops at the first implementation that raises; an event must reach every
    plugin, so each plugin's implementation gets a caller of its own (pluggy's
    ``subset_hook_caller``, which keeps the hook wrappers around it). The callers are made
    again only when the plugins implementing the hook change.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.hook: HookCaller = pm.hook.jobkit_job_event
        self._impls: tuple[HookImpl, ...] = ()
        self._callers: list[tuple[str, HookCaller]] = []

    def __bool__(self) -> bool:
        """Whether any plugin implements the hook."""
        return bool(self.hook.get_hookimpls())

    def callers(self) -> list[tuple[str, HookCaller]]:
        """(plugin name, caller) of each implementation, in pluggy's call order."""
        impls = tuple(self.hook.get_hookimpls())
        if impls != self._impls:  # HookImpl compares by identity: a plugin came or went
            plain = [impl for impl in impls if not (impl.hookwrapper or impl.wrapper)]
            self._callers = [
                (impl.plugin_name, self.pm.subset_hook_caller(
                    self.hook.name, [other.plugin for other in plain if other is not impl]))
                for impl in reversed(plain)
            ]
            self._impls = impls
        return self._callers

    def deliver(self, events: list[JobEvent]) -> None:
        """Call every plugin's implementation with each of ``events`` in turn.

        The ones that raise are logged, a ``SystemExit`` too: it must not keep the event from
        the other plugins.
        """
        # the plugins of the batch's start (registering is rare)
        calls = [(plugin, _batch_call(caller)) for plugin, caller in self.callers()]
        for event in events:
            for plugin, call in calls:
                try:
                    call(event)
                except BaseException:
                    _log_failure(f"plugin {plugin}", event)


def _batch_call(caller: HookCaller) -> Callable[[JobEvent], object]:
    """``caller(event=event)`` for the events of one batch, with pluggy's checks made once.

    pluggy's ``HookCaller.__call__`` checks the keyword arguments against the spec and copies
    the implementations on every call (about half of a call's cost), then runs them through its
    manager's hook execution, ``_hookexec``, where hook wrappers and call monitoring
    (``JOBKIT_TRACE_PLUGINS``) apply. For a batch the implementations are taken once and each
    event goes straight to that execution, as ``__call__`` would send it. A pluggy without
    ``_hookexec`` gets the plain call.
    """
    hookexec = getattr(caller, "_hookexec", None)
    if hookexec is None or caller.is_historic():
        return lambda event: caller(event=event)
    name, impls = caller.name, caller.get_hookimpls()
    first = bool(caller.spec.opts.get("firstresult", False)) if caller.spec else False
    return lambda event: hookexec(name, impls, {"event": event}, first)


class EventDispatcher:
    """Delivers job events: jobkit's own listeners at once, plugins on a thread, in order.

    Every plugin is told on one delivery thread; each notifier has a thread of its own as well.
    A plugin's hook that is slow or hangs delays only later events to plugins, never the job or
    the caller that changed its state. :meth:`flush` waits (boundedly) for the events emitted.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        from jobkit.logs import log_event  # here: it imports loguru, which import jobkit does not

        self.pm = pm
        #: The job log: writes each event's line (a worker process sends it to the supervisor
        #: instead, see :func:`jobkit.worker.logpipe.forward_events`).
        self.log: Listener = log_event
        #: jobkit's other listeners, called after the log, in order.
        self.listeners: list[Listener] = []
        self.plugins = PluginCallers(pm)
        self._plugins = DeliveryThread("jobkit-events", self.plugins.deliver)
        #: Threads fed by listeners (one per notifier), flushed and closed with this one.
        self.downstream: list[DeliveryThread] = []

    def emit(self, event: JobEvent) -> None:
        """Tell the listeners of ``event`` and queue it for the plugins."""
        self._tell(event, self.log)
        for listener in self.listeners:
            self._tell(event, listener)
        if self.plugins:  # with no plugin listening, no thread is started
            self._plugins.emit(event)

    def emit_all(self, events: Iterable[JobEvent]) -> None:
        """:meth:`emit` each of ``events`` in order."""
        for event in events:
            self.emit(event)

    @staticmethod
    def _tell(event: JobEvent, listener: Listener) -> None:
        try:
            listener(event)
        except Exception:
            _log_failure(f"jobkit's listener {_name(listener)}", event)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event emitted so far was delivered; ``False`` on timeout."""
        return close_all([self._plugins, *self.downstream], timeout, flush_only=True)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (waiting at most ``timeout`` in all), then stop the threads."""
        close_all([self._plugins, *self.downstream], timeout)


def _name(listener: Listener) -> str:
    return getattr(listener, "__qualname__", None) or repr(listener)


def _log_failure(who: str, event: JobEvent) -> None:
    logger.opt(exception=True).error(
        "{who} raised in jobkit_job_event({kind}) for job {job_id}",
        who=who,
        kind=str(event.kind),
        job_id=event.job.id,
    )
