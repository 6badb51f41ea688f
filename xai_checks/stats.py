"""Statistical tests for layer-wise explainability claims (numpy + scipy only).

Paired tests take a 2-D array ``values`` of shape ``(n_images, k_layers)`` whose columns are
ordered ``layer1 .. layerK``; rows holding any NaN are dropped (the count is reported in
``details["dropped"]``). Independent-group tests (Kruskal-Wallis) drop NaN per group.

Data problems (too few observations, all values identical, ...) never raise: they give a result
with ``pvalue`` NaN and ``details["error"]`` saying why. Wrong shapes or bad arguments raise
``ValueError``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats as sps
from scipy.stats import mstats

from xai_checks._util import jsonable

__all__ = [
    "EFFECT_MULTIPLE",
    "EffectEstimate",
    "PairResult",
    "TestResult",
    "bootstrap_median_ci",
    "clustered_effect",
    "depth_rise",
    "describe_layers",
    "detectable_effect",
    "friedman",
    "holm",
    "kruskal_wallis",
    "page_trend",
    "paired_effect",
    "rank_biserial",
    "ratio_of_means_ci",
    "wilcoxon_holm",
]

Alternative = Literal["two-sided", "greater", "less"]
_ALTERNATIVES = ("two-sided", "greater", "less")
ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]


# The class is named TestResult by specification; tell pytest it is not a test class.
@dataclass(frozen=True)
class TestResult:
    """Result of one omnibus or trend test.

    ``n`` is the number of images (rows used) for paired tests and the total number of
    observations over all groups for independent-group tests (Kruskal-Wallis); ``k`` is the
    number of groups/layers. ``effect`` is ``None`` only when a method has no effect size.
    """

    __test__ = False

    method: str
    statistic: float
    pvalue: float
    n: int
    k: int
    effect: float | None
    effect_name: str | None
    alternative: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict (NaN and infinities become ``None``)."""
        return {
            "method": self.method,
            "statistic": jsonable(self.statistic),
            "pvalue": jsonable(self.pvalue),
            "n": int(self.n),
            "k": int(self.k),
            "effect": jsonable(self.effect),
            "effect_name": self.effect_name,
            "alternative": self.alternative,
            "details": jsonable(self.details),
        }


@dataclass(frozen=True)
class PairResult:
    """One Wilcoxon signed-rank comparison of column ``b`` against column ``a`` (``b - a``).

    ``effect`` is the matched-pairs rank-biserial correlation in [-1, 1] (positive: b > a);
    ``n`` is the number of rows used (after dropping rows with NaN); ``pvalue_holm`` is the
    Holm-adjusted p-value across all pairs of the same call.
    """

    a: str
    b: str
    statistic: float
    pvalue: float
    pvalue_holm: float
    effect: float
    n: int
    method: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict (NaN and infinities become ``None``)."""
        return {
            "a": self.a,
            "b": self.b,
            "statistic": jsonable(self.statistic),
            "pvalue": jsonable(self.pvalue),
            "pvalue_holm": jsonable(self.pvalue_holm),
            "effect": jsonable(self.effect),
            "effect_name": "rank_biserial",
            "n": int(self.n),
            "method": self.method,
            "details": jsonable(self.details),
        }


# --------------------------------------------------------------------------- helpers


def _paired_matrix(values: ArrayLike, *, min_k: int) -> tuple[FloatArray, int]:
    """Validate a (n, k) matrix and drop rows with any NaN; return (clean, n_dropped)."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"values must be a numeric 2-D array: {exc}") from exc
    if arr.ndim != 2:
        raise ValueError(f"values must be 2-D (n_images, k_layers); got shape {arr.shape}")
    if arr.shape[1] < min_k:
        raise ValueError(f"values needs at least {min_k} columns (layers); got {arr.shape[1]}")
    keep = ~np.isnan(arr).any(axis=1)
    return arr[keep], int((~keep).sum())


def _check_alternative(alternative: str) -> None:
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {_ALTERNATIVES}; got {alternative!r}")


def _nan_result(
    method: str,
    *,
    n: int,
    k: int,
    effect_name: str | None,
    alternative: str,
    details: dict[str, Any],
    error: str,
) -> TestResult:
    return TestResult(
        method=method,
        statistic=math.nan,
        pvalue=math.nan,
        n=n,
        k=k,
        effect=math.nan if effect_name is not None else None,
        effect_name=effect_name,
        alternative=alternative,
        details={**details, "error": error},
    )


