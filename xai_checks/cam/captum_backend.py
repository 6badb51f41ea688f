"""Captum backend: ``LayerGradCam`` with the canonical pipeline's choices made explicit.

Captum's defaults differ from the canonical pipeline (no ReLU, nearest upsampling), a classic
source of disagreement between libraries; here ``relu_attributions=True`` and bilinear
``LayerAttribution.interpolate`` are asked for explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from xai_checks.cam.state import frozen_eval

__all__ = ["captum_raw_maps", "captum_upsample"]


def captum_raw_maps(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    x: Tensor,
    targets: Tensor,
) -> tuple[dict[str, Tensor], Tensor]:
    """One ``LayerGradCam`` call per layer; returns ``({layer: (N, h, w)}, logits)``."""
    from captum.attr import LayerGradCam

    raw: dict[str, Tensor] = {}
    with frozen_eval(model, freeze=False), torch.enable_grad():
        for name, module in layers.items():
            attr = LayerGradCam(model, module).attribute(
                x, target=targets, relu_attributions=True, attr_dim_summation=True
            )
            raw[name] = attr.detach().float()[:, 0]
        with torch.no_grad():
            logits = model(x).float()
    return raw, logits


def captum_upsample(raw: Tensor, size: tuple[int, int]) -> Tensor:
    """Captum's own interpolation, bilinear: (N, h, w) -> (N, H, W)."""
    from captum.attr import LayerAttribution

    return LayerAttribution.interpolate(raw.unsqueeze(1), size, interpolate_mode="bilinear")[:, 0]
