"""The report's figures, drawn with matplotlib's object API on an Agg canvas.

Nothing here touches pyplot or the global backend: every figure is a
:class:`matplotlib.figure.Figure` bound to its own :class:`FigureCanvasAgg`, rendered to PNG
bytes and cleared. Each builder takes ``(study, verdicts)`` and returns ``(figure, caption)``,
or ``None`` when the study holds nothing to draw (a phase that did not run, no control model,
no mosaics); :func:`render_figure` calls one by name (looked up at call time, so a test can
replace it), and the report's sections pick the figures they show.

Colours are fixed per layer (:data:`LAYER_COLORS`, Okabe-Ito, colour-blind safe) in every
figure; the model under test is drawn solid/filled, controls dashed/hatched.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from markupsafe import escape

from xai_checks.fmt import number as fmt
from xai_checks.fmt import pvalue as fmt_p
from xai_checks.report.naming import method_name, model_roles, reason_texts

if TYPE_CHECKING:
    from xai_checks.claims.base import Verdict
    from xai_checks.study import ModelRun, StudyResult

__all__ = [
    "FIGURES",
    "LAYER_COLORS",
    "NARROW",
    "RenderedFigure",
    "layer_color",
    "render_figure",
]

DPI = 110
LAYER_COLORS: dict[str, str] = {
    "layer1": "#56B4E9",  # sky blue
    "layer2": "#0072B2",  # blue
    "layer3": "#CC79A7",  # reddish purple
    "layer4": "#D55E00",  # vermillion
}
_FALLBACK = ("#009E73", "#E69F00", "#F0E442", "#000000", "#999999")
MODEL_STYLES: tuple[Any, ...] = ("-", "--", ":", "-.")
CHANCE_COLOR = "#444444"
CONTROL_ROWS = 3
BOUND_COLOR = "#B22222"

_STYLE: dict[str, Any] = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.8,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "image.interpolation": "nearest",
}


@dataclass(frozen=True)
class RenderedFigure:
    """One figure of the report: ``name`` is the PNG's file stem; ``caption`` is HTML."""

    name: str
    title: str
    caption: str
    png: bytes


def layer_color(layer: str, index: int = 0) -> str:
    return LAYER_COLORS.get(layer, _FALLBACK[index % len(_FALLBACK)])


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _style() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(_STYLE):  # type: ignore[arg-type]
        yield


def _figure(width: float, height: float, **kwargs: Any) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained", **kwargs)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=DPI)
    finally:
        fig.clear()
    return buffer.getvalue()


def _arr(x: Any, dtype: Any = float) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if dtype is not None and "float" in str(getattr(x, "dtype", "")):
            x = x.float()
        x = x.numpy()
    return np.asarray(x) if dtype is None else np.asarray(x, dtype=dtype)


def _image(x: Any) -> np.ndarray:
    """A thumbnail as (H, W, 3) uint8 (or float in [0, 1])."""
    a = _arr(x, dtype=None)
    if a.dtype != np.uint8:
        a = np.clip(a.astype(float), 0, 1)
    return a


def _finite(values: Any) -> np.ndarray:
    a = np.asarray(values, dtype=float).ravel()
    return a[np.isfinite(a)]


def _median(values: Any) -> float:
    a = _finite(values)
    return float(np.median(a)) if a.size else math.nan


def _quantile(values: Any, q: float) -> float:
    a = _finite(values)
    return float(np.quantile(a, q)) if a.size else math.nan


def _e(value: Any) -> str:
    """HTML-escaped text as a plain ``str`` (so it concatenates with caption markup as is)."""
    return str(escape(value))


def _verdict(verdicts: Sequence[Verdict], metric: str) -> Verdict | None:
    return next((v for v in verdicts if v.claim.metric == metric), None)


def _main_and_controls(study: StudyResult) -> tuple[str | None, list[str]]:
    """The model under test and the controls, by their recorded roles."""
    names = [name for name, _, _ in model_roles(study)]
    return (names[0] if names else None), names[1:]


def _model_label(study: StudyResult, name: str) -> str:
    source = (study.runs[name].weights or {}).get("source") if name in study.runs else None
    return f"{name} ({source})" if source and source != name else name


def _column(run: ModelRun, key: str) -> np.ndarray:
    """(n, k) array of a per-layer record value; NaN where missing."""
    rows = [
        [float(r[key].get(layer, math.nan)) if r.get(key) else math.nan for layer in run.layers]
        for r in run.records
    ]
    return np.asarray(rows, dtype=float).reshape(-1, len(run.layers))


