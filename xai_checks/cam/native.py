"""Native backend: all requested layers in one forward and one activation-only backward."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from xai_checks.cam.methods import CAMMethod, get_method
from xai_checks.cam.pipeline import check_targets, magnitude, weighted_map
from xai_checks.cam.state import check_layers_ran, frozen_eval, removing
from xai_checks.cam.tokens import MapView, ReshapeSpec, map_view, reshape_for

__all__ = ["InPlaceModified", "native_raw_maps"]


class InPlaceModified(RuntimeError):
    """A captured activation was changed in place downstream (only raised with ``clone=False``;
    the caller reruns with ``clone=True``)."""


def _capture(
    store: dict[str, Tensor],
    versions: dict[str, int],
    views: dict[str, MapView],
    name: str,
    clone: bool,
    see: Any,
) -> Any:
    def hook(module: nn.Module, args: Any, output: Any) -> Tensor | None:
        views[name] = see(name, output)
        act = output if output.requires_grad else output.detach().requires_grad_(True)
        store[name] = act
        versions[name] = act._version
        if clone:
            # Downstream code gets a copy, so in-place ops after this layer (ReLU(inplace=True),
            # ``out += identity``) never change the tensor we differentiate against.
            return act.clone()
        # No copy (a full activation write saved per layer): downstream gets the tensor itself.
        # An in-place op on it then bumps its version counter (checked after the forward) or,
        # on the leaf made for the shallowest layer, raises in autograd; either way the caller
        # reruns with clone=True. ResNet's stage outputs are never modified in place.
        return None if act is output else act

    return hook


def native_raw_maps(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    x: Tensor,
    targets: Tensor | None,
    *,
    method: str | CAMMethod = "gradcam",
    autocast: torch.dtype | None = None,
    clone: bool = True,
    checked_classes: int | None = None,
    patch: int | None = None,
    reshape: ReshapeSpec = None,
) -> tuple[dict[str, Tensor], Tensor, Tensor, dict[str, Tensor]]:
    """Raw CAM maps for every layer from one forward and one ``autograd.grad``.

    Parameters are frozen for the call, so no parameter gradients are computed and the graph
    starts at the shallowest hooked layer: nothing below it is recorded or back-propagated.
    ``targets=None`` explains the predicted class (the argmax of this very forward's logits).
    ``clone=False`` skips the per-layer copy in the hooks and raises :class:`InPlaceModified`
    if a captured activation was modified in place (exactness is never traded).
    ``checked_classes``: the caller has range-checked ``targets`` against that many classes;
    when the logits have that many, the check here (a device sync on a GPU) is skipped.
    Token and channels-last layers are seen as maps by :mod:`xai_checks.cam.tokens` (``patch``:
    the model's patch size; ``reshape``: the user's hook); the gradient is taken against the
    layer's own output and viewed the same way, so every method sees (N, C, h, w) pairs.
    Returns ``({layer: (N, h, w) raw map}, logits, targets, {layer: (N,) magnitude})``.
    """
    cam_method = get_method(method)
    acts: dict[str, Tensor] = {}
    versions: dict[str, int] = {}
    views: dict[str, MapView] = {}
    size = (int(x.shape[2]), int(x.shape[3]))

    def see(name: str, output: Any) -> MapView:
        return map_view(name, output, size, patch=patch, reshape=reshape_for(reshape, name))

    amp = (
        torch.autocast(device_type=x.device.type, dtype=autocast)
        if autocast is not None
        else contextlib.nullcontext()
    )
    with frozen_eval(model), removing() as handles, torch.enable_grad():
        for name, module in layers.items():
            handles.append(
                module.register_forward_hook(_capture(acts, versions, views, name, clone, see))
            )
        with amp:
            try:
                logits = model(x)
            except RuntimeError as exc:
                if clone or "in-place" not in str(exc):
                    raise
                raise InPlaceModified(str(exc)) from exc
        if not isinstance(logits, Tensor) or logits.ndim != 2:
            raise ValueError("the model must return logits of shape (N, classes)")
        check_layers_ran(layers, acts)
        changed = [n for n in layers if acts[n]._version != versions[n]]
        if changed:
            if not clone:
                raise InPlaceModified(f"layers {changed} were modified in place downstream")
            raise AssertionError(f"cloned activations of {changed} changed")  # pragma: no cover
        if targets is None:
            targets = logits.detach().argmax(dim=1)  # in range by construction
        elif checked_classes != logits.shape[1]:
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
        view = views[name]
        a, g = view(acts[name].detach().float()), view(grad.float())
        w = cam_method.weights(a, g)
        raw[name] = weighted_map(a, w)
        scales[name] = magnitude(a, w)
    return raw, logits.detach().float(), targets, scales
