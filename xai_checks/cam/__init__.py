"""CAM maps: the canonical pipeline (``pipeline``), one file per method (``methods``), a fused
native backend and a Captum backend, and automatic stage location.

The names below load on first use, so that ``xai_checks.cam.methods`` (the method registry,
read when parsing options) imports no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xai_checks.cam.core import CAM, DEFAULT_LAYERS, CAMResult
    from xai_checks.cam.gradcam import GradCAM
    from xai_checks.cam.locate import locate_layers
    from xai_checks.cam.methods import METHODS, CAMMethod, get_method
    from xai_checks.cam.pipeline import (
        canonical,
        channel_weights,
        normalise,
        upsample,
        weighted_map,
    )
    from xai_checks.cam.state import frozen_eval, resolve_layers

_HOME = {
    "CAM": "core",
    "DEFAULT_LAYERS": "core",
    "CAMResult": "core",
    "GradCAM": "gradcam",
    "locate_layers": "locate",
    "METHODS": "methods",
    "CAMMethod": "methods",
    "get_method": "methods",
    "canonical": "pipeline",
    "channel_weights": "pipeline",
    "normalise": "pipeline",
    "upsample": "pipeline",
    "weighted_map": "pipeline",
    "frozen_eval": "state",
    "resolve_layers": "state",
}

__all__ = [
    "CAM",
    "DEFAULT_LAYERS",
    "METHODS",
    "CAMMethod",
    "CAMResult",
    "GradCAM",
    "canonical",
    "channel_weights",
    "frozen_eval",
    "get_method",
    "locate_layers",
    "normalise",
    "resolve_layers",
    "upsample",
    "weighted_map",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])
