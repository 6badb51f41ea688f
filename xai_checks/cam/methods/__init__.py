"""The Grad-CAM family: one small file per method, one registry.

Every method is a ``weights(acts, grads) -> Tensor`` function plugged into the one canonical
pipeline (:mod:`xai_checks.cam.pipeline`): score -> gradients -> **weights** -> map -> upsample
-> normalise. ``acts`` and ``grads`` are the layer's activation A and d score / d A, both
(N, C, h, w) float32. Weights are either per channel, (N, C), or per position, (N, C, h, w); the
map is then ``ReLU(sum_k w_k * A_k)`` either way. This is the role of torch-cam's
``_get_weights`` and pytorch-grad-cam's ``get_cam_weights``.

Adding a method: a new file here with a ``METHOD = CAMMethod(...)`` and one line in
``_BUILT_IN`` below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from torch import Tensor

__all__ = ["METHODS", "CAMMethod", "get_method"]


@dataclass(frozen=True)
class CAMMethod:
    """One CAM method.

    Attributes:
        name: the registry name (``"gradcam++"``).
        weights: ``(acts, grads) -> (N, C)`` or ``(N, C, h, w)`` weights.
        title: how reports name it.
        reference: the paper.
        uses_activations: whether ``weights`` reads ``acts`` (Grad-CAM's do not).
    """

    name: str
    weights: Callable[[Tensor, Tensor], Tensor]
    title: str
    reference: str
    uses_activations: bool = True


class _Registry(Mapping[str, CAMMethod]):
    """Read-only ``{name: CAMMethod}``; iterating gives the names in a fixed order."""

    def __init__(self, methods: list[CAMMethod]) -> None:
        self._methods = {m.name: m for m in methods}

    def __getitem__(self, name: str) -> CAMMethod:
        return self._methods[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._methods)

    def __len__(self) -> int:
        return len(self._methods)

    def __repr__(self) -> str:
        return f"METHODS({', '.join(self._methods)})"


def _built_in() -> list[CAMMethod]:
    from xai_checks.cam.methods import gradcam, gradcampp, hirescam, layercam, xgradcam

    return [gradcam.METHOD, gradcampp.METHOD, hirescam.METHOD, xgradcam.METHOD, layercam.METHOD]


METHODS: Mapping[str, CAMMethod] = _Registry(_built_in())


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
