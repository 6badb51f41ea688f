"""Grad-CAM backends agree: native vs Captum vs pytorch-grad-cam, fused vs per-layer, batched vs
per-image, run-to-run, CPU vs CUDA. Fast: tiny random conv nets. The real-model, real-photo
versions are in ``test_cam_real.py``.

About the pytorch-grad-cam (PyPI ``grad-cam``) comparison, read from its source (1.5.x,
``base_cam.py`` / ``utils/image.py``): per target layer it takes ``ReLU(sum_k mean(grad_k) A_k)``,
min-max normalises *at layer resolution* (``(x - min) / (1e-7 + max)``), upsamples with
``cv2.resize(..., (W, H))`` (default ``INTER_LINEAR``: half-pixel centres, i.e. bilinear with
``align_corners=False``, no antialiasing) and, after averaging over the target layers, min-max
normalises again. Min-max is invariant under positive affine maps and bilinear interpolation
commutes with them, so with ONE target layer per call this equals the canonical "upsample, then
min-max" up to the epsilons and rounding. The fair comparison therefore needs only: one
``GradCAM`` per layer (never a list of layers, which it would average), ``ClassifierOutputTarget``
per image (the pre-softmax logit), and maps whose range is far above its 1e-7 epsilon.
``test_cv2_linear_resize_is_bilinear_half_pixel`` pins the cv2 part of that reasoning.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xai_checks._util import cuda_tf32
from xai_checks.cam import DEFAULT_LAYERS, GradCAM

TOL = 1e-5


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every test here runs its tiny nets on one thread (see conftest)."""


def tiny_net(
    seed: int, *, c_in: int = 3, widths: tuple[int, ...] = (4, 6, 8, 8), classes: int = 5
) -> nn.Module:
    """A random ResNet-shaped conv net: stages ``layer1``..``layer4`` (conv-BN-ReLU), GAP, ``fc``.

    BN running statistics and affine parameters are randomised so eval-mode BN is not a no-op.
    The global RNG is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mods: OrderedDict[str, nn.Module] = OrderedDict()
        c = c_in
        for i, w in enumerate(widths):
            mods[f"layer{i + 1}"] = nn.Sequential(
                nn.Conv2d(c, w, 3, stride=1 if i == 0 else 2, padding=1),
                nn.BatchNorm2d(w),
                nn.ReLU(),
            )
            c = w
        mods["avgpool"] = nn.AdaptiveAvgPool2d(1)
        mods["flatten"] = nn.Flatten()
        mods["fc"] = nn.Linear(c, classes)
        model = nn.Sequential(mods)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                nn.init.uniform_(m.weight, 0.5, 1.5)
                nn.init.uniform_(m.bias, -0.2, 0.2)
    return model.eval()


def batch(seed: int, n: int = 3, c: int = 3, h: int = 20, w: int = 28) -> torch.Tensor:
    """Non-square on purpose, so a swapped (H, W) anywhere shows up."""
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float().cpu() - b.float().cpu()).abs().max())


def assert_nontrivial(result, layers=DEFAULT_LAYERS) -> None:
    """Agreement between all-zero maps proves nothing: insist on some signal in every layer
    (raw maps are in logit units / positions, so their scale varies a lot between layers)."""
    for layer in layers:
        assert float(result.raw[layer].amax()) > 0, f"{layer}: raw map is all zero"
        assert float(result.maps[layer].amax()) > 0.99, f"{layer}: canonical map is all zero"


def assert_raw_close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> None:
    """Raw maps equal to ``rel`` of their own scale."""
    scale = float(a.abs().amax())
    torch.testing.assert_close(a, b, rtol=rel, atol=rel * scale)


def grad_cam_pkg_maps(model: nn.Module, layer: nn.Module, x: torch.Tensor, targets) -> np.ndarray:
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with pgc.GradCAM(model=model, target_layers=[layer]) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])


# --------------------------------------------------------------------------------------------
# native vs Captum vs pytorch-grad-cam


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_native_matches_captum_on_tiny_nets(seed):
    model = tiny_net(seed)
    x = batch(seed)
    targets = [seed % 5, (seed + 2) % 5, (seed + 4) % 5]
    native = GradCAM(model)(x, targets=targets)
    captum = GradCAM(model, backend="captum")(x, targets=targets)
    assert native.backend == "native" and captum.backend == "captum"
    assert_nontrivial(native)
    for layer in DEFAULT_LAYERS:
        assert native.maps[layer].shape == (3, 20, 28)
        assert max_diff(native.maps[layer], captum.maps[layer]) <= TOL, layer
        assert_raw_close(native.raw[layer], captum.raw[layer])
    torch.testing.assert_close(native.logits, captum.logits, rtol=1e-5, atol=1e-6)
    assert torch.equal(native.targets, torch.tensor(targets))


def test_native_matches_captum_with_predicted_targets():
    model = tiny_net(3)
    x = batch(3, n=4)
    native = GradCAM(model)(x)
    captum = GradCAM(model, backend="captum")(x)
    expected = model(x).argmax(dim=1)
    assert torch.equal(native.targets, expected) and torch.equal(captum.targets, expected)
    assert torch.equal(native.predictions, expected)
    for layer in DEFAULT_LAYERS:
        assert max_diff(native.maps[layer], captum.maps[layer]) <= TOL, layer


def test_cv2_linear_resize_is_bilinear_half_pixel():
    """The premise of the fair pytorch-grad-cam comparison (see the module docstring)."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    for (h, w), (big_h, big_w) in [((7, 7), (224, 224)), ((3, 4), (20, 28)), ((5, 4), (17, 30))]:
        a = rng.random((h, w), dtype=np.float32)
        ours = F.interpolate(
            torch.from_numpy(a)[None, None],
            size=(big_h, big_w),
            mode="bilinear",
            align_corners=False,
        )[0, 0].numpy()
        theirs = cv2.resize(a, (big_w, big_h))
        assert theirs.shape == (big_h, big_w)
        assert np.abs(ours - theirs).max() <= 1e-6


