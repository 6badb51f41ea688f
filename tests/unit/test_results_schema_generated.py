"""The result types are defined once: the committed results.schema.json is generated from the
dataclasses that write results.json, and what they write follows it."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, ClassVar, Literal, NotRequired, TypedDict

import jsonschema
import pytest

from xai_checks.claims import Status, Verdict, get_claim
from xai_checks.claims.base import VerdictRow
from xai_checks.dataclass_schema import (
    JSONRecord,
    about,
    dataclass_json,
    dataclass_schema,
    keywords,
)
from xai_checks.report import results_schema
from xai_checks.result_records import WeightsRecord

ROOT = Path(__file__).parents[2]
SCHEMA_FILE = ROOT / "xai_checks" / "report" / "results.schema.json"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_results_schema", ROOT / "scripts" / "generate_results_schema.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_schema_is_the_generated_one():
    committed = SCHEMA_FILE.read_text("utf-8")
    generated = _generator().render()
    assert json.loads(committed) == json.loads(generated), (
        "results.schema.json differs from the result types: "
        "run python scripts/generate_results_schema.py"
    )
    assert committed == generated, "results.schema.json is not as the generator writes it"


def test_the_hand_kept_parts_are_only_the_untyped_fields(monkeypatch, tmp_path):
    generator = _generator()
    hand_kept = json.loads(generator.HAND_KEPT.read_text("utf-8"))
    # a typed field given a hand-kept fragment as well is an error, not a silent override
    hand_kept["properties"]["photoset"] = {"type": "object"}
    bad = tmp_path / "hand_kept.json"
    bad.write_text(json.dumps(hand_kept), "utf-8")
    monkeypatch.setattr(generator, "HAND_KEPT", bad)
    with pytest.raises(TypeError, match="photoset is typed"):
        generator.generate()
    # an untyped field without its hand-kept fragment is an error too
    del hand_kept["properties"]["photoset"], hand_kept["properties"]["config"]
    bad.write_text(json.dumps(hand_kept), "utf-8")
    with pytest.raises(TypeError, match="config"):
        generator.generate()


def test_every_row_field_is_in_the_schema_and_a_row_validates():
    schema = results_schema()
    row_schema = {"$defs": schema["$defs"], **schema["$defs"]["verdict_row"]}
    verdict = Verdict(get_claim("seed-depth-ratio"), Status.REFUTED, [], 12, p_value=0.5)
    verdict.effect_size = {"name": "residual", "estimate": 0.01, "ci_low": -0.1, "ci_high": 0.2,
                           "confidence": 0.9, "n": 12}  # fmt: skip
    row = verdict.row()
    assert set(row) == set(row_schema["properties"])
    jsonschema.validate(row, row_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**row, "status": "MAYBE"}, row_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**row, "effect_n": -1}, row_schema)


class _Colour(StrEnum):
    RED = "red"


@dataclass
class _Sample:
    """A sample.

    Not this paragraph."""

    name: str
    colour: _Colour
    count: int = field(default=0, metadata={"minimum": 0, "description": "how many"})
    weight: float | None = None
    label: str | None = None
    flag: bool = False


def test_the_generator_maps_each_field_type():
    assert dataclass_schema(_Sample) == {
        "type": "object",
        "description": "A sample.",
        "required": ["name", "colour"],
        "properties": {
            "name": {"type": "string"},
            "colour": {"enum": ["red"]},
            "count": {"type": "integer", "description": "how many", "minimum": 0},
            "weight": {"$ref": "#/$defs/number_or_null"},
            "label": {"type": ["string", "null"]},
            "flag": {"type": "boolean"},
        },
    }


def test_an_unsupported_field_type_is_an_error():
    @dataclass
    class Bad:
        values: set[int]

    with pytest.raises(TypeError, match="no JSON Schema type"):
        dataclass_schema(Bad)

    @dataclass
    class BadKeys:
        values: dict[int, str]

    with pytest.raises(TypeError, match="keys are strings"):
        dataclass_schema(BadKeys)


@dataclass(frozen=True)
class _Leaf(JSONRecord):
    """A referenced leaf."""

    SCHEMA_DEF: ClassVar[str] = "leaf"

    value: float


class _Extra(TypedDict, total=False):
    note: str
    size: Annotated[int | None, keywords(minimum=0)]


class _Line(TypedDict):
    text: str
    tags: NotRequired[list[str]]


@dataclass(frozen=True, kw_only=True)
class _Nested(JSONRecord):
    kind: Literal["a", "b"]
    version: Literal[1]
    leaf: _Leaf
    leaves: dict[str, _Leaf] = field(default_factory=dict)
    maybe_leaf: _Leaf | None = None
    numbers: list[float | None]
    counts: tuple[Annotated[int, keywords(minimum=0)], ...] = ()
    inline: _Extra | None = None
    line: _Line | None = field(default=None, metadata=about(omit_none=True))
    anything: Any = field(default=None, metadata=about(schema={"type": "string"}))
    klass: str = field(default="x", metadata=about("the class", json="class"))
    more: dict[str, Any] = field(default_factory=dict, metadata=about(spread=True))


def test_the_generator_maps_nested_and_container_types():
    schema = dataclass_schema(_Nested)
    assert "description" not in schema  # no docstring: not the signature dataclasses writes
    assert schema["required"] == ["kind", "version", "leaf", "numbers"]
    assert schema["properties"] == {
        "kind": {"enum": ["a", "b"]},
        "version": {"const": 1},
        "leaf": {"$ref": "#/$defs/leaf"},
        "leaves": {"type": "object", "additionalProperties": {"$ref": "#/$defs/leaf"}},
        "maybe_leaf": {"oneOf": [{"type": "null"}, {"$ref": "#/$defs/leaf"}]},
        "numbers": {"type": "array", "items": {"$ref": "#/$defs/number_or_null"}},
        "counts": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "inline": {
            "type": ["object", "null"],
            "properties": {
                "note": {"type": "string"},
                "size": {"type": ["integer", "null"], "minimum": 0},
            },
        },
        "line": {
            "type": "object",
            "required": ["text"],
            "properties": {
                "text": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
        },
        "anything": {"type": "string"},
        "class": {"type": "string", "description": "the class"},
    }


def test_a_record_is_written_as_its_schema_describes():
    schema = dataclass_schema(_Nested)
    defs = {"number_or_null": {"type": ["number", "null"]}, "leaf": dataclass_schema(_Leaf)}
    record = _Nested(
        kind="a",
        version=1,
        leaf=_Leaf(1.5),
        leaves={"x": _Leaf(2.0)},
        numbers=[1.0, float("inf")],
        counts=(3,),
        inline={"note": "n"},
        anything="free",
        klass="K",
        more={"added": 1, "kind": "not this"},
    )
    written = record.to_dict()
    assert written == {
        "kind": "a",
        "version": 1,
        "leaf": {"value": 1.5},
        "leaves": {"x": {"value": 2.0}},
        "maybe_leaf": None,
        "numbers": [1.0, None],
        "counts": [3],
        "inline": {"note": "n"},
        "anything": "free",
        "class": "K",
        "added": 1,
    }
    assert "line" not in written  # omit_none: absent, never null
    assert written == dataclass_json(record)
    jsonschema.validate(written, {"$defs": defs, **schema})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**written, "counts": [-1]}, {"$defs": defs, **schema})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**written, "line": None}, {"$defs": defs, **schema})
    # a float that is not optional may not be missing: NaN is written null, which the schema
    # refuses (results.json is validated before it is written)
    nan_leaf = _Nested(kind="b", version=1, leaf=_Leaf(float("nan")), numbers=[]).to_dict()
    assert nan_leaf["leaf"] == {"value": None}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(nan_leaf, {"$defs": defs, **schema})


def test_keys_a_weights_mapping_adds_are_written_and_allowed():
    weights = {"source": "user", "arch": "Net", "note": "fine-tuned", "seed": 3}
    written = WeightsRecord.of(weights).to_dict()
    assert written == {"source": "user", "arch": "Net", "path": None, "sha256": None,
                       "seed": 3, "detail": None, "note": "fine-tuned"}  # fmt: skip
    schema = results_schema()
    jsonschema.validate(written, {"$defs": schema["$defs"], **schema["$defs"]["weights"]})
    assert WeightsRecord.of(None).to_dict()["source"] == "unknown"


def test_a_row_is_the_verdict_rows_fields():
    assert list(Verdict(get_claim("seed-depth-ratio"), Status.SUPPORTED, [], 3).row()) == [
        f.name for f in fields(VerdictRow)
    ]
