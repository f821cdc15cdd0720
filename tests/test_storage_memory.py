"""The in-process store passes the storage conformance suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobkit.exceptions import ConfigError
from jobkit.storage.memory import MemoryStorage
from jobkit.testing import FakeClock, InProcessStorageConformance


class TestMemoryStorage(InProcessStorageConformance):
    """MemoryStorage follows every rule of the Storage core (in one process) and of every
    optional capability, subclassing the suite's class as a third party's backend would."""

    @pytest.fixture
    def storage(self, clock: FakeClock) -> Iterator[MemoryStorage]:
        """A fresh in-process store on the fake clock."""
        store = MemoryStorage(clock=clock)
        yield store
        store.close()


class TestMemoryStorageURL:
    """Opening the memory store by URL."""

    def test_from_url_builds_an_empty_store(self) -> None:
        """memory:// opens a new, empty store each time."""
        store = MemoryStorage.from_url("memory://")
        assert isinstance(store, MemoryStorage) and store.count() == 0
        assert store.url == "memory://"

    def test_from_url_refuses_other_urls(self) -> None:
        """Any other URL is a ConfigError."""
        with pytest.raises(ConfigError):
            MemoryStorage.from_url("memory://somewhere")
