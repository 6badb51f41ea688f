"""Unit tests for xai_checks.stats: hand-computed values, scipy doc examples, properties."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats as sps

from xai_checks.stats import (
    PairResult,
    TestResult,
    bootstrap_median_ci,
    describe_layers,
    friedman,
    holm,
    kruskal_wallis,
    page_trend,
    rank_biserial,
    wilcoxon_holm,
)

# scipy.stats.page_trend_test docstring example (Page's teaching-methods table, 10 x 3).
PAGE_TABLE = [
    [3, 4, 3],
    [2, 2, 4],
    [3, 3, 5],
    [1, 3, 2],
    [2, 3, 2],
    [2, 4, 5],
    [1, 2, 4],
    [3, 4, 4],
    [2, 4, 5],
    [1, 3, 4],
]

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@pytest.fixture(autouse=True)
def _no_warnings():
    """Our code must never leak warnings (scipy's included) on any input these tests use."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# --------------------------------------------------------------------------- Kruskal-Wallis


def test_kruskal_wallis_hand_computed_no_ties() -> None:
    # ranks = values; rank sums 6, 15, 24; H = 12/(9*10) * (36+225+576)/3 - 3*10 = 7.2
    res = kruskal_wallis([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    assert res.statistic == pytest.approx(7.2)
    assert res.pvalue == pytest.approx(math.exp(-3.6))  # chi2(2).sf(x) = exp(-x/2)
    assert res.n == 9 and res.k == 3
    assert res.effect_name == "epsilon_squared"
    assert res.effect == pytest.approx(7.2 / 8)  # H / ((n²-1)/(n+1))
    assert res.alternative == "two-sided"


def test_kruskal_wallis_epsilon_squared_hand_example() -> None:
    # groups {1,3} and {2,4}: rank sums 4 and 6; H = 12/20 * (16/2 + 36/2) - 15 = 0.6
    res = kruskal_wallis([np.array([1.0, 3.0]), np.array([2.0, 4.0])])
    assert res.statistic == pytest.approx(0.6)
    assert res.effect == pytest.approx(0.6 / ((16 - 1) / (4 + 1)))  # = 0.2
    assert res.effect == pytest.approx(0.2)


def test_kruskal_wallis_drops_nan_per_group() -> None:
    res = kruskal_wallis([[1, 2, 3, np.nan], [4, 5, 6], [np.nan, 7, 8, 9]])
    assert res.statistic == pytest.approx(7.2)
    assert res.n == 9
    assert res.details["dropped"] == [1, 0, 1]
    assert res.details["group_sizes"] == [3, 3, 3]


@pytest.mark.parametrize(
    ("groups", "why"),
    [
        ([[1.0, 1.0, 1.0], [1.0, 1.0]], "identical"),
        ([[1.0], [2.0, 3.0]], "at least 2"),
        ([[np.nan, 1.0], [2.0, 3.0]], "at least 2"),
        ([[], [2.0, 3.0]], "at least 2"),
    ],
)
def test_kruskal_wallis_degenerate_gives_nan_not_exception(groups, why: str) -> None:
    res = kruskal_wallis(groups)
    assert math.isnan(res.pvalue) and math.isnan(res.statistic)
    assert why in res.details["error"]


def test_kruskal_wallis_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least 2 groups"):
        kruskal_wallis([[1, 2, 3]])
    with pytest.raises(ValueError, match="1-D"):
        kruskal_wallis([[[1, 2]], [3, 4]])
    with pytest.raises(ValueError, match="sequence of 1-D"):
        kruskal_wallis(np.ones((4, 3)))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Friedman


def test_friedman_hand_computed() -> None:
    # within-row ranks = values; column rank sums 3, 7, 8
    # chi² = 12/(n k (k+1)) * ΣR² - 3 n (k+1) = 12/36 * 122 - 36 = 14/3
    res = friedman([[1, 2, 3], [1, 3, 2], [1, 2, 3]])
    assert res.statistic == pytest.approx(14 / 3)
    assert res.pvalue == pytest.approx(math.exp(-7 / 3))
    assert res.effect_name == "kendall_w"
    assert res.effect == pytest.approx((14 / 3) / (3 * 2))
    assert (res.n, res.k) == (3, 3)


def test_friedman_perfect_concordance_has_w_one() -> None:
    values = np.array([[0.1, 0.5, 0.7, 0.9]] * 5) + np.arange(5)[:, None]
    res = friedman(values)
    assert res.effect == pytest.approx(1.0)
    assert res.statistic == pytest.approx(5 * 3)  # chi² = n (k - 1) when W = 1


def test_friedman_drops_rows_with_nan() -> None:
    clean: list[list[float]] = [[1, 2, 3], [1, 3, 2], [1, 2, 3]]
    res = friedman([*clean, [np.nan, 1.0, 2.0]])
    assert res.statistic == pytest.approx(14 / 3)
    assert res.n == 3 and res.details["dropped"] == 1


def test_friedman_degenerate_and_bad_shapes() -> None:
    res = friedman(np.ones((4, 3)))
    assert math.isnan(res.pvalue) and "constant" in res.details["error"]
    res = friedman([[1, 2, 3]])
    assert math.isnan(res.pvalue) and "at least 2" in res.details["error"]
    with pytest.raises(ValueError, match="2-D"):
        friedman([1, 2, 3])
    with pytest.raises(ValueError, match="at least 3 columns"):
        friedman(np.ones((5, 2)))


# --------------------------------------------------------------------------- Page's L


def test_page_trend_matches_scipy_docstring_example() -> None:
    res = page_trend(PAGE_TABLE)
    assert res.statistic == pytest.approx(133.5)
    assert res.pvalue == pytest.approx(0.0018191161948127822)
    assert res.details["pvalue_method"] == "exact"
    assert res.alternative == "increasing"
    # mean_rho = 12 L / (n k (k²-1)) - 3 (k+1)/(k-1) = 1602/240 - 6
    assert res.effect_name == "mean_rho"
    assert res.effect == pytest.approx(0.675)


def test_page_trend_decreasing_reverses_columns() -> None:
    flipped = np.asarray(PAGE_TABLE)[:, ::-1]
    res = page_trend(flipped, increasing=False)
    assert res.statistic == pytest.approx(133.5)
    assert res.pvalue == pytest.approx(0.0018191161948127822)
    assert res.alternative == "decreasing"
    # and the wrong direction is not significant
    assert page_trend(flipped).pvalue > 0.5


def test_page_trend_mean_rho_extremes() -> None:
    up = np.array([[1.0, 2.0, 3.0, 4.0]] * 4)
    assert page_trend(up).effect == pytest.approx(1.0)
    assert page_trend(up[:, ::-1]).effect == pytest.approx(-1.0)
    assert page_trend(up[:, ::-1], increasing=False).effect == pytest.approx(1.0)


def test_page_trend_too_few_rows_after_nan() -> None:
    res = page_trend([[1.0, 2.0, 3.0], [1.0, np.nan, 3.0]])
    assert math.isnan(res.pvalue) and res.details["dropped"] == 1
    assert "at least 2" in res.details["error"]
    with pytest.raises(ValueError, match="at least 3 columns"):
        page_trend(np.ones((5, 2)))


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 8).flatmap(
        lambda n: st.integers(3, 5).flatmap(
            lambda k: st.lists(st.permutations(list(range(k))), min_size=n, max_size=n)
        )
    )
)
def test_page_mean_rho_is_mean_spearman_without_ties(rows: list[list[int]]) -> None:
    values = np.asarray(rows, dtype=float)
    order = np.arange(values.shape[1])
    expected = np.mean([sps.spearmanr(r, order).statistic for r in values])
    res = page_trend(values)
    assert res.effect is not None
    assert res.effect == pytest.approx(expected, abs=1e-12)
    assert -1.0 <= res.effect <= 1.0


# --------------------------------------------------------------------------- Wilcoxon + Holm


def test_holm_hand_example() -> None:
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])


