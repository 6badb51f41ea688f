"""``depth-localisation-gridpg``: deeper layers localise the class on 2x2 mosaics (GridPG)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from xai_checks.claims import _rules as R
from xai_checks.claims._localisation import LocalisationClaim
from xai_checks.claims.base import Verdict, method_name
from xai_checks.gridpg_targets import describe_gridpg_targets

if TYPE_CHECKING:
    from xai_checks.study import StudyResult


class DepthLocalisationGridPG(LocalisationClaim):
    """GridPG (Rao et al., CVPR 2022): deeper layers put more of the target's map mass in its cell.

    Target photos are selected by the model under test's own output
    (``StudyConfig.gridpg_targets``). The default, ``confident``, keeps the photos it classifies
    correctly with confidence >= ``gridpg_confidence`` (0.9): the photos where its evidence for
    the class is strongest, typically one large, central object of a class it knows well. The
    verdict is then about those easy photos, not all photos; scores there are higher than over
    all photos, and hard or misclassified photos are left out. The untrained control is scored
    on the same mosaics, so the selection does not favour the model against it. ``top5`` keeps
    every photo whose true label is among the model's top 5 classes: wrong and unsure top-1
    predictions stay in, a far weaker dependence on the model (see
    :mod:`xai_checks.gridpg_targets`).
    """

    id: ClassVar[str] = "depth-localisation-gridpg"
    title: ClassVar[str] = "Deeper layers localise the class (grid pointing game)"
    metric: ClassVar[str] = "gridpg"
    needs: ClassVar[tuple[str, ...]] = ("ratio", "gridpg")
    min_layers: ClassVar[int] = 3
    defaults: ClassVar[dict[str, Any]] = {"chance": 0.25, "n_boot": 2000, "details": True}

    def hypothesis_for(self, study: StudyResult | None) -> str:
        layers = self.layers or (tuple(study.config.layers) if study is not None else ())
        last = layers[-1] if layers else "the last layer"
        versus = " and above the untrained control" if "untrained" in self.controls else ""
        rule = study.config.gridpg_targets if study is not None else "confident"
        confidence = study.config.gridpg_confidence if study is not None else 0.9
        targets = describe_gridpg_targets(rule, confidence=confidence)
        return (
            "Deeper layers localise the explained class: on 2x2 mosaics, one per target photo "
            f"(photos {targets}), the {method_name(study)} mass inside the target cell rises "
            f"with depth (Page's L p < alpha), {last} is above chance "
            f"({float(self.params['chance']):g}){versus}."
        )

    def evaluate(self, study: StudyResult) -> Verdict:
        grid = study.gridpg
        if grid is None:
            verdict = self.verdict(study, 0)
            verdict.add("phase-missing", "the GridPG phase did not run")
            verdict.insufficient = True
            return verdict
        layers = self.layers or ()
        idx = [grid.layers.index(layer) for layer in layers]
        empty = np.empty((0, len(layers)))
        # The unit of analysis is the target photo: each counts once, however many mosaics.
        targets = [str(spec["files"][spec["cell"]]) for spec in grid.specs]
        keep = R.unique_photos(targets)
        scores = {}
        for name, v in grid.scores.items():
            v = v[:, idx] if len(v) else empty
            if len(v) != len(keep):
                raise ValueError(f"GridPG has {len(keep)} mosaics but {len(v)} scores for {name}")
            scores[name] = v[keep]
        n = int(keep.sum())
        later = _later_draws(study, idx, keep)
        chance = float(self.params["chance"])
        if n < self.min_n:
            verdict = self.verdict(study, n)
            reason = f"only {n} target photos; the claim needs at least {self.min_n}"
            reason += f" ({grid.note})" if grid.note else ""
            verdict.add("too-few-photos", reason)
            verdict.insufficient = True
        else:
            verdict = self.judge(
                study,
                scores,
                n=n,
                baseline=np.full(n, chance),
                baseline_name=f"chance {chance:g}",
                key="chance",
                later=later,
            )
        repeated = int(len(keep) - n)
        if repeated:
            verdict.add(
                "repeated-targets",
                f"{repeated} mosaics repeated a target photo and were not counted again",
            )
        return verdict


def _later_draws(
    study: StudyResult, idx: list[int], keep: np.ndarray
) -> dict[str, list[np.ndarray]]:
    """The untrained control's later draws (``StudyResult.control_seeds``) as arrays like
    its GridPG scores (the claim's layers, one row per counted target; NaN rows where a draw
    did not score that mosaic)."""
    seeds = study.control_seeds
    grid = study.gridpg
    if seeds is None or seeds.control is None or grid is None:
        return {}
    arrays = []
    for scores in seeds.gridpg:
        full = np.full((len(grid.specs), len(idx)), np.nan)
        if len(seeds.gridpg_rows):
            full[seeds.gridpg_rows] = np.asarray(scores, dtype=float)[:, idx]
        arrays.append(full[keep])
    return {seeds.control: arrays}
