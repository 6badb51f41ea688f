"""Shared rules for ground-truth localisation claims (GridPG, boxes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from xai_checks.claims import _rules as R
from xai_checks.claims.base import Claim, Status, Verdict, control_runs, under_test

if TYPE_CHECKING:
    from xai_checks.study import StudyResult


class LocalisationClaim(Claim):
    """Scores rise with depth (the claim's test), the last layer beats a map that knows
    nothing (``baseline``), and it beats each declared control (CONFOUNDED if not)."""

    test: ClassVar[str] = "page"
    controls = ("untrained",)
    min_n = 10

    def judge(
        self,
        study: StudyResult,
        scores: dict[str, np.ndarray],
        *,
        n: int,
        baseline: np.ndarray,
        baseline_name: str,
        key: str,
    ) -> Verdict:
        claim = self
        main = under_test(study)
        values = scores[main.name]
        verdict = claim.verdict(study, n)
        passed, primary, med = R.depth_test(values, claim)
        verdict.tests["primary"] = primary
        verdict.medians[main.name] = med
        last = values[:, -1]
        above = R.paired_greater(last, baseline, method=f"wilcoxon signed-rank vs {key}")
        verdict.tests[f"last_layer_above_{key}"] = above
        controls = control_runs(study)
        for name in claim.controls:
            control = controls.get(name) or (
                next(iter(controls.values()), None) if name == "untrained" else None
            )
            if control is None or control.name not in scores:
                verdict.controls[name] = {"ran": False, "note": f"no {name} control in the study"}
                continue
            c_values = scores[control.name]
            verdict.tests["last_layer_above_control"] = R.paired_greater(last, c_values[:, -1])
            entry = R.record_control(verdict, name, control.name, c_values, model=control.name)
            entry[f"above_{key}"] = R.paired_greater(
                c_values[:, -1], baseline, method=f"wilcoxon signed-rank vs {key}"
            )
        alpha = claim.alpha
        layers = claim.layers or ()
        if not passed:
            verdict.status = Status.REFUTED
            verdict.add(
                "no-depth-trend",
                f"{primary['method']} p = {R.fmt_p(primary['pvalue'])}"
                + ("" if R.rising(med) else ", medians do not rise with depth"),
            )
            return verdict
        verdict.add(
            "depth-trend", f"{primary['method']} p = {R.fmt_p(primary['pvalue'])} < {alpha}"
        )
        if not R.significant(above, alpha):
            verdict.status = Status.REFUTED
            verdict.add(
                "not-above-baseline",
                f"but {layers[-1]} is not above {baseline_name} (p = {R.fmt_p(above['pvalue'])})",
            )
            return verdict
        verdict.add(
            "above-baseline", f"{layers[-1]} above {baseline_name} (p = {R.fmt_p(above['pvalue'])})"
        )
        if not claim.controls:
            verdict.status = Status.SUPPORTED
            verdict.add("no-controls", "the claim declares no control")
            return verdict
        versus = verdict.tests.get("last_layer_above_control")
        if versus is None:
            verdict.add("control-missing", "no untrained control to compare with")
        elif not R.significant(versus, alpha):
            verdict.status = Status.CONFOUNDED
            verdict.add(
                "control-localises",
                f"but the untrained control localises as well (p = {R.fmt_p(versus['pvalue'])})",
            )
        else:
            verdict.status = Status.SUPPORTED
            verdict.add(
                "above-control",
                f"and above the untrained control (p = {R.fmt_p(versus['pvalue'])})",
            )
        return verdict