def test_holm_caps_at_one_and_keeps_nan_out_of_family() -> None:
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])
    out = holm([0.01, np.nan, 0.04])
    assert math.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.04])  # family size 2, not 3


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 20), elements=st.floats(0.0, 1.0)))
def test_holm_properties(p: np.ndarray) -> None:
    adj = holm(p)
    assert np.all(adj >= p - 1e-15)
    assert np.all(adj <= 1.0)
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(adj[order]) >= 0)  # monotone in the raw p-values


def test_rank_biserial_hand_values() -> None:
    assert rank_biserial([1.0, 2.0, 3.0]) == 1.0
    assert rank_biserial([-1.0, -2.0]) == -1.0
    # |d| ranks 1,2,3,4; R+ = 1+3+4 = 8, R- = 2 -> (8-2)/10
    assert rank_biserial([1.0, -2.0, 3.0, 4.0]) == pytest.approx(0.6)
    assert math.isnan(rank_biserial([0.0, 0.0]))


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 30), elements=finite))
def test_rank_biserial_in_range(d: np.ndarray) -> None:
    r = rank_biserial(d)
    assert math.isnan(r) if np.all(d == 0) else -1.0 <= r <= 1.0


def test_wilcoxon_all_positive_differences() -> None:
    a = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    values = np.column_stack([a, a + np.array([1.0, 2.0, 3.0, 4.0, 5.0])])
    (two,) = wilcoxon_holm(values, labels=["layer1", "layer2"])
    assert isinstance(two, PairResult)
    assert (two.a, two.b, two.n) == ("layer1", "layer2", 5)
    assert two.effect == 1.0
    assert two.statistic == 0.0  # two-sided: min(R+, R-)
    assert two.pvalue == pytest.approx(2 / 32)  # exact: only the all-positive sign pattern
    assert two.pvalue_holm == pytest.approx(2 / 32)  # single comparison
    (greater,) = wilcoxon_holm(values, labels=["layer1", "layer2"], alternative="greater")
    assert greater.statistic == 15.0 and greater.pvalue == pytest.approx(1 / 32)
    (less,) = wilcoxon_holm(values, labels=["layer1", "layer2"], alternative="less")
    assert less.pvalue == pytest.approx(1.0)


