"""``faithfulness-beyond-random``: the map's ROAD gap beats control maps' at every layer.

Per photo and layer, the ROAD gap (LeRF AUC - MoRF AUC of the target probability; the
``faithfulness`` phase) of the map under test minus the gap of each control map on the same
photo: the same map with its values permuted, and the untrained control model's map (read
through the model under test). Each difference is a mean with a bootstrap CI and a one-sided
Wilcoxon test, judged against the SESOI by the minimal-effect rule every claim uses
(:func:`xai_checks.stats.paired_effect`). SUPPORTED needs every layer to beat every control by
at least the SESOI (an intersection-union test); a difference shown to fall below it refutes
the claim at that layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from xai_checks import stats
from xai_checks.claims import _rules as R
from xai_checks.claims.base import Claim, Status, Verdict, method_name
from xai_checks.phases.faithfulness import MAP_KINDS, NOT_RUN, gap_figure
from xai_checks.report.sections import default_claim_section

if TYPE_CHECKING:
    from xai_checks.report.sections import ReportSection
    from xai_checks.study import StudyResult

_CONTROL_TEXT = {
    "permuted": "the same map with its values permuted",
    "untrained": "the untrained control model's map",
}


class FaithfulnessBeyondRandom(Claim):
    """The pixels the map ranks first matter to the model more than a random map's do."""

    id: ClassVar[str] = "faithfulness-beyond-random"
    title: ClassVar[str] = "The map's ROAD gap beats random and untrained maps at every layer"
    metric: ClassVar[str] = "road-gap"
    test: ClassVar[str] = "wilcoxon"
    needs: ClassVar[tuple[str, ...]] = ("faithfulness",)
    defaults: ClassVar[dict[str, Any]] = {"n_boot": 2000}
    controls = ("permuted", "untrained")
    #: 0.05 of the target class's probability, averaged over the deletion fractions: the
    #: ROAD gap is a difference of two mean probabilities, and a map whose pixel order moves
    #: the model's confidence by less than 5 percentage points on average more than a map
    #: without spatial information does not tell a user which pixels the model uses. Declared
    #: before the faithfulness phase had run on any photo
    sesoi = 0.05
    #: the n at which docs/calibration-faithfulness.md reaches 80% power for a true margin of
    #: 2x the SESOI at every layer against both controls, on spreads fitted to a real run: the
    #: per-photo differences spread about six times the SESOI, and SUPPORTED needs all eight
    min_n = 600

    def hypothesis_for(self, study: StudyResult | None) -> str:
        layers = self.layers or (tuple(study.config.layers) if study is not None else ())
        where = ", ".join(layers) if layers else "every chosen layer"
        controls = " and ".join(_CONTROL_TEXT.get(c, c) for c in self.controls)
        return (
            f"The {method_name(study)} map is faithful beyond random: at {where}, removing "
            "pixels in the map's order (ROAD, most relevant first against least relevant "
            f"first) opens a gap in the target probability at least {self.sesoi:g} larger, per "
            f"photo, than {controls} opens."
        )

    def evaluate(self, study: StudyResult) -> Verdict:
        run = study.phase_results.get("faithfulness")
        if run is None:
            verdict = self.verdict(study, 0)
            verdict.add("phase-missing", NOT_RUN)
            return verdict
        layers = self.layers or run.layers
        verdict = self.verdict(study, run.n)
        if run.n < self.min_n:
            verdict.add(
                "too-few-photos", f"only {run.n} photos; the claim needs at least {self.min_n}"
            )
            verdict.insufficient = True
            return verdict
        idx = [run.layers.index(layer) for layer in layers]
        gap = run.gap("model")[:, idx]
        verdict.medians["ROAD gap"] = R.medians(gap, layers)
        present = [c for c in self.controls if c in run.kinds]
        m = max(1, len(layers) * len(present))
        effects: dict[tuple[str, str], stats.EffectEstimate] = {}
        for control in self.controls:
            if control not in run.kinds:
                verdict.controls[control] = {"ran": False, "note": f"no {control} maps"}
                continue
            c_gap = run.gap(control)[:, idx]
            verdict.medians[f"ROAD gap ({control})"] = R.medians(c_gap, layers)
            entry: dict[str, Any] = {"ran": True, "effects": {}}
            for j, layer in enumerate(layers):
                e = R.effect(
                    gap[:, j] - c_gap[:, j],
                    self,
                    name=f"ROAD gap minus the {control} map's ({layer})",
                    m_equivalence=m,
                )
                effects[(layer, control)] = e
                entry["effects"][layer] = e.to_dict()
            verdict.controls[control] = entry
        verdict.tests["margins"] = {f"{la}/{c}": e.to_dict() for (la, c), e in effects.items()}
        if not effects:
            verdict.add("control-missing", "no control maps ran")
            return verdict
        # the weakest margin (smallest lower bound) names the layer and control SUPPORTED rests
        # on; R.conclude below sets the headline effect, p, n and tipping SESOI from it
        (w_layer, w_control), worst = min(effects.items(), key=lambda kv: kv[1].ci_low)
        verdict.tests["primary"] = worst.to_dict()
        absent = [(la, c) for (la, c), e in effects.items() if e.decision == "absent"]
        unclear = [(la, c) for (la, c), e in effects.items() if e.decision == "unclear"]
        missing = [c for c in self.controls if c not in run.kinds]
        if absent:
            verdict.status = Status.REFUTED
            verdict.add(
                "not-beyond-control",
                "the map's ROAD gap is not at least "
                f"{self.sesoi:g} beyond "
                + "; ".join(
                    f"the {c} map's at {la} ({R.describe_effect(effects[(la, c)])})"
                    for la, c in absent
                ),
            )
        elif missing:
            verdict.add("control-missing", f"the declared control(s) {missing} did not run")
        elif unclear:
            verdict.add(
                "effect-unclear",
                "too uncertain to decide at this n: "
                + "; ".join(
                    f"beyond the {c} map at {la}, {R.describe_effect(effects[(la, c)])}"
                    for la, c in unclear
                ),
            )
        else:
            verdict.status = Status.SUPPORTED
            verdict.add(
                "beyond-controls",
                f"at every layer the map's ROAD gap beats every control's by at least "
                f"{self.sesoi:g}; weakest: {R.describe_effect(worst)} beyond the {w_control} "
                f"map at {w_layer} (p = {R.fmt_p(worst.p_present)})",
            )
        R.conclude(
            verdict,
            required={
                f"{la}/{c}": (f"ROAD gap beyond the {c} map at {la}", e)
                for (la, c), e in effects.items()
            },
        )
        return verdict

    def report_section(self, study: StudyResult, verdict: Verdict) -> ReportSection | None:
        section = default_claim_section(self, study, verdict)
        run = study.phase_results.get("faithfulness")
        if section is None or run is None or run.n == 0:
            return section
        section.context["lead"] = verdict.hypothesis or self.hypothesis_for(study)
        section.context["reasons"] = [str(r) for r in verdict.reasons]
        section.figures["faithfulness_gap_by_map"] = gap_figure(run, kinds=MAP_KINDS)
        section.context["figure_text"] = {
            "faithfulness_gap_by_map": {
                "title": "ROAD gap per layer: the map and its controls",
                "caption": (
                    "Mean LeRF - MoRF area under the target-probability curve per photo, with a "
                    "95% t-interval, for the map under test, the same map permuted, and the "
                    "untrained model's map (all read through the model under test)."
                ),
            }
        }
        return section