def _hide_axes(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def _overlay(ax: Any, thumb: Any, heat: Any, *, threshold: float | None) -> None:
    img = _image(thumb)
    h, w = img.shape[:2]
    ax.imshow(img, extent=(0, w, h, 0), interpolation="bilinear")
    if heat is not None:
        m = _arr(heat)
        m = np.where(np.isfinite(m), m, 0.0)
        ax.imshow(
            m, cmap="jet", vmin=0, vmax=1, alpha=0.5, extent=(0, w, h, 0), interpolation="bilinear"
        )
        if threshold is not None and np.nanmax(m) > threshold:
            ys = np.linspace(0, h, m.shape[0], endpoint=False) + h / m.shape[0] / 2
            xs = np.linspace(0, w, m.shape[1], endpoint=False) + w / m.shape[1] / 2
            ax.contour(xs, ys, m, levels=[threshold], colors="white", linewidths=1.1)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    _hide_axes(ax)


def _boxes(
    ax: Any,
    data: Sequence[np.ndarray],
    positions: Sequence[float],
    colors: Sequence[str],
    *,
    width: float = 0.6,
    hatch: str | None = None,
    points: bool = True,
    annotate: bool = True,
    seed: int = 0,
) -> None:
    """Box plots (with the points jittered over them) and the median written above each box."""
    rng = np.random.default_rng(seed)
    for values, pos, color in zip(data, positions, colors, strict=True):
        vals = _finite(values)
        if vals.size == 0:
            ax.text(pos, 0, "no data", ha="center", va="bottom", fontsize=8, color="#777")
            continue
        bp = ax.boxplot(
            [vals],
            positions=[pos],
            widths=width,
            patch_artist=True,
            showfliers=False,
            medianprops={"color": "black", "linewidth": 1.6},
            whiskerprops={"color": "#555"},
            capprops={"color": "#555"},
            boxprops={"edgecolor": "#333"},
        )
        for patch in bp["boxes"]:
            patch.set_facecolor(color if hatch is None else "white")
            patch.set_alpha(0.85 if hatch is None else 1.0)
            if hatch is not None:
                patch.set_hatch(hatch)
                patch.set_edgecolor(color)
                patch.set_linewidth(1.5)
        if points:
            jitter = rng.uniform(-width * 0.28, width * 0.28, size=vals.size)
            ax.scatter(pos + jitter, vals, s=9, color="#222", alpha=0.35, linewidths=0, zorder=3)
        if annotate:
            q1, q3 = np.quantile(vals, [0.25, 0.75])
            inside = vals[vals <= q3 + 1.5 * (q3 - q1)]
            top = float(np.max(inside)) if inside.size else float(q3)
            ax.annotate(
                fmt(np.median(vals)),
                (pos, top),
                xytext=(0, 4),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8.5,
                fontweight="bold",
                color="#222",
            )


def _ticks(
    ax: Any, positions: Sequence[float], labels: Sequence[str], layers: Sequence[str]
) -> None:
    ax.set_xticks(list(positions))
    ax.set_xticklabels(list(labels))
    for tick, layer in zip(ax.get_xticklabels(), layers, strict=False):
        tick.set_color(layer_color(layer))
        tick.set_fontweight("bold")


# --------------------------------------------------------------------------- builders


def ratio_boxplots(study: StudyResult, verdicts: Sequence[Verdict]) -> tuple[Any, str] | None:
    """Per-layer ratio: the model under test, each control model, and the pooled control."""
    main, controls = _main_and_controls(study)
    if main is None or not study.runs[main].records:
        return None
    threshold = study.config.threshold
    seed_v = _verdict(verdicts, "ratio")
    p_main = p_pooled = None
    p_ctrl: dict[str, Any] = {}
    if seed_v is not None:
        p_main = (seed_v.tests.get("primary") or {}).get("pvalue")
        un = seed_v.controls.get("untrained") or {}
        if un.get("ran"):
            p_ctrl[str(un.get("model"))] = (un.get("test") or {}).get("pvalue")
        p_pooled = ((seed_v.controls.get("pooled") or {}).get("test") or {}).get("pvalue")
    panels: list[tuple[str, str, np.ndarray, Any, Sequence[str]]] = []
    run = study.runs[main]
    panels.append((f"{main}", "the study's measurement", _column(run, "ratio"), p_main, run.layers))
    for name in controls:
        c = study.runs[name]
        if c.records:
            panels.append(
                (
                    name,
                    "control: same test, no learning"
                    if c.weights.get("source") == "random"
                    else "control model",
                    _column(c, "ratio"),
                    p_ctrl.get(name),
                    c.layers,
                )
            )
    pooled = _column(run, "ratio_pooled")
    if np.isfinite(pooled).any():
        panels.append(
            (
                f"{main}, pooled",
                "control: every map pooled to the coarsest grid",
                pooled,
                p_pooled,
                run.layers,
            )
        )
    with _style():
        fig = _figure(3.6 * len(panels) + 0.4, 4.0)
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        for i, (ax, (title, sub, values, p, layers)) in enumerate(zip(axes, panels, strict=True)):
            pos = list(range(len(layers)))
            _boxes(
                ax,
                [values[:, j] for j in range(len(layers))],
                pos,
                [layer_color(lay, j) for j, lay in enumerate(layers)],
                seed=i,
            )
            _ticks(ax, pos, layers, layers)
            ax.set_title(f"{title}\n", loc="left")
            ax.text(0, 1.02, sub, transform=ax.transAxes, fontsize=9, color="#555", va="bottom")
            if p is not None:
                ax.text(
                    0.02,
                    0.97,
                    f"Kruskal-Wallis p = {fmt_p(p)}",
                    transform=ax.transAxes,
                    fontsize=9,
                    va="top",
                    ha="left",
                    bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "#ccc"},
                )
        axes[0].set_ylabel(f"share of map pixels above {threshold:g}")
        top = max((float(np.nanmax(p[2])) for p in panels if np.isfinite(p[2]).any()), default=1.0)
        axes[0].set_ylim(bottom=0, top=top * 1.18 + 1e-9)
    n = len(run.records)
    caption = (
        f"<b>How to read:</b> each box is one layer over {n} photos (dots are photos; the number "
        f"above a box is its median). The left panel is the original study's measurement "
        f"&mdash; the share of {method_name(study)} pixels above {threshold:g}. "
        "The other panels repeat it "
        "where the claim predicts <i>no</i> rise: a network that never learned anything, and "
        "the same maps pooled to one common resolution. "
        f"<b>What to conclude:</b> {_ratio_conclusion(seed_v)}"
    )
    return fig, caption


