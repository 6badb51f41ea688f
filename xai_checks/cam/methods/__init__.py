"""CAM methods: one file per method, one registry, filled from the entry-point group
``xai_checks.methods``.

A method file defines ``METHOD = CAMMethod(...)``: its name, title, reference, what it needs
from the engine (:data:`NEEDS`) and its ``weights(inputs) -> weights`` function. The engine
(:mod:`xai_checks.cam.native`) captures every requested layer's activation A (N, C, h, w) in one
forward, back-propagates once only if some method needs ``"gradients"``, and hands each method a
:class:`LayerInputs`. The map is then ``ReLU(sum_k w_k A_k)`` with per-channel (N, C) or
per-position (N, C, h, w) weights -- the role of torch-cam's ``_get_weights`` and
pytorch-grad-cam's ``get_cam_weights`` -- or ``ReLU(sum_k w_k B_k)`` when the method returns
:class:`Terms` that combine other values B (Eigen-CAM's channel-centred activations).

Registering a method (built-in or from another package) is one line in ``pyproject.toml``::

    [project.entry-points."xai_checks.methods"]
    my-cam = "my_package.my_cam:METHOD"

The entry point's name must equal the method's ``name``. The registry reads titles and needs
without importing torch: a method module imports torch (or anything that does) only inside its
functions, and this module only for type checking.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from typing import TYPE_CHECKING, Literal, TypeAlias, TypeVar

from xai_checks._registry import entry_points_of, load_registry

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "ENTRY_POINT_GROUP",
    "METHODS",
    "NEEDS",
    "CAMMethod",
    "LayerInputs",
    "MethodRegistrationError",
    "Need",
    "Terms",
    "get_method",
    "method_title",
    "registered_methods",
]

ENTRY_POINT_GROUP = "xai_checks.methods"

Need: TypeAlias = Literal["activations", "gradients", "model"]
#: what a method can ask the engine for: the layer's activations, d score / d activations (one
#: backward for all layers), or the model and its input (forwards on inputs the method builds)
NEEDS: frozenset[str] = frozenset(("activations", "gradients", "model"))


@dataclass(frozen=True)
class Terms:
    """What a method's map combines: ``ReLU(sum_k weights_k * values_k)``.

    ``values`` (N, C, h, w); ``weights`` (N, C) or the shape of ``values``. A method returns
    this instead of bare weights when the values are not the layer's activations themselves.
    """

    values: Tensor
    weights: Tensor


@dataclass(frozen=True, kw_only=True)
class LayerInputs:
    """What the engine hands a method for one layer of one batch.

    ``acts`` is always there (float32, detached, (N, C, h, w)); the rest only when the method's
    ``needs`` asks for it, and reading it otherwise is a ``RuntimeError`` naming the need.
    """

    acts: Tensor
    grads: Tensor | None = None
    x: Tensor | None = None
    targets: Tensor | None = None
    forward: Callable[[Tensor], Tensor] | None = None

    @property
    def gradients(self) -> Tensor:
        """d score / d A (N, C, h, w), float32; the score is the target class's logit."""
        return _needed(self.grads, "gradients")

    @property
    def model_input(self) -> Tensor:
        """The model's input batch (N, C, H, W), as the engine ran it."""
        return _needed(self.x, "model")

    @property
    def target_classes(self) -> Tensor:
        """The explained class per image, (N,) long."""
        return _needed(self.targets, "model")

    @property
    def logits(self) -> Callable[[Tensor], Tensor]:
        """``inputs (M, C, H, W) -> logits (M, classes)`` in float32: the model in eval mode,
        no gradients, no hooks, under the engine's autocast."""
        return _needed(self.forward, "model")


_T = TypeVar("_T")


def _needed(value: _T | None, need: str) -> _T:
    if value is None:
        raise RuntimeError(f"the engine hands this only to methods whose needs include {need!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class CAMMethod:
    """One CAM method.

    Attributes:
        name: the registry name (``"gradcam++"``), as ``--method`` spells it.
        title: how reports name it (``"Grad-CAM++"``).
        reference: the paper.
        needs: what ``weights`` reads from :class:`LayerInputs` (a subset of :data:`NEEDS`).
            Without ``"gradients"`` the engine runs no backward for it.
        weights: ``LayerInputs -> (N, C)`` or ``(N, C, h, w)`` weights on the activations, or
            :class:`Terms`.
    """

    name: str
    title: str
    reference: str
    needs: frozenset[str]
    weights: Callable[[LayerInputs], Tensor | Terms]

    def __post_init__(self) -> None:
        unknown = set(self.needs) - NEEDS
        if unknown:
            raise ValueError(
                f"method {self.name!r} needs {sorted(unknown)}: the engine offers {sorted(NEEDS)}"
            )
        if not self.name or not self.title:
            raise ValueError("a CAM method needs a name and a title")
        object.__setattr__(self, "needs", frozenset(self.needs))


class MethodRegistrationError(TypeError):
    """An entry point in ``xai_checks.methods`` that does not give a valid method."""


def _builtins(found: Mapping[str, EntryPoint]) -> dict[str, str]:
    """The method files here, by name: as registered, or (an uninstalled checkout, where none
    is) read from the files themselves."""
    registered = {
        name: ep.value for name, ep in found.items() if ep.value.startswith(f"{__name__}.")
    }
    if not registered:
        for info in pkgutil.iter_modules(__path__):
            if not info.name.startswith("_"):
                target = f"{__name__}.{info.name}:METHOD"
                registered[importlib.import_module(f"{__name__}.{info.name}").METHOD.name] = target
    return dict(sorted(registered.items()))


@functools.cache
def _registry() -> dict[str, CAMMethod]:
    found = entry_points_of(ENTRY_POINT_GROUP, kind="CAM method", error=MethodRegistrationError)
    # the built-ins first, then other packages' methods, each by name (not the installer's order)
    return load_registry(
        ENTRY_POINT_GROUP,
        base=CAMMethod,
        builtins=_builtins(found),
        kind="CAM method",
        classes=False,
        error=MethodRegistrationError,
        found=found,
    )


def registered_methods(*, refresh: bool = False) -> tuple[CAMMethod, ...]:
    """Every registered CAM method, the built-ins first."""
    if refresh:
        _registry.cache_clear()
    return tuple(_registry().values())


class _Registry(Mapping[str, CAMMethod]):
    """Read-only ``{name: CAMMethod}``, loaded on first use; iterating gives the names in the
    registry's order."""

    def __getitem__(self, name: str) -> CAMMethod:
        return _registry()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(_registry())

    def __len__(self) -> int:
        return len(_registry())

    def __repr__(self) -> str:
        return f"METHODS({', '.join(self)})"


METHODS: Mapping[str, CAMMethod] = _Registry()


def get_method(method: str | CAMMethod) -> CAMMethod:
    """The registered method of that name (or the ``CAMMethod`` itself); ``ValueError`` else."""
    if isinstance(method, CAMMethod):
        return method
    try:
        return METHODS[method]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown CAM method {method!r}: use one of {', '.join(METHODS)}"
        ) from None


def method_title(name: str) -> str:
    """How a reader knows the method ``name`` (``"Grad-CAM++"``); an unregistered name (a
    result written where another package's method was installed) is shown as it is."""
    method = _registry().get(name) or _registry().get(name.lower())
    return method.title if method is not None else name
