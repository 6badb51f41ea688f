"""Eigen-CAM (Muhammad & Yeasin, 2020): the layer's activations projected on their first
principal component. No gradients: the engine runs no backward for it.

Per image, with the positions as rows, M = A^T (hw, C) centred per channel (each channel minus
its spatial mean), and v the first right-singular vector of M, the map is ``ReLU(M v)``, i.e.
``ReLU(sum_k v_k (A_k - mean A_k))`` -- pytorch-grad-cam 1.5.7's ``get_2d_projection``,
which ``EigenCAM`` uses, followed by its ReLU.

Sign: an SVD gives v only up to sign, and ``get_2d_projection`` keeps whatever sign LAPACK
returns. We use pytorch-grad-cam's sign correction (``get_2d_projection_with_sign_correction``,
Eq. 13 of Seg-Eigen-CAM, Chung & Ying 2025): v is flipped when the projection's largest
magnitude is negative (|min| > |max|), so the salient side is the positive one and the map does
not depend on the linear-algebra library.

The SVD runs in float64: the error of the first singular vector grows as the inverse of the
gap between the first two singular values, which float32 leaves too coarse for close ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xai_checks.cam.methods import CAMMethod, LayerInputs, Terms

if TYPE_CHECKING:
    from torch import Tensor


def first_component(centred: Tensor) -> Tensor:
    """(N, P, C) channel-centred activations -> (N, C) first right-singular vectors, signed so
    that each projection ``centred @ v`` has |max| >= |min|."""
    import torch

    _, _, vh = torch.linalg.svd(centred.double(), full_matrices=False)
    v = vh[:, 0, :]
    projection = torch.einsum("npc,nc->np", centred.double(), v)
    flip = projection.amin(dim=1).abs() > projection.amax(dim=1).abs()
    return torch.where(flip[:, None], -v, v).to(centred.dtype)


def weights(inputs: LayerInputs) -> Terms:
    """Terms: the channel-centred activations, weighted by their first principal component."""
    acts = inputs.acts
    centred = acts - acts.mean(dim=(2, 3), keepdim=True)
    v = first_component(centred.flatten(2).transpose(1, 2))
    return Terms(values=centred, weights=v)


METHOD = CAMMethod(
    name="eigencam",
    title="Eigen-CAM",
    reference="Muhammad & Yeasin, Eigen-CAM, IJCNN 2020, arXiv:2008.00299",
    needs=frozenset({"activations"}),
    weights=weights,
)
