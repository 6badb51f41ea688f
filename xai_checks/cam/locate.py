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
call whose output is at r is used instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from xai_checks.cam.state import frozen_eval, removing

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
    pooled: dict[tuple[int, int], _Call] = {}
    for call in sorted(calls, key=lambda c: c.start):
        r_in, r_out = _res(call.inp, aspect), _res(call.out, aspect)
        if call.name == "" or r_in is None or r_in[0] * r_in[1] <= 1 or call.inp is x:
            continue  # the root, and containers fed the input itself (``features``), span all
        if r_out is None or r_out[0] * r_out[1] <= 1:
            pooled[r_in] = call  # the last one wins
        elif r_out[0] * r_out[1] < r_in[0] * r_in[1]:
            spatial.setdefault(r_in, call)  # the first (outermost) one wins
    leaving = dict(spatial)
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
    # 3. the outermost candidate not containing another stage's innermost candidate;
    # 4. a stage is a module grouping a convolution (unless the model groups none: VGG)
    anchors = {r: chain[-1].name for r, chain in chains.items() if chain}

    def pick(need_conv: bool) -> list[str]:
        names: list[str] = []
        for r, chain in chains.items():
            others = [a for s, a in anchors.items() if s != r]
            for call in chain:
                if any(_contains(call.name, a) for a in others):
                    continue
                if need_conv and not _has_conv(modules[call.name]):
                    continue
                if call.name not in names:
                    names.append(call.name)
                break
        return names

    return pick(True) or pick(False)
