"""Unit tests for xai_checks.metrics: exact hand-computed values and hypothesis properties."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from xai_checks.metrics import (
    DEFAULT_THRESHOLDS,
    MetricAccumulator,
    box_mask,
    cell_mask,
    energy_pointing_game,
    grid_pointing_score,
    high_activation_ratio,
    make_mosaic,
    mass_in_region,
    minmax_normalise,
    pointing_game_hit,
    pool_to_grid,
    sample_mosaic_specs,
    threshold_sweep,
)


@pytest.fixture(autouse=True)
def _no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


unit_maps = hnp.arrays(
    np.float32,
    st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)),
    elements=st.floats(0.0, 1.0, width=32),
)


# --------------------------------------------------------------------------- thresholds


def test_high_activation_ratio_hand_value_and_strictness() -> None:
    m = torch.zeros(4, 4)
    m[0, 0], m[1, 2], m[3, 3] = 0.86, 0.9, 1.0  # three pixels strictly above 0.85
    m[2, 2] = 0.85  # exactly at the threshold: not counted
    out = high_activation_ratio(m)
    assert out.shape == (1,)
    assert out.item() == pytest.approx(3 / 16)


def test_threshold_is_strict_at_exactly_085() -> None:
    for dtype in (torch.float32, torch.float64):
        m = torch.full((2, 3, 3), 0.85, dtype=dtype)
        torch.testing.assert_close(high_activation_ratio(m), torch.zeros(2, dtype=dtype))
        torch.testing.assert_close(
            high_activation_ratio(m, threshold=0.84), torch.ones(2, dtype=dtype)
        )


def test_threshold_sweep_shape_and_columns() -> None:
    maps = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    sweep = threshold_sweep(maps)
    assert DEFAULT_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    assert sweep.shape == (3, 10)
    for j, t in enumerate(DEFAULT_THRESHOLDS):
        torch.testing.assert_close(sweep[:, j], high_activation_ratio(maps, threshold=t))
    assert threshold_sweep(maps[0], thresholds=(0.5,)).shape == (1, 1)


@settings(max_examples=60, deadline=None)
@given(unit_maps)
def test_ratio_in_unit_interval_and_non_increasing(arr: np.ndarray) -> None:
    maps = torch.from_numpy(arr)
    ratio = high_activation_ratio(maps)
    assert ratio.shape == (arr.shape[0],)
    assert bool(((ratio >= 0) & (ratio <= 1)).all())
    sweep = threshold_sweep(maps, thresholds=(0.0, 0.1, 0.3, 0.5, 0.85, 0.95, 1.0))
    assert bool((sweep.diff(dim=1) <= 0).all())
    assert bool((sweep[:, -1] == 0).all())  # nothing is strictly above 1


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        high_activation_ratio(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="boolean"):
        mass_in_region(torch.ones(4, 4), torch.ones(4, 4))
    with pytest.raises(ValueError, match="do not fit"):
        mass_in_region(torch.ones(2, 4, 4), torch.ones(3, 4, 4, dtype=torch.bool))


# --------------------------------------------------------------------------- normalisation


def test_minmax_hand_values() -> None:
    out = minmax_normalise(torch.tensor([[1.0, 3.0], [5.0, 9.0]]))
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    assert out.shape == (2, 2)  # shape preserved


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_minmax_zero_and_constant_maps_stay_zero(dtype: torch.dtype) -> None:
    maps = torch.stack([torch.zeros(3, 3), torch.full((3, 3), 7.0)]).to(dtype)
    out = minmax_normalise(maps)
    assert out.dtype == dtype
    assert bool((out == 0).all())


def test_minmax_is_per_image() -> None:
    maps = torch.stack([torch.tensor([[0.0, 2.0]]), torch.tensor([[10.0, 30.0]])])
    torch.testing.assert_close(minmax_normalise(maps), torch.tensor([[[0.0, 1.0]], [[0.0, 1.0]]]))
    batched = minmax_normalise(maps.unsqueeze(1))  # (N, 1, H, W) works too
    assert batched.shape == (2, 1, 1, 2)


def test_pool_to_grid_aligned_block() -> None:
    m = torch.zeros(14, 14)
    m[4:6, 8:10] = 1.0  # exactly the 7x7 cell (2, 4)
    out = pool_to_grid(m)
    expected = torch.zeros(1, 7, 7)
    expected[0, 2, 4] = 1.0
    torch.testing.assert_close(out, expected)


def test_pool_to_grid_misaligned_block_splits_and_renormalises() -> None:
    m = torch.zeros(1, 14, 14)
    m[0, 5:7, 8:10] = 1.0  # straddles cells (2, 4) and (3, 4): half the mass in each
    out = pool_to_grid(m, size=(7, 7))
    assert out.shape == (1, 7, 7)
    assert out[0, 2, 4] == 1.0 and out[0, 3, 4] == 1.0
    assert out.sum() == 2.0


# --------------------------------------------------------------------------- localisation


def test_mass_in_region_hand_values() -> None:
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[1:3, 1:3] = True
    inside = torch.zeros(4, 4)
    inside[1, 1], inside[2, 2] = 0.5, 1.0
    uniform = torch.ones(4, 4)
    out = mass_in_region(torch.stack([inside, uniform]), mask)
    torch.testing.assert_close(out, torch.tensor([1.0, 4 / 16]))


def test_mass_in_region_zero_map_is_nan_and_negatives_clipped() -> None:
    mask = torch.zeros(3, 3, dtype=torch.bool)
    mask[0] = True
    maps = torch.stack([torch.zeros(3, 3), torch.full((3, 3), -1.0)])
    assert bool(torch.isnan(mass_in_region(maps, mask)).all())
    m = torch.full((3, 3), -5.0)
    m[0, 0] = 1.0
    m[2, 2] = 1.0
    assert mass_in_region(m, mask).item() == pytest.approx(0.5)


def test_mass_in_region_per_image_masks() -> None:
    maps = torch.ones(2, 2, 2)
    masks = torch.tensor([[[True, False], [False, False]], [[True, True], [True, False]]])
    torch.testing.assert_close(mass_in_region(maps, masks), torch.tensor([0.25, 0.75]))


@settings(max_examples=60, deadline=None)
@given(unit_maps, st.data())
def test_complementary_masks_sum_to_one(arr: np.ndarray, data: st.DataObject) -> None:
    maps = torch.from_numpy(arr)
    h, w = arr.shape[1:]
    mask = torch.from_numpy(data.draw(hnp.arrays(np.bool_, (h, w))))
    a = mass_in_region(maps, mask)
    b = mass_in_region(maps, ~mask)
    nonzero = maps.flatten(1).sum(dim=1) > 0
    torch.testing.assert_close(a[nonzero] + b[nonzero], torch.ones(int(nonzero.sum())))
    assert bool(torch.isnan(a[~nonzero]).all())
    assert bool(((a[nonzero] >= 0) & (a[nonzero] <= 1 + 1e-6)).all())


def test_box_mask_half_open_and_clipping() -> None:
    m = box_mask((1, 2, 3, 4), size=(5, 6))
    assert m.shape == (5, 6) and m.dtype == torch.bool
    expected = torch.zeros(5, 6, dtype=torch.bool)
    expected[2:4, 1:3] = True  # rows y0..y1-1, columns x0..x1-1
    assert torch.equal(m, expected)
    assert int(box_mask((0.5, 0.5, 1.2, 1.0), size=(4, 4)).sum()) == 2  # touched pixels
    assert int(box_mask((-3, -3, 100, 2), size=(4, 4)).sum()) == 8  # clipped
    assert int(box_mask((2, 2, 2, 3), size=(4, 4)).sum()) == 0  # empty
    with pytest.raises(ValueError, match="x0 <= x1"):
        box_mask((3, 0, 1, 2), size=(4, 4))


def test_energy_pointing_game() -> None:
    maps = torch.zeros(2, 6, 6)
    maps[0, 1, 1] = 3.0
    maps[0, 5, 5] = 1.0
    maps[1] = 1.0
    out = energy_pointing_game(maps, [(0, 0, 3, 3), (0, 0, 3, 2)])
    torch.testing.assert_close(out, torch.tensor([0.75, 6 / 36]))
    torch.testing.assert_close(
        energy_pointing_game(maps, torch.tensor([[0, 0, 6, 6]] * 2)), torch.ones(2)
    )
    with pytest.raises(ValueError, match="one box per map"):
        energy_pointing_game(maps, [(0, 0, 1, 1)])


def test_pointing_game_tolerance() -> None:
    m = torch.zeros(9, 9)
    m[2, 2] = 1.0
    far = torch.zeros(9, 9, dtype=torch.bool)
    far[2, 5] = True  # 3 pixels to the right of the maximum
    assert pointing_game_hit(m, far).item() == 0.0
    assert pointing_game_hit(m, far, tolerance=2).item() == 0.0
    assert pointing_game_hit(m, far, tolerance=3).item() == 1.0
    diag = torch.zeros(9, 9, dtype=torch.bool)
    diag[3, 3] = True  # Euclidean distance sqrt(2)
    assert pointing_game_hit(m, diag, tolerance=1).item() == 0.0
    assert pointing_game_hit(m, diag, tolerance=2).item() == 1.0
    on = torch.zeros(9, 9, dtype=torch.bool)
    on[2, 2] = True
    assert pointing_game_hit(m, on).item() == 1.0


def test_pointing_game_batch_and_constant_map() -> None:
    maps = torch.zeros(3, 4, 4)
    maps[0, 0, 0] = 1.0
    maps[1, 3, 3] = 1.0  # maps[2] is constant: no maximum point
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:2, :2] = True
    out = pointing_game_hit(maps, mask)
    assert out[:2].tolist() == [1.0, 0.0] and math.isnan(out[2].item())
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game_hit(maps, mask, tolerance=-1)


# --------------------------------------------------------------------------- GridPG


def test_grid_pointing_score_all_mass_in_one_cell() -> None:
    m = torch.zeros(8, 8)
    m[4:, :4] = torch.rand(4, 4, generator=torch.Generator().manual_seed(1)) + 0.1  # cell 2
    scores = [grid_pointing_score(m, [c]).item() for c in range(4)]
    assert scores == pytest.approx([0.0, 0.0, 1.0, 0.0])


def test_grid_pointing_score_uniform_is_chance() -> None:
    maps = torch.ones(4, 8, 8)
    torch.testing.assert_close(grid_pointing_score(maps, [0, 1, 2, 3]), torch.full((4,), 0.25))
    torch.testing.assert_close(
        grid_pointing_score(torch.ones(9, 9), 4, grid=3), torch.full((1,), 1 / 9)
    )
    with pytest.raises(ValueError, match="one cell per map"):
        grid_pointing_score(maps, [0, 1])


def test_cell_mask_layout() -> None:
    expected = {
        0: (slice(0, 2), slice(0, 3)),
        1: (slice(0, 2), slice(3, 6)),
        2: (slice(2, 4), slice(0, 3)),
        3: (slice(2, 4), slice(3, 6)),
    }
    for cell, (rows, cols) in expected.items():
        want = torch.zeros(4, 6, dtype=torch.bool)
        want[rows, cols] = True
        assert torch.equal(cell_mask(cell, size=(4, 6)), want)
    with pytest.raises(ValueError, match="divisible"):
        cell_mask(0, size=(7, 7))
    with pytest.raises(ValueError, match="cell"):
        cell_mask(4, size=(4, 4))


def test_make_mosaic_places_constant_images_in_quadrants() -> None:
    colours = torch.tensor([[1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0], [-1.0, -1.0, -1.0]])
    images = colours[:, :, None, None].expand(4, 3, 8, 8).clone()
    mosaic = make_mosaic(images)
    assert mosaic.shape == (3, 8, 8)
    quadrants = [mosaic[:, :4, :4], mosaic[:, :4, 4:], mosaic[:, 4:, :4], mosaic[:, 4:, 4:]]
    for q, colour in zip(quadrants, colours, strict=True):
        torch.testing.assert_close(q, colour[:, None, None].expand(3, 4, 4))


def test_make_mosaic_uses_antialiased_bilinear_downscale() -> None:
    images = torch.rand(4, 3, 16, 12, generator=torch.Generator().manual_seed(2))
    mosaic = make_mosaic(images)
    small = F.interpolate(images, size=(8, 6), mode="bilinear", antialias=True, align_corners=False)
    torch.testing.assert_close(mosaic[:, 8:, 6:], small[3])
    torch.testing.assert_close(mosaic[:, :8, 6:], small[1])
    with pytest.raises(ValueError, match=r"\(4, C, H, W\)"):
        make_mosaic(images[:3])
    with pytest.raises(ValueError, match="divisible"):
        make_mosaic(torch.zeros(4, 3, 7, 8))


def test_sample_mosaic_specs_deterministic_and_distinct() -> None:
    labels = ["cat", "dog", "cat", "fox", "owl", "dog", "eel", "owl"]
    specs = sample_mosaic_specs(labels, n=50, seed=123)
    assert specs == sample_mosaic_specs(labels, n=50, seed=123)
    assert specs != sample_mosaic_specs(labels, n=50, seed=124)
    assert len(specs) == 50
    for indices, target in specs:
        assert len(indices) == 4 and 0 <= target < 4
        assert len({labels[i] for i in indices}) == 4
    assert {t for _, t in specs} == {0, 1, 2, 3}
    assert {i for idx, _ in specs for i in idx} == set(range(len(labels)))  # all get used
    assert sample_mosaic_specs(labels, n=0, seed=0) == []


def test_sample_mosaic_specs_needs_enough_labels() -> None:
    with pytest.raises(ValueError, match="at least 4 distinct labels"):
        sample_mosaic_specs([1, 1, 2, 3, 3], n=1, seed=0)
    with pytest.raises(ValueError, match="at least 9"):
        sample_mosaic_specs(list(range(8)), n=1, seed=0, grid=3)
    assert len(sample_mosaic_specs(list(range(9)), n=2, seed=0, grid=3)[0][0]) == 9


# --------------------------------------------------------------------------- accumulator


def test_metric_accumulator() -> None:
    acc = MetricAccumulator()
    assert acc.summary()["n"] == 0 and math.isnan(acc.summary()["mean"])
    acc.update(torch.tensor([1.0, float("nan"), 3.0]))
    acc.update(torch.tensor([[10.0], [4.0]]))
    acc.update(2.0)
    s = acc.summary()
    assert (s["n"], s["n_nan"]) == (5, 1)
    assert s["mean"] == pytest.approx(4.0)
    assert s["median"] == 3.0
    acc.update([5.0])  # even count: median is the mean of the two middle values
    assert acc.summary()["median"] == 3.5
    acc.reset()
    assert acc.summary()["n"] == 0 and acc.summary()["n_nan"] == 0


def test_target_mosaic_specs_one_mosaic_per_target_photo() -> None:
    from xai_checks.metrics import target_mosaic_specs

    labels = [i % 7 for i in range(40)]  # 40 candidate photos of 7 classes
    specs = target_mosaic_specs(labels, seed=3)
    assert specs == target_mosaic_specs(labels, seed=3)
    targets = [members[cell] for members, cell in specs]
    assert targets == list(range(40))  # every candidate is the target exactly once
    for members, cell in specs:
        classes = [labels[i] for i in members]
        assert len(set(classes)) == 4  # four distinct classes; the target's only in its cell
        assert classes.count(labels[members[cell]]) == 1
    capped = target_mosaic_specs(labels, seed=3, cap=10)
    capped_targets = [m[c] for m, c in capped]
    assert len(capped) == 10 == len(set(capped_targets))
    assert capped_targets == sorted(capped_targets)
    with pytest.raises(ValueError, match="distinct labels"):
        target_mosaic_specs([0, 0, 1, 2], seed=0)
    with pytest.raises(ValueError, match="cap"):
        target_mosaic_specs(labels, seed=0, cap=0)
