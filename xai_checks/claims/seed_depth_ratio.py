"""``seed-depth-ratio``: the seed study's claim, judged by effect against its controls.

The seed's own test (Kruskal-Wallis across layers, medians rising) is run exactly as the seed
ran it and shown; the verdict rests on effects, paired per photo:

* the model's rise: per photo, the fitted rise of the ratio from the first layer to the last
  (:func:`xai_checks.stats.depth_rise`);
* against the untrained control: the model's rise minus the control's on the same photo;
* against map resolution: the rise left after pooling every layer's map to the coarsest grid.

Each is judged against the SESOI with a bootstrap CI and a one-sided Wilcoxon test
(:class:`xai_checks.stats.EffectEstimate`). The model's own rise, pooled or not, is judged by
its 20% trimmed mean, the typical photo's rise; the contrasts with the untrained control by
the mean over photos and control networks. CONFOUNDED means a control explains the effect:
what is left beyond it is smaller than the smallest effect of interest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from xai_checks import stats
from xai_checks.claims import _rules as R
from xai_checks.claims.base import Claim, Status, Verdict, control_runs, method_name, under_test

if TYPE_CHECKING:
    from xai_checks.study import ModelRun, StudyResult


#: the joint contrast's name among the controls: both controls at once
JOINT = "untrained+pooled"


class SeedDepthRatio(Claim):
    """Deeper layers focus on what the label is about (the seed study's ratio > threshold).

    SESOI 0.02: after pooling to the coarsest (7x7) grid a map's ratio moves in steps of one
    cell, 1/49 = 0.0204 of the image; a rise smaller than one cell of area is below what the
    pooled measure can resolve. The figure was first set after a 12-photo run and is kept,
    because one cell of area is a reason that does not depend on any photo; the tipping SESOI
    each verdict reports shows how much rests on it.
    """

    id: ClassVar[str] = "seed-depth-ratio"
    title: ClassVar[str] = "The seed study: the high-activation ratio rises with depth"
    metric: ClassVar[str] = "ratio"
    test: ClassVar[str] = "kruskal"
    needs: ClassVar[tuple[str, ...]] = ("ratio",)
    min_layers: ClassVar[int] = 3
    defaults: ClassVar[dict[str, Any]] = {
        # None: the threshold the study computed its ratios at (StudyConfig.threshold)
        "threshold": None,
        # the paired, directional test that must agree with the model's rise
        # ("page", "friedman", or None for no paired check)
        "paired_check": "page",
        # bootstrap resamples for every CI
        "n_boot": 2000,
        # False: only what the verdict needs (the calibration's many simulated studies)
        "details": True,
    }
    controls = ("untrained", "pooled")
    #: a fitted rise of 2 percentage points of the image's pixels above the threshold, from the
    #: first layer to the last, beyond what a control shows: the ratio itself is a few percent
    #: of the image. Not pre-registered: it was set after a 12-photo run had shown an excess
    #: of about 0.03, and is kept unchanged since, so that no later photo moved it
    sesoi = 0.02
    #: the share of photos cut from each end of the model's own per-photo rise (pooled or not)
    #: before it is averaged. The real rise has a rare, far negative tail (a photo whose ratio
    #: falls several times further than any other's): a sample of 100 photos mostly misses
    #: it, and then shows a higher mean and a smaller spread at once, so no interval for the
    #: mean computed from such a sample covers the true mean as often as it says. The trimmed
    #: mean's estimand, the typical photo's rise, does not hinge on one photo in hundreds;
    #: 0.2 is the usual cut (Wilcox, "Introduction to Robust Estimation"). The fitted
    #: simulator's boundary worlds (docs/calibration-fitted.md) hold the rule to its target
    #: with it. The contrasts with the untrained control keep the mean over photos and
    #: networks, which meets the target on both simulators
    trim: ClassVar[float] = 0.2
    #: from the calibration table (docs/calibration.md): SUPPORTED reaches 0.8 in both effect
    #: worlds (a true effect of 2x the SESOI) from this n on
    min_n = 100

    def threshold_for(self, study: StudyResult | None) -> float | None:
        if self.params.get("threshold") is not None:
            return float(self.params["threshold"])
        return None if study is None else float(study.config.threshold)

    def hypothesis_for(self, study: StudyResult | None) -> str:
        threshold = self.threshold_for(study)
        at = f"{threshold:g}" if threshold is not None else "the study's threshold"
        layers = self.layers or (tuple(study.config.layers) if study is not None else ())
        span = f"{layers[0]}..{layers[-1]}" if layers else "the layers"
        beyond = {
            "untrained": "the untrained control's rise",
            "pooled": "what pooling every map to one grid removes",
        }
        controls = " and ".join(beyond[c] for c in self.controls if c in beyond)
        return (
            f"Deeper layers focus on what the label is about: the share of {method_name(study)} "
            f"pixels above {at} rises from {span} by at least {self.sesoi:g} on the typical "
            f"photo ({self.trim:.0%} trimmed mean)"
            + (f" beyond {controls}" if controls else "")
            + " (the seed's own Kruskal-Wallis test is shown as the seed ran it)."
        )

    def evaluate(self, study: StudyResult) -> Verdict:
        layers = self.layers or ()
        main = under_test(study)
        keep = R.unique_photos([r["file"] for r in main.records if "ratio" in r])
        values = R.layer_matrix(main, "ratio", layers)[keep]
        n = int(values.shape[0])
        verdict = self.verdict(study, n)
        if not keep.all():
            verdict.add(
                "repeated-photos", f"{int((~keep).sum())} repeated photos counted once each"
            )
        wanted = self.params.get("threshold")
        if wanted is not None and float(wanted) != float(study.config.threshold):
            verdict.add(
                "threshold-mismatch",
                f"the claim asks about the ratio above {float(wanted):g}, but the study computed "
                f"it above {study.config.threshold:g}; rerun the study with --threshold {wanted:g}",
            )
            return verdict
        if n < self.min_n:
            verdict.add("too-few-photos", f"only {n} photos; the claim needs at least {self.min_n}")
            verdict.insufficient = True
            return verdict
        details = bool(self.params.get("details", True))
        if details:
            # The seed's own test, exactly as the seed ran it (shown; the verdict rests on
            # effects).
            seed_passed, seed_test, med = R.depth_test(values, self)
            verdict.tests["seed"] = {**seed_test, "passes": seed_passed}
            verdict.medians[main.name] = med
            verdict.add(
                "seed-test",
                f"the seed's own test: {seed_test['method']} p = "
                f"{R.fmt_p(seed_test['pvalue'])}, medians "
                f"{'rise' if R.rising(med) else 'do not rise'} with depth: "
                + ("passes" if seed_passed else "fails"),
            )
            verdict.tests["wilcoxon_holm"] = {
                f"{r.a}<{r.b}": r.to_dict()
                for r in stats.wilcoxon_holm(
                    values, labels=list(layers), pairs="adjacent", alternative="greater"
                )
            }
        paired = self._paired_check(values)
        if paired is not None:
            verdict.tests["paired_check"] = paired
        rise_m = stats.depth_rise(values)
        # the rise, each control and the joint contrast: 'absent' decisions
        m = 1 + len(self.controls) + int({"untrained", "pooled"} <= set(self.controls))
        rise = R.effect(
            rise_m,
            self,
            name=f"fitted rise {layers[0]}->{layers[-1]}",
            m_equivalence=m,
            trim=self.trim,
        )
        verdict.tests["primary"] = rise.to_dict()
        excess: dict[str, stats.EffectEstimate] = {}
        for name in self.controls:
            got = self._control_effect(verdict, study, main, name, keep, rise_m, m)
            if got is not None:
                excess[name] = got
        if {"untrained", "pooled"} <= set(self.controls):
            joint = self._joint_effect(verdict, study, main, keep, m)
            if joint is not None:
                excess[JOINT] = joint
        self._decide(verdict, rise, excess, paired)
        what = {
            "untrained": "excess rise over the untrained control",
            "pooled": "rise left after pooling",
            JOINT: "pooled rise beyond the pooled untrained control",
        }
        R.conclude(
            verdict,
            required={
                "rise": ("rise", rise),
                **{c: (what.get(c, f"rise beyond {c}"), e) for c, e in excess.items()},
            },
            other_p=[paired.get("pvalue")] if paired is not None else [],
        )
        return verdict

    def _record(
        self, verdict: Verdict, name: str, label: str, values: np.ndarray, model: str | None
    ) -> dict[str, Any]:
        """The control's own seed test (for the report), or a bare entry without details."""
        if self.params.get("details", True):
            return R.record_control(verdict, name, label, values, model=model)
        entry: dict[str, Any] = {"ran": True}
        verdict.controls[name] = entry
        return entry

    def _paired_check(self, values: np.ndarray) -> dict[str, Any] | None:
        name = self.params.get("paired_check")
        if name is None:
            return None
        if name == "page":
            return stats.page_trend(values, increasing=True).to_dict()
        if name == "friedman":
            return stats.friedman(values).to_dict()
        raise ValueError(f"unknown paired_check {name!r}; use 'page', 'friedman' or None")

    def _control_effect(
        self,
        verdict: Verdict,
        study: StudyResult,
        main: ModelRun,
        name: str,
        keep: np.ndarray,
        rise_m: np.ndarray,
        m: int,
    ) -> stats.EffectEstimate | None:
        layers = self.layers or ()
        if name == "pooled":
            p_values = R.layer_matrix(main, "ratio_pooled", layers)[keep]
            entry = self._record(verdict, "pooled", f"{main.name} (pooled)", p_values, None)
            rise_p = stats.depth_rise(p_values)
            left = R.effect(
                rise_p,
                self,
                name="rise left after pooling to the coarsest grid",
                m_equivalence=m,
                trim=self.trim,
            )
            share = stats.ratio_of_means_ci(
                rise_p,
                rise_m,
                confidence=1 - 2 * self.alpha,
                n_resamples=int(self.params["n_boot"]),
            )
            entry["effect"] = left.to_dict()
            entry["share_surviving"] = {
                "estimate": share[0],
                "ci_low": share[1],
                "ci_high": share[2],
                "confidence": 1 - 2 * self.alpha,
                "what": "mean rise after pooling / mean rise",
            }
            entry["explains_effect"] = left.decision == "absent"
            return left
        controls = control_runs(study)
        control = controls.get(name) or (
            next(iter(controls.values()), None) if name == "untrained" else None
        )
        if control is None:
            verdict.controls[name] = {"ran": False, "note": f"no {name} control in the study"}
            return None
        c_values = R.layer_matrix(control, "ratio", layers)
        if len(c_values) != len(keep):
            raise ValueError(
                f"the control {control.name} has {len(c_values)} photos, the model "
                f"{len(keep)}: a paired comparison needs the same photos"
            )
        c_values = c_values[keep]
        entry = self._record(verdict, name, control.name, c_values, control.name)
        later = R.later_draws(study, control.name, "ratio", layers, _files(main, keep))
        diff = rise_m[:, None] - R.with_draws(
            stats.depth_rise(c_values), [stats.depth_rise(v) for v in later]
        )
        beyond = R.effect(diff, self, name=f"model rise minus {name} control rise", m_equivalence=m)
        entry["effect"] = beyond.to_dict()
        if beyond.seeds is not None:
            entry["seeds"] = R.seed_spread(beyond)
        entry["explains_effect"] = beyond.decision == "absent"
        return beyond

    def _joint_effect(
        self, verdict: Verdict, study: StudyResult, main: ModelRun, keep: np.ndarray, m: int
    ) -> stats.EffectEstimate | None:
        """Both controls at once: per photo, the model's rise with its maps pooled minus the
        untrained control's rise with its maps pooled the same way. What is left is neither
        map resolution nor what an untrained network shows."""
        control = control_runs(study).get("untrained") or next(
            iter(control_runs(study).values()), None
        )
        layers = self.layers or ()
        if control is None:
            return None
        try:
            c_pooled = R.layer_matrix(control, "ratio_pooled", layers)
        except (KeyError, ValueError):
            verdict.controls[JOINT] = {"ran": False, "note": "the control has no pooled ratios"}
            return None
        if len(c_pooled) != len(keep):
            return None
        m_pooled = R.layer_matrix(main, "ratio_pooled", layers)[keep]
        later = R.later_draws(study, control.name, "ratio_pooled", layers, _files(main, keep))
        diff = stats.depth_rise(m_pooled)[:, None] - R.with_draws(
            stats.depth_rise(c_pooled[keep]), [stats.depth_rise(v) for v in later]
        )
        joint = R.effect(
            diff, self, name="pooled model rise minus pooled untrained rise", m_equivalence=m
        )
        verdict.controls[JOINT] = {
            "ran": True,
            "model": control.name,
            "effect": joint.to_dict(),
            "explains_effect": joint.decision == "absent",
        }
        if joint.seeds is not None:
            verdict.controls[JOINT]["seeds"] = R.seed_spread(joint)
        return joint

    def _decide(
        self,
        verdict: Verdict,
        rise: stats.EffectEstimate,
        excess: dict[str, stats.EffectEstimate],
        paired: dict[str, Any] | None,
    ) -> None:
        sesoi = self.sesoi
        text = R.describe_effect(rise)
        conf = f"{rise.confidence:.0%} CI"
        if rise.decision == "absent":
            verdict.status = Status.REFUTED
            verdict.add(
                "no-effect",
                f"the model's rise {text} ({conf}) is below the smallest effect of interest "
                f"{sesoi:g}",
            )
            return
        if rise.decision == "unclear":
            verdict.add(
                "effect-unclear",
                f"the model's rise {text} ({conf}, Wilcoxon p = {R.fmt_p(rise.pvalue)}) is "
                f"not yet shown to reach {sesoi:g}, nor ruled below it",
            )
            return
        verdict.add(
            "effect",
            f"the model's ratio rises by {text} ({conf}, Wilcoxon p = {R.fmt_p(rise.pvalue)})",
        )
        # a control that explains the rise decides before the paired check: CONFOUNDED says
        # more than 'the checks disagree'
        explained = {c: e for c, e in excess.items() if e.decision == "absent"}
        for name, e in explained.items():
            if name == JOINT:
                verdict.add(
                    "control-explains",
                    f"with both maps pooled to the coarsest grid, the rise beyond the untrained "
                    f"control is only {R.describe_effect(e)}, below {sesoi:g}: resolution and "
                    "the untrained network together explain the effect",
                )
            elif name == "pooled":
                verdict.add(
                    "pooling-explains",
                    "after pooling every map to the coarsest grid the rise is "
                    f"{R.describe_effect(e)}, below {sesoi:g}: the rise is a map-resolution "
                    "artefact",
                )
            else:
                verdict.add(
                    "control-explains",
                    f"beyond the {name} control the rise is only {R.describe_effect(e)}, below "
                    f"{sesoi:g}: the control explains the effect",
                )
        if explained:
            verdict.status = Status.CONFOUNDED
            return
        if paired is not None and not R.significant(paired, self.alpha):
            verdict.add(
                "paired-check-disagrees",
                f"but the paired, directional {paired['method']} test disagrees "
                f"(p = {R.fmt_p(paired['pvalue'])})",
            )
            return
        missing = [c for c in self.controls if c not in excess]
        unclear = {c: e for c, e in excess.items() if e.decision == "unclear"}
        if missing:
            verdict.add("control-missing", f"the declared control(s) {missing} did not run")
            return
        for name, e in unclear.items():
            verdict.add(
                "control-unclear",
                f"beyond the {name} control the rise is {R.describe_effect(e)}: too uncertain "
                f"to tell from the control (p = {R.fmt_p(e.pvalue)})",
            )
        if unclear:
            return
        verdict.status = Status.SUPPORTED
        for name, e in excess.items():
            verdict.add(
                "beyond-control",
                f"beyond the {name} control the rise is {R.describe_effect(e)} "
                f"(p = {R.fmt_p(e.pvalue)})",
            )


def _files(run: ModelRun, keep: np.ndarray) -> list[str]:
    """The photos behind ``R.layer_matrix(run, ...)[keep]``, in its row order."""
    files = [r["file"] for r in run.records if "ratio" in r]
    return [f for f, k in zip(files, keep, strict=True) if k]
