"""Eigen-CAM and Score-CAM on the real pretrained ResNet-50 and real shared photos, against
pytorch-grad-cam 1.5.7's ``EigenCAM`` and ``ScoreCAM``: max |diff| of canonical maps <= 1e-5.

Settings matched: the final maps as in test_cam_methods_real.py (pytorch-grad-cam's ReLU,
min-max, cv2 bilinear resize, min-max again, against our bilinear ``align_corners=False``
upsample and one min-max). Score-CAM's masks are upsampled as pytorch-grad-cam does
(``UpsamplingBilinear2d``, ``align_corners=True``) and normalised with its ``+1e-8``; that is
the method's own convention (methods/scorecam.py), not a test setting.

Eigen-CAM's sign: ``EigenCAM`` keeps LAPACK's arbitrary sign; ours is pytorch-grad-cam's sign
correction (|max| >= |min| of the projection). The reference is therefore ``EigenCAM`` with its
projection replaced by ``get_2d_projection_with_sign_correction``; plain ``EigenCAM`` must
equal ours or our map of the opposite sign.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from test_cam_real import TOL, model, photos  # noqa: F401  (fixtures; tests/unit is on sys.path)

from xai_checks.cam import CAM, DEFAULT_LAYERS, canonical
from xai_checks.cam.methods import eigencam, scorecam
from xai_checks.models import _cache_paths

pytestmark = pytest.mark.slow


def pgc_per_layer(cls: type, net, x, labels, layers) -> dict[str, torch.Tensor]:
    """pytorch-grad-cam's canonical map per layer (its multi-layer average undone)."""
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    class PerLayer(cls):  # type: ignore[misc, valid-type]
        def aggregate_multi_layers(self, cams):
            return [scale_cam_image(np.maximum(c[:, 0], 0)) for c in cams]

    modules = [net.get_submodule(layer) for layer in layers]
    with PerLayer(model=net, target_layers=modules) as cam:
        out = cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(int(t)) for t in labels])
    return {layer: torch.from_numpy(m) for layer, m in zip(layers, out, strict=True)}


def test_eigencam_matches_pytorch_grad_cam_with_its_sign_correction(
    model,  # noqa: F811
    photos,  # noqa: F811
    kept_measurements,
):
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction

    class SignCorrected(pgc.EigenCAM):  # type: ignore[misc, name-defined]
        def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, smooth):
            return get_2d_projection_with_sign_correction(activations)

    x, labels, files = photos

    def compare() -> dict[str, list[float]]:
        """Per layer: our map's peak and max |diff| to the sign-corrected EigenCAM."""
        ours = CAM(model, method="eigencam")(x, targets=labels)
        theirs = pgc_per_layer(SignCorrected, model, x, labels, DEFAULT_LAYERS)
        return {
            layer: [
                float(ours.maps[layer].amax()),
                float((ours.maps[layer] - theirs[layer]).abs().max()),
            ]
            for layer in DEFAULT_LAYERS
        }

    # the real ResNet-50 on real photos: kept between runs of the suite by content
    got = kept_measurements("comparison", compare, inputs=(_cache_paths()[0],), tensors=(x, labels))
    print(f"\neigencam vs pytorch-grad-cam (sign-corrected) on {files}: {got}")
    for layer in DEFAULT_LAYERS:
        peak, diff = got[layer]
        assert peak == 1.0, layer  # not a flat map
        assert diff <= TOL, (layer, diff)


def test_eigencam_is_plain_eigencam_up_to_sign(model, photos):  # noqa: F811
    pgc = pytest.importorskip("pytorch_grad_cam")
    x, labels, _ = photos
    layers = ["layer4"]  # pytorch-grad-cam's full-matrices SVD makes the early stages slow
    theirs = pgc_per_layer(pgc.EigenCAM, model, x, labels, layers)
    size = (int(x.shape[2]), int(x.shape[3]))
    agree = 0
    for layer in layers:
        acts = _activations(model, x, layer)
        centred = acts - acts.mean(dim=(2, 3), keepdim=True)
        v = eigencam.first_component(centred.flatten(2).transpose(1, 2))
        projection = torch.einsum("nchw,nc->nhw", centred, v)
        same = canonical(projection.clamp_min(0), size)
        flipped = canonical((-projection).clamp_min(0), size)
        for i in range(x.shape[0]):
            d_same = float((same[i] - theirs[layer][i]).abs().max())
            d_flip = float((flipped[i] - theirs[layer][i]).abs().max())
            assert min(d_same, d_flip) <= TOL, (layer, i, d_same, d_flip)
            agree += d_same <= TOL
    print(f"\nplain EigenCAM took our sign in {agree} of {len(layers) * x.shape[0]} maps")


def _activations(net, x, layer: str) -> torch.Tensor:
    store: list[torch.Tensor] = []
    handle = net.get_submodule(layer).register_forward_hook(lambda m, a, out: store.append(out))
    try:
        with torch.no_grad():
            net(x)
    finally:
        handle.remove()
    return store[0].float()


# Score-CAM makes one forward per channel of the layer: the stem's maxpool (64 channels, the
# resolution of layer1) on one photo is 64 forwards, and pytorch-grad-cam runs as many again.
# The method's code does not depend on the layer. Its batch size is set to ours so that both
# run the same batches.
SCORE_LAYER = "maxpool"
SCORE_PHOTOS = 1
SCORE_BATCH = 64


def test_scorecam_matches_pytorch_grad_cam(model, photos, kept_measurements):  # noqa: F811
    pgc = pytest.importorskip("pytorch_grad_cam")
    x, labels, files = photos
    x, labels = x[:SCORE_PHOTOS], labels[:SCORE_PHOTOS]
    method = scorecam.with_batch_size(SCORE_BATCH)

    class Batched(pgc.ScoreCAM):  # type: ignore[misc, name-defined]
        batch_size = SCORE_BATCH

    def compare() -> list[float]:
        """Our map's peak, max |diff| to pytorch-grad-cam's, and our seconds per photo."""
        start = time.perf_counter()
        ours = CAM(model, layers=[SCORE_LAYER], method=method)(x, targets=labels)
        seconds = time.perf_counter() - start
        theirs = pgc_per_layer(Batched, model, x, labels, [SCORE_LAYER])[SCORE_LAYER]
        peak = float(ours.maps[SCORE_LAYER].amax())
        return [peak, float((ours.maps[SCORE_LAYER] - theirs).abs().max()), seconds]

    # the real ResNet-50 on a real photo: kept between runs of the suite by content
    peak, diff, seconds = kept_measurements(
        "comparison", compare, inputs=(_cache_paths()[0],), tensors=(x, labels)
    )
    print(
        f"\nscorecam vs pytorch-grad-cam at {SCORE_LAYER} on {files[:SCORE_PHOTOS]}: {diff:.2e}; "
        f"ours {seconds / SCORE_PHOTOS:.1f} s per photo"
    )
    assert peak == 1.0
    assert diff <= TOL, diff
