"""``depth-faithfulness``: the seed hypothesis in faithfulness terms.

Deeper layers' maps are more faithful to the model: per photo, the fitted rise of the ROAD
gap (the ``faithfulness`` phase) from the first layer to the last
(:func:`xai_checks.stats.depth_rise`, as the seed claim fits the ratio's rise), and the same
rise beyond the untrained control model's maps on the same photo (read through the model under
test, so what is left is what the model learned, not what depth does to any map). Each is a mean
with a bootstrap CI and a one-sided Wilcoxon test, judged against the SESOI by the minimal-effect
rule (:func:`xai_checks.stats.paired_effect`). CONFOUNDED means the untrained maps' rise explains
the model's: what is left beyond it is below the SESOI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from xai_checks import stats
from xai_checks.claims import _rules as R
from xai_checks.claims.base import Claim, Status, Verdict, method_name
from xai_checks.phases.faithfulness import NOT_RUN, gap_figure
from xai_checks.report.sections import default_claim_section

if TYPE_CHECKING:
    from xai_checks.report.sections import ReportSection
    from xai_checks.study import StudyResult


class DepthFaithfulness(Claim):
    """Deeper layers' maps point at the pixels the model's output depends on."""

    id: ClassVar[str] = "depth-faithfulness"
    title: ClassVar[str] = "The ROAD gap rises with depth, beyond the untrained control's rise"
    metric: ClassVar[str] = "road-gap-depth"
    test: ClassVar[str] = "wilcoxon"
    needs: ClassVar[tuple[str, ...]] = ("faithfulness",)
    defaults: ClassVar[dict[str, Any]] = {"n_boot": 2000}
    controls = ("untrained",)
    #: a fitted rise of 0.05 in the ROAD gap (target probability, averaged over the deletion
    #: fractions) from the first layer to the last, per photo and beyond the untrained maps'
    #: rise: the same smallest gap a user would act on as faithfulness-beyond-random's, now
    #: between the shallowest and the deepest map. Declared before the faithfulness phase had
    #: run on any photo
    sesoi = 0.05
    #: the n at which docs/calibration-faithfulness.md reaches 80% power for a true rise of 2x
    #: the SESOI beyond the untrained maps', on spreads fitted to a real run (the per-photo
    #: rise beyond the control spreads about six times the SESOI)
    min_n = 300

    def hypothesis_for(self, study: StudyResult | None) -> str:
        layers = self.layers or (tuple(study.config.layers) if study is not None else ())
        span = f"{layers[0]}..{layers[-1]}" if layers else "the layers"
        return (
            f"Deeper {method_name(study)} maps are more faithful to the model: the ROAD gap "
            f"(LeRF - MoRF target probability) rises from {span} by at least {self.sesoi:g} "
            "per photo, beyond the rise of the untrained control model's maps."
        )

    def evaluate(self, study: StudyResult) -> Verdict:
        run = study.phase_results.get("faithfulness")
        if run is None:
            verdict = self.verdict(study, 0)
            verdict.add("phase-missing", NOT_RUN)
            return verdict
        layers = self.layers or run.layers
        verdict = self.verdict(study, run.n)
        if len(layers) < 2:
            verdict.add("one-layer", "a rise with depth needs at least two layers")
            return verdict
        if run.n < self.min_n:
            verdict.add(
                "too-few-photos", f"only {run.n} photos; the claim needs at least {self.min_n}"
            )
            verdict.insufficient = True
            return verdict
        idx = [run.layers.index(layer) for layer in layers]
        gap = run.gap("model")[:, idx]
        verdict.medians["ROAD gap"] = R.medians(gap, layers)
        rise_m = stats.depth_rise(gap)
        m = 1 + len(self.controls)
        rise = R.effect(
            rise_m, self, name=f"fitted ROAD-gap rise {layers[0]}->{layers[-1]}", m_equivalence=m
        )
        verdict.tests["primary"] = rise.to_dict()
        excess: dict[str, stats.EffectEstimate] = {}
        for control in self.controls:
            if control not in run.kinds:
                verdict.controls[control] = {"ran": False, "note": f"no {control} maps"}
                continue
            c_gap = run.gap(control)[:, idx]
            verdict.medians[f"ROAD gap ({control})"] = R.medians(c_gap, layers)
            e = R.effect(
                rise_m - stats.depth_rise(c_gap),
                self,
                name=f"model rise minus {control} maps' rise",
                m_equivalence=m,
            )
            excess[control] = e
            verdict.controls[control] = {
                "ran": True,
                "effect": e.to_dict(),
                "explains_effect": e.decision == "absent",
            }
        self._decide(verdict, rise, excess)
        # the rise first, so a REFUTED verdict names it; then each control's excess
        R.conclude(
            verdict,
            required={
                "rise": ("ROAD-gap rise with depth", rise),
                **{c: (f"ROAD-gap rise beyond the {c} maps' rise", e) for c, e in excess.items()},
            },
        )
        return verdict

    def _decide(
        self, verdict: Verdict, rise: stats.EffectEstimate, excess: dict[str, stats.EffectEstimate]
    ) -> None:
        sesoi = self.sesoi
        if rise.decision == "absent":
            verdict.status = Status.REFUTED
            verdict.add(
                "no-effect",
                f"the ROAD gap's rise with depth {R.describe_effect(rise)} is below the "
                f"smallest effect of interest {sesoi:g}",
            )
            return
        if rise.decision == "unclear":
            verdict.add(
                "effect-unclear",
                f"the ROAD gap's rise with depth {R.describe_effect(rise)} (p = "
                f"{R.fmt_p(rise.p_present)}) is not yet shown to reach {sesoi:g}, nor ruled "
                "below it",
            )
            return
        verdict.add(
            "effect",
            f"the ROAD gap rises with depth by {R.describe_effect(rise)} "
            f"(p = {R.fmt_p(rise.p_present)})",
        )
        explained = [c for c, e in excess.items() if e.decision == "absent"]
        if explained:
            verdict.status = Status.CONFOUNDED
            for c in explained:
                verdict.add(
                    "control-explains",
                    f"beyond the {c} maps' rise it is only {R.describe_effect(excess[c])}, "
                    f"below {sesoi:g}: the control explains the rise",
                )
            return
        missing = [c for c in self.controls if c not in excess]
        if missing:
            verdict.add("control-missing", f"the declared control(s) {missing} did not run")
            return
        unclear = [c for c, e in excess.items() if e.decision == "unclear"]
        if unclear:
            for c in unclear:
                verdict.add(
                    "control-unclear",
                    f"beyond the {c} maps' rise it is {R.describe_effect(excess[c])}: too "
                    f"uncertain to tell from the control (p = {R.fmt_p(excess[c].p_present)})",
                )
            return
        verdict.status = Status.SUPPORTED
        for c, e in excess.items():
            verdict.add(
                "beyond-control",
                f"beyond the {c} maps' rise it is {R.describe_effect(e)} "
                f"(p = {R.fmt_p(e.p_present)})",
            )

    def report_section(self, study: StudyResult, verdict: Verdict) -> ReportSection | None:
        section = default_claim_section(self, study, verdict)
        run = study.phase_results.get("faithfulness")
        if section is None or run is None or run.n == 0:
            return section
        section.context["lead"] = verdict.hypothesis or self.hypothesis_for(study)
        section.context["reasons"] = [str(r) for r in verdict.reasons]
        kinds = ("model", *(c for c in self.controls if c in run.kinds))
        section.figures["faithfulness_gap_by_depth"] = gap_figure(run, kinds=kinds)
        section.context["figure_text"] = {
            "faithfulness_gap_by_depth": {
                "title": "ROAD gap from the shallowest layer to the deepest",
                "caption": (
                    "Mean LeRF - MoRF area under the target-probability curve per photo, with a "
                    "95% t-interval, for the map under test and the untrained model's map."
                ),
            }
        }
        return section