def holm(pvalues: ArrayLike) -> FloatArray:
    """Holm (1979) step-down adjusted p-values: monotone and capped at 1.

    Hand-written (statsmodels' ``multipletests(method='holm')`` does the same) to keep the
    dependency list to numpy + scipy. NaN entries are left out of the family (they do not
    count towards the number of tests) and stay NaN.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"pvalues must be 1-D; got shape {p.shape}")
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out


def rank_biserial(differences: ArrayLike) -> float:
    """Matched-pairs rank-biserial correlation (Kerby 2014): ``(R+ - R-) / (R+ + R-)``.

    Ranks are of ``|d|`` over the non-zero differences (zeros dropped, as scipy's
    ``wilcoxon(zero_method='wilcox')`` does); ties get average ranks. In [-1, 1]; NaN when
    there is no non-zero difference.
    """
    d = np.asarray(differences, dtype=np.float64).ravel()
    d = d[~np.isnan(d) & (d != 0)]
    if d.size == 0:
        return math.nan
    ranks = sps.rankdata(np.abs(d))
    r_plus = float(ranks[d > 0].sum())
    r_minus = float(ranks[d < 0].sum())
    return (r_plus - r_minus) / (r_plus + r_minus)


# --------------------------------------------------------------------------- omnibus tests


def kruskal_wallis(groups: Sequence[ArrayLike]) -> TestResult:
    """Kruskal-Wallis H test across independent groups (``scipy.stats.kruskal``).

    NaN is dropped per group. Effect: epsilon² = H / ((n² - 1) / (n + 1)) = H / (n - 1)
    (Tomczak & Tomczak 2014), with n the total number of observations; in [0, 1].
    Each group needs at least 2 observations and not all values may be equal, otherwise the
    result has ``pvalue`` NaN and ``details["error"]``.
    """
    method = "kruskal-wallis"
    if isinstance(groups, np.ndarray) and groups.ndim == 2:
        raise ValueError(
            "groups must be a sequence of 1-D arrays; for a (n, k) matrix pass list(values.T)"
        )
    if len(groups) < 2:
        raise ValueError(f"kruskal_wallis needs at least 2 groups; got {len(groups)}")
    clean: list[FloatArray] = []
    dropped: list[int] = []
    for i, g in enumerate(groups):
        try:
            arr = np.asarray(g, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"group {i} is not numeric: {exc}") from exc
        if arr.ndim != 1:
            raise ValueError(f"group {i} must be 1-D; got shape {arr.shape}")
        keep = ~np.isnan(arr)
        clean.append(arr[keep])
        dropped.append(int((~keep).sum()))
    sizes = [int(g.size) for g in clean]
    n = sum(sizes)
    k = len(clean)
    details: dict[str, Any] = {"group_sizes": sizes, "dropped": dropped}
    kw: dict[str, Any] = {
        "n": n,
        "k": k,
        "effect_name": "epsilon_squared",
        "alternative": "two-sided",
        "details": details,
    }
    if min(sizes) < 2:
        return _nan_result(method, **kw, error="every group needs at least 2 non-NaN values")
    pooled = np.concatenate(clean)
    if np.all(pooled == pooled[0]):
        return _nan_result(method, **kw, error="all values are identical")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sps.kruskal(*clean)
    h = float(res.statistic)
    p = float(res.pvalue)
    if not (math.isfinite(h) and math.isfinite(p)):
        return _nan_result(method, **kw, error="scipy.stats.kruskal returned NaN")
    epsilon2 = h / ((n**2 - 1) / (n + 1))
    return TestResult(
        method=method,
        statistic=h,
        pvalue=p,
        n=n,
        k=k,
        effect=epsilon2,
        effect_name="epsilon_squared",
        alternative="two-sided",
        details=details,
    )


def friedman(values: ArrayLike) -> TestResult:
    """Friedman test on a (n_images, k_layers) matrix (``scipy.stats.friedmanchisquare``).

    Effect: Kendall's W = chi² / (n (k - 1)) in [0, 1] (tie-corrected, as scipy's chi² is).
    Needs k >= 3 columns (``ValueError`` otherwise, as scipy requires) and n >= 2 complete rows.
    """
    method = "friedman"
    arr, dropped = _paired_matrix(values, min_k=3)
    n, k = arr.shape
    details: dict[str, Any] = {"dropped": dropped}
    kw: dict[str, Any] = {
        "n": n,
        "k": k,
        "effect_name": "kendall_w",
        "alternative": "two-sided",
        "details": details,
    }
    if n < 2:
        return _nan_result(method, **kw, error="needs at least 2 complete rows (images)")
    if np.all(arr == arr[:, :1]):
        return _nan_result(method, **kw, error="every row is constant (all values tied)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sps.friedmanchisquare(*arr.T)
    chi2 = float(res.statistic)
    p = float(res.pvalue)
    if not (math.isfinite(chi2) and math.isfinite(p)):
        return _nan_result(method, **kw, error="scipy.stats.friedmanchisquare returned NaN")
    w = chi2 / (n * (k - 1))
    return TestResult(
        method=method,
        statistic=chi2,
        pvalue=p,
        n=n,
        k=k,
        effect=w,
        effect_name="kendall_w",
        alternative="two-sided",
        details=details,
    )


def page_trend(values: ArrayLike, *, increasing: bool = True) -> TestResult:
    """Page's L test for the ordered alternative layer1 < ... < layerK (``page_trend_test``).

    With ``increasing=False`` the columns are reversed, i.e. the alternative is
    layer1 > ... > layerK. Effect ``mean_rho`` = (L - E0[L]) / (L_max - E0[L])
    = 12 L / (n k (k² - 1)) - 3 (k + 1) / (k - 1), which equals the mean over images of the
    Spearman correlation between an image's values and the predicted order (Page 1963) when
    there are no ties; tied values count as partial agreement. In [-1, 1]; positive means
    agreement with the predicted direction. Needs k >= 3 (``ValueError``) and n >= 2 rows.
    """
    method = "page-trend"
    arr, dropped = _paired_matrix(values, min_k=3)
    if not increasing:
        arr = arr[:, ::-1]
    n, k = arr.shape
    alternative = "increasing" if increasing else "decreasing"
    details: dict[str, Any] = {"dropped": dropped}
    kw: dict[str, Any] = {
        "n": n,
        "k": k,
        "effect_name": "mean_rho",
        "alternative": alternative,
        "details": details,
    }
    if n < 2:
        return _nan_result(method, **kw, error="needs at least 2 complete rows (images)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sps.page_trend_test(arr)
    big_l = float(res.statistic)
    p = float(res.pvalue)
    details["pvalue_method"] = str(res.method)
    mean_rho = 12.0 * big_l / (n * k * (k**2 - 1)) - 3.0 * (k + 1) / (k - 1)
    return TestResult(
        method=method,
        statistic=big_l,
        pvalue=p,
        n=n,
        k=k,
        effect=mean_rho,
        effect_name="mean_rho",
        alternative=alternative,
        details=details,
    )


# --------------------------------------------------------------------------- pairwise tests


def _resolve_pairs(
    pairs: Literal["adjacent", "all"] | Sequence[tuple[str, str]], labels: list[str]
) -> list[tuple[int, int]]:
    k = len(labels)
    if isinstance(pairs, str):
        if pairs == "adjacent":
            return [(i, i + 1) for i in range(k - 1)]
        if pairs == "all":
            return list(itertools.combinations(range(k), 2))
        raise ValueError(f"pairs must be 'adjacent', 'all' or a list of label pairs; got {pairs!r}")
    index = {lab: i for i, lab in enumerate(labels)}
    out: list[tuple[int, int]] = []
    for pair in pairs:
        if len(pair) != 2 or pair[0] not in index or pair[1] not in index:
            raise ValueError(f"bad pair {pair!r}: need two labels from {labels}")
        if pair[0] == pair[1]:
            raise ValueError(f"bad pair {pair!r}: the two labels must differ")
        out.append((index[pair[0]], index[pair[1]]))
    if not out:
        raise ValueError("pairs is empty")
    return out


def wilcoxon_holm(
    values: ArrayLike,
    *,
    labels: Sequence[str],
    pairs: Literal["adjacent", "all"] | Sequence[tuple[str, str]] = "adjacent",
    alternative: Alternative = "two-sided",
) -> list[PairResult]:
    """Wilcoxon signed-rank tests on column pairs (``b - a``) with Holm correction.

    ``pairs``: ``"adjacent"`` (layer1-layer2, layer2-layer3, ...), ``"all"`` (every i < j) or an
    explicit list of ``(a_label, b_label)``. ``alternative="greater"`` tests b > a. Rows with
    any NaN (in any column) are dropped so all pairs use the same images. Zero differences are
    discarded (``zero_method='wilcox'``). A pair whose differences are all zero gets ``pvalue``
    NaN and ``details["error"]``, and is left out of the Holm family.
    """
    _check_alternative(alternative)
    labels = [str(x) for x in labels]
    arr, dropped = _paired_matrix(values, min_k=2)
    if len(labels) != arr.shape[1]:
        raise ValueError(f"got {len(labels)} labels for {arr.shape[1]} columns")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be unique; got {labels}")
    index_pairs = _resolve_pairs(pairs, labels)
    n = arr.shape[0]
    raw: list[tuple[float, float, float, dict[str, Any]]] = []
    for i, j in index_pairs:
        d = arr[:, j] - arr[:, i]
        n_nonzero = int(np.count_nonzero(d))
        details: dict[str, Any] = {
            "dropped": dropped,
            "n_nonzero": n_nonzero,
            "zero_method": "wilcox",
            "alternative": alternative,
        }
        if n_nonzero == 0:
            details["error"] = "no non-zero differences"
            raw.append((math.nan, math.nan, math.nan, details))
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sps.wilcoxon(d, alternative=alternative, zero_method="wilcox")
        stat, p = float(res.statistic), float(res.pvalue)
        if not math.isfinite(p):
            details["error"] = "scipy.stats.wilcoxon returned NaN"
            p = math.nan
        raw.append((stat, p, rank_biserial(d), details))
    adjusted = holm([r[1] for r in raw])
    return [
        PairResult(
            a=labels[i],
            b=labels[j],
            statistic=stat,
            pvalue=p,
            pvalue_holm=float(adj),
            effect=eff,
            n=n,
            method="wilcoxon-signed-rank",
            details=details,
        )
        for (i, j), (stat, p, eff, details), adj in zip(index_pairs, raw, adjusted, strict=True)
    ]


# --------------------------------------------------------------------------- descriptives


def bootstrap_median_ci(
    values_1d: ArrayLike,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Median and its bootstrap confidence interval ``(median, low, high)``.

    ``scipy.stats.bootstrap`` with ``method='percentile'`` (BCa's jackknife acceleration is
    unreliable for the median's discrete jackknife distribution). NaN values are dropped.
    Degenerate input: no values -> ``(nan, nan, nan)``; one value or all values equal ->
    ``(median, median, median)`` (every resample has that median).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1; got {n_resamples}")
    x = np.asarray(values_1d, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"values_1d must be 1-D; got shape {x.shape}")
    x = x[~np.isnan(x)]
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    median = float(np.median(x))
    if x.size < 2 or np.all(x == x[0]):
        return (median, median, median)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sps.bootstrap(
            (x,),
            np.median,
            n_resamples=n_resamples,
            confidence_level=confidence,
            method="percentile",
            vectorized=True,
            rng=np.random.default_rng(seed),
        )
    return (median, float(res.confidence_interval.low), float(res.confidence_interval.high))


def describe_layers(
    values: ArrayLike,
    *,
    labels: Sequence[str],
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, dict[str, float | int]]:
    """Per-layer summary: n, n_nan, median, mean, q1, q3, median_ci_low, median_ci_high.

    Descriptive only, so NaN is dropped per column (not per row). A column without values gives
    NaN statistics. Quartiles use numpy's default (linear) interpolation.
    """
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"values must be a numeric 2-D array: {exc}") from exc
    if arr.ndim != 2:
        raise ValueError(f"values must be 2-D (n_images, k_layers); got shape {arr.shape}")
    labels = [str(x) for x in labels]
    if len(labels) != arr.shape[1]:
        raise ValueError(f"got {len(labels)} labels for {arr.shape[1]} columns")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be unique; got {labels}")
    out: dict[str, dict[str, float | int]] = {}
    for j, label in enumerate(labels):
        col = arr[:, j]
        x = col[~np.isnan(col)]
        med, low, high = bootstrap_median_ci(
            x, confidence=confidence, n_resamples=n_resamples, seed=seed
        )
        if x.size:
            mean = float(np.mean(x))
            q1, q3 = (float(q) for q in np.quantile(x, [0.25, 0.75]))
        else:
            mean = q1 = q3 = math.nan
        out[label] = {
            "n": int(x.size),
            "n_nan": int(col.size - x.size),
            "median": med,
            "mean": mean,
            "q1": q1,
            "q3": q3,
            "median_ci_low": low,
            "median_ci_high": high,
        }
    return out


# --------------------------------------------------------------------------- effects vs a SESOI

Decision = Literal["present", "absent", "unclear"]


def depth_rise(values: ArrayLike) -> FloatArray:
    """Per-row fitted rise from the first column to the last: the least-squares slope over the
    column positions 0..k-1, times (k - 1).

    For k = 2 it is ``last - first``; for more layers it uses every layer, so one noisy layer
    moves it less. In the units of ``values``. Rows with any NaN give NaN.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"values must be (n, k >= 2); got shape {arr.shape}")
    k = arr.shape[1]
    x = np.arange(k, dtype=np.float64) - (k - 1) / 2.0
    slope = (arr - arr.mean(axis=1, keepdims=True)) @ x / float(x @ x)
    return np.asarray(slope * (k - 1), dtype=np.float64)


