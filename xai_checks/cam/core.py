"""The public CAM API: one object, any method of the Grad-CAM family, one canonical pipeline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

import torch
from torch import Tensor, nn

from xai_checks._util import as_model_input, check_finite, model_device, model_name
from xai_checks.cam.captum_backend import CAPTUM_METHODS, captum_raw_maps, captum_upsample
from xai_checks.cam.methods import CAMMethod, get_method
from xai_checks.cam.native import InPlaceModified, native_raw_maps
from xai_checks.cam.pipeline import REL_EPS, canonical, check_targets, normalise
from xai_checks.cam.private import PrivateCopy
from xai_checks.cam.state import LayerSpec, resolve_layers
from xai_checks.cam.tokens import ReshapeSpec, patch_size

__all__ = ["CAM", "DEFAULT_LAYERS", "Backend", "CAMResult", "Targets"]

Backend = Literal["native", "captum"]
DEFAULT_LAYERS: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")
Targets: TypeAlias = Tensor | Sequence[int] | int | None


@dataclass
class CAMResult:
    """CAM maps for a batch: per layer, raw (layer resolution) and canonical (input size)."""

    layers: tuple[str, ...]
    raw: dict[str, Tensor]
    maps: dict[str, Tensor]
    targets: Tensor
    logits: Tensor
    backend: str = "native"
    extra: dict[str, object] = field(default_factory=dict)
    method: str = "gradcam"
    # per layer, (N,): max over positions of sum_k |w_k A_k|, the scale the normaliser's floor is
    # relative to (native backend; empty for Captum, whose maps use their own largest value)
    magnitude: dict[str, Tensor] = field(default_factory=dict)

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
            self.method,
            {k: v.cpu() for k, v in self.magnitude.items()},
        )


def _first_conv_channels(model: nn.Module) -> int | None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return None


def _declared_size(model: nn.Module) -> tuple[int, int]:
    """The input size a model declares (torchvision's ViT ``image_size``, timm's
    ``patch_embed.img_size``), else 224 x 224."""
    size = getattr(model, "image_size", None)
    embed = getattr(model, "patch_embed", None)
    if size is None and isinstance(embed, nn.Module):
        size = getattr(embed, "img_size", None)
    if isinstance(size, int):
        return size, size
    if isinstance(size, tuple | list) and len(size) == 2 and all(isinstance(v, int) for v in size):
        return int(size[0]), int(size[1])
    return 224, 224


_FORMATS = (torch.contiguous_format, torch.channels_last)


class CAM:
    """A CAM method of the Grad-CAM family at one or more layers of a CNN or a Vision Transformer.

    Args:
        model: a classifier returning logits (N, classes). Its mode and ``requires_grad`` flags
            are restored after every call; hooks never outlive a call.
        layers: names (``"layer3"``, ``"layer4.2"``, ``"blocks.11"``) or modules; ``None`` (the
            default) is ``layer1``..``layer4`` for a model that has them (torchvision's
            ResNets), else picks them with :func:`~xai_checks.cam.locate_layers` traced at
            the input size the model declares (ViT's ``image_size``, timm's
            ``patch_embed.img_size``), else 224 x 224: a CNN's stages, a transformer's blocks.
        reshape: how a layer's output becomes (N, C, h, w) when it is none of the layouts
            recognised on their own (CNN maps, channels-last, ViT/DeiT tokens; see
            :mod:`xai_checks.cam.tokens`): one function for every layer, or ``{name: function}``,
            like pytorch-grad-cam's ``reshape_transform``. It is applied to the activation and
            to its gradient.
        method: a name in :data:`xai_checks.cam.METHODS` (``"gradcam"``, ``"gradcam++"``,
            ``"hirescam"``, ``"xgradcam"``, ``"layercam"``) or a ``CAMMethod``. Every method
            gets all layers from the same single forward and backward.
        backend: ``"native"`` (all layers from one forward and one activation-only backward) or
            ``"captum"`` (one Captum attribution per layer, for cross-validation; Grad-CAM via
            ``LayerGradCam``, HiResCAM via ``LayerGradientXActivation``).
        memory_format: ``torch.channels_last`` runs a private copy of the model (converted once,
            rebuilt when the model's parameters change) on a channels_last input; the user's
            model is never changed. Faster on CPU with oneDNN, but maps move by float32
            reordering (measured up to ~1e-5 on real photos, see benchmarks/results/), so it is
            opt-in. The default is ``torch.contiguous_format`` on every device.
        fused: native only; ``False`` runs one forward/backward per layer (benchmarks, checks).
        autocast: native only; e.g. ``torch.bfloat16`` to run the model under autocast. Maps are
            always combined in float32.
        eps: the min-max normaliser's *relative* floor: a map whose range is below ``eps``
            times its magnitude (max sum_k |w_k A_k|) is not resolved by float32 and is squashed
            towards 0 (see :mod:`xai_checks.cam.pipeline`).

    Call it on a batch ``x`` (N, C, H, W) with ``targets``: ``None`` for the predicted class, an
    int for one class for all images, or one class per image.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        layers: Sequence[LayerSpec] | LayerSpec | None = None,
        method: str | CAMMethod = "gradcam",
        backend: Backend = "native",
        memory_format: torch.memory_format = torch.contiguous_format,
        fused: bool = True,
        autocast: torch.dtype | None = None,
        eps: float = REL_EPS,
        reshape: ReshapeSpec = None,
    ) -> None:
        if backend not in ("native", "captum"):
            raise ValueError(f"unknown backend {backend!r}: use 'native' or 'captum'")
        self.method = get_method(method)
        if backend == "captum" and self.method.name not in CAPTUM_METHODS:
            raise ValueError(
                f"the captum backend has no {self.method.name!r}: it offers "
                f"{', '.join(CAPTUM_METHODS)}; use backend='native'"
            )
        if autocast is not None and backend != "native":
            raise ValueError("autocast is only supported by the native backend")
        if memory_format not in _FORMATS:
            raise ValueError(
                f"memory_format must be torch.contiguous_format or torch.channels_last; "
                f"got {memory_format}"
            )
        if memory_format != torch.contiguous_format and backend != "native":
            raise ValueError("memory_format is only supported by the native backend")
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0; got {eps}")
        if reshape is not None and not callable(reshape) and not isinstance(reshape, Mapping):
            raise TypeError("reshape must be a function or a {layer: function} mapping")
        self.model = model
        names = dict(model.named_modules())
        if layers is None and all(name in names for name in DEFAULT_LAYERS):
            layers = DEFAULT_LAYERS  # a torchvision-style ResNet: its four stages
        if layers is None:
            from xai_checks.cam.locate import locate_layers

            channels = _first_conv_channels(model) or 3
            layers = locate_layers(model, (1, channels, *_declared_size(model)))
            if not layers:
                raise ValueError(
                    f"found no layer of {type(model).__name__} whose output is a spatial map; "
                    "name layers=..."
                )
        self.layers = resolve_layers(model, layers)
        self.reshape = reshape
        self.patch = patch_size(model)
        self.backend: Backend = backend
        self.memory_format = memory_format
        self.fused = fused
        self.autocast = autocast
        self.eps = eps
        # Hooks hand activations on uncopied until a call finds one modified in place.
        self._clone = False
        self._classes: int | None = None  # the logits' class count seen by the last call
        self._private = (
            PrivateCopy(model, memory_format=memory_format)
            if memory_format != torch.contiguous_format
            else None
        )

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(self.layers)

    def refresh(self) -> None:
        """Drop the private channels_last copy (after changing weights through ``.data``)."""
        if self._private is not None:
            self._private.refresh()

    def _engine_model(self) -> tuple[nn.Module, dict[str, nn.Module]]:
        """The model the maps come from (the user's, or the private copy) and its layers."""
        if self._private is None:
            return self.model, self.layers
        clone = self._private.get()
        return clone, {name: clone.get_submodule(name) for name in self.layers}

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

    def _targets(self, targets: Targets, n: int, device: torch.device) -> Tensor | None:
        if targets is None:
            return None
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
        if t.device.type == "cpu" and self._classes is not None:
            # Range-checked here, on the host, against the class count of the previous call
            # (the backend checks it again if the logits say otherwise): no device sync.
            check_targets(t, self._classes)
        # From host memory a non-blocking copy returns once the data is staged: no stream sync.
        return t.to(device, non_blocking=t.device.type == "cpu")

    def __call__(self, x: Tensor, *, targets: Targets = None) -> CAMResult:
        self._check_input(x)
        device = model_device(self.model)
        # Always a private copy: a model that works in place on its input (a first
        # ReLU(inplace=True), an ``x.sub_(mean)``) must not reach the caller's tensor.
        x = as_model_input(x.detach().to(device, copy=True), self.model)
        t = self._targets(targets, x.shape[0], device)
        size = (int(x.shape[2]), int(x.shape[3]))
        raw: dict[str, Tensor] = {}
        scales: dict[str, Tensor] = {}
        # Targets (given or predicted) are range-checked by the backends against the logits.
        if self.backend == "captum":
            raw, logits, t = captum_raw_maps(
                self.model,
                self.layers,
                x,
                t,
                method=self.method.name,
                patch=self.patch,
                reshape=self.reshape,
            )
            maps = {k: normalise(captum_upsample(v, size), eps=self.eps) for k, v in raw.items()}
        else:
            model, layers = self._engine_model()
            if self.memory_format != torch.contiguous_format:
                x = x.contiguous(memory_format=self.memory_format)
            groups = [layers] if self.fused else [{k: v} for k, v in layers.items()]
            logits = torch.empty(0)
            scales = {}
            checked = self._classes if targets is not None else None
            if isinstance(targets, Tensor) and targets.device.type != "cpu":
                checked = None  # given on the device: the backend checks them (one sync)
            for group in groups:
                try:
                    part, logits, t, part_scales = native_raw_maps(
                        model,
                        group,
                        x,
                        t,
                        method=self.method,
                        autocast=self.autocast,
                        clone=self._clone,
                        checked_classes=checked,
                        patch=self.patch,
                        reshape=self.reshape,
                    )
                except InPlaceModified:
                    self._clone = True  # this model needs the copies: remember it
                    part, logits, t, part_scales = native_raw_maps(
                        model,
                        group,
                        x,
                        t,
                        method=self.method,
                        autocast=self.autocast,
                        clone=True,
                        checked_classes=checked,
                        patch=self.patch,
                        reshape=self.reshape,
                    )
                raw.update(part)
                scales.update(part_scales)
                checked = int(logits.shape[1])  # the next groups get this call's checked targets
            maps = {
                k: canonical(v.contiguous(), size, eps=self.eps, scale=scales[k])
                for k, v in raw.items()
            }
        assert t is not None
        self._classes = int(logits.shape[1])
        # NaN logits would read as class 0 and NaN maps as ratio 0: refuse them, naming the model.
        # One host sync for all of them (on a GPU each check is a sync that stalls the queue);
        # the per-tensor checks, which name what is wrong, run only when something is.
        flags = [torch.isfinite(logits).all(), *(torch.isfinite(v).all() for v in raw.values())]
        if not bool(torch.stack(flags).all()):
            who = model_name(self.model)
            check_finite(logits, what=f"the logits of {who}")
            for layer, values in raw.items():
                check_finite(values, what=f"the {layer} {self.method.title} maps of {who}")
        return CAMResult(
            self.layer_names,
            raw,
            maps,
            t,
            logits,
            self.backend,
            method=self.method.name,
            magnitude=scales,
        )
