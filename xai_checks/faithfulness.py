"""Faithfulness: does removing the pixels a map ranks highest change the model's output?

The computation core of the faithfulness phase, in torch (CPU or CUDA), batched over photos and
fractions:

* :func:`removal_masks` ranks each map's pixels and says which are removed at each fraction, in
  MoRF (most relevant first) or LeRF (least relevant first) order;
* :func:`remove` perturbs photos under those masks: ROAD's noisy linear imputation (Rong et al.,
  "A Consistent and Efficient Evaluation Strategy for Attribution Methods", ICML 2022) by default,
  or blur, a fill colour (the dataset mean) or zero;
* :func:`perturbation_curves` pushes every perturbed photo through the model in large batches and
  records the target class's softmax probability and logit at each fraction (:class:`Curves`);
* :func:`road_gap` is LeRF's area minus MoRF's (higher = more faithful);
* :func:`average_drop_increase` is Average Drop and Increase in Confidence (Chattopadhyay et al.,
  Grad-CAM++, WACV 2018), the photo multiplied by its map.

ROAD's imputation sets every removed pixel to the weighted mean of its 8 neighbours (weight 1/6
for the 4 edge neighbours, 1/12 for the 4 corner ones, the paper's reference code); neighbours
outside the photo are left out and the remaining weights renormalised. Removed neighbours are
unknowns too, so each photo is one sparse linear system. The paper's code (and pytorch-grad-cam's
port) solves it with scipy's direct ``spsolve``, one photo and one fraction at a time; here it is
solved for all photos, fractions and channels at once by conjugate gradients on the symmetric
positive definite system (3x3 convolutions, so CUDA works), started from a coarse-to-fine
(push-pull) fill of the holes, which is what makes the iteration count small.

Units: :func:`remove` works in the images' own units. The paper imputes photos in [0, 1] and adds
noise of standard deviation 0.01 there; for photos normalised per channel by ``std`` pass
``channel_std=std`` so the noise is 0.01 of the [0, 1] range in every channel, as in the paper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DEFAULT_FRACTIONS",
    "NEIGHBOUR_WEIGHTS",
    "PAPER_NOISE",
    "Curves",
    "Order",
    "Removal",
    "average_drop_increase",
    "impute_linear",
    "perturbation_curves",
    "perturbation_curves_from_masks",
    "removal_masks",
    "remove",
    "removed_counts",
    "road_gap",
]

Removal = Literal["road", "blur", "mean", "zero"]
Order = Literal["morf", "lerf"]
REMOVALS: tuple[str, ...] = ("road", "blur", "mean", "zero")
ORDERS: tuple[str, ...] = ("morf", "lerf")

DEFAULT_FRACTIONS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""The share of pixels removed at each step: ROAD's 10%, 20%, ..., 90%."""

PAPER_NOISE = 0.01
"""The standard deviation of ROAD's noise, in [0, 1] pixel units (the paper's reference code)."""

NEIGHBOUR_WEIGHTS: tuple[tuple[tuple[int, int], float], ...] = (
    ((-1, -1), 1 / 12),
    ((-1, 0), 1 / 6),
    ((-1, 1), 1 / 12),
    ((0, -1), 1 / 6),
    ((0, 1), 1 / 6),
    ((1, -1), 1 / 12),
    ((1, 0), 1 / 6),
    ((1, 1), 1 / 12),
)
"""(row offset, column offset) -> weight of the 8 neighbours in ROAD's linear imputation."""

BLUR_SIGMA = 5.0
"""Gaussian blur's standard deviation in pixels for ``removal="blur"`` (RISE's 11-tap, sigma 5)."""

SOLVER_TOL = 1e-6
"""The conjugate-gradient stop: every removed pixel within this of its neighbours' weighted mean,
relative to the largest absolute pixel value of its photo and channel."""

SOLVER_MAX_ITER = 200