#: The calibration's effect worlds put the true effect at this multiple of a claim's SESOI;
#: power statements and each claim's ``min_n`` are for an effect of this size.
EFFECT_MULTIPLE = 2.0


def detectable_effect(sd: float, n: int, *, alpha: float, power: float = 0.8) -> float:
    """Smallest mean paired difference a one-sided test at ``alpha`` detects with ``power``.

    Normal-theory formula with t quantiles, ``(t_{1-alpha} + t_{power}) * sd / sqrt(n)``, times
    ``sqrt(pi / 3)``, the Wilcoxon signed-rank test's efficiency loss against the t-test
    under normality (asymptotic relative efficiency 3/pi). Hand-written: statsmodels'
    ``TTestPower.solve_power`` gives the t part, but statsmodels is not a dependency.
    NaN when ``n < 2`` or ``sd`` is not finite.
    """
    if n < 2 or not math.isfinite(sd):
        return math.nan
    df = n - 1
    t_sum = float(sps.t.ppf(1.0 - alpha, df) + sps.t.ppf(power, df))
    return t_sum * sd / math.sqrt(n) * math.sqrt(math.pi / 3.0)


@dataclass(frozen=True)
class EffectEstimate:
    """A per-photo difference judged against a smallest effect size of interest (SESOI).

    ``estimate`` is the mean difference (the trimmed mean where ``trim`` > 0, with the
    Tukey-McLaughlin t interval in place of Student's) and ``[ci_low, ci_high]`` its two-sided
    ``confidence`` = 1 - 2 alpha interval (so each bound is a one-sided 1 - alpha bound): the
    union of the BCa bootstrap interval and Student's t interval, so that each bound is the
    more cautious of the two (the BCa interval corrects skew but runs a little narrow at small
    n; the t interval is exact for normal data). ``pvalue`` is the one-sided Wilcoxon
    signed-rank test of ``> 0``, with the matched-pairs rank-biserial correlation as its
    effect size; ``pvalue_sesoi`` the minimal-effect test of ``mean > sesoi`` that matches
    the lower bound (``ci_low >= sesoi`` exactly when ``pvalue_sesoi <= alpha``, up to the
    bootstrap's resolution). ``decision``:

    ``present``  shown to reach the smallest effect of interest: ``ci_low >= sesoi`` (a
                 minimal-effect test at alpha), and significant against zero (Wilcoxon
                 p < alpha);
    ``absent``   shown to fall short of it: the upper bound < sesoi (the bound is ci_high,
                 or a wider one, see ``paired_effect``);
    ``unclear``  neither (too few photos to place the effect on one side of the SESOI), or
                 every value is the same: a sample without spread gives no interval to judge.

    The two one-sided decisions exclude each other, so as n grows a true effect above the
    SESOI moves from ``unclear`` to ``present`` and one below it from ``unclear`` to
    ``absent``; neither passes through the other. An effect exactly at the SESOI reads
    ``present`` or ``absent`` at most alpha of the time each (the calibration's boundary
    worlds measure it).

    ``mde`` is the smallest true mean difference that this n shows to be ``present`` with
    80 % power: the SESOI plus :func:`detectable_effect` of the spread that the estimate's
    standard error implies (the observed standard deviation, for a mean).
    """

    name: str
    estimate: float
    ci_low: float
    ci_high: float
    confidence: float
    pvalue: float
    statistic: float
    rank_biserial: float
    sd: float
    n: int
    n_dropped: int
    sesoi: float
    alpha: float
    decision: Decision
    mde: float
    #: the minimal-effect test's one-sided p for ``mean <= sesoi``: the larger of the BCa
    #: bootstrap's (the interval inverted at the SESOI) and Student's t on ``d - sesoi``
    pvalue_sesoi: float = math.nan
    #: the upper bound the ``absent`` decision reads (``ci_high``, or the wider one)
    absent_bound: float = math.nan
    #: for an effect against a control drawn as R seeded networks (:func:`clustered_effect`):
    #: how many seeds, on how many photos, and the effect per seed with its min and max
    seeds: dict[str, Any] | None = None
    #: the share cut from each end: 0 judges the mean, more the trimmed mean (``paired_effect``)
    trim: float = 0.0

    @property
    def p_present(self) -> float:
        """The p-value of ``present``: it needs the minimal-effect test and the test against
        zero, so its p is the larger of the two (an intersection-union test)."""
        ps = [self.pvalue_sesoi, self.pvalue]
        return max(ps) if all(math.isfinite(p) for p in ps) else math.nan

    @property
    def estimand(self) -> str:
        """What ``estimate`` is: "mean", or "20% trimmed mean"."""
        return f"{self.trim:.0%} trimmed mean" if self.trim else "mean"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "method": f"{self.estimand} per-photo difference vs SESOI",
            "estimate": jsonable(self.estimate),
            "effect": jsonable(self.estimate),
            "effect_name": f"{self.estimand} difference",
            "trim": self.trim,
            "ci_low": jsonable(self.ci_low),
            "ci_high": jsonable(self.ci_high),
            "confidence": self.confidence,
            "pvalue": jsonable(self.pvalue),
            "statistic": jsonable(self.statistic),
            "test": "wilcoxon signed-rank, one-sided (> 0)",
            "rank_biserial": jsonable(self.rank_biserial),
            "sd": jsonable(self.sd),
            "n": int(self.n),
            "n_dropped": int(self.n_dropped),
            "sesoi": self.sesoi,
            "alpha": self.alpha,
            "decision": self.decision,
            "mde": jsonable(self.mde),
            "pvalue_sesoi": jsonable(self.pvalue_sesoi),
            "test_sesoi": f"minimal-effect test of {self.estimand} > SESOI (BCa inverted, and "
            + ("Tukey-McLaughlin t)" if self.trim else "Student's t)"),
            "p_present": jsonable(self.p_present),
            "absent_bound": jsonable(self.absent_bound),
            "ci_method": "union of the BCa bootstrap and "
            + ("Tukey-McLaughlin t" if self.trim else "Student's t")
            + f" intervals of the {self.estimand}",
            **(_seed_fields(self.seeds) if self.seeds is not None else {}),
        }


