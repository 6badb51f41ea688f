"""The shared helpers in ``xai_checks._util``: one JSON-safe converter, one device helper."""

from __future__ import annotations

import json
import math
from enum import Enum
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xai_checks._util import IMAGENET_MEAN, IMAGENET_STD, jsonable, model_device


class _Colour(Enum):
    RED = "red"


class _HasDict:
    def to_dict(self) -> dict[str, object]:
        return {"x": np.float32(0.5)}


def test_jsonable_covers_what_the_three_old_copies_did() -> None:
    doc = {
        1: (np.int64(3), np.float32(1.5), np.bool_(True)),
        "nan": float("nan"),
        "inf": np.float64(-math.inf),
        "array": np.arange(3),
        "tensor": torch.tensor([[1.0, float("nan")]]),
        "path": Path("a/b"),
        "enum": _Colour.RED,
        "set": frozenset({2}),
        "obj": _HasDict(),
        "none": None,
    }
    out = jsonable(doc)
    assert out == {
        "1": [3, 1.5, True],
        "nan": None,
        "inf": None,
        "array": [0, 1, 2],
        "tensor": [[1.0, None]],
        "path": str(Path("a/b")),
        "enum": "red",
        "set": [2],
        "obj": {"x": 0.5},
        "none": None,
    }
    # Plain Python types only, so the strict encoder accepts it.
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    assert type(out["1"][1]) is float and type(out["1"][0]) is int


def test_model_device_prefers_parameters_then_buffers_then_cpu() -> None:
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(nn.BatchNorm2d(2, affine=False)) == torch.device("cpu")
    assert model_device(nn.ReLU()) == torch.device("cpu")
    meta = nn.BatchNorm2d(2, affine=False, device="meta")
    assert model_device(meta) == torch.device("meta")


def test_imagenet_constants_are_the_one_copy() -> None:
    from xai_checks import models
    from xai_checks.data import loading

    assert models.IMAGENET_MEAN is IMAGENET_MEAN and loading.IMAGENET_STD is IMAGENET_STD
