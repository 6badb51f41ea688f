"""``native-captum-agreement``: the native engine and Captum give the same canonical maps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from xai_checks.claims.base import Claim, Status, Verdict, method_name

if TYPE_CHECKING:
    from xai_checks.study import StudyResult


class NativeCaptumAgreement(Claim):
    id: ClassVar[str] = "native-captum-agreement"
    title: ClassVar[str] = "The native engine agrees with Captum"
    metric: ClassVar[str] = "agreement"
    test: ClassVar[str] = "max-abs-diff"
    direction: ClassVar[str] = "none"
    needs: ClassVar[tuple[str, ...]] = ("agreement",)
    defaults: ClassVar[dict[str, Any]] = {"tolerance": 1e-5}
    min_n = 1

    def hypothesis_for(self, study: StudyResult | None) -> str:
        return (
            f"The native and Captum backends give the same canonical {method_name(study)} maps "
            f"within {float(self.params['tolerance']):g}."
        )

    def evaluate(self, study: StudyResult) -> Verdict:
        if not study.agreement:
            verdict = self.verdict(study, 0)
            verdict.add("phase-missing", "the agreement phase did not run")
            return verdict
        tol = float(self.params["tolerance"])
        n = min(study.config.agreement_images, study.photoset.get("n_used", 0))
        worst = max(study.agreement.values())
        verdict = self.verdict(study, n)
        verdict.status = Status.SUPPORTED if worst <= tol else Status.REFUTED
        verdict.tests["primary"] = {
            "method": "max |native - captum| on canonical maps",
            "per_layer": dict(study.agreement),
            "tolerance": tol,
            "statistic": worst,
            "n": n,
        }
        verdict.effect_size = {
            "name": "max |native - captum|",
            "estimate": worst,
            # a maximum over every photo and layer, checked exactly: no sampling CI
            "ci_low": None,
            "ci_high": None,
            "confidence": None,
            "n": n,
            "what": "largest difference between the backends' canonical maps",
            "unit_of_analysis": "photos",
        }
        verdict.add("max-diff", f"max |diff| = {worst:.2e} {'<=' if worst <= tol else '>'} {tol:g}")
        return verdict
