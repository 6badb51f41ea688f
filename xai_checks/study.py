"""The study engine: stream photos through models -> Grad-CAM -> per-image numbers.

One pass over the photo set serves every model (the model under test and its controls see the
same decoded batches). Roles are explicit: ``StudyResult.under_test`` is the model under test;
``StudyResult.controls`` the named controls (by default ``"untrained"``: a seeded,
re-initialised copy of the model under test, the same class and architecture). Only per-image
numbers are kept, plus a small, fixed number of example maps for the report, so memory stays
flat in the number of photos.

Phases (each optional):

``ratio``
    per image and layer: the high-activation ratio (the original study's metric), the same
    after pooling every map to the coarsest layer's grid (the resolution control), a threshold
    sweep, and, where the photo set has boxes, the energy pointing game.
``gridpg``
    the grid pointing game on 2x2 mosaics of photos the model under test classifies correctly
    and confidently; every model is scored on the same mosaics.
``sanity``
    cascading parameter randomisation (Adebayo et al. 2018) of the model under test: its own
    parameterised modules, from the output back to the input in traced forward order, in steps
    grouped by the chosen layers.
``agreement``
    native vs Captum backends on the first photos (Grad-CAM).
``faithfulness``
    deletion / insertion curves (MoRF, LeRF) under ROAD removal, per photo, layer and map
    (:mod:`xai_checks.phases.faithfulness`).

Each phase is a registered unit (:mod:`xai_checks.phases`, entry-point group
``xai_checks.phases``); the study runs the ratio phase first, then every registered phase in
``config.phases``, in registry order.

Distributed: under ``torchrun`` each rank takes a disjoint shard (see
:mod:`xai_checks.distributed`); every rank ends with the same result.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats as sps
from torch import Tensor, nn

from xai_checks import __version__
from xai_checks._util import cuda_tf32, meta_tensors, model_device, state_digest
from xai_checks.cam import DEFAULT_LAYERS, GradCAM
from xai_checks.cascade import (
    cascade_steps_state,
    recording,
    replay_plan,
    replaying,
    write_values,
)
from xai_checks.data import PhotoSet, Sample, load_image
from xai_checks.data.classes import ClassList, ClassListError, Preprocess, probe_preprocess
from xai_checks.data.device_decode import DecodeCounts, device_batches, supports_device_decode
from xai_checks.data.loading import ImageLoadError, decode_hint, transform_photo
from xai_checks.data.photoset import Skipped, SkippedImageWarning, stratified_subset
from xai_checks.data.prefetch import host_copy
from xai_checks.defaults import MAX_CONTROL_SEEDS
from xai_checks.distributed import Shard
from xai_checks.gridpg_targets import (
    GRIDPG_TARGETS,
    GridPGTargets,
    describe_gridpg_targets,
    is_gridpg_target,
)
from xai_checks.layer_checks import LayerError, check_layer_count, check_layers
from xai_checks.metrics import (
    DEFAULT_THRESHOLDS,
    box_mask,
    grid_pointing_score,
    high_activation_ratio,
    make_mosaic,
    mass_in_region,
    pool_to_grid,
    target_mosaic_specs,
    threshold_sweep,
)
from xai_checks.models import (
    ModelTrace,
    cascade_steps,
    derived_seed,
    locate_layers_fallback,
    model_class,
    reinitialise_,
    reinitialised_copy,
    trace_model,
    weights_of,
)
from xai_checks.phases import PhaseContext, phase_names, registered_phases
from xai_checks.phases.registry import BUILTIN_ENTRY_POINTS, OPT_IN_PHASES

__all__ = [
    "DEFAULT_PHASES",
    "PHASES",
    "ControlSeeds",
    "GridPGRun",
    "ModelChangedError",
    "ModelRun",
    "SanityRun",
    "StudyConfig",
    "StudyResult",
    "StudyUsageError",
    "control_seed",
    "run_study",
    "sanity_seed",
]

#: the built-in phases, in run order (third-party phases register in ``xai_checks.phases``)
PHASES = tuple(BUILTIN_ENTRY_POINTS)
#: the phases a study runs unless told otherwise (every built-in one but the opt-in ones)
DEFAULT_PHASES = tuple(p for p in PHASES if p not in OPT_IN_PHASES)
Progress = Callable[[str, int, int], None]


class ModelChangedError(RuntimeError):
    """A model's parameters or buffers changed during the study (a ``forward`` that updates
    them): its maps are not reproducible."""


class StudyUsageError(ValueError):
    """The study was asked for something the model or photos cannot give (checked up front,
    before any photo is decoded): unknown layers, a class list that does not fit the model..."""


def _known_methods() -> tuple[str, ...]:
    from xai_checks import cam

    return tuple(getattr(cam, "METHODS", ("gradcam",)))


@dataclass(frozen=True)
class StudyConfig:
    """Everything that decides a study's numbers. Recorded in every result.

    ``layers=()`` (or ``None``) picks the layers automatically (the last module at each spatial
    resolution, traced); the result's config then holds the layers picked and
    ``layers_auto=True``. ``workers`` is the number of photo-decoding processes (``None``: one
    per spare core, at most 8); it never changes a number.
    """

    layers: tuple[str, ...] = DEFAULT_LAYERS
    method: str = "gradcam"
    #: the native CAM engine on a private channels_last copy (maps move by float32 rounding)
    channels_last: bool = False
    threshold: float = 0.85
    sweep: tuple[float, ...] = DEFAULT_THRESHOLDS
    #: ``"true"`` (the photo's label), ``"predicted"`` (the model's top class) or one class
    #: index explained for every photo
    target: Literal["true", "predicted"] | int = "true"
    backend: Literal["native", "captum"] = "native"
    batch_size: int = 8
    seed: int = 0
    keep_examples: int = 6
    #: GridPG: at most this many target photos (one mosaic each); None for no cap
    gridpg_mosaics: int | None = 1000
    gridpg_confidence: float = 0.9
    #: GridPG: which photos may be targets (xai_checks.gridpg_targets says what each selects)
    gridpg_targets: GridPGTargets = "confident"
    #: photos in the sanity cascade (a seeded, class-stratified sample, in batches). With a
    #: per-photo spread of the margin near 0.24, 200 photos give a 90% CI of about +-0.03,
    #: narrow enough to place a margin 0.03 from the claim's SESOI of 0.1 on one side of it
    sanity_images: int = 200
    #: the untrained control is a sample of this many seeded networks, not one draw: the first
    #: (seed ``seed``) on every photo, the others on ``control_seed_photos`` of them
    control_seeds: int = 5
    #: photos (a seeded, class-stratified sample of the usable ones; GridPG target mosaics
    #: likewise) on which each control seed after the first runs
    control_seed_photos: int = 50
    #: sanity photos (the first of the sanity sample) on which each later draw of the
    #: cascade runs: a draw costs a pass per cascade step, so fewer
    control_seed_sanity: int = 16
    agreement_images: int = 8
    phases: tuple[str, ...] = DEFAULT_PHASES
    #: per phase, options that override the phase's declared defaults (``Phase.options``)
    phase_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    preprocess: Preprocess = field(default_factory=Preprocess)
    layers_auto: bool = False
    #: on CUDA, let cuDNN and cuBLAS use TF32 (PyTorch's default for convolutions). Off by
    #: default: TF32 keeps a 10-bit mantissa, which moves Grad-CAM maps far more than float32
    #: rounding does (benchmarks/results/gpu-nvidia-h200.md has the sizes)
    tf32: bool = False
    #: on CUDA, replay the fused CAM pass from a CUDA graph captured per batch shape
    #: (xai_checks.cam.graphs; eager wherever capture is not possible, counted in provenance)
    cuda_graphs: bool = False
    #: decode JPEGs on the model's device from file bytes, one batch ahead of the engine
    #: (xai_checks.data.device_decode); other formats on the CPU, counted in provenance
    device_decode: bool = False
    workers: int | None = field(default=None, compare=False)
    #: write every run's raw and canonical maps to this ``.npz`` file
    #: (:mod:`xai_checks.saved_maps`); where a result goes, not how it is made: no study
    #: setting, left out of :meth:`to_dict`
    save_maps: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        known = phase_names()
        unknown = set(self.phases) - set(known)
        if unknown:
            raise ValueError(f"unknown phases {sorted(unknown)}; choose from {known}")
        unknown = set(self.phase_options) - set(known)
        if unknown:
            raise ValueError(f"options for unknown phases {sorted(unknown)}; choose from {known}")
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1); got {self.threshold}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        fixed = isinstance(self.target, int) and not isinstance(self.target, bool)
        if not (fixed and int(self.target) >= 0) and self.target not in ("true", "predicted"):
            raise ValueError(
                f"target must be 'true', 'predicted' or a class index >= 0; got {self.target!r}"
            )
        if self.gridpg_targets not in GRIDPG_TARGETS:
            raise ValueError(
                f"gridpg_targets must be one of {GRIDPG_TARGETS}; got {self.gridpg_targets!r}"
            )
        object.__setattr__(self, "layers", tuple(self.layers or ()))
        methods = _known_methods()
        if self.method not in methods:
            raise ValueError(f"unknown method {self.method!r}; choose from {', '.join(methods)}")
        if not 1 <= self.control_seeds <= MAX_CONTROL_SEEDS:
            raise ValueError(
                f"control_seeds must be 1 to {MAX_CONTROL_SEEDS}; got {self.control_seeds}"
            )
        if min(self.control_seed_photos, self.control_seed_sanity) < 2:
            raise ValueError("control_seed_photos and control_seed_sanity must be >= 2")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers must be >= 0; got {self.workers}")

    @property
    def used_layers(self) -> tuple[str, ...]:
        if not self.layers:
            raise ValueError("layers are picked when the study runs; read the result's config")
        return self.layers

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("workers", None)
        d.pop("save_maps", None)
        if not self.phase_options:  # the phases' JSON records the options they ran with
            d.pop("phase_options", None)
        else:
            d["phase_options"] = {k: dict(v) for k, v in self.phase_options.items()}
        d["preprocess"] = self.preprocess.to_dict()
        return d


@dataclass
class ModelRun:
    """Per-image numbers for one model over the photo set.

    ``role`` is ``"under_test"`` or ``"control"``; ``model_class`` the model's class name;
    ``weights["source"]`` where its weights came from (``msra``, ``user``, ``reinitialised``...).
    """

    name: str
    weights: dict[str, Any]
    layers: tuple[str, ...]
    records: list[dict[str, Any]] = field(default_factory=list)
    #: a few photos' canonical maps (float16, 112x112) and thumbnails, for the report
    examples: list[dict[str, Any]] = field(default_factory=list)
    role: str = "under_test"
    model_class: str = ""

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

    @property
    def weights_source(self) -> str:
        return str((self.weights or {}).get("source", "unknown"))


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
    """Cascading randomisation: ``rho[step]`` is the per-image Spearman rho with the original.

    ``modules[step]`` lists the model's own modules randomised at that step (cumulatively);
    ``files[j]`` is the photo behind ``rho[step][j]`` (a seeded, class-stratified sample of
    the usable photos, at most ``StudyConfig.sanity_images``). ``reference[j]`` is the
    empirical reference on the same photo: Spearman rho between the maps of two independently
    re-initialised copies of the model (the cascade's last step, every module re-initialised,
    and a second copy with its own seed): how alike two maps are that share the photo and the
    architecture but no learned parameter.
    """

    layer: str
    steps: list[str] = field(default_factory=list)
    rho: dict[str, list[float]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    modules: dict[str, list[str]] = field(default_factory=dict)
    reference: list[float] = field(default_factory=list)


def control_seed(seed: int, draw: int) -> int:
    """The seed of control network ``draw`` (0, 1, ...) for a study seeded with ``seed``.

    Draw 0 is the study seed itself (the control every claim has always compared with, still
    ``StudyResult.controls["untrained"]``); later draws are derived from it, so a study's R
    networks are the first R of one fixed sequence."""
    return seed if draw == 0 else derived_seed(seed, f"control/{draw}")


def sanity_seed(seed: int, step: str, draw: int) -> int:
    """The seed that re-initialises cascade ``step`` in draw ``draw`` of the cascade."""
    return derived_seed(seed, f"sanity/{step}" if draw == 0 else f"sanity/{step}/{draw}")


@dataclass
class ControlSeeds:
    """The random networks drawn again under more seeds: a sample of networks, not one draw.

    ``seeds`` are the seeds of draws 1..R-1 (:func:`control_seed`); draw 0 is the study's own
    control and cascade, on every photo. The later draws run on seeded, class-stratified
    samples of at most ``StudyConfig.control_seed_photos`` photos:

    * ``runs[r - 1]``: the untrained control ``control`` of draw r, ratio records (by
      ``file``); empty when the study has no re-initialised control;
    * ``gridpg[r - 1]``: its GridPG scores on the mosaics ``gridpg_rows`` (rows of
      ``GridPGRun.scores``);
    * ``sanity[r - 1]``: the cascade redrawn (each step re-initialised under
      :func:`sanity_seed`), Spearman rho per step on the photos ``sanity_rows`` (indices into
      ``SanityRun.files``).
    """

    seeds: list[int]
    control: str | None = None
    runs: list[ModelRun] = field(default_factory=list)
    gridpg_rows: list[int] = field(default_factory=list)
    gridpg: list[np.ndarray] = field(default_factory=list)
    sanity_rows: list[int] = field(default_factory=list)
    sanity: list[dict[str, list[float]]] = field(default_factory=list)

    @property
    def count(self) -> int:
        """R: how many networks stand for the control, the study's own included."""
        return len(self.seeds) + 1


