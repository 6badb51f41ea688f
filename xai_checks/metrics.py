"""Metrics on Grad-CAM maps (torch).

Maps are float tensors of shape ``(N, H, W)``; a single ``(H, W)`` map is treated as ``N = 1``
and per-image metrics then return shape ``(1,)``. Canonical maps are min-max normalised per
image into [0, 1] (see :func:`minmax_normalise`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DEFAULT_THRESHOLDS",
    "MetricAccumulator",
    "box_mask",
    "cell_mask",
    "energy_pointing_game",
    "grid_pointing_score",
    "high_activation_ratio",
    "make_mosaic",
    "mass_in_region",
    "minmax_normalise",
    "pointing_game_hit",
    "pool_to_grid",
    "sample_mosaic_specs",
    "target_mosaic_specs",
    "threshold_sweep",
]

DEFAULT_THRESHOLDS: tuple[float, ...] = (
    0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95,
)  # fmt: skip

Box = Sequence[float]


def _as_batch(maps: Tensor | Any, *, name: str = "maps") -> Tensor:
    """Return maps as a floating (N, H, W) tensor; (H, W) becomes (1, H, W)."""
    t = torch.as_tensor(maps)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3:
        raise ValueError(f"{name} must have shape (N, H, W) or (H, W); got {tuple(t.shape)}")
    return t


def _as_masks(masks: Tensor | Any, maps: Tensor) -> Tensor:
    """Validate boolean masks of shape (H, W) or (N, H, W) against (N, H, W) maps."""
    m = torch.as_tensor(masks, device=maps.device)
    if m.dtype != torch.bool:
        raise ValueError(f"masks must be boolean; got dtype {m.dtype}")
    if m.ndim == 2:
        m = m.unsqueeze(0)
    if m.ndim != 3 or m.shape[-2:] != maps.shape[-2:] or m.shape[0] not in (1, maps.shape[0]):
        raise ValueError(
            f"masks of shape {tuple(m.shape)} do not fit maps of shape {tuple(maps.shape)}; "
            "need (H, W) or (N, H, W)"
        )
    return m


# --------------------------------------------------------------------------- thresholds


def high_activation_ratio(maps: Tensor, *, threshold: float = 0.85) -> Tensor:
    """Share of pixels strictly above ``threshold`` per map, shape (N,) (the study's metric).

    The threshold is compared in the maps' dtype, so a pixel equal to ``threshold`` (as stored
    in that dtype) does not count.
    """
    m = _as_batch(maps)
    return (m > threshold).to(m.dtype).mean(dim=(-2, -1))


def threshold_sweep(maps: Tensor, *, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> Tensor:
    """:func:`high_activation_ratio` at each threshold, shape (N, T)."""
    m = _as_batch(maps)
    if len(thresholds) == 0:
        raise ValueError("thresholds is empty")
    return torch.stack([(m > float(t)).to(m.dtype).mean(dim=(-2, -1)) for t in thresholds], 1)


# --------------------------------------------------------------------------- normalisation


def minmax_normalise(maps: Tensor, *, eps: float = 1e-8) -> Tensor:
    """Per-image ``(x - min) / max(max - min, eps)`` over the last two dims (H, W).

    Works on any shape ``(..., H, W)`` and returns the same shape, in the maps' dtype (integer
    input is converted to the default float dtype). A constant or all-zero map becomes all
    zero, without NaN or warning. For low-precision dtypes where ``eps`` would underflow to 0,
    ``eps`` is raised to the dtype's smallest normal number. Maps must be finite.
    """
    if eps <= 0:
        raise ValueError(f"eps must be > 0; got {eps}")
    t = torch.as_tensor(maps)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if t.ndim < 2:
        raise ValueError(f"maps must have at least 2 dims (..., H, W); got {tuple(t.shape)}")
    eps = max(eps, torch.finfo(t.dtype).tiny)
    lo = t.amin(dim=(-2, -1), keepdim=True)
    hi = t.amax(dim=(-2, -1), keepdim=True)
    return (t - lo) / (hi - lo).clamp_min(eps)


def pool_to_grid(maps: Tensor, *, size: tuple[int, int] = (7, 7)) -> Tensor:
    """Adaptive-average-pool each map to ``size`` then :func:`minmax_normalise`; (N, h, w).

    The resolution-confound control: bring every layer's map to the coarsest grid before
    thresholding.
    """
    m = _as_batch(maps)
    h, w = size
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive; got {size}")
    pooled = F.adaptive_avg_pool2d(m.unsqueeze(1), (h, w)).squeeze(1)
    return minmax_normalise(pooled)


# --------------------------------------------------------------------------- localisation


def mass_in_region(maps: Tensor, masks: Tensor) -> Tensor:
    """Share of each map's non-negative mass inside a boolean mask, shape (N,).

    ``masks`` is (H, W) (shared by all maps) or (N, H, W). Negative values are clipped to 0.
    A map with no positive mass gives NaN (the share is undefined), never a warning.
    """
    m = _as_batch(maps).clamp_min(0)
    mask = _as_masks(masks, m)
    total = m.sum(dim=(-2, -1))
    inside = (m * mask).sum(dim=(-2, -1))
    nan = torch.full_like(total, math.nan)
    return torch.where(total > 0, inside / torch.where(total > 0, total, 1), nan)


def box_mask(box: Box, *, size: tuple[int, int]) -> Tensor:
    """Boolean (H, W) mask of a box ``(x0, y0, x1, y1)`` in pixels, half-open ``[x0, x1)``.

    ``size`` is ``(H, W)``. Fractional coordinates expand outwards (floor of x0/y0, ceil of
    x1/y1), so every pixel the box touches is inside; the box is clipped to the image.
    """
    if len(box) != 4:
        raise ValueError(f"box must be (x0, y0, x1, y1); got {box!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 < x0 or y1 < y0:
        raise ValueError(f"box must have x0 <= x1 and y0 <= y1; got {box!r}")
    h, w = size
    mask = torch.zeros((h, w), dtype=torch.bool)
    c0, r0 = max(math.floor(x0), 0), max(math.floor(y0), 0)
    c1, r1 = min(math.ceil(x1), w), min(math.ceil(y1), h)
    if c1 > c0 and r1 > r0:
        mask[r0:r1, c0:c1] = True
    return mask


def energy_pointing_game(maps: Tensor, boxes: Sequence[Box] | Tensor) -> Tensor:
    """Energy-based pointing game (Wang et al., Score-CAM): mass inside each map's box, (N,).

    ``boxes`` holds one ``(x0, y0, x1, y1)`` per map (a sequence or an (N, 4) tensor).
    """
    m = _as_batch(maps)
    box_list = boxes.tolist() if isinstance(boxes, Tensor) else list(boxes)
    if len(box_list) != m.shape[0]:
        raise ValueError(f"need one box per map: {len(box_list)} boxes for {m.shape[0]} maps")
    size = (m.shape[-2], m.shape[-1])
    masks = torch.stack([box_mask(b, size=size) for b in box_list]).to(m.device)
    return mass_in_region(m, masks)


def pointing_game_hit(maps: Tensor, masks: Tensor, *, tolerance: int = 0) -> Tensor:
    """Pointing game (Zhang et al.): is each map's maximum inside its mask? Shape (N,).

    Returns floats: 1.0 hit, 0.0 miss, NaN for a constant map (no maximum point). The
    maximum is the first one in row-major order. ``tolerance`` dilates the mask by a disk of
    that radius in pixels (hit if the point is within that Euclidean distance of the mask).
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0; got {tolerance}")
    m = _as_batch(maps)
    mask = _as_masks(masks, m).expand(m.shape[0], -1, -1)
    n, h, w = m.shape
    flat = m.reshape(n, -1)
    idx = flat.argmax(dim=1)
    py, px = idx // w, idx % w
    yy = torch.arange(h, device=m.device).view(1, h, 1)
    xx = torch.arange(w, device=m.device).view(1, 1, w)
    d2 = (yy - py.view(n, 1, 1)) ** 2 + (xx - px.view(n, 1, 1)) ** 2
    hit = (mask & (d2 <= tolerance**2)).flatten(1).any(dim=1).to(m.dtype)
    constant = flat.amax(dim=1) == flat.amin(dim=1)
    return torch.where(constant, torch.full_like(hit, math.nan), hit)