@pytest.mark.parametrize("seed", [0, 4])
def test_native_matches_grad_cam_package_on_tiny_nets(seed):
    model = tiny_net(seed)
    x = batch(seed)
    targets = [1, 3, 4]
    native = GradCAM(model)(x, targets=targets)
    assert_nontrivial(native)
    for layer in DEFAULT_LAYERS:
        theirs = torch.from_numpy(grad_cam_pkg_maps(model, model.get_submodule(layer), x, targets))
        assert theirs.shape == native.maps[layer].shape
        assert max_diff(native.maps[layer], theirs) <= TOL, layer


# --------------------------------------------------------------------------------------------
# fused vs per-layer, batched vs per-image, determinism


def test_fused_equals_per_layer():
    model = tiny_net(5)
    x = batch(5, n=4)
    fused = GradCAM(model, fused=True)(x, targets=[0, 1, 2, 3])
    split = GradCAM(model, fused=False)(x, targets=[0, 1, 2, 3])
    assert_nontrivial(fused)
    assert fused.layers == split.layers == DEFAULT_LAYERS
    for layer in DEFAULT_LAYERS:
        assert_raw_close(fused.raw[layer], split.raw[layer], rel=1e-6)
        assert max_diff(fused.maps[layer], split.maps[layer]) <= 1e-6, layer
    torch.testing.assert_close(fused.logits, split.logits, rtol=0, atol=0)


def test_layer_subsets_equal_all_layers():
    """Hooking more layers in the fused pass must not change any one layer's map."""
    model = tiny_net(6)
    x = batch(6)
    full = GradCAM(model)(x, targets=2)
    for layer in DEFAULT_LAYERS:
        one = GradCAM(model, layers=layer)(x, targets=2)
        assert one.layers == (layer,)
        assert max_diff(full.maps[layer], one.maps[layer]) <= 1e-6, layer