@dataclass
class StudyResult:
    """A study's numbers, ready for claims and the report.

    Roles are explicit: ``under_test`` is the model under test, ``controls`` the named null
    controls. ``runs`` lists them all (under test first) for code that treats them alike.
    """

    config: StudyConfig
    photoset: dict[str, Any]
    under_test: ModelRun
    controls: dict[str, ModelRun] = field(default_factory=dict)
    gridpg: GridPGRun | None = None
    sanity: SanityRun | None = None
    agreement: dict[str, float] | None = None
    #: the later draws of the random networks (``StudyConfig.control_seeds`` > 1)
    control_seeds: ControlSeeds | None = None
    #: the output of every other registered phase that ran, by phase name
    phase_results: dict[str, Any] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.under_test.role = "under_test"
        for run in self.controls.values():
            run.role = "control"
        if self.under_test.name in self.controls:
            raise ValueError(
                f"a control is named like the model under test: {self.under_test.name!r}"
            )

    @property
    def runs(self) -> dict[str, ModelRun]:
        """Every run by name, the model under test first (read-only view)."""
        return {self.under_test.name: self.under_test, **self.controls}


def _provenance(device: torch.device, shard: Shard) -> dict[str, Any]:
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
        "ranks": shard.world,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def make_cam(
    model: nn.Module, layers: Sequence[str], config: StudyConfig, backend: str | None = None
) -> Any:
    """The CAM engine for ``config.method`` (``xai_checks.cam.CAM`` where it exists)."""
    from xai_checks import cam

    backend = backend or config.backend
    factory = getattr(cam, "CAM", None)
    if factory is not None:
        fast = config.channels_last and backend == "native"
        memory_format = torch.channels_last if fast else torch.contiguous_format
        engine = factory(
            model,
            layers=list(layers),
            method=config.method,
            backend=backend,
            memory_format=memory_format,
        )
        if config.cuda_graphs and backend == "native":
            from xai_checks.cam.graphs import CapturedCAM

            return CapturedCAM(engine)
        return engine
    if config.method != "gradcam":
        raise StudyUsageError(f"method {config.method!r} needs xai_checks.cam.CAM")
    return GradCAM(model, layers=list(layers), backend=backend)  # type: ignore[arg-type]


