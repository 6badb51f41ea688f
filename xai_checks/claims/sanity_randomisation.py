"""``sanity-randomisation``: the last layer's map depends on the learned parameters."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from xai_checks.claims.base import Claim, Status, Verdict, method_name, model_name

if TYPE_CHECKING:
    from xai_checks.study import StudyResult


class SanityRandomisation(Claim):
    id: ClassVar[str] = "sanity-randomisation"
    title: ClassVar[str] = "The map depends on the learned parameters (cascading randomisation)"
    metric: ClassVar[str] = "randomisation"
    test: ClassVar[str] = "spearman"
    direction: ClassVar[str] = "decreasing"
    needs: ClassVar[tuple[str, ...]] = ("sanity",)
    defaults: ClassVar[dict[str, Any]] = {"bound": 0.5}
    min_n = 3

    def default_layers(self, study: StudyResult) -> tuple[str, ...]:
        if study.sanity is not None:
            return (study.sanity.layer,)
        return (tuple(study.config.layers)[-1],)

    def hypothesis_for(self, study: StudyResult | None) -> str:
        layer = (self.layers or ("the last layer",))[-1]
        return (
            f"The {layer} {method_name(study)} map depends on the learned parameters: under "
            f"cascading randomisation of {model_name(study)} from the output back, the median "
            "Spearman rank correlation with the original map falls below "
            f"{float(self.params['bound']):g} at every step."
        )

    def evaluate(self, study: StudyResult) -> Verdict:
        sanity = study.sanity
        if sanity is None or not sanity.steps:
            verdict = self.verdict(study, 0)
            verdict.add("phase-missing", "the sanity phase did not run")
            return verdict
        bound = float(self.params["bound"])
        meds: dict[str, float] = {}
        n = 0
        for step in sanity.steps:
            rho = np.asarray(sanity.rho[step], dtype=float)
            finite = rho[np.isfinite(rho)]
            n = max(n, len(rho))
            meds[step] = float(np.median(np.abs(finite))) if len(finite) else float("nan")
        verdict = self.verdict(study, n)
        verdict.medians["|spearman rho| with original"] = meds
        verdict.tests["primary"] = {
            "method": "median |Spearman rho| per cascade step",
            "bound": bound,
            "medians": meds,
            "n": n,
        }
        if n < self.min_n:
            verdict.add("too-few-photos", f"only {n} images; the claim needs at least {self.min_n}")
            verdict.insufficient = True
            return verdict
        if any(not math.isfinite(v) for v in meds.values()):
            verdict.add("constant-maps", "some randomised maps are constant: no rank correlation")
            return verdict
        above = [s for s, v in meds.items() if v >= bound]
        if above:
            verdict.status = Status.REFUTED
            verdict.add(
                "still-similar",
                f"maps stay similar to the original after randomising {', '.join(above)} "
                f"(median |rho| >= {bound})",
            )
        else:
            verdict.status = Status.SUPPORTED
            worst = max(meds.values())
            verdict.add(
                "below-bound", f"median |rho| <= {worst:.3f} < {bound} at every cascade step"
            )
        return verdict