def _seed_fields(seeds: dict[str, Any]) -> dict[str, Any]:
    return {
        "test": "two-level (seeds, then photos) bootstrap and t test of the mean, one-sided (> 0)",
        "test_sesoi": "minimal-effect test of mean > SESOI (two-level BCa inverted, and t)",
        "ci_method": "union of the two-level BCa bootstrap (seeds, then photos) and t intervals",
        "seeds": jsonable(seeds),
    }


def _bca_constants(estimate: float, boot: FloatArray, jack: FloatArray) -> tuple[float, float]:
    """BCa's bias correction z0 and acceleration (Efron 1987); z0 NaN when every resample
    falls on one side of the estimate (no bias correction possible)."""
    below = (
        np.count_nonzero(boot < estimate) + 0.5 * np.count_nonzero(boot == estimate)
    ) / boot.size
    if not 0.0 < below < 1.0:
        return math.nan, 0.0
    z0 = float(sps.norm.ppf(below))
    dev = jack.mean() - jack
    denom = 6.0 * float(np.sum(dev**2)) ** 1.5
    accel = float(np.sum(dev**3)) / denom if denom > 0 else 0.0
    return z0, accel


def _bca_interval(
    estimate: float,
    boot: FloatArray,
    jack: FloatArray,
    *,
    confidence: float,
) -> tuple[float, float]:
    """BCa interval (Efron 1987) from a bootstrap distribution and jackknife values."""
    boot = boot[np.isfinite(boot)]
    if boot.size < 2:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0
    z0, accel = _bca_constants(estimate, boot, jack)
    if not math.isfinite(z0):  # percentile interval
        low, high = np.quantile(boot, [tail, 1.0 - tail])
        return float(low), float(high)
    levels = []
    for z in sps.norm.ppf([tail, 1.0 - tail]):
        levels.append(float(sps.norm.cdf(z0 + (z0 + z) / (1.0 - accel * (z0 + z)))))
    low, high = np.quantile(boot, levels)
    return float(low), float(high)


