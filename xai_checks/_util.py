"""Small helpers shared across the package: one JSON-safe converter, the ImageNet
normalisation constants, and the device a model lives on.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Iterator, Mapping
from enum import Enum
from pathlib import PurePath
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NonFiniteError",
    "as_model_input",
    "check_finite",
    "cuda_tf32",
    "jsonable",
    "meta_tensors",
    "model_device",
    "model_dtype",
    "model_name",
    "state_digest",
]

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


def state_digest(model: nn.Module) -> str:
    """A sha256 of ``model``'s parameters and buffers (names, dtypes, shapes, values): it
    changes when any of them does."""
    import hashlib

    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            t = tensor.detach().to("cpu").contiguous()
            digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def meta_tensors(model: nn.Module) -> list[str]:
    """Names of ``model``'s parameters and buffers on the meta device (shapes, no values)."""
    named = [*model.named_parameters(), *model.named_buffers()]
    return [name for name, t in named if t.is_meta]


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); CPU for a model with neither."""
    for parameter in model.parameters():
        return parameter.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of ``model``'s first floating-point parameter (or buffer); None if it has none."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def model_name(model: nn.Module) -> str:
    """How errors name a model: its class, and its weights source when it records one."""
    name = type(model).__name__
    info = getattr(model, "xai_weights", None)
    source = getattr(info, "source", None)
    return f"{name} (weights {source!r})" if source else name


class NonFiniteError(ValueError):
    """NaN or infinity where only finite numbers make sense (an input batch, logits, maps)."""


def check_finite(tensor: torch.Tensor, *, what: str) -> None:
    """Raise :class:`NonFiniteError` if ``tensor`` holds NaN or inf; the message says ``what``
    it is, how many values are NaN and how many infinite, and which items (along dim 0)."""
    if not tensor.is_floating_point() and not tensor.is_complex():
        return
    finite = torch.isfinite(tensor)
    if bool(finite.all()):
        return
    nan = int(torch.isnan(tensor).sum())
    inf = int((~finite).sum()) - nan
    where = ""
    if tensor.ndim:
        items = (~finite).reshape(tensor.shape[0], -1).any(dim=1).nonzero().flatten().tolist()
        shown = ", ".join(str(i) for i in items[:5]) + (", ..." if len(items) > 5 else "")
        where = f" in {len(items)} of {tensor.shape[0]} items ({shown})"
    raise NonFiniteError(f"non-finite values in {what}: {nan} NaN and {inf} infinite{where}")


def as_model_input(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """``x`` checked and ready for ``model``: finite (else :class:`NonFiniteError`), and cast to
    the model's floating dtype when it differs (float64 photos for a float32 model)."""
    check_finite(x, what="the input batch")
    dtype = model_dtype(model)
    if dtype is not None and x.is_floating_point() and x.dtype != dtype:
        x = x.to(dtype)
    return x


@contextlib.contextmanager
def cuda_tf32(*, allowed: bool) -> Iterator[None]:
    """Set whether CUDA convolutions and matrix products may use TF32 (10-bit mantissa) for the
    body, and restore PyTorch's flags after. Without effect on CPU computations."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = allowed
    torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
