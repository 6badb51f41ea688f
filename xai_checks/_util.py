"""Small helpers shared across the package: one JSON-safe converter, the ImageNet
normalisation constants, and the device a model lives on.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from enum import Enum
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "jsonable", "model_device"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel RGB mean of ImageNet-1k train images, in [0, 1] (torchvision's constants)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel RGB standard deviation of ImageNet-1k train images, in [0, 1]."""


def jsonable(obj: Any) -> Any:
    """A JSON-safe copy of ``obj``.

    numpy and torch values become Python ones, NaN and inf become ``None``, enums their values,
    paths strings, tuples and sets lists, mapping keys strings; an object with ``to_dict()`` is
    converted through it, and anything else becomes ``str(obj)``.
    """
    if isinstance(obj, Enum):
        return jsonable(obj.value)
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, PurePath | os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # a torch tensor
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "to_dict"):
        return jsonable(obj.to_dict())
    return str(obj)


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); CPU for a model with neither."""
    for parameter in model.parameters():
        return parameter.device
    for buffer in model.buffers():
        return buffer.device
    import torch

    return torch.device("cpu")
