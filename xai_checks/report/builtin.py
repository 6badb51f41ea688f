"""The built-in sections: the verdict table, one section per built-in claim metric, what was
skipped, and provenance. Each is registered in :mod:`xai_checks.report.sections`; a claim that
provides its own ``report_section`` replaces the built-in one for its metric.

Everything here builds *context* (plain values and already-escaped :class:`~markupsafe.Markup`);
the markup itself lives in the templates.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from xai_checks import fmt
from xai_checks.claims.base import VERDICT_LEGEND
from xai_checks.gridpg_targets import describe_gridpg_targets
from xai_checks.phases import phase_names
from xai_checks.phases.registry import OPT_IN_PHASES
from xai_checks.report import figures as _figures
from xai_checks.report.naming import method_name, model_roles, reason_texts
from xai_checks.report.sections import (
    ReportSection,
    register_claim_section,
    register_section,
)

if TYPE_CHECKING:
    from xai_checks.claims.base import Verdict
    from xai_checks.study import GridPGRun, StudyResult

__all__ = ["EFFECT_NAMES", "figure_section_parts"]

#: what each effect size is called on the page, and what it means (shown in a glossary)
EFFECT_NAMES: dict[str, tuple[str, str]] = {
    "epsilon_squared": (
        "ε²",
        "Kruskal-Wallis effect size: the share of the variation in ranks that the layer "
        "explains (0: none, 1: all).",
    ),
    "kendall_w": (
        "Kendall's W",
        "Friedman effect size: how consistently the photos rank the layers the same way "
        "(0: no agreement, 1: every photo ranks them identically).",
    ),
    "mean_rho": (
        "mean ρ",
        "Page trend effect size: for each photo (or mosaic), the Spearman correlation between "
        "layer depth and its score, averaged (+1: the score rises at every step for every "
        "photo; 0: no trend).",
    ),
    "rank_biserial": (
        "rank-biserial r",
        "Wilcoxon effect size: the balance of positive over negative paired differences "
        "(+1: the first is larger for every photo).",
    ),
}


def _status(verdict: Verdict) -> str:
    return "" if verdict is None else str(getattr(verdict.status, "value", verdict.status))


def _verdict(verdicts: Sequence[Verdict], metric: str) -> Verdict | None:
    return next((v for v in verdicts if getattr(v.claim, "metric", None) == metric), None)


# --------------------------------------------------------------------------- figures


def figure_section_parts(
    study: StudyResult, verdicts: Sequence[Verdict], names: Sequence[str]
) -> tuple[dict[str, bytes], dict[str, dict[str, Any]]]:
    """Render the named figures of :mod:`~xai_checks.report.figures` that apply.

    Returns ``(figures, figure_text)`` for a :class:`ReportSection`.
    """
    figures: dict[str, bytes] = {}
    text: dict[str, dict[str, Any]] = {}
    for name in names:
        rendered = _figures.render_figure(name, study, verdicts)
        if rendered is None:
            continue
        figures[name] = rendered.png
        text[name] = {
            "title": rendered.title,
            "caption": Markup(rendered.caption),
            "narrow": name in _figures.NARROW,
        }
    return figures, text


def _claim_context(
    verdict: Verdict, *, lead: str | Markup, toc: str, note: str | Markup = "", **extra: Any
) -> dict[str, Any]:
    return {"verdict": verdict, "lead": lead, "toc": toc, "note": note, **extra}


def _medians_table(verdict: Verdict, study: StudyResult) -> dict[str, Any] | None:
    if verdict is None or not verdict.medians:
        return None
    layers = list(verdict.claim.layers or study.config.layers)
    return {
        "caption": "median ratio",
        "columns": [
            {"name": layer, "color": _figures.layer_color(layer, j)}
            for j, layer in enumerate(layers)
        ],
        "rows": [
            {"name": name, "values": [fmt.number(m.get(layer)) for layer in layers]}
            for name, m in verdict.medians.items()
        ],
    }


# --------------------------------------------------------------------------- page sections


def _effect_cell(verdict: Verdict) -> tuple[str, str, str]:
    """(value, name, glossary key) of the effect shown in the verdict table."""
    primary = verdict.tests.get("primary") or {}
    effect = primary.get("effect")
    metric = getattr(verdict.claim, "metric", "")
    params = getattr(verdict.claim, "params", {}) or {}
    if effect is not None:
        key = str(primary.get("effect_name") or "")
        name = EFFECT_NAMES.get(key, (key.replace("_", " ") or "effect", ""))[0]
        return fmt.number(effect), name, key
    if metric == "randomisation" and (primary.get("means") or primary.get("medians")):
        stat = "means" if primary.get("means") else "medians"
        vals = [x for x in primary[stat].values() if x is not None and math.isfinite(x)]
        if vals:
            bound = fmt.number(primary.get("bound_mean", primary.get("bound", params.get("bound"))))
            what = "mean" if stat == "means" else "median"
            return fmt.number(max(vals), 2), f"largest {what} |ρ| (bound {bound})", ""
    if metric == "agreement" and primary.get("statistic") is not None:
        tol = fmt.number(primary.get("tolerance", params.get("tolerance")))
        return fmt.number(primary["statistic"]), f"max |diff| (tolerance {tol})", ""
    return fmt.MISSING, "", ""


def _n_unit(verdict: Verdict, study: StudyResult, row: Mapping[str, Any] | None = None) -> str:
    """What a claim's n counts, in words."""
    # the row's unit is the claim's own statement once it records an effect size
    unit = (row or {}).get("n_unit") if getattr(verdict, "effect_size", None) else None
    if unit:
        return str(unit).replace("_", " ")
    metric = getattr(verdict.claim, "metric", "")
    if metric == "gridpg":
        grid = getattr(study, "gridpg", None)
        if grid is None or not grid.specs:  # nothing scored: say it as the claim says it
            said = " ".join(reason_texts(verdict))
            return "target photos" if "target photo" in said else "mosaics"
        return "mosaics" if _gridpg_counts_mosaics(study) else "target photos"
    if metric == "boxes":
        return "photos with a box"
    return "photos"


