"""The one canonical Grad-CAM pipeline every backend, metric and report shares.

score -> gradients -> weights -> map -> upsample -> normalise

* score: the pre-softmax logit of the target class;
* gradients: d score / d A for the layer's activation A (N, C, h, w);
* weights: the spatial mean of the gradients (N, C);
* map: ReLU(sum_k w_k A_k) (N, h, w) -- the *raw* map, at the layer's resolution;
* upsample: bilinear to the input size, ``align_corners=False``;
* normalise: per-image min-max with an epsilon (an all-zero map stays zero) -- the *canonical* map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from xai_checks.metrics import minmax_normalise

__all__ = [
    "canonical",
    "channel_weights",
    "check_targets",
    "minmax_normalise",
    "upsample",
    "weighted_map",
]


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
    """Channel-weighted sum of activations, (N, C, h, w) x (N, C) -> (N, h, w), then ReLU."""
    cam = torch.einsum("nchw,nc->nhw", acts, weights)
    return F.relu(cam) if relu else cam


def upsample(raw: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear upsampling (``align_corners=False``) of (N, h, w) maps to ``size``."""
    return F.interpolate(raw.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0]


def canonical(raw: Tensor, size: tuple[int, int], *, eps: float = 1e-8) -> Tensor:
    """Raw maps (N, h, w) -> canonical maps (N, H, W): upsampled, then min-max in [0, 1]."""
    return minmax_normalise(upsample(raw, size), eps=eps)
