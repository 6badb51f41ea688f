"""The Grad-CAM family: registry, closed-form oracles on a hand-weighted net, one fused pass for
every method, ``locate_layers``, and the private channels_last copy."""

from __future__ import annotations

import copy
from collections import OrderedDict
from fractions import Fraction as Fr

import pytest
import torch
from test_cam_oracles import X, hand_net, tensor
from torch import nn

from xai_checks.cam import CAM, METHODS, GradCAM, get_method, locate_layers

pytestmark = pytest.mark.usefixtures("one_thread")

#: the gradient-weighted methods: closed forms below, and weights linear or not in the score
GRADIENT_METHODS = [name for name, m in METHODS.items() if "gradients" in m.needs]


def test_registry_lists_the_built_in_methods():
    assert list(METHODS) == [
        "eigencam", "gradcam", "gradcam++", "hirescam", "layercam", "scorecam", "xgradcam"
    ]  # fmt: skip
    assert GRADIENT_METHODS == ["gradcam", "gradcam++", "hirescam", "layercam", "xgradcam"]
    for name, method in METHODS.items():
        assert method.name == name and get_method(name) is method and method.title
    with pytest.raises(ValueError, match=r"method 'gradcam\+': use one of eigencam, gradcam, "):
        CAM(hand_net(), layers="conv", method="gradcam+")


def test_gradcam_is_the_shorthand():
    x = tensor(X)[None, None]
    a = GradCAM(hand_net(), layers=["conv", "relu"])(x, targets=[1])
    b = CAM(hand_net(), layers=["conv", "relu"], method="gradcam")(x, targets=[1])
    assert a.method == b.method == "gradcam"
    for layer in ("conv", "relu"):
        assert torch.equal(a.maps[layer], b.maps[layer])


def test_captum_backend_offers_only_its_methods():
    for name in ("gradcam++", "xgradcam", "layercam"):
        with pytest.raises(ValueError, match="captum backend has no"):
            CAM(hand_net(), layers="conv", method=name, backend="captum")


# --------------------------------------------------------------------------------------------
# closed-form oracles on the hand-weighted net of test_cam_oracles.py
#
# Pre-ReLU conv output A0 = [[1, -1], [2, 2]], A1 = [[1, 1], [-1, -1]]; after ReLU
# R0 = [[1, 0], [2, 2]], R1 = [[1, 1], [0, 0]]; GAP over 4 positions, fc W = [[1, -2], [-1, 3]].
# Gradients of logit c, by hand: at "relu", g_k = W[c, k] / 4 everywhere; at "conv", the ReLU
# masks them: g_k = W[c, k] / 4 * [A_k > 0], masks [[1, 0], [1, 1]] and [[1, 1], [0, 0]].
# Each method's formula is then evaluated below in exact rational arithmetic.

A = {
    "conv": [[[1, -1], [2, 2]], [[1, 1], [-1, -1]]],
    "relu": [[[1, 0], [2, 2]], [[1, 1], [0, 0]]],
}
W = [[1, -2], [-1, 3]]


def grads(layer: str, c: int) -> list[list[list[Fr]]]:
    out = []
    for k in range(2):
        g = Fr(W[c][k], 4)
        out.append(
            [[g * (1 if layer == "relu" or A["conv"][k][i][j] > 0 else 0) for j in range(2)]
             for i in range(2)]
        )  # fmt: skip
    return out


def oracle(method: str, layer: str, c: int) -> list[list[Fr]]:
    a = [[[Fr(v) for v in row] for row in ch] for ch in A[layer]]
    g = grads(layer, c)
    pos = [(i, j) for i in range(2) for j in range(2)]

    def weight(k: int, i: int, j: int) -> Fr:
        if method == "gradcam":
            return sum((g[k][p][q] for p, q in pos), Fr(0)) / 4
        if method == "hirescam":
            return g[k][i][j]
        if method == "layercam":
            return max(g[k][i][j], Fr(0))
        s = sum((a[k][p][q] for p, q in pos), Fr(0))
        if method == "xgradcam":
            return sum((g[k][p][q] * a[k][p][q] for p, q in pos), Fr(0)) / (s + Fr(1, 10**7))
        if method == "gradcam++":
            total = Fr(0)
            for p, q in pos:
                gg = g[k][p][q]
                if gg != 0:
                    alpha = gg**2 / (2 * gg**2 + s * gg**3 + Fr(1, 10**6))
                    total += alpha * max(gg, Fr(0))
            return total
        raise AssertionError(method)

    return [
        [max(sum((weight(k, i, j) * a[k][i][j] for k in range(2)), Fr(0)), Fr(0)) for j in range(2)]
        for i in range(2)
    ]


