"""Score-CAM (Wang et al., 2020): each channel's weight is the model's score for the target
class on the input masked by that channel. No gradients; one forward per channel and image.

Per image and channel k: the activation A_k is upsampled to the input size, min-max normalised
into a mask ``(U_k - min) / (max - min + 1e-8)``, the input is multiplied by it, and the score
s_k is the target class's logit on that input. The weights are ``softmax_k(s_k)`` and the map
``ReLU(sum_k w_k A_k)``.

Conventions matched (pytorch-grad-cam 1.5.7 ``ScoreCAM.get_cam_weights``): the masks are
upsampled with ``UpsamplingBilinear2d``, i.e. bilinear with ``align_corners=True`` (unlike the
canonical map's ``align_corners=False``); the absolute ``1e-8`` in the mask's normaliser; the
pre-softmax logit as the score (``ClassifierOutputTarget``), softmaxed over the channels.

Cost: C forwards per image and layer (ResNet-50's four stages: 256 + 512 + 1024 + 2048), run
:data:`BATCH_SIZE` masked inputs at a time; :func:`with_batch_size` makes a variant with
another batch size for ``CAM(model, method=...)``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

from xai_checks.cam.methods import CAMMethod, LayerInputs

if TYPE_CHECKING:
    from torch import Tensor

BATCH_SIZE = 32  # masked inputs per forward
MASK_EPS = 1e-8  # pytorch-grad-cam's, added to each mask's range


def channel_scores(inputs: LayerInputs, *, batch_size: int = BATCH_SIZE) -> Tensor:
    """(N, C): the target logit on the input masked by each upsampled, normalised channel."""
    import torch
    import torch.nn.functional as F

    acts, x, targets = inputs.acts, inputs.model_input, inputs.target_classes
    n, c = int(acts.shape[0]), int(acts.shape[1])
    size = (int(x.shape[2]), int(x.shape[3]))
    scores = torch.empty(n * c, dtype=torch.float32, device=acts.device)
    for start in range(0, n * c, batch_size):
        flat = torch.arange(start, min(start + batch_size, n * c), device=acts.device)
        image, channel = flat // c, flat % c
        up = F.interpolate(
            acts[image, channel][:, None], size=size, mode="bilinear", align_corners=True
        )
        lo = up.amin(dim=(2, 3), keepdim=True)
        hi = up.amax(dim=(2, 3), keepdim=True)
        masks = (up - lo) / (hi - lo + MASK_EPS)
        logits = inputs.logits(x[image] * masks.to(x.dtype))
        scores[start : start + len(flat)] = logits.gather(1, targets[image][:, None])[:, 0]
    return scores.view(n, c)


def weights(inputs: LayerInputs, *, batch_size: int = BATCH_SIZE) -> Tensor:
    """(N, C): the softmax over channels of the masked inputs' target logits."""
    return channel_scores(inputs, batch_size=batch_size).softmax(dim=1)


def with_batch_size(batch_size: int) -> CAMMethod:
    """Score-CAM running ``batch_size`` masked inputs per forward (same maps, other memory)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    return dataclasses.replace(METHOD, weights=functools.partial(weights, batch_size=batch_size))


METHOD = CAMMethod(
    name="scorecam",
    title="Score-CAM",
    reference="Wang et al., Score-CAM, CVPR Workshops 2020, arXiv:1910.01279",
    needs=frozenset({"activations", "model"}),
    weights=weights,
)
