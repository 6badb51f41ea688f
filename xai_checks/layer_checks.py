"""The layers a study explains, checked once from one traced forward, before any photo is read.

Every route (the CLI, the pytest plugin, ``run_study`` in Python) goes through
:func:`check_layers`; each problem is a :class:`LayerError` (a ``ValueError``, exit 2 on the
command line) that names the layers and what to do:

* a name given twice;
* an unknown name, or a module the forward never runs;
* a module the forward runs more than once (a hook would see several outputs: which is the map?);
* an output that cannot be a spatial map (a pooled vector, a 1 x 1 map, attention heads; see
  :mod:`xai_checks.cam.tokens`);
* an order other than shallow to deep, as the traced forward finishes them (a depth claim reads
  the columns in the order given: reversed, its hypothesis would be read backwards);
* fewer layers than a claim to be judged needs (``Claim.min_layers``: a trend over depth needs 3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from xai_checks.cam.tokens import layout_of, patch_size
from xai_checks.models import ModelTrace

__all__ = ["LayerError", "check_layer_count", "check_layers", "map_layers"]


class LayerError(ValueError):
    """Layers a study cannot explain."""


def map_layers(model: nn.Module, trace: ModelTrace) -> list[str]:
    """Modules run once whose output can be a map, in the order the forward finishes them."""
    size = (int(trace.input_shape[2]), int(trace.input_shape[3]))
    patch = patch_size(model)
    out: list[str] = []
    for kind, name in trace.events:
        shape = trace.shapes.get(name)
        if (
            kind == "end"
            and trace.calls.get(name) == 1
            and shape is not None
            and layout_of(shape, size, patch=patch) is not None
            and name not in out
        ):
            out.append(name)
    return out


def _finish_order(trace: ModelTrace) -> dict[str, int]:
    order: dict[str, int] = {}
    for i, (kind, name) in enumerate(trace.events):
        if kind == "end":
            order[name] = i
    return order


def check_layers(model: nn.Module, trace: ModelTrace, layers: Sequence[str], role: str) -> None:
    """:class:`LayerError` unless every layer is known, run once, a map, and shallow to deep."""
    who = f"{role} {type(model).__name__}"
    names = dict(model.named_modules())
    candidates = map_layers(model, trace)
    shown = ", ".join(candidates[:40]) + (", ..." if len(candidates) > 40 else "")
    twice = sorted({layer for layer in layers if list(layers).count(layer) > 1})
    if twice:
        raise LayerError(f"layer(s) {', '.join(map(repr, twice))} given more than once")
    unknown = [layer for layer in layers if layer not in names]
    if unknown:
        top = ", ".join(n for n, _ in model.named_children())
        raise LayerError(
            f"unknown layer(s) {', '.join(map(repr, unknown))} in {who}. Its top-level "
            f"modules: {top}. Modules whose output is a map: {shown}"
        )
    never = [layer for layer in layers if trace.calls.get(layer, 0) == 0]
    if never:
        raise LayerError(
            f"layer(s) {', '.join(map(repr, never))} of {who} are not run by its forward; "
            f"pick from: {shown}"
        )
    again = [
        f"{layer!r} ({trace.calls[layer]} calls)" for layer in layers if trace.calls[layer] > 1
    ]
    if again:
        raise LayerError(
            f"layer(s) {', '.join(again)} of {who} are run more than once in a forward, so no "
            f"single output is the map; pick a module run once: {shown}"
        )
    size = (int(trace.input_shape[2]), int(trace.input_shape[3]))
    patch = patch_size(model)
    flat = [
        f"{layer!r} {trace.shapes.get(layer, 'no tensor')}"
        for layer in layers
        if layer not in trace.shapes or layout_of(trace.shapes[layer], size, patch=patch) is None
    ]
    if flat:
        raise LayerError(
            f"layer(s) {', '.join(flat)} of {who} do not output a spatial map for a "
            f"{size[0]}x{size[1]} input (a CAM needs (N, C, h, w) with h x w > 1, channels-last "
            f"(N, h, w, C) or transformer tokens (N, tokens, C)); pick from: {shown}"
        )
    finish = _finish_order(trace)
    ordered = sorted(layers, key=finish.__getitem__)
    if list(layers) != ordered:
        raise LayerError(
            f"layers must be given shallow to deep, as the forward of {who} runs them: "
            f"{', '.join(ordered)} (given: {', '.join(layers)})"
        )


def check_layer_count(layers: Sequence[str], needs: Mapping[str, int]) -> None:
    """:class:`LayerError` naming each claim (``{claim id: layers it needs}``) that ``layers``
    are too few for."""
    short = {claim: n for claim, n in needs.items() if len(layers) < n}
    if short:
        wants = "; ".join(f"claim {c!r} needs at least {n}" for c, n in short.items())
        raise LayerError(
            f"{len(layers)} layer(s) ({', '.join(layers) or 'none'}) are too few: {wants} "
            "(a trend over depth is judged on 3 or more). Name more with --layers / "
            "--xai-layers, or leave the claim out"
        )