def _gridpg_counts_mosaics(study: StudyResult) -> bool:
    grid = getattr(study, "gridpg", None)
    if grid is None or not grid.specs:
        return False
    return _distinct_targets(grid) < len(grid.specs)


def _distinct_targets(grid: GridPGRun) -> int:
    targets = set()
    for spec in grid.specs:
        files = spec.get("files") or []
        cell = spec.get("cell")
        if isinstance(cell, int) and 0 <= cell < len(files):
            targets.add(files[cell])
    return len(targets)


def verdict_row(verdict: Verdict, study: StudyResult) -> dict[str, Any]:
    """The verdict's row for the table: the claim's own ``row()`` (effect with its CI, n and
    what n counts, the decisive p, power) where it has one, else the primary test's numbers."""
    row = dict(verdict.row()) if callable(getattr(verdict, "row", None)) else {}
    primary = verdict.tests.get("primary") or {}
    if row.get("effect") is not None:
        key = str(row.get("effect_name") or "")
        value = fmt.number(row["effect"])
        name = EFFECT_NAMES.get(key, (key.replace("_", " ") or "effect", ""))[0]
        if row.get("ci_low") is not None and row.get("ci_high") is not None:
            level = row.get("confidence")
            value += f" [{fmt.number(row['ci_low'])}, {fmt.number(row['ci_high'])}]" + (
                f" {fmt.number(100 * float(level), 2)}% CI" if level else " CI"
            )
    else:
        value, name, key = _effect_cell(verdict)
    p = row.get("p")
    p_method = ""
    if p is None and "pvalue" in primary:
        p, p_method = primary.get("pvalue"), str(primary.get("method", ""))
    p_text = fmt.pvalue(p)
    if row.get("p_holm") is not None:
        p_text += f" (Holm {fmt.pvalue(row['p_holm'])})"
    return {
        "id": verdict.claim.id,
        "hypothesis": getattr(verdict, "hypothesis", "") or verdict.claim.hypothesis,
        "status": _status(verdict),
        "n": verdict.n,
        "n_unit": _n_unit(verdict, study, row),
        "p": p_text,
        "p_method": p_method,
        "effect": value,
        "effect_name": name,
        "effect_key": key,
        "power": row.get("power_statement") or "",
        "tipping": _tipping_text(row),
        "seeds": seeds_text(verdict),
        "reasons": reason_texts(verdict),
    }


