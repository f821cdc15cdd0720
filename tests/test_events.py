"""Job events through pluggy's hook caller: wrappers and tracing apply, every plugin is told,
and jobkit's own job log is a listener of the app, not a plugin."""

from __future__ import annotations

import ast
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_config

import jobkit
import jobkit.notify
from jobkit import EventKind, JobEvent, JobKit, hookimpl
from jobkit.logs import EVENTS_FILE
from jobkit.worker import run_until_empty


class Recording:
    def __init__(self, seen: list[str], name: str) -> None:
        self.seen = seen
        self.name = name

    @hookimpl
    def jobkit_job_event(self, event: JobEvent) -> None:
        self.seen.append(f"{self.name}:{event.kind}")


class Raising:
    @hookimpl
    def jobkit_job_event(self, event: JobEvent) -> None:
        raise RuntimeError("plugin bug")


class Wrapping:
    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    @hookimpl(wrapper=True)
    def jobkit_job_event(self, event: JobEvent) -> Generator[None, Any, Any]:
        self.seen.append(f"before:{event.kind}")
        try:
            return (yield)
        finally:
            self.seen.append(f"after:{event.kind}")


class TestPluginCalls:
    def test_a_hook_wrapper_wraps_each_plugins_call(self, tmp_path: Path) -> None:
        """A wrapper of jobkit_job_event runs around each plugin's call (pluggy's caller)."""
        seen: list[str] = []
        plugins = (Recording(seen, "a"), Wrapping(seen))
        with JobKit(make_config(tmp_path), load_entrypoints=False, plugins=plugins) as app:
            app.run_background_job("Recorder", "record", {"ledger": "", "tag": "t"})
            assert app.events.flush()
        assert seen == ["before:enqueued", "a:enqueued", "after:enqueued"]

    def test_a_raising_plugin_stops_no_other(self, tmp_path: Path) -> None:
        """Plugins registered before and after one that raises are still told, in order."""
        seen: list[str] = []
        plugins = (Recording(seen, "first"), Raising(), Recording(seen, "last"))
        with JobKit(make_config(tmp_path), load_entrypoints=False, plugins=plugins) as app:
            job_id = app.run_background_job("Recorder", "record", {"ledger": "", "tag": "t"})
            run_until_empty(app)
            assert app.events.flush()
            assert app.get_job(job_id).status == "completed"
        # pluggy calls the plugin registered last first
        assert seen == [f"{name}:{kind}" for kind in ("enqueued", "started", "succeeded")
                        for name in ("last", "first")]

    def test_a_plugin_registered_later_is_told(self, tmp_path: Path) -> None:
        """A plugin registered on a running app is told of the events after it came."""
        seen: list[str] = []
        with JobKit(make_config(tmp_path), load_entrypoints=False) as app:
            app.run_background_job("Recorder", "record", {"ledger": "", "tag": "t"})
            app.pm.register(Recording(seen, "late"))
            run_until_empty(app)
            assert app.events.flush()
        assert seen == ["late:started", "late:succeeded"]

    def test_tracing_names_each_plugin_called(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """JOBKIT_TRACE_PLUGINS=1 shows each plugin's jobkit_job_event call and its error."""
        monkeypatch.setenv("JOBKIT_TRACE_PLUGINS", "1")
        plugins = (Recording([], "a"), Raising())
        with JobKit(make_config(tmp_path), load_entrypoints=False, plugins=plugins) as app:
            app.run_background_job("Recorder", "record", {"ledger": "", "tag": "t"})
            assert app.events.flush()
            names = [app.pm.get_name(plugin) for plugin in plugins]
        err = capsys.readouterr().err
        for name in names:
            assert f"jobkit hook jobkit_job_event(event) -> [{name}]" in err
        assert "jobkit hook jobkit_job_event raised RuntimeError('plugin bug')" in err


class TestJobLog:
    def test_the_job_log_is_no_plugin(self, tmp_path: Path) -> None:
        """No plugin implements jobkit_job_event in a bare app; the job log is still written."""
        with JobKit(make_config(tmp_path), load_entrypoints=False) as app:
            assert app.pm.hook.jobkit_job_event.get_hookimpls() == []
            files = app.configure_logging()
            try:
                job_id = app.run_background_job("Recorder", "record", {"ledger": "", "tag": "t"})
            finally:
                files.remove()
        text = (Path(app.config.logging.dir) / EVENTS_FILE).read_text()
        assert f"job_id={job_id}" in text or f'"job_id": "{job_id}"' in text
        assert EventKind.ENQUEUED.value in text


class TestNoHandMadeCalls:
    def test_no_hook_implementation_is_called_directly(self) -> None:
        """Nothing in jobkit/ calls a pluggy HookImpl's function itself."""
        root = Path(jobkit.__file__).parent
        direct = [
            f"{path.relative_to(root)}:{node.lineno}"
            for path in root.rglob("*.py")
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute) and node.attr == "function"
            and isinstance(node.value, ast.Name) and "impl" in node.value.id
        ]
        assert direct == []


class TestNotificationKinds:
    """The notifications listener passes over the kinds of event no subscription wants."""

    class Told(jobkit.notify.Notifier):
        def notify(self, event: JobEvent) -> None:
            self.options.append(str(event.kind))

    def _told(self, *events: frozenset[str] | None) -> tuple[list[list[str]], Any]:
        from jobkit.notify import NotificationDispatcher, Subscription

        told: list[list[str]] = [[] for _ in events]
        dispatcher = NotificationDispatcher(
            [Subscription(self.Told(into), wanted, None)
             for into, wanted in zip(told, events, strict=True)])
        return told, dispatcher

    def _send(self, dispatcher: Any, record: Any, *kinds: Any) -> None:
        for kind in kinds:
            dispatcher(JobEvent(kind, record))
        assert all(thread.flush() for thread in dispatcher.threads)

    def test_each_notifier_gets_the_kinds_it_wants(self, app: JobKit) -> None:
        record = app.storage.get(app.run_background_job("Recorder", "record",
                                                        {"ledger": "", "tag": "t"}))
        told, dispatcher = self._told(frozenset({"failed"}), frozenset({"enqueued", "failed"}))
        self._send(dispatcher, record, EventKind.ENQUEUED, EventKind.FAILED, "failed",
                   EventKind.STARTED)
        assert told == [["failed", "failed"], ["enqueued", "failed", "failed"]]

    def test_one_that_wants_all_gets_all(self, app: JobKit) -> None:
        record = app.storage.get(app.run_background_job("Recorder", "record",
                                                        {"ledger": "", "tag": "t"}))
        told, dispatcher = self._told(frozenset({"failed"}), None)
        self._send(dispatcher, record, EventKind.ENQUEUED, "something-new")
        assert told == [[], ["enqueued", "something-new"]]
