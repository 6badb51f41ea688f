"""The typed records of ``results.json`` that describe a study: its provenance, photo set,
models and their per-photo rows.

Each record is a dataclass: ``to_dict()`` writes it and
:func:`xai_checks.dataclass_schema.dataclass_schema` generates its part of
``results.schema.json`` from the same fields (``scripts/generate_results_schema.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, NotRequired, TypedDict

import numpy as np

from xai_checks.dataclass_schema import JSONRecord, about, keywords

if TYPE_CHECKING:
    from xai_checks.study import ControlSeeds, ModelRun, StudyResult

__all__ = [
    "ControlSeedsRecord",
    "Count",
    "GridPGRecord",
    "LayerNumbers",
    "ModelRecord",
    "MosaicSpec",
    "PhotoCounts",
    "PhotoRecord",
    "PhotosetRecord",
    "ProvenanceRecord",
    "SanityRecord",
    "SkippedPhoto",
    "StatisticalTestRecord",
    "WeightsRecord",
    "model_records",
]

#: a count: an integer at or above zero
Count = Annotated[int, keywords(minimum=0)]
#: layer (or phase) name -> a number, null where it is missing or not finite
LayerNumbers = dict[str, float | None]


@dataclass(frozen=True, kw_only=True)
class WeightsRecord(JSONRecord):
    """Where a model's weights came from."""

    SCHEMA_DEF: ClassVar[str] = "weights"

    source: str
    arch: str | None = None
    path: str | None = None
    sha256: str | None = field(default=None, metadata=about(schema={"pattern": "^[0-9a-f]{64}$"}))
    seed: int | None = None
    detail: str | None = None
    #: keys the model's ``xai_weights.to_dict()`` adds beyond these, written as they are
    more: dict[str, Any] = field(default_factory=dict, metadata=about(spread=True))

    @classmethod
    def of(cls, weights: Mapping[str, Any] | None) -> WeightsRecord:
        """The record of a run's weights dict (``source`` ``"unknown"`` when it names none)."""
        w = dict(weights or {})
        named = ("source", "arch", "path", "sha256", "seed", "detail")
        return cls(
            source=w.get("source", "unknown"),
            arch=w.get("arch"),
            path=w.get("path"),
            sha256=w.get("sha256"),
            seed=w.get("seed"),
            detail=w.get("detail"),
            more={k: v for k, v in w.items() if k not in named},
        )


@dataclass(frozen=True, kw_only=True)
class PhotoRecord(JSONRecord):
    """One photo's row for one model: its label, the model's prediction, and the per-layer
    numbers."""

    SCHEMA_DEF: ClassVar[str] = "photo"

    file: str
    label: int
    label_name: str
    pred: int
    pred_name: str
    confidence: float | None
    true_confidence: float | None = None
    true_rank: int | None = field(
        default=None,
        metadata=about("classes the model ranks strictly above the true one (0: correct top-1)"),
    )
    correct: bool
    target: int | None = None
    ratio: LayerNumbers
    ratio_pooled: LayerNumbers
    sweep: dict[str, list[float | None]] = field(default_factory=dict)
    box: list[float | None] | None = field(
        default=None,
        metadata=about(
            "x0, y0, x1, y1 in model-input pixels", schema={"minItems": 4, "maxItems": 4}
        ),
    )
    box_mass: LayerNumbers | None = None

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> PhotoRecord:
        """The row of one of a run's per-photo records."""
        return cls(
            file=record.get("file"),  # type: ignore[arg-type]
            label=record.get("label"),  # type: ignore[arg-type]
            label_name=record.get("label_name"),  # type: ignore[arg-type]
            pred=record.get("pred"),  # type: ignore[arg-type]
            pred_name=record.get("pred_name"),  # type: ignore[arg-type]
            confidence=record.get("confidence"),
            true_confidence=record.get("true_confidence"),
            true_rank=record.get("true_rank"),
            correct=record.get("correct"),  # type: ignore[arg-type]
            target=record.get("target"),
            ratio=record.get("ratio") or {},
            ratio_pooled=record.get("ratio_pooled") or {},
            sweep=record.get("sweep") or {},
            box=record.get("box"),
            box_mass=record.get("box_mass"),
        )


@dataclass(frozen=True, kw_only=True)
class ModelRecord(JSONRecord):
    """One model of the study: its weights, layers and one row per photo, in study order."""

    role: str = field(default="under_test", metadata=about("'under_test' or 'control'"))
    model_class: str | None = field(
        default=None, metadata=about("the model's class name (e.g. ResNet)", json="class")
    )
    weights: WeightsRecord
    layers: list[str]
    n_images: Count
    accuracy: float | None
    photos: list[PhotoRecord]

    @classmethod
    def of(cls, run: ModelRun) -> ModelRecord:
        return cls(
            role=run.role,
            model_class=run.model_class,
            weights=WeightsRecord.of(run.weights),
            layers=list(run.layers),
            n_images=len(run.records),
            accuracy=run.accuracy,
            photos=[PhotoRecord.of(r) for r in run.records],
        )


def model_records(study: StudyResult) -> dict[str, ModelRecord]:
    """The ratio phase's JSON form: per model, its weights, layers and one row per photo."""
    return {name: ModelRecord.of(run) for name, run in study.runs.items()}