def seeds_text(verdict: Verdict) -> str:
    """The spread of each control effect across its random networks, in words: "untrained:
    5 networks, effect per network 0.018 to 0.025" (empty for a control drawn once)."""
    spreads = {
        name: entry["seeds"]
        for name, entry in (getattr(verdict, "controls", None) or {}).items()
        if isinstance(entry, Mapping) and isinstance(entry.get("seeds"), Mapping)
    }
    spreads.update(
        {f"step {step}": s for step, s in ((verdict.tests or {}).get("seeds") or {}).items()}
    )
    parts = []
    for name, spread in spreads.items():
        if "min" in spread and "max" in spread:
            parts.append(
                f"{name}: {spread.get('count')} networks, effect per network "
                f"{fmt.number(spread['min'])} to {fmt.number(spread['max'])} "
                f"(on {spread.get('photos_every_seed')} photos)"
            )
        elif spread.get("note"):
            parts.append(f"{name}: {spread['note']}")
    return "; ".join(parts)


def _tipping_text(row: Mapping[str, Any]) -> str:
    """The SESOI at which the verdict would change, in words (empty when none applies)."""
    tip = row.get("tipping_sesoi")
    if tip is None:
        return ""
    if row.get("status") == "SUPPORTED":
        return f"tipping SESOI {fmt.number(tip)}: SUPPORTED for any SESOI up to it"
    return f"tipping SESOI {fmt.number(tip)}: {row.get('status')} for any SESOI above it"


@register_section("verdicts", order=10)
def verdicts_section(
    study: StudyResult, verdicts: Sequence[Verdict], doc: Mapping[str, Any]
) -> ReportSection:
    rows = [verdict_row(v, study) for v in verdicts]
    glossary = {
        r["effect_key"]: EFFECT_NAMES[r["effect_key"]]
        for r in rows
        if r["effect_key"] in EFFECT_NAMES
    }
    return ReportSection(
        id="verdicts",
        title="Verdicts",
        template="verdicts.html.j2",
        context={
            "lead": "Each claim is a test with controls decided in advance; the verdict says "
            "whether the evidence supports it.",
            "rows": rows,
            "legend": list(VERDICT_LEGEND.items()),
            "glossary": list(glossary.values()),
            "gridpg_n": _gridpg_n_text(study),
        },
    )


def _gridpg_n_text(study: StudyResult) -> str:
    """What GridPG's n counts on this run, in words (shown under the table)."""
    grid = getattr(study, "gridpg", None)
    if grid is None or not grid.specs:
        return ""
    targets = _distinct_targets(grid)
    mosaics = len(grid.specs)
    text = (
        f"GridPG's n: {fmt.count(mosaics, 'mosaic')} of four photos each, explaining "
        f"{fmt.count(targets, 'distinct target photo')}"
    )
    if targets < mosaics:
        return text + " (a target photo used in several mosaics counts more than once)."
    return text + " (each photo is the target of one mosaic, so n counts independent photos)."


@register_section("skipped", order=900)
def skipped_section(
    study: StudyResult, verdicts: Sequence[Verdict], doc: Mapping[str, Any]
) -> ReportSection:
    items: list[str] = []
    cfg = study.config
    missing = [p for p in phase_names() if p != "ratio" and p not in cfg.phases]
    # an opt-in phase left out is no gap in a default run: its claims' rows say how to add it
    if [p for p in missing if p not in OPT_IN_PHASES]:
        items.append(f"Phases not run (by configuration): {', '.join(missing)}.")
    if len(study.runs) < 2:
        items.append("No control model: the untrained-network control could not be run.")
    grid = study.gridpg
    if grid is not None and grid.note:
        items.append(f"Grid pointing game: {grid.note}.")
    skipped = doc["photoset"]["skipped"]
    if skipped:
        reasons = Counter(s["reason"] for s in skipped)
        summary = "; ".join(f"{n} × {r}" for r, n in reasons.most_common(5))
        items.append(f"{fmt.count(len(skipped), 'photo file')} skipped: {summary}.")
    return ReportSection(
        id="skipped",
        title="What was skipped, and why",
        template="skipped.html.j2",
        context={
            "lead": "Photos that could not be used and parts of the study that did not run.",
            "toc": "Skipped",
            "items": items,
            "skipped": skipped[:_SKIPPED_ROWS],
            "more": max(0, len(skipped) - _SKIPPED_ROWS),
        },
    )


_SKIPPED_ROWS = 40


