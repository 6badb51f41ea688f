"""Claims as plain data, and the rules that turn a study's numbers into verdicts.

A :class:`Claim` says what is asserted (hypothesis text, metric, layers, test, direction,
alpha, minimum n, controls). :func:`evaluate` reads a :class:`~xai_checks.study.StudyResult`
and returns a :class:`Verdict`:

``SUPPORTED``     the test passes, and so do the controls that say it means something;
``REFUTED``       the test fails (no significant effect at ``alpha``, or the wrong direction);
``INCONCLUSIVE``  too few images, or the study's test and its paired/directional check disagree;
``CONFOUNDED``    the test passes, but also passes where it should not (the untrained network),
                  or vanishes under a control that removes a known artefact (map resolution):
                  the evidence cannot tell the claimed cause from the confound.

Every threshold here is fixed before any data is seen (the claim's fields); nothing is tuned.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

import numpy as np
from scipy import stats as sps

from xai_checks import stats
from xai_checks._util import jsonable
from xai_checks.study import StudyResult

__all__ = [
    "BUILTIN_CLAIMS",
    "Claim",
    "Status",
    "Verdict",
    "evaluate",
    "evaluate_all",
    "get_claim",
]


class Status(StrEnum):
    SUPPORTED = "SUPPORTED"
    REFUTED = "REFUTED"
    INCONCLUSIVE = "INCONCLUSIVE"
    CONFOUNDED = "CONFOUNDED"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Claim:
    """A claim about explanations, as data."""

    id: str
    hypothesis: str
    metric: str
    test: str
    layers: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")
    direction: str = "increasing"
    alpha: float = 0.05
    min_n: int = 5
    controls: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)

    def with_(self, **changes: Any) -> Claim:
        """A copy with some fields changed (e.g. ``alpha``)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Verdict:
    """The outcome of a claim on a study's numbers."""

    claim: Claim
    status: Status
    reasons: list[str]
    n: int
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)
    medians: dict[str, dict[str, float]] = field(default_factory=dict)
    controls: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: INCONCLUSIVE only because there were too few images (a test may skip on this)
    insufficient: bool = False

    @property
    def primary(self) -> dict[str, Any] | None:
        """The claim's own test result."""
        return self.tests.get("primary")

    @property
    def effect(self) -> float | None:
        primary = self.primary
        return None if primary is None else primary.get("effect")

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "claim": self.claim.to_dict(),
                "status": self.status.value,
                "reasons": self.reasons,
                "n": self.n,
                "tests": self.tests,
                "medians": self.medians,
                "controls": self.controls,
            }
        )

    def summary(self) -> str:
        return f"{self.claim.id}: {self.status.value} ({'; '.join(self.reasons)})"


# --------------------------------------------------------------------------- built-in claims

SEED_DEPTH_RATIO = Claim(
    id="seed-depth-ratio",
    hypothesis=(
        "Deeper layers focus on what the label is about: the share of Grad-CAM pixels above "
        "0.85 differs across layer1..layer4 (Kruskal-Wallis p < alpha) and its median rises "
        "with depth."
    ),
    metric="ratio",
    test="kruskal",
    controls=("untrained", "pooled"),
    params={"threshold": 0.85, "paired_check": "page"},
)
DEPTH_LOCALISATION_GRIDPG = Claim(
    id="depth-localisation-gridpg",
    hypothesis=(
        "Deeper layers localise the explained class: on 2x2 mosaics of confidently classified "
        "photos, the Grad-CAM mass inside the target cell rises with depth (Page's L p < alpha), "
        "layer4 is above chance (0.25) and above the untrained control."
    ),
    metric="gridpg",
    test="page",
    min_n=10,
    controls=("untrained",),
    params={"chance": 0.25},
)
DEPTH_LOCALISATION_BOXES = Claim(
    id="depth-localisation-boxes",
    hypothesis=(
        "Deeper layers localise the labelled object: on photos with a ground-truth bounding box, "
        "the share of Grad-CAM mass inside the box (energy pointing game) rises with depth "
        "(Page's L p < alpha), layer4 beats a uniform map (the box's area share) and the "
        "untrained control."
    ),
    metric="boxes",
    test="page",
    min_n=10,
    controls=("untrained",),
)
SANITY_RANDOMISATION = Claim(
    id="sanity-randomisation",
    hypothesis=(
        "The layer4 map depends on the learned parameters: under cascading randomisation from "
        "the top (fc, layer4, ...), the median Spearman rank correlation with the original map "
        "falls below the bound at every step."
    ),
    metric="randomisation",
    test="spearman",
    layers=("layer4",),
    direction="decreasing",
    min_n=3,
    params={"bound": 0.5},
)
NATIVE_CAPTUM_AGREEMENT = Claim(
    id="native-captum-agreement",
    hypothesis="The native and Captum backends give the same canonical maps within tolerance.",
    metric="agreement",
    test="max-abs-diff",
    direction="none",
    min_n=1,
    params={"tolerance": 1e-5},
)
BUILTIN_CLAIMS: tuple[Claim, ...] = (
    SEED_DEPTH_RATIO,
    DEPTH_LOCALISATION_GRIDPG,
    DEPTH_LOCALISATION_BOXES,
    SANITY_RANDOMISATION,
    NATIVE_CAPTUM_AGREEMENT,
)


