"""Plugins and notifiers that do not fit: one ConfigError that names every problem."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import config_data, make_config
from test_plugin_errors import install_plugin

from jobkit import ConfigError, JobKit, hookimpl
from jobkit.records import JobEvent

DOCS = Path(__file__).resolve().parent.parent / "docs"


class Misspelled:
    """A plugin whose event hook misspells its argument."""

    @hookimpl
    def jobkit_job_event(self, evnt: JobEvent) -> None: ...


class UnknownHook:
    """A plugin implementing a hook that does not exist."""

    @hookimpl
    def jobkit_job_evnt(self, event: JobEvent) -> None: ...


class TestPluginValidation:
    def test_a_misspelled_argument_in_code_is_a_config_error(self, tmp_path: Path) -> None:
        """JobKit(plugins=(obj,)) with a misspelled hook argument: a ConfigError naming the
        plugin, the hook, the argument and what the hook takes."""
        with pytest.raises(ConfigError) as raised:
            JobKit(make_config(tmp_path), load_entrypoints=False, plugins=(Misspelled(),))
        message = str(raised.value)
        assert "test_plugin_config.Misspelled" in message
        assert "hook jobkit_job_event" in message and "evnt" in message
        assert "takes: event" in message
        assert "\n" not in message

    def test_an_unknown_hook_names_the_plugin_and_a_close_hook(self, tmp_path: Path) -> None:
        """A hook name no spec has: the plugin, the name, and the hook it was surely meant to be."""
        with pytest.raises(ConfigError) as raised:
            JobKit(make_config(tmp_path), load_entrypoints=False, plugins=(UnknownHook(),))
        message = str(raised.value)
        assert "test_plugin_config.UnknownHook" in message
        assert "jobkit_job_evnt" in message and "did you mean 'jobkit_job_event'" in message
        assert " at 0x" not in message

    def test_a_misspelled_argument_through_an_entry_point_says_the_same(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The same plugin installed through the entry point group 'jobkit': a ConfigError
        naming the entry point, the hook and the argument."""
        site = tmp_path / "site"
        install_plugin(site)
        module = site / "broken_plugin.py"
        module.write_text(module.read_text().replace("def jobkit_job_event(event)",
                                                     "def jobkit_job_event(evnt)"))
        monkeypatch.syspath_prepend(str(site))
        monkeypatch.delitem(sys.modules, "broken_plugin", raising=False)
        with pytest.raises(ConfigError) as raised:
            JobKit(make_config(tmp_path))
        message = str(raised.value)
        assert "entry point group 'jobkit'" in message
        assert "plugin 'broken' (module broken_plugin)" in message
        assert "hook jobkit_job_event" in message and "evnt" in message
        assert "takes: event" in message


def write_yaml(tmp_path: Path, text: str) -> Path:
    """tmp_path/jobs.yaml holding ``text`` (dedented)."""
    path = tmp_path / "jobs.yaml"
    path.write_text(textwrap.dedent(text))
    return path


class TestAllNotificationProblems:
    def test_a_bad_event_does_not_hide_the_notifiers_problems(self, tmp_path: Path) -> None:
        """A bad events value, a bad job setting, an unknown notifier and a bad option: all four
        in one ConfigError, in the order of the file."""
        data = config_data(tmp_path)
        base = yaml.safe_dump({key: data[key] for key in ("storage", "jobs")})
        path = write_yaml(tmp_path, base + textwrap.dedent("""\
            defaults:
              retry_attempts: five
            notifications:
              - plugin: webhook
                url: 5
                events: [failed, finished]
              - plugin: webhok
                url: http://127.0.0.1:9/hook
        """))
        with pytest.raises(ConfigError) as raised:
            JobKit.from_config(path)
        errors = raised.value.errors
        lines = path.read_text().splitlines()

        def line_of(text: str) -> int:
            return next(n for n, line in enumerate(lines, 1) if text in line)

        assert errors == [
            f"{path}:{line_of('retry_attempts')}: defaults.retry_attempts: expected an integer "
            ">= 0 and <= 5000, got 'five'",
            f"{path}:{line_of('plugin: webhook')}: notifications[0].url: expected str, got int 5",
            f"{path}:{line_of('events:')}: notifications[0].events[1]: expected one of enqueued, "
            "started, succeeded, retrying, failed, cancelled, got 'finished'",
            f"{path}:{line_of('webhok')}: notifications[1].plugin: no notifier 'webhok' "
            "(known: email, webhook)",
        ]

    def test_without_other_problems_the_notifiers_are_still_checked(self, tmp_path: Path) -> None:
        """A file whose only problems are the notifiers' options: each is named."""
        path = write_yaml(tmp_path, """\
            storage: memory://
            notifications:
              - {plugin: webhook, url: 5}
              - {plugin: webhook}
        """)
        with pytest.raises(ConfigError) as raised:
            JobKit.from_config(path)
        assert raised.value.errors == [
            f"{path}:3: notifications[0].url: expected str, got int 5",
            f"{path}:4: notifications[1].url: required key missing",
        ]


class TestNotifiersPage:
    def test_the_sample_error_text_is_the_real_one(self, tmp_path: Path) -> None:
        """docs/notifiers.md's sample entries give exactly the error lines it shows."""
        page = (DOCS / "notifiers.md").read_text()
        section = page.split("## Entries", 1)[1].split("\n## ", 1)[0]
        sample, shown = re.findall(r"```(?:yaml)?\n(.*?)```", section, re.S)[-2:]
        path = tmp_path / "jobs.yaml"
        path.write_text("storage: memory://\n" + sample)
        with pytest.raises(ConfigError) as raised:
            JobKit.from_config(path)
        # the page's sample has no storage line: its lines are one less than the file's
        real = [re.sub(rf"^{re.escape(str(path))}:(\d+):",
                       lambda m: f"jobs.yaml:{int(m.group(1)) - 1}:", error)
                for error in raised.value.errors]
        assert shown.strip().splitlines() == real
