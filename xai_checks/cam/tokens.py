"""Seeing a layer's output as a spatial map (N, C, h, w): CNN maps, token sequences, channels-last.

A CAM needs an activation laid out as channels over a spatial grid. Three layouts are
recognised from the output's shape and the input size (H, W):

* ``(N, C, h, w)`` with ``h : w`` the input's ``H : W`` (up to the rounding of strided layers):
  a CNN map, used as it is;
* ``(N, h, w, C)`` with ``h : w`` the input's: channels-last (Swin's stages, ConvNeXt's blocks
  inside), permuted to ``(N, C, h, w)``;
* ``(N, T, C)``: a Vision Transformer's tokens. The patch tokens are the last ``h * w``
  (``h, w`` = the patch grid: ``H // p, W // p`` for the patch size ``p`` of the model's patch
  embedding, a convolution whose stride equals its kernel); the ``T - h * w`` tokens before them
  are class, distillation or register tokens and are dropped. Without a patch embedding the grid
  is the largest ``(H // p) x (W // p)`` that leaves at most :data:`MAX_PREFIX` leading tokens.

This is pytorch-grad-cam's ``reshape_transform`` (``tensor[:, 1:].reshape(N, h, w, C)`` then
channels first) made automatic. Anything else -- attention heads ``(N, heads, T, d)``, a pooled
``(N, C)`` vector, a ``1 x 1`` map -- cannot be a map and is refused; a model with another
layout passes ``reshape=`` (a function from the layer's output to ``(N, C, h, w)``).

The view is a slice and a permutation, so the gradient of the viewed activation is the same
view of the layer's gradient: the engine differentiates the layer's own output and views both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeAlias

from torch import Tensor, nn

__all__ = [
    "MAX_PREFIX",
    "MapView",
    "NotAMap",
    "Reshape",
    "ReshapeSpec",
    "layout_of",
    "map_view",
    "patch_size",
    "reshape_for",
]

#: The most leading non-patch tokens inferred without a patch embedding (a class token, a
#: distillation token and up to 8 register tokens fit).
MAX_PREFIX = 16

Reshape: TypeAlias = Callable[[Tensor], Tensor]
ReshapeSpec: TypeAlias = Reshape | Mapping[str, Reshape] | None
Layout = Literal["nchw", "nhwc", "tokens", "custom"]


class NotAMap(ValueError):
    """A layer's output that cannot be seen as a spatial map."""


def _aspect_ok(h: int, w: int, size: tuple[int, int]) -> bool:
    """``h x w`` (above 1 x 1) is the input's ``H x W`` shrunk by one factor, up to one pixel
    of rounding: ``|h W - w H| <= max(H, W)``."""
    big_h, big_w = size
    return h * w > 1 and abs(h * big_w - w * big_h) <= max(big_h, big_w)


def patch_size(model: nn.Module) -> int | None:
    """The stride of the model's patch embedding: its first 2-D convolution whose stride equals
    its kernel size and is above 1 (ViT's ``conv_proj``, timm's ``patch_embed.proj``)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            k, s = tuple(module.kernel_size), tuple(module.stride)
            if k == s and k[0] == k[1] and k[0] > 1:
                return int(k[0])
    return None


def _token_grid(tokens: int, size: tuple[int, int], patch: int | None) -> tuple[int, int] | None:
    big_h, big_w = size
    if patch is not None:
        grid = (big_h // patch, big_w // patch)
        if 0 < grid[0] * grid[1] <= tokens:
            return grid
    for p in range(1, min(big_h, big_w) + 1):
        gh, gw = big_h // p, big_w // p
        if gh * gw <= tokens:
            return (gh, gw) if tokens - gh * gw <= MAX_PREFIX and gh * gw > 1 else None
    return None


@dataclass(frozen=True)
class MapView:
    """How one layer's output becomes ``(N, C, h, w)``; call it on the output or its gradient."""

    layout: Layout
    grid: tuple[int, int] | None = None
    prefix: int = 0
    custom: Reshape | None = None

    def __call__(self, t: Tensor) -> Tensor:
        if self.layout == "nchw":
            return t
        if self.layout == "nhwc":
            return t.permute(0, 3, 1, 2)
        if self.layout == "tokens":
            assert self.grid is not None
            n, _, c = t.shape
            patches = t[:, self.prefix :]
            return patches.reshape(n, self.grid[0], self.grid[1], c).permute(0, 3, 1, 2)
        assert self.custom is not None
        return self.custom(t)

    def describe(self) -> str:
        if self.layout == "tokens":
            assert self.grid is not None
            return f"tokens: {self.prefix} dropped, {self.grid[0]}x{self.grid[1]} patches"
        return {"nchw": "(N, C, h, w)", "nhwc": "channels-last (N, h, w, C)"}.get(
            self.layout, "reshape hook"
        )


def layout_of(
    shape: tuple[int, ...], size: tuple[int, int], *, patch: int | None = None
) -> MapView | None:
    """The view that makes an output of ``shape`` a map for an input of ``size`` (H, W), or
    ``None`` when it cannot be one. ``(N, C, h, w)`` wins over channels-last when both fit."""
    if len(shape) == 4:
        if _aspect_ok(shape[2], shape[3], size):
            return MapView("nchw")
        if _aspect_ok(shape[1], shape[2], size):
            return MapView("nhwc")
        return None
    if len(shape) == 3:
        grid = _token_grid(int(shape[1]), size, patch)
        if grid is not None:
            return MapView("tokens", grid=grid, prefix=int(shape[1]) - grid[0] * grid[1])
    return None


def reshape_for(reshape: ReshapeSpec, name: str) -> Reshape | None:
    """The user's hook for layer ``name``: one function for all layers, or one per layer."""
    if reshape is None or callable(reshape):
        return reshape
    return reshape.get(name)


def map_view(
    name: str,
    output: object,
    size: tuple[int, int],
    *,
    patch: int | None = None,
    reshape: Reshape | None = None,
) -> MapView:
    """The view of layer ``name``'s ``output``; :class:`NotAMap` (a ``ValueError``) naming the
    shape and what to do when it cannot be a map. ``TypeError`` when it is not a tensor."""
    if not isinstance(output, Tensor):
        raise TypeError(
            f"layer {name!r} returns {type(output).__name__}, not a tensor; hook a module "
            "whose output is the feature map"
        )
    if reshape is not None:
        mapped = reshape(output.detach())
        if not isinstance(mapped, Tensor) or mapped.ndim != 4 or mapped.shape[0] != output.shape[0]:
            got = tuple(mapped.shape) if isinstance(mapped, Tensor) else type(mapped).__name__
            raise NotAMap(
                f"the reshape hook for layer {name!r} must return (N, C, h, w) with the batch "
                f"first; it returned {got}"
            )
        return MapView("custom", custom=reshape)
    view = layout_of(tuple(output.shape), size, patch=patch)
    if view is None:
        raise NotAMap(
            f"layer {name!r} outputs shape {tuple(output.shape)}, which is not a spatial map "
            f"for a {size[0]}x{size[1]} input: a CAM needs (N, C, h, w), channels-last "
            "(N, h, w, C) or transformer tokens (N, tokens, C) with h x w > 1. Pick a block "
            "whose output is one, or pass reshape= (a function to (N, C, h, w))"
        )
    return view
