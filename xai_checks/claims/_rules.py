"""Rules the built-in claims share: depth tests, controls, paired comparisons, formatting."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats as sps

from xai_checks import stats
from xai_checks.fmt import pvalue

if TYPE_CHECKING:
    from xai_checks.claims.base import Claim, Verdict
    from xai_checks.study import ModelRun


def medians(values: np.ndarray, layers: Sequence[str]) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN layer gives NaN
        return {
            layer: float(np.nanmedian(values[:, j])) if len(values) else float("nan")
            for j, layer in enumerate(layers)
        }


def rising(meds: dict[str, float]) -> bool:
    """Medians non-decreasing from the first layer to the last, and the last above the first."""
    seq = list(meds.values())
    if any(not math.isfinite(v) for v in seq):
        return False
    return all(b >= a for a, b in itertools.pairwise(seq)) and seq[-1] > seq[0]


def depth_test(
    values: np.ndarray, claim: Claim, test: str | None = None
) -> tuple[bool, dict[str, Any], dict[str, float]]:
    """A depth test on an (n, k) array: significant at alpha, and rising medians."""
    layers = claim.layers or ()
    med = medians(values, layers)
    test = test or claim.test
    if test == "kruskal":
        result = stats.kruskal_wallis([values[:, j] for j in range(values.shape[1])])
    elif test == "page":
        result = stats.page_trend(values, increasing=claim.direction == "increasing")
    elif test == "friedman":
        result = stats.friedman(values)
    else:
        raise ValueError(f"unknown test {test!r}")
    passed = bool(np.isfinite(result.pvalue) and result.pvalue < claim.alpha and rising(med))
    return passed, result.to_dict(), med


def record_control(
    verdict: Verdict, name: str, label: str, values: np.ndarray, *, model: str | None = None
) -> dict[str, Any]:
    """Run the claim's own depth test on a control's numbers and record it in ``verdict``."""
    passed, test, meds = depth_test(values, verdict.claim)
    verdict.medians[label] = meds
    entry: dict[str, Any] = {"ran": True, "passes": passed, "test": test, "medians": meds}
    if model is not None:
        entry["model"] = model
    verdict.controls[name] = entry
    return entry


def layer_matrix(run: ModelRun, key: str, layers: Sequence[str]) -> np.ndarray:
    """(n_photos, len(layers)) array of a per-layer number of ``run``."""
    missing = [layer for layer in layers if layer not in run.layers]
    if missing:
        raise ValueError(f"{run.name} has no numbers for layer(s) {missing}; it ran {run.layers}")
    idx = [run.layers.index(layer) for layer in layers]
    return run.column(key)[:, idx]


def paired_greater(
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


def significant(result: dict[str, Any], alpha: float) -> bool:
    """A test result's p-value exists and is below ``alpha``."""
    p = result.get("pvalue")
    return p is not None and math.isfinite(p) and p < alpha


def fmt_p(p: float | None) -> str:
    """A p-value in a reason's text (the one formatter, :func:`xai_checks.fmt.pvalue`)."""
    return pvalue(p, missing="n/a")


def fmt_list(values: dict[str, float]) -> str:
    return ", ".join(f"{v:.3g}" for v in values.values())


# --------------------------------------------------------------------------- effects vs SESOI


def effect(
    diffs: np.ndarray, claim: Claim, *, name: str, m_equivalence: int = 1
) -> stats.EffectEstimate:
    """``stats.paired_effect`` with the claim's SESOI, alpha and bootstrap size.

    ``m_equivalence``: how many 'absent' decisions can each make the claim's verdict
    negative (REFUTED or CONFOUNDED); each is held at alpha / m (Bonferroni).
    """
    return stats.paired_effect(
        diffs,
        sesoi=float(claim.sesoi),
        alpha=float(claim.alpha),
        name=name,
        n_resamples=int(claim.params.get("n_boot", 2000)),
        equivalence_alpha=float(claim.alpha) / max(1, m_equivalence),
    )


def describe_effect(e: stats.EffectEstimate, unit: str = "") -> str:
    """``0.123 [0.100, 0.150]`` (the estimate and its CI)."""
    if not math.isfinite(e.estimate):
        return "n/a"
    return f"{e.estimate:.3f}{unit} [{e.ci_low:.3f}, {e.ci_high:.3f}]"


def headline(e: stats.EffectEstimate, *, what: str) -> dict[str, Any]:
    """The verdict's headline effect: the estimate, its CI, the test, the unit of analysis."""
    return {**e.to_dict(), "what": what, "unit_of_analysis": "photos"}


def power_statement(e: stats.EffectEstimate, *, what: str) -> dict[str, Any]:
    """How large a true effect this n shows to reach the SESOI (80 % power).

    SUPPORTED rests on a minimal-effect test (the lower bound at or above the SESOI), so the
    statement names the smallest true effect that passes it with 80 % power, and sets it
    against the size the calibration's effect worlds use (``stats.EFFECT_MULTIPLE`` times the
    SESOI)."""
    target = stats.EFFECT_MULTIPLE * e.sesoi
    if not math.isfinite(e.mde):
        text = f"with n = {e.n} photos no power statement is possible"
    else:
        verdict = (
            f"so an effect of {stats.EFFECT_MULTIPLE:g}x the SESOI ({target:.3g}) would be found"
            if e.mde <= target
            else f"so even an effect of {stats.EFFECT_MULTIPLE:g}x the SESOI ({target:.3g}) "
            "would often be missed: more photos are needed"
        )
        text = (
            f"with n = {e.n} photos, a true {what} of {e.mde:.3f} or more would be shown to "
            f"reach the SESOI {e.sesoi:g} with 80% power at alpha {e.alpha:g}, {verdict}"
        )
    return {
        "mde": e.mde,
        "power": 0.8,
        "n": e.n,
        "sesoi": e.sesoi,
        "powered_for": target,
        "statement": text,
    }


def unique_photos(files: Sequence[str]) -> np.ndarray:
    """Boolean mask keeping the first occurrence of each photo (one photo, one vote)."""
    seen: set[str] = set()
    keep = np.zeros(len(files), dtype=bool)
    for i, f in enumerate(files):
        if f not in seen:
            seen.add(f)
            keep[i] = True
    return keep
