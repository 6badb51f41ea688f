"""LayerCAM (Jiang et al., 2021): per-position weights ReLU(g_k(i, j)).

The map is ``ReLU(sum_k ReLU(g_k(i, j)) A_k(i, j))``: the ReLU on the gradients is the
method's; the outer ReLU is the pipeline's (pytorch-grad-cam and torch-cam apply it too; for a
post-ReLU layer, A >= 0, it changes nothing). Neither the paper's tanh(2 x) rescaling of shallow
layers (torch-cam's ``_scale_cams``, used only when fusing layers) nor a layer fusion is applied:
each layer's map is reported on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xai_checks.cam.methods import CAMMethod, LayerInputs

if TYPE_CHECKING:
    from torch import Tensor


def weights(inputs: LayerInputs) -> Tensor:
    """(N, C, h, w): the positive part of the gradients."""
    return inputs.gradients.clamp_min(0)


METHOD = CAMMethod(
    name="layercam",
    title="LayerCAM",
    reference="Jiang et al., LayerCAM, IEEE TIP 2021, doi:10.1109/TIP.2021.3089943",
    needs=frozenset({"gradients"}),
    weights=weights,
)