def _thumb(images: Tensor, preprocess: Preprocess, size: int = 112) -> Tensor:
    """RGB thumbnails, uint8, (N, size, size, 3): denormalised with the study's mean/std (a
    user transform's output is min-max scaled per image instead)."""
    x = images.cpu().float()[:, :3]
    if preprocess.transform is None and len(preprocess.mean) == x.shape[1]:
        mean = torch.tensor(preprocess.mean).view(1, -1, 1, 1)
        std = torch.tensor(preprocess.std).view(1, -1, 1, 1)
        rgb = (x * std + mean).clamp(0, 1)
    else:
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        rgb = (x - lo) / (hi - lo).clamp_min(1e-8)
    if rgb.shape[1] == 1:
        rgb = rgb.expand(-1, 3, -1, -1)
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


def _coarsest(raw: Mapping[str, Tensor]) -> tuple[int, int]:
    shapes = [tuple(v.shape[-2:]) for v in raw.values()]
    h, w = min(shapes, key=lambda s: s[0] * s[1])
    return int(h), int(w)


# ----------------------------------------------------------------------------- decoding


class _PhotoData(torch.utils.data.Dataset[tuple[int, Any, Any]]):
    """Photo ``i`` -> ``(i, tensor or None, box-in-input or failure reason)``.

    Decoding and the transform run here, in DataLoader worker processes, so that they overlap
    the model's compute. A photo that will not load comes back as ``(i, None, reason)``.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: Callable[[Any], Tensor],
        kind: str,
        preprocess: Preprocess,
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.kind = kind
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[int, Any, Any]:
        sample = self.samples[i]
        # a box is in the file's pixels: its photo is decoded at full size
        hint = decode_hint(self.transform) if sample.box is None else None
        try:
            image = load_image(sample.path, size_hint=hint)
        except ImageLoadError as exc:
            return i, None, exc.reason
        tensor, box = transform_photo(self.transform, image, sample.box)
        return i, tensor, box


def _collate(
    items: list[tuple[int, Any, Any]],
) -> tuple[list[int], Tensor | None, list[Any], list[tuple[int, str]]]:
    ok = [(i, x, box) for i, x, box in items if x is not None]
    failed = [(i, str(reason)) for i, x, reason in items if x is None]
    images = torch.stack([x for _, x, _ in ok]) if ok else None
    return [i for i, _, _ in ok], images, [box for _, _, box in ok], failed


def _workers(config: StudyConfig, shard: Shard) -> int:
    if config.workers is not None:
        return config.workers
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    # a decoding worker only pays where a core is spare (on this loaded 2-core machine, one
    # process: 0.83x of the engine-only rate with a worker, 0.88x decoding inline)
    spare = cores // max(1, shard.world) - 1
    return max(0, min(8, spare))


def _index_batches(n: int, batch_size: int, shard: Shard) -> list[list[int]]:
    """Fixed batches ``[0, b), [b, 2b)...`` of photo indices; batch ``k`` is rank ``k % world``'s.

    The same batches in one process and over any number of ranks, so each photo is computed
    in the same batch either way.
    """
    batches = [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
    return [b for k, b in enumerate(batches) if shard.mine(k)]


def _loader(
    samples: Sequence[Sample],
    batches: list[list[int]],
    transform: Callable[[Any], Tensor],
    kind: str,
    config: StudyConfig,
    shard: Shard,
    device: torch.device,
) -> Any:
    workers = _workers(config, shard) if len(batches) > 1 else 0
    return torch.utils.data.DataLoader(
        _PhotoData(samples, transform, kind, config.preprocess),
        batch_sampler=batches,
        collate_fn=_collate,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=2 if workers else None,
    )


# ----------------------------------------------------------------------------- ratio phase


def ratio_phase(
    models: Mapping[str, nn.Module],
    photoset: PhotoSet,
    config: StudyConfig,
    roles: Mapping[str, str],
    progress: Progress | None,
    shard: Shard,
    pipeline: dict[str, Any] | None = None,
) -> tuple[dict[str, ModelRun], list[tuple[int, str]]]:
    layers = config.used_layers
    cams = {name: make_cam(model, layers, config) for name, model in models.items()}
    runs = {
        name: ModelRun(
            name,
            weights_of(model),
            tuple(cams[name].layer_names),
            role=roles[name],
            model_class=model_class(model),
        )
        for name, model in models.items()
    }
    kind = photoset.transform_kind
    transform = config.preprocess.build(kind)
    samples = list(photoset)
    total = len(samples)
    batches = _index_batches(total, config.batch_size, shard)
    first = next(iter(models.values()))
    # per model: [(photo index, record, example or None)]
    found: dict[str, list[tuple[int, dict[str, Any], dict[str, Any] | None]]] = {
        n: [] for n in models
    }
    failed: list[tuple[int, str]] = []
    engine_device = model_device(first)
    loader, decoded = _loader(samples, batches, transform, kind, config, shard, engine_device), None
    if config.device_decode and supports_device_decode(transform):
        workers = _workers(config, shard) if len(batches) > 1 else 0
        loader, decoded = device_batches(
            samples, batches, transform, engine_device, workers=workers
        )
    if engine_device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(engine_device)
    writer = None
    if config.save_maps is not None:
        if shard.world > 1:
            raise StudyUsageError("saving maps is not supported on several ranks yet")
        from xai_checks.saved_maps import MapWriter

        writer = MapWriter(config.save_maps, ids=[str(s.path) for s in samples])
    try:
        _ratio_batches(
            loader, samples, cams, models, config, photoset, found, failed, writer, progress,
            shard, total,
        )  # fmt: skip
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    if writer is not None:
        writer.close()
    if pipeline is not None:
        pipeline.update(_pipeline_stats(cams, decoded, engine_device))
    gathered = shard.run("ratio", lambda: (found, failed))
    all_failed = sorted({f for _, fails in gathered for f in fails})
    for name, run in runs.items():
        merged = sorted((item for part, _ in gathered for item in part[name]), key=lambda t: t[0])
        run.records = [record for _, record, _ in merged]
        run.examples = [ex for _, _, ex in merged if ex is not None][: config.keep_examples]
    return runs, all_failed


def _ratio_batches(
    loader: Any,
    samples: Sequence[Sample],
    cams: Mapping[str, Any],
    models: Mapping[str, nn.Module],
    config: StudyConfig,
    photoset: PhotoSet,
    found: dict[str, list[tuple[int, dict[str, Any], dict[str, Any] | None]]],
    failed: list[tuple[int, str]],
    writer: Any,
    progress: Progress | None,
    shard: Shard,
    total: int,
) -> None:
    """The ratio phase's loop over batches: per photo, its record and (the first few) its
    example, into ``found``; its maps to ``writer`` when one is given."""
    done = 0
    for indices, images, boxes, bad in loader:
        failed.extend(bad)
        done += len(indices) + len(bad)
        if images is None:
            continue
        batch_samples = [samples[i] for i in indices]
        labels = torch.tensor([s.label for s in batch_samples], dtype=torch.long)
        size = (int(images.shape[-2]), int(images.shape[-1]))
        masks = None
        if any(b is not None for b in boxes):
            masks = torch.stack(
                [
                    box_mask(b, size=size) if b is not None else torch.zeros(size, dtype=torch.bool)
                    for b in boxes
                ]
            )
        for name, cam in cams.items():
            device = model_device(models[name])
            x = images.to(device, non_blocking=True)
            # Targets stay on the host: the engine range-checks them there, without a sync.
            result = cam(x, targets=_targets(config.target, labels))
            if writer is not None:
                writer.add(name, indices, raw=result.raw, canonical=result.maps)
            # The per-photo numbers are computed where the maps are (on a GPU: no copy of
            # N x layers x H x W maps to the host), then only they travel.
            grid = _coarsest(result.raw)
            on_device: dict[str, dict[str, Tensor]] = {}
            for layer in result.layers:
                maps = result.maps[layer]
                on_device[layer] = {
                    "ratio": high_activation_ratio(maps, threshold=config.threshold),
                    "ratio_pooled": high_activation_ratio(
                        pool_to_grid(maps, size=grid), threshold=config.threshold
                    ),
                    "sweep": threshold_sweep(maps, thresholds=config.sweep),
                }
                if masks is not None:
                    on_device[layer]["box_mass"] = mass_in_region(maps, masks.to(maps.device))
            per_layer = host_copy(on_device)  # one sync for the batch's per-photo numbers
            wanted = config.keep_examples - sum(1 for _, _, e in found[name] if e is not None)
            small_maps = (
                {k: _small(result.maps[k][:wanted]).cpu() for k in result.layers}
                if wanted > 0
                else {}
            )
            result_targets = result.targets.cpu()
            probs = result.logits.float().cpu().softmax(dim=1)
            conf, pred = probs.max(dim=1)
            true_conf = probs.gather(1, labels.view(-1, 1))[:, 0]
            # classes strictly more probable than the true one: 0 is top-1 (ties favour it)
            true_rank = (probs > true_conf.view(-1, 1)).sum(dim=1)
            for i, sample in enumerate(batch_samples):
                record: dict[str, Any] = {
                    "file": str(sample.path),
                    "label": int(sample.label),
                    "label_name": sample.name,
                    "target": int(result_targets[i]),
                    "pred": int(pred[i]),
                    "pred_name": photoset.class_name(int(pred[i])),
                    "confidence": float(conf[i]),
                    "true_confidence": float(true_conf[i]),
                    "true_rank": int(true_rank[i]),
                    "correct": bool(pred[i] == sample.label),
                    "ratio": {k: float(v["ratio"][i]) for k, v in per_layer.items()},
                    "ratio_pooled": {k: float(v["ratio_pooled"][i]) for k, v in per_layer.items()},
                    "sweep": {k: [float(s) for s in v["sweep"][i]] for k, v in per_layer.items()},
                }
                if boxes[i] is not None:
                    record["box"] = [float(c) for c in boxes[i]]
                    record["box_mass"] = {k: float(v["box_mass"][i]) for k, v in per_layer.items()}
                    assert masks is not None
                    record["box_area"] = float(masks[i].float().mean())
                example = None
                kept = sum(1 for _, _, e in found[name] if e is not None)
                if kept < config.keep_examples:  # this rank's first ones; merged below
                    example = {
                        "file": str(sample.path),
                        "label_name": sample.name,
                        "pred_name": record["pred_name"],
                        "confidence": record["confidence"],
                        "correct": record["correct"],
                        "thumb": _thumb(images[i : i + 1], config.preprocess)[0],
                        "maps": {k: small_maps[k][i] for k in result.layers},
                        "ratio": record["ratio"],
                    }
                found[name].append((indices[i], record, example))
        if progress:
            progress("ratio", min(done * shard.world, total), total)


def _pipeline_stats(
    cams: Mapping[str, Any], decoded: DecodeCounts | None, device: torch.device
) -> dict[str, Any]:
    """The GPU pipeline's counts for the provenance: captured-engine replays and eager calls,
    photos decoded on the device and on the CPU (by reason), and the peak device memory."""
    stats: dict[str, Any] = {}
    graphs = {n: c.stats() for n, c in cams.items() if hasattr(c, "stats")}
    if graphs:
        stats["cuda_graphs"] = graphs
    if decoded is not None:
        stats["decoded"] = decoded.to_dict()
    if device.type == "cuda":
        stats["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated(device))
    return stats


def load_tensors(samples: Sequence[Sample], transform: Callable[[Any], Tensor]) -> Tensor:
    images = []
    for s in samples:
        with load_image(s.path, size_hint=decode_hint(transform)) as image:
            images.append(transform(image))
    return torch.stack(images)


def gridpg_phase(
    models: Mapping[str, nn.Module],
    photoset: PhotoSet,
    first_run: ModelRun,
    config: StudyConfig,
    progress: Progress | None,
    shard: Shard | None = None,
) -> GridPGRun:
    shard = shard or Shard()
    layers = first_run.layers
    out = GridPGRun(layers=layers)
    by_file = {str(s.path): s for s in photoset}
    rule, confidence = config.gridpg_targets, config.gridpg_confidence
    candidates = [
        by_file[r["file"]]
        for r in first_run.records
        if r["file"] in by_file and is_gridpg_target(r, rule=rule, confidence=confidence)
    ]
    out.n_candidates = len(candidates)
    if len({c.label for c in candidates}) < 4:
        out.note = (
            f"only {len(candidates)} photos of {len({c.label for c in candidates})} classes "
            f"qualify, photos {describe_gridpg_targets(rule, confidence=confidence)}; GridPG "
            "needs 4 distinct classes"
        )
        for name in models:
            out.scores[name] = np.empty((0, len(layers)))
        return out
    # The unit of analysis is the target photo: each candidate is the target of exactly one
    # mosaic (a seeded sample of them above the cap); the other cells come from other classes.
    specs = target_mosaic_specs(
        [c.label for c in candidates], cap=config.gridpg_mosaics, seed=config.seed
    )
    if len(specs) < len(candidates):
        out.note = (
            f"{len(specs)} of {len(candidates)} qualifying photos are targets "
            f"(capped at {config.gridpg_mosaics})"
        )
    transform = config.preprocess.build(photoset.transform_kind)
    cams = {name: make_cam(m, layers, config) for name, m in models.items()}
    scores: dict[str, list[tuple[int, np.ndarray]]] = {name: [] for name in models}
    for chunk_index, start in enumerate(range(0, len(specs), config.batch_size)):
        chunk = specs[start : start + config.batch_size]
        mosaics, targets, cells = [], [], []
        mine = shard.mine(chunk_index)
        for members, cell in chunk:
            photos = [candidates[i] for i in members]
            if mine:
                mosaics.append(make_mosaic(load_tensors(photos, transform)))
            targets.append(photos[cell].label)
            cells.append(cell)
            out.specs.append(
                {
                    "files": [str(p.path) for p in photos],
                    "labels": [p.label for p in photos],
                    "names": [p.name for p in photos],
                    "cell": cell,
                    "target_file": str(photos[cell].path),
                }
            )
        if not mine:
            continue
        x = torch.stack(mosaics)
        t = torch.tensor(targets)
        cell_t = torch.tensor(cells)
        for name, cam in cams.items():
            device = model_device(models[name])
            result = cam(x.to(device), targets=t.to(device)).cpu()
            per = torch.stack([grid_pointing_score(result.maps[k], cell_t) for k in layers], dim=1)
            scores[name].append((chunk_index, per.numpy()))
            if len(out.examples) < 2 * len(models) and start == 0:
                out.examples.append(
                    {
                        "model": name,
                        "thumb": _thumb(x[:1], config.preprocess, size=224)[0],
                        "cell": cells[0],
                        "target_name": photoset.class_name(targets[0]),
                        "maps": {k: _small(result.maps[k][:1], size=224)[0] for k in layers},
                        "scores": {k: float(per[0, j]) for j, k in enumerate(layers)},
                    }
                )
        if progress:
            progress("gridpg", min(start + len(chunk), len(specs)), len(specs))
    gathered = shard.run("gridpg", lambda: (scores, out.examples))
    out.examples = [ex for _, examples in gathered for ex in examples][: 2 * len(models)]
    for name in models:
        parts = sorted((p for part, _ in gathered for p in part[name]), key=lambda t: t[0])
        out.scores[name] = (
            np.concatenate([a for _, a in parts], axis=0) if parts else np.empty((0, len(layers)))
        )
    return out


# ----------------------------------------------------------------------------- sanity phase


#: the key under which a shard's sanity work returns the reference rho (no step is named so)
REFERENCE = "\x00reference"


def cascade_maps(
    model: nn.Module,
    trace: ModelTrace,
    layer: str,
    steps: Sequence[tuple[str, Sequence[str]]],
    seed_of: Callable[[str], int],
    batches: Sequence[tuple[Tensor, Tensor]],
    config: StudyConfig,
) -> Iterator[tuple[Tensor, list[Tensor]]]:
    """Per batch ``(x, labels)``: the model's maps at ``layer`` and, for each cascade step
    (re-initialised under ``seed_of(step)``, on top of the steps before it), the maps of the
    network it leaves.

    With the plain native engine the steps share one working copy of the model, batch by
    batch, and each takes what runs before its first changed module from the original pass
    (:mod:`xai_checks.cascade`). An engine that holds its own copy of the weights
    (``--channels-last``) or a captured CUDA graph per batch shape (``--cuda-graphs``), and
    Captum, run step by step instead, one engine per step for every batch, each step whole."""
    device = model_device(model)
    originals, states = cascade_steps_state(model, steps, seed_of)
    working = copy.deepcopy(model)
    on_device = [(x.to(device), y.to(device)) for x, y in batches]
    if config.backend != "native" or config.channels_last or config.cuda_graphs:
        engine = make_cam(model, [layer], config)
        per_step: list[list[Tensor]] = [
            [engine(x, targets=y).maps[layer].cpu() for x, y in on_device]
        ]
        for state in states:
            write_values(working, state.values)
            engine = make_cam(working, [layer], config)
            per_step.append([engine(x, targets=y).maps[layer].cpu() for x, y in on_device])
        for b in range(len(on_device)):
            yield per_step[0][b], [maps[b] for maps in per_step[1:]]
        return
    plans = [replay_plan(trace, state.changed, [layer]) for state in states]
    wanted = sorted({name for plan in plans for name in plan})
    original_engine = make_cam(model, [layer], config)
    engine = make_cam(working, [layer], config)
    for x, y in on_device:
        with recording(model, wanted) as outputs:
            original = original_engine(x, targets=y).maps[layer].cpu()
        maps = []
        for state, plan in zip(states, plans, strict=True):
            write_values(working, state.values)
            with replaying(working, {name: outputs[name] for name in plan if name in outputs}):
                maps.append(engine(x, targets=y).maps[layer].cpu())
        write_values(working, originals)
        yield original, maps


def sanity_phase(
    model: nn.Module,
    trace: ModelTrace,
    photoset: PhotoSet,
    config: StudyConfig,
    progress: Progress | None,
    shard: Shard,
    skipped: set[str],
) -> SanityRun:
    layers = config.used_layers
    layer = layers[-1]
    out = SanityRun(layer=layer)
    steps = cascade_steps(model, trace, layers)
    out.steps = [name for name, _ in steps]
    out.modules = {name: list(members) for name, members in steps}
    # a seeded, class-stratified sample: the first photos in folder order would be the first
    # classes of a folder sorted by class (the 1000 ImageNet samples are sorted by wnid)
    samples = stratified_subset(
        [s for s in photoset if str(s.path) not in skipped],
        limit=config.sanity_images,
        seed=derived_seed(config.seed, "sanity/photos"),
    )
    mine = [(i, s) for i, s in enumerate(samples) if shard.mine(i)]
    transform = config.preprocess.build(photoset.transform_kind)
    device = model_device(model)

    def work() -> tuple[list[int], dict[str, list[float]], list[dict[str, Any]]]:
        rho: dict[str, list[float]] = {name: [] for name, _ in steps}
        examples: list[dict[str, Any]] = []
        loaded: list[tuple[int, Tensor, int]] = []
        for i, s in mine:
            try:
                with load_image(s.path, size_hint=decode_hint(transform)) as image:
                    loaded.append((i, transform(image), s.label))
            except ImageLoadError:
                continue
        if not loaded:
            return [], rho, examples
        # in batches of config.batch_size, so memory does not grow with sanity_images
        batches = [
            (
                torch.stack([t for _, t, _ in chunk]),
                torch.tensor([label for _, _, label in chunk]),
            )
            for chunk in (
                loaded[k : k + config.batch_size] for k in range(0, len(loaded), config.batch_size)
            )
        ]

        def seed_of(step: str) -> int:
            return sanity_seed(config.seed, step, 0)

        last: list[Tensor] = []  # the cascade's last step, which the reference is held against
        first_original = torch.empty(0)
        cascade = cascade_maps(model, trace, layer, steps, seed_of, batches, config)
        for b, (original, maps) in enumerate(cascade):
            for (step, _), after in zip(steps, maps, strict=True):
                rho[step] += [_spearman(a, m) for a, m in zip(original, after, strict=True)]
            if b == 0 and shard.is_main:
                examples += [
                    {"step": step, "map": _small(after[:1])[0]}
                    for (step, _), after in zip(steps, maps, strict=True)
                ]
                first_original = original[:1]
            if maps:
                last.append(maps[-1])
            if progress:
                progress("sanity", b + 1, len(batches))
        # the reference: a second, independently seeded copy with every cascaded module
        # re-initialised, against the cascade's last step (every module re-initialised)
        if steps:
            other = copy.deepcopy(model)
            other_modules = dict(other.named_modules())
            reinitialise_(
                other,
                seed=derived_seed(config.seed, "sanity/reference"),
                modules=[other_modules[m] for _, members in steps for m in members],
            )
            engine = make_cam(other, [layer], config)
            twin = torch.cat(
                [engine(x.to(device), targets=y.to(device)).maps[layer].cpu() for x, y in batches]
            )
            maps_last = torch.cat(last)
            rho[REFERENCE] = [_spearman(maps_last[j], twin[j]) for j in range(len(loaded))]
            del other, twin
        if shard.is_main:
            first = batches[0][0][:1]
            examples.insert(
                0,
                {
                    "step": "original",
                    "map": _small(first_original)[0],
                    "thumb": _thumb(first, config.preprocess)[0],
                },
            )
        return [i for i, _, _ in loaded], rho, examples

    gathered = shard.run("sanity", work)
    order = sorted(
        (i, r, j) for r, (indices, _, _) in enumerate(gathered) for j, i in enumerate(indices)
    )
    if not order:
        out.steps, out.modules = [], {}
        return out
    out.rho = {step: [gathered[r][1][step][j] for _, r, j in order] for step in out.steps}
    if all(REFERENCE in g[1] for g in gathered if g[0]):
        out.reference = [gathered[r][1][REFERENCE][j] for _, r, j in order]
    out.files = [str(samples[i].path) for i, _, _ in order]
    out.examples = gathered[0][2]
    return out


# ----------------------------------------------------------------------------- control seeds


def _is_reinitialised(model: nn.Module) -> bool:
    return str(weights_of(model).get("source")) == "reinitialised"


def control_seeds_phase(context: PhaseContext) -> ControlSeeds:
    """Draw the random networks R - 1 more times (``StudyConfig.control_seeds``).

    The untrained control (when the study's is the re-initialised copy of the model under
    test: a user's control model has no seed to redraw) and the sanity cascade are redrawn
    under :func:`control_seed` / :func:`sanity_seed`, on samples of at most
    ``control_seed_photos`` photos, GridPG target mosaics and sanity photos (see
    :class:`ControlSeeds`). The extra networks run together, so each photo is decoded once."""
    config, study, shard = context.config, context.result, context.shard
    draws = range(1, config.control_seeds)
    out = ControlSeeds(seeds=[control_seed(config.seed, r) for r in draws])
    limit = config.control_seed_photos
    name = next((n for n, m in context.controls.items() if _is_reinitialised(m)), None)
    if name is not None:
        out.control = name
        nets = {
            f"{name}/{r}": reinitialised_copy(context.model, seed=control_seed(config.seed, r))
            for r in draws
        }
        usable = [s for s in context.photoset if str(s.path) not in context.skipped]
        sample = stratified_subset(
            usable, limit=limit, seed=derived_seed(config.seed, "control-seeds/photos")
        )
        subset = dataclasses.replace(context.photoset, samples=tuple(sample), skipped=[])
        runs, _ = ratio_phase(
            nets,
            subset,
            # the study's own maps file holds the model and its first control only
            dataclasses.replace(config, keep_examples=0, save_maps=None),
            {n: "control" for n in nets},
            _relabel(context.progress, "control seeds"),
            shard,
        )
        out.runs = [runs[n] for n in nets]
        grid = study.gridpg
        if grid is not None and grid.specs:
            rng = np.random.default_rng(derived_seed(config.seed, "control-seeds/gridpg"))
            rows = sorted(rng.permutation(len(grid.specs))[:limit].tolist())
            scores = _gridpg_scores(nets, context.photoset, grid, rows, config, shard)
            out.gridpg_rows, out.gridpg = rows, [scores[n] for n in nets]
        del nets
    if study.sanity is not None and study.sanity.files:
        # the sanity sample is class-stratified in its order: its first photos are too
        out.sanity_rows = list(range(min(config.control_seed_sanity, len(study.sanity.files))))
        out.sanity = _sanity_redraws(context, study.sanity, out.sanity_rows, list(draws))
    return out


def _relabel(progress: Progress | None, phase: str) -> Progress | None:
    if progress is None:
        return None
    return lambda _phase, done, total: progress(phase, done, total)


def _gridpg_scores(
    nets: Mapping[str, nn.Module],
    photoset: PhotoSet,
    grid: GridPGRun,
    rows: Sequence[int],
    config: StudyConfig,
    shard: Shard,
) -> dict[str, np.ndarray]:
    """Each network's GridPG scores (rows, layers) on the mosaics ``grid.specs[rows]``,
    rebuilt from their photos exactly as the GridPG phase built them."""
    by_file = {str(s.path): s for s in photoset}
    transform = config.preprocess.build(photoset.transform_kind)
    cams = {n: make_cam(m, grid.layers, config) for n, m in nets.items()}
    parts: dict[str, list[tuple[int, np.ndarray]]] = {n: [] for n in nets}
    for chunk_index, start in enumerate(range(0, len(rows), config.batch_size)):
        if not shard.mine(chunk_index):
            continue
        chunk = [grid.specs[i] for i in rows[start : start + config.batch_size]]
        x = torch.stack(
            [
                make_mosaic(load_tensors([by_file[f] for f in spec["files"]], transform))
                for spec in chunk
            ]
        )
        targets = torch.tensor([spec["labels"][spec["cell"]] for spec in chunk])
        cells = torch.tensor([spec["cell"] for spec in chunk])
        for n, cam in cams.items():
            device = model_device(nets[n])
            result = cam(x.to(device), targets=targets.to(device)).cpu()
            per = torch.stack(
                [grid_pointing_score(result.maps[k], cells) for k in grid.layers], dim=1
            )
            parts[n].append((chunk_index, per.numpy()))
    gathered = shard.run("control-seeds/gridpg", lambda: parts)
    out: dict[str, np.ndarray] = {}
    for n in nets:
        merged = sorted((p for part in gathered for p in part[n]), key=lambda t: t[0])
        out[n] = (
            np.concatenate([a for _, a in merged]) if merged else np.empty((0, len(grid.layers)))
        )
    return out


def _sanity_redraws(
    context: PhaseContext, sanity: SanityRun, rows: Sequence[int], draws: Sequence[int]
) -> list[dict[str, list[float]]]:
    """The cascade redrawn under :func:`sanity_seed` for each of ``draws``: rho per step on
    the sanity photos ``rows`` (in batches, sharded like the sanity phase; each draw runs the
    original model again, which also gives the outputs its steps take from it)."""
    config, shard, model = context.config, context.shard, context.model
    by_file = {str(s.path): s for s in context.photoset}
    transform = config.preprocess.build(context.photoset.transform_kind)
    size = config.batch_size
    chunks = [list(rows[k : k + size]) for k in range(0, len(rows), size)]
    mine = [(c, chunk) for c, chunk in enumerate(chunks) if shard.mine(c)]

    def work() -> list[tuple[int, list[dict[str, list[float]]]]]:
        batches = []
        for c, chunk in mine:
            samples = [by_file[sanity.files[j]] for j in chunk]
            labels = torch.tensor([s.label for s in samples])
            batches.append((c, load_tensors(samples, transform), labels))

        steps = [(step, sanity.modules[step]) for step in sanity.steps]
        rho: dict[int, list[dict[str, list[float]]]] = {c: [] for c, _, _ in batches}
        for draw in draws:

            def seed_of(step: str, draw: int = draw) -> int:
                return sanity_seed(config.seed, step, draw)

            cascade = cascade_maps(
                model,
                context.trace,
                sanity.layer,
                steps,
                seed_of,
                [(x, y) for _, x, y in batches],
                config,
            )
            for (c, _, _), (original, maps) in zip(batches, cascade, strict=True):
                rho[c].append(
                    {
                        step: [_spearman(a, m) for a, m in zip(original, after, strict=True)]
                        for (step, _), after in zip(steps, maps, strict=True)
                    }
                )
        return sorted(rho.items())

    gathered = sorted(item for part in shard.run("control-seeds/sanity", work) for item in part)
    return [
        {step: [v for _, per in gathered for v in per[d][step]] for step in sanity.steps}
        for d in range(len(draws))
    ]


def _targets(target: str | int, labels: Tensor) -> Tensor | int | None:
    """The classes to explain: the labels, the predictions (``None``) or one class for all."""
    if target == "true":
        return labels
    return None if target == "predicted" else int(target)


def _spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation of two maps; NaN when either is constant (no ranking)."""
    fa, fb = a.flatten().double().numpy(), b.flatten().double().numpy()
    if np.ptp(fa) == 0 or np.ptp(fb) == 0:
        return float("nan")
    return float(sps.spearmanr(fa, fb).statistic)


def agreement_phase(
    model: nn.Module, photoset: PhotoSet, config: StudyConfig, shard: Shard, skipped: set[str]
) -> dict[str, float]:
    layers = config.used_layers
    samples = [s for s in photoset if str(s.path) not in skipped][: config.agreement_images]
    transform = config.preprocess.build(photoset.transform_kind)
    device = model_device(model)
    mine = [s for i, s in enumerate(samples) if shard.mine(i)]

    def work() -> dict[str, float]:
        worst: dict[str, float] = {layer: 0.0 for layer in layers}
        for start in range(0, len(mine), config.batch_size):
            part = mine[start : start + config.batch_size]
            try:
                x = load_tensors(part, transform).to(device)
            except ImageLoadError:
                continue
            y = torch.tensor([s.label for s in part]).to(device)
            native = GradCAM(model, layers=list(layers), backend="native")(x, targets=y)
            captum = GradCAM(model, layers=list(layers), backend="captum")(x, targets=y)
            for layer in native.layers:
                diff = (native.maps[layer] - captum.maps[layer]).abs().max().item()
                worst[layer] = max(worst[layer], float(diff))
        return worst

    gathered = shard.run("agreement", work)
    return {layer: max(w[layer] for w in gathered) for layer in layers}


# ----------------------------------------------------------------------------- up-front checks


def _input_channels(model: nn.Module) -> int:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return 3


def _check_layers(model: nn.Module, trace: ModelTrace, layers: Sequence[str], role: str) -> None:
    try:
        check_layers(model, trace, layers, role)
    except LayerError as exc:
        raise StudyUsageError(str(exc)) from None


def _locate(model: nn.Module, trace: ModelTrace) -> tuple[str, ...]:
    from xai_checks import cam

    locate = getattr(cam, "locate_layers", None)
    if locate is not None:
        return tuple(locate(model, trace.input_shape))
    return locate_layers_fallback(trace)


def _check_classes(
    classes: ClassList | None, trace: ModelTrace, model: nn.Module, role: str
) -> None:
    what = f"the {role} ({type(model).__name__})"
    try:
        if classes is not None:
            classes.check_outputs(trace.n_outputs, model=what)
        elif trace.n_outputs != 1000:
            raise ClassListError(
                f"{what} has {trace.n_outputs} outputs, but the photo labels are ImageNet-1k's "
                "1000 classes; give the model's class list (classes file, one name per output)"
            )
    except ClassListError as exc:
        raise StudyUsageError(str(exc)) from None


# ----------------------------------------------------------------------------- the study


def run_study(
    model: nn.Module,
    photoset: PhotoSet,
    *,
    controls: Mapping[str, nn.Module] | None = None,
    config: StudyConfig | None = None,
    progress: Progress | None = None,
    name: str | None = None,
    shard: Shard | None = None,
    claims: Iterable[Any] = (),
) -> StudyResult:
    """Run the study's phases on ``model`` (the model under test).

    ``controls`` names the null controls; ``None`` (the default) is one control,
    ``"untrained"``: a seeded (``config.seed``) re-initialised copy of ``model``, the same
    class and architecture. ``{}`` runs no control. ``shard`` is this process's part of a
    distributed study (default: the ``torch.distributed`` group if one is initialised).
    ``claims`` are the claims that will be judged on the result: too few layers for one of them
    (``Claim.min_layers``) is a :class:`StudyUsageError` naming it, before any photo is read.

    Everything that can be checked before decoding a photo is checked first and raises
    :class:`StudyUsageError`: the layers, the class list against the model's outputs, the method.
    """
    if isinstance(model, Mapping):
        raise TypeError(
            "run_study takes the model under test, and controls=... by name; "
            "a dict of models does not say which one is under test"
        )
    config = config or StudyConfig()
    name = name or run_name(model)
    with cuda_tf32(allowed=config.tf32):
        needs = {c.id: c.min_layers for c in claims if getattr(c, "min_layers", 1) > 1}
        return _run_study(model, photoset, controls, config, progress, name, shard, needs)


def _run_study(
    model: nn.Module,
    photoset: PhotoSet,
    controls: Mapping[str, nn.Module] | None,
    config: StudyConfig,
    progress: Progress | None,
    name: str,
    shard: Shard | None,
    needs: Mapping[str, int],
) -> StudyResult:
    if shard is None:
        shard = _current_shard()
    if len(photoset) == 0:
        raise ValueError(f"photo set {photoset.name!r} holds no photos")
    if controls is None:
        controls = {"untrained": reinitialised_copy(model, seed=config.seed)}
    controls = dict(controls)
    if name in controls:
        raise StudyUsageError(f"a control is named like the model under test: {name!r}")
    device = model_device(model)
    start = time.perf_counter()
    timings: dict[str, float] = {}
    # up front: one traced forward per model, before any photo is decoded
    _check_inputs(model, controls, config.preprocess, photoset.transform_kind)
    shape = config.preprocess.input_shape(_input_channels(model))
    try:
        trace = trace_model(model, shape)
    except ValueError as exc:
        raise StudyUsageError(str(exc)) from None
    if not config.layers:
        picked = _locate(model, trace)
        if not picked:
            raise StudyUsageError(
                f"found no layer with a spatial output in {type(model).__name__}; name layers"
            )
        config = dataclasses.replace(config, layers=picked, layers_auto=True)
    layers = config.used_layers
    _check_layers(model, trace, layers, "model under test")
    try:
        check_layer_count(layers, needs)
    except LayerError as exc:
        raise StudyUsageError(str(exc)) from None
    _check_classes(photoset.classes, trace, model, "model under test")
    if isinstance(config.target, int) and config.target >= trace.n_outputs:
        raise StudyUsageError(
            f"--target {config.target}: the model under test has {trace.n_outputs} classes"
        )
    for cname, cmodel in controls.items():
        ctrace = trace if _same_arch(cmodel, model) else _trace_or_usage(cmodel, shape, cname)
        _check_layers(cmodel, ctrace, layers, f"control {cname!r}")
        _check_classes(photoset.classes, ctrace, cmodel, f"control {cname!r}")
    timings["prepare"] = time.perf_counter() - start
    phases = {phase.name: phase for phase in registered_phases()}
    context = PhaseContext(
        model=model,
        name=name,
        controls=controls,
        trace=trace,
        photoset=photoset,
        config=config,
        shard=shard,
        progress=progress,
    )
    t0 = time.perf_counter()
    models = context.models
    digests = {n: state_digest(m) for n, m in models.items()}
    # the ratio phase is the study's spine: its runs are what every other phase starts from
    runs, failed = shard.guard("ratio", lambda: phases["ratio"].run(context))
    timings["ratio"] = time.perf_counter() - t0
    samples = list(photoset)
    known = {str(s.path) for s in photoset.skipped}
    for i, reason in failed:
        path = samples[i].path
        if shard.is_main:
            warnings.warn(f"skipped {path}: {reason}", SkippedImageWarning, stacklevel=2)
        if str(path) not in known:
            photoset.skipped.append(Skipped(path, reason))
            known.add(str(path))
    skipped_files = {str(samples[i].path) for i, _ in failed}
    under_test = runs.pop(name)
    result = StudyResult(
        config=config,
        photoset={
            "name": photoset.name,
            "layout": photoset.layout,
            "root": str(photoset.root) if photoset.root else None,
            "n_listed": len(photoset),
            "classes": "imagenet-1k" if photoset.classes is None else photoset.classes.source,
            "n_classes": 1000 if photoset.classes is None else len(photoset.classes),
        },
        under_test=under_test,
        controls=runs,
        provenance=_provenance(device, shard),
    )
    if context.pipeline:
        result.provenance["gpu_pipeline"] = context.pipeline
    context.study, context.skipped = result, skipped_files
    for phase in phases.values():
        if phase.name == "ratio" or phase.name not in config.phases:
            continue
        t0 = time.perf_counter()
        phase.attach(result, phase.run(context))
        timings[phase.name] = time.perf_counter() - t0
    usable = len(photoset) - len(skipped_files)
    if config.control_seeds > 1 and usable >= config.control_seed_photos:
        t0 = time.perf_counter()
        result.control_seeds = control_seeds_phase(context)
        timings["control_seeds"] = time.perf_counter() - t0
    elif config.control_seeds > 1:
        # the spread between networks is measured on control_seed_photos photos; a set with
        # fewer cannot estimate it, so the control is one network and the results say so
        result.provenance["control_seeds"] = (
            f"one control network: {usable} usable photos, fewer than the "
            f"{config.control_seed_photos} the later networks' sample needs"
        )
    _check_unchanged(models, digests)
    result.skipped = [{"file": str(s.path), "reason": s.reason} for s in photoset.skipped]
    result.photoset["n_used"] = len(under_test.records)
    result.photoset["n_skipped"] = len(result.skipped)
    timings["total"] = time.perf_counter() - start
    result.timings = timings
    return result


#: weight sources known to be trained (the converted ImageNet ResNet-50, torchvision's)
TRAINED_SOURCES = ("msra", "torchvision-v1", "torchvision-v2")


def run_name(model: nn.Module) -> str:
    """How results name the model under test: ``"pretrained"`` only when its weights are known
    to be trained (:data:`TRAINED_SOURCES`), else ``"under_test"`` (a user's model, random
    weights, a state dict file)."""
    source = getattr(getattr(model, "xai_weights", None), "source", None)
    return "pretrained" if source in TRAINED_SOURCES else "under_test"


def _same_arch(a: nn.Module, b: nn.Module) -> bool:
    if type(a) is not type(b):
        return False
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)


