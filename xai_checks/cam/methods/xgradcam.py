"""XGrad-CAM (Fu et al., 2020): w_k = sum_(i,j) g_k(i, j) A_k(i, j) / (sum_(a,b) A_k(a, b) + 1e-7).

Conventions matched: pytorch-grad-cam 1.5.7 adds ``1e-7`` to the per-channel activation sum
(torch-cam 0.5.0 adds ``1e-8``; the two agree to ~1e-7 relative wherever a channel's sum is
far above both). A channel that is zero everywhere gets weight 0 either way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xai_checks.cam.methods import CAMMethod, LayerInputs

if TYPE_CHECKING:
    from torch import Tensor

EPS = 1e-7  # pytorch-grad-cam's, added to each channel's activation sum


def weights(inputs: LayerInputs) -> Tensor:
    """(N, C): activation-normalised sum of gradient times activation."""
    acts = inputs.acts
    s = acts.sum(dim=(2, 3), keepdim=True)
    return (inputs.gradients * acts / (s + EPS)).sum(dim=(2, 3))


METHOD = CAMMethod(
    name="xgradcam",
    title="XGrad-CAM",
    reference="Fu et al., Axiom-based Grad-CAM, BMVC 2020, arXiv:2008.02312",
    needs=frozenset({"activations", "gradients"}),
    weights=weights,
)
