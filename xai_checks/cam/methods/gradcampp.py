"""Grad-CAM++ (Chattopadhay et al., 2018), as pytorch-grad-cam 1.5.7 computes it.

With g = d score / d A (the pre-softmax logit, whose exponential the paper's closed form
assumes) and S_k = sum_(a,b) A_k(a, b):

    alpha_k(i, j) = g^2 / (2 g^2 + S_k g^3 + 1e-6),   0 where g == 0
    w_k = sum_(i,j) alpha_k(i, j) * ReLU(g_k(i, j))

Conventions matched (pytorch-grad-cam ``GradCAMPlusPlus.get_cam_weights``): the absolute
``1e-6`` in the denominator, added after the sum; alpha zeroed where the gradient is exactly 0;
S_k the plain spatial sum of the activation (eq. 19 of the paper).

torch-cam 0.5.0's ``GradCAMpp`` is a different computation and is not used as a reference:
its denominator sums ``g^3 * A`` over space instead of ``S_k * g^3``, and its division is applied
to a boolean-indexed copy (``alpha[mask].div_``), so the weights are ``sum g^2 ReLU(g)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xai_checks.cam.methods import CAMMethod, LayerInputs

if TYPE_CHECKING:
    from torch import Tensor

EPS = 1e-6  # pytorch-grad-cam's, added to the alpha denominator


def weights(inputs: LayerInputs) -> Tensor:
    """(N, C): alpha-weighted sum of the positive gradients."""
    acts, grads = inputs.acts, inputs.gradients
    g2 = grads * grads
    g3 = g2 * grads
    s = acts.sum(dim=(2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + s * g3 + EPS)
    alpha = alpha.masked_fill(grads == 0, 0.0)
    return (alpha * grads.clamp_min(0)).sum(dim=(2, 3))


METHOD = CAMMethod(
    name="gradcam++",
    title="Grad-CAM++",
    reference="Chattopadhay et al., Grad-CAM++, WACV 2018, arXiv:1710.11063",
    needs=frozenset({"activations", "gradients"}),
    weights=weights,
)
