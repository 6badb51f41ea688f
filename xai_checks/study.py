"""The study engine: stream photos through models -> Grad-CAM -> per-image numbers.

One pass over the photo set serves every model (the pretrained model and its untrained
control see the same decoded batches). Only per-image numbers are kept, plus a small, fixed
number of example maps for the report, so memory stays flat in the number of photos.

Phases (each optional):

``ratio``
    per image and layer: the high-activation ratio (the original study's metric), the same
    after pooling every map to the coarsest layer's grid (the resolution control), a threshold
    sweep, and, where the photo set has boxes, the energy pointing game.
``gridpg``
    the grid pointing game on 2x2 mosaics of photos the *first* model classifies correctly and
    confidently; every model is scored on the same mosaics.
``sanity``
    cascading parameter randomisation (Adebayo et al. 2018) of the first model, from the top.
``agreement``
    native vs Captum backends on the first photos.
"""

from __future__ import annotations

import copy
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats as sps
from torch import Tensor, nn

from xai_checks import __version__
from xai_checks._util import IMAGENET_MEAN, IMAGENET_STD, model_device
from xai_checks.cam import DEFAULT_LAYERS, GradCAM
from xai_checks.data import PhotoSet, Sample, class_name, iter_batches, load_image, make_transform
from xai_checks.metrics import (
    DEFAULT_THRESHOLDS,
    box_mask,
    grid_pointing_score,
    high_activation_ratio,
    make_mosaic,
    mass_in_region,
    pool_to_grid,
    sample_mosaic_specs,
    threshold_sweep,
)

__all__ = [
    "PHASES",
    "GridPGRun",
    "ModelRun",
    "SanityRun",
    "StudyConfig",
    "StudyResult",
    "run_study",
]

