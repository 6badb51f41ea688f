"""``faithfulness``: do the pixels a map ranks first matter to the model's output?

For each photo of a seeded, class-stratified sample (as the sanity phase draws its own), each
layer of the study and the study's CAM method, the photo's pixels are ranked by the map and
removed in that order, most relevant first (MoRF) and least relevant first (LeRF), at K
fractions (default 10 %, ..., 90 %), by ROAD's noisy linear imputation (Rong et al., ICML 2022)
unless another removal is named. The target class's softmax probability and logit are read
from the **model under test** at each step. Per photo and layer the numbers are the MoRF and
LeRF areas under the curve and the ROAD gap, LeRF - MoRF (higher: more faithful).

The same curves are computed for two control maps, each paired with the same photo:

``permuted``
    the map's own values at the layer's resolution, shuffled over its positions (a seeded
    permutation per photo and layer), then brought to the input size as the map itself is:
    the same histogram and the same blob size, no spatial information;
``untrained``
    the map of the study's untrained control model (a seeded re-initialised copy) for the same
    target class: a map that knows nothing the model learned, that orders the perturbation while
    the output is still read from the model under test.

Every photo's noise and permutation come from seeds derived from the study's seed and the
photo's chunk, so the numbers are the same in one process, under ``torchrun`` or under xdist.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from xai_checks import faithfulness as F
from xai_checks._util import model_device
from xai_checks.cam.pipeline import canonical
from xai_checks.data.loading import ImageLoadError
from xai_checks.data.photoset import stratified_subset
from xai_checks.models import derived_seed
from xai_checks.phases.base import Phase, PhaseContext
from xai_checks.report.sections import ReportSection
from xai_checks.study import load_tensors, make_cam

if TYPE_CHECKING:
    from xai_checks.study import StudyResult

__all__ = ["MAP_KINDS", "FaithfulnessPhase", "FaithfulnessRun"]

#: the map under test, then its controls (in the order tables and figures show them)
MAP_KINDS = ("model", "permuted", "untrained")
ORDERS: tuple[F.Order, ...] = ("morf", "lerf")


@dataclass
class FaithfulnessRun:
    """Per photo: the perturbation curves of each map kind, layer and order.

    ``prob[kind][order]`` and ``logit[kind][order]`` are (n_photos, n_layers, K) arrays of the
    target class's probability and logit after removing ``fractions[k]`` of the pixels;
    ``files[i]`` and ``targets[i]`` name photo ``i``. ``kinds`` lists the map kinds that ran
    (``untrained`` needs a control model in the study).
    """

    layers: tuple[str, ...]
    fractions: tuple[float, ...]
    removal: str
    kinds: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    prob: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    logit: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.files)

    def curves(self, kind: str, order: str, *, of: str = "prob") -> np.ndarray:
        """(n_photos, n_layers, K) curve values (``of``: ``"prob"`` or ``"logit"``)."""
        table = self.prob if of == "prob" else self.logit
        return np.asarray(table[kind][order], dtype=float)

    def auc(self, kind: str, order: str, *, of: str = "prob") -> np.ndarray:
        """(n_photos, n_layers) area under the curve, as :meth:`faithfulness.Curves.auc`."""
        values = self.curves(kind, order, of=of)
        n, n_layers, k = values.shape
        flat = torch.from_numpy(values.reshape(n * n_layers, k))
        curves = F.Curves(fractions=self.fractions, prob=flat, logit=flat)
        return curves.auc(kind="prob").numpy().reshape(n, n_layers)

    def gap(self, kind: str = "model", *, of: str = "prob") -> np.ndarray:
        """(n_photos, n_layers) ROAD gap, LeRF AUC - MoRF AUC (higher: more faithful)."""
        return self.auc(kind, "lerf", of=of) - self.auc(kind, "morf", of=of)

    def to_dict(self) -> dict[str, Any]:
        def rows(table: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
            return {
                kind: {order: np.asarray(v, dtype=float).tolist() for order, v in by.items()}
                for kind, by in table.items()
            }

        return {
            "layers": list(self.layers),
            "fractions": list(self.fractions),
            "removal": self.removal,
            "kinds": list(self.kinds),
            "options": dict(self.options),
            "files": list(self.files),
            "targets": list(self.targets),
            "gap": {kind: self.gap(kind).tolist() for kind in self.kinds},
            "prob": rows(self.prob),
            "logit": rows(self.logit),
        }


def _permuted(raw: Tensor, size: tuple[int, int], scale: Tensor | None, seeds: list[int]) -> Tensor:
    """Each photo's raw map with its positions shuffled (seeded per photo), made canonical."""
    flat = raw.reshape(raw.shape[0], -1)
    out = torch.empty_like(flat)
    for i, seed in enumerate(seeds):
        gen = torch.Generator().manual_seed(seed)
        out[i] = flat[i, torch.randperm(flat.shape[1], generator=gen).to(flat.device)]
    return canonical(out.reshape(raw.shape), size, scale=scale)