def test_wilcoxon_holm_pairs_and_correction_match_scipy() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(size=(12, 4)) + np.array([0.0, 0.3, 0.9, 1.5])
    labels = ["l1", "l2", "l3", "l4"]
    adjacent = wilcoxon_holm(values, labels=labels)
    assert [(r.a, r.b) for r in adjacent] == [("l1", "l2"), ("l2", "l3"), ("l3", "l4")]
    everything = wilcoxon_holm(values, labels=labels, pairs="all")
    assert len(everything) == 6
    for res in everything:
        i, j = labels.index(res.a), labels.index(res.b)
        d = values[:, j] - values[:, i]
        assert res.pvalue == pytest.approx(sps.wilcoxon(d).pvalue)
        assert res.effect == pytest.approx(rank_biserial(d))
    raw = [r.pvalue for r in everything]
    np.testing.assert_allclose([r.pvalue_holm for r in everything], holm(raw))
    explicit = wilcoxon_holm(values, labels=labels, pairs=[("l1", "l4")])
    assert explicit[0].pvalue == pytest.approx(sps.wilcoxon(values[:, 3] - values[:, 0]).pvalue)


def test_wilcoxon_holm_nan_rows_and_zero_differences() -> None:
    values = np.array([[1.0, 1.0, 2.0], [2.0, 2.0, 4.0], [3.0, 3.0, 7.0], [np.nan, 1.0, 2.0]])
    first, second = wilcoxon_holm(values, labels=["a", "b", "c"])
    assert first.n == 3 and first.details["dropped"] == 1
    assert math.isnan(first.pvalue) and math.isnan(first.pvalue_holm)
    assert "non-zero" in first.details["error"]
    # the all-zero pair is left out of the Holm family, so the other is not inflated
    assert second.pvalue_holm == pytest.approx(second.pvalue)
    json.dumps(first.to_dict(), allow_nan=False)