PHASES = ("ratio", "gridpg", "sanity", "agreement")
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class StudyConfig:
    """Everything that decides a study's numbers. Recorded in every result."""

    layers: tuple[str, ...] = DEFAULT_LAYERS
    threshold: float = 0.85
    sweep: tuple[float, ...] = DEFAULT_THRESHOLDS
    target: Literal["true", "predicted"] = "true"
    backend: Literal["native", "captum"] = "native"
    batch_size: int = 8
    seed: int = 0
    keep_examples: int = 6
    gridpg_mosaics: int = 48
    gridpg_confidence: float = 0.9
    sanity_images: int = 8
    agreement_images: int = 8
    phases: tuple[str, ...] = PHASES

    def __post_init__(self) -> None:
        unknown = set(self.phases) - set(PHASES)
        if unknown:
            raise ValueError(f"unknown phases {sorted(unknown)}; choose from {PHASES}")
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1); got {self.threshold}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.target not in ("true", "predicted"):
            raise ValueError("target must be 'true' or 'predicted'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelRun:
    """Per-image numbers for one model over the photo set."""

    name: str
    weights: dict[str, Any]
    layers: tuple[str, ...]
    records: list[dict[str, Any]] = field(default_factory=list)
    #: a few photos' canonical maps (float16, 112x112) and thumbnails, for the report
    examples: list[dict[str, Any]] = field(default_factory=list)

    def column(self, key: str) -> np.ndarray:
        """(n_images, n_layers) array of a per-layer metric (``ratio``, ``ratio_pooled``...)."""
        return np.array(
            [
                [r[key].get(layer, np.nan) for layer in self.layers]
                for r in self.records
                if key in r
            ],
            dtype=float,
        ).reshape(-1, len(self.layers))

    def sweep(self) -> np.ndarray:
        """(n_images, n_layers, n_thresholds) array."""
        return np.array(
            [[r["sweep"][layer] for layer in self.layers] for r in self.records], dtype=float
        )

    @property
    def accuracy(self) -> float:
        if not self.records:
            return float("nan")
        return float(np.mean([r["correct"] for r in self.records]))


@dataclass
class GridPGRun:
    """GridPG scores on shared mosaics: ``scores[model]`` is (n_mosaics, n_layers)."""

    layers: tuple[str, ...]
    specs: list[dict[str, Any]] = field(default_factory=list)
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    n_candidates: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""


@dataclass
class SanityRun:
    """Cascading randomisation: ``rho[step]`` is the per-image Spearman rho with the original."""

    layer: str
    steps: list[str] = field(default_factory=list)
    rho: dict[str, list[float]] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class StudyResult:
    """A study's numbers, ready for claims and the report."""

    config: StudyConfig
    photoset: dict[str, Any]
    runs: dict[str, ModelRun]
    gridpg: GridPGRun | None = None
    sanity: SanityRun | None = None
    agreement: dict[str, float] | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


def _provenance(device: torch.device) -> dict[str, Any]:
    import captum
    import scipy
    import torchvision

    info: dict[str, Any] = {
        "xai_checks": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "captum": captum.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def _weights_of(model: nn.Module) -> dict[str, Any]:
    info = getattr(model, "xai_weights", None)
    if info is not None and hasattr(info, "to_dict"):
        return dict(info.to_dict())
    return {"source": "user", "arch": type(model).__name__}


def _thumb(images: Tensor, size: int = 112) -> Tensor:
    """Denormalised RGB thumbnails in [0, 1], uint8, (N, size, size, 3)."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    rgb = (images.cpu().float() * std + mean).clamp(0, 1)
    rgb = F.interpolate(
        rgb, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return (rgb * 255).round().to(torch.uint8).permute(0, 2, 3, 1)


def _small(maps: Tensor, size: int = 112) -> Tensor:
    return (
        F.interpolate(
            maps.unsqueeze(1).float(), size=(size, size), mode="bilinear", align_corners=False
        )[:, 0]
        .clamp(0, 1)
        .half()
    )


def _box_in_input(sample: Sample, kind: str, size: int = 224) -> tuple[float, ...] | None:
    """Map an original-pixel box into the model input's pixels (standard or precropped)."""
    if sample.box is None:
        return None
    with load_image(sample.path) as image:
        w, h = image.size
    x0, y0, x1, y1 = sample.box
    if kind == "precropped":
        sx, sy = size / w, size / h
        return (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
    scale = 256 / min(w, h)
    nw, nh = w * scale, h * scale
    left, top = (nw - size) / 2, (nh - size) / 2
    return (x0 * scale - left, y0 * scale - top, x1 * scale - left, y1 * scale - top)


def _coarsest(raw: Mapping[str, Tensor]) -> tuple[int, int]:
    shapes = [tuple(v.shape[-2:]) for v in raw.values()]
    h, w = min(shapes, key=lambda s: s[0] * s[1])
    return int(h), int(w)


def _ratio_phase(
    models: Mapping[str, nn.Module],
    photoset: PhotoSet,
    config: StudyConfig,
    progress: Progress | None,
) -> dict[str, ModelRun]:
    cams = {
        name: GradCAM(model, layers=config.layers, backend=config.backend)
        for name, model in models.items()
    }
    runs = {
        name: ModelRun(name, _weights_of(model), tuple(cams[name].layer_names))
        for name, model in models.items()
    }
    kind = photoset.transform_kind
    transform = make_transform(kind)
    done = 0
    total = len(photoset)
    for batch in iter_batches(photoset, batch_size=config.batch_size, transform=transform):
        boxes = [
            _box_in_input(s, "precropped" if kind == "precropped" else "standard")
            for s in batch.samples
        ]
        size = (int(batch.images.shape[-2]), int(batch.images.shape[-1]))
        masks = None
        if any(b is not None for b in boxes):
            masks = torch.stack(
                [
                    box_mask(b, size=size) if b is not None else torch.zeros(size, dtype=torch.bool)
                    for b in boxes
                ]
            )
        for name, cam in cams.items():
            run = runs[name]
            device = model_device(models[name])
            if config.target == "true":
                result = cam(batch.images.to(device), targets=batch.labels.to(device)).cpu()
            else:
                result = cam(batch.images.to(device), targets=None).cpu()
            probs = result.logits.softmax(dim=1)
            conf, pred = probs.max(dim=1)
            true_conf = probs.gather(1, batch.labels.view(-1, 1))[:, 0]
            grid = _coarsest(result.raw)
            per_layer: dict[str, dict[str, Tensor]] = {}
            for layer in result.layers:
                maps = result.maps[layer]
                per_layer[layer] = {
                    "ratio": high_activation_ratio(maps, threshold=config.threshold),
                    "ratio_pooled": high_activation_ratio(
                        pool_to_grid(maps, size=grid), threshold=config.threshold
                    ),
                    "sweep": threshold_sweep(maps, thresholds=config.sweep),
                }
                if masks is not None:
                    per_layer[layer]["box_mass"] = mass_in_region(maps, masks)
            for i, sample in enumerate(batch.samples):
                record: dict[str, Any] = {
                    "file": str(sample.path),
                    "label": int(sample.label),
                    "label_name": sample.name,
                    "target": int(result.targets[i]),
                    "pred": int(pred[i]),
                    "pred_name": class_name(int(pred[i])),
                    "confidence": float(conf[i]),
                    "true_confidence": float(true_conf[i]),
                    "correct": bool(pred[i] == sample.label),
                    "ratio": {k: float(v["ratio"][i]) for k, v in per_layer.items()},
                    "ratio_pooled": {k: float(v["ratio_pooled"][i]) for k, v in per_layer.items()},
                    "sweep": {k: [float(s) for s in v["sweep"][i]] for k, v in per_layer.items()},
                }
                if boxes[i] is not None:
                    record["box"] = [float(c) for c in boxes[i]]  # type: ignore[union-attr]
                    record["box_mass"] = {k: float(v["box_mass"][i]) for k, v in per_layer.items()}
                    assert masks is not None
                    record["box_area"] = float(masks[i].float().mean())
                run.records.append(record)
                if len(run.examples) < config.keep_examples:
                    run.examples.append(
                        {
                            "file": str(sample.path),
                            "label_name": sample.name,
                            "pred_name": record["pred_name"],
                            "confidence": record["confidence"],
                            "correct": record["correct"],
                            "thumb": _thumb(batch.images[i : i + 1])[0],
                            "maps": {
                                k: _small(result.maps[k][i : i + 1])[0] for k in result.layers
                            },
                            "ratio": record["ratio"],
                        }
                    )
        done += len(batch)
        if progress:
            progress("ratio", done, total)
    return runs


def _load_tensors(samples: Sequence[Sample], transform: Callable[[Any], Tensor]) -> Tensor:
    images = []
    for s in samples:
        with load_image(s.path) as image:
            images.append(transform(image))
    return torch.stack(images)


def _gridpg_phase(
    models: Mapping[str, nn.Module],
    photoset: PhotoSet,
    first_run: ModelRun,
    config: StudyConfig,
    progress: Progress | None,
) -> GridPGRun:
    layers = first_run.layers
    out = GridPGRun(layers=layers)
    by_file = {str(s.path): s for s in photoset}
    candidates = [
        by_file[r["file"]]
        for r in first_run.records
        if r["correct"] and r["confidence"] >= config.gridpg_confidence and r["file"] in by_file
    ]
    out.n_candidates = len(candidates)
    if len({c.label for c in candidates}) < 4:
        out.note = (
            f"only {len(candidates)} photos of {len({c.label for c in candidates})} classes are "
            f"classified correctly with confidence >= {config.gridpg_confidence}; GridPG needs "
            "4 distinct classes"
        )
        for name in models:
            out.scores[name] = np.empty((0, len(layers)))
        return out
    specs = sample_mosaic_specs(
        [c.label for c in candidates], n=config.gridpg_mosaics, seed=config.seed
    )
    transform = make_transform(photoset.transform_kind)
    cams = {name: GradCAM(m, layers=layers, backend=config.backend) for name, m in models.items()}
    scores: dict[str, list[np.ndarray]] = {name: [] for name in models}
    for start in range(0, len(specs), config.batch_size):
        chunk = specs[start : start + config.batch_size]
        mosaics, targets, cells = [], [], []
        for members, cell in chunk:
            photos = [candidates[i] for i in members]
            mosaics.append(make_mosaic(_load_tensors(photos, transform)))
            targets.append(photos[cell].label)
            cells.append(cell)
            out.specs.append(
                {
                    "files": [str(p.path) for p in photos],
                    "labels": [p.label for p in photos],
                    "names": [p.name for p in photos],
                    "cell": cell,
                }
            )
        x = torch.stack(mosaics)
        t = torch.tensor(targets)
        cell_t = torch.tensor(cells)
        for name, cam in cams.items():
            device = model_device(models[name])
            result = cam(x.to(device), targets=t.to(device)).cpu()
            per = torch.stack([grid_pointing_score(result.maps[k], cell_t) for k in layers], dim=1)
            scores[name].append(per.numpy())
            if len(out.examples) < 2 * len(models) and start == 0:
                out.examples.append(
                    {
                        "model": name,
                        "thumb": _thumb(x[:1], size=224)[0],
                        "cell": cells[0],
                        "target_name": class_name(targets[0]),
                        "maps": {k: _small(result.maps[k][:1], size=224)[0] for k in layers},
                        "scores": {k: float(per[0, j]) for j, k in enumerate(layers)},
                    }
                )
        if progress:
            progress("gridpg", min(start + len(chunk), len(specs)), len(specs))
    out.scores = {name: np.concatenate(v, axis=0) for name, v in scores.items()}
    return out


#: Cascade order for ResNet-like models, from the top (Adebayo et al. 2018).
CASCADE = ("fc", "layer4", "layer3", "layer2", "layer1", "conv1")


def _randomise(module: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise every parameter (and BN statistics) of ``module`` from a seeded generator."""
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, nn.Conv2d | nn.Linear):
                fan_in = sub.weight[0].numel()
                std = (2.0 / fan_in) ** 0.5
                sub.weight.copy_(torch.randn(sub.weight.shape, generator=generator) * std)
                if sub.bias is not None:
                    sub.bias.zero_()
            elif isinstance(sub, nn.BatchNorm2d):
                sub.weight.fill_(1.0)
                sub.bias.zero_()
                if sub.running_mean is not None and sub.running_var is not None:
                    sub.running_mean.zero_()
                    sub.running_var.fill_(1.0)


def _sanity_phase(
    model: nn.Module,
    photoset: PhotoSet,
    config: StudyConfig,
    progress: Progress | None,
) -> SanityRun:
    layer = config.layers[-1]
    out = SanityRun(layer=layer)
    samples = _loadable(photoset)[: config.sanity_images]
    if not samples:
        return out
    transform = make_transform(photoset.transform_kind)
    batches = list(iter_batches(samples, batch_size=len(samples), transform=transform))
    if not batches:
        return out
    x, y = batches[0].images, batches[0].labels
    device = model_device(model)
    original = GradCAM(model, layers=[layer])(x.to(device), targets=y.to(device)).maps[layer].cpu()
    steps = [name for name in CASCADE if _has(model, name)]
    randomised = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(config.seed + 1)
    for k, step in enumerate(steps):
        _randomise(randomised.get_submodule(step), generator)
        maps = GradCAM(randomised, layers=[layer])(x.to(device), targets=y.to(device))
        maps_cpu = maps.maps[layer].cpu()
        out.steps.append(step)
        out.rho[step] = [_spearman(original[i], maps_cpu[i]) for i in range(len(x))]
        out.examples.append({"step": step, "map": _small(maps_cpu[:1])[0]})
        if progress:
            progress("sanity", k + 1, len(steps))
    out.examples.insert(
        0, {"step": "original", "map": _small(original[:1])[0], "thumb": _thumb(x[:1])[0]}
    )
    del randomised
    return out


def _loadable(photoset: PhotoSet) -> list[Sample]:
    """The photos that loaded in the ratio phase (later phases need not warn again)."""
    bad = {str(s.path) for s in photoset.skipped}
    return [s for s in photoset if str(s.path) not in bad]


def _has(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
    except AttributeError:
        return False
    return True


def _spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation of two maps; NaN when either is constant (no ranking)."""
    fa, fb = a.flatten().double().numpy(), b.flatten().double().numpy()
    if np.ptp(fa) == 0 or np.ptp(fb) == 0:
        return float("nan")
    return float(sps.spearmanr(fa, fb).statistic)


def _agreement_phase(model: nn.Module, photoset: PhotoSet, config: StudyConfig) -> dict[str, float]:
    samples = _loadable(photoset)[: config.agreement_images]
    transform = make_transform(photoset.transform_kind)
    worst: dict[str, float] = {layer: 0.0 for layer in config.layers}
    device = model_device(model)
    for batch in iter_batches(samples, batch_size=config.batch_size, transform=transform):
        x, y = batch.images.to(device), batch.labels.to(device)
        native = GradCAM(model, layers=config.layers, backend="native")(x, targets=y)
        captum = GradCAM(model, layers=config.layers, backend="captum")(x, targets=y)
        for layer in native.layers:
            diff = (native.maps[layer] - captum.maps[layer]).abs().max().item()
            worst[layer] = max(worst[layer], float(diff))
    return worst


def run_study(
    models: Mapping[str, nn.Module],
    photoset: PhotoSet,
    *,
    config: StudyConfig | None = None,
    progress: Progress | None = None,
) -> StudyResult:
    """Run the study's phases; ``models``' first entry is the model under test.

    Typical: ``{"pretrained": load_resnet50(), "untrained": load_resnet50("random")}``.
    """
    config = config or StudyConfig()
    if not models:
        raise ValueError("give at least one model")
    if len(photoset) == 0:
        raise ValueError(f"photo set {photoset.name!r} holds no photos")
    first_name = next(iter(models))
    first = models[first_name]
    device = model_device(first)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    runs = _ratio_phase(models, photoset, config, progress)
    timings["ratio"] = time.perf_counter() - start
    result = StudyResult(
        config=config,
        photoset={
            "name": photoset.name,
            "layout": photoset.layout,
            "root": str(photoset.root) if photoset.root else None,
            "n_listed": len(photoset),
        },
        runs=runs,
        provenance=_provenance(device),
    )
    if "gridpg" in config.phases:
        t0 = time.perf_counter()
        result.gridpg = _gridpg_phase(models, photoset, runs[first_name], config, progress)
        timings["gridpg"] = time.perf_counter() - t0
    if "sanity" in config.phases:
        t0 = time.perf_counter()
        result.sanity = _sanity_phase(first, photoset, config, progress)
        timings["sanity"] = time.perf_counter() - t0
    if "agreement" in config.phases:
        t0 = time.perf_counter()
        result.agreement = _agreement_phase(first, photoset, config)
        timings["agreement"] = time.perf_counter() - t0
    result.skipped = [{"file": str(s.path), "reason": s.reason} for s in photoset.skipped]
    result.photoset["n_used"] = len(runs[first_name].records)
    result.photoset["n_skipped"] = len(result.skipped)
    timings["total"] = time.perf_counter() - start
    result.timings = timings
    return result