@dataclass(frozen=True, kw_only=True)
class ProvenanceRecord(JSONRecord):
    """Where the numbers came from: software, machine, seed, timings, command and weights."""

    versions: dict[str, str | None] = field(metadata=about("package name -> version"))
    platform: str | None = None
    processor: str | None = None
    cpu: str | None = field(
        default=None, metadata=about("the CPU model, e.g. from /proc/cpuinfo 'model name'")
    )
    device: str | None
    gpu: str | None = None
    cuda: str | None = None
    threads: int | None
    seed: int | None
    run_time_s: float | None = field(metadata=about("the study's total wall time in seconds"))
    timings_s: LayerNumbers = field(metadata=about("phase -> wall seconds ('total' included)"))
    command: str | None = field(metadata=about("the command line, when the caller gave it"))
    models: dict[str, WeightsRecord]
    gpu_pipeline: dict[str, Any] | None = field(
        default=None,
        metadata=about(
            "CUDA-graph replays and eager calls per model, photos decoded on the device and on "
            "the CPU by reason, peak GPU memory in bytes (runs with --cuda-graphs / "
            "--device-decode or on CUDA)"
        ),
    )


@dataclass(frozen=True, kw_only=True)
class PhotoCounts(JSONRecord):
    """How many photos were listed, used and skipped, and how many true classes they cover."""

    listed: int | None
    used: Count
    skipped: Count
    classes: Count


@dataclass(frozen=True, kw_only=True)
class SkippedPhoto(JSONRecord):
    """A photo the study could not use, and why."""

    file: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class PhotosetRecord(JSONRecord):
    """The photo set: where it was read from, how many photos were used, per true class."""

    name: str
    layout: str | None
    root: str | None
    counts: PhotoCounts
    classes: dict[str, Count] = field(metadata=about("photos used per true class"))
    skipped: list[SkippedPhoto]


@dataclass(frozen=True, kw_only=True)
class StatisticalTestRecord(JSONRecord):
    """One statistical test a verdict ran: the claim, its name in the verdict's tests (or
    control:<name>), the model it read and its result."""

    claim: str
    name: str
    model: str | None = None
    result: dict[str, Any]


class MosaicSpec(TypedDict):
    """One 2x2 mosaic of the grid pointing game: its four photos and the target cell."""

    files: Annotated[list[str], keywords(minItems=4, maxItems=4)]
    labels: NotRequired[list[int]]
    names: NotRequired[list[str]]
    cell: Annotated[
        int, keywords(minimum=0, maximum=3, description="index of the target cell in files")
    ]
    target_file: NotRequired[Annotated[str, keywords(description="the target photo (files[cell])")]]


@dataclass(frozen=True, kw_only=True)
class GridPGRecord(JSONRecord):
    """The grid pointing game's mosaics and, per model, each mosaic's score per layer."""

    layers: list[str]
    n_candidates: Count = field(
        metadata=about("photos classified correctly with enough confidence")
    )
    n_mosaics: Count
    n_targets: Count = field(
        default=0,
        metadata=about(
            "distinct target photos: each is the target of exactly one mosaic (the unit of "
            "analysis)"
        ),
    )
    note: str
    specs: list[MosaicSpec]
    scores: dict[str, list[list[float | None]]] = field(
        metadata=about("model -> per mosaic, per layer: share of the map's mass in the target cell")
    )


@dataclass(frozen=True, kw_only=True)
class SanityRecord(JSONRecord):
    """Cascading randomisation: per step, each sampled photo's Spearman rho between the model's
    map and the map after re-initialising the layers up to that step."""

    layer: str
    steps: list[str]
    rho: dict[str, list[float | None]]
    files: list[str] = field(
        default_factory=list,
        metadata=about(
            "the photo behind each rho value: a seeded, class-stratified sample of the usable "
            "photos"
        ),
    )
    reference: list[float | None] = field(
        default_factory=list,
        metadata=about(
            "per photo, Spearman rho between the maps of two independently re-initialised "
            "copies of the model: the empirical reference of the sanity claim's bound"
        ),
    )


@dataclass(frozen=True, kw_only=True)
class ControlSeedsRecord(JSONRecord):
    """The random networks' later draws (StudyConfig.control_seeds > 1): their seeds, per-photo
    ratios, GridPG scores and cascade rho on their photo samples."""

    count: int = field(
        metadata=about("R: networks that stand for the control, the study's own included")
    )
    seeds: list[int] = field(metadata=about("the seeds of draws 1..R-1"))
    control: str | None = field(metadata=about("the control these draws stand for"))
    ratio: list[dict[str, dict[str, LayerNumbers]]] = field(
        metadata=about("per later draw: photo file -> ratio, ratio_pooled (and box_mass)")
    )
    gridpg_rows: list[int] = field(metadata=about("the mosaics (rows of gridpg.scores) scored"))
    gridpg: list[list[list[float | None]]] = field(
        metadata=about("per later draw: per mosaic of gridpg_rows, per layer: the GridPG score")
    )
    sanity_rows: list[int] = field(metadata=about("the cascade photos (indices of sanity.files)"))
    sanity: list[dict[str, list[float | None]]] = field(
        metadata=about("per later draw: per cascade step, the rho on each photo of sanity_rows")
    )

    @classmethod
    def of(cls, draws: ControlSeeds) -> ControlSeedsRecord:
        return cls(
            count=draws.count,
            seeds=list(draws.seeds),
            control=draws.control,
            ratio=[
                {
                    r["file"]: {k: r[k] for k in ("ratio", "ratio_pooled", "box_mass") if k in r}
                    for r in run.records
                }
                for run in draws.runs
            ],
            gridpg_rows=list(draws.gridpg_rows),
            gridpg=[np.asarray(g, dtype=float).tolist() for g in draws.gridpg],
            sanity_rows=list(draws.sanity_rows),
            sanity=[{k: list(v) for k, v in rho.items()} for rho in draws.sanity],
        )
