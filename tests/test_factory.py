"""Validation at enqueue time: nothing bad is ever stored."""

from __future__ import annotations

import math
from typing import Any

import pytest
from sample_jobs import Address

from jobkit import InvalidParameters, JobKit, JobNotFound, MethodNotAllowed, run_background_job
from jobkit.worker import run_until_empty


def stored(app: JobKit) -> int:
    return app.storage.count()


class TestRejections:
    @pytest.mark.parametrize(
        ("params", "bad"),
        [
            ({"ratio": 1.0, "name": "x", "tags": []}, {"count": "missing"}),
            (
                {"count": 1, "ratio": 1.0, "name": "x", "tags": [], "colour": "red"},
                {"colour": "unexpected"},
            ),
            ({"count": "5", "ratio": 1.0, "name": "x", "tags": []}, {"count": "expected int"}),
            ({"count": True, "ratio": 1.0, "name": "x", "tags": []}, {"count": "boolean"}),
            ({"count": 1, "ratio": "x", "name": "x", "tags": []}, {"ratio": "expected float"}),
            ({"count": 1, "ratio": 1.0, "name": 3, "tags": []}, {"name": "expected str"}),
            ({"count": 1, "ratio": 1.0, "name": "x", "tags": [1]}, {"tags": "expected str"}),
            ({"count": 1, "ratio": math.nan, "name": "x", "tags": []}, {"ratio": "nan"}),
            (
                {"count": 1, "ratio": 1.0, "name": "x", "tags": [], "extra": {"a": b"x"}},
                {"extra": "bytes"},
            ),
            ({"count": 1, "ratio": 1.0, "name": "x", "tags": {"a"}}, {"tags": "set"}),
            ({"count": 1, "ratio": 1.0, "name": object(), "tags": []}, {"name": "object"}),
        ],
    )
    def test_bad_params_name_each_parameter(
        self, app: JobKit, params: dict[str, Any], bad: dict[str, str]
    ) -> None:
        """Missing, extra, mistyped and non-JSON params are each named; nothing is stored."""
        with pytest.raises(InvalidParameters) as info:
            app.run_background_job("Recorder", "typed", params)
        assert set(info.value.problems) == set(bad)
        for param, fragment in bad.items():
            assert fragment.lower() in info.value.problems[param].lower()
            assert param in str(info.value)
        assert stored(app) == 0

    def test_several_bad_params_reported_together(self, app: JobKit) -> None:
        """Every bad parameter is reported at once."""
        with pytest.raises(InvalidParameters) as info:
            app.run_background_job("Recorder", "typed", {"count": "1", "bogus": 1})
        assert set(info.value.problems) == {"count", "ratio", "name", "tags", "bogus"}

    def test_unknown_job_and_method(self, app: JobKit) -> None:
        """Unknown names and unapproved methods are refused before anything is stored."""
        with pytest.raises(JobNotFound):
            app.run_background_job("Nope", "record", {})
        with pytest.raises(MethodNotAllowed):
            app.run_background_job("Recorder", "_private", {})
        with pytest.raises(MethodNotAllowed):
            app.run_background_job("Recorder", "helper", {})
        assert stored(app) == 0

    def test_params_must_be_dict_or_list(self, app: JobKit) -> None:
        """A string as params is refused."""
        with pytest.raises(InvalidParameters, match="must be a dict or a list"):
            app.run_background_job("Recorder", "record", "oops")  # type: ignore[arg-type]

    def test_too_many_positional(self, app: JobKit) -> None:
        """More positional values than parameters is refused."""
        with pytest.raises(InvalidParameters, match="3 positional values"):
            app.run_background_job("Recorder", "record", ["a", "b", "c"])

    def test_attrs_param_with_unknown_key(self, app: JobKit) -> None:
        """An attrs-typed parameter refuses unknown keys and wrong types."""
        with pytest.raises(InvalidParameters) as info:
            app.run_background_job(
                "Recorder", "address_of", {"address": {"street": "Main", "number": "1", "zip": 1}}
            )
        assert "address" in info.value.problems

    def test_str_subclass_method_cannot_sneak_past(self, app: JobKit) -> None:
        """A str subclass that compares equal to anything is not an approved method name."""

        class Sneaky(str):
            def __eq__(self, other: object) -> bool:
                return True

            __hash__ = str.__hash__

        with pytest.raises(MethodNotAllowed):
            app.run_background_job("Recorder", Sneaky("_private"), {})
        assert stored(app) == 0

    def test_circular_params_are_refused(self, app: JobKit) -> None:
        """A circular value is reported as a bad parameter, not a crash."""
        loop: list[Any] = []
        loop.append(loop)
        with pytest.raises(InvalidParameters, match="nests deeper"):
            app.run_background_job(
                "Recorder", "typed", {"count": 1, "ratio": 1, "name": "n", "tags": loop}
            )

    @pytest.mark.parametrize(
        "options",
        [
            {"delay": math.nan},
            {"delay": math.inf},
            {"delay": 1e12},
            {"priority": 2**70},
            {"retry_attempts": 2**70},
        ],
    )
    def test_out_of_range_options_are_jobkit_errors(
        self, app: JobKit, options: dict[str, Any]
    ) -> None:
        """NaN, infinite and huge delays, priorities and retry counts raise JobkitError."""
        from jobkit import JobkitError

        with pytest.raises(JobkitError):
            app.run_background_job("Recorder", "record", ["l", "t"], **options)
        assert stored(app) == 0

    def test_negative_delay(self, app: JobKit) -> None:
        """A negative delay is refused."""
        from jobkit import JobkitError

        with pytest.raises(JobkitError, match="delay"):
            app.run_background_job("Recorder", "record", ["l", "t"], delay=-1)
        assert stored(app) == 0


class TestAccepted:
    def test_positional_params_are_stored_by_name(self, app: JobKit, ledger: str) -> None:
        """A list of params maps to parameter names."""
        job_id = app.run_background_job("Recorder", "record", [ledger, "t"])
        assert app.get_job(job_id).params == {"ledger": ledger, "tag": "t"}

    def test_attrs_param_is_structured_when_run(self, app: JobKit) -> None:
        """A parameter annotated with an attrs class arrives as an instance."""
        job_id = app.run_background_job(
            "Recorder", "address_of", {"address": {"street": "Main", "number": 5}}
        )
        run_until_empty(app)
        assert app.get_job(job_id).result == "5 Main"
        assert Address("Main", 5)  # the class the job receives

    def test_int_is_accepted_for_float(self, app: JobKit) -> None:
        """An int fits a float parameter (JSON has one number type)."""
        app.run_background_job(
            "Recorder", "typed", {"count": 1, "ratio": 2, "name": "n", "tags": ["a"]}
        )
        assert stored(app) == 1


class TestDefaultApp:
    def test_default_app_uses_jobs_yaml_in_cwd(self, tmp_path: Any, monkeypatch: Any) -> None:
        """The module-level functions build the default app from ./jobs.yaml."""
        (tmp_path / "jobs.yaml").write_text(
            "storage: sqlite:///default.db\njobs:\n  Recorder:\n    class: sample_jobs:Recorder\n"
        )
        monkeypatch.chdir(tmp_path)
        job_id = run_background_job("Recorder", "record", {"ledger": "l", "tag": "t"}, priority=3)
        import jobkit

        assert jobkit.get_job(job_id).priority == 3
        assert (tmp_path / "default.db").exists()
        assert [r.id for r in jobkit.list_jobs(status="pending")] == [job_id]
        assert jobkit.get_attempts(job_id) == []
        assert jobkit.cancel_job(job_id) is True
        assert jobkit.retry_job(job_id) is True
