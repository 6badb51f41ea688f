"""Captum backend: Captum's layer attributions with the canonical pipeline's choices explicit.

* Grad-CAM: ``LayerGradCam``. Captum's defaults differ from the canonical pipeline (no ReLU,
  nearest upsampling), a classic source of disagreement between libraries; here
  ``relu_attributions=True`` and bilinear ``LayerAttribution.interpolate`` are asked for.
* HiResCAM: ``LayerGradientXActivation`` (gradient times activation, per channel and
  position), summed over channels and ReLU'd here: exactly HiResCAM's map.

Captum has no Grad-CAM++, XGrad-CAM or LayerCAM.

Token and channels-last layers (:mod:`xai_checks.cam.tokens`): Captum's ``LayerGradCam``
averages over every dimension after the second, which for (N, tokens, C) is the channels, so
there Captum gives the layer's gradient (``LayerGradientXActivation`` with
``multiply_by_inputs=False``) and activation (``LayerActivation``), both viewed as maps here
and combined by the method's formula: the cross-check is then on Captum's gradients.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from xai_checks.cam.pipeline import check_targets
from xai_checks.cam.state import check_layers_ran, frozen_eval, removing
from xai_checks.cam.tokens import MapView, ReshapeSpec, map_view, reshape_for

__all__ = ["CAPTUM_METHODS", "captum_raw_maps", "captum_upsample"]

CAPTUM_METHODS: tuple[str, ...] = ("gradcam", "hirescam")


def captum_raw_maps(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    x: Tensor,
    targets: Tensor | None,
    *,
    method: str = "gradcam",
    patch: int | None = None,
    reshape: ReshapeSpec = None,
) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """One Captum call per layer; returns ``({layer: (N, h, w)}, logits, targets)``.

    ``targets=None`` explains the predicted class of the plain forward's logits.
    """
    from captum.attr import LayerGradCam, LayerGradientXActivation

    if method not in CAPTUM_METHODS:
        raise ValueError(f"the captum backend offers {', '.join(CAPTUM_METHODS)}; not {method!r}")

    raw: dict[str, Tensor] = {}
    seen: set[str] = set()
    views: dict[str, MapView] = {}
    size = (int(x.shape[2]), int(x.shape[3]))

    def checker(name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            views[name] = map_view(
                name, output, size, patch=patch, reshape=reshape_for(reshape, name)
            )
            seen.add(name)

        return hook

    with frozen_eval(model, freeze=False):
        # One plain forward for the logits, which also validates the layers and the targets
        # with the native backend's messages (Captum's own are cryptic: an assertion for a
        # layer never run, an interpolation error for a non-spatial one, a bare index error).
        with torch.no_grad(), removing() as handles:
            for name, module in layers.items():
                handles.append(module.register_forward_hook(checker(name)))
            logits = model(x)
        if not isinstance(logits, Tensor) or logits.ndim != 2:
            raise ValueError("the model must return logits of shape (N, classes)")
        logits = logits.float()
        check_layers_ran(layers, seen)
        if targets is None:
            targets = logits.argmax(dim=1)
        check_targets(targets, logits.shape[1])
        with torch.enable_grad():
            for name, module in layers.items():
                view = views[name]
                if view.layout != "nchw":
                    raw[name] = _viewed(model, module, view, x, targets, method)
                elif method == "gradcam":
                    attr = LayerGradCam(model, module).attribute(
                        x, target=targets, relu_attributions=True, attr_dim_summation=True
                    )
                    raw[name] = attr.detach().float()[:, 0]
                else:
                    gxa = LayerGradientXActivation(model, module).attribute(x, target=targets)
                    raw[name] = torch.relu(gxa.detach().float().sum(dim=1))
    return raw, logits, targets


def _viewed(
    model: nn.Module, module: nn.Module, view: MapView, x: Tensor, targets: Tensor, method: str
) -> Tensor:
    """A non-(N, C, h, w) layer: Captum's gradient and activation, viewed, then combined."""
    from captum.attr import LayerActivation, LayerGradientXActivation

    grads = LayerGradientXActivation(model, module, multiply_by_inputs=False).attribute(
        x, target=targets
    )
    acts = LayerActivation(model, module).attribute(x)
    a, g = view(acts.detach().float()), view(grads.detach().float())
    if method == "gradcam":
        return torch.relu(torch.einsum("nchw,nc->nhw", a, g.mean(dim=(2, 3))))
    return torch.relu((a * g).sum(dim=1))


def captum_upsample(raw: Tensor, size: tuple[int, int]) -> Tensor:
    """Captum's own interpolation, bilinear: (N, h, w) -> (N, H, W)."""
    from captum.attr import LayerAttribution

    return LayerAttribution.interpolate(raw.unsqueeze(1), size, interpolate_mode="bilinear")[:, 0]