def _ratio_conclusion(v: Verdict | None) -> str:
    """The claim's own verdict and reasons (the report does not re-derive them)."""
    if v is None:
        return "no verdict was computed for this claim."
    reasons = _e("; ".join(reason_texts(v)))
    status = str(getattr(v.status, "value", v.status))
    lead = {
        "CONFOUNDED": "the rise with depth is in the numbers, but a control explains it",
        "SUPPORTED": "the ratio rises with depth, and no control reproduces the rise",
        "REFUTED": "the ratio does not rise with depth here",
    }.get(status, "the evidence is not enough to decide")
    return f"{lead} ({status}: {reasons})." if reasons else f"{lead} ({status})."


def threshold_sweep(study: StudyResult, verdicts: Sequence[Verdict]) -> tuple[Any, str] | None:
    """Median ratio against the threshold, per layer; the model solid, controls dashed."""
    thresholds = list(study.config.sweep)
    runs = [r for r in study.runs.values() if r.records and r.records[0].get("sweep")]
    if not runs or not thresholds:
        return None
    with _style():
        fig = _figure(7.6, 4.2)
        ax = fig.subplots()
        ax.set_yscale("log")
        floor = math.inf
        for m, run in enumerate(runs):
            for j, layer in enumerate(run.layers):
                rows = [r["sweep"].get(layer) for r in run.records if r.get("sweep")]
                rows = [row for row in rows if row is not None and len(row) == len(thresholds)]
                if not rows:
                    continue
                arr = np.asarray(rows, dtype=float)
                med = np.array([_median(arr[:, t]) for t in range(arr.shape[1])])
                med = np.where(med > 0, med, np.nan)
                if np.isfinite(med).any():
                    floor = min(floor, float(np.nanmin(med)))
                ax.plot(
                    thresholds,
                    med,
                    MODEL_STYLES[m % len(MODEL_STYLES)],
                    color=layer_color(layer, j),
                    linewidth=2.2 if m == 0 else 1.6,
                    marker="o" if m == 0 else None,
                    markersize=3.5,
                    label=f"{layer}" if m == 0 else None,
                )
        ax.axvline(study.config.threshold, color="#333", linestyle=":", linewidth=1.2)
        ax.text(
            study.config.threshold,
            1.0,
            f" study's threshold {study.config.threshold:g}",
            transform=ax.get_xaxis_transform(),
            va="top",
            ha="left",
            fontsize=8.5,
            color="#333",
        )
        ax.set_xlabel("threshold on the normalised map")
        ax.set_ylabel("median share of pixels above threshold (log)")
        ax.grid(True, axis="both", which="major")
        from matplotlib.lines import Line2D

        handles, _ = ax.get_legend_handles_labels()
        style_handles = [
            Line2D(
                [],
                [],
                color="#333",
                linestyle=MODEL_STYLES[m % len(MODEL_STYLES)],
                label=_model_label(study, run.name),
            )
            for m, run in enumerate(runs)
        ]
        ax.legend(handles=handles + style_handles, loc="lower left", ncols=2)
    names = [r.name for r in runs]
    caption = (
        "<b>How to read:</b> for each layer, the median share of pixels above a threshold, as "
        f"the threshold moves; solid lines are <b>{_e(names[0])}</b>"
        + (f", dashed lines <b>{_e(', '.join(names[1:]))}</b>" if len(names) > 1 else "")
        + ". The dotted line marks the study's choice. Zero medians are not drawn (log axis). "
        "<b>What to conclude:</b> if the layers keep the same order at every threshold, for "
        "the trained <i>and</i> the untrained network, the ordering is a property of the map "
        "resolution, not of what the network learned; the study's single threshold hides this."
    )
    return fig, caption