def output_reader(model: nn.Module) -> nn.Module:
    """The module that scores the perturbed photos: the model under test itself, or on CPU,
    for a model with 2-d convolutions, a private copy in the channels_last layout. The copy has
    the same weights; CPU convolution kernels run faster on that layout and its outputs differ
    from the model's by float32 rounding only. A model that cannot be copied is used as is."""
    if model_device(model).type != "cpu" or not any(
        isinstance(m, nn.Conv2d) for m in model.modules()
    ):
        return model
    try:
        return copy.deepcopy(model).to(memory_format=torch.channels_last)
    except Exception:  # a module deepcopy cannot copy: only slower, never wrong
        return model


#: the reason the faithfulness claims give when their phase did not run
NOT_RUN = (
    "the faithfulness phase did not run: it is opt-in for its cost (add it with --phases, "
    "choose a faithfulness claim with --claim, or mark a pytest test with it)"
)


class FaithfulnessPhase(Phase):
    """Deletion / insertion curves under ROAD removal for the map and its control maps."""

    name: ClassVar[str] = "faithfulness"
    title: ClassVar[str] = "deletion and insertion curves (MoRF, LeRF) under ROAD removal"
    needs: ClassVar[tuple[str, ...]] = ("ratio",)
    options: ClassVar[dict[str, Any]] = {
        # photos in the seeded, class-stratified sample: the largest min_n of the built-in
        # faithfulness claims (a test keeps them equal), so a run of the phase can decide them.
        # Each photo costs 3 maps x layers x 2 orders x K ROAD imputations and forwards of the
        # model under test (216 for a ResNet-50's 4 stages and K = 9), which is why the phase
        # is opt-in (OPT_IN_PHASES); --faithfulness-photos N sets the count
        "images": 600,
        "fractions": F.DEFAULT_FRACTIONS,
        "removal": "road",
        # perturbed photos per forward pass: a few dozen keep a CPU's caches warm; on a GPU
        # larger batches pay
        "batch_size": 16,
    }

    def run(self, context: PhaseContext) -> FaithfulnessRun:
        config = context.config
        opts = self.settings(config)
        fractions = tuple(float(f) for f in opts["fractions"])
        removal: F.Removal = opts["removal"]
        if removal not in F.REMOVALS:
            raise ValueError(f"faithfulness: removal {removal!r}; choose from {F.REMOVALS}")
        layers = config.used_layers
        control = context.controls.get("untrained") or next(iter(context.controls.values()), None)
        kinds = MAP_KINDS if control is not None else MAP_KINDS[:2]
        out = FaithfulnessRun(
            layers=layers,
            fractions=fractions,
            removal=removal,
            kinds=kinds,
            options={
                "images": int(opts["images"]),
                "fractions": list(fractions),
                "removal": removal,
                "control_model": None if control is None else _control_name(context),
            },
        )
        photoset = context.photoset
        samples = stratified_subset(
            [s for s in photoset if str(s.path) not in context.skipped],
            limit=int(opts["images"]),
            seed=derived_seed(config.seed, "faithfulness/photos"),
        )
        chunk = config.batch_size
        chunks = [samples[s : s + chunk] for s in range(0, len(samples), chunk)]
        mine = [(k, c) for k, c in enumerate(chunks) if context.shard.mine(k)]
        transform = config.preprocess.build(photoset.transform_kind)
        model = context.model
        device = model_device(model)
        reader = output_reader(model)
        engine = make_cam(model, layers, config)
        control_engine = None if control is None else make_cam(control, layers, config)
        # ROAD's noise is 0.01 of the [0, 1] pixel range; normalised photos carry it per channel
        pre = config.preprocess
        channel_std = list(pre.std) if pre.transform is None else None

        def work() -> list[tuple[int, list[str], list[int], dict[str, Any], dict[str, Any]]]:
            done = []
            for step, (k, part) in enumerate(mine):
                try:
                    x = load_tensors(part, transform).to(device)
                except ImageLoadError:
                    continue  # a photo the ratio phase read but that no longer loads
                labels = torch.tensor([s.label for s in part], device=device)
                result = engine(x, targets=labels if config.target == "true" else None)
                targets = result.targets.to(device)
                size = (int(x.shape[-2]), int(x.shape[-1]))
                maps: dict[str, list[Tensor]] = {"model": [result.maps[la] for la in layers]}
                seeds = [
                    derived_seed(config.seed, f"faithfulness/permute/{s.label}/{s.path.name}")
                    for s in part
                ]
                maps["permuted"] = [
                    _permuted(result.raw[la], size, result.magnitude.get(la), seeds)
                    for la in layers
                ]
                if control_engine is not None:
                    c = control_engine(x, targets=targets)
                    maps["untrained"] = [c.maps[la] for la in layers]
                # every map kind, layer and order of the chunk in one call: the photos are
                # scored once unperturbed and then in large batches of perturbed copies
                masks = torch.cat(
                    [
                        F.removal_masks(m.to(device), fractions, order=order)
                        for order in ORDERS
                        for kind in kinds
                        for m in maps[kind]
                    ],
                    dim=1,
                )
                slots = len(ORDERS) * len(kinds) * len(layers)
                gen = torch.Generator().manual_seed(
                    derived_seed(config.seed, f"faithfulness/noise/{k}")
                )
                curves = F.perturbation_curves_from_masks(
                    reader,
                    x,
                    masks,
                    targets,
                    fractions=fractions * slots,
                    removal=removal,
                    generator=gen,
                    channel_std=channel_std,
                    batch_size=int(opts["batch_size"]),
                )
                shape = (len(part), len(ORDERS), len(kinds), len(layers), len(fractions))
                p = curves.prob.detach().cpu().double().reshape(shape)
                lo = curves.logit.detach().cpu().double().reshape(shape)
                prob: dict[str, Any] = {kind: {} for kind in kinds}
                logit: dict[str, Any] = {kind: {} for kind in kinds}
                for o, order in enumerate(ORDERS):
                    for j, kind in enumerate(kinds):
                        prob[kind][order] = p[:, o, j].numpy()
                        logit[kind][order] = lo[:, o, j].numpy()
                files = [str(s.path) for s in part]
                done.append((k, files, [int(t) for t in targets.cpu()], prob, logit))
                if context.progress:
                    context.progress("faithfulness", step + 1, len(mine))
            return done

        gathered = sorted(
            (item for part in context.shard.run("faithfulness", work) for item in part),
            key=lambda t: t[0],
        )
        empty = np.empty((0, len(layers), len(fractions)))
        for kind in kinds:
            out.prob[kind] = {}
            out.logit[kind] = {}
            for order in ORDERS:
                out.prob[kind][order] = (
                    np.concatenate([g[3][kind][order] for g in gathered]) if gathered else empty
                )
                out.logit[kind][order] = (
                    np.concatenate([g[4][kind][order] for g in gathered]) if gathered else empty
                )
        out.files = [f for g in gathered for f in g[1]]
        out.targets = [t for g in gathered for t in g[2]]
        return out

    def schema(self) -> dict[str, Any]:
        curve = {"type": "array", "items": {"type": "array", "items": {"type": "array"}}}
        return {
            "type": ["object", "null"],
            "description": (
                "Per photo, layer and map kind (model, permuted, untrained): the target "
                "class's probability and logit after removing each fraction of the pixels in "
                "the map's order (morf: most relevant first; lerf: least relevant first), and "
                "the ROAD gap, LeRF AUC - MoRF AUC. Arrays are [photo][layer][fraction]."
            ),
            "required": ["layers", "fractions", "removal", "kinds", "files", "gap", "prob"],
            "properties": {
                "layers": {"type": "array", "items": {"type": "string"}},
                "fractions": {"type": "array", "items": {"type": "number"}},
                "removal": {"enum": ["road", "blur", "mean", "zero"]},
                "kinds": {"type": "array", "items": {"enum": list(MAP_KINDS)}},
                "options": {"type": "object"},
                "files": {"type": "array", "items": {"type": "string"}},
                "targets": {"type": "array", "items": {"type": "integer"}},
                "gap": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "array",
                        "items": {"type": "array", "items": {"type": ["number", "null"]}},
                    },
                },
                "prob": {"type": "object", "additionalProperties": {"type": "object"}},
                "logit": {"type": "object", "additionalProperties": {"type": "object"}},
            },
            "x-curve": curve,
        }

    def report_section(self, study: StudyResult) -> ReportSection | None:
        run = self.output(study)
        if run is None or run.n == 0:
            return None
        return ReportSection(
            id="faithfulness-curves",
            title="Deletion and insertion curves per layer",
            template="claim.html.j2",
            context={
                "lead": (
                    f"{run.n} photos; pixels removed by {run.removal.upper()} in the map's "
                    "order; the target probability is read from the model under test."
                ),
                "figure_text": {
                    "faithfulness_curves": {
                        "title": "Target probability as pixels are removed",
                        "caption": (
                            "Per layer: mean over photos with a 95% t-interval band, most "
                            "relevant first (MoRF, solid; lower is more faithful) and least "
                            "relevant first (LeRF, dashed; higher is more faithful), for the "
                            "map under test and its controls (the same map permuted, and the "
                            "untrained model's map)."
                        ),
                    }
                },
            },
            figures={"faithfulness_curves": curves_figure(run)},
        )