@pytest.mark.parametrize("backend", ["native", "captum"])
def test_batched_equals_per_image(backend):
    model = tiny_net(7)
    x = batch(7, n=4)
    targets = [4, 0, 2, 2]
    cam = GradCAM(model, backend=backend)
    batched = cam(x, targets=targets)
    assert_nontrivial(batched)
    for i, t in enumerate(targets):
        single = cam(x[i : i + 1], targets=[t])
        for layer in DEFAULT_LAYERS:
            assert max_diff(batched.maps[layer][i : i + 1], single.maps[layer]) <= TOL, (i, layer)
            assert_raw_close(batched.raw[layer][i : i + 1], single.raw[layer])


@pytest.mark.parametrize("backend", ["native", "captum"])
def test_repeated_calls_are_deterministic(backend):
    model = tiny_net(8)
    x = batch(8)
    cam = GradCAM(model, backend=backend)
    first = cam(x)
    for _ in range(2):
        again = cam(x)
        assert torch.equal(first.targets, again.targets)
        assert torch.equal(first.logits, again.logits)
        for layer in DEFAULT_LAYERS:
            assert torch.equal(first.raw[layer], again.raw[layer]), layer
            assert torch.equal(first.maps[layer], again.maps[layer]), layer
    # A fresh GradCAM object on the same model gives the same bits too.
    fresh = GradCAM(model, backend=backend)(x)
    for layer in DEFAULT_LAYERS:
        assert torch.equal(first.maps[layer], fresh.maps[layer]), layer


def test_target_forms_agree():
    """int, list, tuple, tensor and (N, 1) tensor targets mean the same thing."""
    model = tiny_net(9)
    x = batch(9)
    cam = GradCAM(model, layers="layer3")
    ref = cam(x, targets=[2, 2, 2])
    for form in (
        2,
        (2, 2, 2),
        torch.tensor([2, 2, 2]),
        torch.tensor([[2], [2], [2]]),
        torch.tensor(2),
        np.int64(2),
    ):
        got = cam(x, targets=form)
        assert torch.equal(got.targets, ref.targets), form
        assert torch.equal(got.maps["layer3"], ref.maps["layer3"]), form


# --------------------------------------------------------------------------------------------
# CPU vs CUDA


@pytest.fixture
def no_tf32():
    """TF32 convolutions/matmuls (on by default for cuDNN convs on Ampere+) round to ~1e-3; the
    1e-4 CPU-vs-CUDA check is about the engine, not about TF32, so it runs in full float32."""
    with cuda_tf32(allowed=False):  # the study's own switch, restored after
        yield


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("backend", ["native", "captum"])
def test_cpu_matches_cuda(backend, no_tf32):
    model = tiny_net(10)
    x = batch(10, n=4)
    cpu = GradCAM(model, backend=backend)(x, targets=[0, 1, 2, 3])
    gpu_model = tiny_net(10).cuda()
    # Input left on the CPU on purpose: the engine moves it to the model's device.
    gpu = GradCAM(gpu_model, backend=backend)(x, targets=[0, 1, 2, 3]).cpu()
    assert_nontrivial(cpu)
    for layer in DEFAULT_LAYERS:
        assert max_diff(cpu.maps[layer], gpu.maps[layer]) <= 1e-4, layer
    torch.testing.assert_close(cpu.logits, gpu.logits, rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cpu_matches_cuda_resnet18(no_tf32):
    torchvision = pytest.importorskip("torchvision")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torchvision.models.resnet18(num_classes=10).eval()
    x = batch(11, n=2, h=64, w=64)
    cpu = GradCAM(model)(x, targets=[3, 7])
    gpu = GradCAM(model.cuda())(x.cuda(), targets=[3, 7]).cpu()
    for layer in DEFAULT_LAYERS:
        assert max_diff(cpu.maps[layer], gpu.maps[layer]) <= 1e-4, layer