@pytest.mark.parametrize("method", GRADIENT_METHODS)
@pytest.mark.parametrize("layer", ["conv", "relu"])
@pytest.mark.parametrize("target", [0, 1])
def test_hand_computed_maps_for_every_method(method, layer, target):
    x = tensor(X)[None, None]
    result = CAM(hand_net(), layers=layer, method=method)(x, targets=[target])
    expected = tensor(oracle(method, layer, target))
    torch.testing.assert_close(result.raw[layer][0], expected, rtol=1e-6, atol=1e-7)


def test_oracle_tells_the_methods_apart():
    """The oracle cases are not degenerate: at "conv" (spatially varying gradients) the five
    methods give at least four different maps."""
    maps = {m: tuple(map(tuple, oracle(m, "conv", 1))) for m in GRADIENT_METHODS}
    assert len(set(maps.values())) >= 4, maps


# --------------------------------------------------------------------------------------------
# one fused pass for every method


def small_cnn(classes: int = 10) -> nn.Module:
    """A custom CNN with stages ``stem, block_a, block_b, block_c`` (32 x 32 input)."""
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            stem=nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()),
            block_a=nn.Sequential(
                nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True)
            ),
            block_b=nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(inplace=True)),
            block_c=nn.Sequential(nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(inplace=True)),
            head=nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes)),
        )
    ).eval()


STAGES = ["stem", "block_a", "block_b", "block_c"]


@pytest.mark.parametrize("method", list(METHODS))
def test_fused_equals_per_layer_for_every_method(method):
    model = small_cnn()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    fused = CAM(model, layers=STAGES, method=method)(x, targets=[1, 2, 3])
    for layer in STAGES:
        alone = CAM(model, layers=[layer], method=method)(x, targets=[1, 2, 3])
        torch.testing.assert_close(fused.raw[layer], alone.raw[layer], rtol=1e-5, atol=1e-7)
        assert fused.method == method


def test_methods_that_coincide_at_a_gap_fc_layer():
    """At a layer feeding only GAP -> fc the gradient is constant over space, so HiResCAM's
    map equals Grad-CAM's (a check on both, from their definitions)."""
    model = small_cnn()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    grad = CAM(model, layers="block_c", method="gradcam")(x, targets=[4, 5])
    hires = CAM(model, layers="block_c", method="hirescam")(x, targets=[4, 5])
    torch.testing.assert_close(hires.raw["block_c"], grad.raw["block_c"], rtol=1e-5, atol=1e-8)


# --------------------------------------------------------------------------------------------
# locate_layers


@pytest.mark.parametrize(
    "name,expected",
    [
        ("resnet18", ["layer1", "layer2", "layer3", "layer4"]),
        ("resnet50", ["layer1", "layer2", "layer3", "layer4"]),
        (
            "mobilenet_v3_small",
            ["features.0", "features.1", "features.3", "features.8", "features.12"],
        ),
    ],
)
def test_locate_layers_on_torchvision_models(name, expected):
    torchvision = pytest.importorskip("torchvision")
    model = getattr(torchvision.models, name)(num_classes=10).train()
    flags = [m.training for m in model.modules()]
    assert locate_layers(model) == expected
    assert [m.training for m in model.modules()] == flags
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_locate_layers_on_the_msra_resnet50():
    from xai_checks.models import load_resnet50

    assert locate_layers(load_resnet50("random")) == ["layer1", "layer2", "layer3", "layer4"]


def test_locate_layers_on_a_custom_cnn():
    assert locate_layers(small_cnn(), (1, 3, 32, 32)) == STAGES


def test_locate_layers_skips_a_stem_without_a_module_and_keeps_the_order():
    """ResNet's 112 x 112 tensor comes from bare bn1/relu modules: no stage; the four stages
    come shallow to deep even on a non-square input."""
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(num_classes=3)
    assert locate_layers(model, (1, 3, 96, 160)) == ["layer1", "layer2", "layer3", "layer4"]


# --------------------------------------------------------------------------------------------
# memory_format=torch.channels_last: a private copy, the user's model untouched


def model_state(model: nn.Module) -> dict[str, object]:
    return {
        "params": {k: (v.detach().clone(), v.stride(), v.requires_grad) for k, v in
                   model.named_parameters()},
        "buffers": {k: (v.clone(), v.stride()) for k, v in model.named_buffers()},
        "training": [m.training for m in model.modules()],
        "hooks": [(dict(m._forward_hooks), dict(m._forward_pre_hooks),
                   dict(m._backward_hooks)) for m in model.modules()],
    }  # fmt: skip


