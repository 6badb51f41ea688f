"""Rewrite the parts of ``xai_checks/report/results.schema.json`` that are generated from the
result dataclasses (``tests/unit/test_results_schema_generated.py`` keeps them equal).

    python scripts/generate_results_schema.py
"""

from __future__ import annotations

import json
from pathlib import Path

from xai_checks.claims.base import VerdictRow
from xai_checks.dataclass_schema import dataclass_schema

#: ``$defs`` entry -> the dataclass it is generated from
GENERATED = {"verdict_row": VerdictRow}

SCHEMA = Path(__file__).parents[1] / "xai_checks" / "report" / "results.schema.json"


def main() -> None:
    doc = json.loads(SCHEMA.read_text(encoding="utf-8"))
    for name, cls in GENERATED.items():
        doc["$defs"][name] = dataclass_schema(cls)
    SCHEMA.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
