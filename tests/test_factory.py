"""Validation at enqueue time: nothing bad is ever stored."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs
import pytest
from sample_jobs import Address

from jobkit import (
    InvalidParameters,
    Job,
    JobKit,
    JobNotFound,
    JobStatus,
    MethodNotAllowed,
    run_background_job,
)
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


@attrs.frozen
class Point:
    """A nested attrs class."""

    x: int
    y: int


@attrs.frozen
class Outline:
    """An attrs class holding containers of attrs classes."""

    name: str
    points: list[Point]
    tags: frozenset[str] = frozenset()


class Shapes(Job):
    """One method per container type; each returns what it received, as JSON."""

    methods = (
        "strings", "pair", "numbers", "unique", "kinds", "seq", "headers", "counts", "outline",
        "maybe", "bare",
    )

    def strings(self, formats: list[str]) -> list[str]:
        assert isinstance(formats, list)
        return formats

    def pair(self, pair: tuple[str, int]) -> list[Any]:
        assert isinstance(pair, tuple)
        return list(pair)

    def numbers(self, numbers: tuple[int, ...]) -> list[int]:
        assert isinstance(numbers, tuple)
        return list(numbers)

    def unique(self, tags: set[str]) -> list[str]:
        assert isinstance(tags, set)
        return sorted(tags)

    def kinds(self, kinds: frozenset[Literal["pdf", "png"]]) -> list[str]:
        assert isinstance(kinds, frozenset)
        return sorted(kinds)

    def seq(self, names: Sequence[str]) -> list[str]:
        return list(names)

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        return dict(headers)

    def counts(self, counts: dict[str, int]) -> dict[str, int]:
        return counts

    def outline(self, outline: Outline) -> list[int]:
        assert isinstance(outline, Outline) and isinstance(outline.points[0], Point)
        return [outline.points[0].x, len(outline.tags)]

    def maybe(self, formats: list[str] | None = None,
              counts: dict[str, int] | None = None) -> list[Any]:
        return [formats, counts]

    def bare(self, items: list, table: dict) -> list[Any]:  # type: ignore[type-arg] - bare on purpose
        return [items, table]


#: (method, params, the parameter at fault, words its problem must contain).
WRONG_SHAPES = [
    ("strings", {"formats": "pdf"}, "formats", "expected list[str] (a JSON array), got str"),
    ("strings", {"formats": {"pdf": 1}}, "formats", "a JSON array), got dict"),
    ("pair", {"pair": "ab"}, "pair", "expected tuple[str, int] (a JSON array), got str"),
    ("pair", {"pair": {"a": 1}}, "pair", "a JSON array), got dict"),
    ("numbers", {"numbers": "12"}, "numbers", "expected tuple[int, ...] (a JSON array)"),
    ("unique", {"tags": "ab"}, "tags", "expected set[str] (a JSON array), got str"),
    ("unique", {"tags": {"a": 1}}, "tags", "a JSON array), got dict"),
    ("kinds", {"kinds": "pdf"}, "kinds", "(a JSON array), got str"),
    ("kinds", {"kinds": ["pdf", "doc"]}, "kinds", "'doc'"),
    ("seq", {"names": "ana"}, "names", "Sequence[str] (a JSON array), got str"),
    ("seq", {"names": {"ana": 1}}, "names", "(a JSON array), got dict"),
    ("headers", {"headers": [["a", "b"]]}, "headers",
     "expected Mapping[str, str] (a JSON object), got list"),
    ("headers", {"headers": "a=b"}, "headers", "(a JSON object), got str"),
    ("counts", {"counts": [["a", 1]]}, "counts", "dict[str, int] (a JSON object), got list"),
    ("counts", {"counts": {"a": "1"}}, "counts", "expected int, got str"),
    ("outline", {"outline": "square"}, "outline", "expected Outline (a JSON object), got str"),
    ("outline", {"outline": {"name": "s", "points": {"x": 1, "y": 2}}}, "outline",
     "(a JSON array), got dict"),
    ("outline", {"outline": {"name": "s", "points": [[1, 2]]}}, "outline",
     "expected Point (a JSON object), got list"),
    ("outline", {"outline": {"name": "s", "points": [], "tags": "ab"}}, "outline",
     "(a JSON array), got str"),
    ("maybe", {"formats": "pdf"}, "formats", "(a JSON array), got str"),
    ("maybe", {"counts": [["a", 1]]}, "counts", "(a JSON object), got list"),
    ("bare", {"items": "ab", "table": {}}, "items", "expected list (a JSON array), got str"),
    ("bare", {"items": [], "table": [["a", 1]]}, "table", "expected dict (a JSON object)"),
]

#: (method, params, the job's result): JSON arrays and objects where the types want them.
RIGHT_SHAPES = [
    ("strings", {"formats": ["pdf", "png"]}, ["pdf", "png"]),
    ("pair", {"pair": ["a", 1]}, ["a", 1]),
    ("numbers", {"numbers": [1, 2, 3]}, [1, 2, 3]),
    ("unique", {"tags": ["b", "a", "b"]}, ["a", "b"]),
    ("kinds", {"kinds": ["png", "pdf"]}, ["pdf", "png"]),
    ("seq", {"names": ["ana"]}, ["ana"]),
    ("headers", {"headers": {"a": "b"}}, {"a": "b"}),
    ("counts", {"counts": {"a": 1}}, {"a": 1}),
    ("outline", {"outline": {"name": "s", "points": [{"x": 4, "y": 2}], "tags": ["t"]}}, [4, 1]),
    ("maybe", {"formats": None, "counts": {"a": 1}}, [None, {"a": 1}]),
    ("maybe", {"formats": ["pdf"]}, [["pdf"], None]),
    ("bare", {"items": ["a", 1], "table": {"k": [1]}}, [["a", 1], {"k": [1]}]),
]


class TestContainerShapes:
    @pytest.fixture
    def shapes(self, app: JobKit) -> JobKit:
        app.register("Shapes", Shapes)
        return app

    @pytest.mark.parametrize(("method", "params", "param", "words"), WRONG_SHAPES)
    def test_wrong_shape_is_refused_at_enqueue(
        self, shapes: JobKit, method: str, params: dict[str, Any], param: str, words: str
    ) -> None:
        """A string or an object where an array is wanted (or the reverse) is refused, naming
        the parameter and what was expected; nothing is stored."""
        with pytest.raises(InvalidParameters) as info:
            shapes.run_background_job("Shapes", method, params)
        assert set(info.value.problems) == {param}
        assert words in info.value.problems[param], info.value.problems[param]
        assert stored(shapes) == 0

    @pytest.mark.parametrize(("method", "params", "param", "words"), WRONG_SHAPES)
    def test_wrong_shape_in_a_stored_row_is_refused_by_the_worker(
        self, shapes: JobKit, method: str, params: dict[str, Any], param: str, words: str
    ) -> None:
        """A row whose params were altered in the store to a wrong shape fails, unrun."""
        right = next(p for m, p, _ in RIGHT_SHAPES if m == method)
        job_id = shapes.run_background_job("Shapes", method, right)
        path = shapes.config.storage.removeprefix("sqlite:///")
        with sqlite3.connect(path) as db:
            db.execute("UPDATE jobkit_jobs SET params = ? WHERE id = ?",
                       (json.dumps(params), int(job_id)))
        run_until_empty(shapes)
        record = shapes.get_job(job_id)
        assert record.status == JobStatus.FAILED and record.result is None
        assert "InvalidParameters" in (record.error or "") and param in (record.error or "")
        assert words in (record.error or "")

    @pytest.mark.parametrize(("method", "params", "result"), RIGHT_SHAPES)
    def test_right_shape_is_structured_for_the_job(
        self, shapes: JobKit, method: str, params: dict[str, Any], result: Any
    ) -> None:
        """Arrays and objects arrive as the annotated containers and classes."""
        job_id = shapes.run_background_job("Shapes", method, params)
        run_until_empty(shapes)
        record = shapes.get_job(job_id)
        assert (record.status, record.result) == (JobStatus.COMPLETED, result), record.error

    def test_a_tuple_from_python_is_an_array(self, shapes: JobKit) -> None:
        """A Python caller's tuple is a JSON array, fine for a list parameter."""
        job_id = shapes.run_background_job("Shapes", "strings", {"formats": ("pdf",)})
        assert shapes.get_job(job_id).params == {"formats": ["pdf"]}

    @pytest.mark.parametrize(("value", "words"), [
        ([], "expected tuple[str, int] of 2 items, got 0"),
        (["a", 1, 2], "expected tuple[str, int] of 2 items, got 3"),
    ])
    def test_fixed_tuple_needs_its_length(
        self, shapes: JobKit, value: list[Any], words: str
    ) -> None:
        """A fixed-length tuple refuses an array of another length."""
        with pytest.raises(InvalidParameters) as info:
            shapes.run_background_job("Shapes", "pair", {"pair": value})
        assert words in info.value.problems["pair"]

    @pytest.mark.parametrize("value", [True, 1.0])
    def test_literal_is_matched_by_type_too(self, app: JobKit, value: Any) -> None:
        """``Literal[1]`` refuses ``true`` and ``1.0`` (equal in Python, not the same JSON)."""
        app.register("Levels", Levels)
        with pytest.raises(InvalidParameters, match="level"):
            app.run_background_job("Levels", "set_level", {"level": value})
        app.run_background_job("Levels", "set_level", {"level": 1})

    def test_dashboard_edit_goes_through_the_same_checks(self, shapes: JobKit) -> None:
        """Retry-with-edited-params turns the typed text into params the factory checks: plain
        text for a list is refused, an array is taken."""
        from jobkit.dashboard.edit import edited_params

        job_id = shapes.run_background_job("Shapes", "strings", {"formats": ["pdf"]})
        shapes.cancel_job(job_id)
        record = shapes.get_job(job_id)
        with pytest.raises(InvalidParameters, match="formats: expected list"):
            shapes.run_background_job(
                "Shapes", "strings", edited_params(record, {"param.formats": "pdf"}))
        shapes.run_background_job(
            "Shapes", "strings", edited_params(record, {"param.formats": '["pdf"]'}))