def _bca_pvalue(estimate: float, boot: FloatArray, jack: FloatArray, *, threshold: float) -> float:
    """One-sided p of ``theta <= threshold`` from the BCa interval, inverted.

    The lower BCa bound at tail ``t`` reaches ``threshold`` exactly when ``t >= p``: with
    ``q`` the bootstrap distribution's share below the threshold, ``w = Phi^-1(q) - z0``,
    the BCa map solved for the tail gives ``p = Phi(w / (1 + a w) - z0)``. ``q`` is kept
    within half a resample of 0 and 1 (the bootstrap resolves no finer p)."""
    boot = boot[np.isfinite(boot)]
    if boot.size < 2:
        return math.nan
    b = boot.size
    q = float(np.count_nonzero(boot < threshold) + 0.5 * np.count_nonzero(boot == threshold)) / b
    q = min(max(q, 0.5 / b), 1.0 - 0.5 / b)
    z0, accel = _bca_constants(estimate, boot, jack)
    if not math.isfinite(z0):  # the percentile interval, inverted
        return float(q)
    w = float(sps.norm.ppf(q)) - z0
    denom = 1.0 + accel * w
    if denom <= 0:  # beyond the BCa map's range: the far tail
        return 0.0 if w < 0 else 1.0
    return float(sps.norm.cdf(w / denom - z0))


@functools.lru_cache(maxsize=4)
def _resample_indices(n: int, n_resamples: int, seed: int) -> npt.NDArray[np.intp]:
    """The seeded resample indices (the same for every call with these arguments; cached,
    read-only)."""
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    idx.setflags(write=False)
    return idx


def _bootstrap_mean_dist(
    d: FloatArray, *, n_resamples: int, seed: int
) -> tuple[float, FloatArray, FloatArray]:
    """The mean of ``d``, its bootstrap distribution and its (closed-form) jackknife values.

    Hand-written (``scipy.stats.bootstrap(method='BCa')`` computes the same interval) because
    the calibration runs the evaluator on tens of thousands of simulated studies and scipy's
    general wrapper costs about ten times more per call; the mean's jackknife is closed-form.
    ``tests/unit/test_stats.py`` checks it against scipy's.
    """
    n = d.size
    boot = d[_resample_indices(n, n_resamples, seed)].mean(axis=1)
    jack = (d.sum() - d) / (n - 1)
    return float(d.mean()), boot, jack


def _bootstrap_mean(
    d: FloatArray, *, confidence: float, n_resamples: int, seed: int
) -> tuple[float, float]:
    """BCa bootstrap CI of the mean of ``d``."""
    mean, boot, jack = _bootstrap_mean_dist(d, n_resamples=n_resamples, seed=seed)
    return _bca_interval(mean, boot, jack, confidence=confidence)


def _trimmed_mean_dist(
    d: FloatArray, *, trim: float, n_resamples: int, seed: int
) -> tuple[float, FloatArray, FloatArray]:
    """:func:`_bootstrap_mean_dist` for the ``trim`` trimmed mean (``scipy.stats.trim_mean``:
    ``int(trim * n)`` values cut from each end), with the same resamples."""
    n = d.size
    boot = np.asarray(sps.trim_mean(d[_resample_indices(n, n_resamples, seed)], trim, axis=1))
    return float(sps.trim_mean(d, trim)), boot, _trimmed_jackknife(d, trim)


