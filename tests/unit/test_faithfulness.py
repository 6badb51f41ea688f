"""The faithfulness core on small inputs with known answers: masks, ROAD's imputation, the other
removals, batching, curves and their areas, and a closed-form deletion curve.

The real-photo agreement with pytorch-grad-cam and torch-cam is in ``test_faithfulness_real.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.sparse import csc_matrix, lil_matrix
from scipy.sparse.linalg import spsolve
from torch import nn

from xai_checks.faithfulness import (
    DEFAULT_FRACTIONS,
    NEIGHBOUR_WEIGHTS,
    Curves,
    average_drop_increase,
    impute_linear,
    perturbation_curves,
    perturbation_curves_from_masks,
    removal_masks,
    remove,
    removed_counts,
    road_gap,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def smooth_photo(seed: int, n: int = 1, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g, dtype=torch.float64)
    return (x.cumsum(-1).cumsum(-2) / size).float()


def random_maps(seed: int, n: int, size: int = 32) -> torch.Tensor:
    return torch.rand(n, size, size, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- masks


def test_counts_per_fraction_are_rounded_not_truncated() -> None:
    assert removed_counts(100, [0.29, 0.5, 0.0, 1.0]) == [29, 50, 0, 100]
    assert removed_counts(224 * 224, DEFAULT_FRACTIONS) == [
        round(f * 224 * 224) for f in DEFAULT_FRACTIONS
    ]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        removed_counts(10, [1.5])


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_masks_remove_the_stated_count_nested(order: str) -> None:
    maps = random_maps(0, 3, size=20)
    masks = removal_masks(maps, DEFAULT_FRACTIONS, order=order)  # type: ignore[arg-type]
    assert masks.shape == (3, 9, 20, 20) and masks.dtype == torch.bool
    counts = masks.flatten(2).sum(-1)
    assert counts.tolist() == [removed_counts(400, DEFAULT_FRACTIONS)] * 3
    # nested: what a fraction removes, every larger fraction removes too
    assert bool((masks[:, :-1] <= masks[:, 1:]).all())


def test_morf_takes_the_highest_values_and_lerf_the_lowest() -> None:
    maps = random_maps(1, 2, size=10)
    morf = removal_masks(maps, [0.3], order="morf")[:, 0]
    lerf = removal_masks(maps, [0.3], order="lerf")[:, 0]
    for i in range(2):
        assert float(maps[i][morf[i]].min()) > float(maps[i][~morf[i]].max())
        assert float(maps[i][lerf[i]].max()) < float(maps[i][~lerf[i]].min())


def test_morf_and_lerf_are_complements() -> None:
    maps = random_maps(2, 4, size=10)  # 100 pixels: f * 100 is a whole number
    fractions = [0.1, 0.3, 0.5, 0.7, 0.9]
    morf = removal_masks(maps, fractions, order="morf")
    lerf = removal_masks(maps, [1 - f for f in fractions], order="lerf")
    assert torch.equal(morf, ~lerf)


def test_ties_break_in_raster_order() -> None:
    maps = torch.zeros(1, 2, 3)  # all tied: earlier pixels count as more relevant
    morf = removal_masks(maps, [0.5], order="morf")[0, 0]
    lerf = removal_masks(maps, [0.5], order="lerf")[0, 0]
    assert morf.tolist() == [[True, True, True], [False, False, False]]
    assert lerf.tolist() == [[False, False, False], [True, True, True]]
    # a tie inside the cut: two equal top values, one removed, the earlier
    maps = torch.tensor([[[0.0, 1.0, 1.0, 0.5]]])
    assert removal_masks(maps, [0.25], order="morf")[0, 0].tolist() == [[False, True, False, False]]


def test_masks_reject_nan_and_bad_order() -> None:
    maps = torch.zeros(1, 4, 4)
    maps[0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        removal_masks(maps, [0.5], order="morf")
    with pytest.raises(ValueError, match="order"):
        removal_masks(torch.zeros(1, 4, 4), [0.5], order="most")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- imputation


def neighbour_mean(x: torch.Tensor) -> torch.Tensor:
    """Direct evaluation of ROAD's equation's right side for one (C, H, W) photo, float64: the
    weighted mean of each pixel's in-photo neighbours, written out from NEIGHBOUR_WEIGHTS."""
    c, h, w = x.shape
    total = torch.zeros(c, h, w, dtype=torch.float64)
    weight = torch.zeros(1, h, w, dtype=torch.float64)
    for (dy, dx), wt in NEIGHBOUR_WEIGHTS:
        shifted = torch.zeros(c, h, w, dtype=torch.float64)
        inside = torch.zeros(1, h, w, dtype=torch.float64)
        ys = slice(max(0, -dy), h - max(0, dy))
        xs = slice(max(0, -dx), w - max(0, dx))
        ys_src = slice(max(0, dy), h - max(0, -dy))
        xs_src = slice(max(0, dx), w - max(0, -dx))
        shifted[:, ys, xs] = x.double()[:, ys_src, xs_src]
        inside[:, ys, xs] = 1
        total += wt * shifted
        weight += wt * inside
    return total / weight