class Levels(Job):
    """A literal parameter."""

    methods = ("set_level",)

    def set_level(self, level: Literal[1, 2]) -> int:
        return level


class Keywords(Job):
    """A method that takes any keyword."""

    methods = ("take", "fixed")

    def take(self, **extra: Any) -> list[str]:
        return sorted(extra)

    def fixed(self, name: str = "") -> str:
        return name


#: Parameter names no store keeps alike, and how an error names them (escaped).
BAD_NAMES = [
    ("\ud800", "'\\ud800'", "lone surrogate"),
    ("ok\udcff", "'ok\\udcff'", "lone surrogate"),
    ("a\x00b", "'a\\x00b'", "NUL"),
]


class TestKeywordNames:
    @pytest.fixture
    def keywords(self, app: JobKit) -> JobKit:
        app.register("Keywords", Keywords)
        return app

    @pytest.mark.parametrize("method", ["take", "fixed"])
    @pytest.mark.parametrize(("key", "shown", "words"), BAD_NAMES)
    def test_bad_top_level_name_is_refused_escaped(
        self, keywords: JobKit, method: str, key: str, shown: str, words: str
    ) -> None:
        """A lone surrogate or a NUL in a parameter name is InvalidParameters naming the name
        escaped (the message itself is valid UTF-8), for **kwargs and other methods; nothing is
        stored."""
        with pytest.raises(InvalidParameters) as info:
            keywords.run_background_job("Keywords", method, {key: 1, "fine": 2})
        assert set(info.value.problems) == {shown} | ({"fine"} if method == "fixed" else set())
        assert words in info.value.problems[shown]
        str(info.value).encode("utf-8")  # printable, loggable, storable
        assert stored(keywords) == 0

    def test_enqueue_many_names_the_index_and_the_name(self, keywords: JobKit) -> None:
        """In a batch, the bad name is reported with its index; nothing is stored."""
        with pytest.raises(InvalidParameters) as info:
            keywords.enqueue_many("Keywords", "take", [{"a": 1}, {"\ud800": 1}])
        assert set(info.value.problems) == {"params[1] '\\ud800'"}
        assert stored(keywords) == 0

    @pytest.mark.parametrize(("key", "shown", "words"), BAD_NAMES)
    def test_bad_name_in_a_stored_row_fails_the_job(
        self, keywords: JobKit, key: str, shown: str, words: str
    ) -> None:
        """A row altered in the store to hold such a name fails, unrun, its error naming it."""
        job_id = keywords.run_background_job("Keywords", "take", {"a": 1})
        path = keywords.config.storage.removeprefix("sqlite:///")
        with sqlite3.connect(path) as db:
            db.execute("UPDATE jobkit_jobs SET params = ? WHERE id = ?",
                       (json.dumps({key: 1}), int(job_id)))
        run_until_empty(keywords)
        record = keywords.get_job(job_id)
        assert record.status == JobStatus.FAILED and record.result is None
        assert shown in (record.error or "") and words in (record.error or "")


