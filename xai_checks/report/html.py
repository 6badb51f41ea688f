"""``report.html``: one page (CSS inline, no script, nothing fetched from elsewhere) that links
its figures, the PNG files beside it; rendered from Jinja2 templates with autoescape on.

The page reads top to bottom as an argument: the claim and the bottom line, the verdicts, then
one section per evaluated claim (see :mod:`xai_checks.report.sections`), then what was skipped
and where the numbers came from.
"""

from __future__ import annotations

import base64
import functools
import math
import urllib.parse
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup

from xai_checks import fmt
from xai_checks.report.figures import layer_color
from xai_checks.report.naming import (
    method_name,
    model_class,
    model_roles,
    reason_texts,
    see_more,
)
from xai_checks.report.sections import FigureFile, ReportSection, figure_png

if TYPE_CHECKING:
    from xai_checks.claims.base import Verdict
    from xai_checks.report.schema import ResultsDocument
    from xai_checks.result_records import PhotosetRecord
    from xai_checks.study import StudyResult

__all__ = ["STATUS_COLORS", "environment", "render_html"]

STATUS_COLORS = {
    "SUPPORTED": "#1a7f37",
    "REFUTED": "#cf222e",
    "CONFOUNDED": "#bf8700",
    "INCONCLUSIVE": "#6e7781",
}


@functools.cache
def environment() -> jinja2.Environment:
    """The report's Jinja2 environment: package templates, autoescape on, undefined is loud."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("xai_checks.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals["png_uri"] = _png_uri
    return env


def _png_uri(figure: Any) -> str:
    """Where an ``<img>`` finds the figure: the file beside the page once the writer has
    written it (each figure is stored once), else the PNG itself as a data URI."""
    if isinstance(figure, FigureFile):
        return urllib.parse.quote(str(figure))
    return "data:image/png;base64," + base64.b64encode(figure_png(figure)).decode("ascii")


def _template(source: str) -> jinja2.Template:
    env = environment()
    if "{{" in source or "{%" in source:
        return env.from_string(source)
    return env.get_template(source)


def _status(verdict: Verdict) -> str:
    if verdict is None:
        return ""
    if isinstance(verdict, Mapping):
        return str(verdict.get("status") or "")
    return str(getattr(verdict.status, "value", verdict.status))


def _verdict(verdicts: Sequence[Verdict], metric: str) -> Verdict | None:
    return next((v for v in verdicts if getattr(v.claim, "metric", None) == metric), None)


@dataclass
class _Rendered:
    id: str
    title: str
    context: Mapping[str, Any]
    status: str
    html: Markup


def _render_section(section: ReportSection) -> _Rendered:
    context = dict(section.context)
    context.setdefault("lead", context.get("hypothesis", ""))
    context.setdefault("verdict", None)
    html = _template(section.template).render(section=section)
    return _Rendered(section.id, section.title, context, _status(context["verdict"]), Markup(html))


# --------------------------------------------------------------------------- header

#: the colour of the bottom-line box for each reconciled status of ``claims.bottom_line``
_BOTTOM_CLASS = {
    "holds": "SUPPORTED",
    "does not hold": "REFUTED",
    "undermined": "CONFOUNDED",
    "mixed": "CONFOUNDED",
    "not judged": "INCONCLUSIVE",
}


def _bottom_line(verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """The page's conclusion: :func:`xai_checks.claims.bottom_line` reconciles the verdicts
    (a supported depth claim beside a failed sanity check says the two together), then each
    claim's own verdict and reasons, then how the claims were corrected for multiplicity."""
    from xai_checks.claims import bottom_line, multiplicity_note

    if not verdicts:
        return {
            "status": "INCONCLUSIVE",
            "verdict": "",
            "headline": "",
            "lines": [{"status": "", "text": "No claims were evaluated."}],
        }
    overall = bottom_line(verdicts)
    points = overall["points"]
    lines = [
        {"status": "", "text": str(point).rstrip(".") + "."}
        for point in (points if isinstance(points, list) else [])
    ]
    for v in verdicts:
        status = _status(v)
        reasons = reason_texts(v)
        if status == "SUPPORTED" and getattr(v.claim, "metric", "") in ("agreement",):
            continue
        text = f"{v.claim.id}: " + ("; ".join(reasons) if reasons else status.lower()) + "."
        lines.append({"status": status, "text": text})
    note = multiplicity_note(verdicts)
    if note:
        lines.append({"status": "", "text": note})
    return {
        "status": _BOTTOM_CLASS.get(str(overall["status"]), "INCONCLUSIVE"),
        "verdict": str(overall["status"]),
        "headline": str(overall["text"]),
        "lines": lines,
    }