def assert_state_equal(a: dict[str, object], b: dict[str, object]) -> None:
    assert a["training"] == b["training"] and a["hooks"] == b["hooks"]
    for key in ("params", "buffers"):
        da, db = a[key], b[key]
        assert isinstance(da, dict) and isinstance(db, dict) and da.keys() == db.keys()
        for k in da:
            assert torch.equal(da[k][0], db[k][0]) and da[k][1:] == db[k][1:], k


def test_channels_last_never_changes_the_users_model():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(num_classes=10).train()
    seen: list[int] = []
    model.layer2.register_forward_hook(lambda m, a, o: seen.append(1))
    before = model_state(model)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    cam = CAM(model, layers=["layer3", "layer4"], memory_format=torch.channels_last)
    result = cam(x, targets=[1, 2])
    assert_state_equal(model_state(model), before)
    conv = model.conv1.weight
    assert conv.is_contiguous() and not conv.is_contiguous(memory_format=torch.channels_last)
    assert seen == [1]  # the user's own hook ran once, on the copy that shares it
    default = CAM(model, layers=["layer3", "layer4"])(x, targets=[1, 2])
    for layer in ("layer3", "layer4"):
        diff = float((result.maps[layer] - default.maps[layer]).abs().max())
        assert diff <= 1e-4, (layer, diff)


def test_channels_last_copy_follows_the_users_weights():
    """The private copy is rebuilt when the user's parameters change (version counters), so a
    sanity-cascade-style re-initialisation is seen; an explicit ``refresh()`` covers ``.data``."""
    model = small_cnn()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    cam = CAM(model, layers=STAGES, memory_format=torch.channels_last)
    first = cam(x, targets=[1, 2])
    with torch.no_grad():
        model.block_c[0].weight.mul_(-1.0)
    second = cam(x, targets=[1, 2])
    plain = CAM(model, layers=STAGES)(x, targets=[1, 2])
    torch.testing.assert_close(second.raw["block_c"], plain.raw["block_c"], rtol=1e-4, atol=1e-6)
    assert not torch.allclose(second.raw["block_c"], first.raw["block_c"])
    other = copy.deepcopy(model)
    model.load_state_dict(small_cnn(classes=10).state_dict())  # back to the seed-0 weights
    third = cam(x, targets=[1, 2])
    torch.testing.assert_close(third.raw["block_c"], first.raw["block_c"], rtol=1e-4, atol=1e-6)
    model.block_c[0].weight.data.copy_(other.block_c[0].weight.data)  # bypasses autograd
    cam.refresh()
    fourth = cam(x, targets=[1, 2])
    torch.testing.assert_close(fourth.raw["block_c"], second.raw["block_c"], rtol=1e-4, atol=1e-6)


def test_memory_format_is_checked():
    with pytest.raises(ValueError, match="memory_format"):
        CAM(small_cnn(), layers="stem", memory_format=torch.preserve_format)
    with pytest.raises(ValueError, match="native backend"):
        CAM(small_cnn(), layers="stem", backend="captum", memory_format=torch.channels_last)


# --------------------------------------------------------------------------------------------
# hooks without copies, unless the model changes an activation in place


class AddsInPlace(nn.Module):
    """``x += 1`` on its input: an in-place change to whatever tensor the previous layer
    returned (ResNet's ``out += identity`` pattern)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x += 1.0
        return x


@pytest.mark.parametrize("layer", ["stem", "block_b"])  # the leaf (shallowest) and a non-leaf
def test_an_in_place_change_downstream_falls_back_to_copies_exactly(layer):
    model = small_cnn()
    plain = copy.deepcopy(model)
    stage = model.get_submodule(STAGES[STAGES.index(layer) + 1])
    stage.insert(0, AddsInPlace())
    plain.get_submodule(STAGES[STAGES.index(layer) + 1]).insert(0, nn.Identity())
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    cam = CAM(model, layers=STAGES)
    got = cam(x, targets=[1, 2])
    assert cam._clone, "the in-place change must have been detected"

    class Plus1(nn.Module):  # the same arithmetic, out of place
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 1.0

    plain.get_submodule(STAGES[STAGES.index(layer) + 1])[0] = Plus1()
    ref = CAM(plain, layers=STAGES)(x, targets=[1, 2])
    for name in STAGES:
        assert torch.equal(got.raw[name], ref.raw[name]), name
    assert torch.equal(cam(x, targets=[1, 2]).raw[layer], got.raw[layer])  # remembered


def test_resnet_stages_need_no_copies():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(num_classes=5).eval()
    cam = CAM(model, layers=["layer1", "layer2", "layer3", "layer4"])
    cam(torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5)), targets=[0])
    assert cam._clone is False


# --------------------------------------------------------------------------------------------
# CUDA (skipped without a device; run by scripts/device_check.sh)


@pytest.fixture
def full_fp32():
    """TF32 off for the comparison (cuDNN convolutions use TF32 by default on Ampere+)."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("fmt", ["contiguous", "channels_last"])
