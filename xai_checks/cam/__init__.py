"""Grad-CAM: the canonical pipeline (``pipeline``), a fused native backend and a Captum backend."""

from xai_checks.cam.gradcam import DEFAULT_LAYERS, CAMResult, GradCAM
from xai_checks.cam.pipeline import canonical, channel_weights, upsample, weighted_map
from xai_checks.cam.state import frozen_eval, resolve_layers

__all__ = [
    "DEFAULT_LAYERS",
    "CAMResult",
    "GradCAM",
    "canonical",
    "channel_weights",
    "frozen_eval",
    "resolve_layers",
    "upsample",
    "weighted_map",
]
