"""``seed-depth-ratio``: the seed study's claim, with the controls that say what it means."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from xai_checks import stats
from xai_checks.claims import _rules as R
from xai_checks.claims.base import Claim, Status, Verdict, control_runs, method_name, under_test

if TYPE_CHECKING:
    from xai_checks.study import StudyResult


class SeedDepthRatio(Claim):
    """Deeper layers focus on what the label is about (the seed study's ratio > threshold)."""

    id: ClassVar[str] = "seed-depth-ratio"
    title: ClassVar[str] = "The seed study: the high-activation ratio rises with depth"
    metric: ClassVar[str] = "ratio"
    test: ClassVar[str] = "kruskal"
    needs: ClassVar[tuple[str, ...]] = ("ratio",)
    defaults: ClassVar[dict[str, Any]] = {
        # None: the threshold the study computed its ratios at (StudyConfig.threshold)
        "threshold": None,
        # the paired, directional test that must agree with the seed's Kruskal-Wallis
        # ("page", "friedman", or None for no paired check)
        "paired_check": "page",
    }
    controls = ("untrained", "pooled")

    def threshold_for(self, study: StudyResult | None) -> float | None:
        if self.params.get("threshold") is not None:
            return float(self.params["threshold"])
        return None if study is None else float(study.config.threshold)

    def hypothesis_for(self, study: StudyResult | None) -> str:
        threshold = self.threshold_for(study)
        at = f"{threshold:g}" if threshold is not None else "the study's threshold"
        layers = self.layers or (tuple(study.config.layers) if study is not None else ())
        span = f"{layers[0]}..{layers[-1]}" if layers else "the layers"
        paired = self.params.get("paired_check")
        check = f" (and the paired {paired} test agrees)" if paired else ""
        return (
            f"Deeper layers focus on what the label is about: the share of {method_name(study)} "
            f"pixels above {at} differs across {span} (Kruskal-Wallis p < alpha) and its median "
            f"rises with depth{check}."
        )

    def evaluate(self, study: StudyResult) -> Verdict:
        claim = self
        layers = claim.layers or ()
        main = under_test(study)
        values = R.layer_matrix(main, "ratio", layers)
        n = int(values.shape[0])
        verdict = claim.verdict(study, n)
        wanted = claim.params.get("threshold")
        if wanted is not None and float(wanted) != float(study.config.threshold):
            verdict.add(
                "threshold-mismatch",
                f"the claim asks about the ratio above {float(wanted):g}, but the study computed "
                f"it above {study.config.threshold:g}; rerun the study with --threshold {wanted:g}",
            )
            return verdict
        if n < claim.min_n:
            verdict.add(
                "too-few-photos", f"only {n} images; the claim needs at least {claim.min_n}"
            )
            verdict.insufficient = True
            return verdict
        passed, primary, med = R.depth_test(values, claim)
        verdict.tests["primary"] = primary
        verdict.medians[main.name] = med
        paired_name = claim.params.get("paired_check")
        paired: dict[str, Any] | None = None
        if paired_name == "page":
            paired = stats.page_trend(values, increasing=True).to_dict()
        elif paired_name == "friedman":
            paired = stats.friedman(values).to_dict()
        elif paired_name is not None:
            raise ValueError(
                f"unknown paired_check {paired_name!r}; use 'page', 'friedman' or None"
            )
        if paired is not None:
            verdict.tests["paired_check"] = paired
        verdict.tests["friedman"] = stats.friedman(values).to_dict()
        verdict.tests["wilcoxon_holm"] = {
            f"{r.a}<{r.b}": r.to_dict()
            for r in stats.wilcoxon_holm(
                values, labels=list(layers), pairs="adjacent", alternative="greater"
            )
        }
        controls = control_runs(study)
        if "untrained" in claim.controls:
            control = controls.get("untrained") or next(iter(controls.values()), None)
            if control is None:
                verdict.controls["untrained"] = {
                    "ran": False,
                    "note": "no control model in the study",
                }
            else:
                c_values = R.layer_matrix(control, "ratio", layers)
                R.record_control(verdict, "untrained", control.name, c_values, model=control.name)
        if "pooled" in claim.controls:
            p_values = R.layer_matrix(main, "ratio_pooled", layers)
            R.record_control(verdict, "pooled", f"{main.name} (pooled to coarsest grid)", p_values)
        alpha = claim.alpha
        if not passed:
            verdict.status = Status.REFUTED
            if not R.significant(primary, alpha):
                verdict.add(
                    "not-significant",
                    f"{primary['method']} p = {R.fmt_p(primary['pvalue'])} is not below "
                    f"alpha = {alpha}",
                )
            else:
                verdict.add("not-rising", "layers differ, but the medians do not rise with depth")
            return verdict
        verdict.add(
            "seed-test-passes",
            f"{primary['method']} p = {R.fmt_p(primary['pvalue'])} < {alpha}, medians rise "
            "with depth",
        )
        if paired is not None and not R.significant(paired, alpha):
            verdict.add(
                "paired-check-disagrees",
                f"but the paired, directional {paired['method']} test disagrees "
                f"(p = {R.fmt_p(paired['pvalue'])})",
            )
            return verdict
        confounded = False
        untrained = verdict.controls.get("untrained", {})
        if untrained.get("ran") and untrained.get("passes"):
            confounded = True
            verdict.add(
                "control-passes",
                "the untrained control passes the same test "
                f"(p = {R.fmt_p(untrained['test']['pvalue'])})",
            )
        pooled = verdict.controls.get("pooled", {})
        if pooled.get("ran") and not pooled.get("passes"):
            p_pooled = pooled["test"]["pvalue"]
            how = (
                f"is no longer significant (p = {R.fmt_p(p_pooled)})"
                if not (p_pooled is not None and p_pooled < alpha)
                else f"no longer rises with depth (medians {R.fmt_list(pooled['medians'])})"
            )
            confounded = True
            verdict.add(
                "pooling-removes-effect",
                f"when every layer's map is pooled to the coarsest grid the effect {how}: "
                "the rise is a map-resolution artefact",
            )
        if confounded:
            verdict.status = Status.CONFOUNDED
        else:
            verdict.status = Status.SUPPORTED
            verdict.add("controls-clear", "and neither control reproduces it")
        return verdict
