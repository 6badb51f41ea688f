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
    2018, cascading randomisation), judged per step by the mean over photos of
    ``(1 + r) / 2 - |rho|``: rho the Spearman correlation of the randomised map with the
    original, r the empirical reference on the same photo.

    The reference r is |rho| between the maps of two independently re-initialised copies of
    the model on that photo (``SanityRun.reference``): how alike two maps are that share the
    photo and the architecture but no learned parameter. ``(1 + r) / 2`` is halfway from an
    unchanged map (|rho| = 1) to that reference: a randomised map must have moved at least
    halfway from the original towards a map that knows nothing the model learned. Adebayo et
    al. set no threshold; the halfway rule and the SESOI are this project's choices. With
    r = 0 the bound is 0.5, where half the rank order is left. A study without the reference
    (a results file from before it was measured) uses r = 0 and says so.

    SESOI 0.1: the mean |rho| must fall at least 0.1 below the halfway bound, the smallest
    change we count as "the map changed" rather than as noise of the per-photo correlations
    (their spread is about 0.2).
    """

    id: ClassVar[str] = "sanity-randomisation"
    title: ClassVar[str] = "The map depends on the learned parameters (cascading randomisation)"
    metric: ClassVar[str] = "randomisation"
    test: ClassVar[str] = "spearman"
    direction: ClassVar[str] = "decreasing"
    needs: ClassVar[tuple[str, ...]] = ("sanity",)
    defaults: ClassVar[dict[str, Any]] = {"n_boot": 2000}
    #: the mean |rho| must fall at least 0.1 below the halfway bound to count as "changed"
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
            "over photos of the absolute Spearman rank correlation with the original map "
            f"falls at least {self.sesoi:g} below the halfway bound (1 + r) / 2 at every "
            "step, r being |rho| between the maps of two independently re-initialised copies "
            "of the model on the same photo."
        )

    def evaluate(self, study: StudyResult) -> Verdict:
        sanity = study.sanity
        if sanity is None or not sanity.steps:
            verdict = self.verdict(study, 0)
            verdict.add("phase-missing", "the sanity phase did not run")
            return verdict
        size = max((len(sanity.rho[step]) for step in sanity.steps), default=0)
        measured = len(sanity.reference) == size and size > 0
        reference = (
            np.abs(np.asarray(sanity.reference, dtype=float)) if measured else np.zeros(size)
        )
        # a re-initialised copy often gives a constant map (no positive gradient-weighted
        # activation): Spearman's rho is undefined there, and the two maps share no rank
        # order, so r is 0 on that photo (counted in the primary test)
        constant = int(np.isnan(reference).sum())
        reference = np.where(np.isnan(reference), 0.0, reference)
        # per photo, halfway from an unchanged map to the reference
        bound = (1.0 + reference) / 2.0
        means: dict[str, float] = {}
        meds: dict[str, float] = {}
        margins: dict[str, stats.EffectEstimate] = {}
        n = 0
        seeds = study.control_seeds
        for step in sanity.steps:
            rho = np.asarray(sanity.rho[step], dtype=float)
            finite = rho[np.isfinite(rho)]
            n = max(n, len(rho))
            means[step] = float(np.mean(np.abs(finite))) if len(finite) else float("nan")
            meds[step] = float(np.median(np.abs(finite))) if len(finite) else float("nan")
            # the later draws of the cascade, on their sample of the same photos
            later = []
            for drawn in seeds.sanity if seeds is not None else []:
                column = np.full(len(rho), np.nan)
                column[seeds.sanity_rows] = drawn[step]  # type: ignore[union-attr]
                later.append(column)
            # one value per photo (and draw) and step: how far below its halfway bound its
            # |rho| falls
            margins[step] = R.effect(
                bound[:, None] - np.abs(R.with_draws(rho, later)),
                self,
                name=f"(1 + r) / 2 - |rho| ({step})",
                m_equivalence=len(sanity.steps),
            )
        verdict = self.verdict(study, n)
        ref_mean = float(np.mean(reference)) if measured and size else 0.0
        verdict.medians["mean |spearman rho| with original"] = means
        verdict.tests["primary"] = {
            "method": "mean |Spearman rho| per cascade step against the halfway bound (1 + r) / 2",
            "reference": (
                "r: |rho| between the maps of two independently re-initialised copies, per photo"
                if measured
                else "r = 0: the study carries no measured reference"
            ),
            "reference_mean": ref_mean,
            "reference_constant_maps": constant,
            "bound_mean": (1.0 + ref_mean) / 2.0,
            "means": means,
            "medians": meds,
            "n": n,
        }
        verdict.tests["margins"] = {step: e.to_dict() for step, e in margins.items()}
        if not measured:
            verdict.add(
                "no-reference",
                "the study has no measured reference (|rho| of two independently "
                "re-initialised copies): r = 0, so the bound is 0.5",
            )
        spread = {step: R.seed_spread(e) for step, e in margins.items() if e.seeds is not None}
        if spread:
            verdict.tests["seeds"] = spread
        if n < self.min_n:
            verdict.add("too-few-photos", f"only {n} photos; the claim needs at least {self.min_n}")
            verdict.insufficient = True
            return verdict
        if any(not math.isfinite(v) for v in means.values()):
            verdict.add("constant-maps", "some randomised maps are constant: no rank correlation")
            return verdict
        absent = [s for s, e in margins.items() if e.decision == "absent"]
        unclear = [s for s, e in margins.items() if e.decision == "unclear"]
        if absent:
            verdict.status = Status.REFUTED
            verdict.add(
                "still-similar",
                f"maps stay similar to the original after randomising {', '.join(absent)}: "
                f"mean |rho| is not at least {self.sesoi:g} below the halfway bound "
                f"(mean {(1.0 + ref_mean) / 2.0:.3f}) "
                f"(margin {', '.join(R.describe_effect(margins[s]) for s in absent)})",
            )
        elif unclear:
            verdict.add(
                "effect-unclear",
                f"after randomising {', '.join(unclear)} the margin below the halfway bound is too "
                "uncertain to decide at this n",
            )
        else:
            worst_step = max(margins, key=lambda s: margins[s].p_present)
            worst = margins[worst_step]
            verdict.status = Status.SUPPORTED
            verdict.add(
                "below-bound",
                f"mean |rho| falls at least {self.sesoi:g} below the halfway bound (mean "
                f"{(1.0 + ref_mean) / 2.0:.3f}, reference r {ref_mean:.3f}) at every cascade "
                f"step (mean |rho| at most {max(means.values()):.3f}); "
                f"weakest margin {R.describe_effect(worst)} ({worst_step}, "
                f"p = {R.fmt_p(worst.p_present)})",
            )
        R.conclude(
            verdict,
            required={
                step: (f"margin below the halfway bound (1 + r) / 2 at step {step}", e)
                for step, e in margins.items()
            },
        )
        return verdict