def _control_name(context: PhaseContext) -> str:
    return "untrained" if "untrained" in context.controls else next(iter(context.controls))


_KIND_COLORS = {"model": "#0072B2", "permuted": "#999999", "untrained": "#D55E00"}
_KIND_LABELS = {"model": "map under test", "permuted": "permuted map", "untrained": "untrained map"}


def curves_figure(run: FaithfulnessRun) -> Any:
    """Per layer: mean MoRF and LeRF curves with a 95 % t-interval band, per map kind."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from scipy import stats as sps

    n_layers = len(run.layers)
    fig = Figure(figsize=(3.0 * n_layers, 3.0), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n_layers, sharey=True, squeeze=False)[0]
    x = np.asarray(run.fractions)
    for j, (ax, layer) in enumerate(zip(axes, run.layers, strict=True)):
        for kind in run.kinds:
            for order, style in (("morf", "-"), ("lerf", "--")):
                values = run.curves(kind, order)[:, j, :]
                values = values[np.isfinite(values).all(axis=1)]
                if len(values) == 0:
                    continue
                mean = values.mean(axis=0)
                ax.plot(
                    x,
                    mean,
                    style,
                    color=_KIND_COLORS[kind],
                    label=f"{_KIND_LABELS[kind]}, {order.upper()}" if j == 0 else None,
                )
                if len(values) > 1:
                    sem = values.std(axis=0, ddof=1) / math.sqrt(len(values))
                    half = sps.t.ppf(0.975, len(values) - 1) * sem
                    ax.fill_between(
                        x, mean - half, mean + half, color=_KIND_COLORS[kind], alpha=0.15
                    )
        ax.set_title(layer)
        ax.set_xlabel("fraction of pixels removed")
    axes[0].set_ylabel("target probability")
    fig.legend(loc="outside lower center", ncol=3, fontsize=8)
    return fig


def gap_figure(run: FaithfulnessRun, *, kinds: tuple[str, ...]) -> Any:
    """Mean ROAD gap per layer (shallow to deep) with a 95 % t-interval, per map kind."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from scipy import stats as sps

    fig = Figure(figsize=(5.0, 3.2), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    x = np.arange(len(run.layers))
    for shift, kind in enumerate(k for k in kinds if k in run.kinds):
        gap = run.gap(kind)
        mean = np.nanmean(gap, axis=0)
        n = np.isfinite(gap).sum(axis=0)
        sem = np.nanstd(gap, axis=0, ddof=1) / np.sqrt(np.maximum(n, 1))
        half = sps.t.ppf(0.975, np.maximum(n - 1, 1)) * sem
        ax.errorbar(
            x + 0.08 * (shift - 1),
            mean,
            yerr=half,
            marker="o",
            capsize=3,
            color=_KIND_COLORS[kind],
            label=_KIND_LABELS[kind],
        )
    ax.axhline(0.0, color="#444444", linewidth=0.8)
    ax.set_xticks(x, list(run.layers))
    ax.set_ylabel("ROAD gap (LeRF - MoRF AUC)")
    ax.legend(fontsize=8)
    return fig
