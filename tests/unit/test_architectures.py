"""The architectures people use, with random weights (shapes only, no claim about learning):
layers picked, map shapes for every method, the control's re-initialisation, and the study end
to end (every phase) on two embedded photos.

torchvision: resnet18, mobilenet_v3_small, efficientnet_b0, convnext_tiny, vit_b_16, swin_t;
timm (a test dependency): vit_tiny_patch16_224, deit_tiny_patch16_224, convnext_atto.
CNNs run at 64 px, transformers at the 224 px their position embeddings are built for.
"""

from __future__ import annotations

import pytest
import torch

from xai_checks.cam import CAM, METHODS, locate_layers
from xai_checks.cam.methods import get_method
from xai_checks.data import open_photoset
from xai_checks.data.classes import Preprocess
from xai_checks.models import reinitialised_copy
from xai_checks.study import StudyConfig, run_study

pytestmark = pytest.mark.slow

VIT_B = [f"encoder.layers.encoder_layer_{i}" for i in (2, 5, 8, 10)]
TIMM_VIT = ["blocks.2", "blocks.5", "blocks.8", "blocks.10"]
CASES = {
    # name: (library, input size, layers picked, their map sizes)
    "resnet18": ("torchvision", 64, ["layer1", "layer2", "layer3", "layer4"], [16, 8, 4, 2]),
    "mobilenet_v3_small": (
        "torchvision", 64,
        ["features.0", "features.1", "features.3", "features.8"], [32, 16, 8, 4],
    ),
    "efficientnet_b0": (
        "torchvision", 64,
        ["features.1", "features.2", "features.3", "features.5"], [32, 16, 8, 4],
    ),
    "convnext_tiny": (
        "torchvision", 64,
        ["features.1", "features.3", "features.5", "features.7"], [16, 8, 4, 2],
    ),
    "vit_b_16": ("torchvision", 224, VIT_B, [14] * 4),
    "swin_t": (
        "torchvision", 224,
        ["features.1.1", "features.3.1", "features.5.5", "features.7.1"], [56, 28, 14, 7],
    ),
    "vit_tiny_patch16_224": ("timm", 224, TIMM_VIT, [14] * 4),
    "deit_tiny_patch16_224": ("timm", 224, TIMM_VIT, [14] * 4),
    "convnext_atto": ("timm", 64, ["stages.0", "stages.1", "stages.2", "stages.3"], [16, 8, 4, 2]),
}  # fmt: skip


def build(name: str) -> torch.nn.Module:
    library = CASES[name][0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if library == "timm":
            timm = pytest.importorskip("timm")
            model = timm.create_model(name, pretrained=False)
        else:
            import torchvision

            model = getattr(torchvision.models, name)(weights=None)
    return model.eval()


def _varies(t: torch.Tensor) -> bool:
    """Whether ``t`` holds more than one value (one pass; ``unique`` sorts ViT-B's 86M)."""
    return bool((t != t.flatten()[0]).any())


def _measure(name: str) -> dict[str, object]:
    """What the test asserts on, as JSON: the layers picked, the control's unchanged weights,
    each method's map shapes, and the study's outline."""
    _, size, expected, _ = CASES[name]
    model = build(name)
    layers = locate_layers(model, (1, 3, size, size))

    # the control: every non-constant parameter of two or more dimensions re-drawn (a constant
    # one, like torchvision's all-zero class token, may land on the value the rule states)
    control = reinitialised_copy(model, seed=0)
    before = dict(model.named_parameters())
    same = [
        k
        for k, p in control.named_parameters()
        if p.ndim >= 2 and _varies(before[k]) and torch.equal(p, before[k])
    ]

    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    # all layers from one fused pass per method; Score-CAM (a forward per channel, thousands on
    # these models) has its own cross-check on the ResNet-50 and its oracles
    maps = {}
    for method in (m for m in METHODS if "model" not in get_method(m).needs):
        result = CAM(control, layers=expected, method=method)(x, targets=3)
        maps[method] = {
            layer: [
                list(result.raw[layer].shape),
                list(result.maps[layer].shape),
                bool(torch.isfinite(result.maps[layer]).all()),
            ]
            for layer in expected
        }

    photos = open_photoset("embedded", limit=2)  # shapes and plumbing, not statistics
    config = StudyConfig(
        layers=(),
        batch_size=2,
        sanity_images=2,
        agreement_images=1,
        gridpg_mosaics=1,
        # one control network: the plumbing of later draws has its own tests
        control_seeds=1,
        preprocess=Preprocess(input_size=size),
    )
    study = run_study(model, photos, config=config)
    return {
        "layers": layers,
        "same": same,
        "maps": maps,
        "study_layers": list(study.config.layers),
        "layers_auto": study.config.layers_auto,
        "n_used": study.photoset["n_used"],
        "runs": list(study.runs),
        "sanity_steps": list(study.sanity.steps) if study.sanity is not None else None,
    }


@pytest.mark.parametrize("name", list(CASES))
def test_layers_maps_control_and_study(name, kept_measurements):
    _, size, expected, sides = CASES[name]
    # random weights at 224 px (ViT-B, Swin): kept between runs of the suite by content
    got = kept_measurements("outline", lambda: _measure(name))
    assert got["layers"][: len(expected)] == expected
    assert not got["same"], got["same"]
    assert set(got["maps"]) == {m for m in METHODS if "model" not in get_method(m).needs}
    for method, by_layer in got["maps"].items():
        for layer, side in zip(expected, sides, strict=True):
            raw, upsampled, finite = by_layer[layer]
            assert raw == [1, side, side], (method, layer)
            assert upsampled == [1, size, size]
            assert finite
    assert got["study_layers"] == got["layers"] and got["layers_auto"]
    assert got["n_used"] == 2
    assert got["runs"] == ["under_test", "untrained"]
    assert got["sanity_steps"]