@dataclass
class _Cell:
    """One panel of a photo grid: a photo, optionally a map over it, a contour, an outline."""

    thumb: Any
    heat: Any = None
    threshold: float | None = None
    xlabel: str = ""
    outline: tuple[float, float, float, float] | None = None  # x, y, w, h as image fractions


@dataclass
class _Row:
    title: str
    cells: list[_Cell]
    color: str = "#222"


def _photo_grid(
    rows: Sequence[_Row],
    columns: Sequence[tuple[str, str]],
    *,
    cell: float,
    title: str | None = None,
) -> Any:
    """The one builder of photo grids (overlays, mosaics, the sanity cascade).

    ``columns`` are (heading, colour) shown over the first row; each row has its own title.
    """
    titled = any(r.title for r in rows)
    ncols = len(columns)
    fig = _figure(
        cell * ncols + 0.2,
        (cell + (0.62 if titled else 0.45)) * len(rows) + (0.35 if title else 0.1),
    )
    fig.get_layout_engine().set(h_pad=0.02, w_pad=0.02, hspace=0.0, wspace=0.0)
    subfigs = fig.subfigures(len(rows), 1, squeeze=False)[:, 0]
    from matplotlib.patches import Rectangle

    for r, (sub, row) in enumerate(zip(subfigs, rows, strict=True)):
        axes = sub.subplots(1, ncols, squeeze=False)[0]
        if row.title:
            sub.suptitle(
                row.title, x=0.01, ha="left", fontsize=9.5, fontweight="bold", color=row.color
            )
        for j, (ax, c) in enumerate(zip(axes, row.cells, strict=False)):
            _overlay(ax, c.thumb, c.heat, threshold=c.threshold)
            if c.outline is not None:
                h, w = _image(c.thumb).shape[:2]
                x0, y0, cw, ch = c.outline
                xy, size = (x0 * w + 1.5, y0 * h + 1.5), (cw * w - 3, ch * h - 3)
                ax.add_patch(Rectangle(xy, *size, fill=False, edgecolor="white", linewidth=2.6))
                ax.add_patch(
                    Rectangle(
                        xy, *size, fill=False, edgecolor="black", linewidth=1.0, linestyle="--"
                    )
                )
            if r == 0:
                heading, color = columns[j]
                ax.set_title(heading, fontsize=9.5, color=color)
            if c.xlabel:
                ax.set_xlabel(c.xlabel, fontsize=8.5, labelpad=2)
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontsize=10.5, color="#333")
    return fig


def _layer_columns(layers: Sequence[str], first: str) -> list[tuple[str, str]]:
    return [(first, "#222")] + [(lay, layer_color(lay, j)) for j, lay in enumerate(layers)]


