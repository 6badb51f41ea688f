"""Rules the built-in claims share: depth tests, controls, paired comparisons, formatting."""

from __future__ import annotations

import itertools
import math
import warnings
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats as sps

from xai_checks import stats
from xai_checks.claims.base import PowerRecord, Status
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
    diffs: np.ndarray, claim: Claim, *, name: str, m_equivalence: int = 1, trim: float = 0.0
) -> stats.EffectEstimate:
    """``stats.paired_effect`` with the claim's SESOI, alpha and bootstrap size; for an
    ``(n_photos, R)`` array of differences with R random networks (:func:`with_draws`),
    ``stats.clustered_effect``, which is ``paired_effect`` for one network.

    ``m_equivalence``: how many 'absent' decisions can each make the claim's verdict
    negative (REFUTED or CONFOUNDED); each is held at alpha / m (Bonferroni).
    ``trim`` > 0: the trimmed mean of one column of per-photo numbers (``paired_effect``);
    the mean over photos and networks has no trimmed counterpart here.
    """
    common: dict[str, Any] = {
        "sesoi": float(claim.sesoi),
        "alpha": float(claim.alpha),
        "name": name,
        "n_resamples": int(claim.params.get("n_boot", 2000)),
        "equivalence_alpha": float(claim.alpha) / max(1, m_equivalence),
    }
    if trim:
        if np.ndim(diffs) != 1:
            raise ValueError(f"a trimmed effect takes one column of numbers; got {np.shape(diffs)}")
        estimate = stats.paired_effect(diffs, trim=trim, **common)
    else:
        estimate = stats.clustered_effect(diffs, **common)
    if estimate.n_dropped:
        # kept (while the estimate lives) for the worst-case row of ``conclude``
        _DROPPED_FROM[id(estimate)] = (np.asarray(diffs, dtype=np.float64), m_equivalence)
        weakref.finalize(estimate, _DROPPED_FROM.pop, id(estimate), None)
    return estimate


#: per-photo differences of the effects that dropped photos, by the estimate's id
_DROPPED_FROM: dict[int, tuple[np.ndarray, int]] = {}


def worst_case(verdict: Verdict, effects: dict[str, stats.EffectEstimate]) -> dict[str, Any] | None:
    """The sensitivity row for dropped photos: each effect's dropped photos scored at the
    worst case for the verdict, and whether the verdict survives.

    For SUPPORTED the worst case is against the model: every dropped photo gets the smallest
    difference any kept photo shows, and the verdict survives if every such effect still
    reads present. For REFUTED and CONFOUNDED it is in the model's favour: the largest
    difference a kept photo shows, and the verdict survives if an effect still reads absent.
    The worst case is bounded by what the kept photos show, not by the metric's range: a
    dropped photo has no finite value to say how far outside that it could lie.
    None when the verdict is INCONCLUSIVE or no required effect dropped a photo."""
    status = verdict.status
    if status not in (Status.SUPPORTED, Status.REFUTED, Status.CONFOUNDED):
        return None
    claim = verdict.claim
    rows: dict[str, dict[str, Any]] = {}
    rescored: dict[str, stats.EffectEstimate] = {}
    for key, e in effects.items():
        kept = _DROPPED_FROM.get(id(e))
        if kept is None or not e.n_dropped:
            rescored[key] = e
            continue
        d, m = kept
        # with several control draws (n_photos, R), the photos dropped are those the study's
        # own network (column 0) has no value for; later draws' NaNs are photos they skipped
        first = d[:, 0] if d.ndim == 2 else d
        finite = first[np.isfinite(first)]
        if not len(finite):
            rescored[key] = e
            continue
        fill = float(finite.min() if status is Status.SUPPORTED else finite.max())
        filled = d.copy()
        if d.ndim == 2:
            filled[:, 0] = np.where(np.isfinite(first), first, fill)
        else:
            filled = np.where(np.isfinite(d), d, fill)
        worst = effect(filled, claim, name=e.name, m_equivalence=m, trim=e.trim)
        rescored[key] = worst
        rows[key] = {
            "effect": e.name,
            "dropped": e.n_dropped,
            "scored_at": fill,
            "estimate": worst.estimate,
            "ci_low": worst.ci_low,
            "ci_high": worst.ci_high,
            "n": worst.n,
            "decision": worst.decision,
            "decision_as_run": e.decision,
        }
    if not rows:
        return None
    if status is Status.SUPPORTED:
        survives = all(w.decision == "present" for w in rescored.values())
        rule = "dropped photos scored at the smallest difference a kept photo shows"
    else:
        survives = any(w.decision == "absent" for w in rescored.values())
        rule = "dropped photos scored at the largest difference a kept photo shows"
    return {"rule": rule, "survives": survives, "effects": rows}