def _trimmed_jackknife(d: FloatArray, trim: float) -> FloatArray:
    """The trimmed mean of ``d`` without each value in turn (in sorted order; BCa's
    acceleration reads them as a set). Closed form from prefix sums: leaving out the value at
    sorted position i, the kept positions of the n - 1 left are [g, h) with g = int(trim *
    (n - 1)) and h = n - 1 - g, which are the original positions [g, h] less i, shifted by
    one from i on."""
    s = np.sort(d)
    n = s.size
    g = int(trim * (n - 1))
    h = n - 1 - g
    c = np.concatenate([[0.0], np.cumsum(s)])
    i = np.arange(n)
    below = c[np.clip(i, g, h)] - c[g]
    above = c[h + 1] - c[np.clip(i, g, h) + 1]
    return np.asarray((below + above) / (h - g), dtype=np.float64)


def _location_se(d: FloatArray, trim: float) -> tuple[float, float]:
    """(standard error, degrees of freedom) of the mean (Student's t) or, with ``trim`` > 0, of
    the trimmed mean (Tukey and McLaughlin 1963: the winsorized standard deviation over
    (1 - 2 trim) sqrt(n), with n - 2g - 1 degrees of freedom, g the values cut at each end;
    ``scipy.stats.mstats.trimmed_stde``)."""
    n = d.size
    if not trim:
        return float(d.std(ddof=1)) / math.sqrt(n), float(n - 1)
    g = int(trim * n)
    se = float(mstats.trimmed_stde(d, limits=(trim, trim)))
    return se, float(max(n - 2 * g - 1, 1))


def _t_bounds(estimate: float, se: float, df: float, *, confidence: float) -> tuple[float, float]:
    """The t interval ``estimate +- t * se``."""
    half = float(sps.t.ppf(0.5 + confidence / 2.0, df)) * se
    return estimate - half, estimate + half


