"""Grad-CAM (Selvaraju et al., 2017): w_k = mean over (i, j) of d score / d A_k(i, j).

The weights need only the gradients, which is what lets a layer followed only by global average
pooling and a linear layer get them in closed form (``fc.weight[c] / (h * w)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xai_checks.cam.methods import CAMMethod, LayerInputs

if TYPE_CHECKING:
    from torch import Tensor


def weights(inputs: LayerInputs) -> Tensor:
    """(N, C): the spatial mean of the gradients."""
    from xai_checks.cam.pipeline import channel_weights

    return channel_weights(inputs.gradients)


METHOD = CAMMethod(
    name="gradcam",
    title="Grad-CAM",
    reference="Selvaraju et al., Grad-CAM, ICCV 2017, arXiv:1610.02391",
    needs=frozenset({"gradients"}),
    weights=weights,
)