def get_claim(claim_id: str) -> Claim:
    for claim in BUILTIN_CLAIMS:
        if claim.id == claim_id:
            return claim
    known = ", ".join(c.id for c in BUILTIN_CLAIMS)
    raise KeyError(f"unknown claim {claim_id!r}; built-in claims: {known}")


# --------------------------------------------------------------------------- evaluation


def _medians(values: np.ndarray, layers: Sequence[str]) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN layer gives NaN
        return {
            layer: float(np.nanmedian(values[:, j])) if len(values) else float("nan")
            for j, layer in enumerate(layers)
        }


def _rising(medians: dict[str, float]) -> bool:
    """Medians non-decreasing from the first layer to the last, and the last above the first."""
    seq = list(medians.values())
    if any(not math.isfinite(v) for v in seq):
        return False
    return all(b >= a for a, b in itertools.pairwise(seq)) and seq[-1] > seq[0]


def _depth_test(values: np.ndarray, claim: Claim) -> tuple[bool, dict[str, Any], dict[str, float]]:
    """The claim's own test on an (n, k) array: significant at alpha, and rising medians."""
    layers = claim.layers
    med = _medians(values, layers)
    if claim.test == "kruskal":
        result = stats.kruskal_wallis([values[:, j] for j in range(values.shape[1])])
    elif claim.test == "page":
        result = stats.page_trend(values, increasing=claim.direction == "increasing")
    elif claim.test == "friedman":
        result = stats.friedman(values)
    else:
        raise ValueError(f"unknown test {claim.test!r}")
    passed = bool(np.isfinite(result.pvalue) and result.pvalue < claim.alpha and _rising(med))
    return passed, result.to_dict(), med


def _record_control(
    verdict: Verdict, name: str, label: str, values: np.ndarray, *, model: str | None = None
) -> dict[str, Any]:
    """Run the claim's own depth test on a control's numbers and record it in ``verdict``."""
    passed, test, medians = _depth_test(values, verdict.claim)
    verdict.medians[label] = medians
    entry: dict[str, Any] = {"ran": True, "passes": passed, "test": test, "medians": medians}
    if model is not None:
        entry["model"] = model
    verdict.controls[name] = entry
    return entry


def _ratio_matrix(study: StudyResult, run: str, key: str, layers: Sequence[str]) -> np.ndarray:
    model_run = study.runs[run]
    idx = [model_run.layers.index(layer) for layer in layers]
    return model_run.column(key)[:, idx]


