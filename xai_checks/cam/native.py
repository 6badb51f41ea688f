"""Native backend: all requested layers in one forward and one activation-only backward."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from xai_checks.cam.methods import CAMMethod, get_method
from xai_checks.cam.pipeline import check_targets, magnitude, weighted_map
from xai_checks.cam.state import check_layer_output, check_layers_ran, frozen_eval, removing

__all__ = ["native_raw_maps"]


def _capture(store: dict[str, Tensor], name: str) -> Any:
    def hook(module: nn.Module, args: Any, output: Any) -> Tensor:
        check_layer_output(name, output)
        act = output if output.requires_grad else output.detach().requires_grad_(True)
        store[name] = act
        # Downstream code gets a copy, so in-place ops after this layer (ReLU(inplace=True),
        # ``out += identity``) never change the tensor we differentiate against.
        return act.clone()

    return hook


def native_raw_maps(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    x: Tensor,
    targets: Tensor | None,
    *,
    method: str | CAMMethod = "gradcam",
    autocast: torch.dtype | None = None,
) -> tuple[dict[str, Tensor], Tensor, Tensor, dict[str, Tensor]]:
    """Raw CAM maps for every layer from one forward and one ``autograd.grad``.

    Parameters are frozen for the call, so no parameter gradients are computed and the graph
    starts at the shallowest hooked layer: nothing below it is recorded or back-propagated.
    ``targets=None`` explains the predicted class (the argmax of this very forward's logits).
    Returns ``({layer: (N, h, w) raw map}, logits, targets, {layer: (N,) magnitude})``.
    """
    cam_method = get_method(method)
    acts: dict[str, Tensor] = {}
    amp = (
        torch.autocast(device_type=x.device.type, dtype=autocast)
        if autocast is not None
        else contextlib.nullcontext()
    )
    with frozen_eval(model), removing() as handles, torch.enable_grad():
        for name, module in layers.items():
            handles.append(module.register_forward_hook(_capture(acts, name)))
        with amp:
            logits = model(x)
        if not isinstance(logits, Tensor) or logits.ndim != 2:
            raise ValueError("the model must return logits of shape (N, classes)")
        check_layers_ran(layers, acts)
        if targets is None:
            targets = logits.detach().argmax(dim=1)
        check_targets(targets, logits.shape[1])
        score = logits.gather(1, targets.view(-1, 1)).sum()
        names = list(layers)
        try:
            grads = torch.autograd.grad(score, [acts[n] for n in names])
        except RuntimeError as exc:
            raise ValueError(
                f"the target score does not depend on every requested layer ({names}): {exc}"
            ) from exc
    raw, scales = {}, {}
    for name, grad in zip(names, grads, strict=True):
        a, g = acts[name].detach().float(), grad.float()
        w = cam_method.weights(a, g)
        raw[name] = weighted_map(a, w)
        scales[name] = magnitude(a, w)
    return raw, logits.detach().float(), targets, scales