def _overlay_grid(
    study: StudyResult, run: ModelRun, *, title: str, rows: int | None = None
) -> Any | None:
    examples = [e for e in run.examples if e.get("thumb") is not None][:rows]
    if not examples:
        return None
    layers = list(run.layers)
    threshold = study.config.threshold
    grid_rows = []
    for ex in examples:
        conf = ex.get("confidence")
        correct = ex.get("correct")
        mark = "✓" if correct else "✗" if correct is not None else ""
        maps = ex.get("maps") or {}
        ratios = ex.get("ratio") or {}
        grid_rows.append(
            _Row(
                f"true: {ex.get('label_name', '?')}   ·   predicted: {ex.get('pred_name', '?')}"
                f" ({fmt(100 * conf, 3) + '%' if conf is not None else '?'}) {mark}",
                [_Cell(ex["thumb"])]
                + [
                    _Cell(
                        ex["thumb"],
                        maps.get(layer),
                        threshold,
                        f"ratio {fmt(ratios.get(layer))}",
                    )
                    for layer in layers
                ],
                color="#1a7f37" if correct else "#b42318" if correct is not None else "#222",
            )
        )
    with _style():
        return _photo_grid(grid_rows, _layer_columns(layers, "photo"), cell=1.75, title=title)


def overlays(study: StudyResult, verdicts: Sequence[Verdict]) -> tuple[Any, str] | None:
    main, _ = _main_and_controls(study)
    if main is None:
        return None
    run = study.runs[main]
    fig = _overlay_grid(
        study,
        run,
        title=f"{_model_label(study, main)}: {method_name(study)} for the "
        f"{study.config.target} class at each layer",
    )
    if fig is None:
        return None
    t = study.config.threshold
    caption = (
        "<b>How to read:</b> each row is a photo (title: true class, the model's prediction and "
        "its confidence; green when right). Each column overlays one layer's "
        f"{method_name(study)} map on the "
        "photo (red = high, blue = low); the white outline encloses the pixels above "
        f"{t:g}, whose share is the ratio written underneath. "
        "<b>What to conclude:</b> deeper layers give fewer, larger blobs &mdash; the deepest map "
        "is the coarsest and is upsampled to the photo, so its outlined "
        "area is large by construction. Whether a blob "
        "sits on the labelled object is judged by eye here; the grid pointing game below "
        "measures it."
    )
    return fig, caption


def overlays_control(study: StudyResult, verdicts: Sequence[Verdict]) -> tuple[Any, str] | None:
    _, controls = _main_and_controls(study)
    if not controls:
        return None
    run = study.runs[controls[0]]
    untrained = (run.weights or {}).get("source") == "random"
    fig = _overlay_grid(
        study,
        run,
        rows=CONTROL_ROWS,
        title=f"{_model_label(study, run.name)}: "
        + ("an untrained network, same photos" if untrained else "same photos"),
    )
    if fig is None:
        return None
    conclusion = (
        "these maps come from a network that learned nothing about the classes; where they "
        "look like the trained network's maps above, the maps' shape comes from the "
        "architecture and the photo, not from what the network learned."
    )
    caption = (
        f"<b>How to read:</b> the same grid for the control network "
        f"<b>{_e(run.name)}</b> (first {min(CONTROL_ROWS, len(run.examples))} photos). "
        f"<b>What to conclude:</b> {conclusion}"
    )
    return fig, caption


def box_mass(study: StudyResult, verdicts: Sequence[Verdict]) -> tuple[Any, str] | None:
    """Share of the map's mass inside the annotated object box (when the photos have boxes)."""
    runs = [r for r in study.runs.values() if any(rec.get("box_mass") for rec in r.records)]
    if not runs:
        return None
    layers = list(runs[0].layers)
    with _style():
        fig = _figure(7.6, 3.8)
        ax = fig.subplots()
        width = 0.8 / len(runs)
        for m, run in enumerate(runs):
            values = _column(run, "box_mass")
            pos = [j + (m - (len(runs) - 1) / 2) * width for j in range(len(layers))]
            _boxes(
                ax,
                [values[:, j] for j in range(len(layers))],
                pos,
                [layer_color(lay, j) for j, lay in enumerate(layers)],
                width=width * 0.85,
                hatch=None if m == 0 else "///",
                seed=m,
            )
        _ticks(ax, range(len(layers)), layers, layers)
        ax.set_ylabel("share of map mass inside the object box")
        ax.set_ylim(0, 1.08)
        _model_legend(ax, study, [r.name for r in runs])
    n = sum(1 for r in runs[0].records if r.get("box_mass"))
    caption = (
        f"<b>How to read:</b> for the {n} photos with an object box, the share of each map's "
        "mass (energy) inside the box, per layer; filled boxes are "
        f"{_e(runs[0].name)}, hatched ones the control. "
        "<b>What to conclude:</b> higher is better localisation; compare it with the box's own "
        "share of the image, which is what a uniform map would score."
    )
    return fig, caption