def _trace_or_usage(model: nn.Module, shape: tuple[int, ...], name: str) -> ModelTrace:
    try:
        return trace_model(model, shape)
    except ValueError as exc:
        raise StudyUsageError(f"control {name!r}: {exc}") from None


def _current_shard() -> Shard:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Shard(rank=dist.get_rank(), world=dist.get_world_size())
    return Shard()


def _check_inputs(
    model: nn.Module,
    controls: Mapping[str, nn.Module],
    preprocess: Preprocess,
    kind: str,
) -> None:
    """Models with real weights, and a preprocessing that gives them what they take."""
    for role, m in {
        "model under test": model,
        **{f"control {c!r}": v for c, v in controls.items()},
    }.items():
        on_meta = meta_tensors(m)
        if on_meta:
            raise StudyUsageError(
                f"the {role} has tensors on the meta device (no values: e.g. built under "
                f"torch.device('meta') or init_empty_weights), such as {', '.join(on_meta[:3])}; "
                "load its weights (load_state_dict(..., assign=True)) before the study"
            )
    try:
        probe_preprocess(preprocess, kind=kind, channels=_input_channels(model))
    except ValueError as exc:
        raise StudyUsageError(str(exc)) from None


def _check_unchanged(models: Mapping[str, nn.Module], before: Mapping[str, str]) -> None:
    changed = [name for name, m in models.items() if state_digest(m) != before[name]]
    if changed:
        raise ModelChangedError(
            f"the parameters or buffers of {', '.join(map(repr, changed))} changed during the "
            "study (its forward updates it?); maps from a model that changes under them are not "
            "reproducible"
        )