def with_draws(first: np.ndarray, later: Sequence[np.ndarray]) -> np.ndarray:
    """``(n_photos, R)``: a per-photo number of the study's own random network (``first``,
    every photo) beside the same number of each later draw (NaN where a draw did not run)."""
    return np.column_stack([np.asarray(first, dtype=float), *later])


def later_draws(
    study: Any, control: str, key: str, layers: Sequence[str], files: Sequence[str]
) -> list[np.ndarray]:
    """Per later draw of the control named ``control`` (``StudyResult.control_seeds``), the
    ``(len(files), len(layers))`` array of its per-photo metric ``key`` for ``files``; NaN for
    a photo that draw did not run on. Empty when the study drew the control once."""
    seeds = getattr(study, "control_seeds", None)
    if seeds is None or seeds.control != control:
        return []
    out = []
    for run in seeds.runs:
        by_file = {r["file"]: r[key] for r in run.records if key in r}
        out.append(
            np.array(
                [[by_file[f].get(layer, np.nan) if f in by_file else np.nan for layer in layers]
                 for f in files],
                dtype=float,
            ).reshape(len(files), len(layers))
        )  # fmt: skip
    return out


def seed_spread(e: stats.EffectEstimate) -> dict[str, Any] | None:
    """The effect per random network, its min and max, for a verdict's control entry."""
    if e.seeds is None:
        return None
    keys = ("count", "per_seed", "min", "max", "photos_every_seed", "first_seed_all_photos")
    return {k: e.seeds[k] for k in keys if k in e.seeds} | (
        {"note": e.seeds["note"]} if "note" in e.seeds else {}
    )


def describe_effect(e: stats.EffectEstimate, unit: str = "") -> str:
    """``0.123 [0.100, 0.150]`` (the estimate and its CI)."""
    if not math.isfinite(e.estimate):
        return "n/a"
    return f"{e.estimate:.3f}{unit} [{e.ci_low:.3f}, {e.ci_high:.3f}]"


def headline(e: stats.EffectEstimate, *, what: str) -> dict[str, Any]:
    """The verdict's headline effect: the estimate, its CI, the test, the unit of analysis."""
    return {**e.to_dict(), "what": what, "unit_of_analysis": "photos"}


def power_statement(e: stats.EffectEstimate, *, what: str) -> PowerRecord:
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