def _eval_ratio(claim: Claim, study: StudyResult) -> Verdict:
    runs = list(study.runs)
    main = runs[0]
    values = _ratio_matrix(study, main, "ratio", claim.layers)
    n = int(values.shape[0])
    verdict = Verdict(claim, Status.INCONCLUSIVE, [], n)
    if n < claim.min_n:
        verdict.reasons.append(f"only {n} images; the claim needs at least {claim.min_n}")
        verdict.insufficient = True
        return verdict
    passed, primary, med = _depth_test(values, claim)
    verdict.tests["primary"] = primary
    verdict.medians[main] = med
    paired = stats.page_trend(values, increasing=True)
    verdict.tests["page_trend"] = paired.to_dict()
    verdict.tests["friedman"] = stats.friedman(values).to_dict()
    verdict.tests["wilcoxon_holm"] = {
        f"{r.a}<{r.b}": r.to_dict()
        for r in stats.wilcoxon_holm(
            values, labels=list(claim.layers), pairs="adjacent", alternative="greater"
        )
    }
    # Controls.
    if "untrained" in claim.controls:
        control = next(
            (r for r in runs[1:] if study.runs[r].weights.get("source") == "random"),
            runs[1] if len(runs) > 1 else None,
        )
        if control is None:
            verdict.controls["untrained"] = {"ran": False, "note": "no control model in the study"}
        else:
            c_values = _ratio_matrix(study, control, "ratio", claim.layers)
            _record_control(verdict, "untrained", control, c_values, model=control)
    if "pooled" in claim.controls:
        p_values = _ratio_matrix(study, main, "ratio_pooled", claim.layers)
        _record_control(verdict, "pooled", f"{main} (pooled to coarsest grid)", p_values)
    alpha = claim.alpha
    if not passed:
        if not _significant(primary, alpha):
            verdict.status = Status.REFUTED
            verdict.reasons.append(
                f"{primary['method']} p = {_fmt(primary['pvalue'])} is not below alpha = {alpha}"
            )
        else:
            verdict.status = Status.REFUTED
            verdict.reasons.append("layers differ, but the medians do not rise with depth")
        return verdict
    verdict.reasons.append(
        f"{primary['method']} p = {_fmt(primary['pvalue'])} < {alpha}, medians rise with depth"
    )
    if not (paired.pvalue < alpha):
        verdict.status = Status.INCONCLUSIVE
        verdict.reasons.append(
            f"but the paired, directional Page test disagrees (p = {_fmt(paired.pvalue)})"
        )
        return verdict
    confounds = []
    untrained = verdict.controls.get("untrained", {})
    if untrained.get("ran") and untrained.get("passes"):
        confounds.append(
            f"the untrained control passes the same test (p = {_fmt(untrained['test']['pvalue'])})"
        )
    pooled = verdict.controls.get("pooled", {})
    if pooled.get("ran") and not pooled.get("passes"):
        p_pooled = pooled["test"]["pvalue"]
        how = (
            f"is no longer significant (p = {_fmt(p_pooled)})"
            if not (p_pooled is not None and p_pooled < alpha)
            else f"no longer rises with depth (medians {_fmt_list(pooled['medians'])})"
        )
        confounds.append(
            f"when every layer's map is pooled to the coarsest grid the effect {how}: "
            "the rise is a map-resolution artefact"
        )
    if confounds:
        verdict.status = Status.CONFOUNDED
        verdict.reasons.extend(confounds)
    else:
        verdict.status = Status.SUPPORTED
        verdict.reasons.append("and neither control reproduces it")
    return verdict


def _eval_gridpg(claim: Claim, study: StudyResult) -> Verdict:
    grid = study.gridpg
    if grid is None:
        return Verdict(
            claim, Status.INCONCLUSIVE, ["the GridPG phase did not run"], 0, insufficient=True
        )
    runs = list(study.runs)
    idx = [grid.layers.index(layer) for layer in claim.layers]
    empty = np.empty((0, len(claim.layers)))
    scores = {name: (v[:, idx] if len(v) else empty) for name, v in grid.scores.items()}
    n = int(scores.get(runs[0], empty).shape[0])
    if n < claim.min_n:
        reason = f"only {n} mosaics; the claim needs at least {claim.min_n}"
        reason += f" ({grid.note})" if grid.note else ""
        return Verdict(claim, Status.INCONCLUSIVE, [reason], n, insufficient=True)
    chance = float(claim.params.get("chance", 0.25))
    return _localisation(
        claim,
        study,
        scores,
        baseline=np.full(n, chance),
        baseline_name=f"chance {chance}",
        key="chance",
    )


