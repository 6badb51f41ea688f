"""The public Grad-CAM API: one object, two backends, one canonical pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

import torch
from torch import Tensor, nn

from xai_checks._util import as_model_input, check_finite, model_device, model_name
from xai_checks.cam.captum_backend import captum_raw_maps, captum_upsample
from xai_checks.cam.native import native_raw_maps
from xai_checks.cam.pipeline import canonical, check_targets, minmax_normalise
from xai_checks.cam.state import LayerSpec, frozen_eval, resolve_layers

__all__ = ["DEFAULT_LAYERS", "Backend", "CAMResult", "GradCAM"]

Backend = Literal["native", "captum"]
DEFAULT_LAYERS: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")
Targets: TypeAlias = Tensor | Sequence[int] | int | None


@dataclass
class CAMResult:
    """Grad-CAM maps for a batch: per layer, raw (layer resolution) and canonical (input size)."""

    layers: tuple[str, ...]
    raw: dict[str, Tensor]
    maps: dict[str, Tensor]
    targets: Tensor
    logits: Tensor
    backend: str = "native"
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def predictions(self) -> Tensor:
        """Top-1 predicted class per image, (N,)."""
        return self.logits.argmax(dim=1)

    def cpu(self) -> CAMResult:
        """A copy with every tensor on the CPU."""
        return CAMResult(
            self.layers,
            {k: v.cpu() for k, v in self.raw.items()},
            {k: v.cpu() for k, v in self.maps.items()},
            self.targets.cpu(),
            self.logits.cpu(),
            self.backend,
            dict(self.extra),
        )


def _first_conv_channels(model: nn.Module) -> int | None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return None


class GradCAM:
    """Grad-CAM at one or more layers of a CNN classifier.

    Args:
        model: a classifier returning logits (N, classes). Its mode and ``requires_grad`` flags
            are restored after every call; hooks never outlive a call.
        layers: names (``"layer3"``, ``"layer4.2"``) or modules.
        backend: ``"native"`` (all layers from one forward and one activation-only backward) or
            ``"captum"`` (``LayerGradCam`` per layer, for cross-validation).
        fused: native only; ``False`` runs one forward/backward per layer (benchmarks, checks).
        autocast: native only; e.g. ``torch.bfloat16`` to run the model under autocast. Maps are
            always combined in float32.
        eps: the min-max normaliser's epsilon.

    Call it on a batch ``x`` (N, C, H, W) with ``targets``: ``None`` for the predicted class, an
    int for one class for all images, or one class per image.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        layers: Sequence[LayerSpec] | LayerSpec = DEFAULT_LAYERS,
        backend: Backend = "native",
        fused: bool = True,
        autocast: torch.dtype | None = None,
        eps: float = 1e-8,
    ) -> None:
        if backend not in ("native", "captum"):
            raise ValueError(f"unknown backend {backend!r}: use 'native' or 'captum'")
        if autocast is not None and backend != "native":
            raise ValueError("autocast is only supported by the native backend")
        self.model = model
        self.layers = resolve_layers(model, layers)
        self.backend: Backend = backend
        self.fused = fused
        self.autocast = autocast
        self.eps = eps

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(self.layers)

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"input must be a tensor; got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"input must have shape (N, C, H, W); got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"input must be floating point; got {x.dtype}")
        channels = _first_conv_channels(self.model)
        if channels is not None and x.shape[1] != channels:
            raise ValueError(f"input has {x.shape[1]} channels; the model expects {channels}")
        if x.shape[0] == 0:
            raise ValueError("empty batch")

    def _targets(
        self, targets: Targets, n: int, device: torch.device, logits: Tensor | None
    ) -> Tensor:
        if targets is None:
            assert logits is not None
            return logits.argmax(dim=1)
        if isinstance(targets, int) and not isinstance(targets, bool):
            t = torch.full((n,), targets, dtype=torch.long)
        else:
            t = torch.as_tensor(targets)
            if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
                # .long() would silently truncate 1.7 to class 1
                raise TypeError(f"targets must be integer class indices; got {t.dtype}")
            t = t.long().reshape(-1)
            if t.numel() == 1 and n > 1:
                t = t.expand(n)
        if t.numel() != n:
            raise ValueError(f"got {t.numel()} targets for {n} images")
        return t.to(device)

    def _check_targets(self, t: Tensor, classes: int) -> None:
        check_targets(t, classes)

    @torch.no_grad()
    def _predict(self, x: Tensor) -> Tensor:
        # frozen_eval restores every module's own flag; ``model.train(was)`` would overwrite a
        # mix (e.g. BN layers kept in eval while fine-tuning) with the root's flag.
        with frozen_eval(self.model, freeze=False):
            return self.model(x).float()

    def __call__(self, x: Tensor, *, targets: Targets = None) -> CAMResult:
        self._check_input(x)
        device = model_device(self.model)
        # Always a private copy: a model that works in place on its input (a first
        # ReLU(inplace=True), an ``x.sub_(mean)``) must not reach the caller's tensor.
        x = as_model_input(x.detach().to(device, copy=True), self.model)
        n = x.shape[0]
        pre_logits = self._predict(x) if targets is None else None
        t = self._targets(targets, n, device, pre_logits)
        if pre_logits is not None:
            self._check_targets(t, pre_logits.shape[1])
        size = (int(x.shape[2]), int(x.shape[3]))
        raw: dict[str, Tensor] = {}
        # Explicit targets are range-checked by the backends against the logits themselves.
        if self.backend == "captum":
            raw, logits = captum_raw_maps(self.model, self.layers, x, t)
            maps = {
                k: minmax_normalise(captum_upsample(v, size), eps=self.eps) for k, v in raw.items()
            }
        else:
            groups = [self.layers] if self.fused else [{k: v} for k, v in self.layers.items()]
            logits = torch.empty(0)
            for group in groups:
                part, logits = native_raw_maps(self.model, group, x, t, autocast=self.autocast)
                raw.update(part)
            maps = {k: canonical(v, size, eps=self.eps) for k, v in raw.items()}
        # NaN logits would read as class 0 and NaN maps as ratio 0: refuse them, naming the model.
        who = model_name(self.model)
        check_finite(logits, what=f"the logits of {who}")
        for layer, values in raw.items():
            check_finite(values, what=f"the {layer} Grad-CAM maps of {who}")
        return CAMResult(self.layer_names, raw, maps, t, logits, self.backend)
