"""``sanity-randomisation``: the last layer's map depends on the learned parameters."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from xai_checks import stats
from xai_checks.claims import _rules as R
from xai_checks.claims.base import Claim, Status, Verdict, method_name, model_name

if TYPE_CHECKING:
    from xai_checks.study import StudyResult


class SanityRandomisation(Claim):
    """The last layer's map changes when the learned weights are randomised (Adebayo et al.
    2018, cascading randomisation), judged per step by the mean of ``bound - |rho|``.

    The bound and the SESOI are this project's choices, not Adebayo et al.'s (who set no
    threshold): |rho| = 0.5 is where half the rank order of the map is left, and a margin of
    0.1 below it (SESOI) is the smallest change in mean |rho| that we count as "the map
    changed" rather than as noise of the per-photo correlations (their spread is about 0.2).
    """

    id: ClassVar[str] = "sanity-randomisation"
    title: ClassVar[str] = "The map depends on the learned parameters (cascading randomisation)"
    metric: ClassVar[str] = "randomisation"
    test: ClassVar[str] = "spearman"
    direction: ClassVar[str] = "decreasing"
    needs: ClassVar[tuple[str, ...]] = ("sanity",)
    defaults: ClassVar[dict[str, Any]] = {"bound": 0.5, "n_boot": 2000}
    #: |rho| must fall at least 0.1 below the bound on average to count as "changed"
    sesoi = 0.1
    #: from the calibration table (docs/calibration.md): SUPPORTED reaches 0.8 for a margin
    #: of 2x the SESOI from this n on (the sanity phase uses 200 photos by default)
    min_n = 100

    def default_layers(self, study: StudyResult) -> tuple[str, ...]:
        if study.sanity is not None:
            return (study.sanity.layer,)
        return (tuple(study.config.layers)[-1],)

    def hypothesis_for(self, study: StudyResult | None) -> str:
        layer = (self.layers or ("the last layer",))[-1]
        return (
            f"The {layer} {method_name(study)} map depends on the learned parameters: under "
            f"cascading randomisation of {model_name(study)} from the output back, the mean "
            "absolute Spearman rank correlation with the original map falls at least "
            f"{self.sesoi:g} below {float(self.params['bound']):g} at every step."
        )

    def evaluate(self, study: StudyResult) -> Verdict:
        sanity = study.sanity
        if sanity is None or not sanity.steps:
            verdict = self.verdict(study, 0)
            verdict.add("phase-missing", "the sanity phase did not run")
            return verdict
        bound = float(self.params["bound"])
        meds: dict[str, float] = {}
        margins: dict[str, stats.EffectEstimate] = {}
        n = 0
        seeds = study.control_seeds
        for step in sanity.steps:
            rho = np.asarray(sanity.rho[step], dtype=float)
            finite = rho[np.isfinite(rho)]
            n = max(n, len(rho))
            meds[step] = float(np.median(np.abs(finite))) if len(finite) else float("nan")
            # the later draws of the cascade, on their sample of the same photos
            later = []
            for drawn in seeds.sanity if seeds is not None else []:
                column = np.full(len(rho), np.nan)
                column[seeds.sanity_rows] = drawn[step]  # type: ignore[union-attr]
                later.append(column)
            # one value per photo (and draw) and step: how far below the bound its |rho| falls
            margins[step] = R.effect(
                bound - np.abs(R.with_draws(rho, later)),
                self,
                name=f"{bound:g} - |rho| ({step})",
                m_equivalence=len(sanity.steps),
            )
        verdict = self.verdict(study, n)
        verdict.medians["|spearman rho| with original"] = meds
        verdict.tests["primary"] = {
            "method": "median |Spearman rho| per cascade step",
            "bound": bound,
            "medians": meds,
            "n": n,
        }
        verdict.tests["margins"] = {step: e.to_dict() for step, e in margins.items()}
        spread = {step: R.seed_spread(e) for step, e in margins.items() if e.seeds is not None}
        if spread:
            verdict.tests["seeds"] = spread
        if n < self.min_n:
            verdict.add("too-few-photos", f"only {n} photos; the claim needs at least {self.min_n}")
            verdict.insufficient = True
            return verdict
        if any(not math.isfinite(v) for v in meds.values()):
            verdict.add("constant-maps", "some randomised maps are constant: no rank correlation")
            return verdict
        absent = [s for s, e in margins.items() if e.decision == "absent"]
        unclear = [s for s, e in margins.items() if e.decision == "unclear"]
        if absent:
            verdict.status = Status.REFUTED
            verdict.add(
                "still-similar",
                f"maps stay similar to the original after randomising {', '.join(absent)}: "
                f"mean |rho| is not at least {self.sesoi:g} below {bound:g} "
                f"(margin {', '.join(R.describe_effect(margins[s]) for s in absent)})",
            )
        elif unclear:
            verdict.add(
                "effect-unclear",
                f"after randomising {', '.join(unclear)} the margin below {bound:g} is too "
                "uncertain to decide at this n",
            )
        else:
            worst_step = max(margins, key=lambda s: margins[s].p_present)
            worst = margins[worst_step]
            verdict.status = Status.SUPPORTED
            verdict.add(
                "below-bound",
                f"mean |rho| falls at least {self.sesoi:g} below {bound:g} at every cascade "
                f"step (median |rho| at most {max(meds.values()):.3f}); "
                f"weakest margin {R.describe_effect(worst)} ({worst_step}, "
                f"p = {R.fmt_p(worst.p_present)})",
            )
        R.conclude(
            verdict,
            required={
                step: (f"margin below |rho| = {bound:g} at step {step}", e)
                for step, e in margins.items()
            },
        )
        return verdict