def _model_legend(ax: Any, study: StudyResult, names: Sequence[str]) -> None:
    from matplotlib.patches import Patch

    handles = [
        Patch(
            facecolor="#999" if m == 0 else "white",
            edgecolor="#555",
            hatch=None if m == 0 else "///",
            label=_model_label(study, name),
        )
        for m, name in enumerate(names)
    ]
    ax.legend(handles=handles, loc="upper left")


def gridpg_scores(study: StudyResult, verdicts: Sequence[Verdict]) -> tuple[Any, str] | None:
    grid = study.gridpg
    if grid is None:
        return None
    layers = list(grid.layers)
    scores = {
        n: np.asarray(s, dtype=float).reshape(-1, len(layers)) for n, s in grid.scores.items()
    }
    scores = {n: s for n, s in scores.items() if len(s)}
    if not scores:
        return None
    v = _verdict(verdicts, "gridpg")
    chance = float((v.claim.params.get("chance", 0.25)) if v is not None else 0.25)
    names = list(scores)
    with _style():
        fig = _figure(7.8, 4.2)
        ax = fig.subplots()
        width = 0.8 / len(names)
        for m, name in enumerate(names):
            pos = [j + (m - (len(names) - 1) / 2) * width for j in range(len(layers))]
            _boxes(
                ax,
                [scores[name][:, j] for j in range(len(layers))],
                pos,
                [layer_color(lay, j) for j, lay in enumerate(layers)],
                width=width * 0.85,
                hatch=None if m == 0 else "///",
                seed=m,
            )
        ax.axhline(chance, color=CHANCE_COLOR, linestyle="--", linewidth=1.3)
        ax.text(
            1.005,
            chance,
            f"chance\n{chance:g}",
            ha="left",
            va="center",
            fontsize=8.5,
            color=CHANCE_COLOR,
            transform=ax.get_yaxis_transform(),
        )
        _ticks(ax, range(len(layers)), layers, layers)
        ax.set_ylabel("share of map mass in the target cell")
        ax.set_ylim(0, 1.1)
        _model_legend(ax, study, names)
    n = len(next(iter(scores.values())))
    caption = (
        f"<b>How to read:</b> {n} mosaics of four photos of different classes; the map explains "
        "one cell's class, and the score is the share of the map's mass inside that cell "
        f"(dashed line: chance, {chance:g}). Filled boxes: <b>{_e(names[0])}</b>"
        + (f"; hatched: <b>{_e(', '.join(names[1:]))}</b>" if len(names) > 1 else "")
        + ". <b>What to conclude:</b> this is the direct test of &lsquo;deeper layers focus on "
        "the label&rsquo;: the trained network should climb well above chance with depth while "
        "the untrained one stays near it. " + _gridpg_conclusion(v)
    )
    return fig, caption


def _gridpg_conclusion(v: Verdict | None) -> str:
    if v is None:
        return ""
    med = v.medians
    bits = []
    for name, m in med.items():
        if m:
            vals = list(m.items())
            bits.append(
                f"{_e(name)}: median {fmt(vals[0][1])} at {_e(vals[0][0])} &rarr; "
                f"{fmt(vals[-1][1])} at {_e(vals[-1][0])}"
            )
    return ("Here: " + "; ".join(bits) + ".") if bits else ""


def gridpg_examples(study: StudyResult, verdicts: Sequence[Verdict]) -> tuple[Any, str] | None:
    grid = study.gridpg
    if grid is None or not grid.examples:
        return None
    layers = list(grid.layers)
    rows = []
    for ex in grid.examples:
        cy, cx = divmod(int(ex.get("cell", 0)), 2)
        outline = (cx / 2, cy / 2, 0.5, 0.5)
        maps = ex.get("maps") or {}
        scores = ex.get("scores") or {}
        cells = [_Cell(ex["thumb"], outline=outline)]
        for layer in layers:
            score = scores.get(layer)
            text = fmt(score) if score is not None and math.isfinite(score) else "n/a (empty map)"
            cells.append(_Cell(ex["thumb"], maps.get(layer), None, f"in cell: {text}", outline))
        rows.append(
            _Row(
                f"{ex.get('model', '?')}: explain “{ex.get('target_name', '?')}” (outlined cell)",
                cells,
            )
        )
    with _style():
        fig = _photo_grid(rows, _layer_columns(layers, "mosaic"), cell=1.9)
    caption = (
        "<b>How to read:</b> example mosaics with the explained cell outlined; each column "
        "overlays one layer's map, and the number under it is the share of the map's mass "
        "inside the outlined cell (chance: 0.25). "
        "<b>What to conclude:</b> a map that explains the class should pile up inside the "
        "outline; spread over all four cells it says nothing about the class."
    )
    return fig, caption