def test_wilcoxon_holm_bad_arguments() -> None:
    values = np.ones((4, 3))
    with pytest.raises(ValueError, match="labels"):
        wilcoxon_holm(values, labels=["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        wilcoxon_holm(values, labels=["a", "a", "b"])
    with pytest.raises(ValueError, match="alternative"):
        wilcoxon_holm(values, labels=["a", "b", "c"], alternative="bigger")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pairs"):
        wilcoxon_holm(values, labels=["a", "b", "c"], pairs="some")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bad pair"):
        wilcoxon_holm(values, labels=["a", "b", "c"], pairs=[("a", "z")])


# --------------------------------------------------------------------------- effect ranges


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(2, 10), st.integers(3, 5)), elements=finite))
def test_paired_effects_in_range(values: np.ndarray) -> None:
    f = friedman(values)
    assert math.isnan(f.pvalue) or 0.0 <= f.effect <= 1.0 + 1e-12  # type: ignore[operator]
    p = page_trend(values)
    assert -1.0 - 1e-12 <= p.effect <= 1.0 + 1e-12  # type: ignore[operator]
    assert 0.0 <= p.pvalue <= 1.0


@settings(max_examples=40, deadline=None)
@given(st.lists(hnp.arrays(np.float64, st.integers(2, 8), elements=finite), min_size=2, max_size=5))
def test_epsilon_squared_in_range(groups: list[np.ndarray]) -> None:
    res = kruskal_wallis(groups)
    if math.isnan(res.pvalue):
        assert np.all(np.concatenate(groups) == groups[0][0])
    else:
        assert 0.0 <= res.effect <= 1.0 + 1e-12  # type: ignore[operator]
        assert 0.0 <= res.pvalue <= 1.0


# --------------------------------------------------------------------------- bootstrap, describe


def test_bootstrap_median_ci_two_points_hand_value() -> None:
    # resampled medians of {0, 1} are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4, so the 95%
    # percentile interval is exactly [0, 1]
    assert bootstrap_median_ci([0.0, 1.0]) == (0.5, 0.0, 1.0)
    # {0, 0, 1}: a resample's median is 1 with probability 7/27, else 0 -> percentile CI [0, 1]
    # (the 'basic' interval would be [2*0 - 1, 2*0 - 0] = [-1, 0])
    assert bootstrap_median_ci([0.0, 0.0, 1.0]) == (0.0, 0.0, 1.0)


def test_bootstrap_median_ci_is_deterministic_and_brackets_median() -> None:
    x = np.random.default_rng(0).normal(size=40)
    med, low, high = bootstrap_median_ci(x, seed=7)
    assert med == pytest.approx(float(np.median(x)))
    assert low < med < high
    assert bootstrap_median_ci(x, seed=7) == (med, low, high)
    _, low90, high90 = bootstrap_median_ci(x, seed=7, confidence=0.5)
    assert low <= low90 and high90 <= high


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        ([], (math.nan,) * 3),
        ([np.nan, np.nan], (math.nan,) * 3),
        ([2.0], (2.0, 2.0, 2.0)),
        ([3.0, 3.0, 3.0, np.nan], (3.0, 3.0, 3.0)),
    ],
)
def test_bootstrap_median_ci_degenerate(x: list[float], expected: tuple[float, ...]) -> None:
    np.testing.assert_array_equal(bootstrap_median_ci(x), expected)


def test_bootstrap_median_ci_bad_arguments() -> None:
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_median_ci([1.0, 2.0], confidence=1.5)
    with pytest.raises(ValueError, match="1-D"):
        bootstrap_median_ci(np.ones((2, 2)))


def test_describe_layers_hand_values() -> None:
    values = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [4.0, 5.0], [np.nan, 5.0]])
    out = describe_layers(values, labels=["layer1", "layer2"])
    a = out["layer1"]
    assert (a["n"], a["n_nan"]) == (4, 1)
    assert a["median"] == 2.5 and a["mean"] == 2.5
    assert a["q1"] == pytest.approx(1.75) and a["q3"] == pytest.approx(3.25)
    assert a["median_ci_low"] <= 2.5 <= a["median_ci_high"]
    b = out["layer2"]
    assert (b["median"], b["median_ci_low"], b["median_ci_high"]) == (5.0, 5.0, 5.0)
    with pytest.raises(ValueError, match="labels"):
        describe_layers(values, labels=["only-one"])


# --------------------------------------------------------------------------- serialisation


