"""The SQL stores' completions built from their claims, one suite for SQLite and PostgreSQL.

A backend's test module subclasses :class:`CompletedRecords`, naming its store's class, the
fixture giving an empty store's location, and the module whose ``job_of_row`` decodes a whole
row there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import attrs
import pytest

from jobkit.records import JobRecord
from jobkit.storage.capabilities import complete_and_claim_many
from jobkit.storage.sql import SQLStorage
from jobkit.testing.conformance import lease_of, new_job


class CompletedRecords:
    """A batch's completion builds its record from the claim's, only when the row allows.

    The record equals what a read gives, with params of its own.
    """

    #: The module whose ``job_of_row`` the store calls to decode a whole row after a claim.
    decoder: ModuleType
    #: The backend's store, and the fixture that gives where it keeps an empty store.
    storage_class: Callable[[Any], SQLStorage]
    location: str

    @pytest.fixture
    def store(self, request: pytest.FixtureRequest) -> Iterator[SQLStorage]:
        """An empty store of the backend."""
        with self.storage_class(request.getfixturevalue(self.location)) as store:
            yield store

    @pytest.fixture
    def decoded(self, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        """The ids of the rows the store decodes whole after a claim."""
        seen: list[str] = []
        decode = self.decoder.job_of_row

        def counting(row: Any) -> JobRecord:
            seen.append(str(row["id"]))
            return decode(row)  # type: ignore[no-any-return]

        monkeypatch.setattr(self.decoder, "job_of_row", counting)
        return seen

    def test_a_completion_reads_back_no_row(self, store: SQLStorage, decoded: list[str]) -> None:
        """Completions of a batch are built from its claims.

        Equal to a read, params their own (the job changed the claim's), nothing decoded again.
        """
        for n in range(3):
            store.enqueue(new_job(store.now(), params={"n": n, "items": [n]}))
        _, claimed = complete_and_claim_many(store, [], "w1", 30.0, 3)
        for record in claimed:
            record.params["items"].append("changed by the job")
        done, _ = complete_and_claim_many(
            store, [(lease_of(record), {"r": record.id}) for record in claimed], "w1", 30.0, 0)
        assert decoded == []
        for record, claim in zip(done, claimed, strict=True):
            assert record is not None and record == store.get(record.id)
            assert record.params["items"] == [claim.params["n"]]

    def test_a_row_changed_since_its_claim_is_read(self, store: SQLStorage, decoded: list[str]
                                                  ) -> None:
        """A job that reported progress: its completion's record is the row, read again."""
        store.enqueue(new_job(store.now()))
        _, [record] = complete_and_claim_many(store, [], "w1", 30.0, 1)
        store.set_progress(lease_of(record), 0.5, "half")
        [done], _ = complete_and_claim_many(store, [(lease_of(record), 1)], "w1", 30.0, 0)
        assert decoded == [record.id]
        assert done is not None and done == store.get(record.id)
        assert (done.progress, done.result) == (0.5, 1)

    def test_a_completion_keeps_the_queue_and_unique_key(self, store: SQLStorage,
                                                         decoded: list[str]) -> None:
        """A job of a named queue, with a unique key: its completion's record still has both.

        Built from the claim, it read ``default`` and no key (issue 18's columns were left
        out of the record a completion builds).
        """
        job = attrs.evolve(new_job(store.now()), queue="emails", unique_key="Email:ana")
        store.enqueue(job)
        _, [record] = complete_and_claim_many(store, [], "w1", 30.0, 1)
        [done], _ = complete_and_claim_many(store, [(lease_of(record), None)], "w1", 30.0, 0)
        assert decoded == []
        assert done is not None and done == store.get(record.id)
        assert (done.queue, done.unique_key) == ("emails", "Email:ana")

    def test_a_lost_lease_completes_nothing(self, store: SQLStorage) -> None:
        """A completion whose lease is gone (the job was cancelled meanwhile) records nothing."""
        store.enqueue(new_job(store.now()))
        _, [record] = complete_and_claim_many(store, [], "w1", 30.0, 1)
        store.cancel(record.id)
        [done], _ = complete_and_claim_many(store, [(lease_of(record), 1)], "w1", 30.0, 0)
        assert done is None
        after = store.get(record.id)
        assert after is not None and (after.status.value, after.result) == ("cancelled", None)
