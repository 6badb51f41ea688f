"""``depth-localisation-boxes``: deeper layers put their mass in the labelled object's box."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from xai_checks.claims import _rules as R
from xai_checks.claims._localisation import LocalisationClaim
from xai_checks.claims.base import Verdict, method_name, under_test

if TYPE_CHECKING:
    from xai_checks.study import StudyResult


class DepthLocalisationBoxes(LocalisationClaim):
    id: ClassVar[str] = "depth-localisation-boxes"
    title: ClassVar[str] = "Deeper layers put their mass in the object's box"
    metric: ClassVar[str] = "boxes"
    needs: ClassVar[tuple[str, ...]] = ("ratio",)
    min_layers: ClassVar[int] = 3

    def hypothesis_for(self, study: StudyResult | None) -> str:
        layers = self.layers or (tuple(study.config.layers) if study is not None else ())
        last = layers[-1] if layers else "the last layer"
        versus = " and the untrained control" if "untrained" in self.controls else ""
        return (
            "Deeper layers localise the labelled object: on photos with a ground-truth bounding "
            f"box, the share of {method_name(study)} mass inside the box (energy pointing game) "
            f"rises with depth (Page's L p < alpha), {last} beats a uniform map (the box's area "
            f"share){versus}."
        )

    def evaluate(self, study: StudyResult) -> Verdict:
        main = under_test(study)
        rows = [i for i, r in enumerate(main.records) if "box_mass" in r]
        keep = R.unique_photos([main.records[i]["file"] for i in rows])
        rows = [i for i, k in zip(rows, keep, strict=True) if k]
        n = len(rows)
        if n < self.min_n:
            verdict = self.verdict(study, n)
            why = (
                "the photo set has no bounding boxes (a TinyImageNet-200 tree has them: "
                "--data PATH/tiny-imagenet-200 --layout tinyimagenet200)"
                if n == 0
                else f"only {n} photos with boxes; the claim needs at least {self.min_n}"
            )
            verdict.add("too-few-boxes", why)  # --xai-strict=boxes matches this code
            verdict.insufficient = True
            return verdict
        layers = self.layers or ()
        scores = {
            run.name: R.layer_matrix(run, "box_mass", layers)[keep] for run in study.runs.values()
        }
        area = np.array([main.records[i]["box_area"] for i in rows], dtype=float)
        files = [main.records[i]["file"] for i in rows]
        later = {
            run.name: R.later_draws(study, run.name, "box_mass", layers, files)
            for run in study.controls.values()
        }
        return self.judge(
            study,
            scores,
            n=n,
            baseline=area,
            baseline_name="the box's area share (a uniform map)",
            key="box_area",
            later=later,
        )
