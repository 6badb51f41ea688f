"""HiResCAM (Draelos & Carin, 2020): the gradient times the activation, summed over channels.

No spatial mean: the weight of A_k(i, j) is the gradient at (i, j) itself, so the map is
``ReLU(sum_k g_k(i, j) A_k(i, j))``. It equals Grad-CAM when the layer feeds global average
pooling and a linear layer (the gradient is then constant over space), and it equals Captum's
``LayerGradientXActivation`` summed over channels, then ReLU'd. The ReLU on the map follows
pytorch-grad-cam (``BaseCAM.compute_cam_per_layer``); the paper shows the map before it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xai_checks.cam.methods import CAMMethod, LayerInputs

if TYPE_CHECKING:
    from torch import Tensor


def weights(inputs: LayerInputs) -> Tensor:
    """(N, C, h, w): the gradients themselves."""
    return inputs.gradients


METHOD = CAMMethod(
    name="hirescam",
    title="HiResCAM",
    reference="Draelos & Carin, Use HiResCAM instead of Grad-CAM, arXiv:2011.08891",
    needs=frozenset({"gradients"}),
    weights=weights,
)