@register_section("provenance", order=950)
def provenance_section(
    study: StudyResult, verdicts: Sequence[Verdict], doc: Mapping[str, Any]
) -> ReportSection:
    prov = doc["provenance"]
    versions = ", ".join(f"{k} {v}" for k, v in prov["versions"].items() if v)
    device = str(prov.get("device") or "?")
    if prov.get("gpu"):
        device += f" ({prov['gpu']}, CUDA {prov.get('cuda')})"
    threads = prov.get("threads")
    timings = prov.get("timings_s") or {}
    phases = ", ".join(
        f"{k} {fmt.seconds(v)}" for k, v in timings.items() if k != "total" and v is not None
    )
    ps = doc["photoset"]
    machine = ", ".join(
        str(x) for x in (prov.get("cpu") or prov.get("processor"), prov.get("platform")) if x
    )
    rows: list[tuple[str, Any]] = [
        ("Generated", doc["generated"]),
        (
            "Command",
            Markup("<code class='wrap'>{}</code>").format(prov["command"])
            if prov.get("command")
            else Markup("<span class='muted'>not recorded</span>"),
        ),
        ("Software", versions),
        ("Machine", machine or "unknown"),
        ("Device", device + (f"; {fmt.count(threads, 'thread')}" if threads else "")),
        ("Seed", prov.get("seed")),
        (
            "Run time",
            fmt.seconds(prov.get("run_time_s")) + (f" ({phases})" if phases else ""),
        ),
        (
            "Photo set",
            Markup("{} (layout {}){}").format(
                ps["name"],
                ps.get("layout") or "?",
                Markup("; root <code class='wrap'>{}</code>").format(ps["root"])
                if ps.get("root")
                else "",
            ),
        ),
    ]
    for k, v in (doc.get("extra") or {}).items():
        if k != "command":
            timed = str(k).endswith(("_seconds", "_s")) and isinstance(v, int | float)
            name = str(k).removesuffix("_seconds").removesuffix("_s").replace("_", " ")
            name = "Wall time (whole command)" if name == "wall" else name
            rows.append((name if timed else str(k), fmt.seconds(v) if timed else _readable(v)))
    models = []
    roles = {name: role for name, role, _ in model_roles(study)}
    for name, w in prov["models"].items():
        models.append(
            {
                "name": name,
                "role": roles.get(name, ""),
                "source": w.get("source"),
                "arch": w.get("arch") or "–",
                "sha256": w.get("sha256") or "–",
                "path": w.get("path") or "–",
                "seed": w.get("seed") if w.get("seed") is not None else "–",
                "detail": w.get("detail") or "",
            }
        )
    return ReportSection(
        id="provenance",
        title="Provenance",
        template="provenance.html.j2",
        context={"lead": "Enough to rerun this exact study.", "rows": rows, "models": models},
    )


