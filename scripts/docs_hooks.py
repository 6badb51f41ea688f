"""MkDocs hooks: pages that quote the package's own tables are filled in at build time.

A page marks a place with an HTML comment, ``<!-- xai-checks: NAME -->``, and the hook
replaces it with Markdown generated from the one definition of that fact:

``cli-reference``      every option of ``xai-checks`` and the pytest plugin
                       (:data:`xai_checks.options.OPTIONS`);
``claim-facts``        each registered claim's id, SESOI, alpha, min_n, controls and phases
                       (the claim classes);
``claim:ID``           one claim's hypothesis (as the report states it for the default
                       layers) and its declared numbers;
``verdict-legend``     what each verdict means (:data:`xai_checks.claims.base.VERDICT_LEGEND`);
``calibration-summary`` the compact calibration table (:func:`xai_checks.calibration.readme_table`
                       of ``docs/calibration.json``).

So the docs cannot drift from the code: change the table, and the next ``tox -e docs`` shows it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

MARK = re.compile(r"<!--\s*xai-checks:\s*([a-z-]+)(?::([a-z0-9-]+))?\s*-->")
DOCS = Path(__file__).resolve().parents[1] / "docs"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def cli_reference() -> str:
    """One table per option group: the CLI flag, the plugin flag, the default and the help."""
    from xai_checks.options import OPTIONS

    groups: dict[str, list[Any]] = {}
    for row in OPTIONS:
        groups.setdefault(row.group, []).append(row)
    out: list[str] = []
    for group, rows in groups.items():
        out += [f"### {group.capitalize()}", ""]
        out += [
            "| CLI | pytest plugin | commands | default | what it does |",
            "|---|---|---|---|---|",
        ]
        for row in rows:
            default = row.default_for("cli")
            if isinstance(default, list | tuple):
                default = ",".join(map(str, default))
            plugin_default = row.default_for("plugin")
            shown = "" if default in (None, "", False) else f"`{default}`"
            if row.plugin and plugin_default != row.default and plugin_default is not None:
                shown += f" (plugin: `{plugin_default}`)"
            choices = f"; one of {', '.join(f'`{c}`' for c in row.choices)}" if row.choices else ""
            out.append(
                "| "
                + " | ".join(
                    [
                        f"`{row.cli}`" if row.cli else "—",
                        f"`{row.plugin}`" if row.plugin else "—",
                        ", ".join(row.commands) if row.cli else "—",
                        _cell(shown),
                        _cell(row.help + choices),
                    ]
                )
                + " |"
            )
        out.append("")
    return "\n".join(out)


def claim_facts() -> str:
    """The registered claims' declared numbers, read from their classes."""
    from xai_checks.claims import registered_claims

    out = [
        "| claim | title | SESOI | alpha | min n | controls | phases it reads |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for claim in registered_claims():
        sesoi = f"{claim.sesoi:g}" if claim.sesoi else "—"
        out.append(
            f"| `{claim.id}` | {_cell(claim.title)} | {sesoi} | {claim.alpha:g} | {claim.min_n} "
            f"| {', '.join(claim.controls) or '—'} | {', '.join(claim.needs)} |"
        )
    return "\n".join(out) + "\n"


def claim(claim_id: str) -> str:
    """One claim's hypothesis, for the default layers, and its declared numbers."""
    from xai_checks.cam import DEFAULT_LAYERS
    from xai_checks.claims import get_claim

    found = get_claim(claim_id).with_(layers=DEFAULT_LAYERS)
    sesoi = f"{found.sesoi:g}" if found.sesoi else "none (an exact bound, not a test)"
    params = ", ".join(f"`{k}={v!r}`" for k, v in found.params.items())
    return "\n".join(
        [
            f"> {found.hypothesis_for(None)}",
            "",
            f"- **SESOI** (smallest effect of interest): {sesoi}",
            f"- **alpha**: {found.alpha:g}; **min n**: {found.min_n} photos",
            f"- **controls**: {', '.join(found.controls) or 'none'}",
            f"- **phases it reads**: {', '.join(found.needs)}",
            f"- **parameters**: {params or 'none'}",
            "",
        ]
    )


def verdict_legend() -> str:
    from xai_checks.claims.base import VERDICT_LEGEND

    return "\n".join(f"- **{status}**: {text}" for status, text in VERDICT_LEGEND.items()) + "\n"


def calibration_summary() -> str:
    from xai_checks.calibration import readme_table

    return readme_table(json.loads((DOCS / "calibration.json").read_text(encoding="utf-8")))


GENERATORS: dict[str, Callable[..., str]] = {
    "claim": claim,
    "cli-reference": cli_reference,
    "claim-facts": claim_facts,
    "verdict-legend": verdict_legend,
    "calibration-summary": calibration_summary,
}


def fill(markdown: str) -> str:
    """``markdown`` with every marker replaced by its generated text (unknown names fail)."""

    def one(match: re.Match[str]) -> str:
        name, arg = match.group(1), match.group(2)
        if name not in GENERATORS:
            raise KeyError(f"unknown docs marker {name!r}; known: {sorted(GENERATORS)}")
        return GENERATORS[name](arg) if arg else GENERATORS[name]()

    return MARK.sub(one, markdown)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """MkDocs hook: fill the markers of every page."""
    return fill(markdown)
