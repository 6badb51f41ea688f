"""The sanity cascade's maps, without running the unchanged start of each step's forward again.

The cascade re-initialises a model from the output back to the input, one group of modules per
step, and explains one layer after each step. A module that ran to its end before the first
re-initialised module started saw the original input and the original weights: it computes
exactly what it computed in the original model. So each step's forward takes those modules'
outputs from the original model's pass over the same batch (:func:`replay_plan` says which),
and only the rest runs. The maps are those of a plain forward, bit for bit: the modules that
run get the same values in the same layout, in the same batches.

A module is served from the original pass only when

* it ran exactly once in the traced forward (a module called twice, like a shared ReLU, runs);
* it returned a tensor and ended before the step's first changed module started;
* it ended no later than the first explained layer (what runs after that layer carries the
  gradient back to it, so it runs);
* no module around it qualifies too (the outermost one is served; its children never run).

"Changed" is measured, not assumed: a step changes the tensors whose version counter (every
in-place write bumps it) or identity moved while it re-initialised a scratch copy, and a module
is changed when it owns one of those tensors itself, so weights tied across modules and a
library's own ``init_weights`` are covered. A model whose root owns a changed tensor (a ViT's
class token) has nothing served: the root's forward starts first.

Memory: each step's new values are kept once (together about the model's size), and a batch's
served outputs while that batch runs; the cascade's steps share one working copy of the model.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from xai_checks.models import ModelTrace, reinitialise_

__all__ = [
    "CascadeStep",
    "cascade_steps_state",
    "recording",
    "replay_plan",
    "replaying",
    "write_values",
]


@dataclass(frozen=True)
class CascadeStep:
    """One step of a cascade: what re-initialising it writes, and what it has changed so far."""

    name: str
    #: the step's new values, by parameter or buffer name
    values: Mapping[str, Tensor]
    #: every module owning a tensor that this step or an earlier one changed
    changed: frozenset[str]


def _named_tensors(model: nn.Module) -> dict[str, Tensor]:
    tensors: dict[str, Tensor] = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(model.named_buffers(remove_duplicate=False))
    return tensors


def _owners(model: nn.Module, names: set[str]) -> set[str]:
    """The modules that own one of the tensors ``names`` directly."""
    owners = set()
    for module_name, module in model.named_modules(remove_duplicate=False):
        prefix = f"{module_name}." if module_name else ""
        own = [n for n, _ in module.named_parameters(recurse=False, remove_duplicate=False)]
        own += [n for n, _ in module.named_buffers(recurse=False, remove_duplicate=False)]
        if any(prefix + n in names for n in own):
            owners.add(module_name)
    return owners


def cascade_steps_state(
    model: nn.Module,
    steps: Sequence[tuple[str, Sequence[str]]],
    seed_of: Callable[[str], int],
) -> tuple[dict[str, Tensor], list[CascadeStep]]:
    """Re-initialise a scratch copy of ``model`` step by step (``steps``: name and member
    modules, output first; step ``s`` under ``seed_of(s)``), as the cascade does.

    Returns the original values of every tensor a step changes, and each step's new values.
    Writing a step's values into a copy of ``model`` after the earlier steps' gives that step's
    network exactly; writing the original values back gives ``model`` again."""
    scratch = copy.deepcopy(model)
    modules = dict(scratch.named_modules())
    original = _named_tensors(model)
    originals: dict[str, Tensor] = {}
    changed: set[str] = set()
    out: list[CascadeStep] = []
    for name, members in steps:
        before = {n: (id(t), t._version) for n, t in _named_tensors(scratch).items()}
        reinitialise_(scratch, seed=seed_of(name), modules=[modules[m] for m in members])
        now = _named_tensors(scratch)
        touched = {n for n, t in now.items() if before.get(n) != (id(t), t._version)}
        for n in touched:
            originals.setdefault(n, original[n].detach().clone())
        changed |= _owners(scratch, touched)
        values = {n: now[n].detach().clone() for n in sorted(touched)}
        out.append(CascadeStep(name=name, values=values, changed=frozenset(changed)))
    del scratch
    return originals, out


@torch.no_grad()
def write_values(model: nn.Module, values: Mapping[str, Tensor]) -> None:
    """Copy ``values`` into ``model``'s parameters and buffers of those names, in place."""
    tensors = _named_tensors(model)
    for name, value in values.items():
        tensors[name].copy_(value)


def replay_plan(
    trace: ModelTrace, changed: frozenset[str], hooked: Sequence[str]
) -> tuple[str, ...]:
    """The modules a forward of the changed model may take from the original pass (see the
    module docstring), outermost only, in the order they ran."""
    if "" in changed or not hooked:
        return ()
    start: dict[str, int] = {}
    end: dict[str, int] = {}
    for i, (kind, name) in enumerate(trace.events):
        if kind == "start":
            start.setdefault(name, i)
        else:
            end[name] = i
    if any(layer not in end for layer in hooked):
        return ()
    first_changed = min((start[m] for m in changed if m in start), default=len(trace.events))
    last_end = min(end[layer] for layer in hooked)
    eligible = {
        name
        for name in start
        if trace.calls.get(name) == 1
        and name in trace.shapes  # a tensor output, recorded when the module ended
        and end[name] < first_changed
        and end[name] <= last_end
    }

    def inside_another(name: str) -> bool:
        parts = name.split(".")
        return any(".".join(parts[:k]) in eligible for k in range(1, len(parts)))

    return tuple(sorted((n for n in eligible if not inside_another(n)), key=start.__getitem__))


@contextlib.contextmanager
def recording(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, Tensor]]:
    """Record the outputs of the modules ``names`` during the forwards run inside the block.

    A copy is taken as each module returns, before anything later can change its output in
    place (a ``ReLU(inplace=True)`` after a ``BatchNorm2d``). A module that runs more than once
    in the block is dropped from the record: its output is not one thing to replay."""
    outputs: dict[str, Tensor] = {}
    seen: dict[str, int] = {}
    handles = []

    def hook(name: str) -> Callable[..., None]:
        def record(module: nn.Module, args: object, output: object) -> None:
            seen[name] = seen.get(name, 0) + 1
            if isinstance(output, Tensor) and seen[name] == 1:
                outputs[name] = output.detach().clone()
            else:
                outputs.pop(name, None)

        return record

    try:
        for name in names:
            handles.append(model.get_submodule(name).register_forward_hook(hook(name)))
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def replaying(model: nn.Module, outputs: Mapping[str, Tensor]) -> Iterator[None]:
    """Inside the block, each module named in ``outputs`` returns (a copy of) its recorded
    output instead of running, once; a further call runs the module itself."""
    patched: list[tuple[nn.Module, object]] = []
    missing = object()

    def serve(value: Tensor, forward: Callable[..., object]) -> Callable[..., object]:
        served = False

        def replay(*args: object, **kwargs: object) -> object:
            nonlocal served
            if served:
                return forward(*args, **kwargs)
            served = True
            return value.clone()  # later in-place ops must not reach the record

        return replay

    try:
        for name, value in outputs.items():
            module = model.get_submodule(name)
            own = module.__dict__.get("forward", missing)
            patched.append((module, own))
            # an instance attribute: nn.Module.__call__ looks ``forward`` up on the instance
            module.__dict__["forward"] = serve(value, module.forward)
        yield
    finally:
        for module, own in patched:
            if own is missing:
                del module.__dict__["forward"]
            else:
                module.__dict__["forward"] = own
