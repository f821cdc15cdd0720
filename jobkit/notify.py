"""Notifiers: plugins told about job events, configured under ``notifications:`` in jobs.yaml.

A notifier class is registered by a plugin through ``jobkit_register_notifiers`` and built from
one entry of ``notifications:``: ``plugin`` names the class, ``events`` and ``jobs`` filter what
it is told, and the entry's other keys are its options, structured into the class's ``Options``
attrs class (unknown keys and wrong types are configuration errors naming file and line).
"""

from __future__ import annotations

import abc
import os
import re
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import attrs

from jobkit.delivery import DeliveryThread
from jobkit.exceptions import ConfigError
from jobkit.options import structure_options
from jobkit.records import EventKind, JobEvent

if TYPE_CHECKING:
    from jobkit.config import Config


@attrs.frozen
class NoOptions:
    """Options of a notifier that takes none."""


class Notifier(abc.ABC):
    """The base class of notifiers; ``Options`` is the attrs class of its configuration."""

    Options: ClassVar[type[Any]] = NoOptions

    def __init__(self, options: Any) -> None:
        self.options = options

    @abc.abstractmethod
    def notify(self, event: JobEvent) -> None:
        """Deliver ``event``. May raise; the dispatcher logs the error and goes on."""


class NotifierClasses(Protocol):
    """Where notifier classes are found by name (a :class:`jobkit.registries.NotifierRegistry`)."""

    def get(self, name: str) -> type[Notifier]:
        """The class registered under ``name``; ``KeyError`` names the known ones."""


@attrs.frozen
class Subscription:
    """One configured notifier and the events it wants."""

    notifier: Notifier
    events: frozenset[str] | None
    jobs: frozenset[str] | None

    def wants(self, event: JobEvent) -> bool:
        """Whether the event passes the entry's ``events`` and ``jobs`` filters."""
        return (self.events is None or str(event.kind) in self.events) and (
            self.jobs is None or event.job.name in self.jobs
        )


def build_subscriptions(config: Config, registry: NotifierClasses) -> list[Subscription]:
    """Build a notifier for each ``notifications:`` entry; ``ConfigError`` lists every bad one."""
    subscriptions: list[Subscription] = []
    errors: list[str] = []
    for index, entry in enumerate(config.notifications):
        where = f"{config.where('notifications', index)}: notifications[{index}]"
        notifier = _notifier(registry, entry.plugin, entry.options, where, errors)
        if notifier is not None:
            subscriptions.append(Subscription(notifier, _set(entry.events), _set(entry.jobs)))
    if errors:
        raise ConfigError(errors=errors)
    return subscriptions


def _notifier(registry: NotifierClasses, plugin: str, options: Any, where: str,
              errors: list[str]) -> Notifier | None:
    """The notifier of one entry.

    ``None``, with its problems added to ``errors``, if it does not fit.
    """
    try:
        cls = registry.get(plugin)
        return cls(structure_options(cls.Options, options, where))
    except KeyError as exc:
        errors.append(f"{where}.plugin: {exc.args[0]}")
    except ConfigError as exc:
        errors.extend(exc.errors)
    return None


#: The keys of a ``notifications:`` entry that are not the notifier's options.
ENTRY_KEYS = ("plugin", "events", "jobs")


def with_notifier_problems(
    error: ConfigError,
    path: str | os.PathLike[str] | None,
    notifiers: Callable[[], NotifierClasses],
) -> ConfigError:
    """``error`` with the problems the notifier classes find in the file's notifications.

    ``error`` says why the file ``path`` did not load; the classes ``notifiers()`` returns look
    at the file's raw ``notifications:`` entries, and their problems join ``error``'s, all in
    the order of the file. ``error`` itself when they find none, or ``notifiers()`` raises
    ``ConfigError`` (the plugins do not load).
    """
    from jobkit.config import raw_notifications

    entries = raw_notifications(path)
    if not entries:
        return error
    try:
        registry = notifiers()
    except ConfigError:
        return error
    found = list(error.errors)
    for where, entry in entries:
        plugin = entry.get("plugin")
        if isinstance(plugin, str):  # a missing or non-text plugin is the file's own problem
            options = {key: value for key, value in entry.items() if key not in ENTRY_KEYS}
            _notifier(registry, plugin, options, where, found)
    if len(found) == len(error.errors):
        return error
    return ConfigError(errors=sorted(found, key=_line_number))


def _line_number(problem: str) -> float:
    """Where a problem goes, as ``load_config`` orders them.

    By the line it names (``jobs.yaml:12: ...``); one of the file without a line first, the
    environment's last.
    """
    if problem.startswith("environment "):
        return float("inf")
    found = re.match(r"^.*?:(\d+): ", problem)
    return int(found.group(1)) if found else 0


def _set(values: Iterable[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


class NotificationDispatcher:
    """jobkit's listener, one per app, that hands each event to the notifiers that want it.

    Each notifier delivers on a thread of its own, so a hung webhook holds back only its own
    later notifications, never another notifier's.
    """

    def __init__(self, subscriptions: list[Subscription]) -> None:
        self.subscriptions = subscriptions
        self.threads = [
            DeliveryThread(f"jobkit-notify-{index}", partial(_notify, subscription))
            for index, subscription in enumerate(subscriptions)
        ]
        #: The kinds of event some subscription wants, as members and as text (an event made
        #: with a plain string), ``None`` when one wants all: the others are passed over at once
        #: (most configurations want failures only, and every job is enqueued and started).
        self.kinds: frozenset[str] | None = None
        if all(sub.events is not None for sub in subscriptions):
            texts = frozenset().union(*(sub.events or () for sub in subscriptions))
            self.kinds = texts | {kind for kind in EventKind if str(kind) in texts}

    def __call__(self, event: JobEvent) -> None:
        """Queue the event for every interested notifier."""
        if self.kinds is not None and event.kind not in self.kinds:
            return
        for subscription, thread in zip(self.subscriptions, self.threads, strict=True):
            if subscription.wants(event):
                thread.emit(event)


def _notify(subscription: Subscription, events: list[JobEvent]) -> None:
    """Deliver a batch of events, in order.

    A notifier that raises is logged, and delivery goes on with the next event.
    """
    from loguru import logger

    for event in events:
        try:
            subscription.notifier.notify(event)
        except BaseException:  # a SystemExit too: the next events are still delivered
            logger.opt(exception=True).error(
                "notifier {notifier} failed for job {job_id} ({kind})",
                notifier=type(subscription.notifier).__name__,
                job_id=event.job.id,
                kind=str(event.kind),
            )
