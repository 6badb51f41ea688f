"""``report.html``: one self-contained page (CSS inline, figures as base64 PNG).

The page reads top to bottom as an argument: the claim and the bottom line, the verdicts, then
one section per phase (the study's own measurement with its controls, ground truth, the sanity
check, implementation agreement), then what was skipped and where the numbers came from.
"""

from __future__ import annotations

import base64
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from html import escape
from importlib import resources
from string import Template
from typing import Any

from xai_checks.report.figures import RenderedFigure, fmt, fmt_p, layer_color

__all__ = ["STATUS_COLORS", "badge", "render_html"]

STATUS_COLORS = {
    "SUPPORTED": "#1a7f37",
    "REFUTED": "#cf222e",
    "CONFOUNDED": "#bf8700",
    "INCONCLUSIVE": "#6e7781",
}
_SKIPPED_ROWS = 40


def _resource(name: str) -> str:
    return resources.files("xai_checks.report").joinpath(name).read_text(encoding="utf-8")


def badge(status: Any) -> str:
    value = getattr(status, "value", str(status))
    return f'<span class="badge {escape(value)}">{escape(value)}</span>'


def _e(x: Any) -> str:
    return escape("" if x is None else str(x))


def _verdict(verdicts: Sequence[Any], metric: str) -> Any:
    return next((v for v in verdicts if v.claim.metric == metric), None)


def _status(v: Any) -> str:
    return "" if v is None else v.status.value


# --------------------------------------------------------------------------- header


def _weights_line(name: str, weights: Mapping[str, Any]) -> str:
    source = weights.get("source", "unknown")
    bits = [f"<b>{_e(name)}</b>:"]
    if weights.get("detail"):
        bits.append(_e(weights["detail"]))
    else:
        bits.append(f"weights <i>{_e(source)}</i>")
    if weights.get("sha256"):
        bits.append(
            f'<span class="mono muted">&middot; sha256 {_e(str(weights["sha256"])[:12])}…</span>'
        )
    return " ".join(bits)


def _bottom_line(verdicts: Sequence[Any]) -> tuple[str, str]:
    """(status class, HTML) for the page's one-line conclusion."""
    seed = _verdict(verdicts, "ratio")
    grid = _verdict(verdicts, "gridpg")
    sanity = _verdict(verdicts, "randomisation")
    lines: list[str] = []
    cls = _status(seed) or _status(grid) or "INCONCLUSIVE"
    if seed is not None:
        s = seed.status.value
        if s == "CONFOUNDED":
            why = []
            un = seed.controls.get("untrained") or {}
            pooled = seed.controls.get("pooled") or {}
            if un.get("ran") and un.get("passes"):
                why.append("an untrained network passes the same test")
            if pooled.get("ran") and not pooled.get("passes"):
                why.append(
                    "the effect disappears when the layers are compared at the same map resolution"
                )
            lines.append(
                f"{badge(s)} The study's own evidence does not show what it claims: the ratio "
                f"does rise with depth, but {' and '.join(why) or 'a control reproduces it'}."
            )
        elif s == "SUPPORTED":
            lines.append(
                f"{badge(s)} The ratio rises with depth and neither control reproduces it."
            )
        elif s == "REFUTED":
            lines.append(
                f"{badge(s)} The study's test fails on these photos: "
                f"{_e(seed.reasons[0] if seed.reasons else '')}."
            )
        else:
            lines.append(
                f"{badge(s)} The study's test cannot be decided here: "
                f"{_e('; '.join(seed.reasons))}."
            )
    if grid is not None:
        g = grid.status.value
        if g == "SUPPORTED":
            lines.append(
                f"{badge(g)} Measured against ground truth (grid pointing game), "
                "deeper layers <b>do</b> localise the label, above chance and above "
                "the untrained control."
            )
        elif g == "CONFOUNDED":
            lines.append(
                f"{badge(g)} On mosaics, deeper layers localise the label, but no "
                "better than an untrained network."
            )
        elif g == "REFUTED":
            lines.append(
                f"{badge(g)} Measured against ground truth (grid pointing game), the "
                f"claim fails: {_e('; '.join(grid.reasons))}."
            )
        else:
            lines.append(
                f"{badge(g)} Ground truth could not be measured: {_e('; '.join(grid.reasons))}."
            )
    if sanity is not None and sanity.status.value != "SUPPORTED":
        lines.append(f"{badge(sanity.status)} Sanity check: {_e('; '.join(sanity.reasons))}.")
    if not lines:
        lines.append("No claims were evaluated.")
    headline = _headline(seed, grid)
    if headline:
        lines.insert(0, f"<b>{headline}</b>")
    return cls, "".join(f"<p>{line}</p>" for line in lines)


