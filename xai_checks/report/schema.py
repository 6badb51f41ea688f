"""``results.json``: the machine-readable twin of ``report.html``.

Schema ``"xai-checks/results"``, version 1. One JSON object (UTF-8, no NaN: every NaN or
infinity is written as ``null``)::

    {
      "schema": "xai-checks/results",
      "schema_version": 1,
      "generated": "2025-01-31T12:00:00+00:00",    # when the report was written (UTC)
      "provenance": {
        "versions": {"xai_checks": ..., "python": ..., "torch": ..., "torchvision": ...,
                     "captum": ..., "numpy": ..., "scipy": ...},
        "platform": str | null, "processor": str | null,
        "device": "cpu" | "cuda:0" | ..., "gpu": str | null, "cuda": str | null,
        "threads": int | null,
        "seed": int,                                 # StudyConfig.seed
        "run_time_s": float | null,                  # the study's total wall time
        "timings_s": {"ratio": float, "gridpg": float, ...},
        "command": str | null,                       # extra["command"], when given
        "models": {"<model>": {"source": ..., "arch": ..., "path": ..., "sha256": ...,
                               "seed": ..., "detail": ...}}
      },
      "config": {...},                               # StudyConfig.to_dict()
      "photoset": {
        "name": str, "layout": str | null, "root": str | null,
        "counts": {"listed": int | null, "used": int, "skipped": int, "classes": int},
        "classes": {"<class name>": int},            # photos used per true class
        "skipped": [{"file": str, "reason": str}]
      },
      "models": {
        "<model>": {
          "weights": {...},                          # as in provenance.models
          "layers": ["layer1", ...],
          "n_images": int, "accuracy": float | null,
          "photos": [                                # one row per photo, in study order
            {"file": str, "label": int, "label_name": str, "pred": int, "pred_name": str,
             "confidence": float, "true_confidence": float | null, "correct": bool,
             "target": int | null,
             "ratio": {"<layer>": float | null},            # the study's metric
             "ratio_pooled": {"<layer>": float | null},     # after pooling to coarsest grid
             "sweep": {"<layer>": [float | null, ...]},     # ratio at config.sweep thresholds
             "box": [x0, y0, x1, y1] | null,                # in model-input pixels, if any
             "box_mass": {"<layer>": float | null} | null}  # Grad-CAM mass inside the box
          ]
        }
      },
      "gridpg": null | {                             # null: the phase did not run
        "layers": [...], "n_candidates": int, "n_mosaics": int, "note": str,
        "specs": [{"files": [4 x str], "labels": [4 x int], "names": [4 x str], "cell": int}],
        "scores": {"<model>": [[float | null per layer] per mosaic]}
      },
      "sanity": null | {"layer": str, "steps": [str],
                        "rho": {"<step>": [float | null per image]}},
      "agreement": null | {"<layer>": float | null},  # max |native - captum| per layer
      "tests": [                                     # every statistical test that was run
        {"claim": str, "name": str, "model": str | null, "result": {...}}
      ],
      "verdicts": [Verdict.to_dict(), ...],
      "extra": {...}                                 # whatever the caller passed as ``extra``
    }

``tests[*].name`` is the key in the verdict's ``tests`` (``primary``, ``page_trend``,
``friedman``, ``wilcoxon_holm``, ``last_layer_above_chance``...) or ``control:<name>`` for a
control's own run of the claim's test.

:data:`RESULTS_SCHEMA` says the same as a JSON-schema (draft 2020-12 subset) dict, and
:func:`validate_results` checks a loaded document against it without needing ``jsonschema``
(it implements the keywords used here: ``type``, ``const``, ``enum``, ``required``,
``properties``, ``additionalProperties``, ``items``, ``minItems``, ``maxItems``, ``minimum``).
Version bumps: adding an optional field keeps ``schema_version``; renaming, removing or changing
the meaning of a field bumps it.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xai_checks._util import jsonable

__all__ = [
    "RESULTS_SCHEMA",
    "SCHEMA_ID",
    "SCHEMA_VERSION",
    "SchemaError",
    "build_results",
    "jsonable",
    "validate_results",
]

SCHEMA_ID = "xai-checks/results"
SCHEMA_VERSION = 1

# --------------------------------------------------------------------------- the schema

_NUM = {"type": ["number", "null"]}
_STR = {"type": "string"}
_OSTR = {"type": ["string", "null"]}
_INT = {"type": "integer"}
_OINT = {"type": ["integer", "null"]}
_LAYER_NUMS = {"type": "object", "additionalProperties": _NUM}
_WEIGHTS = {
    "type": "object",
    "required": ["source"],
    "properties": {
        "source": _STR,
        "arch": _OSTR,
        "path": _OSTR,
        "sha256": _OSTR,
        "seed": _OINT,
        "detail": _OSTR,
    },
}
_PHOTO = {
    "type": "object",
    "required": [
        "file",
        "label",
        "label_name",
        "pred",
        "pred_name",
        "confidence",
        "correct",
        "ratio",
        "ratio_pooled",
    ],
    "properties": {
        "file": _STR,
        "label": _INT,
        "label_name": _STR,
        "pred": _INT,
        "pred_name": _STR,
        "confidence": _NUM,
        "true_confidence": _NUM,
        "correct": {"type": "boolean"},
        "target": _OINT,
        "ratio": _LAYER_NUMS,
        "ratio_pooled": _LAYER_NUMS,
        "sweep": {"type": "object", "additionalProperties": {"type": "array", "items": _NUM}},
        "box": {"type": ["array", "null"], "items": _NUM, "minItems": 4, "maxItems": 4},
        "box_mass": {"type": ["object", "null"], "additionalProperties": _NUM},
    },
}
_TEST = {
    "type": "object",
    "required": ["claim", "name", "result"],
    "properties": {"claim": _STR, "name": _STR, "model": _OSTR, "result": {"type": "object"}},
}
_VERDICT = {
    "type": "object",
    "required": ["claim", "status", "reasons", "n", "tests", "medians", "controls"],
    "properties": {
        "claim": {
            "type": "object",
            "required": ["id", "hypothesis", "metric", "test", "layers", "alpha"],
            "properties": {"id": _STR, "hypothesis": _STR, "alpha": {"type": "number"}},
        },
        "status": {"enum": ["SUPPORTED", "REFUTED", "INCONCLUSIVE", "CONFOUNDED"]},
        "reasons": {"type": "array", "items": _STR},
        "n": _INT,
        "tests": {"type": "object"},
        "medians": {"type": "object"},
        "controls": {"type": "object"},
    },
}

RESULTS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://xai-checks/schemas/results-1.json",
    "title": "xai-checks study results",
    "type": "object",
    "required": [
        "schema",
        "schema_version",
        "generated",
        "provenance",
        "config",
        "photoset",
        "models",
        "gridpg",
        "sanity",
        "agreement",
        "tests",
        "verdicts",
        "extra",
    ],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "schema_version": {"const": SCHEMA_VERSION},
        "generated": _STR,
        "provenance": {
            "type": "object",
            "required": [
                "versions",
                "device",
                "threads",
                "seed",
                "run_time_s",
                "timings_s",
                "command",
                "models",
            ],
            "properties": {
                "versions": {"type": "object", "additionalProperties": _OSTR},
                "platform": _OSTR,
                "processor": _OSTR,
                "device": _OSTR,
                "gpu": _OSTR,
                "cuda": _OSTR,
                "threads": _OINT,
                "seed": _OINT,
                "run_time_s": _NUM,
                "timings_s": _LAYER_NUMS,
                "command": _OSTR,
                "models": {"type": "object", "additionalProperties": _WEIGHTS},
            },
        },
        "config": {
            "type": "object",
            "required": ["layers", "threshold", "seed"],
            "properties": {
                "layers": {"type": "array", "items": _STR},
                "threshold": {"type": "number"},
                "sweep": {"type": "array", "items": {"type": "number"}},
                "seed": _INT,
            },
        },
        "photoset": {
            "type": "object",
            "required": ["name", "layout", "root", "counts", "classes", "skipped"],
            "properties": {
                "name": _STR,
                "layout": _OSTR,
                "root": _OSTR,
                "counts": {
                    "type": "object",
                    "required": ["listed", "used", "skipped", "classes"],
                    "properties": {
                        "listed": _OINT,
                        "used": _INT,
                        "skipped": _INT,
                        "classes": _INT,
                    },
                },
                "classes": {"type": "object", "additionalProperties": _INT},
                "skipped": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["file", "reason"],
                        "properties": {"file": _STR, "reason": _STR},
                    },
                },
            },
        },
        "models": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["weights", "layers", "n_images", "accuracy", "photos"],
                "properties": {
                    "weights": _WEIGHTS,
                    "layers": {"type": "array", "items": _STR},
                    "n_images": _INT,
                    "accuracy": _NUM,
                    "photos": {"type": "array", "items": _PHOTO},
                },
            },
        },
        "gridpg": {
            "type": ["object", "null"],
            "required": ["layers", "n_candidates", "n_mosaics", "note", "specs", "scores"],
            "properties": {
                "layers": {"type": "array", "items": _STR},
                "n_candidates": _INT,
                "n_mosaics": _INT,
                "note": _STR,
                "specs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["files", "labels", "names", "cell"],
                        "properties": {
                            "files": {"type": "array", "items": _STR},
                            "labels": {"type": "array", "items": _INT},
                            "names": {"type": "array", "items": _STR},
                            "cell": {"type": "integer", "minimum": 0},
                        },
                    },
                },
                "scores": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "array",
                        "items": {"type": "array", "items": _NUM},
                    },
                },
            },
        },
        "sanity": {
            "type": ["object", "null"],
            "required": ["layer", "steps", "rho"],
            "properties": {
                "layer": _STR,
                "steps": {"type": "array", "items": _STR},
                "rho": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": _NUM},
                },
            },
        },
        "agreement": {"type": ["object", "null"], "additionalProperties": _NUM},
        "tests": {"type": "array", "items": _TEST},
        "verdicts": {"type": "array", "items": _VERDICT},
        "extra": {"type": "object"},
    },
}


# --------------------------------------------------------------------------- validation


class SchemaError(ValueError):
    """A results document that does not follow :data:`RESULTS_SCHEMA`; ``errors`` lists why."""

    def __init__(self, errors: Sequence[str]):
        self.errors = list(errors)
        shown = "; ".join(self.errors[:10])
        more = f" (and {len(self.errors) - 10} more)" if len(self.errors) > 10 else ""
        super().__init__(f"results do not follow {SCHEMA_ID} v{SCHEMA_VERSION}: {shown}{more}")


def _type_ok(value: Any, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(float(value))
        )
    if name == "string":
        return isinstance(value, str)
    if name == "array":
        return isinstance(value, list)
    if name == "object":
        return isinstance(value, dict)
    raise ValueError(f"schema uses unknown type {name!r}")


def _check(value: Any, schema: Mapping[str, Any], where: str, errors: list[str]) -> None:
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: expected {schema['const']!r}, got {value!r}")
        return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
        return
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_type_ok(value, n) for n in names):
            errors.append(f"{where}: expected {' or '.join(names)}, got {type(value).__name__}")
            return
    if value is None:
        return
    if "minimum" in schema and isinstance(value, int | float) and value < schema["minimum"]:
        errors.append(f"{where}: {value} < minimum {schema['minimum']}")
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                errors.append(f"{where}: missing required key {key!r}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if not isinstance(key, str):
                errors.append(f"{where}: non-string key {key!r}")
            elif key in props:
                _check(item, props[key], f"{where}.{key}", errors)
            elif extra is False:
                errors.append(f"{where}: unexpected key {key!r}")
            elif isinstance(extra, dict):
                _check(item, extra, f"{where}.{key}", errors)
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{where}: {len(value)} items < {schema['minItems']}")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{where}: {len(value)} items > {schema['maxItems']}")
        if "items" in schema:
            for i, item in enumerate(value):
                _check(item, schema["items"], f"{where}[{i}]", errors)


def validate_results(doc: Any, *, schema: Mapping[str, Any] = RESULTS_SCHEMA) -> None:
    """Raise :class:`SchemaError` unless ``doc`` (a loaded ``results.json``) follows ``schema``."""
    errors: list[str] = []
    _check(doc, schema, "$", errors)
    if errors:
        raise SchemaError(errors)


# --------------------------------------------------------------------------- building


_VERSION_KEYS = ("xai_checks", "python", "torch", "torchvision", "captum", "numpy", "scipy")


def _provenance(study: Any, extra: Mapping[str, Any]) -> dict[str, Any]:
    prov = dict(study.provenance or {})
    versions = {k: prov.get(k) for k in _VERSION_KEYS if k in prov}
    if "matplotlib" not in versions:
        import matplotlib

        versions["matplotlib"] = matplotlib.__version__
    command = extra.get("command")
    if isinstance(command, list | tuple):
        import shlex

        command = shlex.join(str(c) for c in command)
    timings = dict(study.timings or {})
    return {
        "versions": {k: None if v is None else str(v) for k, v in versions.items()},
        "platform": prov.get("platform"),
        "processor": prov.get("processor"),
        "device": prov.get("device"),
        "gpu": prov.get("gpu"),
        "cuda": prov.get("cuda"),
        "threads": prov.get("threads"),
        "seed": study.config.seed,
        "run_time_s": timings.get("total"),
        "timings_s": timings,
        "command": None if command is None else str(command),
        "models": {name: _weights(run.weights) for name, run in study.runs.items()},
    }


def _weights(weights: Mapping[str, Any] | None) -> dict[str, Any]:
    w = dict(weights or {})
    w.setdefault("source", "unknown")
    for key in ("arch", "path", "sha256", "seed", "detail"):
        w.setdefault(key, None)
    return w


def _photo_row(record: Mapping[str, Any]) -> dict[str, Any]:
    row = {
        key: record.get(key)
        for key in (
            "file",
            "label",
            "label_name",
            "pred",
            "pred_name",
            "confidence",
            "true_confidence",
            "correct",
            "target",
            "ratio",
            "ratio_pooled",
            "sweep",
        )
    }
    row["box"] = record.get("box")
    row["box_mass"] = record.get("box_mass")
    row["ratio"] = row["ratio"] or {}
    row["ratio_pooled"] = row["ratio_pooled"] or {}
    row["sweep"] = row["sweep"] or {}
    return row


def _photoset(study: Any) -> dict[str, Any]:
    ps = dict(study.photoset or {})
    records = study.under_test.records
    classes = Counter(str(r.get("label_name", r.get("label"))) for r in records)
    return {
        "name": str(ps.get("name", "unknown")),
        "layout": ps.get("layout"),
        "root": ps.get("root"),
        "counts": {
            "listed": ps.get("n_listed"),
            "used": int(ps.get("n_used", len(records))),
            "skipped": len(study.skipped or []),
            "classes": len(classes),
        },
        "classes": dict(sorted(classes.items())),
        "skipped": [
            {"file": str(s.get("file", "")), "reason": str(s.get("reason", ""))}
            for s in (study.skipped or [])
        ],
    }


def _model(run: Any) -> dict[str, Any]:
    return {
        "role": run.role,
        "class": run.model_class,
        "weights": _weights(run.weights),
        "layers": list(run.layers),
        "n_images": len(run.records),
        "accuracy": run.accuracy,
        "photos": [_photo_row(r) for r in run.records],
    }


def _gridpg(grid: Any) -> dict[str, Any] | None:
    if grid is None:
        return None
    scores = {
        name: np.asarray(s, dtype=float).reshape(-1, len(grid.layers))
        for name, s in grid.scores.items()
    }
    n = max((len(s) for s in scores.values()), default=len(grid.specs))
    return {
        "layers": list(grid.layers),
        "n_candidates": int(grid.n_candidates),
        "n_mosaics": int(n),
        "note": str(grid.note or ""),
        "specs": list(grid.specs),
        "scores": scores,
    }


def _tests(verdicts: Sequence[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for verdict in verdicts:
        d = verdict.to_dict()
        claim = d["claim"]["id"]
        models = list(d.get("medians", {}))
        main = models[0] if models else None
        for name, result in d.get("tests", {}).items():
            out.append({"claim": claim, "name": name, "model": main, "result": result or {}})
        for name, control in d.get("controls", {}).items():
            if isinstance(control, dict) and isinstance(control.get("test"), dict):
                out.append(
                    {
                        "claim": claim,
                        "name": f"control:{name}",
                        "model": control.get("model"),
                        "result": control["test"],
                    }
                )
    return out


def build_results(
    study: Any, verdicts: Sequence[Any], *, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``results.json`` document (JSON-safe) for a study and its verdicts."""
    extra = dict(extra or {})
    doc = {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "generated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "provenance": _provenance(study, extra),
        "config": study.config.to_dict(),
        "photoset": _photoset(study),
        "models": {name: _model(run) for name, run in study.runs.items()},
        "gridpg": _gridpg(study.gridpg),
        "sanity": None
        if study.sanity is None
        else {
            "layer": study.sanity.layer,
            "steps": list(study.sanity.steps),
            "rho": {k: list(v) for k, v in study.sanity.rho.items()},
        },
        "agreement": None if study.agreement is None else dict(study.agreement),
        "tests": _tests(verdicts),
        "verdicts": [v.to_dict() for v in verdicts],
        "extra": extra,
    }
    return jsonable(doc)