def spsolve_reference(photo: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """ROAD's system for one photo, built pixel by pixel and solved directly in float64."""
    c, h, w = photo.shape
    index = -np.ones((h, w), dtype=np.int64)
    cells = np.argwhere(removed.numpy())
    index[cells[:, 0], cells[:, 1]] = np.arange(len(cells))
    a = lil_matrix((len(cells), len(cells)))
    b = np.zeros((len(cells), c))
    x = photo.double().numpy()
    for row, (y, xx) in enumerate(cells):
        for (dy, dx), wt in NEIGHBOUR_WEIGHTS:
            ny, nx = y + dy, xx + dx
            if 0 <= ny < h and 0 <= nx < w:
                a[row, row] += wt
                if index[ny, nx] >= 0:
                    a[row, index[ny, nx]] -= wt
                else:
                    b[row] += wt * x[:, ny, nx]
    solved = spsolve(csc_matrix(a), b).reshape(len(cells), c)
    out = x.copy()
    out[:, cells[:, 0], cells[:, 1]] = solved.T
    return torch.from_numpy(out)


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_imputed_pixels_satisfy_the_neighbour_equations(order: str) -> None:
    photos = smooth_photo(3, n=2, size=40)
    maps = random_maps(4, 2, size=40).cumsum(-1)  # structured: large connected holes
    masks = removal_masks(maps, [0.2, 0.6, 0.9], order=order).flatten(0, 1)  # type: ignore[arg-type]
    batch = photos.repeat_interleave(3, dim=0)
    tol = 1e-9
    out = impute_linear(batch.double(), masks, tol=tol)
    for i in range(len(batch)):
        removed = masks[i]
        gap = (out[i] - neighbour_mean(out[i]))[:, removed]
        # the solver's stop: |S (x - mean)| <= tol * max|photo|; S <= 1
        assert float(gap.abs().max()) <= tol * float(batch[i].abs().max()) / (8 / 12)
        assert torch.equal(out[i][:, ~removed], batch[i].double()[:, ~removed])


def test_float32_batched_matches_the_float64_direct_solve() -> None:
    photos = smooth_photo(5, n=3, size=24)
    masks = removal_masks(random_maps(6, 3, size=24).cumsum(-2), [0.7], order="morf")[:, 0]
    out = impute_linear(photos, masks)
    for i in range(3):
        ref = spsolve_reference(photos[i], masks[i])
        # float32 solve: the residual floor (~1e-6 of the photo's scale) times this small
        # system's conditioning (holes < 24 px) stays well below 1e-4
        assert float((out[i].double() - ref).abs().max()) < 1e-4 * float(photos[i].abs().max())
    out64 = impute_linear(photos.double(), masks, tol=1e-12)
    for i in range(3):
        assert float((out64[i] - spsolve_reference(photos[i], masks[i])).abs().max()) < 1e-9


def test_imputation_rejects_masks_that_remove_everything() -> None:
    with pytest.raises(ValueError, match="every pixel"):
        impute_linear(torch.zeros(1, 3, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool))


def test_seeded_noise_is_reproducible_and_only_on_removed_pixels() -> None:
    photos = smooth_photo(7, n=2, size=16)
    masks = removal_masks(random_maps(8, 2, size=16), [0.5], order="morf")[:, 0]

    def noisy(seed: int) -> torch.Tensor:
        return remove(photos, masks, generator=torch.Generator().manual_seed(seed))

    a, b, c = noisy(1), noisy(1), noisy(2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    clean = remove(photos, masks, noise=0.0)
    kept = ~masks.unsqueeze(1).expand_as(photos)
    assert torch.equal(a[kept], photos[kept])
    diff = (a - clean)[~kept]
    assert 0.005 < float(diff.std()) < 0.02  # the paper's 0.01
    scaled = remove(
        photos, masks, generator=torch.Generator().manual_seed(1), channel_std=(0.5,) * 3
    )
    assert torch.allclose(scaled - clean, 2 * (a - clean), atol=1e-6)


@pytest.mark.parametrize("removal", ["blur", "mean", "zero"])
def test_other_removals_change_only_removed_pixels(removal: str) -> None:
    photos = smooth_photo(9, n=2, size=16)
    masks = removal_masks(random_maps(10, 2, size=16), [0.4], order="lerf")[:, 0]
    out = remove(photos, masks, removal=removal)  # type: ignore[arg-type]
    kept = ~masks.unsqueeze(1).expand_as(photos)
    assert torch.equal(out[kept], photos[kept])
    assert not torch.equal(out[~kept], photos[~kept])
    if removal == "zero":
        assert float(out[~kept].abs().max()) == 0.0
    if removal == "mean":
        filled = remove(photos, masks, removal="mean", fill=(1.0, 2.0, 3.0))
        assert filled[0, 2][masks[0]].eq(3.0).all()
        own = photos.mean(dim=(2, 3))
        assert torch.allclose(out[1, 0][masks[1]], own[1, 0].expand(int(masks[1].sum())))


# --------------------------------------------------------------------------- curves


class LinearScorer(nn.Module):
    """Two classes; logit 1 = sum of weight * pixel, logit 0 = 0. Hand weights, no training."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x * self.weight).flatten(1).sum(1)
        return torch.stack([torch.zeros_like(score), score], dim=1)


def test_closed_form_deletion_curve_on_a_linear_model() -> None:
    """Zero removal on a linear model: the logit after removing a set S is the full logit minus
    S's contributions, so with the map equal to each pixel's contribution the MoRF curve is the
    total minus the running sum of the sorted contributions, exactly."""
    g = torch.Generator().manual_seed(11)
    size = 10
    weight = torch.randn(1, 3, size, size, generator=g, dtype=torch.float64)
    photo = torch.rand(1, 3, size, size, generator=g, dtype=torch.float64)
    model = LinearScorer(weight)
    contribution = (weight * photo).sum(1)  # (1, H, W)
    fractions = [0.1, 0.25, 0.5, 0.9]
    curves = perturbation_curves(
        model, photo, contribution, torch.tensor([1]), order="morf",
        fractions=fractions, removal="zero",
    )  # fmt: skip
    ordered = contribution.flatten().sort(descending=True).values
    total = float(ordered.sum())
    expected = [total - float(ordered[: round(f * size * size)].sum()) for f in fractions]
    assert curves.logit[0].tolist() == pytest.approx(expected, abs=1e-9)
    expected_prob = [1 / (1 + np.exp(-v)) for v in expected]
    assert curves.prob[0].tolist() == pytest.approx(expected_prob, abs=1e-6)
    assert float(curves.base_logit[0]) == pytest.approx(total, abs=1e-9)  # type: ignore[index]
    # LeRF removes the smallest contributions first
    lerf = perturbation_curves(
        model, photo, contribution, torch.tensor([1]), order="lerf",
        fractions=fractions, removal="zero",
    )  # fmt: skip
    ascending = ordered.flip(0)
    expected_lerf = [total - float(ascending[: round(f * size * size)].sum()) for f in fractions]
    assert lerf.logit[0].tolist() == pytest.approx(expected_lerf, abs=1e-9)
    assert float(road_gap(curves, lerf, kind="logit")[0]) > 0


def test_batching_equals_per_photo() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(16, 5),
    ).eval()  # fmt: skip
    photos = smooth_photo(12, n=3, size=20)
    maps = random_maps(13, 3, size=20)
    targets = torch.tensor([0, 3, 4])
    fractions = (0.2, 0.5, 0.8)

    def run(batch_size: int, seed: int = 5) -> Curves:
        return perturbation_curves(
            model, photos, maps, targets, order="morf", fractions=fractions,
            generator=torch.Generator().manual_seed(seed), batch_size=batch_size,
        )  # fmt: skip

    big, small = run(64), run(2)
    # noise comes from one seed per (photo, fraction), so the batch size does not change it;
    # the imputation's stop depends on the batch's worst residual, hence allclose
    assert torch.allclose(big.prob, small.prob, atol=1e-5)
    masks = removal_masks(maps, fractions, order="morf")
    for i in range(3):
        one = perturbation_curves_from_masks(
            model, photos[i : i + 1], masks[i : i + 1], targets[i : i + 1],
            fractions=fractions, noise=0.0,
        )  # fmt: skip
        all_ = perturbation_curves_from_masks(
            model, photos, masks, targets, fractions=fractions, noise=0.0
        )
        assert torch.allclose(one.prob[0], all_.prob[i], atol=1e-5)
    assert not torch.equal(run(64, seed=6).prob, big.prob)


def test_auc_is_the_trapezoid_mean_height() -> None:
    prob = torch.tensor([[1.0, 0.3, 0.0], [0.5, 0.5, 0.5]])
    curves = Curves(fractions=(0.0, 0.5, 1.0), prob=prob, logit=prob)
    # torch-cam's hand case: [1.0, 0.3, 0.0] over [0, 1] has area 0.4
    assert curves.auc().tolist() == pytest.approx([0.4, 0.5])
    uneven = Curves(fractions=(0.1, 0.2, 0.9), prob=prob, logit=prob)
    # ((1 + 0.3) / 2 * 0.1 + (0.3 + 0) / 2 * 0.7) / 0.8
    assert float(uneven.auc()[0]) == pytest.approx((0.065 + 0.105) / 0.8)
    other = Curves(fractions=(0.0, 0.5, 1.0), prob=prob.flip(1), logit=prob)
    assert road_gap(curves, other).tolist() == pytest.approx([0.0, 0.0])
    with pytest.raises(ValueError, match="fractions differ"):
        road_gap(curves, uneven)


def test_average_drop_and_increase_by_hand() -> None:
    g = torch.Generator().manual_seed(14)
    weight = torch.randn(1, 3, 6, 6, generator=g, dtype=torch.float64)
    photos = torch.rand(4, 3, 6, 6, generator=g, dtype=torch.float64)
    maps = torch.rand(4, 6, 6, generator=g, dtype=torch.float64)
    model = LinearScorer(weight)
    drop, increase = average_drop_increase(model, photos, maps, torch.tensor([1, 1, 1, 1]))
    y = torch.sigmoid((weight * photos).flatten(1).sum(1))
    o = torch.sigmoid((weight * photos * maps.unsqueeze(1)).flatten(1).sum(1))
    assert drop.tolist() == pytest.approx((torch.relu(y - o) / y).tolist(), abs=1e-6)
    assert increase.tolist() == (o > y).tolist()