def test_to_dict_is_json_safe() -> None:
    bad = kruskal_wallis([[1.0, 1.0], [1.0, 1.0]])
    d = bad.to_dict()
    assert d["pvalue"] is None and d["statistic"] is None and d["effect"] is None
    text = json.dumps(d, allow_nan=False)
    assert "identical" in text
    good = friedman([[1, 2, 3], [1, 3, 2], [1, 2, 3]]).to_dict()
    assert isinstance(good["statistic"], float) and isinstance(good["n"], int)
    json.dumps(good, allow_nan=False)
    assert TestResult("m", 1.0, 0.5, 3, 2, None, None, "two-sided").to_dict()["details"] == {}


# --------------------------------------------------------------------------- effects vs SESOI


def test_depth_rise_is_the_fitted_first_to_last_rise():
    from xai_checks.stats import depth_rise

    rows = np.array([[0.0, 1.0, 2.0, 3.0], [3.0, 2.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(depth_rise(rows), [3.0, -3.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(depth_rise(np.array([[0.2, 0.5]])), [0.3], atol=1e-12)
    # one noisy middle layer moves the fitted rise less than it moves a max-min
    assert depth_rise(np.array([[0.0, 2.0, 1.0, 3.0]]))[0] == pytest.approx(2.4)  # slope 0.8
    assert np.isnan(depth_rise(np.array([[0.0, np.nan, 1.0]])))[0]


def test_paired_effect_decisions_against_the_sesoi():
    from xai_checks.stats import paired_effect

    rng = np.random.default_rng(0)
    big = paired_effect(rng.normal(0.2, 0.1, 200), sesoi=0.05, alpha=0.05)
    assert big.decision == "present" and big.ci_low <= big.estimate <= big.ci_high
    assert big.confidence == pytest.approx(0.9) and big.pvalue < 1e-10
    tiny = paired_effect(rng.normal(0.01, 0.05, 2000), sesoi=0.05, alpha=0.05)
    assert tiny.decision == "absent"  # significant, but smaller than the SESOI
    few = paired_effect(rng.normal(0.05, 0.2, 6), sesoi=0.05, alpha=0.05)
    assert few.decision == "unclear" and few.mde > 0.05
    nan = paired_effect([0.1, np.nan], sesoi=0.05, alpha=0.05)
    assert nan.n == 1 and nan.n_dropped == 1 and nan.decision == "unclear"
    zero = paired_effect(np.zeros(10), sesoi=0.05, alpha=0.05)
    assert zero.decision == "unclear" and zero.pvalue == 1.0


@pytest.mark.parametrize("trim", [0.0, 0.2])
@pytest.mark.parametrize("value", [0.03, 0.0, -0.5])
def test_all_equal_values_are_unclear_not_a_zero_width_interval(value, trim):
    """20 copies of one value have no spread: no interval can say how far the mean may be from
    it, so the effect is neither present (0.03 > SESOI 0.02) nor absent; its p is 1."""
    from xai_checks.stats import paired_effect

    e = paired_effect(np.full(20, value), sesoi=0.02, alpha=0.05, trim=trim)
    assert e.decision == "unclear"
    assert e.pvalue_sesoi == 1.0 and e.p_present == 1.0


@pytest.mark.parametrize("trim", [0.0, 0.2])
@pytest.mark.parametrize("seed", range(6))
def test_the_sesoi_p_value_agrees_with_the_lower_bound(seed, trim):
    """pvalue_sesoi is the minimal-effect test that ci_low inverts: p <= alpha exactly when
    ci_low >= SESOI (both the BCa and the t part), away from the bootstrap's resolution."""
    from xai_checks.stats import paired_effect

    rng = np.random.default_rng(seed)
    d = rng.gamma(2.0, 0.05, 80) - 0.05 + 0.01 * seed
    for sesoi in np.linspace(-0.02, 0.12, 29):
        e = paired_effect(d, sesoi=float(sesoi), alpha=0.05, trim=trim)
        if abs(e.ci_low - sesoi) > 0.002:
            assert (e.pvalue_sesoi <= 0.05) == (e.ci_low >= sesoi), (sesoi, e)


def test_an_effect_between_zero_and_the_sesoi_is_never_present():
    """'present' is a minimal-effect test (the lower bound above the SESOI).

    A true mean difference of 0.75 SESOI, significant against zero at n = 40, reads 'unclear'
    at small n and 'absent' at large n, never 'present' (so a verdict cannot flip from
    present to absent as n grows); an effect of twice the SESOI reads 'present'."""
    from xai_checks.stats import paired_effect

    rng = np.random.default_rng(3)
    noise = rng.standard_normal(4000)
    noise = (noise - noise.mean()) / noise.std()
    small = paired_effect(0.015 + 0.03 * noise[:40], sesoi=0.02, alpha=0.05)
    assert small.pvalue < 0.05 and small.ci_low > 0  # significant against zero ...
    assert small.ci_low < 0.02 <= small.ci_high
    assert small.decision == "unclear"  # ... but not shown to reach the SESOI
    large = paired_effect(0.015 + 0.03 * noise, sesoi=0.02, alpha=0.05)
    assert large.decision == "absent"
    double = paired_effect(0.04 + 0.03 * noise[:40], sesoi=0.02, alpha=0.05)
    assert double.ci_low > 0.02 and double.decision == "present"
    # the power statement is about the minimal-effect test: SESOI plus the detection margin
    assert double.mde == pytest.approx(0.02 + detectable_margin(double.sd, 40), rel=1e-12)


def detectable_margin(sd: float, n: int) -> float:
    from xai_checks.stats import detectable_effect

    return detectable_effect(sd, n, alpha=0.05)


def test_detectable_effect_has_the_stated_power():
    """The mde formula against the exact power of a one-sided t-test (noncentral t)."""
    from scipy import stats as sps

    from xai_checks.stats import detectable_effect

    for n in (10, 30, 100, 1000):
        mde = detectable_effect(1.0, n, alpha=0.05) / np.sqrt(np.pi / 3)  # the t-test part
        crit = sps.t.ppf(0.95, n - 1)
        power = 1 - sps.nct.cdf(crit, n - 1, mde * np.sqrt(n))
        assert power == pytest.approx(0.8, abs=0.01), n


def test_ratio_of_means_ci_brackets_the_estimate():
    from xai_checks.stats import ratio_of_means_ci

    rng = np.random.default_rng(1)
    whole = rng.normal(0.3, 0.1, 300)
    part = 0.25 * whole + rng.normal(0, 0.02, 300)
    est, low, high = ratio_of_means_ci(part, whole)
    assert low <= est <= high and est == pytest.approx(0.25, abs=0.01)
    assert np.isnan(ratio_of_means_ci([1.0], [1.0])[0])


@pytest.mark.parametrize("n", [12, 200])
def test_hand_written_bca_matches_scipy_bootstrap(n):
    """paired_effect's BCa interval of the mean agrees with scipy.stats.bootstrap's.

    Both resample independently, so they agree up to Monte-Carlo error of a quantile of
    20000 resamples: about 0.02 standard errors of the mean, checked at 0.1 SE."""
    from scipy import stats as sps

    from xai_checks.stats import _bootstrap_mean, paired_effect

    rng = np.random.default_rng(n)
    d = rng.gamma(2.0, 0.05, n) - 0.05  # skewed, so the BCa corrections matter
    low, high = _bootstrap_mean(d, confidence=0.9, n_resamples=20000, seed=0)
    ref = sps.bootstrap(
        (d,), np.mean, confidence_level=0.9, method="BCa", n_resamples=20000, rng=1
    ).confidence_interval
    se = d.std(ddof=1) / np.sqrt(n)
    assert low == pytest.approx(ref.low, abs=0.1 * se)
    assert high == pytest.approx(ref.high, abs=0.1 * se)
    # the reported interval is the union of this one and Student's t
    t_low, t_high = sps.t.interval(0.9, n - 1, loc=d.mean(), scale=se)
    ours = paired_effect(d, sesoi=0.05, alpha=0.05, n_resamples=20000)
    assert ours.ci_low == pytest.approx(min(low, t_low), abs=1e-12)
    assert ours.ci_high == pytest.approx(max(high, t_high), abs=1e-12)


@pytest.mark.parametrize("trim", [0.1, 0.2, 0.25])
@pytest.mark.parametrize("n", [2, 3, 5, 11, 50, 301])
def test_trimmed_jackknife_is_the_trimmed_mean_without_each_value(n, trim):
    """The closed-form leave-one-out trimmed means equal scipy's trim_mean of each sample with
    one value left out (as a set; ties included)."""
    from xai_checks.stats import _trimmed_jackknife

    d = np.round(np.random.default_rng(n).standard_normal(n), 1)
    ours = np.sort(_trimmed_jackknife(d, trim))
    ref = np.sort([sps.trim_mean(np.delete(d, i), trim) for i in range(n)])
    assert np.allclose(ours, ref, atol=1e-12)


@pytest.mark.parametrize("n", [12, 200])
def test_trimmed_effect_matches_scipy_bootstrap_and_tukey_mclaughlin(n):
    """paired_effect with trim = 0.2: its estimate is scipy's trim_mean, its BCa interval
    agrees with scipy.stats.bootstrap's of trim_mean (up to the Monte-Carlo error of 20000
    resamples, checked at 0.1 standard errors), and the reported interval is the union with
    the Tukey-McLaughlin t interval (winsorized SD over (1 - 2 trim) sqrt(n), n - 2g - 1 df),
    computed here by hand."""
    from xai_checks.stats import _bca_interval, _trimmed_mean_dist, paired_effect

    rng = np.random.default_rng(n)
    d = rng.gamma(2.0, 0.05, n) - 0.05
    est, boot, jack = _trimmed_mean_dist(d, trim=0.2, n_resamples=20000, seed=0)
    low, high = _bca_interval(est, boot, jack, confidence=0.9)
    ref = sps.bootstrap(
        (d,), lambda x, axis: sps.trim_mean(x, 0.2, axis=axis), confidence_level=0.9,
        method="BCa", n_resamples=20000, rng=1,
    ).confidence_interval  # fmt: skip
    g = int(0.2 * n)
    s = np.sort(d)
    winsorized = np.clip(d, s[g], s[n - g - 1])
    se = winsorized.std(ddof=1) / (0.6 * np.sqrt(n))
    assert est == pytest.approx(sps.trim_mean(d, 0.2), abs=1e-15)
    assert low == pytest.approx(ref.low, abs=0.1 * se)
    assert high == pytest.approx(ref.high, abs=0.1 * se)
    t_low, t_high = sps.t.interval(0.9, n - 2 * g - 1, loc=est, scale=se)
    ours = paired_effect(d, sesoi=0.05, alpha=0.05, n_resamples=20000, trim=0.2)
    assert ours.estimate == est and ours.trim == 0.2
    assert ours.ci_low == pytest.approx(min(low, t_low), abs=1e-12)
    assert ours.ci_high == pytest.approx(max(high, t_high), abs=1e-12)
    assert ours.to_dict()["effect_name"] == "20% trimmed mean difference"


def test_one_far_photo_moves_the_mean_but_not_the_trimmed_effect():
    """A rise of 0.03 on 99 photos and one far below the rest: where that photo lies moves the
    mean and its interval, not the trimmed mean's estimate, interval or decision."""
    from xai_checks.stats import paired_effect

    rng = np.random.default_rng(11)
    d = 0.03 + 0.01 * rng.standard_normal(100)
    near, far = d.copy(), d.copy()
    near[0], far[0] = d.min() - 0.01, -0.32
    kw = {"sesoi": 0.02, "alpha": 0.05}
    t_near, t_far = paired_effect(near, trim=0.2, **kw), paired_effect(far, trim=0.2, **kw)
    # the far photo is cut in the sample, in every resample and in every jackknife sample
    same = ("estimate", "ci_low", "ci_high", "pvalue_sesoi")
    assert [getattr(t_near, k) for k in same] == pytest.approx(
        [getattr(t_far, k) for k in same], rel=1e-12
    )
    assert t_near.decision == t_far.decision == "present"
    m_near, m_far = paired_effect(near, **kw), paired_effect(far, **kw)
    assert m_far.estimate < m_near.estimate - 0.003
    assert m_far.ci_low < m_near.ci_low


@pytest.mark.parametrize("trim", [-0.1, 0.5, 0.7])
def test_a_trim_outside_its_range_is_refused(trim):
    from xai_checks.stats import paired_effect

    with pytest.raises(ValueError, match="trim"):
        paired_effect(np.arange(10.0), sesoi=0.0, alpha=0.05, trim=trim)