def _eval_boxes(claim: Claim, study: StudyResult) -> Verdict:
    runs = list(study.runs)
    main = study.runs[runs[0]]
    rows = [i for i, r in enumerate(main.records) if "box_mass" in r]
    n = len(rows)
    if n < claim.min_n:
        why = (
            "the photo set has no bounding boxes"
            if n == 0
            else f"only {n} photos with boxes; the claim needs at least {claim.min_n}"
        )
        return Verdict(claim, Status.INCONCLUSIVE, [why], n, insufficient=True)
    scores = {}
    for name, run in study.runs.items():
        idx = [run.layers.index(layer) for layer in claim.layers]
        scores[name] = run.column("box_mass")[:, idx]
    area = np.array([main.records[i]["box_area"] for i in rows], dtype=float)
    return _localisation(
        claim,
        study,
        scores,
        baseline=area,
        baseline_name="the box's area share (a uniform map)",
        key="box_area",
    )


def _localisation(
    claim: Claim,
    study: StudyResult,
    scores: dict[str, np.ndarray],
    *,
    baseline: np.ndarray,
    baseline_name: str,
    key: str,
) -> Verdict:
    """Shared rules for ground-truth localisation claims (GridPG, boxes).

    SUPPORTED needs: the score rises with depth (the claim's test), the last layer beats the
    baseline (a map that knows nothing), and it beats the untrained control (CONFOUNDED if not).
    """
    runs = list(study.runs)
    main = runs[0]
    values = scores[main]
    verdict = Verdict(claim, Status.INCONCLUSIVE, [], int(values.shape[0]))
    passed, primary, med = _depth_test(values, claim)
    verdict.tests["primary"] = primary
    verdict.medians[main] = med
    last = values[:, -1]
    above = _paired_greater(last, baseline, method=f"wilcoxon signed-rank vs {key}")
    verdict.tests[f"last_layer_above_{key}"] = above
    control = runs[1] if len(runs) > 1 else None
    if control is not None and control in scores:
        c_values = scores[control]
        verdict.tests["last_layer_above_control"] = _paired_greater(last, c_values[:, -1])
        entry = _record_control(verdict, "untrained", control, c_values, model=control)
        entry[f"above_{key}"] = _paired_greater(
            c_values[:, -1], baseline, method=f"wilcoxon signed-rank vs {key}"
        )
    alpha = claim.alpha
    if not passed:
        verdict.status = Status.REFUTED
        verdict.reasons.append(
            f"{primary['method']} p = {_fmt(primary['pvalue'])}"
            + ("" if _rising(med) else ", medians do not rise with depth")
        )
        return verdict
    verdict.reasons.append(f"{primary['method']} p = {_fmt(primary['pvalue'])} < {alpha}")
    if not _significant(above, alpha):
        verdict.status = Status.REFUTED
        verdict.reasons.append(
            f"but {claim.layers[-1]} is not above {baseline_name} (p = {_fmt(above['pvalue'])})"
        )
        return verdict
    verdict.reasons.append(
        f"{claim.layers[-1]} above {baseline_name} (p = {_fmt(above['pvalue'])})"
    )
    versus = verdict.tests.get("last_layer_above_control")
    if versus is None:
        verdict.status = Status.INCONCLUSIVE
        verdict.reasons.append("no untrained control to compare with")
    elif not _significant(versus, alpha):
        verdict.status = Status.CONFOUNDED
        verdict.reasons.append(
            f"but the untrained control localises as well (p = {_fmt(versus['pvalue'])})"
        )
    else:
        verdict.status = Status.SUPPORTED
        verdict.reasons.append(f"and above the untrained control (p = {_fmt(versus['pvalue'])})")
    return verdict


def _paired_greater(
    a: np.ndarray, b: np.ndarray, *, method: str = "wilcoxon signed-rank, model > control"
) -> dict[str, Any]:
    """One-sided paired Wilcoxon signed-rank test that ``a`` exceeds ``b``."""
    ok = np.isfinite(a) & np.isfinite(b)
    diffs = a[ok] - b[ok]
    median = float(np.median(a[ok])) if ok.any() else None
    if len(diffs) < 2 or np.all(diffs == 0):
        return {
            "method": method,
            "statistic": None,
            "pvalue": None,
            "n": len(diffs),
            "median": median,
        }
    res = sps.wilcoxon(diffs, alternative="greater")
    return {
        "method": method,
        "statistic": float(res.statistic),
        "pvalue": float(res.pvalue),
        "n": len(diffs),
        "median": median,
        "effect": stats.rank_biserial(diffs),
        "effect_name": "rank-biserial",
    }