# --------------------------------------------------------------------------- GridPG


def make_mosaic(images: Tensor, *, grid: int = 2) -> Tensor:
    """GridPG mosaic (Rao et al., CVPR 2022): (grid², C, H, W) images -> one (C, H, W) image.

    Each image is downscaled to (H/grid, W/grid) (bilinear, antialias, align_corners=False)
    and placed in row-major cells: for grid 2, 0 = top-left, 1 = top-right, 2 = bottom-left,
    3 = bottom-right. H and W must be divisible by ``grid``.
    """
    if grid < 1:
        raise ValueError(f"grid must be >= 1; got {grid}")
    if images.ndim != 4 or images.shape[0] != grid * grid:
        raise ValueError(f"images must be ({grid * grid}, C, H, W); got {tuple(images.shape)}")
    _, c, h, w = images.shape
    if h % grid or w % grid:
        raise ValueError(f"H and W ({h}, {w}) must be divisible by grid {grid}")
    ch, cw = h // grid, w // grid
    x = images if images.is_floating_point() else images.to(torch.get_default_dtype())
    small = F.interpolate(x, size=(ch, cw), mode="bilinear", antialias=True, align_corners=False)
    out = small.new_empty((c, h, w))
    for i in range(grid * grid):
        r, q = divmod(i, grid)
        out[:, r * ch : (r + 1) * ch, q * cw : (q + 1) * cw] = small[i]
    return out