CPU_SOLVE_BYTES = 2**21
"""On CPU, photos are imputed a few at a time: at most this many bytes of image per solve. The
solver's stencils are bound by memory traffic, and a system that stays in the cores' caches
runs several times faster per photo than one large batch; on other devices the whole batch is
solved at once."""


# --------------------------------------------------------------------------- masks


def removed_counts(n_pixels: int, fractions: Sequence[float]) -> list[int]:
    """How many of ``n_pixels`` pixels are removed at each fraction: ``round(f * n)``, halves to
    even (Python's :func:`round`). Rounding, not truncation: ``0.29 * 100`` is 28.999... in
    floating point, and the paper's ``int(f * n)`` would remove 28 pixels."""
    counts = []
    for f in fractions:
        if not (isinstance(f, int | float) and math.isfinite(f) and 0.0 <= f <= 1.0):
            raise ValueError(f"fractions must be numbers in [0, 1]; got {f!r}")
        counts.append(round(f * n_pixels))
    return counts


def pixel_ranks(maps: Tensor) -> Tensor:
    """(N, H, W) maps -> (N, H*W) rank of each pixel, 0 = most relevant.

    Ties: equal values rank in raster order (row by row, left to right), the earlier pixel as
    the more relevant; a stable sort makes the rule exact and the masks reproducible."""
    if maps.ndim != 3:
        raise ValueError(f"maps must be (N, H, W); got shape {tuple(maps.shape)}")
    flat = maps.reshape(maps.shape[0], -1)
    if not bool(torch.isfinite(flat).all()):
        raise ValueError("maps contain NaN or infinite values; rank them after cleaning")
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    ranks.scatter_(1, order, positions)
    return ranks


def removal_masks(maps: Tensor, fractions: Sequence[float], *, order: Order) -> Tensor:
    """Which pixels each fraction removes: (N, H, W) maps -> bool (N, K, H, W), True = removed.

    ``order="morf"`` removes the ``k = round(f * H * W)`` most relevant pixels (highest map
    values), ``"lerf"`` the ``k`` least relevant, with the tie rule of :func:`pixel_ranks`. So the
    masks are nested over increasing fractions, and MoRF removing ``k`` pixels is the complement
    of LeRF removing ``H * W - k``."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}; got {order!r}")
    n, h, w = maps.shape if maps.ndim == 3 else (0, 0, 0)
    ranks = pixel_ranks(maps)
    counts = torch.tensor(removed_counts(h * w, fractions), device=maps.device)
    if order == "morf":
        removed = ranks.unsqueeze(1) < counts.view(1, -1, 1)
    else:
        removed = ranks.unsqueeze(1) >= (h * w - counts).view(1, -1, 1)
    return removed.view(n, len(counts), h, w)


# --------------------------------------------------------------------------- removal


def _neighbour_sum(x: Tensor) -> Tensor:
    """Weighted sum (:data:`NEIGHBOUR_WEIGHTS`) of each pixel's in-photo neighbours, per channel,
    for (..., H, W). The weights are ``(outer([1, 2, 1], [1, 2, 1]) - 4 * centre) / 12``, so two
    separable passes of shifted adds; a 1-channel ``conv2d`` is several times slower on CPU."""
    padded = F.pad(x, (1, 1, 1, 1))
    rows = padded[..., :-2, :] + padded[..., 2:, :] + 2 * padded[..., 1:-1, :]
    both = rows[..., :-2] + rows[..., 2:] + 2 * rows[..., 1:-1]
    return (both - 4 * x) / 12


class _Level:
    """One grid of the multigrid preconditioner: which pixels are unknown, the operator's
    diagonal, and the operator's scale relative to the finest grid."""

    def __init__(self, unknown: Tensor, scale: float) -> None:
        h, w = unknown.shape[-2:]
        ones = torch.ones(1, 1, h, w, dtype=unknown.dtype, device=unknown.device)
        self.unknown = unknown
        self.scale = scale
        self.diag = scale * _neighbour_sum(ones)
        self.step = _JACOBI_OMEGA * unknown / self.diag
        # apply() as (diag + 4 scale / 12) x - (scale / 12) * (separable 1-2-1 sum), unknown only
        self.centre = self.diag + scale / 3
        self.ring = scale / 12

    def apply(self, x: Tensor) -> Tensor:
        # in place wherever a fresh tensor already exists: on CPU these stencils are bound by
        # memory traffic, so every temporary saved is time saved
        padded = F.pad(x, (1, 1, 1, 1))
        rows = padded[..., :-2, :] + padded[..., 2:, :]
        rows.add_(padded[..., 1:-1, :], alpha=2)
        both = rows[..., :-2] + rows[..., 2:]
        both.add_(rows[..., 1:-1], alpha=2)
        return torch.mul(self.centre, x).sub_(both, alpha=self.ring).mul_(self.unknown)


