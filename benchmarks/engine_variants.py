"""Engine experiments, measured beside the shipped engine before anyone moves them into it.

Each variant must give the same maps as the shipped engine (checked in the benchmark before it
is timed) or report its difference, and is measured in the same run as the shipped engine and
plain inference. Variants build on the engine (``xai_checks.cam``): none re-implements it.

* ``layer4_analytic``: at a stage followed only by global average pooling and a linear layer,
  d logit_c / dA = fc.weight[c] / (h*w) everywhere, so the Grad-CAM weights are known without a
  backward: one ``inference_mode`` forward plus an einsum.
* ``fold_batchnorm``: a copy of the model with every eval-mode BatchNorm folded into its conv
  (maps move by ~5e-4, so this stays an experiment).

The former ``native_raw_maps_noclone`` fork is gone: the shipped engine now hands activations
on uncopied and falls back to copies only when the model changes one in place.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from xai_checks.cam.pipeline import canonical, weighted_map

__all__ = ["fold_batchnorm", "layer4_analytic"]


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
