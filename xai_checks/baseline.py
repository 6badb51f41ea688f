"""A baseline file (``--xai-baseline``): data from outside, read as such, and compared.

A baseline decides whether a CI gate goes green, so nothing in it is trusted:

* :func:`load_baseline` reads at most :data:`MAX_BYTES`, refuses ``NaN``/``Infinity`` (which
  Python's JSON reader accepts by default), integers beyond what a float holds exactly,
  nesting deeper than :data:`MAX_DEPTH`, and anything the JSON Schema
  (:func:`baseline_schema`) does not allow. Every refusal is a :class:`BaselineError` that
  names the file and the place in it.
* :func:`compare_with_baseline` reports a regression for a flipped verdict or a moved
  effect, and a problem for every comparison that cannot be made (an effect on one side
  only): a check that cannot be made fails, it is never skipped.
* :func:`coverage_problems` says which claims of the run the baseline lacks, and which of its
  claims the run selected but did not judge.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import jsonschema

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "BaselineError",
    "baseline_schema",
    "compare_with_baseline",
    "coverage_problems",
    "load_baseline",
]

#: a baseline of the built-in claims is about 60 KB; 16 MiB leaves room for many claims
MAX_BYTES = 16 * 1024 * 1024
#: the deepest a written baseline nests is about 8 levels
MAX_DEPTH = 32
#: the most verdicts one baseline may hold
MAX_VERDICTS = 10_000
#: integers beyond 2**53 are not exact as floats; no baseline field needs more
_MAX_INT = 2**53


class BaselineError(ValueError):
    """A baseline file that cannot be used: unreadable, not JSON, or not a baseline."""


_NUMBER_OR_NULL = {"type": ["number", "null"]}


@functools.cache
def _schema() -> dict[str, Any]:
    from xai_checks.claims import Status

    verdict = {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"enum": [s.value for s in Status]},
            "row": {
                "type": ["object", "null"],
                "properties": {"effect": _NUMBER_OR_NULL},
            },
            "tests": {
                "type": "object",
                "properties": {
                    "primary": {
                        "type": ["object", "null"],
                        "properties": {"effect": _NUMBER_OR_NULL},
                    }
                },
            },
        },
    }
    strings = {"type": "array", "items": {"type": "string"}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "xai-checks baseline (a claims.json written by --xai-update-baseline)",
        "type": "object",
        "required": ["settings", "study", "verdicts"],
        "properties": {
            "schema": {"const": "xai-checks/claims"},
            "settings": {
                "type": "object",
                "properties": {
                    "data": {"type": "string"},
                    "labels": strings,
                    "weights": {"type": "string"},
                    "control": {"type": "string"},
                    "limit": {"type": ["integer", "null"]},
                    "seed": {"type": "integer"},
                    "alpha": {"type": "number"},
                    "layers": {"type": ["array", "null"], "items": {"type": "string"}},
                    "model": {"type": ["string", "null"]},
                    "method": {"type": "string"},
                    "control_model": {"type": ["string", "null"]},
                    "classes": {"type": ["string", "null"]},
                    "preprocess": {"type": "object"},
                },
            },
            "study": {
                "type": "object",
                "required": ["photoset"],
                "properties": {
                    "photoset": {
                        "type": "object",
                        "required": ["fingerprint"],
                        "properties": {"fingerprint": {"type": "string", "maxLength": 128}},
                    }
                },
            },
            "verdicts": {
                "type": "object",
                "maxProperties": MAX_VERDICTS,
                "propertyNames": {"maxLength": 1000},
                "additionalProperties": verdict,
            },
        },
    }


def baseline_schema() -> dict[str, Any]:
    """The JSON Schema a baseline file must satisfy (a fresh copy)."""
    copy: dict[str, Any] = json.loads(json.dumps(_schema()))
    return copy


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is beyond the range of a float")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 16 or abs(int(text)) > _MAX_INT:
        raise ValueError(f"integer {text[:20]}{'...' if len(text) > 20 else ''} is too large")
    return int(text)


def _depth(document: Any) -> int:
    """How deep ``document`` nests (iteratively: no recursion limit to hit)."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                return level
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, level + 1) for child in children)
    return deepest