_SEED_WORDS = {
    "SUPPORTED": "The study's own test holds up",
    "REFUTED": "The study's own test fails",
    "CONFOUNDED": "The study's own test cannot support its claim",
    "INCONCLUSIVE": "The study's own test is inconclusive",
}
_GRID_WORDS = {
    "SUPPORTED": "measured against ground truth, deeper layers do localise the label",
    "REFUTED": "measured against ground truth, deeper layers do not localise the label better",
    "CONFOUNDED": "on ground truth, the trained network localises no better than an untrained one",
    "INCONCLUSIVE": "ground truth could not be measured",
}


def _headline(seed: Any, grid: Any) -> str:
    """The one-line bottom line."""
    parts = []
    if seed is not None:
        parts.append(_SEED_WORDS.get(seed.status.value, ""))
    if grid is not None:
        parts.append(_GRID_WORDS.get(grid.status.value, ""))
    parts = [p for p in parts if p]
    if not parts:
        return ""
    joiner = "; but " if len(parts) == 2 and seed.status.value != grid.status.value else "; "
    return joiner.join(parts) + "."


def _header(study: Any, verdicts: Sequence[Any], doc: Mapping[str, Any]) -> str:
    seed = _verdict(verdicts, "ratio")
    ps = doc["photoset"]
    counts = ps["counts"]
    classes = ps["classes"]
    names = [study.under_test.name, *study.controls]
    parts: list[str] = []
    hypothesis = (
        seed.claim.hypothesis
        if seed is not None
        else (verdicts[0].claim.hypothesis if verdicts else "")
    )
    if hypothesis:
        parts.append(
            '<blockquote class="claim"><span class="who">The published claim, as tested</span>'
            f"{_e(hypothesis)}</blockquote>"
        )
    if len(classes) == 1:
        what = f"all of class <b>{_e(next(iter(classes)))}</b>"
    elif classes:
        top = Counter(classes).most_common(3)
        shown = ", ".join(f"{_e(k)}" for k, _ in top)
        what = f"{len(classes)} classes (e.g. {shown}{', …' if len(classes) > 3 else ''})"
    else:
        what = "no photos were used"
    skipped = counts["skipped"]
    photos = f"<b>{counts['used']}</b> photos from <b>{_e(ps['name'])}</b> &mdash; {what}" + (
        f'; <a href="#skipped">{skipped} skipped</a>' if skipped else "; none skipped"
    )
    cfg = study.config
    models = "<br>".join(
        _weights_line(
            n
            + f" [{study.runs[n].model_class or 'model'}]"
            + (" (under test)" if i == 0 and len(names) > 1 else " (control)" if i else ""),
            study.runs[n].weights or {},
        )
        for i, n in enumerate(names)
    )
    method = (
        f"Grad-CAM ({_e(cfg.backend)} backend) for the <b>{_e(cfg.target)}</b> class at "
        + " ".join(
            f'<span class="layer-chip" style="background:{layer_color(lay, j)}">{_e(lay)}</span>'
            for j, lay in enumerate(cfg.layers)
        )
        + f"; ratio = share of map pixels above <b>{cfg.threshold:g}</b>"
    )
    acc = study.runs[names[0]].accuracy if names else math.nan
    acc_txt = (
        f"; {names[0]} top-1 on these photos: <b>{fmt(100 * acc, 3)}%</b>"
        if math.isfinite(acc)
        else ""
    )
    parts.append(
        '<dl class="facts">'
        f"<dt>Photos</dt><dd>{photos}{acc_txt}</dd>"
        f"<dt>Models</dt><dd>{models or 'none'}</dd>"
        f"<dt>Method</dt><dd>{method}</dd>"
        "</dl>"
    )
    cls, bottom = _bottom_line(verdicts)
    parts.append(f'<div class="bottom-line {cls}"><b>Bottom line</b>{bottom}</div>')
    return "\n".join(parts)


# --------------------------------------------------------------------------- verdicts