def _coarser(unknown: Tensor) -> Tensor:
    """A coarse pixel is unknown when all four of its fine pixels are (odd edges padded as
    known), so every coarse grid keeps a kept pixel to anchor it."""
    h, w = unknown.shape[-2:]
    padded = F.pad(unknown, (0, w % 2, 0, h % 2))
    return (F.avg_pool2d(padded, 2) > 0.999).to(unknown.dtype)


# The V-cycle: Jacobi smoothing (the 9-point operator's Jacobi iteration matrix has eigenvalues in
# [-1/3, 1], so omega = 1 converges), restriction = sum over 2x2 (the transpose of the
# piecewise-constant prolongation, which keeps the preconditioner symmetric, as CG needs), the
# same stencil on every grid. These settings took the fewest V-cycles to a 1e-6 residual on
# MoRF/LeRF masks at 30% and 90% (10, against 35-150 for other omegas, step counts and coarse
# scales); any symmetric choice gives the same answer, only the iteration count changes.
_JACOBI_OMEGA = 1.0
_SMOOTHING_STEPS = 2
_COARSEST_STEPS = 16
_COARSEST_SIZE = 4
_COARSE_SCALE = 1.0


def _smooth(level: _Level, r: Tensor, x: Tensor, steps: int) -> Tensor:
    for _ in range(steps):
        x = x + level.apply(x).sub_(r).mul_(level.step).neg_()
    return x


def _v_cycle(levels: list[_Level], r: Tensor, depth: int = 0) -> Tensor:
    """One symmetric V-cycle from zero: an approximate inverse of ``levels[depth]`` on ``r``."""
    level = levels[depth]
    x = torch.zeros_like(r)
    if depth == len(levels) - 1:
        return _smooth(level, r, x, _COARSEST_STEPS)
    x = _smooth(level, r, x, _SMOOTHING_STEPS)
    residual = r - level.apply(x)
    h, w = r.shape[-2:]
    coarse = levels[depth + 1]
    r_coarse = coarse.unknown * 4 * F.avg_pool2d(F.pad(residual, (0, w % 2, 0, h % 2)), 2)
    e_coarse = _v_cycle(levels, r_coarse, depth + 1)
    x = x + level.unknown * F.interpolate(e_coarse, scale_factor=2.0, mode="nearest")[..., :h, :w]
    return _smooth(level, r, x, _SMOOTHING_STEPS)


def _levels(unknown: Tensor) -> list[_Level]:
    levels = [_Level(unknown, 1.0)]
    while min(levels[-1].unknown.shape[-2:]) > _COARSEST_SIZE:
        prev = levels[-1]
        levels.append(_Level(_coarser(prev.unknown), prev.scale * _COARSE_SCALE))
    return levels


