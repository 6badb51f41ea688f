"""Every CAM method on torchvision's vit_b_16 and swin_t (random weights: a control made by
the package's re-initialisation rule, so the head is not torchvision's all-zero start) and real
shared photos, against pytorch-grad-cam 1.5.7 given the usual ``reshape_transform``: max |diff|
of canonical maps <= 1e-5 at every layer ``locate_layers`` picks.

pytorch-grad-cam's ``reshape_transform`` is applied to activations and gradients alike, as our
automatic view is; its normalisation conventions are those of ``test_cam_methods_real.py``. A
map whose range is below our normaliser's relative floor (float32 rounding of its terms) is
squashed by design. That happens for HiResCAM at a layer whose every path to the score starts
with a LayerNorm (the block before the last of a class-token ViT; Swin's last block, before its
final norm): a LayerNorm's input gradient sums to 0 over channels and is orthogonal to its
centred input, so sum_k g_k A_k is exactly 0 at every position, and pytorch-grad-cam shows
float32 noise stretched to [0, 1]. There the test asserts the map is below float32 resolution.

XGrad-CAM divides by each channel's spatial sum of activations; transformer activations are not
post-ReLU, so some channels sum to nearly 0 and the weights are ill-conditioned: float32
rounding moves maps by up to 7.2e-5 (measured, vit_b_16 and swin_t, 2 photos). Its tolerance is
1e-4; every other method is compared at 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from test_cam_methods_real import PGC
from test_cam_real import TOL, photos  # noqa: F401  (fixture; tests/unit is on sys.path)

from xai_checks.cam import CAM, METHODS, locate_layers
from xai_checks.models import reinitialised_copy

pytestmark = pytest.mark.slow

N = 2  # photos: a random ViT-B/16 forward + backward is ~1 s a photo on a CPU core


def vit_reshape(t: torch.Tensor) -> torch.Tensor:
    return t[:, 1:].reshape(t.shape[0], 14, 14, t.shape[2]).permute(0, 3, 1, 2)


def swin_reshape(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 3, 1, 2)


MODELS = {"vit_b_16": vit_reshape, "swin_t": swin_reshape}


@pytest.fixture(scope="module", params=list(MODELS))
def net(request):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = getattr(torchvision.models, request.param)(weights=None).eval()
    return request.param, reinitialised_copy(model, seed=0)


def pgc_maps(model, layers, x, labels, method, reshape):
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    class PerLayer(getattr(pgc, PGC[method])):  # type: ignore[misc]
        def aggregate_multi_layers(self, cams):
            return [scale_cam_image(np.maximum(c[:, 0], 0)) for c in cams]

    modules = [model.get_submodule(layer) for layer in layers]
    with PerLayer(model=model, target_layers=modules, reshape_transform=reshape) as cam:
        out = cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(int(t)) for t in labels])
    return {layer: torch.from_numpy(m) for layer, m in zip(layers, out, strict=True)}


# the gradient methods, each compared with its pytorch-grad-cam class (Eigen-CAM and Score-CAM
# are cross-checked on the ResNet-50 in test_cam_eigen_score_real.py)
@pytest.mark.parametrize("method", [m for m in METHODS if m in PGC])
def test_method_matches_pytorch_grad_cam_on_transformers(net, photos, method, kept_measurements):  # noqa: F811
    name, model = net
    x, labels, _ = photos
    x, labels = x[:N], labels[:N]
    layers = locate_layers(model)

    def compare() -> dict[str, list[float]]:
        """Per layer: max |diff| against pytorch-grad-cam, our map's peak, and the raw map's
        peak relative to its magnitude (the rounding noise a squashed map holds)."""
        mine = CAM(model, layers=layers, method=method)(x, targets=labels)
        theirs = pgc_maps(model, layers, x, labels, method, MODELS[name])
        return {
            layer: [
                float((mine.maps[layer] - theirs[layer]).abs().max()),
                float(mine.maps[layer].amax()),
                float((mine.raw[layer].amax(dim=(1, 2)) / mine.magnitude[layer]).max()),
            ]
            for layer in layers
        }

    # random-weight transformers at 224 px: kept between runs of the suite by content
    got = kept_measurements("comparison", compare, tensors=(x, labels))
    print(
        f"\n{name} {method} vs pytorch-grad-cam, max |diff|: { {k: v[0] for k, v in got.items()} }"
    )
    for layer in layers:
        diff, peak, noise = got[layer]
        if peak < 1.0:  # squashed: only rounding noise is left
            assert (method, layer) == ("hirescam", layers[-1])
            assert noise < 1e-5, (name, method, layer)
            continue
        tol = 1e-4 if method == "xgradcam" else TOL
        assert diff <= tol, (name, method, layer, diff)