def _key_numbers(v: Any) -> tuple[str, str]:
    """(p-value cell, effect cell) for the verdict table."""
    primary = v.tests.get("primary") or {}
    p = primary.get("pvalue")
    method = primary.get("method", "")
    p_cell = "–"
    if p is not None and "pvalue" in primary:
        p_cell = f'{fmt_p(p)}<span class="method">{_e(method)}</span>'
    effect = primary.get("effect")
    e_cell = "–"
    if effect is not None:
        name = str(primary.get("effect_name") or "effect").replace("_", " ")
        name = name.replace("epsilon squared", "ε²")
        e_cell = f'{fmt(effect)}<span class="method">{_e(name)}</span>'
    elif v.claim.metric == "randomisation" and primary.get("medians"):
        vals = [x for x in primary["medians"].values() if x is not None and math.isfinite(x)]
        if vals:
            e_cell = (
                f'{fmt(max(vals), 2)}<span class="method">largest median |ρ| '
                f"(bound {_e(_g(primary.get('bound')))})</span>"
            )
    elif v.claim.metric == "agreement" and primary.get("statistic") is not None:
        e_cell = (
            f'{fmt(primary["statistic"])}<span class="method">max |diff| '
            f"(tolerance {_e(_g(primary.get('tolerance')))})</span>"
        )
    return p_cell, e_cell


def _g(x: Any) -> str:
    try:
        return f"{float(x):g}"
    except (TypeError, ValueError):
        return "–"


def _verdict_table(verdicts: Sequence[Any]) -> str:
    if not verdicts:
        return '<p class="note">No claims were evaluated.</p>'
    rows = []
    for v in verdicts:
        p_cell, e_cell = _key_numbers(v)
        reasons = "".join(f"<li>{_e(r)}</li>" for r in v.reasons) or "<li>–</li>"
        rows.append(
            "<tr>"
            f'<td class="claim"><b>{_e(v.claim.id)}</b><span class="hyp">'
            f"{_e(v.claim.hypothesis)}</span></td>"
            f"<td>{badge(v.status)}</td>"
            f'<td class="num">{_e(v.n)}</td>'
            f'<td class="num">{p_cell}</td>'
            f'<td class="num">{e_cell}</td>'
            f"<td><ul>{reasons}</ul></td>"
            "</tr>"
        )
    return (
        '<table class="verdicts"><thead><tr><th style="width:26%">Claim</th><th>Verdict</th>'
        '<th class="num">n</th><th class="num">Key p-value</th>'
        '<th class="num" style="min-width:120px">Effect</th>'
        "<th>Why</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        '<p class="muted" style="font-size:13.5px">'
        f"{badge('SUPPORTED')} the test passes and the controls say it means something; "
        f"{badge('REFUTED')} the test fails; "
        f"{badge('CONFOUNDED')} the test passes, but also where it should not (or vanishes "
        "under a control), so it cannot tell the claimed cause from an artefact; "
        f"{badge('INCONCLUSIVE')} too little data, or the checks disagree. "
        "All thresholds were fixed before the data were seen.</p>"
    )


# --------------------------------------------------------------------------- sections


def _figure(fig: RenderedFigure, *, narrow: bool = False) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    cls = ' class="narrow"' if narrow else ""
    return (
        f'<figure id="fig-{_e(fig.name)}"><h3>{_e(fig.title)}</h3>'
        f'<img{cls} src="data:image/png;base64,{data}" alt="{_e(fig.title)}">'
        f"<figcaption>{fig.caption}</figcaption></figure>"
    )