def impute_linear(
    images: Tensor,
    masks: Tensor,
    *,
    tol: float = SOLVER_TOL,
    max_iter: int = SOLVER_MAX_ITER,
) -> Tensor:
    """ROAD's linear imputation without noise: every removed pixel (``masks`` True) becomes the
    weighted mean (:data:`NEIGHBOUR_WEIGHTS`) of its in-photo neighbours, removed ones included;
    pixels not removed are returned unchanged. (B, C, H, W) images, (B, H, W) masks.

    Solved for the whole batch and every channel at once by conjugate gradients on
    ``S x_i - sum_j w_ij x_j = sum_k w_ik y_k`` (``S`` the in-photo weight sum, ``j`` removed and
    ``k`` kept neighbours; symmetric positive definite when a pixel is kept), preconditioned by a
    geometric multigrid V-cycle so the iteration count hardly grows with the holes' size. Stops
    when every residual is below ``tol`` times the photo's largest absolute value in that
    channel; raises after ``max_iter`` iterations."""
    if images.ndim != 4 or masks.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(
            f"images must be (B, C, H, W) and masks (B, H, W); got {tuple(images.shape)} and "
            f"{tuple(masks.shape)}"
        )
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point; got {images.dtype}")
    removed = masks.to(device=images.device, dtype=torch.bool).unsqueeze(1)
    if not bool(removed.any()):
        return images.clone()
    everything = removed.flatten(1).all(dim=1)
    if bool(everything.any()):
        raise ValueError(
            f"{int(everything.sum())} masks remove every pixel; linear imputation needs at least "
            "one kept pixel to impute from"
        )
    dtype = images.dtype
    tiny = torch.finfo(dtype).tiny
    unknown = removed.to(dtype)
    kept = images * (1 - unknown)
    levels = _levels(unknown)
    fine = levels[0]
    rhs = unknown * _neighbour_sum(kept)
    limit = tol * images.abs().amax(dim=(2, 3), keepdim=True).clamp_min(tiny)

    x = torch.zeros_like(images)
    r = rhs
    z = _v_cycle(levels, r)
    p = z
    rz = (r * z).sum(dim=(2, 3), keepdim=True)
    for _ in range(max_iter):
        if bool((r.abs() <= limit).all()):
            break
        ap = fine.apply(p)
        pap = (p * ap).sum(dim=(2, 3), keepdim=True)
        alpha = torch.where(pap > 0, rz / pap.clamp_min(tiny), 0.0)
        x = x + alpha * p
        r = r - alpha * ap
        z = _v_cycle(levels, r)
        rz_new = (r * z).sum(dim=(2, 3), keepdim=True)
        beta = torch.where(rz > 0, rz_new / rz.clamp_min(tiny), 0.0)
        p = z + beta * p
        rz = rz_new
    else:
        worst = float((r.abs() / limit * tol).max())
        raise RuntimeError(
            f"linear imputation did not converge in {max_iter} iterations (worst relative "
            f"residual {worst:.2e} > {tol:.0e})"
        )
    return kept + x


