"""``stats.clustered_effect``: the effect against a control drawn as R seeded networks.

Oracles: with one seed it is ``paired_effect``; with every seed giving the same differences
its interval is ``paired_effect``'s; with photos that do not differ its interval is the
t interval of the R per-seed effects; and over many simulated studies with a real spread
between networks it keeps its one-sided error rate where the photo bootstrap of one network
does not.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from xai_checks.stats import clustered_effect, paired_effect

ALPHA = 0.05


def _differences(seed: int, n: int = 80) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.05, 0.1, size=n)


@pytest.mark.parametrize("seed", [0, 1])
def test_one_seed_is_the_photo_bootstrap(seed):
    d = _differences(seed)
    one = clustered_effect(d[:, None], sesoi=0.02, alpha=ALPHA, equivalence_alpha=ALPHA / 3)
    assert one == paired_effect(d, sesoi=0.02, alpha=ALPHA, equivalence_alpha=ALPHA / 3)
    assert one.seeds is None


def test_seeds_that_agree_give_the_photo_interval():
    d = _differences(2)
    same = clustered_effect(np.repeat(d[:, None], 5, axis=1), sesoi=0.02, alpha=ALPHA)
    photo = paired_effect(d, sesoi=0.02, alpha=ALPHA)
    assert same.estimate == pytest.approx(photo.estimate, abs=1e-15)
    assert same.ci_low == pytest.approx(photo.ci_low, abs=1e-12)
    assert same.ci_high == pytest.approx(photo.ci_high, abs=1e-12)
    assert same.pvalue_sesoi == pytest.approx(photo.pvalue_sesoi, abs=1e-12)
    assert same.seeds is not None and same.seeds["min"] == same.seeds["max"]


@pytest.mark.parametrize("spread", [0.01, 0.02])
def test_photos_that_agree_leave_the_seed_spread(spread):
    """Every photo gives seed r the same difference: the interval is the t interval of the R
    per-seed effects (4 degrees of freedom for 5 seeds), and its width follows the spread."""
    per_seed = 0.05 + spread * np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    d = np.tile(per_seed, (60, 1))
    got = clustered_effect(d, sesoi=0.02, alpha=ALPHA)
    half = sps.t.ppf(1 - ALPHA, 4) * per_seed.std(ddof=1) / math.sqrt(5)
    assert got.estimate == pytest.approx(0.05, abs=1e-15)
    assert got.ci_low == pytest.approx(0.05 - half, rel=1e-9)
    assert got.ci_high == pytest.approx(0.05 + half, rel=1e-9)
    assert got.seeds is not None
    assert got.seeds["per_seed"] == pytest.approx(list(per_seed))
    assert (got.seeds["min"], got.seeds["max"]) == pytest.approx((per_seed[0], per_seed[-1]))


def test_extra_seeds_on_a_subsample_correct_the_first_seed():
    rng = np.random.default_rng(3)
    d = np.full((50, 3), np.nan)
    d[:, 0] = rng.normal(0.1, 0.05, size=50)
    d[:20, 1] = d[:20, 0] + 0.03
    d[:20, 2] = d[:20, 0] - 0.09
    d[7, 0] = np.nan  # a photo without the first seed's value: dropped, counted
    got = clustered_effect(d, sesoi=0.02, alpha=ALPHA)
    first = np.nanmean(d[:, 0])
    assert got.estimate == pytest.approx(first + (0.03 - 0.09) / 3, abs=1e-12)
    assert (got.n, got.n_dropped) == (49, 1)
    assert got.seeds is not None and got.seeds["photos_every_seed"] == 19
    assert got.seeds["first_seed_all_photos"] == pytest.approx(first)


def test_too_few_photos_with_every_seed_fall_back_to_the_first_seed_and_say_so():
    d = np.full((30, 2), np.nan)
    d[:, 0] = _differences(4, n=30)
    d[0, 1] = 0.2
    got = clustered_effect(d, sesoi=0.02, alpha=ALPHA)
    assert got.estimate == pytest.approx(d[:, 0].mean())
    assert got.seeds is not None and "not estimated" in got.seeds["note"]


def test_rejects_a_shape_that_is_not_photos_by_seeds():
    with pytest.raises(ValueError, match="n_photos, R seeds"):
        clustered_effect(np.zeros((2, 3, 4)), sesoi=0.02, alpha=ALPHA)


def test_a_spread_between_networks_is_covered_where_one_network_is_not():
    """True effect 0 over networks (seed effects sd 0.04) and photos (sd 0.1): the lower
    bound lands above 0 at most alpha of the time (within the Monte-Carlo error of 400
    studies) for the two-level interval, while one network's photo interval, which treats
    its draw as the truth, misses far more often."""
    rng = np.random.default_rng(5)
    studies, n, r = 400, 60, 5
    missed_two_level = missed_one_network = 0
    for _ in range(studies):
        d = rng.normal(0.0, 0.04, size=r)[None, :] + rng.normal(0.0, 0.1, size=(n, r))
        missed_two_level += clustered_effect(d, sesoi=0.02, alpha=ALPHA).ci_low > 0
        missed_one_network += paired_effect(d[:, 0], sesoi=0.02, alpha=ALPHA).ci_low > 0
    bound = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / studies)
    assert missed_two_level / studies <= bound
    assert missed_one_network / studies > 0.15


def test_later_draws_on_few_photos_do_not_cost_the_first_networks_precision():
    """Networks that agree on average but not photo by photo, later draws on 10 of 200
    photos: the difference estimator would carry that noise on 10 photos, so the first
    network on every photo is the estimate, and the interval stays the photo interval's
    width (up to the t quantile)."""
    rng = np.random.default_rng(6)
    d = np.full((200, 5), np.nan)
    d[:, 0] = rng.normal(0.05, 0.1, size=200)
    d[:10, 1:] = d[:10, :1] + rng.normal(0.0, 0.1, size=(10, 4))
    got = clustered_effect(d, sesoi=0.02, alpha=ALPHA)
    photo = paired_effect(d[:, 0], sesoi=0.02, alpha=ALPHA)
    assert got.seeds is not None and got.seeds["estimator"].startswith("first network")
    assert got.estimate == pytest.approx(photo.estimate)
    assert got.ci_high - got.ci_low <= 1.5 * (photo.ci_high - photo.ci_low)
