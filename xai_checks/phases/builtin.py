"""The built-in phases that the claims about where a map points read.

``ratio`` (the study's spine: per photo and layer, the high-activation ratio and what the
other phases select photos by), ``gridpg`` (the grid pointing game on mosaics), ``sanity``
(cascading randomisation) and ``agreement`` (native vs Captum). Their batch functions live in
:mod:`xai_checks.study`, which also decodes the photos they share; their figures are drawn by
the claims that read them, so :meth:`Phase.report_section` is ``None`` here. Their JSON forms
keep their places at the top of ``results.json`` (``models``, ``gridpg``, ``sanity``,
``agreement``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from xai_checks import study as _study
from xai_checks.phases.base import Phase, PhaseContext
from xai_checks.result_records import GridPGRecord, MosaicSpec, SanityRecord, model_records

if TYPE_CHECKING:
    from xai_checks.study import StudyResult

__all__ = ["AgreementPhase", "GridPGPhase", "RatioPhase", "SanityPhase"]


def _static_fragment(key: str) -> dict[str, Any]:
    from xai_checks.report.schema import packaged_schema

    fragment: dict[str, Any] = packaged_schema()["properties"][key]
    return fragment


class _TopLevel(Phase):
    """A built-in phase whose JSON form is a top-level key of ``results.json``."""

    json_key: ClassVar[str] = ""

    def attach(self, study: StudyResult, output: Any) -> None:
        setattr(study, self.json_key, output)

    def output(self, study: StudyResult) -> Any:
        return getattr(study, self.json_key, None)

    def schema(self) -> dict[str, Any]:
        return _static_fragment(self.json_key)


class RatioPhase(Phase):
    """Per photo, model and layer: the high-activation ratio, pooled ratio, sweep, box mass.

    The study runs it first, for every model: its per-photo records are the model runs every
    other phase and every claim starts from (``StudyResult.under_test``, ``.controls``).
    """

    name: ClassVar[str] = "ratio"
    title: ClassVar[str] = "high-activation ratio per photo, model and layer"
    needs: ClassVar[tuple[str, ...]] = ()
    json_key: ClassVar[str] = "models"

    def run(self, context: PhaseContext) -> Any:
        roles = {context.name: "under_test"}
        roles.update({name: "control" for name in context.controls})
        return _study.ratio_phase(
            context.models,
            context.photoset,
            context.config,
            roles,
            context.progress,
            context.shard,
            context.pipeline,
        )

    def attach(self, study: StudyResult, output: Any) -> None:
        raise TypeError("the ratio phase's runs make the study; run_study attaches them")

    def output(self, study: StudyResult) -> Any:
        return study.runs or None

    def schema(self) -> dict[str, Any]:
        return _static_fragment("models")

    def to_json(self, study: StudyResult) -> Any:
        return model_records(study)


class GridPGPhase(_TopLevel):
    """The grid pointing game on 2x2 mosaics of confidently classified photos."""

    name: ClassVar[str] = "gridpg"
    title: ClassVar[str] = "grid pointing game on mosaics"
    json_key: ClassVar[str] = "gridpg"

    def run(self, context: PhaseContext) -> Any:
        return _study.gridpg_phase(
            context.models,
            context.photoset,
            context.result.under_test,
            context.config,
            context.progress,
            context.shard,
        )

    def to_json(self, study: StudyResult) -> Any:
        grid = study.gridpg
        if grid is None:
            return None
        import numpy as np

        scores = {
            name: np.asarray(s, dtype=float).reshape(-1, len(grid.layers))
            for name, s in grid.scores.items()
        }
        n = max((len(s) for s in scores.values()), default=len(grid.specs))
        targets = {str(spec["files"][spec["cell"]]) for spec in grid.specs}
        return GridPGRecord(
            layers=list(grid.layers),
            n_candidates=int(grid.n_candidates),
            n_mosaics=int(n),
            n_targets=len(targets),
            note=str(grid.note or ""),
            specs=cast(list[MosaicSpec], list(grid.specs)),
            scores={name: s.tolist() for name, s in scores.items()},
        )


class SanityPhase(_TopLevel):
    """Cascading parameter randomisation of the model under test (Adebayo et al. 2018)."""

    name: ClassVar[str] = "sanity"
    title: ClassVar[str] = "cascading randomisation of the model under test"
    json_key: ClassVar[str] = "sanity"

    def run(self, context: PhaseContext) -> Any:
        return _study.sanity_phase(
            context.model,
            context.trace,
            context.photoset,
            context.config,
            context.progress,
            context.shard,
            context.skipped,
        )

    def to_json(self, study: StudyResult) -> Any:
        sanity = study.sanity
        if sanity is None:
            return None
        return SanityRecord(
            layer=sanity.layer,
            steps=list(sanity.steps),
            rho={k: list(v) for k, v in sanity.rho.items()},
            files=list(sanity.files),
            reference=list(sanity.reference),
        )


class AgreementPhase(_TopLevel):
    """Native vs Captum Grad-CAM on the first photos: the largest difference per layer."""

    name: ClassVar[str] = "agreement"
    title: ClassVar[str] = "native vs Captum maps"
    json_key: ClassVar[str] = "agreement"

    def run(self, context: PhaseContext) -> Any:
        return _study.agreement_phase(
            context.model, context.photoset, context.config, context.shard, context.skipped
        )

    def to_json(self, study: StudyResult) -> Any:
        return None if study.agreement is None else dict(study.agreement)