def _bootstrap_ratio_of_means(
    a: FloatArray, b: FloatArray, *, confidence: float, n_resamples: int, seed: int
) -> tuple[float, float]:
    """Paired BCa bootstrap CI of ``mean(a) / mean(b)`` (closed-form jackknife)."""
    idx = _resample_indices(a.size, n_resamples, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = a[idx].mean(axis=1) / b[idx].mean(axis=1)
        jack = (a.sum() - a) / (b.sum() - b)
    return _bca_interval(
        float(a.mean() / b.mean()), boot, jack[np.isfinite(jack)], confidence=confidence
    )


def paired_effect(
    differences: ArrayLike,
    *,
    sesoi: float,
    alpha: float,
    name: str = "",
    n_resamples: int = 2000,
    seed: int = 0,
    equivalence_alpha: float | None = None,
    trim: float = 0.0,
) -> EffectEstimate:
    """Judge per-photo differences (model minus control, or a rise) against ``sesoi``.

    See :class:`EffectEstimate` for the decision rule. ``equivalence_alpha`` (default
    ``alpha``) is the error rate of the ``absent`` decision: a claim that turns negative when
    any of m equivalence tests says ``absent`` passes ``alpha / m`` (Bonferroni), so its
    negative verdict is wrong at most ``alpha`` of the time when every effect sits at the
    SESOI. The reported CI stays the 1 - 2 alpha one. NaN differences are dropped and
    counted. Fewer than 2 values, or values all equal, give ``unclear``.

    ``trim`` > 0 judges the ``trim`` trimmed mean instead of the mean: the BCa bootstrap of
    the trimmed mean and the Tukey-McLaughlin t interval. Its estimand is the typical photo's
    difference; a mean cannot be bounded from a sample when a rare photo lies far out in one
    tail (a sample without it has a higher mean and a smaller spread at once), a trimmed mean
    can.
    """
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5); got {alpha}")
    if not 0.0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5); got {trim}")
    d = np.asarray(differences, dtype=np.float64).ravel()
    keep = ~np.isnan(d)
    dropped = int((~keep).sum())
    d = d[keep]
    n = int(d.size)
    confidence = 1.0 - 2.0 * alpha
    if n < 2:
        return EffectEstimate(
            name, math.nan, math.nan, math.nan, confidence, math.nan, math.nan, math.nan,
            math.nan, n, dropped, sesoi, alpha, "unclear", math.nan, trim=trim,
        )  # fmt: skip
    sd = float(d.std(ddof=1))
    if np.all(d == d[0]):
        # No spread, no interval: n copies of one value say nothing about how far the mean
        # could be from it, so the effect is judged neither present nor absent.
        value = float(d[0])
        return EffectEstimate(
            name, value, value, value, confidence, 1.0, 0.0, rank_biserial(d),
            0.0, n, dropped, sesoi, alpha, "unclear", math.nan, 1.0, math.nan, trim=trim,
        )  # fmt: skip
    if trim:
        estimate, boot, jack = _trimmed_mean_dist(d, trim=trim, n_resamples=n_resamples, seed=seed)
    else:
        estimate, boot, jack = _bootstrap_mean_dist(d, n_resamples=n_resamples, seed=seed)
    se, df = _location_se(d, trim)
    b_low, b_high = _bca_interval(estimate, boot, jack, confidence=confidence)
    t_low, t_high = _t_bounds(estimate, se, df, confidence=confidence)
    low, high = min(b_low, t_low), max(b_high, t_high)
    p_sesoi = max(
        _bca_pvalue(estimate, boot, jack, threshold=sesoi),
        float(sps.t.sf((estimate - sesoi) / se, df)) if se > 0 else math.nan,
    )
    if np.any(d != 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sps.wilcoxon(d, alternative="greater", zero_method="wilcox")
        p, stat = float(res.pvalue), float(res.statistic)
    else:
        p, stat = 1.0, 0.0
    eq_alpha = alpha if equivalence_alpha is None else equivalence_alpha
    eq_high = high
    if math.isfinite(high) and eq_alpha < alpha:
        # the 'absent' decision reads the wider 1 - 2 eq_alpha interval
        eq_conf = 1.0 - 2.0 * eq_alpha
        eq_high = max(
            _bca_interval(estimate, boot, jack, confidence=eq_conf)[1],
            _t_bounds(estimate, se, df, confidence=eq_conf)[1],
        )
    decision = _decide(p=p, low=low, eq_high=eq_high, sesoi=sesoi, alpha=alpha)
    return EffectEstimate(
        name=name,
        estimate=estimate,
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        pvalue=p,
        statistic=stat,
        rank_biserial=rank_biserial(d),
        sd=sd,
        n=n,
        n_dropped=dropped,
        sesoi=sesoi,
        alpha=alpha,
        decision=decision,
        # the spread that the estimate's own standard error implies (sd / sqrt(n) for a mean)
        mde=sesoi + detectable_effect(se * math.sqrt(n), n, alpha=alpha),
        pvalue_sesoi=p_sesoi,
        absent_bound=eq_high,
        trim=trim,
    )


def _decide(*, p: float, low: float, eq_high: float, sesoi: float, alpha: float) -> Decision:
    """The rule of :class:`EffectEstimate`: ``absent``, ``present`` or ``unclear``."""
    if math.isfinite(eq_high) and eq_high < sesoi:
        return "absent"
    if p < alpha and math.isfinite(low) and low >= sesoi and low > 0:
        return "present"
    return "unclear"


def _seed_resample(
    d: FloatArray, common: npt.NDArray[np.bool_], *, n_resamples: int, seed: int
) -> tuple[FloatArray, FloatArray]:
    """Two-level bootstrap distribution and photo jackknife of :func:`clustered_effect`'s
    estimate (see there). Vectorised: a resample's per-seed sums over the common photos are
    its photo counts times the differences, one matrix product."""
    n, r = d.shape
    photos = _resample_indices(n, n_resamples, seed)
    seeds = np.random.default_rng([seed, r]).integers(0, r, size=(n_resamples, r))
    first = d[:, 0]
    flat = (np.arange(n_resamples)[:, None] * n + photos).ravel()
    counts = np.bincount(flat, minlength=n_resamples * n).reshape(n_resamples, n).astype(float)
    on_common = np.where(common[:, None], d, 0.0)
    drawn = counts @ common.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_seed = (counts @ on_common) / drawn[:, None]
    boot = (
        first[photos].mean(axis=1)
        - per_seed[:, 0]
        + np.take_along_axis(per_seed, seeds, axis=1).mean(axis=1)
    )
    k = int(common.sum())
    sums = on_common.sum(axis=0)
    left_out = np.broadcast_to(sums / k, (n, r)).copy()
    left_out[common] = (sums - d[common]) / (k - 1)
    jack = (first.sum() - first) / (n - 1) - left_out[:, 0] + left_out.mean(axis=1)
    return boot, jack


def clustered_effect(
    differences: ArrayLike,
    *,
    sesoi: float,
    alpha: float,
    name: str = "",
    n_resamples: int = 2000,
    seed: int = 0,
    equivalence_alpha: float | None = None,
) -> EffectEstimate:
    """Judge model-minus-control differences against ``sesoi`` when the control is a *sample*
    of R seeded networks, not one draw: the effect over photos and over control networks.

    ``differences`` is ``(n_photos, R)``: column ``r`` the per-photo difference with the
    control of seed ``r``. Column 0 (the first seed) covers every photo; the other seeds may
    cover only a subsample (NaN elsewhere), the *common* photos, those with every seed. A
    photo without a first-seed value is dropped and counted.

    The estimand is the mean over photos and over control networks. With ``d0`` the first
    seed's differences on all n photos and ``m_r`` seed r's mean on the k common photos, the
    estimate is ``mean(d0) + (mean_r m_r - m_0)``: the first seed's effect on every photo,
    corrected by how far the average network sits from the first one on the common photos
    (two-phase sampling with a difference estimator; with k = n it is the plain mean over
    photos and seeds). The first seed is itself a random network, so ``mean(d0)`` alone is
    unbiased for the same mean, with the whole between-network variance (not 1/R of it) but
    without the later draws' photo-by-network noise on only k photos; where its estimated
    variance is the smaller, it is the estimate, its interval the union of its photo BCa
    interval and a t interval with the between-network variance added (``seeds["estimator"]``
    says which).

    Inference resamples both levels: each bootstrap replicate draws R seeds with replacement,
    then n photos with replacement (one photo draw shared by every seed: photos and seeds are
    crossed, the "pigeonhole" bootstrap of Owen 2007, which counts the photo-by-seed
    interaction twice and so errs wide). The interval is the union of that distribution's BCa
    interval (acceleration from the closed-form photo jackknife) and a t interval whose
    squared standard error is the photo jackknife variance plus the between-network variance
    component over R (the variance of the R per-seed means less what photo-by-seed noise puts
    there: two-way ANOVA moments on the common photos, truncated at zero), with
    Welch-Satterthwaite degrees of freedom: with R = 5 the seed term has 4, so a real spread
    between networks widens the interval as it should. Where networks disagree photo by
    photo but not on average, the bootstrap's double count makes the union err wide: a
    false ``present`` is then rarer than alpha, never more common. ``pvalue``
    (against zero) and ``pvalue_sesoi`` are both tests inverted (the larger p of the two);
    the decision rule is :class:`EffectEstimate`'s. ``seeds`` reports each seed's effect on
    the common photos, their min and max, and the first seed's on every photo.

    With R = 1 this *is* :func:`paired_effect` (the Wilcoxon test included); with every seed
    giving the same differences, its interval is :func:`paired_effect`'s.
    """
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5); got {alpha}")
    d = np.asarray(differences, dtype=np.float64)
    if d.ndim == 1:
        d = d[:, None]
    if d.ndim != 2 or d.shape[1] < 1:
        raise ValueError(f"differences must be (n_photos, R seeds); got shape {d.shape}")
    r = d.shape[1]
    kwargs: dict[str, Any] = {
        "sesoi": sesoi, "alpha": alpha, "name": name, "n_resamples": n_resamples,
        "seed": seed, "equivalence_alpha": equivalence_alpha,
    }  # fmt: skip
    if r == 1:
        return paired_effect(d[:, 0], **kwargs)
    keep = ~np.isnan(d[:, 0])
    dropped = int((~keep).sum())
    d = d[keep]
    common = np.all(np.isfinite(d), axis=1)
    n, k = int(d.shape[0]), int(common.sum())
    first_all = float(d[:, 0].mean()) if n else math.nan
    spread: dict[str, Any] = {
        "count": r,
        "photos_every_seed": k,
        "first_seed_all_photos": first_all,
    }
    if n < 2 or k < 2:
        spread["note"] = (
            f"{k} photo(s) carry every seed: the spread between networks is not estimated, "
            "the effect is the first seed's"
        )
        return dataclasses.replace(
            paired_effect(d[:, 0], **kwargs), seeds=spread, n_dropped=dropped
        )
    per_seed = d[common].mean(axis=0)
    spread.update(
        per_seed=[float(v) for v in per_seed],
        min=float(per_seed.min()),
        max=float(per_seed.max()),
        sd_between_seeds=float(per_seed.std(ddof=1)),
    )
    estimate = first_all + float(per_seed.mean() - per_seed[0])
    confidence = 1.0 - 2.0 * alpha
    boot, jack = _seed_resample(d, common, n_resamples=n_resamples, seed=seed)
    var_photos = float((n - 1) / n * np.sum((jack - jack.mean()) ** 2))
    # the spread between networks beyond what photo-by-seed noise alone puts between the
    # per-seed means (two-way ANOVA moments on the common photos, truncated at zero): the
    # photo jackknife already carries that noise
    on_common = d[common]
    resid = on_common - on_common.mean(axis=1, keepdims=True) - per_seed + per_seed.mean()
    noise = float(np.sum(resid**2)) / ((k - 1) * (r - 1))
    component = max(0.0, float(per_seed.var(ddof=1)) - noise / k)
    var_seeds = component / r
    # Draw 0 is itself a random network, so its effect on every photo is unbiased for the
    # mean over networks too, with the whole between-network variance instead of 1/R of it
    # but without the later draws' photo-by-network noise: the smaller variance decides.
    first = d[:, 0]
    var_first = float(first.var(ddof=1)) / n
    if var_first + component < var_photos + var_seeds:
        spread["estimator"] = "first network on every photo, between-network variance added"
        estimate, boot, jack = _bootstrap_mean_dist(first, n_resamples=n_resamples, seed=seed)
        var_photos, var_seeds = var_first, component
    else:
        spread["estimator"] = "every network (difference estimator)"
    se = math.sqrt(var_photos + var_seeds)
    rows = np.where(common[:, None], d, d[:, :1]).mean(axis=1)
    if se == 0.0:
        return EffectEstimate(
            name, estimate, estimate, estimate, confidence, 1.0, 0.0, rank_biserial(rows),
            0.0, n, dropped, sesoi, alpha, "unclear", math.nan, 1.0, math.nan, spread,
        )  # fmt: skip
    denom = var_photos**2 / (n - 1) + var_seeds**2 / (r - 1)
    df = (var_photos + var_seeds) ** 2 / denom

    def t_bounds(conf: float) -> tuple[float, float]:
        half = float(sps.t.ppf(0.5 + conf / 2.0, df)) * se
        return estimate - half, estimate + half

    def p_above(threshold: float) -> float:
        p_t = float(sps.t.sf((estimate - threshold) / se, df))
        return max(_bca_pvalue(estimate, boot, jack, threshold=threshold), p_t)

    b_low, b_high = _bca_interval(estimate, boot, jack, confidence=confidence)
    t_low, t_high = t_bounds(confidence)
    low, high = min(b_low, t_low), max(b_high, t_high)
    eq_alpha = alpha if equivalence_alpha is None else equivalence_alpha
    eq_high = high
    if math.isfinite(high) and eq_alpha < alpha:
        eq_conf = 1.0 - 2.0 * eq_alpha
        eq_high = max(
            _bca_interval(estimate, boot, jack, confidence=eq_conf)[1], t_bounds(eq_conf)[1]
        )
    p = p_above(0.0)
    sd = se * math.sqrt(n)
    return EffectEstimate(
        name=name,
        estimate=estimate,
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        pvalue=p,
        statistic=estimate / se,
        rank_biserial=rank_biserial(rows),
        sd=sd,
        n=n,
        n_dropped=dropped,
        sesoi=sesoi,
        alpha=alpha,
        decision=_decide(p=p, low=low, eq_high=eq_high, sesoi=sesoi, alpha=alpha),
        mde=sesoi + detectable_effect(sd, n, alpha=alpha),
        pvalue_sesoi=p_above(sesoi),
        absent_bound=eq_high,
        seeds=spread,
    )


def ratio_of_means_ci(
    numerator: ArrayLike,
    denominator: ArrayLike,
    *,
    confidence: float = 0.9,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``mean(numerator) / mean(denominator)`` over paired rows, with a paired bootstrap CI.

    E.g. the share of a model's depth rise that survives pooling every map to one grid.
    Rows with NaN in either are dropped; fewer than 2 rows or a zero denominator mean give NaN.
    """
    a = np.asarray(numerator, dtype=np.float64).ravel()
    b = np.asarray(denominator, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"numerator and denominator differ in length: {a.size} vs {b.size}")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if a.size < 2 or b.mean() == 0:
        return (math.nan, math.nan, math.nan)
    ratio = float(a.mean() / b.mean())

    low, high = _bootstrap_ratio_of_means(
        a, b, confidence=confidence, n_resamples=n_resamples, seed=seed
    )
    return (ratio, low, high)