def sanity_cascade(study: StudyResult, verdicts: Sequence[Verdict]) -> tuple[Any, str] | None:
    sanity = study.sanity
    if sanity is None or not sanity.steps:
        return None
    v = _verdict(verdicts, "randomisation")
    primary = (v.tests.get("primary") or {}) if v is not None else {}
    bound = float(primary.get("bound_mean", 0.5))
    steps = list(sanity.steps)
    absrho = [np.abs(_finite(sanity.rho.get(s, []))) for s in steps]
    med = np.array([_median(a) for a in absrho])
    lo = np.array([_quantile(a, 0.25) for a in absrho])
    hi = np.array([_quantile(a, 0.75) for a in absrho])
    x = np.arange(len(steps))
    with _style():
        fig = _figure(7.6, 3.9)
        ax = fig.subplots()
        ax.fill_between(
            x, lo, hi, color="#0072B2", alpha=0.18, linewidth=0, label="middle half of photos (IQR)"
        )
        rng = np.random.default_rng(0)
        for i, a in enumerate(absrho):
            ax.scatter(
                i + rng.uniform(-0.08, 0.08, a.size),
                a,
                s=10,
                color="#222",
                alpha=0.3,
                linewidths=0,
                zorder=3,
            )
        ax.plot(x, med, "-o", color="#0072B2", linewidth=2.2, markersize=5, label="median")
        for i, m in enumerate(med):
            if math.isfinite(m):
                ax.annotate(
                    fmt(m, 2),
                    (i, m),
                    xytext=(6, 4),
                    textcoords="offset points",
                    fontsize=8.5,
                    fontweight="bold",
                )
        ax.axhline(
            bound,
            color=BOUND_COLOR,
            linestyle="--",
            linewidth=1.3,
            label=f"bound {bound:g}: below it the map has changed",
        )
        ax.set_xticks(list(x))
        ax.set_xticklabels([s if i == 0 else f"+ {s}" for i, s in enumerate(steps)])
        ax.set_xlabel("randomised so far (cumulative, from the output down)")
        ax.set_ylabel(f"|Spearman ρ| with the original {sanity.layer} map")
        ax.set_ylim(0, 1.05)
        ax.legend(loc="upper right")
    n = max((len(sanity.rho.get(s, [])) for s in steps), default=0)
    caption = (
        f"<b>How to read:</b> the {_e(sanity.layer)} map of {n} photos is recomputed after "
        "re-initialising the network's weights block by block, from the classifier down; each "
        "point is how similar (rank correlation) a photo's map stays to its original. "
        f"<b>What to conclude:</b> an explanation that depends on what the network learned must "
        f"fall below the red line as soon as the weights go; " + _sanity_conclusion(v, steps, med)
    )
    return fig, caption


def _sanity_conclusion(v: Verdict | None, steps: Sequence[str], med: np.ndarray) -> str:
    if v is None:
        return ""
    if v.status.value == "SUPPORTED":
        return "here it does, at every step."
    return _e("; ".join(reason_texts(v))) + "."


def sanity_examples(study: StudyResult, verdicts: Sequence[Verdict]) -> tuple[Any, str] | None:
    sanity = study.sanity
    if sanity is None or not sanity.examples:
        return None
    examples = sanity.examples
    thumb = next((e.get("thumb") for e in examples if e.get("thumb") is not None), None)
    cells: list[_Cell] = []
    columns: list[tuple[str, str]] = []
    if thumb is not None:
        cells.append(_Cell(thumb))
        columns.append(("photo", "#222"))
    for i, ex in enumerate(examples):
        base = thumb if thumb is not None else np.zeros((*_arr(ex["map"]).shape, 3))
        step = ex.get("step", "?")
        rho = sanity.rho.get(step)
        label = f"ρ = {fmt(rho[0], 2)}" if rho else ("reference" if step == "original" else "")
        cells.append(_Cell(base, ex.get("map"), None, label))
        columns.append((step if step == "original" or i <= 1 else f"+ {step}", "#222"))
    with _style():
        fig = _photo_grid([_Row("", cells)], columns, cell=1.55)
    caption = (
        "<b>How to read:</b> one photo's map, original then after each cumulative "
        "randomisation step; ρ is its rank correlation with the original. "
        "<b>What to conclude:</b> the map should stop resembling the original; a map that keeps "
        "its shape with random weights is showing the image's edges, not the model's reasoning."
    )
    return fig, caption