def cell_mask(cell: int, *, size: tuple[int, int], grid: int = 2) -> Tensor:
    """Boolean (H, W) mask of GridPG cell ``cell`` (row-major; H, W divisible by ``grid``)."""
    h, w = size
    if grid < 1 or h % grid or w % grid:
        raise ValueError(f"size {size} must be divisible by grid {grid}")
    if not 0 <= cell < grid * grid:
        raise ValueError(f"cell must be in [0, {grid * grid}); got {cell}")
    r, q = divmod(int(cell), grid)
    ch, cw = h // grid, w // grid
    mask = torch.zeros((h, w), dtype=torch.bool)
    mask[r * ch : (r + 1) * ch, q * cw : (q + 1) * cw] = True
    return mask


def grid_pointing_score(
    maps: Tensor, cells: Sequence[int] | Tensor | int, *, grid: int = 2
) -> Tensor:
    """GridPG score: share of each map's non-negative mass inside its target cell, (N,).

    ``cells`` holds one cell index per map (an int applies to all). Chance level is
    ``1 / grid²`` (0.25 for grid 2). A map without positive mass gives NaN.
    """
    m = _as_batch(maps)
    n = m.shape[0]
    cell_list = [int(cells)] * n if isinstance(cells, int) else [int(c) for c in cells]
    if len(cell_list) != n:
        raise ValueError(f"need one cell per map: {len(cell_list)} cells for {n} maps")
    size = (m.shape[-2], m.shape[-1])
    masks = torch.stack([cell_mask(c, size=size, grid=grid) for c in cell_list]).to(m.device)
    return mass_in_region(m, masks)


