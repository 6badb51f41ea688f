"""Grad-CAM on the real pretrained ResNet-50 (``load_resnet50("msra")``) and real shared photos:
native vs Captum vs pytorch-grad-cam at all four stages, and the layer4 GAP->fc oracle.

Slow (a ResNet-50 forward/backward per backend and layer on a laptop CPU). The fast versions on
tiny nets are in ``test_cam_equivalence.py`` and ``test_cam_oracles.py``; the pytorch-grad-cam
comparison is explained in ``test_cam_equivalence.py``'s docstring.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest
import torch

from xai_checks.cam import DEFAULT_LAYERS, GradCAM

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
N_PHOTOS = 4
TOL = 1e-5


def transform():
    try:
        from xai_checks.data import standard_transform
    except ImportError:  # pragma: no cover - the data package predates it in some checkouts
        import torchvision.transforms as T

        return T.Compose(
            [
                T.Resize(256),
                T.CenterCrop(224),
                T.ToTensor(),
                T.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
            ]
        )
    return standard_transform()


@pytest.fixture(scope="module")
def photos(shared_photos: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``N_PHOTOS`` photos spread over the manifest (rows 0, 250, 500, 750), sha256-checked."""
    folder = shared_photos
    manifest = folder / "MANIFEST.tsv"
    from PIL import Image

    with manifest.open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    chosen = rows[:: max(1, len(rows) // N_PHOTOS)][:N_PHOTOS]
    tf = transform()
    images, labels = [], []
    for row in chosen:
        path = folder / row["file"]
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest == row["sha256"], f"{path} does not match MANIFEST.tsv"
        with Image.open(path) as im:
            images.append(tf(im.convert("RGB")))
        labels.append(int(row["class_index"]))
    return torch.stack(images), torch.tensor(labels), [r["file"] for r in chosen]


@pytest.fixture(scope="module")
def model():
    from xai_checks.models import load_resnet50

    return load_resnet50("msra")


@pytest.fixture(scope="module")
def native(model, photos):
    x, labels, _ = photos
    return GradCAM(model)(x, targets=labels)


def test_photos_and_model_are_what_we_think(model, photos, native):
    x, labels, _ = photos
    assert torch.equal(native.targets, labels)
    assert x.shape == (N_PHOTOS, 3, 224, 224)
    assert native.logits.shape == (N_PHOTOS, 1000)
    # The maps at the four stages have ResNet-50's resolutions and are not flat.
    for layer, side in zip(DEFAULT_LAYERS, (56, 28, 14, 7), strict=True):
        assert native.raw[layer].shape == (N_PHOTOS, side, side)
        assert native.maps[layer].shape == (N_PHOTOS, 224, 224)
        assert bool((native.maps[layer].amax(dim=(1, 2)) == 1.0).all()), layer


def test_native_matches_captum_on_real_photos(model, photos, native):
    x, labels, files = photos
    captum = GradCAM(model, backend="captum")(x, targets=labels)
    diffs = {
        layer: float((native.maps[layer] - captum.maps[layer]).abs().max())
        for layer in DEFAULT_LAYERS
    }
    print(f"\nnative vs Captum, max |diff| of canonical maps on {files}: {diffs}")
    for layer in DEFAULT_LAYERS:
        assert diffs[layer] <= TOL, (layer, diffs[layer])
        scale = float(native.raw[layer].amax())
        torch.testing.assert_close(
            captum.raw[layer], native.raw[layer], rtol=1e-4, atol=1e-5 * scale
        )
    torch.testing.assert_close(captum.logits, native.logits, rtol=1e-5, atol=1e-4)


def test_native_matches_grad_cam_package_on_real_photos(model, photos, native):
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x, labels, files = photos
    diffs = {}
    for layer in DEFAULT_LAYERS:
        # One target layer per call: given several, the package averages their maps.
        with pgc.GradCAM(model=model, target_layers=[model.get_submodule(layer)]) as cam:
            theirs = cam(
                input_tensor=x.clone(), targets=[ClassifierOutputTarget(int(t)) for t in labels]
            )
        theirs_t = torch.from_numpy(theirs)
        assert theirs_t.shape == native.maps[layer].shape
        diffs[layer] = float((native.maps[layer] - theirs_t).abs().max())
    print(f"\nnative vs pytorch-grad-cam, max |diff| of canonical maps on {files}: {diffs}")
    for layer in DEFAULT_LAYERS:
        assert diffs[layer] <= TOL, (layer, diffs[layer])


def test_layer4_gap_fc_oracle_on_the_real_model(model, photos, native):
    """layer4 feeds avgpool -> fc, so raw Grad-CAM there is ReLU(sum_k W[c, k] A_k) / 49."""
    x, labels, _ = photos
    store: list[torch.Tensor] = []
    handle = model.layer4.register_forward_hook(lambda m, a, out: store.append(out.detach()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    acts = store[0].double()
    assert acts.shape == (N_PHOTOS, 2048, 7, 7)
    w = model.fc.weight.detach().double()[labels]
    signed = torch.einsum("nkhw,nk->nhw", acts, w)
    assert bool((signed < 0).any()), "no negative positions: the ReLU would go untested"
    expected = (torch.relu(signed) / 49).float()
    scale = float(expected.amax())
    torch.testing.assert_close(native.raw["layer4"], expected, rtol=1e-4, atol=1e-5 * scale)
