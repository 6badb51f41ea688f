"""The verdict table printed by the CLI and at the end of a pytest run.

Plain text, no pytest import: :mod:`xai_checks.cli` and :mod:`xai_checks.plugin` both use it.
A verdict is read through its flat ``row()`` (the figures claims.json, junit and the report
also show), its ``medians`` (each set under its own heading) and its ``reasons``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from xai_checks.fmt import pvalue

__all__ = ["detail_lines", "fmt", "legend_lines", "table_lines", "verdict_lines"]


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


def _row(v: Any) -> dict[str, Any]:
    """The verdict's flat row (``Verdict.row()``), or one built from older verdicts."""
    if hasattr(v, "row"):
        return dict(v.row())
    primary = v.primary or {}
    return {
        "claim": v.claim.id,
        "status": v.status.value,
        "n": v.n,
        "n_unit": "",
        "effect": v.effect,
        "effect_name": primary.get("effect_name"),
        "p": primary.get("pvalue"),
    }


def _effect(row: Mapping[str, Any]) -> str:
    text = fmt(row.get("effect"), ".3f")
    low, high = row.get("ci_low"), row.get("ci_high")
    if low is not None and high is not None:
        text += f" [{fmt(low, '.3f')}, {fmt(high, '.3f')}]"
    effect_n = row.get("effect_n")
    if effect_n is not None and effect_n != row.get("n"):
        text += f" (n={effect_n})"
    return f"{text} {row.get('effect_name') or ''}".strip()


def _power(row: Mapping[str, Any]) -> str:
    mde = row.get("mde")
    return "-" if mde is None else f"mde {fmt(mde, '.3g')}"


def table_lines(verdicts: Mapping[str, Any]) -> list[str]:
    """One row per verdict: claim, verdict, n (the photos behind the deciding effect), p
    (Holm), the deciding effect [CI], the SESOI at which the verdict would change, the
    smallest effect this n could detect."""
    rows = [("claim", "verdict", "n", "p", "p (Holm)", "effect [CI]", "tipping SESOI", "power")]
    for claim_id, v in verdicts.items():
        row = _row(v)
        unit = row.get("n_unit") or ""
        rows.append(
            (
                claim_id,
                str(row["status"]),
                f"{row['n']} {unit}".strip(),
                pvalue(row.get("p"), missing="-"),
                pvalue(row.get("p_holm"), missing="-"),
                _effect(row),
                fmt(row.get("tipping_sesoi"), ".3g"),
                _power(row),
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
        statement = _row(v).get("power_statement")
        if statement:
            lines.append(f"  power: {statement}")
        for text in map(str, v.reasons):
            lines.append(f"  - {text}")
    return lines


def verdict_lines(verdicts: Iterable[Any] | Mapping[str, Any]) -> list[str]:
    """The table, then the details."""
    if isinstance(verdicts, Mapping):
        by_id: Mapping[str, Any] = verdicts
    else:
        by_id = {v.claim.id: v for v in list[Any](verdicts)}
    return [
        *table_lines(by_id),
        *_multiplicity_lines(by_id),
        *legend_lines(by_id),
        "",
        *detail_lines(by_id),
    ]


def legend_lines(verdicts: Mapping[str, Any]) -> list[str]:
    """What each verdict in the table means, from the one legend the report and docs show."""
    from xai_checks.claims.base import VERDICT_LEGEND

    shown = {str(_row(v)["status"]) for v in verdicts.values()}
    return [f"{status}: {text}" for status, text in VERDICT_LEGEND.items() if status in shown]


def _multiplicity_lines(verdicts: Mapping[str, Any]) -> list[str]:
    """How the claims of the run were corrected together (Holm), under the table."""
    values = list(verdicts.values())
    if not values or not all(hasattr(v, "multiplicity") and hasattr(v, "claim") for v in values):
        return []
    from xai_checks.claims import multiplicity_note

    note = multiplicity_note(values)
    return [note] if note else []
