"""Engine experiments, proven here by monkeypatching before anyone edits ``xai_checks/``.

Each variant must give the same maps as the shipped engine (checked in the benchmark before it
is timed) and is measured in the same run as the shipped engine and plain inference.

* ``native_raw_maps_noclone``: the shipped forward hook returns ``act.clone()`` so that an
  in-place op downstream cannot change the tensor we differentiate against. This variant returns
  the activation itself, records its autograd version counter, and checks after the backward
  that no op bumped it; if one did it reruns the call the shipped (cloning) way. Exact.
* ``layer4_analytic``: at a stage followed only by global average pooling and a linear layer,
  d logit_c / dA = fc.weight[c] / (h*w) everywhere, so the Grad-CAM weights are known without a
  backward: one ``inference_mode`` forward plus an einsum (DESIGN.md section 3).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from xai_checks.cam import native as _native
from xai_checks.cam.pipeline import canonical, channel_weights, weighted_map
from xai_checks.cam.state import frozen_eval, removing

__all__ = ["layer4_analytic", "native_raw_maps_noclone"]


def _capture_noclone(store: dict[str, Tensor], versions: dict[str, int], name: str) -> Any:
    def hook(module: nn.Module, args: Any, output: Any) -> Tensor | None:
        if not isinstance(output, Tensor) or output.ndim != 4:
            raise TypeError(f"layer {name!r} does not output an (N, C, h, w) tensor")
        if output.requires_grad:
            act = output
            store[name] = act
            versions[name] = act._version
            return None  # the module's own output flows on, uncopied
        act = output.detach().requires_grad_(True)
        store[name] = act
        versions[name] = act._version
        return act  # a leaf: an in-place op on it downstream would raise, never corrupt

    return hook


def native_raw_maps_noclone(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    x: Tensor,
    targets: Tensor,
    *,
    autocast: torch.dtype | None = None,
) -> tuple[dict[str, Tensor], Tensor]:
    """Drop-in for ``xai_checks.cam.native.native_raw_maps`` without the per-layer clone."""
    acts: dict[str, Tensor] = {}
    versions: dict[str, int] = {}
    amp = (
        torch.autocast(device_type=x.device.type, dtype=autocast)
        if autocast is not None
        else contextlib.nullcontext()
    )
    names = list(layers)
    try:
        with frozen_eval(model), removing() as handles, torch.enable_grad():
            for name, module in layers.items():
                handles.append(module.register_forward_hook(_capture_noclone(acts, versions, name)))
            with amp:
                logits = model(x)
            if not isinstance(logits, Tensor) or logits.ndim != 2:
                raise ValueError("the model must return logits of shape (N, classes)")
            missing = [n for n in names if n not in acts]
            if missing:
                raise ValueError(f"layers {missing} were not run by the model's forward")
            if any(acts[n]._version != versions[n] for n in names):
                raise _Modified
            score = logits.gather(1, targets.view(-1, 1)).sum()
            grads = torch.autograd.grad(score, [acts[n] for n in names])
    except (_Modified, RuntimeError):
        # An in-place op touched a captured activation (or autograd refused because of one):
        # do it the safe, cloning way.
        return _native.native_raw_maps(model, layers, x, targets, autocast=autocast)
    raw = {
        name: weighted_map(acts[name].detach().float(), channel_weights(grad.float()))
        for name, grad in zip(names, grads, strict=True)
    }
    return raw, logits.detach().float()


class _Modified(Exception):
    pass


def layer4_analytic(model: nn.Module, x: Tensor, targets: Tensor) -> dict[str, Tensor]:
    """Grad-CAM at ``model.layer4`` of a torchvision-style ResNet without any backward."""
    store: dict[str, Tensor] = {}

    def hook(module: nn.Module, args: Any, output: Tensor) -> None:
        store["a"] = output

    layer4 = model.get_submodule("layer4")
    fc = model.get_submodule("fc")
    assert isinstance(fc, nn.Linear)
    handle = layer4.register_forward_hook(hook)
    try:
        with torch.inference_mode():
            logits = model(x)
            acts = store["a"].float()
            h, w = acts.shape[-2:]
            weights = fc.weight[targets].float() / (h * w)
            raw = weighted_map(acts, weights)
            maps = canonical(raw, (int(x.shape[2]), int(x.shape[3])))
    finally:
        handle.remove()
    return {"raw": raw, "maps": maps, "logits": logits}


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of a torchvision-style ResNet with every eval-mode BatchNorm folded into its conv.

    Module names are kept (``layer1`` .. ``layer4`` still exist, ``bn*`` become ``Identity``), so
    hooks by name work on the copy. Exact in real arithmetic; float32 rounding differs slightly.
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    m = copy.deepcopy(model).eval()

    def fold(parent: nn.Module, conv_name: str, bn_name: str) -> None:
        conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
        assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
        setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
        setattr(parent, bn_name, nn.Identity())

    fold(m, "conv1", "bn1")
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for block in m.get_submodule(stage).children():
            for i in (1, 2, 3):
                fold(block, f"conv{i}", f"bn{i}")
            ds = getattr(block, "downsample", None)
            if ds is not None:
                fold(ds, "0", "1")
    return m
