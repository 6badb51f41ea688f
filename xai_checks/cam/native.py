"""Native backend: all requested layers in one forward and one activation-only backward."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from xai_checks.cam.methods import CAMMethod, LayerInputs, Terms, get_method
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


def _amp(device_type: str, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


def _model_forward(model: nn.Module, autocast: torch.dtype | None) -> Callable[[Tensor], Tensor]:
    """The model as a method that builds its own inputs sees it: eval mode, no gradients, no
    hooks (the caller's are removed), float32 logits."""

    def forward(batch: Tensor) -> Tensor:
        with frozen_eval(model), torch.no_grad(), _amp(batch.device.type, autocast):
            return model(batch).float()

    return forward


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

    The method's ``needs`` decide the rest: without ``"gradients"`` the forward runs under
    ``no_grad`` and nothing is back-propagated; with ``"model"`` the method gets the input, the
    targets and a hook-free forward of the model (eval mode, no gradients).

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

    amp = _amp(x.device.type, autocast)
    backward = "gradients" in cam_method.needs
    grad_mode = torch.enable_grad() if backward else torch.no_grad()
    with frozen_eval(model), removing() as handles, grad_mode:
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
        names = list(layers)
        grads: tuple[Tensor | None, ...] = (None,) * len(names)
        if backward:
            score = logits.gather(1, targets.view(-1, 1)).sum()
            try:
                grads = torch.autograd.grad(score, [acts[n] for n in names])
            except RuntimeError as exc:
                raise ValueError(
                    f"the target score does not depend on every requested layer ({names}): {exc}"
                ) from exc
    model_given = "model" in cam_method.needs
    forward = _model_forward(model, autocast) if model_given else None
    raw, scales = {}, {}
    for name, grad in zip(names, grads, strict=True):
        view = views[name]
        a = view(acts[name].detach().float())
        g = view(grad.float()) if grad is not None else None
        w = cam_method.weights(
            LayerInputs(
                acts=a,
                grads=g,
                x=x if model_given else None,
                targets=targets if model_given else None,
                forward=forward,
            )
        )
        terms = w if isinstance(w, Terms) else Terms(values=a, weights=w)
        raw[name] = weighted_map(terms.values, terms.weights)
        scales[name] = magnitude(terms.values, terms.weights)
    return raw, logits.detach().float(), targets, scales
