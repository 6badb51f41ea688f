"""``GradCAM``: the Grad-CAM shorthand for ``CAM(model, method="gradcam", ...)``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from xai_checks.cam.core import CAM, DEFAULT_LAYERS, Backend, CAMResult
from xai_checks.cam.pipeline import REL_EPS
from xai_checks.cam.state import LayerSpec
from xai_checks.cam.tokens import ReshapeSpec

__all__ = ["DEFAULT_LAYERS", "Backend", "CAMResult", "GradCAM"]


class GradCAM(CAM):
    """Grad-CAM at one or more layers: :class:`CAM` with ``method="gradcam"`` (see there)."""

    def __init__(
        self,
        model: nn.Module,
        *,
        layers: Sequence[LayerSpec] | LayerSpec | None = None,
        backend: Backend = "native",
        memory_format: torch.memory_format = torch.contiguous_format,
        fused: bool = True,
        autocast: torch.dtype | None = None,
        eps: float = REL_EPS,
        reshape: ReshapeSpec = None,
    ) -> None:
        super().__init__(
            model,
            layers=layers,
            method="gradcam",
            backend=backend,
            memory_format=memory_format,
            fused=fused,
            autocast=autocast,
            eps=eps,
            reshape=reshape,
        )