def _eval_sanity(claim: Claim, study: StudyResult) -> Verdict:
    sanity = study.sanity
    if sanity is None or not sanity.steps:
        return Verdict(claim, Status.INCONCLUSIVE, ["the sanity phase did not run"], 0)
    bound = float(claim.params.get("bound", 0.5))
    medians: dict[str, float] = {}
    n = 0
    for step in sanity.steps:
        rho = np.asarray(sanity.rho[step], dtype=float)
        finite = rho[np.isfinite(rho)]
        n = max(n, len(rho))
        medians[step] = float(np.median(np.abs(finite))) if len(finite) else float("nan")
    verdict = Verdict(claim, Status.INCONCLUSIVE, [], n)
    verdict.medians["|spearman rho| with original"] = medians
    verdict.tests["primary"] = {
        "method": "median |Spearman rho| per cascade step",
        "bound": bound,
        "medians": medians,
        "n": n,
    }
    if n < claim.min_n:
        verdict.reasons.append(f"only {n} images; the claim needs at least {claim.min_n}")
        verdict.insufficient = True
        return verdict
    if any(not math.isfinite(v) for v in medians.values()):
        verdict.reasons.append("some randomised maps are constant: no rank correlation")
        return verdict
    above = [s for s, v in medians.items() if v >= bound]
    if above:
        verdict.status = Status.REFUTED
        verdict.reasons.append(
            f"maps stay similar to the original after randomising {', '.join(above)} "
            f"(median |rho| >= {bound})"
        )
    else:
        verdict.status = Status.SUPPORTED
        worst = max(medians.values())
        verdict.reasons.append(f"median |rho| <= {worst:.3f} < {bound} at every cascade step")
    return verdict


def _eval_agreement(claim: Claim, study: StudyResult) -> Verdict:
    if not study.agreement:
        return Verdict(claim, Status.INCONCLUSIVE, ["the agreement phase did not run"], 0)
    tol = float(claim.params.get("tolerance", 1e-5))
    n = min(study.config.agreement_images, study.photoset.get("n_used", 0))
    worst = max(study.agreement.values())
    verdict = Verdict(claim, Status.SUPPORTED if worst <= tol else Status.REFUTED, [], n)
    verdict.tests["primary"] = {
        "method": "max |native - captum| on canonical maps",
        "per_layer": dict(study.agreement),
        "tolerance": tol,
        "statistic": worst,
        "n": n,
    }
    verdict.reasons.append(f"max |diff| = {worst:.2e} {'<=' if worst <= tol else '>'} {tol:g}")
    return verdict


_EVALUATORS: dict[str, Callable[[Claim, StudyResult], Verdict]] = {
    "ratio": _eval_ratio,
    "gridpg": _eval_gridpg,
    "boxes": _eval_boxes,
    "randomisation": _eval_sanity,
    "agreement": _eval_agreement,
}


def evaluate(claim: Claim | str, study: StudyResult) -> Verdict:
    """The verdict of ``claim`` on ``study``'s numbers."""
    if isinstance(claim, str):
        claim = get_claim(claim)
    try:
        evaluator = _EVALUATORS[claim.metric]
    except KeyError:
        raise ValueError(f"no evaluator for metric {claim.metric!r}") from None
    return evaluator(claim, study)


def evaluate_all(
    study: StudyResult, claims: Sequence[Claim] = BUILTIN_CLAIMS, *, alpha: float | None = None
) -> list[Verdict]:
    """Every claim's verdict (optionally at another ``alpha``)."""
    out = []
    for claim in claims:
        if alpha is not None:
            claim = claim.with_(alpha=alpha)
        out.append(evaluate(claim, study))
    return out


def _significant(result: dict[str, Any], alpha: float) -> bool:
    """A test result's p-value exists and is below ``alpha``."""
    p = result.get("pvalue")
    return p is not None and math.isfinite(p) and p < alpha


def _fmt(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "n/a"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def _fmt_list(values: dict[str, float]) -> str:
    return ", ".join(f"{v:.3g}" for v in values.values())