def _where(error: jsonschema.ValidationError) -> str:
    return "/".join(map(str, error.absolute_path)) or "the top level"


def load_baseline(path: str | Path) -> dict[str, Any]:
    """The baseline at ``path``, checked; :class:`BaselineError` says why it cannot be used."""
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_BYTES:
            raise BaselineError(f"baseline {file} is {size} bytes; the most allowed is {MAX_BYTES}")
        with file.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise BaselineError(f"baseline {file} cannot be read: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise BaselineError(f"baseline {file} is larger than {MAX_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
        document = json.loads(
            text, parse_constant=_refuse_constant, parse_int=_bounded_int, parse_float=_finite_float
        )
    except UnicodeDecodeError as exc:
        raise BaselineError(f"baseline {file} is not UTF-8 text ({exc.reason})") from None
    except RecursionError:
        raise BaselineError(f"baseline {file} nests deeper than JSON can be read") from None
    except ValueError as exc:
        raise BaselineError(f"baseline {file} is unreadable: not valid JSON ({exc})") from None
    if _depth(document) > MAX_DEPTH:
        raise BaselineError(f"baseline {file} nests deeper than {MAX_DEPTH} levels")
    validator_cls = jsonschema.validators.validator_for(_schema())
    error = jsonschema.exceptions.best_match(validator_cls(_schema()).iter_errors(document))
    if error is not None:
        raise BaselineError(
            f"baseline {file} is not an xai-checks baseline: at {_where(error)}: "
            f"{_short(error.message)}"
        )
    return dict(document)


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _headline_effect(verdict: Mapping[str, Any], other: Mapping[str, Any]) -> Any:
    """The effect a baseline compares: the verdict's headline effect (its row, the one with a
    CI) when both sides have rows, else the primary test's effect."""
    if isinstance(verdict.get("row"), Mapping) and isinstance(other.get("row"), Mapping):
        return verdict["row"].get("effect")
    return ((verdict.get("tests") or {}).get("primary") or {}).get("effect")


def compare_with_baseline(
    current: Mapping[str, Any], baseline: Mapping[str, Any], *, tolerance: float
) -> list[str]:
    """Lines describing regressions (a flipped verdict, an effect moved > tolerance) and the
    comparisons that cannot be made (an effect on one side only). Claims on one side only
    are :func:`coverage_problems`' business."""
    problems = []
    for claim_id, old in baseline.get("verdicts", {}).items():
        new = current.get("verdicts", {}).get(claim_id)
        if new is None:
            continue
        if new["status"] != old["status"]:
            problems.append(f"{claim_id}: verdict {old['status']} -> {new['status']}")
        old_e, new_e = _headline_effect(old, new), _headline_effect(new, old)
        if old_e is None and new_e is None:
            continue  # a claim without an effect (e.g. no photos with boxes) on both sides
        if old_e is None or new_e is None:
            problems.append(
                f"{claim_id}: effect cannot be compared: baseline {_show(old_e)}, "
                f"this run {_show(new_e)}"
            )
        elif abs(float(new_e) - float(old_e)) > tolerance:
            problems.append(
                f"{claim_id}: effect {old_e:.3f} -> {new_e:.3f} (tolerance {tolerance})"
            )
    return problems


def _show(effect: Any) -> str:
    return "has none" if effect is None else f"{float(effect):.3f}"


def coverage_problems(
    *, judged: Collection[str], selected: Collection[str], baseline: Mapping[str, Any]
) -> list[str]:
    """Claims the run judged that the baseline lacks, and baseline claims the run selected
    (a marked test collected and not deselected) but did not judge. A baseline claim the
    run did not select is not compared, and is no problem."""
    in_baseline = set(baseline.get("verdicts", {}))
    problems = [
        f"{key}: judged in this run, but the baseline has no verdict for it "
        "(rewrite it with --xai-update-baseline)"
        for key in sorted(set(judged) - in_baseline)
    ]
    problems.extend(
        f"{key}: in the baseline and selected in this run, but not judged (its test did not "
        "reach a verdict: see its error or skip reason)"
        for key in sorted((in_baseline & set(selected)) - set(judged))
    )
    return problems