def _medians_table(v: Any) -> str:
    if v is None or not v.medians:
        return ""
    layers = list(v.claim.layers)
    head = "".join(
        f'<th class="num" style="color:{layer_color(lay, j)}">{_e(lay)}</th>'
        for j, lay in enumerate(layers)
    )
    rows = "".join(
        f"<tr><td>{_e(name)}</td>"
        + "".join(f'<td class="num">{fmt(m.get(lay))}</td>' for lay in layers)
        + "</tr>"
        for name, m in v.medians.items()
    )
    return (
        '<table class="compact"><thead><tr><th>median ratio</th>' + head + "</tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def _section(num: int, anchor: str, title: str, lead: str, body: str) -> str:
    return (
        f'<section id="{anchor}"><h2><span class="num">{num}.</span>{_e(title)}</h2>'
        f'<p class="lead">{lead}</p>{body}</section>'
    )


def _skipped(study: Any, doc: Mapping[str, Any]) -> str:
    items: list[str] = []
    cfg = study.config
    missing = [p for p in ("gridpg", "sanity", "agreement") if p not in cfg.phases]
    if missing:
        items.append(f"Phases not run (by configuration): {_e(', '.join(missing))}.")
    if not study.controls:
        items.append("No control model: the untrained-network control could not be run.")
    grid = study.gridpg
    if grid is not None and grid.note:
        items.append(f"Grid pointing game: {_e(grid.note)}.")
    skipped = doc["photoset"]["skipped"]
    if skipped:
        reasons = Counter(s["reason"] for s in skipped)
        summary = "; ".join(f"{n} &times; {_e(r)}" for r, n in reasons.most_common(5))
        items.append(f"{len(skipped)} photo file(s) skipped: {summary}.")
    out = []
    if items:
        out.append("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
    if skipped:
        rows = "".join(
            f'<tr><td class="mono wrap">{_e(s["file"])}</td><td>{_e(s["reason"])}</td></tr>'
            for s in skipped[:_SKIPPED_ROWS]
        )
        more = (
            f'<p class="muted">… and {len(skipped) - _SKIPPED_ROWS} more (all listed in '
            "<code>results.json</code>).</p>"
            if len(skipped) > _SKIPPED_ROWS
            else ""
        )
        out.append(
            "<table><thead><tr><th>File</th><th>Why it was skipped</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>{more}"
        )
    if not items:
        out.append(
            '<p class="note">Nothing skipped: every photo listed was used and every phase ran.</p>'
        )
    return "".join(out)


def _secs(v: Any) -> str:
    try:
        s = float(v)
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(s):
        return "–"
    if s >= 120:
        return f"{s / 60:.1f} min"
    return f"{s:.1f} s"


def _provenance(study: Any, doc: Mapping[str, Any]) -> str:
    prov = doc["provenance"]
    versions = ", ".join(f"{_e(k)} {_e(v)}" for k, v in prov["versions"].items() if v)
    device = _e(prov.get("device") or "?")
    if prov.get("gpu"):
        device += f" ({_e(prov['gpu'])}, CUDA {_e(prov.get('cuda'))})"
    timings = prov.get("timings_s") or {}
    run_time = prov.get("run_time_s")
    phases = ", ".join(
        f"{_e(k)} {_secs(v)}" for k, v in timings.items() if k != "total" and v is not None
    )
    rows = [
        ("Generated", _e(doc["generated"])),
        (
            "Command",
            f'<code class="wrap">{_e(prov["command"])}</code>'
            if prov.get("command")
            else '<span class="muted">not recorded</span>',
        ),
        ("Software", versions),
        ("Machine", f"{_e(prov.get('platform'))}; {_e(prov.get('processor'))}"),
        ("Device", f"{device}; {_e(prov.get('threads'))} threads"),
        ("Seed", _e(prov.get("seed"))),
        (
            "Run time",
            (_secs(run_time) if run_time is not None else "–")
            + (f' <span class="muted">({phases})</span>' if phases else ""),
        ),
        (
            "Photo set",
            f"{_e(doc['photoset']['name'])} (layout {_e(doc['photoset']['layout'])})"
            + (
                f'; root <code class="wrap">{_e(doc["photoset"]["root"])}</code>'
                if doc["photoset"].get("root")
                else ""
            ),
        ),
    ]
    extra = {k: v for k, v in (doc.get("extra") or {}).items() if k != "command"}
    for k, v in extra.items():
        rows.append((_e(k), f'<span class="wrap">{_e(v)}</span>'))
    table = (
        '<table class="compact">'
        + "".join(f'<tr><th style="width:150px">{k}</th><td>{v}</td></tr>' for k, v in rows)
        + "</table>"
    )
    models = "".join(
        f"<tr><td><b>{_e(name)}</b></td><td>{_e(w.get('source'))}</td><td>{_e(w.get('arch'))}"
        f'</td><td class="mono wrap">{_e(w.get("sha256") or "–")}</td>'
        f'<td class="mono wrap">{_e(w.get("path") or "–")}</td>'
        f"<td>{_e(w.get('seed') if w.get('seed') is not None else '–')}</td>"
        f"<td>{_e(w.get('detail') or '')}</td></tr>"
        for name, w in prov["models"].items()
    )
    models_table = (
        "<h3>Weights</h3><table><thead><tr><th>Model</th><th>Source</th><th>Arch</th>"
        '<th style="width:24%">sha256</th><th style="width:22%">File</th><th>Seed</th>'
        f"<th>Detail</th></tr></thead><tbody>{models}</tbody></table>"
    )
    return table + models_table


def render_html(
    study: Any,
    verdicts: Sequence[Any],
    figures: Sequence[RenderedFigure],
    doc: Mapping[str, Any],
) -> str:
    """The whole page as a string."""
    by_section: dict[str, list[RenderedFigure]] = {}
    for fig in figures:
        by_section.setdefault(fig.section, []).append(fig)
    cfg = study.config
    seed_v = _verdict(verdicts, "ratio")
    grid_v = _verdict(verdicts, "gridpg")
    sanity_v = _verdict(verdicts, "randomisation")
    agree_v = _verdict(verdicts, "agreement")

    def figs(section: str, empty: str) -> str:
        found = by_section.get(section, [])
        if not found:
            return _note(empty)
        return "".join(
            _figure(
                f,
                narrow=f.name
                in ("threshold_sweep", "gridpg_scores", "sanity_cascade", "agreement", "box_mass"),
            )
            + (_medians_table(seed_v) if f.name == "ratio_boxplots" else "")
            for f in found
        )

    sections: list[tuple[str, str, str, str]] = []
    sections.append(
        (
            "verdicts",
            "Verdicts",
            "Each claim is a test with controls decided in advance; the verdict says whether the "
            "evidence supports it.",
            _verdict_table(verdicts),
        )
    )
    sections.append(
        (
            "ratio",
            "The original measurement, and why it misleads"
            if _status(seed_v) == "CONFOUNDED"
            else "The original measurement",
            f"The study's metric: the share of each map's pixels above {cfg.threshold:g}, per "
            "layer (Kruskal-Wallis across layers). Next to it, the same numbers where the claim "
            f"predicts no effect. Verdict: {badge(seed_v.status) if seed_v else '–'}",
            figs("ratio", "The ratio phase recorded no photos."),
        )
    )
    grid = study.gridpg
    if grid is None:
        grid_empty = "The grid pointing game did not run."
    else:
        grid_empty = (
            f"No mosaics were scored: {_e(grid.note)}." if grid.note else "No mosaics were scored."
        )
        if grid.n_candidates:
            grid_empty += f" ({grid.n_candidates} photos qualified.)"
    sections.append(
        (
            "gridpg",
            "Ground truth: the grid pointing game",
            "To test &lsquo;focuses on the label&rsquo; directly, four photos the model gets right "
            "are tiled into a 2&times;2 mosaic and one cell's class is explained: a good map puts "
            f"its mass in that cell. Verdict: {badge(grid_v.status) if grid_v else '–'}",
            figs("gridpg", grid_empty),
        )
    )
    sections.append(
        (
            "sanity",
            "Sanity check: randomise the weights",
            "If a map explains the trained model, destroying the training must change it "
            f"(Adebayo et al., 2018). Verdict: {badge(sanity_v.status) if sanity_v else '–'}",
            figs(
                "sanity",
                "The randomisation check did not run."
                if study.sanity is None
                else "The randomisation check produced no steps.",
            ),
        )
    )
    sections.append(
        (
            "agreement",
            "Implementation check: native vs Captum",
            "The same maps from two independent Grad-CAM implementations. "
            f"Verdict: {badge(agree_v.status) if agree_v else '–'}",
            figs("agreement", "The agreement check did not run."),
        )
    )
    sections.append(
        (
            "skipped",
            "What was skipped, and why",
            "Photos that could not be used and parts of the study that did not run.",
            _skipped(study, doc),
        )
    )
    sections.append(
        (
            "provenance",
            "Provenance",
            "Enough to rerun this exact study.",
            _provenance(study, doc),
        )
    )
    body = "\n".join(
        _section(i + 1, anchor, title, lead, content)
        for i, (anchor, title, lead, content) in enumerate(sections)
    )
    toc = "".join(f'<a href="#{a}">{_e(t.split(":")[0])}</a>' for a, t, *_ in sections)
    seed_title = "Do deeper layers' Grad-CAM maps focus on the label?"
    title = seed_title if seed_v is not None else "xai-checks report"
    return Template(_resource("report.html")).substitute(
        title=_e(title),
        css=_resource("report.css"),
        version=_e(study.provenance.get("xai_checks", "")),
        generated=_e(doc["generated"]),
        header=_header(study, verdicts, doc),
        toc=toc,
        sections=body,
        schema=_e(f"{doc['schema']} v{doc['schema_version']}"),
    )
