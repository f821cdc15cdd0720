"""Bad params get a clear error naming what is wrong, and nothing is stored, on both backends;
awkward but valid text is stored and returned exactly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_config

from jobkit import InvalidParameters, JobKit

Backend = str


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobKit]:
    """An app with the sample jobs on a fresh SQLite file or an emptied PostgreSQL database;
    its max_params_bytes is 10,000 for the Recorder job."""
    overrides: dict[str, Any] = {
        "jobs": {"Recorder": {"class": "sample_jobs:Recorder", "max_params_bytes": 10_000}},
    }
    if request.param == "postgresql":
        overrides["storage"] = request.getfixturevalue("empty_postgres_url")
    application = JobKit(make_config(tmp_path, **overrides), load_entrypoints=False)
    yield application
    application.close()


def refused(app: JobKit, tag: Any) -> str:
    """Enqueue Recorder.record with ``tag``; the error message (the test fails if it is
    accepted); and check that nothing was stored."""
    with pytest.raises(InvalidParameters) as info:
        app.run_background_job("Recorder", "record", {"ledger": "unused", "tag": tag})
    assert app.list_jobs() == []
    return str(info.value)


class TestRefused:
    def test_nul_character(self, app: JobKit) -> None:
        """A NUL in a string is refused (PostgreSQL's text cannot hold it), naming the param."""
        message = refused(app, "a\x00b")
        assert "tag" in message and "NUL" in message

    def test_lone_surrogate(self, app: JobKit) -> None:
        """A lone surrogate (not UTF-8) is refused, naming the param."""
        message = refused(app, "a\ud800b")
        assert "tag" in message and "surrogate" in message

    def test_nul_in_a_nested_key(self, app: JobKit) -> None:
        """Keys of nested dicts are checked too, naming the param."""
        params = {"count": 1, "ratio": 0.5, "name": "n", "tags": [], "extra": {"k\x00": 1}}
        with pytest.raises(InvalidParameters, match=r"extra has a key that .*NUL"):
            app.run_background_job("Recorder", "typed", params)
        assert app.list_jobs() == []

    def test_params_over_the_size_cap(self, app: JobKit) -> None:
        """Params over the job's max_params_bytes are refused with their size and the cap."""
        message = refused(app, "x" * 10_001)
        assert "max_params_bytes" in message and "10000" in message

    def test_params_under_the_cap_are_stored(self, app: JobKit) -> None:
        """Just under the cap is fine."""
        job_id = app.run_background_job("Recorder", "record", {"ledger": "l", "tag": "x" * 9_000})
        assert app.get_job(job_id).params["tag"] == "x" * 9_000


AWKWARD = [
    "Grüße 東京 🚀",
    "עברית \u202eRTL override\u202c mixed",
    "'; DROP TABLE jobkit_jobs; --",
    "%(now)s %s {0} $1 \\ \" '",
    "line\nbreak\u2028sep\u2029\r\t",
    "\ufeffBOM and \u200bzero width",
]


@pytest.mark.parametrize("text", AWKWARD)
def test_awkward_text_round_trips_exactly(app: JobKit, text: str) -> None:
    """Unicode, RTL marks, SQL metacharacters and line separators come back byte-exact."""
    job_id = app.run_background_job("Recorder", "record", {"ledger": "l", "tag": text})
    assert app.get_job(job_id).params["tag"].encode("utf-8") == text.encode("utf-8")
