"""The verdict table printed by the CLI and at the end of a pytest run.

Plain text, no pytest import: :mod:`xai_checks.cli` and :mod:`xai_checks.plugin` both use it.
A verdict is read through its public attributes only (``claim.id``, ``status``, ``n``,
``primary``, ``effect``, ``medians``, ``reasons``, and, when the claim gives them,
``effect_ci``, ``n_photos`` and ``power``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["detail_lines", "fmt", "table_lines", "verdict_lines"]


def fmt(x: Any, spec: str = ".2g") -> str:
    """A number for a reader; ``-`` for missing or non-finite."""
    if x is None or isinstance(x, bool):
        return "-" if x is None else str(x)
    if isinstance(x, float) and not math.isfinite(x):
        return "-"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return format(x, spec)
    return str(x)


def _effect(v: Any) -> str:
    primary = v.primary or {}
    name = primary.get("effect_name") or ""
    text = fmt(v.effect, ".3f")
    ci = getattr(v, "effect_ci", None)
    if ci is not None and len(ci) == 2 and all(c is not None for c in ci):
        text += f" [{fmt(ci[0], '.3f')}, {fmt(ci[1], '.3f')}]"
    return f"{text} {name}".strip()


def _reason_texts(v: Any) -> list[str]:
    out = []
    for reason in v.reasons:
        out.append(reason["text"] if isinstance(reason, Mapping) else str(reason))
    return out


def _power(v: Any) -> str:
    power = getattr(v, "power", None)
    if power is None:
        return "-"
    if isinstance(power, Mapping):
        return str(power.get("text") or power.get("summary") or fmt(power.get("power")))
    return fmt(power, ".2f") if isinstance(power, float) else str(power)


def table_lines(verdicts: Mapping[str, Any]) -> list[str]:
    """One row per verdict: claim, verdict, n, p, effect [CI], photos, power."""
    rows = [("claim", "verdict", "n", "photos", "p", "effect [95% CI]", "power")]
    for claim_id, v in verdicts.items():
        primary = v.primary or {}
        n_photos = getattr(v, "n_photos", None)
        rows.append(
            (
                claim_id,
                v.status.value,
                str(v.n),
                "-" if n_photos is None else str(n_photos),
                fmt(primary.get("pvalue")),
                _effect(v),
                _power(v),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def detail_lines(verdicts: Mapping[str, Any]) -> list[str]:
    """Per claim: each set of numbers under its own heading, then the reasons."""
    lines = []
    for claim_id, v in verdicts.items():
        lines.append(f"{claim_id}:")
        for heading, numbers in (v.medians or {}).items():
            if not numbers:
                continue
            cells = "  ".join(f"{key} {fmt(value, '.3g')}" for key, value in numbers.items())
            label = heading if " " in heading else f"medians by layer ({heading})"
            lines.append(f"  {label}: {cells}")
        for text in _reason_texts(v):
            lines.append(f"  - {text}")
    return lines


def verdict_lines(verdicts: Iterable[Any] | Mapping[str, Any]) -> list[str]:
    """The table, then the details."""
    if isinstance(verdicts, Mapping):
        by_id: Mapping[str, Any] = verdicts
    else:
        by_id = {v.claim.id: v for v in list[Any](verdicts)}
    return [*table_lines(by_id), "", *detail_lines(by_id)]