def _readable(value: Any) -> str:
    """An ``extra`` value for a reader: numbers formatted, lists joined."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return fmt.number(value, 4)
    if isinstance(value, list | tuple):
        return " ".join(_readable(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_readable(v)}" for k, v in value.items())
    return str(value)


# --------------------------------------------------------------------------- claim sections


@register_claim_section("seed-depth-ratio")
def ratio_section(
    study: StudyResult, verdict: Verdict, verdicts: Sequence[Verdict], doc: Mapping[str, Any]
) -> ReportSection:
    cfg = study.config
    figures, text = figure_section_parts(
        study, verdicts, ("ratio_boxplots", "threshold_sweep", "overlays", "overlays_control")
    )
    lead = (
        f"The study's metric: the share of each {method_name(study)} map's pixels above "
        f"{cfg.threshold:g}, per layer (Kruskal-Wallis across layers). Next to it, the same "
        "numbers where the claim predicts no effect."
    )
    return ReportSection(
        id="ratio",
        title="The original measurement, and why it misleads"
        if _status(verdict) == "CONFOUNDED"
        else "The original measurement",
        template="claim.html.j2",
        context=_claim_context(
            verdict,
            toc="Original measurement",
            lead=lead,
            note="" if figures else "The ratio phase recorded no photos.",
            tables_after={"ratio_boxplots": _medians_table(verdict, study)},
            figure_text=text,
        ),
        figures=figures,
    )


@register_claim_section("depth-localisation-gridpg")
def gridpg_section(
    study: StudyResult, verdict: Verdict, verdicts: Sequence[Verdict], doc: Mapping[str, Any]
) -> ReportSection:
    grid = study.gridpg
    figures, text = figure_section_parts(study, verdicts, ("gridpg_scores", "gridpg_examples"))
    if grid is None:
        empty = "The grid pointing game did not run."
        counts = ""
    else:
        empty = f"No mosaics were scored: {grid.note}." if grid.note else "No mosaics were scored."
        if grid.n_candidates:
            empty += f" ({fmt.count(grid.n_candidates, 'photo')} qualified.)"
        n_mosaics = len(grid.specs)
        targets = _distinct_targets(grid)
        counts = (
            f"Here: {fmt.count(n_mosaics, 'mosaic')} with "
            f"{fmt.count(targets, 'distinct target photo')}"
            f", drawn from {fmt.count(grid.n_candidates, 'qualifying photo')}. "
            if n_mosaics
            else ""
        )
        if n_mosaics:
            counts += (
                "The verdict's n counts mosaics, so a target photo used in several mosaics is "
                "counted more than once."
                if targets < n_mosaics
                else "The verdict's n counts target photos: each is the target of one mosaic."
            )
    targets_rule = describe_gridpg_targets(
        getattr(study.config, "gridpg_targets", "confident"),
        confidence=getattr(study.config, "gridpg_confidence", 0.9),
    )
    lead = Markup(
        "To test &lsquo;focuses on the label&rsquo; directly, four photos of different classes "
        "are tiled into a 2&times;2 mosaic, and one cell's class (the target) is explained: a "
        "good map puts its mass in that cell. Target photos are photos {}; the selection uses "
        "the model's own output, so the verdict is about those photos. {}"
    ).format(targets_rule, counts)
    return ReportSection(
        id="gridpg",
        title="Ground truth: the grid pointing game",
        template="claim.html.j2",
        context=_claim_context(
            verdict,
            toc="Grid pointing game",
            lead=lead,
            note="" if figures else empty,
            figure_text=text,
        ),
        figures=figures,
    )


@register_claim_section("depth-localisation-boxes")
def boxes_section(
    study: StudyResult, verdict: Verdict, verdicts: Sequence[Verdict], doc: Mapping[str, Any]
) -> ReportSection:
    figures, text = figure_section_parts(study, verdicts, ("box_mass",))
    reasons = reason_texts(verdict)
    return ReportSection(
        id="boxes",
        title="Ground truth: object boxes",
        template="claim.html.j2",
        context=_claim_context(
            verdict,
            toc="Object boxes",
            lead="On photos with an annotated object box, the share of each map's mass inside "
            "the box, per layer, against the box's own share of the image (what a uniform map "
            "scores) and the untrained control.",
            note="" if figures else (reasons[0] if reasons else "No photo had a box."),
            figure_text=text,
        ),
        figures=figures,
    )


@register_claim_section("sanity-randomisation")
def sanity_section(
    study: StudyResult, verdict: Verdict, verdicts: Sequence[Verdict], doc: Mapping[str, Any]
) -> ReportSection:
    figures, text = figure_section_parts(study, verdicts, ("sanity_cascade", "sanity_examples"))
    return ReportSection(
        id="sanity",
        title="Sanity check: randomise the weights",
        template="claim.html.j2",
        context=_claim_context(
            verdict,
            toc="Sanity check",
            lead="If a map explains the trained model, destroying the training must change it "
            "(Adebayo et al., 2018).",
            note=""
            if figures
            else (
                "The randomisation check did not run."
                if study.sanity is None
                else "The randomisation check produced no steps."
            ),
            figure_text=text,
        ),
        figures=figures,
    )


@register_claim_section("native-captum-agreement")
def agreement_section(
    study: StudyResult, verdict: Verdict, verdicts: Sequence[Verdict], doc: Mapping[str, Any]
) -> ReportSection:
    figures, text = figure_section_parts(study, verdicts, ("agreement",))
    return ReportSection(
        id="agreement",
        title="Implementation check: native vs Captum",
        template="claim.html.j2",
        context=_claim_context(
            verdict,
            toc="Implementation check",
            lead=f"The same {method_name(study)} maps from two independent implementations.",
            note="" if figures else "The agreement check did not run.",
            figure_text=text,
        ),
        figures=figures,
    )


@register_claim_section("*")
def generic_claim_section(
    study: StudyResult, verdict: Verdict, verdicts: Sequence[Verdict], doc: Mapping[str, Any]
) -> ReportSection:
    """Any claim without a section of its own: its hypothesis, verdict and reasons."""
    return ReportSection(
        id=f"claim-{verdict.claim.id}",
        title=str(verdict.claim.id),
        template="claim.html.j2",
        context=_claim_context(
            verdict,
            toc=str(verdict.claim.id),
            lead=str(verdict.claim.hypothesis),
            reasons=reason_texts(verdict),
        ),
    )