def agreement(study: StudyResult, verdicts: Sequence[Verdict]) -> tuple[Any, str] | None:
    if not study.agreement:
        return None
    v = _verdict(verdicts, "agreement")
    tol = float(v.claim.params.get("tolerance", 1e-5)) if v is not None else 1e-5
    layers = list(study.agreement)
    vals = np.array(
        [float(study.agreement[k]) if study.agreement[k] is not None else math.nan for k in layers]
    )
    finite = vals[np.isfinite(vals) & (vals > 0)]
    lo = 10 ** math.floor(math.log10(min(float(finite.min()), tol) if finite.size else tol) - 2)
    hi = 10 ** math.ceil(math.log10(max(float(finite.max()) if finite.size else tol, tol)) + 2)
    shown = np.where(np.isfinite(vals), np.maximum(vals, lo), np.nan)
    with _style():
        fig = _figure(7.6, 0.32 * len(layers) + 1.25)
        ax = fig.subplots()
        y = np.arange(len(layers))
        ax.barh(
            y,
            np.nan_to_num(shown, nan=lo),
            color=[layer_color(k, i) for i, k in enumerate(layers)],
            height=0.62,
        )
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ax.axvline(tol, color=BOUND_COLOR, linestyle="--", linewidth=1.3)
        ax.set_title(
            f"tolerance {tol:g} (dashed)",
            loc="right",
            fontsize=9,
            color=BOUND_COLOR,
            fontweight="normal",
        )
        for i, val in enumerate(vals):
            label = "0 (identical)" if val == 0 else fmt(val) if math.isfinite(val) else "n/a"
            ax.text(
                shown[i] * 1.4 if math.isfinite(shown[i]) else lo * 1.4,
                i,
                label,
                va="center",
                fontsize=8.5,
            )
        ax.set_yticks(list(y))
        ax.set_yticklabels(layers)
        for tick, layer in zip(ax.get_yticklabels(), layers, strict=True):
            tick.set_color(layer_color(layer))
            tick.set_fontweight("bold")
        ax.invert_yaxis()
        ax.grid(True, axis="x")
        ax.grid(False, axis="y")
        ax.set_xlabel("largest |native − Captum| over all pixels and photos (log)")
    caption = (
        f"<b>How to read:</b> the largest pixel difference between this package's "
        f"{method_name(study)} and "
        "Captum's on the same photos, per layer, against the tolerance (dashed). "
        "<b>What to conclude:</b> bars left of the line mean the numbers above do not depend on "
        "which implementation computed the maps."
    )
    return fig, caption


#: file stem (= builder name) -> title; the sections pick the figures they show
FIGURES: dict[str, str] = {
    "ratio_boxplots": "The study's measurement, with its controls",
    "threshold_sweep": "Does the choice of threshold matter?",
    "overlays": "What the maps look like",
    "overlays_control": "The same photos, control network",
    "box_mass": "Map mass inside the object box",
    "gridpg_scores": "Grid pointing game scores",
    "gridpg_examples": "Example mosaics",
    "sanity_cascade": "Cascading randomisation",
    "sanity_examples": "One photo through the cascade",
    "agreement": "Native vs Captum",
}
#: figures drawn narrower than the page (plots rather than photo grids)
NARROW = frozenset({"threshold_sweep", "gridpg_scores", "sanity_cascade", "agreement", "box_mass"})


def _title(name: str, study: StudyResult) -> str:
    if name == "threshold_sweep":
        return f"Does the choice of {study.config.threshold:g} matter?"
    if name == "overlays_control":
        _, controls = _main_and_controls(study)
        return f"The same photos, {controls[0]} network" if controls else FIGURES[name]
    return FIGURES[name]


def render_figure(
    name: str, study: StudyResult, verdicts: Sequence[Verdict]
) -> RenderedFigure | None:
    """The figure ``name`` rendered to PNG, or ``None`` when the study has nothing to draw."""
    builder = globals()[name]  # looked up at call time, so a test can replace a builder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        built = builder(study, verdicts)
    if built is None:
        return None
    fig, caption = built
    with _style():
        png = _png(fig)
    return RenderedFigure(name, _title(name, study), caption, png)
