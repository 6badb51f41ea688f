"""The result types are defined once: the parts of the committed results.schema.json that
describe them are generated from their dataclasses, and the rows they write validate."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import jsonschema
import pytest

from xai_checks.claims import Status, Verdict, get_claim
from xai_checks.claims.base import VerdictRow
from xai_checks.dataclass_schema import dataclass_schema
from xai_checks.report import results_schema

ROOT = Path(__file__).parents[2]


def _generated() -> dict[str, type]:
    spec = importlib.util.spec_from_file_location(
        "generate_results_schema", ROOT / "scripts" / "generate_results_schema.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.GENERATED


@pytest.mark.parametrize("name", sorted(_generated()))
def test_the_committed_schema_is_the_generated_one(name):
    committed = json.loads((ROOT / "xai_checks/report/results.schema.json").read_text("utf-8"))
    assert committed["$defs"][name] == dataclass_schema(_generated()[name]), (
        f"results.schema.json's {name} differs from its dataclass: "
        "run python scripts/generate_results_schema.py"
    )


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
        values: list[int]

    with pytest.raises(TypeError, match="no JSON Schema type"):
        dataclass_schema(Bad)


def test_a_row_is_the_verdict_rows_fields():
    assert list(Verdict(get_claim("seed-depth-ratio"), Status.SUPPORTED, [], 3).row()) == [
        f for f in VerdictRow.__dataclass_fields__
    ]