def conclude(
    verdict: Verdict,
    *,
    required: dict[str, tuple[str, stats.EffectEstimate]],
    other_p: Sequence[float | None] = (),
) -> stats.EffectEstimate | None:
    """Fill in what every effect-judged verdict reports, once its status is decided.

    ``required``: the effects SUPPORTED needs all present (key -> (what it is, the effect));
    ``other_p``: the p of any other test SUPPORTED needs (a paired check; None: not run).

    * ``p_value``: the largest p of the tests SUPPORTED needs (an intersection-union test):
      each effect's ``p_present`` (its minimal-effect test against the SESOI, and the test
      against zero), and ``other_p``. Holm across a run's claims adjusts this one.
    * the deciding effect, shown as the verdict's effect and its n as the verdict's n:
      SUPPORTED rests on the weakest required effect (the smallest lower bound), REFUTED and
      CONFOUNDED on the first effect found absent, INCONCLUSIVE on the first one left unclear.
    * ``min_n`` is checked on that n: too few photos behind the deciding effect make any
      decided verdict INCONCLUSIVE.
    * the tipping SESOI: the SESOI at which the verdict would change. SUPPORTED holds for
      any SESOI up to the smallest lower bound of the required effects; a negative verdict
      for any SESOI above the smallest upper bound that 'absent' reads.
    * the photos each effect dropped (no finite value in a compared map), with the cause.
    """
    effects = {key: e for key, (_, e) in required.items()}
    if not effects:
        return None
    finite = [e.p_present for e in effects.values() if math.isfinite(e.p_present)]
    extra = [1.0 if p is None or not math.isfinite(p) else float(p) for p in other_p]
    verdict.p_value = max([*finite, *extra]) if len(finite) == len(effects) else 1.0
    status = verdict.status
    pick = None
    if status in (Status.REFUTED, Status.CONFOUNDED):
        pick = next((k for k, e in effects.items() if e.decision == "absent"), None)
    elif status is Status.INCONCLUSIVE:
        pick = next((k for k, e in effects.items() if e.decision == "unclear"), None)
    if pick is None:  # the effect closest to failing: the smallest lower bound (one SESOI per
        # claim), then the largest p; p alone ties wherever the bootstrap floors it
        pick = min(
            effects,
            key=lambda k: (
                effects[k].ci_low if math.isfinite(effects[k].ci_low) else -math.inf,
                -(effects[k].p_present if math.isfinite(effects[k].p_present) else 2.0),
            ),
        )
    what, deciding = required[pick]
    verdict.effect_size = {**headline(deciding, what=what), "deciding": pick}
    verdict.power = power_statement(deciding, what=what)
    if verdict.n_photos is None:
        verdict.n_photos = verdict.n
    verdict.n = deciding.n
    for e in effects.values():
        if e.n_dropped:
            verdict.drops[f"{e.name}: no finite value"] = e.n_dropped
    verdict.sensitivity = worst_case(verdict, effects)
    if verdict.sensitivity is not None:
        parts = [
            f"{row['dropped']} dropped from {row['effect']} scored at {row['scored_at']:.3g}: "
            f"{row['estimate']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}], "
            f"{row['decision']}"
            for row in verdict.sensitivity["effects"].values()
        ]
        verdict.add(
            "worst-case",
            f"worst case for the dropped photos ({verdict.sensitivity['rule']}): "
            + "; ".join(parts)
            + (
                ": the verdict survives"
                if verdict.sensitivity["survives"]
                else ": the verdict would not survive; it rests on the dropped photos being no "
                "worse than the kept ones"
            ),
        )
    lows = [e.ci_low for e in effects.values()]
    highs = [e.absent_bound for e in effects.values()]
    supported_up_to = min(lows) if all(math.isfinite(x) for x in lows) else None
    negative_above = min((h for h in highs if math.isfinite(h)), default=None)
    tipping = (
        supported_up_to
        if status is Status.SUPPORTED
        else negative_above
        if status in (Status.REFUTED, Status.CONFOUNDED)
        else None
    )
    verdict.tipping = {
        "sesoi": tipping,
        "supported_up_to": supported_up_to,
        "negative_above": negative_above,
        "note": "SESOIs at or below supported_up_to let every required effect read present; "
        "above negative_above one reads absent (the other tests aside)",
    }
    claim = verdict.claim
    if status is not Status.INCONCLUSIVE and deciding.n < claim.min_n:
        verdict.status = Status.INCONCLUSIVE
        verdict.insufficient = True
        verdict.add(
            "too-few-photos",
            f"the deciding effect ({what}) rests on {deciding.n} photos; the claim needs at "
            f"least {claim.min_n}",
        )
    return deciding


def unique_photos(files: Sequence[str]) -> np.ndarray:
    """Boolean mask keeping the first occurrence of each photo (one photo, one vote)."""
    seen: set[str] = set()
    keep = np.zeros(len(files), dtype=bool)
    for i, f in enumerate(files):
        if f not in seen:
            seen.add(f)
            keep[i] = True
    return keep