def test_cuda_matches_cpu_for_every_method(method, fmt, full_fp32):
    """Every method, default and channels_last on CUDA, against the CPU default. Printed: the
    channels_last-vs-default difference on CUDA (the rule for making it the CUDA default)."""
    model = small_cnn()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    cpu = CAM(model, layers=STAGES, method=method)(x, targets=[1, 2, 3, 4])
    gpu_model = copy.deepcopy(model).cuda()
    memory_format = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
    gpu = CAM(gpu_model, layers=STAGES, method=method, memory_format=memory_format)
    got = gpu(x, targets=[1, 2, 3, 4]).cpu()
    diffs = {n: float((got.maps[n] - cpu.maps[n]).abs().max()) for n in STAGES}
    print(f"\n{method} {fmt} CUDA vs CPU: {diffs}")
    for n in STAGES:
        assert diffs[n] <= 1e-4, (n, diffs[n])


# --------------------------------------------------------------------------------------------
# options: --method / --xai-method and --channels-last / --xai-channels-last


def test_method_option_choices_are_the_registry():
    from xai_checks.options import option

    assert option("method").choices == tuple(METHODS)


def test_cli_options_reach_the_cam_engine():
    import argparse

    from xai_checks.options import add_cli_options, cli_values, study_config
    from xai_checks.study import StudyConfig, make_cam

    parser = argparse.ArgumentParser()
    add_cli_options(parser, "study")
    args = parser.parse_args(["--method", "layercam", "--channels-last"])
    assert args.method == "layercam" and args.channels_last is True
    assert parser.parse_args([]).channels_last is False
    with pytest.raises(SystemExit) as exc:  # argparse: exit 2, naming the choices
        parser.parse_args(["--method", "gradcam+"])
    assert exc.value.code == 2
    config = study_config({**cli_values(args), "layers": ["stem"]})
    assert config.method == "layercam" and config.channels_last is True
    cam = make_cam(small_cnn(), ["stem"], config)
    assert cam.method.name == "layercam" and cam.memory_format == torch.channels_last
    # the Captum backend (the agreement phase) never gets the channels_last copy
    captum = make_cam(small_cnn(), ["stem"], StudyConfig(channels_last=True), backend="captum")
    assert captum.memory_format == torch.contiguous_format


# --------------------------------------------------------------------------------------------
# scale-free normalisation


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_canonical_maps_do_not_depend_on_the_scores_units(method):
    """Scaling the last layer by 2^-k scales gradients, raw maps and magnitudes by exactly 2^-k
    (no rounding), as for a random network whose maps sit at ~1e-13. Canonical maps must be the
    same bits for the methods whose weights are linear in the gradients (k = 40). With the
    former absolute min-max epsilon (1e-8) all five failed here (maps squashed to ~0).

    Grad-CAM++ and XGrad-CAM carry absolute epsilons *inside* their weights (pytorch-grad-cam's
    1e-6 and 1e-7, matched on purpose), so they are not scale-free by definition; at k = 40
    Grad-CAM++'s alpha even underflows. Checked at k = 20: still a full [0, 1] map."""
    linear = method in ("gradcam", "hirescam", "layercam")
    k = 40 if linear else 20
    model = small_cnn()
    tiny = copy.deepcopy(model)
    with torch.no_grad():
        tiny.head[2].weight.mul_(2.0**-k)
        tiny.head[2].bias.mul_(2.0**-k)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    ref = CAM(model, layers=STAGES, method=method)(x, targets=[1, 2])
    got = CAM(tiny, layers=STAGES, method=method)(x, targets=[1, 2])
    for layer in STAGES:
        assert float(ref.maps[layer].amax()) == 1.0, layer
        if linear:
            assert torch.equal(got.maps[layer], ref.maps[layer]), layer
        else:
            assert float(got.maps[layer].amax()) == 1.0, layer
