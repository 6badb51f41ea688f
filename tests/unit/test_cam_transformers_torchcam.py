"""The gradient CAM methods on torchvision's vit_b_16 and swin_t, against torch-cam 0.5 given
the same ``reshape_transform`` (torch-cam applies it to activations and gradients alike, as our
automatic view is): the layer-resolution maps, ReLU(sum_k w_k A_k), agree to 1e-5 of the map's
largest value at every layer ``locate_layers`` picks (XGrad-CAM: 1e-4, its weights divide by
per-channel activation sums that are near 0 in a transformer; see
test_cam_transformers_real.py). Random weights, re-initialised by the package's rule, as there.

Maps are compared before normalisation: torch-cam's min-max adds 1e-8 to the divisor, which is
not small beside a random transformer's raw maps.
"""

from __future__ import annotations

import pytest
import torch
from test_cam_real import photos  # noqa: F401  (fixture; tests/unit is on sys.path)
from test_cam_transformers_real import MODELS, N, net  # noqa: F401  (fixture)

from xai_checks.cam import CAM, locate_layers

pytestmark = pytest.mark.slow

#: our method -> torch-cam 0.5's class of the same definition
TORCHCAM = {"gradcam": "GradCAM", "layercam": "LayerCAM", "xgradcam": "XGradCAM"}


def torchcam_raw(model, layers, x, labels, method, reshape):
    methods = pytest.importorskip("torchcam.methods")
    extractor_class = getattr(methods, TORCHCAM[method])
    with extractor_class(model, target_layer=list(layers), reshape_transform=reshape) as ex:
        scores = model(x.clone())
        maps = ex(class_idx=[int(t) for t in labels], scores=scores, normalized=False)
    return {layer: m.detach() for layer, m in zip(layers, maps, strict=True)}


@pytest.mark.parametrize("method", list(TORCHCAM))
def test_method_matches_torchcam_on_transformers(net, photos, method, kept_measurements):  # noqa: F811
    name, model = net
    x, labels, _ = photos
    x, labels = x[:N], labels[:N]
    layers = locate_layers(model)

    def compare() -> dict[str, list]:
        """Per layer: whether the shapes agree, our map's scale and max |diff| to torch-cam."""
        mine = CAM(model, layers=layers, method=method)(x, targets=labels)
        theirs = torchcam_raw(model, layers, x, labels, method, MODELS[name])
        out = {}
        for layer in layers:
            ours = torch.relu(mine.raw[layer])
            same_shape = ours.shape == theirs[layer].shape
            diff = float((ours - theirs[layer]).abs().amax()) if same_shape else float("nan")
            out[layer] = [same_shape, float(ours.abs().amax()), diff]
        return out

    # random-weight transformers at 224 px: kept between runs of the suite by content
    got = kept_measurements("comparison", compare, tensors=(x, labels))
    tol = 1e-4 if method == "xgradcam" else 1e-5
    for layer in layers:
        same_shape, scale, diff = got[layer]
        assert same_shape, (name, layer)
        assert scale > 0, (name, method, layer)  # an empty map would agree vacuously
        print(f"\n{name} {method} {layer} vs torch-cam: max |diff| / scale = {diff / scale:.2e}")
        assert diff <= tol * scale, (name, method, layer, diff, scale)