def _photos_fact(photoset: PhotosetRecord, study: StudyResult) -> Markup:
    classes = photoset.classes
    if len(classes) == 1:
        what = Markup("all of class <b>{}</b>").format(next(iter(classes)))
    elif classes:
        top = [k for k, _ in Counter(classes).most_common(3)]
        what = Markup("{} classes (e.g. {}{})").format(
            len(classes), ", ".join(top), ", …" if len(classes) > 3 else ""
        )
    else:
        what = Markup("no photos were used")
    skipped = photoset.counts.skipped
    text = Markup("<b>{}</b> photos from <b>{}</b> &mdash; {}").format(
        photoset.counts.used, photoset.name, what
    )
    text += (
        Markup('; <a href="#skipped">{} skipped</a>').format(skipped)
        if skipped
        else Markup("; none skipped")
    )
    roles = model_roles(study)
    if roles:
        name, _, run = roles[0]
        acc = run.accuracy
        if math.isfinite(acc):
            text += Markup("; {} top-1 on these photos: <b>{}%</b>").format(
                name, fmt.number(100 * acc, 3)
            )
    return text


def _models_fact(study: StudyResult) -> Markup:
    lines = []
    for name, role, run in model_roles(study):
        weights = run.weights or {}
        cls = model_class(run)
        bits = Markup("<b>{}</b> ({}): ").format(name, role)
        described = [Markup("{}").format(cls)] if cls else []
        if weights.get("detail"):
            described.append(Markup("{}").format(weights["detail"]))
        else:
            described.append(Markup("weights <i>{}</i>").format(weights.get("source", "unknown")))
        bits += Markup(", ").join(described)
        if weights.get("sha256"):
            sha = Markup(' <span class="mono muted">&middot; weights file sha256 {}…</span>')
            bits += sha.format(str(weights["sha256"])[:12])
        lines.append(bits)
    return Markup("<br>").join(lines) if lines else Markup("none")


def _method_fact(study: StudyResult) -> Markup:
    cfg = study.config
    chips = Markup(" ").join(
        Markup('<span class="layer-chip" style="background:{}">{}</span>').format(
            layer_color(layer, j), layer
        )
        for j, layer in enumerate(cfg.layers)
    )
    return Markup(
        "{} ({} backend) for the <b>{}</b> class at {}; ratio = share of map pixels above <b>{}</b>"
    ).format(method_name(study), cfg.backend, cfg.target, chips, f"{cfg.threshold:g}")


def render_html(
    study: StudyResult,
    verdicts: Sequence[Verdict],
    sections: Sequence[ReportSection],
    results: ResultsDocument,
) -> str:
    """The whole page as a string."""
    env = environment()
    seed = _verdict(verdicts, "ratio")
    first = seed if seed is not None else (verdicts[0] if verdicts else None)
    hypothesis = (
        (getattr(first, "hypothesis", "") or first.claim.hypothesis) if first is not None else ""
    )
    title = (
        f"Do deeper layers' {method_name(study)} maps focus on the label?"
        if seed is not None
        else "xai-checks report"
    )
    css = env.loader.get_source(env, "report.css")[0] if env.loader else ""
    return env.get_template("page.html.j2").render(
        title=title,
        css=Markup(css),
        version=study.provenance.get("xai_checks", ""),
        generated=results.generated,
        hypothesis=hypothesis,
        facts=[
            ("Photos", _photos_fact(results.photoset, study)),
            ("Models", _models_fact(study)),
            ("Method", _method_fact(study)),
        ],
        bottom=_bottom_line(verdicts),
        next_steps=see_more(verdicts, study),
        sections=[_render_section(s) for s in sections],
        schema=f"{results.schema} v{results.schema_version}",
    )
