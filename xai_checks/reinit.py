"""Re-initialise any model: the one rule behind the null control and the sanity cascade.

Every module that owns parameters directly is re-initialised by the first of these it has:

1. ``reset_parameters()`` -- PyTorch's layers (``Conv2d``, ``Linear``, ``LayerNorm``, ...);
2. ``_reset_parameters()`` -- ``nn.MultiheadAttention`` and a few others keep it private;
3. the module's own ``init_weights()`` or ``_init_weights()`` taking no argument, as libraries
   define them (timm's ``VisionTransformer.init_weights`` sets its class token and position
   embedding); used only when every parameterised module under it is being re-initialised too
   (it may touch all of them), and before them, so their own rules 1-2 still apply after it;
4. the generic rule, per parameter the module owns directly:

   * at most one dimension above 1 (a bias, gain, layer scale, class or register token) and a
     name containing ``bias`` or ``token``: zeros;
   * at most one dimension above 1, any other name (``weight``, ``gamma``, ``layer_scale``):
     ones -- the value norms and layer scales start from;
   * anything larger (position embeddings, relative-position tables, projections): a normal
     with standard deviation 0.02 truncated at two standard deviations, the convention of ViT,
     DeiT, Swin and ConvNeXt (timm's and torchvision's ``trunc_normal_(std=0.02)``).

BatchNorm running statistics are reset too. All of it runs under a given seed in a forked RNG:
the global random state is untouched and the result is the same on every run.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Iterable
from typing import Literal

import torch
from torch import nn

__all__ = ["Rule", "owners", "reinitialise"]

Rule = Literal["reset_parameters", "_reset_parameters", "init_weights", "generic"]
STD = 0.02


def owners(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` for every module that owns parameters directly, in definition order."""
    return [
        (name, m) for name, m in model.named_modules() if any(True for _ in m.parameters(False))
    ]


def _no_arg(fn: object) -> bool:
    if not callable(fn):
        return False
    try:
        inspect.signature(fn).bind()
    except (TypeError, ValueError):
        return False
    return True


def _library_init(module: nn.Module) -> str | None:
    for name in ("init_weights", "_init_weights"):
        if _no_arg(getattr(module, name, None)):
            return name
    return None


def _generic(module: nn.Module, gen: torch.Generator) -> None:
    for name, p in module.named_parameters(recurse=False):
        big = sum(1 for s in p.shape if s > 1)
        if big <= 1:
            fill = 0.0 if ("bias" in name.lower() or "token" in name.lower()) else 1.0
            p.fill_(fill)
        else:
            values = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            # truncate at two standard deviations by redrawing what falls outside
            while bool((outside := values.abs() > 2).any()):
                values[outside] = torch.randn(
                    int(outside.sum()), generator=gen, dtype=torch.float64
                )
            p.copy_((values * STD).to(p.dtype))


def reinitialise(
    model: nn.Module, *, seed: int, modules: Iterable[nn.Module] | None = None
) -> Counter[Rule]:
    """Re-initialise ``modules`` (default: every module owning parameters) of ``model`` in place,
    each by the first rule of the module docstring it has, under ``seed``.

    Returns how many modules each rule re-initialised.
    """
    everything = [m for _, m in owners(model)]
    chosen = list(modules) if modules is not None else everything
    chosen_set = set(chosen)
    order = [m for m in everything if m in chosen_set] + [
        m for m in chosen if m not in set(everything)
    ]
    rules: dict[nn.Module, Rule] = {}
    libraries: list[tuple[nn.Module, str]] = []
    for m in order:
        if callable(getattr(m, "reset_parameters", None)):
            rules[m] = "reset_parameters"
        elif callable(getattr(m, "_reset_parameters", None)):
            rules[m] = "_reset_parameters"
        elif (name := _library_init(m)) is not None and all(
            sub in chosen_set for sub in m.modules() if any(True for _ in sub.parameters(False))
        ):
            rules[m] = "init_weights"
            libraries.append((m, name))
        else:
            rules[m] = "generic"
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda), torch.no_grad():
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        for m, name in libraries:  # first: a library's init may reach the modules under it
            getattr(m, name)()
        for m in order:
            rule = rules[m]
            if rule == "reset_parameters":
                m.reset_parameters()  # type: ignore[operator]
            elif rule == "_reset_parameters":
                m._reset_parameters()  # type: ignore[operator]
            elif rule == "generic":
                _generic(m, gen)
            reset_stats = getattr(m, "reset_running_stats", None)
            if callable(reset_stats):
                reset_stats()
    return Counter(rules.values())