def _impute_in_parts(images: Tensor, masks: Tensor) -> Tensor:
    """:func:`impute_linear` on ``images`` a part at a time on CPU (:data:`CPU_SOLVE_BYTES`);
    each photo's system is independent of the others, so the parts agree with one solve of the
    whole batch within the solver's tolerance."""
    if images.device.type != "cpu" or images.shape[0] <= 1:
        return impute_linear(images, masks)
    per_photo = images[0].numel() * images.element_size()
    part = max(1, CPU_SOLVE_BYTES // per_photo)
    if part >= images.shape[0]:
        return impute_linear(images, masks)
    return torch.cat(
        [
            impute_linear(images[s : s + part], masks[s : s + part])
            for s in range(0, images.shape[0], part)
        ]
    )


def _gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    radius = max(1, math.ceil(2 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    g = torch.exp(-(taps**2) / (2 * sigma**2))
    g = g / g.sum()
    b, c, h, w = images.shape
    x = images.reshape(b * c, 1, h, w)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), g.view(1, 1, -1, 1))
    return x.view(b, c, h, w)


def _channel_values(values: Sequence[float], images: Tensor, what: str) -> Tensor:
    t = torch.as_tensor(list(values), dtype=images.dtype, device=images.device)
    if t.ndim != 1 or t.numel() != images.shape[1]:
        raise ValueError(f"{what} needs one value per channel ({images.shape[1]}); got {values!r}")
    return t.view(1, -1, 1, 1)


def _remove(
    images: Tensor,
    masks: Tensor,
    *,
    removal: Removal,
    noise: Tensor | None,
    fill: Sequence[float] | None,
    blur_sigma: float,
) -> Tensor:
    """:func:`remove` with the noise already drawn ((B, C, H, W) in the images' units, or None)."""
    if removal not in REMOVALS:
        raise ValueError(f"removal must be one of {REMOVALS}; got {removal!r}")
    removed = masks.to(device=images.device, dtype=torch.bool).unsqueeze(1)
    if removal == "road":
        out = _impute_in_parts(images, masks)
        if noise is not None:
            out = out + noise * removed
        return out
    if removal == "blur":
        replacement = _gaussian_blur(images, blur_sigma)
    elif removal == "mean":
        replacement = (
            images.mean(dim=(2, 3), keepdim=True)
            if fill is None
            else _channel_values(fill, images, "fill")
        ).expand_as(images)
    else:
        replacement = torch.zeros_like(images)
    return torch.where(removed, replacement, images)


def _noise_scale(noise: float, channel_std: Sequence[float] | None, images: Tensor) -> Tensor:
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0; got {noise!r}")
    if channel_std is None:
        return torch.full(
            (1, images.shape[1], 1, 1), noise, dtype=images.dtype, device=images.device
        )
    return noise / _channel_values(channel_std, images, "channel_std")


def remove(
    images: Tensor,
    masks: Tensor,
    *,
    removal: Removal = "road",
    noise: float = PAPER_NOISE,
    generator: torch.Generator | None = None,
    fill: Sequence[float] | None = None,
    channel_std: Sequence[float] | None = None,
    blur_sigma: float = BLUR_SIGMA,
) -> Tensor:
    """Perturb ``images`` (N, C, H, W) where ``masks`` (N, H, W) is True; on the images' device.

    ``removal``:

    * ``"road"``: noisy linear imputation (:func:`impute_linear`, then Gaussian noise of standard
      deviation ``noise`` on the removed pixels only, drawn from ``generator``; ``noise=0`` for
      none). ``channel_std``: the per-channel std the images were normalised with, so that
      ``noise`` is in [0, 1] pixel units as in the paper.
    * ``"blur"``: the pixel of the photo blurred by a Gaussian of ``blur_sigma`` pixels.
    * ``"mean"``: ``fill`` (one value per channel, in the images' units: the dataset mean), or the
      photo's own per-channel mean when ``fill`` is None (the paper's ``ChannelMeanImputer``).
    * ``"zero"``: 0 in the images' units. On ImageNet-normalised photos that is the dataset mean
      colour; black there is ``removal="mean", fill=-mean/std``.
    """
    if images.ndim != 4 or masks.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(
            f"images must be (N, C, H, W) and masks (N, H, W); got {tuple(images.shape)} and "
            f"{tuple(masks.shape)}"
        )
    drawn = None
    if removal == "road" and noise > 0:
        scale = _noise_scale(noise, channel_std, images)
        drawn = scale * torch.randn(
            images.shape, generator=generator, dtype=images.dtype, device=images.device
        )
    return _remove(images, masks, removal=removal, noise=drawn, fill=fill, blur_sigma=blur_sigma)


# --------------------------------------------------------------------------- curves


@dataclass(frozen=True)
class Curves:
    """The target class's output after removing each fraction of each photo's pixels.

    ``prob`` and ``logit`` are (N, K): softmax probability and logit of the target class, one
    column per fraction. ``base_prob`` / ``base_logit`` (N,) are the unperturbed photo's, when
    recorded (:func:`perturbation_curves` does)."""

    fractions: tuple[float, ...]
    prob: Tensor
    logit: Tensor
    base_prob: Tensor | None = None
    base_logit: Tensor | None = None

    def values(self, kind: Literal["prob", "logit"] = "prob") -> Tensor:
        if kind not in ("prob", "logit"):
            raise ValueError(f"kind must be 'prob' or 'logit'; got {kind!r}")
        return self.prob if kind == "prob" else self.logit

    def auc(self, *, kind: Literal["prob", "logit"] = "prob") -> Tensor:
        """(N,) area under the curve by the trapezoid rule over ``fractions``, divided by the
        fractions' span (last - first): the curve's mean height, in probability (or logit) units,
        so a probability AUC lies in [0, 1] whatever K. With one fraction, that point's value."""
        values = self.values(kind)
        if len(self.fractions) == 1:
            return values[:, 0].clone()
        x = torch.tensor(self.fractions, dtype=values.dtype, device=values.device)
        return torch.trapezoid(values, x, dim=1) / (x[-1] - x[0])


def road_gap(morf: Curves, lerf: Curves, *, kind: Literal["prob", "logit"] = "prob") -> Tensor:
    """(N,) LeRF AUC - MoRF AUC: higher = removing what the map ranks high hurts more than
    removing what it ranks low (ROAD's faithfulness summary)."""
    if tuple(morf.fractions) != tuple(lerf.fractions):
        raise ValueError(f"fractions differ: MoRF {morf.fractions}, LeRF {lerf.fractions}")
    return lerf.auc(kind=kind) - morf.auc(kind=kind)


def _pair_noise(
    seeds: Tensor, shape: tuple[int, ...], scale: Tensor, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """Noise for each (photo, fraction) pair from its own seed, so a pair's noise does not depend
    on how the pairs are batched."""
    out = torch.empty((len(seeds), *shape), dtype=dtype, device=device)
    g = torch.Generator(device=device)
    for i, seed in enumerate(seeds.tolist()):
        g.manual_seed(int(seed))
        out[i] = torch.randn(shape, generator=g, dtype=dtype, device=device)
    return out * scale


def _target_outputs(model: nn.Module, batch: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    logits = model(batch)
    if logits.ndim != 2:
        raise ValueError(f"the model must return (N, classes) logits; got {tuple(logits.shape)}")
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    index = targets.view(-1, 1)
    prob = torch.softmax(logits, dim=1).gather(1, index).squeeze(1)
    return prob, logits.gather(1, index).squeeze(1)


def perturbation_curves_from_masks(
    model: nn.Module,
    images: Tensor,
    masks: Tensor,
    targets: Tensor,
    *,
    fractions: Sequence[float],
    removal: Removal = "road",
    noise: float = PAPER_NOISE,
    generator: torch.Generator | None = None,
    fill: Sequence[float] | None = None,
    channel_std: Sequence[float] | None = None,
    blur_sigma: float = BLUR_SIGMA,
    batch_size: int = 16,
) -> Curves:
    """:func:`perturbation_curves` from given masks, bool (N, K, H, W), True = removed.

    The N * K perturbed photos are built and scored ``batch_size`` at a time (imputation and
    forward both batched); the model's device is the images'. Noise: one seed per (photo,
    fraction) drawn from ``generator`` up front, so results do not depend on ``batch_size``."""
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W); got {tuple(images.shape)}")
    n, c, h, w = images.shape
    if masks.ndim != 4 or masks.shape[0] != n or masks.shape[2:] != (h, w):
        raise ValueError(
            f"masks must be (N, K, H, W) = ({n}, K, {h}, {w}); got {tuple(masks.shape)}"
        )
    k = masks.shape[1]
    if n == 0 or k == 0:
        raise ValueError(f"no photos or no fractions to perturb (masks {tuple(masks.shape)})")
    if len(fractions) != k:
        raise ValueError(f"{len(fractions)} fractions for {k} masks per photo")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    targets = torch.as_tensor(targets, device=images.device).long().view(-1)
    if targets.numel() != n:
        raise ValueError(f"{targets.numel()} targets for {n} photos")
    masks = masks.to(images.device)
    scale = None
    seeds = None
    if removal == "road" and noise > 0:
        scale = _noise_scale(noise, channel_std, images)
        seeds = torch.randint(0, 2**62, (n * k,), generator=generator)
    probs: list[Tensor] = []
    logits: list[Tensor] = []
    with torch.inference_mode():
        base_prob, base_logit = _target_outputs(model, images, targets)
        for start in range(0, n * k, batch_size):
            pairs = torch.arange(start, min(start + batch_size, n * k), device=images.device)
            photo = pairs // k
            batch_images = images[photo]
            batch_masks = masks.reshape(n * k, h, w)[pairs]
            drawn = None
            if scale is not None and seeds is not None:
                drawn = _pair_noise(
                    seeds[start : start + len(pairs)], (c, h, w), scale, images.dtype, images.device
                )
            perturbed = _remove(
                batch_images,
                batch_masks,
                removal=removal,
                noise=drawn,
                fill=fill,
                blur_sigma=blur_sigma,
            )
            p, lg = _target_outputs(model, perturbed, targets[photo])
            probs.append(p)
            logits.append(lg)
    return Curves(
        fractions=tuple(float(f) for f in fractions),
        prob=torch.cat(probs).view(n, k),
        logit=torch.cat(logits).view(n, k),
        base_prob=base_prob,
        base_logit=base_logit,
    )


def perturbation_curves(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    targets: Tensor,
    *,
    order: Order,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    removal: Removal = "road",
    noise: float = PAPER_NOISE,
    generator: torch.Generator | None = None,
    fill: Sequence[float] | None = None,
    channel_std: Sequence[float] | None = None,
    blur_sigma: float = BLUR_SIGMA,
    batch_size: int = 16,
) -> Curves:
    """MoRF or LeRF curves: rank each photo's pixels by its map (N, H, W, at the images' size),
    remove each fraction in ``order`` (:func:`removal_masks`) by ``removal`` (:func:`remove`),
    and record the target class's probability and logit (:class:`Curves`)."""
    if maps.ndim != 3 or maps.shape[0] != images.shape[0] or maps.shape[1:] != images.shape[2:]:
        raise ValueError(
            f"maps must be (N, H, W) at the images' size {tuple(images.shape[2:])}; got "
            f"{tuple(maps.shape)}"
        )
    masks = removal_masks(maps.to(images.device), fractions, order=order)
    return perturbation_curves_from_masks(
        model,
        images,
        masks,
        targets,
        fractions=fractions,
        removal=removal,
        noise=noise,
        generator=generator,
        fill=fill,
        channel_std=channel_std,
        blur_sigma=blur_sigma,
        batch_size=batch_size,
    )


# --------------------------------------------------------------------------- confidence


def average_drop_increase(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    targets: Tensor,
    *,
    batch_size: int = 16,
) -> tuple[Tensor, Tensor]:
    """Per photo, Average Drop's term and Increase in Confidence's indicator (Grad-CAM++):
    ``max(0, Y - O) / Y`` and ``O > Y``, with ``Y`` the target's softmax probability on the photo
    and ``O`` on the photo multiplied by its map (N, H, W, values in [0, 1], at the images' size).
    Their means over photos are the two metrics. Returns ((N,) float, (N,) bool)."""
    if maps.ndim != 3 or maps.shape[0] != images.shape[0] or maps.shape[1:] != images.shape[2:]:
        raise ValueError(
            f"maps must be (N, H, W) at the images' size {tuple(images.shape[2:])}; got "
            f"{tuple(maps.shape)}"
        )
    targets = torch.as_tensor(targets, device=images.device).long().view(-1)
    maps = maps.to(device=images.device, dtype=images.dtype)
    drops, increases = [], []
    with torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size]
            t = targets[start : start + batch_size]
            y, _ = _target_outputs(model, x, t)
            o, _ = _target_outputs(model, x * maps[start : start + batch_size].unsqueeze(1), t)
            drops.append(torch.relu(y - o) / y)
            increases.append(o > y)
    return torch.cat(drops), torch.cat(increases)
