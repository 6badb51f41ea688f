"""Shared rules for ground-truth localisation claims (GridPG, boxes), judged by effect.

Per target photo: the fitted rise of the score with depth, the last layer's score above a map
that knows nothing (``baseline``: chance, or the box's area share), and the rise beyond each
declared control's rise on the same photo. Each is a mean with a bootstrap CI and a one-sided
Wilcoxon test, against the claim's SESOI; the claim's own Page test must agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from xai_checks import stats
from xai_checks.claims import _rules as R
from xai_checks.claims.base import Claim, Status, Verdict, control_runs, under_test

if TYPE_CHECKING:
    from xai_checks.study import StudyResult


class LocalisationClaim(Claim):
    """Scores rise with depth, the last layer beats ``baseline``, and the rise exceeds each
    declared control's (CONFOUNDED when a control explains it).

    SESOI 0.1: ten percentage points of the map's mass. In a 2x2 GridPG mosaic chance is 25
    points, so 10 points is the smallest shift that moves a map visibly toward the target
    cell; for boxes it is the same share of mass moved into the box. It holds for the rise,
    for the margin over the baseline and for the excess over each control alike.
    """

    test: ClassVar[str] = "page"
    defaults: ClassVar[dict[str, Any]] = {"n_boot": 2000, "details": True}
    controls = ("untrained",)
    #: 10 percentage points of the map's mass (in the target cell, or the box; chance is 25
    #: in a 2x2 grid), declared before any photo: for the rise, for the margin over the
    #: baseline, and beyond a control
    sesoi = 0.1
    #: from the calibration table (docs/calibration.md): SUPPORTED reaches 0.8 in both effect
    #: worlds (a true effect of 2x the SESOI) from this n on, for GridPG and boxes alike
    min_n = 100

    def judge(
        self,
        study: StudyResult,
        scores: dict[str, np.ndarray],
        *,
        n: int,
        baseline: np.ndarray,
        baseline_name: str,
        key: str,
        later: dict[str, list[np.ndarray]] | None = None,
    ) -> Verdict:
        """``later[control]``: the later draws of a random control, each an array like
        ``scores[control]`` (NaN rows where that draw did not run)."""
        layers = self.layers or ()
        main = under_test(study)
        values = scores[main.name]
        verdict = self.verdict(study, n)
        _, page, med = R.depth_test(values, self)
        verdict.tests["page"] = page
        m = 2 + len(self.controls)  # rise, above the baseline, each control: 'absent' decisions
        verdict.medians[main.name] = med
        rise_m = stats.depth_rise(values)
        rise = R.effect(
            rise_m, self, name=f"fitted rise {layers[0]}->{layers[-1]}", m_equivalence=m
        )
        verdict.tests["primary"] = rise.to_dict()
        last = values[:, -1]
        above = R.effect(last - baseline, self, name=f"{layers[-1]} minus {key}", m_equivalence=m)
        verdict.tests[f"last_layer_above_{key}"] = above.to_dict()
        excess: dict[str, stats.EffectEstimate] = {}
        controls = control_runs(study)
        for name in self.controls:
            control = controls.get(name) or (
                next(iter(controls.values()), None) if name == "untrained" else None
            )
            if control is None or control.name not in scores:
                verdict.controls[name] = {"ran": False, "note": f"no {name} control in the study"}
                continue
            c_values = scores[control.name]
            if self.params.get("details", True):
                entry = R.record_control(verdict, name, control.name, c_values, model=control.name)
                entry[f"above_{key}"] = R.paired_greater(
                    c_values[:, -1], baseline, method=f"wilcoxon signed-rank vs {key}"
                )
                verdict.tests["last_layer_above_control"] = R.paired_greater(last, c_values[:, -1])
            else:
                entry = verdict.controls[name] = {"ran": True}
            draws = [stats.depth_rise(v) for v in (later or {}).get(control.name, [])]
            e = R.effect(
                rise_m[:, None] - R.with_draws(stats.depth_rise(c_values), draws),
                self,
                name=f"rise minus {name} control rise",
                m_equivalence=m,
            )
            entry["effect"] = e.to_dict()
            if e.seeds is not None:
                entry["seeds"] = R.seed_spread(e)
            entry["explains_effect"] = e.decision == "absent"
            excess[name] = e
        self._decide(verdict, rise, above, excess, page, baseline_name)
        R.conclude(
            verdict,
            required={
                "rise": ("rise", rise),
                f"above_{key}": (f"{layers[-1]} above {baseline_name}", above),
                **{c: (f"excess rise over the {c} control", e) for c, e in excess.items()},
            },
            other_p=[page.get("pvalue")],
        )
        return verdict

    def _decide(
        self,
        verdict: Verdict,
        rise: stats.EffectEstimate,
        above: stats.EffectEstimate,
        excess: dict[str, stats.EffectEstimate],
        page: dict[str, Any],
        baseline_name: str,
    ) -> None:
        sesoi = self.sesoi
        last = (self.layers or ("the last layer",))[-1]
        conf = f"{rise.confidence:.0%} CI"
        if rise.decision == "absent":
            verdict.status = Status.REFUTED
            verdict.add(
                "no-effect",
                f"the score's rise with depth {R.describe_effect(rise)} ({conf}) is below the "
                f"smallest effect of interest {sesoi:g}",
            )
            return
        if above.decision == "absent":
            verdict.status = Status.REFUTED
            verdict.add(
                "not-above-baseline",
                f"{last} is {R.describe_effect(above)} above {baseline_name}, less than {sesoi:g}",
            )
            return
        # a control that explains an established rise decides first: whatever else is still
        # unclear (the last layer over the baseline, the paired check), the control has it too
        explained = (
            {c: e for c, e in excess.items() if e.decision == "absent"}
            if rise.decision == "present"
            else {}
        )
        for name, e in explained.items():
            verdict.add(
                "control-explains",
                f"the score rises with depth by {R.describe_effect(rise)} ({conf}), but beyond "
                f"the {name} control only by {R.describe_effect(e)}, below {sesoi:g}: the "
                "control localises as well",
            )
        if explained:
            verdict.status = Status.CONFOUNDED
            return
        unclear = [
            (what, e)
            for what, e in (("the rise with depth", rise), (f"{last} over {baseline_name}", above))
            if e.decision == "unclear"
        ]
        for what, e in unclear:
            verdict.add(
                "effect-unclear",
                f"{what} {R.describe_effect(e)} ({conf}, p = {R.fmt_p(e.pvalue)}) is not yet "
                f"shown to reach {sesoi:g}, nor ruled below it",
            )
        if unclear:
            return
        verdict.add(
            "effect",
            f"the score rises with depth by {R.describe_effect(rise)} ({conf}, Wilcoxon "
            f"p = {R.fmt_p(rise.pvalue)}); {last} is {R.describe_effect(above)} above "
            f"{baseline_name}",
        )
        if not R.significant(page, self.alpha):
            verdict.add(
                "paired-check-disagrees",
                f"but the claim's {page['method']} test disagrees (p = {R.fmt_p(page['pvalue'])})",
            )
            return
        if not self.controls:
            verdict.status = Status.SUPPORTED
            verdict.add("no-controls", "the claim declares no control")
            return
        missing = [c for c in self.controls if c not in excess]
        if missing:
            verdict.add("control-missing", f"the declared control(s) {missing} did not run")
            return
        not_clear = {c: e for c, e in excess.items() if e.decision == "unclear"}
        for name, e in not_clear.items():
            verdict.add(
                "control-unclear",
                f"beyond the {name} control the rise is {R.describe_effect(e)}: too uncertain "
                f"to tell from the control (p = {R.fmt_p(e.pvalue)})",
            )
        if not_clear:
            return
        verdict.status = Status.SUPPORTED
        for name, e in excess.items():
            verdict.add(
                "beyond-control",
                f"beyond the {name} control the rise is {R.describe_effect(e)} "
                f"(p = {R.fmt_p(e.pvalue)})",
            )
