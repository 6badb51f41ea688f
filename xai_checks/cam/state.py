"""Context managers that leave a model exactly as they found it."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeAlias

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

__all__ = [
    "LayerSpec",
    "check_layer_output",
    "check_layers_ran",
    "frozen_eval",
    "removing",
    "resolve_layers",
]

LayerSpec: TypeAlias = str | nn.Module


def resolve_layers(
    model: nn.Module, layers: Sequence[LayerSpec] | LayerSpec
) -> dict[str, nn.Module]:
    """Turn layer names (``"layer3"``, ``"layer4.2"``) or modules into ``{name: module}``.

    An unknown name raises ``ValueError`` naming the closest module names and the top-level ones.
    """
    if isinstance(layers, str | nn.Module):
        layers = [layers]
    if not layers:
        raise ValueError("no layers given: name at least one, e.g. 'layer4'")
    names = {module: name for name, module in model.named_modules()}
    resolved: dict[str, nn.Module] = {}
    for spec in layers:
        if isinstance(spec, nn.Module):
            if spec not in names:
                raise ValueError(f"module {type(spec).__name__} is not part of the model")
            resolved[names[spec] or type(spec).__name__] = spec
            continue
        try:
            module = model.get_submodule(spec)
        except AttributeError:
            all_names = [n for n in names.values() if n]
            close = difflib.get_close_matches(spec, all_names, n=5, cutoff=0.5)
            top = [n for n, _ in model.named_children()]
            hint = f" Closest: {', '.join(close)}." if close else ""
            raise ValueError(
                f"unknown layer {spec!r}.{hint} Top-level modules: {', '.join(top)}."
            ) from None
        resolved[spec] = module
    return resolved


def check_layer_output(name: str, output: Any) -> Tensor:
    """The layer's output if it is a (N, C, h, w) tensor; a clear error otherwise."""
    if not isinstance(output, Tensor):
        raise TypeError(
            f"layer {name!r} returns {type(output).__name__}, not a tensor; hook a module "
            "whose output is the feature map"
        )
    if output.ndim != 4:
        raise ValueError(
            f"layer {name!r} outputs shape {tuple(output.shape)}; Grad-CAM needs (N, C, h, w)"
        )
    return output


def check_layers_ran(names: Iterable[str], seen: Iterable[str]) -> None:
    """``ValueError`` naming the requested layers the model's forward never ran."""
    seen = set(seen)
    missing = [name for name in names if name not in seen]
    if missing:
        raise ValueError(f"layers {missing} were not run by the model's forward")


@contextlib.contextmanager
def frozen_eval(model: nn.Module, *, freeze: bool = True) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode (and, with ``freeze``, stop parameter gradients); restore after.

    Every module's ``training`` flag and every parameter's ``requires_grad`` flag are restored
    even when the body raises.
    """
    # Only the flags that change are recorded and set: on a GPU the engine's call is short
    # enough that ``model.eval()`` plus a toggle of every parameter (Python work per module)
    # would be a visible share of it.
    training = [m for m in model.modules() if m.training]
    frozen = [p for p in model.parameters() if p.requires_grad] if freeze else []
    try:
        if training:
            model.eval()  # as before: a module that overrides train() sees the call
        for p in frozen:
            p.requires_grad_(False)
        yield model
    finally:
        for m in training:
            m.training = True
        for p in frozen:
            p.requires_grad_(True)


@contextlib.contextmanager
def removing(handles: Iterable[RemovableHandle] | None = None) -> Iterator[list[RemovableHandle]]:
    """Collect hook handles in the yielded list; remove them all on exit, error or not."""
    collected: list[RemovableHandle] = list(handles or [])
    try:
        yield collected
    finally:
        for handle in collected:
            handle.remove()
