"""Write ``xai_checks/report/results.schema.json`` from the result types
(``tests/unit/test_results_schema_generated.py`` keeps the committed file equal to it).

    python scripts/generate_results_schema.py

The document and each ``$defs`` entry are generated from the dataclasses that also write
``results.json`` (:func:`xai_checks.dataclass_schema.dataclass_schema`). The parts not yet typed
are kept by hand in ``results_schema_hand_kept.json`` beside this script: the generated document
takes them as they are (a property the document types as ``Any``, and the ``$defs`` they use).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xai_checks.claims.base import VerdictRecord, VerdictRow
from xai_checks.dataclass_schema import NUMBER_OR_NULL, dataclass_schema
from xai_checks.report.schema import ResultsDocument
from xai_checks.result_records import PhotoRecord, WeightsRecord

#: ``$defs`` entry -> the dataclass it is generated from (its ``SCHEMA_DEF``)
GENERATED: dict[str, type] = {
    cls.SCHEMA_DEF: cls for cls in (WeightsRecord, PhotoRecord, VerdictRecord, VerdictRow)
}

SCHEMA = Path(__file__).parents[1] / "xai_checks" / "report" / "results.schema.json"
HAND_KEPT = Path(__file__).with_name("results_schema_hand_kept.json")

_HEADER = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://xai-checks.invalid/schemas/results-1.json",
    "title": "xai-checks study results (results.json)",
}


def generate() -> dict[str, Any]:
    """The whole schema document."""
    hand_kept = json.loads(HAND_KEPT.read_text(encoding="utf-8"))
    body = dataclass_schema(ResultsDocument)
    for name, fragment in hand_kept["properties"].items():
        if body["properties"].get(name) != {}:
            raise TypeError(f"ResultsDocument.{name} is typed: drop its hand-kept fragment")
        body["properties"][name] = fragment
    untyped = sorted(k for k, v in body["properties"].items() if v == {})
    if untyped:
        raise TypeError(f"ResultsDocument fields typed Any without a hand-kept schema: {untyped}")
    defs = {
        "number_or_null": {"type": ["number", "null"]},
        **{name: dataclass_schema(cls) for name, cls in GENERATED.items()},
        **hand_kept["$defs"],
    }
    assert NUMBER_OR_NULL == {"$ref": "#/$defs/number_or_null"}
    return {
        **_HEADER,
        "description": body["description"],
        "type": "object",
        "required": body["required"],
        "additionalProperties": False,
        "properties": body["properties"],
        "$defs": defs,
    }


def render() -> str:
    """The schema file's text."""
    return json.dumps(generate(), indent=2) + "\n"


def main() -> None:
    SCHEMA.write_text(render(), encoding="utf-8")


if __name__ == "__main__":
    main()
