"""Pick a CNN's stages automatically: the last module at each spatial resolution, traced.

Like torch-cam's ``locate_candidate_layer``, one forward pass of a zero input is traced with
hooks on every module; unlike it, one layer is returned per resolution, shallow to deep.

The rule, stated exactly (``locate_layers``):

1. For each spatial resolution r (h x w > 1 x 1) seen in the trace, find the module call that
   leaves r: the *outermost* one whose input is an (N, C, h, w) tensor at r and whose output is
   at a lower spatial resolution (ResNet-50: ``layer2`` leaves 56 x 56); for a resolution
   never left that way (the deepest), the *last* call from r to a global output, 1 x 1 or
   flat (``avgpool`` leaves 7 x 7; the global pooling inside squeeze-and-excitation blocks is
   a side branch and comes earlier). The root module itself never counts. The leaving call's
   input is the last tensor at r on the main path -- the stage's output.
2. The candidates are the modules that returned that very tensor (same object and same
   in-place version, so a BatchNorm whose output a later in-place ReLU changed does not count).
3. Of those, the stage is the outermost one that does not contain another stage's innermost
   candidate (``features`` of MobileNet returns the 7 x 7 tensor but also contains the 112 x
   112 stage, so ``features.12`` is named).
4. A resolution whose tensor no module containing a convolution returned is skipped: ResNet's
   stem tensor at 112 x 112 comes from a bare ``bn1``/``relu``, which is no stage, so ResNet-50
   gives ``layer1, layer2, layer3, layer4`` (not ``relu`` or ``maxpool``).

If a tensor at r comes from a function rather than a module (no candidate), the last module
call whose output is at r is used instead. A resolution whose tensor no stage returned does not
hide the stage that contains it (a stage ``conv, ReLU, MaxPool`` is named, not skipped for the
bare ReLU inside it at the finer resolution).

Transformers (``locate_layers`` checks this first): where the model runs *blocks* -- children of
one ``nn.Sequential`` / ``nn.ModuleList``, at least two of the same class, each called once --
whose outputs are tokens (N, T, C) or channels-last maps (N, h, w, C) (see
:mod:`xai_checks.cam.tokens`), the layers are blocks, not the patch embedding:

* one grid for all blocks (ViT, DeiT): the last block of each quarter of the depth (blocks
  3, 6, 9 and 12 of 12);
* several grids (Swin): the last block at each grid.

A block whose patch tokens do not reach the score (the last block of a model that classifies
from its class token alone: only that token goes on to the head, so the patch tokens' gradient
is exactly zero) has no map; the block before it in the same quarter is taken instead. This is
measured with one backward pass of a seeded random input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from xai_checks.cam.state import frozen_eval, removing
from xai_checks.cam.tokens import MapView, layout_of, patch_size

__all__ = ["locate_layers"]


@dataclass
class _Call:
    name: str
    start: int
    end: int = -1
    inp: Tensor | None = None
    out: Tensor | None = None
    out_version: int = -1


def _res(t: Any, aspect: tuple[int, int]) -> tuple[int, int] | None:
    """(h, w) of an (N, C, h, w) tensor whose h : w is the input's H : W (up to the rounding of
    strided layers); anything else (a flat vector, ConvNeXt's channels-last (N, h, w, C)
    permutes) is not a spatial map."""
    if isinstance(t, Tensor) and t.ndim == 4:
        h, w = int(t.shape[2]), int(t.shape[3])
        big_h, big_w = aspect
        if abs(h * big_w - w * big_h) <= big_h + big_w:
            return h, w
    return None


def _has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules())


def _contains(outer: str, inner: str) -> bool:
    return outer == "" or inner.startswith(outer + ".")


def locate_layers(
    model: nn.Module,
    input_shape: tuple[int, ...] = (1, 3, 224, 224),
) -> list[str]:
    """The names of ``model``'s stages, shallow to deep (see the module docstring for the rule).

    ``input_shape`` is the full input shape, batch included, e.g. ``(1, 3, 224, 224)``.
    The model's mode and flags are restored; no hook outlives the call.
    """
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be (N, C, H, W); got {tuple(input_shape)}")
    aspect = (int(input_shape[2]), int(input_shape[3]))
    calls: list[_Call] = []
    open_calls: dict[int, list[_Call]] = {}
    counter = [0]
    modules = dict(model.named_modules())

    def pre(name: str) -> Any:
        def hook(module: nn.Module, args: Any) -> None:
            first = next((a for a in args if isinstance(a, Tensor)), None)
            call = _Call(name, counter[0], inp=first)
            counter[0] += 1
            calls.append(call)
            open_calls.setdefault(id(module), []).append(call)

        return hook

    def post(module: nn.Module, args: Any, output: Any) -> None:
        call = open_calls[id(module)].pop()
        call.end = counter[0]
        counter[0] += 1
        if isinstance(output, Tensor):
            call.out, call.out_version = output, output._version

    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    with frozen_eval(model), removing() as handles, torch.no_grad():
        for name, module in modules.items():
            handles.append(module.register_forward_pre_hook(pre(name)))
            handles.append(module.register_forward_hook(post))
        x = torch.zeros(input_shape, device=device, dtype=dtype)
        model(x)

    # 1. the call leaving each resolution: the outermost one to a lower spatial resolution;
    # for the deepest resolution, the last one to a global (1 x 1 or flat) output. Global
    # pooling inside a block (squeeze-and-excitation) is a side branch, not a stage's end.
    spatial: dict[tuple[int, int], _Call] = {}
    skipping: dict[tuple[int, int], _Call] = {}
    pooled: dict[tuple[int, int], _Call] = {}
    areas = sorted(
        {r[0] * r[1] for c in calls for r in (_res(c.inp, aspect), _res(c.out, aspect)) if r}
    )

    def next_lower(area: int) -> int | None:
        below = [a for a in areas if a < area]
        return below[-1] if below else None

    for call in sorted(calls, key=lambda c: c.start):
        r_in, r_out = _res(call.inp, aspect), _res(call.out, aspect)
        if call.name == "" or r_in is None or r_in[0] * r_in[1] <= 1 or call.inp is x:
            continue  # the root, and containers fed the input itself (``features``), span all
        if r_out is None or r_out[0] * r_out[1] <= 1:
            pooled[r_in] = call  # the last one wins
        elif r_out[0] * r_out[1] == next_lower(r_in[0] * r_in[1]):
            spatial.setdefault(r_in, call)  # the first (outermost) one wins
        elif r_out[0] * r_out[1] < r_in[0] * r_in[1]:
            # a container of several stages (timm's ``stages``) leaves r too, but its input is
            # the stage before it, not the last tensor at r: used only if nothing steps down
            skipping.setdefault(r_in, call)
    leaving = {**skipping, **spatial}
    for r, call in pooled.items():
        if r not in leaving:
            leaving[r] = call
    # a resolution some module outputs but none leaves (VGG's 7 x 7 after its last pooling,
    # DenseNet's final block, pooled by functions): its tensor is the last module output at r
    seen = [c for c in calls if c.name and _res(c.out, aspect) is not None]
    for call in seen:
        r_seen = _res(call.out, aspect)
        assert r_seen is not None
        if r_seen[0] * r_seen[1] > 1 and r_seen not in leaving:
            leaving[r_seen] = _Call("", start=counter[0], inp=None)
    leaving = dict(sorted(leaving.items(), key=lambda item: -item[0][0] * item[0][1]))
    # 2. who returned each stage tensor (final in-place version), outer to inner; if no module
    # returned it (it came from a function), every module call that output resolution r
    chains: dict[tuple[int, int], list[_Call]] = {}
    for r, leaver in leaving.items():
        stage = leaver.inp
        version = None if stage is None else stage._version
        returned = [
            c
            for c in calls
            if stage is not None
            and c.out is stage
            and c.out_version == version
            and c.end < leaver.start
        ]
        if not returned:
            returned = [
                c for c in calls if c.name and _res(c.out, aspect) == r and c.end < leaver.start
            ]
        chains[r] = sorted(returned, key=lambda c: c.end, reverse=True)
    blocks = _transformer_layers(model, calls, aspect, input_shape)
    if blocks:
        return blocks
    # 3. the outermost candidate not containing another stage's innermost candidate;
    # 4. a stage is a module grouping a convolution (unless the model groups none: VGG)

    anchors = {r: chain[-1].name for r, chain in chains.items() if chain}
    no_stage = {
        r for r, chain in chains.items() if not any(_has_conv(modules[c.name]) for c in chain)
    }

    def pick(need_conv: bool) -> list[str]:
        names: list[str] = []
        for r, chain in chains.items():
            for call in chain:
                # a stage may contain the tensor of the resolution it was fed at when that one
                # gives no stage itself (conv, ReLU, MaxPool: the ReLU's map is the finer one)
                fed = _res(call.inp, aspect)
                others = [
                    a
                    for s, a in anchors.items()
                    if s != r and not (need_conv and s == fed and s in no_stage)
                ]
                if any(_contains(call.name, a) for a in others):
                    continue
                if need_conv and not _has_conv(modules[call.name]):
                    continue
                if call.name not in names:
                    names.append(call.name)
                break
        return names

    return pick(True) or pick(False)


def _transformer_layers(
    model: nn.Module, calls: list[_Call], aspect: tuple[int, int], input_shape: tuple[int, ...]
) -> list[str]:
    """The blocks to explain in a transformer (see the module docstring); [] for a CNN."""
    patch = patch_size(model)
    once: dict[str, _Call] = {}
    count: dict[str, int] = {}
    for call in calls:
        count[call.name] = count.get(call.name, 0) + 1
        once[call.name] = call
    views: dict[str, MapView] = {}
    for name, call in once.items():
        if count[name] == 1 and call.out is not None:
            view = layout_of(tuple(call.out.shape), aspect, patch=patch)
            if view is not None and view.layout in ("tokens", "nhwc"):
                views[name] = view
    blocks: list[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Sequential | nn.ModuleList):
            continue
        children = [(f"{name}.{c}" if name else c, m) for c, m in module.named_children()]
        kinds = {type(m) for _, m in children}
        repeated = len(children) >= 2 and len(kinds) == 1
        if (
            repeated
            and all(c in views for c, _ in children)
            and not any(_contains(b, c) for b in blocks for c, _ in children)
        ):
            blocks.extend(c for c, _ in children)
    if not blocks:
        return []
    blocks.sort(key=lambda n: once[n].end)
    reach = _patch_gradient(model, blocks, views, input_shape)
    if not reach:
        return []
    grids: dict[tuple[int, int], list[str]] = {}
    for name in blocks:
        out = once[name].out
        assert out is not None
        view = views[name]
        grid = view.grid if view.grid is not None else (int(out.shape[1]), int(out.shape[2]))
        grids.setdefault(grid, []).append(name)
    if len(grids) > 1:
        groups = list(grids.values())
    else:
        depth = len(blocks)
        bounds = sorted({-(-depth * k // 4) for k in range(1, 5)})
        groups = [blocks[lo:hi] for lo, hi in zip([0, *bounds[:-1]], bounds, strict=True)]
    picked: list[str] = []
    for group in groups:
        live = [n for n in group if reach.get(n, False)]
        if live:
            picked.append(live[-1])
    return picked


def _patch_gradient(
    model: nn.Module, names: list[str], views: dict[str, MapView], input_shape: tuple[int, ...]
) -> dict[str, bool]:
    """Whether the classifier reaches each block's patch tokens: one backward of a seeded input.

    Measured at the input of the last linear layer called (the head), in a random direction, not
    at the logits: a randomly initialised head may be all zeros (torchvision's ViT), which would
    make every gradient zero however the tokens are wired.
    """
    outputs: dict[str, Tensor] = {}
    head_in: list[Tensor] = []
    modules = dict(model.named_modules())

    def keep(name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            outputs[name] = output

        return hook

    def head(module: nn.Module, args: Any) -> None:
        if args and isinstance(args[0], Tensor):
            head_in[:] = [args[0]]

    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(input_shape, generator=gen).to(device).requires_grad_(True)
    with frozen_eval(model), removing() as handles, torch.enable_grad():
        for name in names:
            handles.append(modules[name].register_forward_hook(keep(name)))
        for module in model.modules():
            if isinstance(module, nn.Linear):
                handles.append(module.register_forward_pre_hook(head))
        logits = model(x)
        target = head_in[0] if head_in else logits
        live = [n for n in names if n in outputs and outputs[n].requires_grad]
        if not isinstance(target, Tensor) or not target.requires_grad or not live:
            return {}
        direction = torch.randn(target.shape, generator=gen).to(target.device, target.dtype)
        grads = torch.autograd.grad(
            (target * direction).sum(), [outputs[n] for n in live], allow_unused=True
        )
    return {
        n: g is not None and bool(views[n](g).abs().sum() > 0)
        for n, g in zip(live, grads, strict=True)
    }
