"""Grad-CAM (Selvaraju et al., 2017): w_k = mean over (i, j) of d score / d A_k(i, j).

The weights need only the gradients, which is what lets a layer followed only by global average
pooling and a linear layer get them in closed form (``fc.weight[c] / (h * w)``).
"""

from __future__ import annotations

from torch import Tensor

from xai_checks.cam.methods import CAMMethod
from xai_checks.cam.pipeline import channel_weights


def weights(acts: Tensor, grads: Tensor) -> Tensor:
    """(N, C): the spatial mean of the gradients."""
    return channel_weights(grads)


METHOD = CAMMethod(
    name="gradcam",
    weights=weights,
    title="Grad-CAM",
    reference="Selvaraju et al., Grad-CAM, ICCV 2017, arXiv:1610.02391",
    uses_activations=False,
)
