"""CAM maps of the Grad-CAM family: the canonical pipeline (``pipeline``), one file per method
(``methods``), a fused native backend and a Captum backend, and automatic stage location."""

from xai_checks.cam.core import CAM, DEFAULT_LAYERS, CAMResult
from xai_checks.cam.gradcam import GradCAM
from xai_checks.cam.locate import locate_layers
from xai_checks.cam.methods import METHODS, CAMMethod, get_method
from xai_checks.cam.pipeline import canonical, channel_weights, normalise, upsample, weighted_map
from xai_checks.cam.state import frozen_eval, resolve_layers

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
