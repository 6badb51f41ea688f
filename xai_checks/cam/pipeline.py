"""The one canonical CAM pipeline every backend, method, metric and report shares.

score -> gradients -> weights -> map -> upsample -> normalise

* score: the pre-softmax logit of the target class;
* gradients: d score / d A for the layer's activation A (N, C, h, w);
* weights: the method's (``xai_checks.cam.methods``): per channel (N, C), e.g. Grad-CAM's spatial
  mean of the gradients, or per position (N, C, h, w), e.g. HiResCAM's gradients themselves;
* map: ReLU(sum_k w_k A_k) (N, h, w) -- the *raw* map, at the layer's resolution;
* upsample: bilinear to the input size, ``align_corners=False``;
* normalise: per-image min-max with a *relative* floor, :data:`REL_EPS` times the map's
  magnitude (the largest sum_k |w_k A_k|, the scale its float32 rounding is relative to), so
  the canonical map does not depend on the map's units (random MobileNet maps at ~1e-13
  normalise like ResNet maps at ~1), an all-zero map stays zero, and a map that is only
  rounding noise (terms cancelling to a few ulps above the ReLU) is squashed, not blown up to
  [0, 1] -- the *canonical* map.

pytorch-grad-cam normalises before *and* after upsampling (with an absolute ``1e-7``), torch-cam
does not upsample and adds ``1e-8``; since bilinear upsampling is linear and keeps constants,
min-max commutes with it, and the three agree wherever a map's range is far above those
epsilons (measured ~1e-6 on real photos, see ``tests/unit/test_cam_methods_real.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from xai_checks.metrics import minmax_normalise

__all__ = [
    "REL_EPS",
    "canonical",
    "channel_weights",
    "check_targets",
    "magnitude",
    "minmax_normalise",
    "normalise",
    "upsample",
    "weighted_map",
]

# float32 sums of C products carry rounding of order sqrt(C) * 2^-24 * magnitude (~3e-6 for
# C = 2048), and back-propagated gradients ~1e-6 relative (measured against float64): a map
# whose range is below 1e-5 of its magnitude is not resolved by float32.
REL_EPS = 1e-5


def check_targets(targets: Tensor, classes: int) -> None:
    """Raise ``ValueError`` unless every target class is in ``[0, classes)``.

    Called before any ``gather`` on the logits: an out-of-range index there is a bare
    ``RuntimeError`` on the CPU and a device-side assert (fatal to the process) on CUDA.
    """
    bad = (targets < 0) | (targets >= classes)
    if bool(bad.any()):
        raise ValueError(
            f"target class {int(targets[bad][0])} out of range: the model has {classes} classes"
        )


def channel_weights(grads: Tensor) -> Tensor:
    """Grad-CAM channel weights: the spatial mean of the gradients, (N, C, h, w) -> (N, C)."""
    if grads.ndim != 4:
        raise ValueError(f"expected gradients of shape (N, C, h, w); got {tuple(grads.shape)}")
    return grads.mean(dim=(2, 3))


def weighted_map(acts: Tensor, weights: Tensor, *, relu: bool = True) -> Tensor:
    """sum_k w_k A_k, then ReLU: (N, C, h, w) x ((N, C) or (N, C, h, w)) -> (N, h, w)."""
    if weights.ndim == 2:
        cam = torch.einsum("nchw,nc->nhw", acts, weights)
    elif weights.shape == acts.shape:
        cam = (acts * weights).sum(dim=1)
    else:
        raise ValueError(
            f"weights of shape {tuple(weights.shape)} fit neither (N, C) nor the activations' "
            f"{tuple(acts.shape)}"
        )
    return F.relu(cam) if relu else cam


def upsample(raw: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear upsampling (``align_corners=False``) of (N, h, w) maps to ``size``."""
    return F.interpolate(raw.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0]


def magnitude(acts: Tensor, weights: Tensor) -> Tensor:
    """Per image, the largest ``sum_k |w_k A_k|`` over positions, (N,): the scale of the terms
    whose sum is the map. Float32 rounding of the map is of order ``2^-24 * magnitude``, however
    much the terms cancel, so it is what the normaliser's floor is relative to."""
    if weights.ndim == 2:
        total = torch.einsum("nchw,nc->nhw", acts.abs(), weights.abs())
    else:
        total = (acts * weights).abs().sum(dim=1)
    return total.flatten(1).amax(dim=1)


def normalise(maps: Tensor, *, eps: float = REL_EPS, scale: Tensor | None = None) -> Tensor:
    """Per-image min-max into [0, 1]: ``(x - min) / max(max - min, eps * scale)``.

    ``scale`` (N,) is the maps' :func:`magnitude` when known (the native engine), else each map's
    own largest absolute value. The floor is relative, so the result does not depend on the
    map's units; a map whose range is below ``eps * scale`` -- rounding noise, e.g. a map whose
    terms cancel to ~0 and leave a few ulps above the ReLU -- is squashed towards 0 instead of
    being blown up to [0, 1]. An all-zero map stays zero.
    """
    if maps.ndim < 2:
        raise ValueError(f"maps must have at least 2 dims (..., H, W); got {tuple(maps.shape)}")
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    hi = maps.amax(dim=(-2, -1), keepdim=True)
    if scale is None:
        ref = torch.maximum(lo.abs(), hi.abs())
    else:
        ref = scale.to(maps.dtype).reshape(lo.shape)
    floor = (ref * eps).clamp_min(torch.finfo(maps.dtype).tiny)
    return (maps - lo) / torch.maximum(hi - lo, floor)


def canonical(
    raw: Tensor, size: tuple[int, int], *, eps: float = REL_EPS, scale: Tensor | None = None
) -> Tensor:
    """Raw maps (N, h, w) -> canonical maps (N, H, W): upsampled, then min-max in [0, 1]."""
    return normalise(upsample(raw, size), eps=eps, scale=scale)