def sample_mosaic_specs(
    labels: Sequence[Any], *, n: int, seed: int, grid: int = 2
) -> list[tuple[tuple[int, ...], int]]:
    """Draw ``n`` deterministic GridPG specs ``(candidate indices per cell, target cell)``.

    ``labels[i]`` is the class of candidate photo ``i``. Each spec picks grid² distinct
    classes (uniformly, in random cell order), one candidate photo per class (uniformly), and
    a uniform target cell, using ``numpy.random.default_rng(seed)``. Raises ``ValueError`` if
    there are fewer than grid² distinct labels.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}")
    if grid < 1:
        raise ValueError(f"grid must be >= 1; got {grid}")
    cells = grid * grid
    by_label: dict[Any, list[int]] = {}
    for i, lab in enumerate(labels):  # first-appearance order: deterministic, no sorting
        by_label.setdefault(lab, []).append(i)
    groups = list(by_label.values())
    if len(groups) < cells:
        raise ValueError(f"need at least {cells} distinct labels; got {len(groups)}")
    rng = np.random.default_rng(seed)
    specs: list[tuple[tuple[int, ...], int]] = []
    for _ in range(n):
        chosen = rng.choice(len(groups), size=cells, replace=False)
        idx = tuple(int(groups[g][rng.integers(len(groups[g]))]) for g in chosen)
        specs.append((idx, int(rng.integers(cells))))
    return specs


def target_mosaic_specs(
    labels: Sequence[Any], *, seed: int, cap: int | None = None, grid: int = 2
) -> list[tuple[tuple[int, ...], int]]:
    """One GridPG mosaic per target photo: ``(candidate indices per cell, target cell)``.

    The unit of analysis is the target photo, so each candidate ``i`` (class ``labels[i]``)
    is the target of exactly one mosaic, in candidate order; with ``cap`` below the number of
    candidates, a seeded sample of ``cap`` targets (kept in candidate order). The other
    grid² - 1 cells hold photos of distinct classes other than the target's, drawn seeded
    (``numpy.random.default_rng(seed)``) uniformly over classes, then over the class's photos;
    the target cell is uniform. Raises ``ValueError`` with fewer than grid² distinct labels.
    """
    if cap is not None and cap < 1:
        raise ValueError(f"cap must be >= 1 (or None for no cap); got {cap}")
    if grid < 1:
        raise ValueError(f"grid must be >= 1; got {grid}")
    cells = grid * grid
    by_label: dict[Any, list[int]] = {}
    for i, lab in enumerate(labels):  # first-appearance order: deterministic, no sorting
        by_label.setdefault(lab, []).append(i)
    classes = list(by_label)
    if len(classes) < cells:
        raise ValueError(f"need at least {cells} distinct labels; got {len(classes)}")
    rng = np.random.default_rng(seed)
    targets = np.arange(len(labels))
    if cap is not None and cap < len(targets):
        targets = np.sort(rng.choice(len(targets), size=cap, replace=False))
    class_index = {lab: k for k, lab in enumerate(classes)}
    specs: list[tuple[tuple[int, ...], int]] = []
    for t in targets.tolist():
        own = class_index[labels[t]]
        others = rng.choice(len(classes) - 1, size=cells - 1, replace=False)
        others = np.where(others >= own, others + 1, others)  # skip the target's own class
        fill = [by_label[classes[k]][rng.integers(len(by_label[classes[k]]))] for k in others]
        cell = int(rng.integers(cells))
        members = [int(i) for i in fill]
        members.insert(cell, int(t))
        specs.append((tuple(members), cell))
    return specs


# --------------------------------------------------------------------------- accumulator


class MetricAccumulator:
    """Collects per-image metric values across batches; NaNs are counted, not propagated."""

    def __init__(self) -> None:
        self._chunks: list[Tensor] = []
        self._n_nan = 0

    def update(self, values: Tensor | float | Sequence[float]) -> None:
        """Add values (any shape; flattened). NaNs are counted and dropped."""
        v = torch.as_tensor(values).detach().to("cpu", torch.float64).flatten()
        nan = torch.isnan(v)
        self._n_nan += int(nan.sum())
        self._chunks.append(v[~nan])

    def reset(self) -> None:
        """Forget everything."""
        self._chunks = []
        self._n_nan = 0

    def summary(self) -> dict[str, float | int]:
        """``n`` (non-NaN values), ``n_nan``, ``mean`` and ``median`` (NaN when n == 0).

        The median of an even count is the mean of the two middle values.
        """
        v = torch.cat(self._chunks) if self._chunks else torch.empty(0, dtype=torch.float64)
        n = int(v.numel())
        mean = float(v.mean()) if n else math.nan
        median = float(np.median(v.numpy())) if n else math.nan
        return {"n": n, "n_nan": self._n_nan, "mean": mean, "median": median}
