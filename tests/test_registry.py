"""The registry: approved methods, discovery sources and name clashes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import jobkit_process, make_config, write_config
from sample_jobs import Other, Recorder

from jobkit import ConfigError, Job, JobKit, JobNotFound, MethodNotAllowed
from jobkit.registry import Registry


class Undeclared(Job):
    methods = ("missing",)


class Private(Job):
    methods = ("_secret",)

    def _secret(self) -> None: ...


class TestApprovedMethods:
    def test_declared_methods_are_approved(self) -> None:
        """A class's declared methods are its approved methods."""
        registry = Registry()
        spec = registry.register("Recorder", Recorder)
        assert "record" in spec.methods
        assert registry.method("Recorder", "record") is spec

    def test_undeclared_public_method_is_refused(self) -> None:
        """A public method that is not declared can never run."""
        registry = Registry()
        registry.register("Recorder", Recorder)
        with pytest.raises(MethodNotAllowed, match="'helper' is not approved"):
            registry.method("Recorder", "helper")

    @pytest.mark.parametrize("method", ["_private", "__init__", "__class__", "bind", "progress"])
    def test_private_dunder_and_base_methods_are_refused(self, method: str) -> None:
        """Private, dunder and Job's own methods are refused."""
        registry = Registry()
        registry.register("Recorder", Recorder)
        with pytest.raises(MethodNotAllowed):
            registry.method("Recorder", method)

    def test_declaring_a_missing_method_is_an_error(self) -> None:
        """Declaring a method the class does not define names the class and method."""
        with pytest.raises(ConfigError, match=r"'missing' is not defined"):
            Registry().register("U", Undeclared)

    def test_declaring_a_private_method_is_an_error(self) -> None:
        """A private method cannot be declared approved."""
        with pytest.raises(ConfigError, match=r"private method '_secret'"):
            Registry().register("P", Private)

    def test_non_job_class_is_refused(self) -> None:
        """Only Job subclasses can be registered."""
        with pytest.raises(ConfigError, match=r"not a subclass of jobkit\.Job"):
            Registry().register("X", dict)  # type: ignore[arg-type]

    def test_unknown_name(self) -> None:
        """An unknown name raises JobNotFound listing the registered ones."""
        registry = Registry()
        registry.register("Recorder", Recorder)
        with pytest.raises(JobNotFound, match=r"'Nope'.*registered: Recorder"):
            registry.get("Nope")


class TestSources:
    def test_two_sources_claiming_a_name_name_both(self, tmp_path: Path) -> None:
        """A jobs.yaml class: and a register() call for one name is an error naming both."""
        app = JobKit(make_config(tmp_path), load_entrypoints=False)
        with pytest.raises(ConfigError) as info:
            app.register("Recorder", Other)
        message = str(info.value)
        assert "sample_jobs:Recorder" in message and "sample_jobs:Other" in message
        assert "JobKit.register()" in message

    def test_yaml_narrows_methods(self, tmp_path: Path) -> None:
        """methods: in jobs.yaml narrows the approved list."""
        config = make_config(
            tmp_path, jobs={"Recorder": {"class": "sample_jobs:Recorder", "methods": ["record"]}}
        )
        app = JobKit(config, load_entrypoints=False)
        assert app.registry.get("Recorder").methods == ("record",)
        with pytest.raises(MethodNotAllowed):
            app.run_background_job("Recorder", "sleep", {"seconds": 0})

    def test_yaml_cannot_widen_methods(self, tmp_path: Path) -> None:
        """methods: naming an undeclared method is an error naming the job and method."""
        config = make_config(
            tmp_path,
            jobs={"Recorder": {"class": "sample_jobs:Recorder", "methods": ["record", "helper"]}},
        )
        with pytest.raises(ConfigError, match="'helper' not approved"):
            JobKit(config, load_entrypoints=False)

    def test_yaml_narrowing_applies_to_jobs_registered_later(self, tmp_path: Path) -> None:
        """A jobs: entry without class: narrows a job registered in code afterwards."""
        config = make_config(tmp_path, jobs={"Other": {"methods": []}})
        app = JobKit(config, load_entrypoints=False)
        spec = app.register("Other", Other)
        assert spec.methods == ()

    def test_bad_class_path_names_file_and_key(self, tmp_path: Path) -> None:
        """A class: that cannot be imported is an error naming the key."""
        config = make_config(tmp_path, jobs={"Bad": {"class": "no_such_module:Job"}})
        with pytest.raises(ConfigError, match=r"jobs\.Bad\.class: cannot import module"):
            JobKit(config, load_entrypoints=False)

    def test_unknown_job_entry_is_reported_by_check(self, tmp_path: Path) -> None:
        """A jobs: entry for a name nobody registers is reported by check()."""
        config = make_config(
            tmp_path,
            jobs={"Recorder": {"class": "sample_jobs:Recorder"}, "Emial": {"retry_attempts": 2}},
        )
        app = JobKit(config, load_entrypoints=False)
        assert any("Emial" in problem for problem in app.check())


class AsyncJob(Job):
    methods = ("handle", "fetch")

    def handle(self) -> None: ...

    async def fetch(self, url: str) -> str:
        return url


class AsyncGeneratorJob(Job):
    methods = ("stream",)

    async def stream(self) -> AsyncIterator[int]:
        yield 1


class AsyncStaticJob(Job):
    methods = ("ping",)

    @staticmethod
    async def ping() -> None: ...


#: A module that ships an async job, written to a folder put on the import path.
ASYNC_MODULE = '''\
from jobkit import Job


class Crawl(Job):
    methods = ("crawl",)

    async def crawl(self, url: str) -> str:
        return url
'''


def async_module(folder: Path) -> Path:
    """``async_jobs.py`` (the class ``Crawl``) in ``folder``, and a distribution there whose
    entry point ``Crawl`` names it."""
    (folder / "async_jobs.py").write_text(ASYNC_MODULE)
    dist = folder / "async_jobs-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: async-jobs\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[jobkit.jobs.async]\nCrawl = async_jobs:Crawl\n")
    return folder


class TestAsyncMethods:
    @pytest.mark.parametrize("cls", [AsyncJob, AsyncStaticJob])
    def test_async_def_methods_are_accepted(self, cls: type[Job]) -> None:
        """An async def method (static or not) registers: the worker runs it on its loop."""
        registry = Registry()
        registry.register("Async", cls)
        assert "Async" in registry

    def test_an_async_generator_is_refused_at_registration(self) -> None:
        """An async generator method is refused, naming the class and the method."""
        with pytest.raises(ConfigError) as info:
            Registry().register("Async", AsyncGeneratorJob)
        message = str(info.value)
        assert "test_registry:AsyncGeneratorJob" in message
        assert "approved method 'stream' is an async generator" in message

    def test_accepted_from_an_entry_point(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A package's entry point naming a job with an async method registers."""
        monkeypatch.syspath_prepend(str(async_module(tmp_path)))
        registry = Registry()
        registry.load_entry_points("jobkit.jobs.async")
        assert "Crawl" in registry

    def test_accepted_from_jobs_yaml_and_by_check(self, tmp_path: Path) -> None:
        """A jobs.yaml class: with an async method passes `jobkit check` (exit 0)."""
        async_module(tmp_path)
        config = write_config(tmp_path, jobs={"Crawl": {"class": "async_jobs:Crawl"}})
        done = jobkit_process(tmp_path, "--config", str(config), "check")
        assert done.returncode == 0, done.stdout + done.stderr