class _TakesInt(Job):
    methods = ("run",)

    def run(self, n: int) -> None:
        """Take an int."""


class _TakesStr(Job):
    methods = ("run",)

    def run(self, n: str) -> None:
        """Take a str."""


class TestValidatorCache:
    def test_a_job_registered_again_is_checked_against_its_new_class(self) -> None:
        """The factory's per-(job, method) check follows the registry, not a stale signature."""
        from jobkit.factory import Factory
        from jobkit.registry import Registry

        registry = Registry()
        registry.register("T", _TakesInt)
        factory = Factory(registry)
        assert factory.validate("T", "run", {"n": 1})[1] == {"n": 1}
        del registry._jobs["T"]  # as if registered anew (tests only)
        registry.register("T", _TakesStr)
        with pytest.raises(InvalidParameters, match="expected str"):
            factory.validate("T", "run", {"n": 1})
        assert factory.validate("T", "run", {"n": "x"})[0].cls is _TakesStr

    def test_a_given_converter_checks_every_scalar(self) -> None:
        """With a converter of the caller's own, even an int for an ``int`` goes through it."""
        from jobkit.factory import Factory, make_converter
        from jobkit.registry import Registry

        def refuse(value: Any, _: Any) -> Any:
            raise TypeError("expected int, and this converter takes none")

        converter = make_converter()
        converter.register_structure_hook(int, refuse)
        registry = Registry()
        registry.register("T", _TakesInt)
        with pytest.raises(InvalidParameters, match="this converter takes none"):
            Factory(registry, converter).validate("T", "run", {"n": 1})
        assert Factory(registry).validate("T", "run", {"n": 1})[1] == {"n": 1}
