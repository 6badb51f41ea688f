"""Grad-CAM hygiene and robustness: hooks never outlive a call, model and input state are left
exactly as found (errors included), no_grad / in-place / autocast / other architectures work,
flat maps stay zero, memory does not grow, bad input gets clear errors."""

from __future__ import annotations

import copy
import gc
import math
import os
import re
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from xai_checks.cam import DEFAULT_LAYERS, GradCAM

BACKENDS = ["native", "captum"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every test here runs its tiny nets on one thread (see conftest)."""


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    """Any warning (RuntimeWarning from a 0/0, Captum's 'requires_grad was set' ...) fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def tiny_net(seed: int = 0, *, c_in: int = 3, widths=(4, 6, 8, 8), classes: int = 5) -> nn.Module:
    """Random ResNet-shaped net: ``layer1``..``layer4`` (conv-BN-ReLU), GAP, dropout, ``fc``."""
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
        mods["dropout"] = nn.Dropout(0.5)
        mods["fc"] = nn.Linear(c, classes)
        model = nn.Sequential(mods)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def batch(seed: int = 0, n: int = 2, c: int = 3, h: int = 16, w: int = 16) -> torch.Tensor:
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))


_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks_with_kwargs",
)


def hooks_left(model: nn.Module) -> dict[str, int]:
    """Every module-level hook, plus torch's global module hooks, by where they sit."""
    found = {}
    for name, module in model.named_modules():
        for attr in _HOOK_DICTS:
            n = len(getattr(module, attr, {}) or {})
            if n:
                found[f"{name or '<root>'}.{attr}"] = n
    from torch.nn.modules import module as module_mod

    for attr in dir(module_mod):
        if attr.startswith("_global_") and attr.endswith("hooks"):
            n = len(getattr(module_mod, attr))
            if n:
                found[f"global.{attr}"] = n
    return found


def snapshot(model: nn.Module) -> dict[str, object]:
    return {
        "training": [(n, m.training) for n, m in model.named_modules()],
        "requires_grad": [(n, p.requires_grad) for n, p in model.named_parameters()],
        "grads": [(n, p.grad is None) for n, p in model.named_parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
    }


def assert_same_state(model: nn.Module, before: dict[str, object]) -> None:
    after = snapshot(model)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["grads"] == before["grads"]
    for k, v in before["state"].items():  # type: ignore[union-attr]
        assert torch.equal(after["state"][k], v), k  # type: ignore[index]
    assert hooks_left(model) == {}


def mixed_state(model: nn.Module) -> nn.Module:
    """Training mode on, but some submodules in eval (a frozen-BN fine-tune); some parameters
    frozen, others not."""
    model.train()
    model.layer2[1].eval()
    model.layer4.eval()
    model.layer1[0].weight.requires_grad_(False)
    model.layer3[1].bias.requires_grad_(False)
    return model


# --------------------------------------------------------------------------------------------
# state and hooks


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("targets", [None, [1, 3]])
def test_state_restored_and_no_hooks_after_a_call(backend, targets):
    model = mixed_state(tiny_net())
    before = snapshot(model)
    modes = [m.training for m in model.modules()]
    assert any(modes) and not all(modes)
    GradCAM(model, backend=backend)(batch(), targets=targets)
    assert_same_state(model, before)


@pytest.mark.parametrize("backend", BACKENDS)
def test_results_use_eval_mode_whatever_the_model_mode(backend):
    """BN uses running statistics and dropout is off during the call, even for a model in
    training mode, so the maps equal those of the eval-mode model."""
    x = batch(1, n=3)
    ref = GradCAM(tiny_net(), backend=backend)(x, targets=[0, 1, 2])
    model = mixed_state(tiny_net())
    got = GradCAM(model, backend=backend)(x, targets=[0, 1, 2])
    for layer in DEFAULT_LAYERS:
        assert torch.equal(got.maps[layer], ref.maps[layer]), layer
    assert torch.equal(got.logits, ref.logits)


class Boom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.armed = True

    def forward(self, x):
        if self.armed:
            raise RuntimeError("boom inside forward")
        return x


def boom_net() -> nn.Module:
    model = tiny_net()
    model.layer4.add_module("boom", Boom())  # after layer4's ReLU, i.e. after hooks fired
    return model


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_restored_and_no_hooks_when_forward_raises(backend):
    model = mixed_state(boom_net())
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom inside forward"):
        GradCAM(model, backend=backend)(batch(), targets=[0, 1])
    assert_same_state(model, before)
    with pytest.raises(RuntimeError, match="boom inside forward"):
        GradCAM(model, backend=backend)(batch())  # the targets=None prediction path
    assert_same_state(model, before)
    # ... and the model still works afterwards.
    model.layer4.boom.armed = False
    result = GradCAM(model, backend=backend)(batch(), targets=[0, 1])
    assert float(result.maps["layer4"].max()) > 0
    assert_same_state(model, before)


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_restored_and_no_hooks_when_target_out_of_range(backend):
    model = mixed_state(tiny_net())
    before = snapshot(model)
    with pytest.raises(ValueError, match="out of range"):
        GradCAM(model, backend=backend)(batch(), targets=[0, 5])
    assert_same_state(model, before)


def test_fused_false_state_restored_when_a_later_layer_fails():
    model = mixed_state(tiny_net())
    before = snapshot(model)
    cam = GradCAM(model, layers=["layer1", "flatten"], fused=False)
    with pytest.raises(ValueError, match="flatten"):
        cam(batch(), targets=[0, 1])
    assert_same_state(model, before)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("requires_grad", [False, True])
def test_input_not_mutated(backend, requires_grad):
    model = tiny_net()
    x = batch(2).requires_grad_(requires_grad)
    copy_ = x.detach().clone()
    version = x._version
    GradCAM(model, backend=backend)(x, targets=[0, 1])
    assert torch.equal(x.detach(), copy_)
    assert x._version == version
    assert x.requires_grad is requires_grad
    assert x.grad is None
    assert x.is_leaf


@pytest.mark.parametrize("backend", BACKENDS)
def test_input_not_mutated_by_a_model_with_an_in_place_first_op(backend):
    """A model whose first op works in place on its input (here ReLU(inplace=True)) must not
    reach the caller's tensor."""
    model = nn.Sequential(OrderedDict(pre=nn.ReLU(inplace=True), net=tiny_net()))
    x = batch(3)
    assert bool((x < 0).any())
    copy_ = x.clone()
    result = GradCAM(model, layers=["net.layer3"], backend=backend)(x, targets=[0, 1])
    assert torch.equal(x, copy_)
    # ... and the maps are those of ReLU(x) through the inner net.
    ref = GradCAM(model.net, layers=["layer3"], backend=backend)(x.clamp_min(0), targets=[0, 1])
    assert torch.equal(result.maps["net.layer3"], ref.maps["layer3"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_works_inside_no_grad(backend):
    model = tiny_net()
    x = batch(4)
    ref = GradCAM(model, backend=backend)(x, targets=[2, 4])
    with torch.no_grad():
        got = GradCAM(model, backend=backend)(x, targets=[2, 4])
        assert not torch.is_grad_enabled()  # and the caller's mode is back
    for layer in DEFAULT_LAYERS:
        assert torch.equal(got.maps[layer], ref.maps[layer]), layer
    assert not any(t.requires_grad for t in [*got.maps.values(), *got.raw.values(), got.logits])


class Spy(nn.Module):
    """Identity that records whether autograd is tracking what flows through it."""

    def __init__(self) -> None:
        super().__init__()
        self.tracked: list[bool] = []

    def forward(self, x):
        self.tracked.append(x.requires_grad)
        return x


@pytest.mark.parametrize("requires_grad", [False, True])
def test_native_graph_starts_at_the_shallowest_layer(requires_grad):
    """Parameters are frozen and the input detached for the call, so autograd records nothing
    below the shallowest hooked layer (no activation memory is kept for it), while everything
    between the hooked layers is tracked."""
    model = tiny_net()
    below, between = Spy(), Spy()
    model.layer2.insert(0, below)  # inside layer2, before the hooked layer2 output
    model.layer3.insert(0, between)  # between the hooked layer2 and layer4
    GradCAM(model, layers=["layer2", "layer4"])(batch().requires_grad_(requires_grad))
    # targets=None: the predicted class comes from the CAM pass's own logits (one forward).
    assert below.tracked == [False]
    assert between.tracked == [True]


# --------------------------------------------------------------------------------------------
# in-place ops and other architectures


def without_inplace(model: nn.Module) -> nn.Module:
    clone = copy.deepcopy(model)
    for m in clone.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
    return clone


def random_torchvision(name: str, seed: int = 0, classes: int = 10) -> nn.Module:
    torchvision = pytest.importorskip("torchvision")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(torchvision.models, name)(num_classes=classes)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


# Layers chosen so that some outputs are modified in place downstream: resnet18's bn1 feeds
# ReLU(inplace=True); mobilenet_v3_small's Conv-BN blocks end in Hardswish(inplace=True).
ARCHS = {
    "resnet18": (("layer1.0.bn1", "layer2", "layer3.1.bn2", "layer4"), 64),
    "mobilenet_v3_small": (("features.0.1", "features.4", "features.8", "features.9"), 96),
}


U32 = 2.0**-24  # float32 unit roundoff


def conditioning(model: nn.Module, layers, x, targets) -> dict[str, torch.Tensor]:
    """Per layer and image, kappa = magnitude / range of the raw Grad-CAM map, where magnitude is
    max over positions of sum_k |w_k A_k|: how much the channel sum cancels. inf for a map
    that is all zero (range 0)."""
    from xai_checks.cam.pipeline import channel_weights, magnitude, weighted_map

    acts: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(module, args, output) -> None:
            output.retain_grad()
            acts[name] = output

        return hook

    handles = [model.get_submodule(n).register_forward_hook(keep(n)) for n in layers]
    try:
        out = model(x.clone().requires_grad_(True))
        out.gather(1, torch.as_tensor(targets).view(-1, 1)).sum().backward()
    finally:
        for h in handles:
            h.remove()
    kappa = {}
    for n in layers:
        a, g = acts[n].detach(), acts[n].grad.detach()
        w = channel_weights(g)
        raw = weighted_map(a, w)
        rng = raw.flatten(1).amax(1) - raw.flatten(1).amin(1)
        kappa[n] = magnitude(a, w) / rng
    model.zero_grad(set_to_none=True)
    return kappa


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_in_place_activation_models_and_other_architectures(arch):
    """Native on the in-place model == native on a copy without in-place ops, bit for bit (the
    same arithmetic runs; only where the result is written differs), and == Captum on that copy
    within a tolerance derived from each map's conditioning.

    Why not a fixed 1e-5 against Captum (this test failed once with 1.54e-05 on a busy machine,
    and reproducibly with 2 threads): a raw map is sum_k w_k A_k, and on random MobileNetV3 the
    terms cancel -- their magnitude (max sum_k |w_k A_k|) is up to kappa = 166x the map's range
    at features.9. Measured against float64 on these nets, each float32 engine's raw error is at
    most 6 u * magnitude (u = 2^-24; 1.4 u at features.9); two engines differ by up to twice
    that, and min-max turns a raw error d into at most 2 d / range on the canonical map. Hence
    tol = 2 * 2 * 8 u * kappa, with a 1e-5 floor for well-conditioned maps: 3.3e-4 at
    features.9, where Captum measures 1.5e-05 (1 thread) to 2.0e-05 (2 threads).
    Canonical maps are scale-free, so the maps at ~1e-13 (features.0) need no special epsilon."""
    layers, size = ARCHS[arch]
    model = random_torchvision(arch)
    assert any(getattr(m, "inplace", False) for m in model.modules())
    x = batch(5, n=2, h=size, w=size)
    targets = [1, 7]
    before = snapshot(model)
    native = GradCAM(model, layers=layers)(x, targets=targets)
    assert_same_state(model, before)
    plain = without_inplace(model)
    ref = GradCAM(plain, layers=layers)(x, targets=targets)
    captum = GradCAM(plain, layers=layers, backend="captum")(x, targets=targets)
    kappa = conditioning(plain, layers, x, targets)
    for layer in layers:
        raw, m = native.raw[layer], native.maps[layer]
        assert m.shape == (2, size, size) and bool(torch.isfinite(m).all())
        assert float(raw.amax()) > 0, f"{layer}: all-zero raw maps prove nothing"
        assert torch.equal(ref.raw[layer], raw), layer
        assert torch.equal(ref.maps[layer], m), layer
        for i in range(2):
            k = float(kappa[layer][i])
            if not math.isfinite(k):  # an all-zero map: zero on both sides
                assert float(m[i].abs().max()) == 0.0 == float(captum.maps[layer][i].abs().max())
                continue
            assert float(m[i].amax()) == pytest.approx(1.0), layer
            tol = max(1e-5, 32 * U32 * k)
            diff = float((m[i] - captum.maps[layer][i]).abs().max())
            assert diff <= tol, (layer, i, diff, tol, k)
    torch.testing.assert_close(native.logits, plain(x), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# flat maps, autocast


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_negative_weights_give_an_all_zero_map(backend):
    """layer4 is post-ReLU (A >= 0) and feeds GAP -> fc, so for class c its channel weights
    are fc.weight[c] / (h·w); make them all negative and every position of sum_k w_k A_k is
    <= 0, the ReLU'd map is all zero -- and must stay zero through upsampling and min-max,
    without NaN or warnings. Class 1 gets an all-positive row: its map in the same batch is a
    normal, non-flat one (positive everywhere, not constant)."""
    model = tiny_net(6)
    with torch.no_grad():
        model.fc.weight[0] = -model.fc.weight[0].abs() - 0.1
        model.fc.weight[1] = model.fc.weight[1].abs() + 0.1
    x = batch(6, n=3)
    with np.errstate(all="raise"):
        result = GradCAM(model, layers=["layer3", "layer4"], backend=backend)(x, targets=[0, 1, 0])
    for layer in ("layer3", "layer4"):
        assert not bool(result.maps[layer].isnan().any())
        assert not bool(result.raw[layer].isnan().any())
    flat = result.raw["layer4"][[0, 2]]
    assert torch.equal(flat, torch.zeros_like(flat))
    assert torch.equal(result.maps["layer4"][[0, 2]], torch.zeros(2, 16, 16))
    assert float(result.maps["layer4"][1].max()) == 1.0


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a = a.double().flatten() - a.double().mean()
    b = b.double().flatten() - b.double().mean()
    return float((a @ b) / (a.norm() * b.norm()))


def test_autocast_bfloat16_on_cpu_agrees_roughly():
    """bfloat16 keeps 8 mantissa bits (relative rounding ~4e-3 per op), so maps cannot match
    float32 to 1e-5; after a few layers of rounding a map is still the same picture. Required:
    correlation > 0.9 per layer and a mean absolute difference below 0.05 of the [0, 1] scale."""
    model = tiny_net(7, widths=(8, 16, 16, 32))
    x = batch(7, n=2, h=32, w=32)
    f32 = GradCAM(model)(x, targets=[0, 3])
    bf16 = GradCAM(model, autocast=torch.bfloat16)(x, targets=[0, 3])
    for layer in DEFAULT_LAYERS:
        m = bf16.maps[layer]
        assert m.dtype == torch.float32 and bf16.raw[layer].dtype == torch.float32
        assert m.shape == f32.maps[layer].shape
        assert bool(torch.isfinite(m).all()) and float(m.min()) >= 0 and float(m.max()) <= 1
        assert pearson(m, f32.maps[layer]) > 0.9, layer
        assert float((m - f32.maps[layer]).abs().mean()) < 0.05, layer
    assert bf16.logits.dtype == torch.float32
    # It really ran in bfloat16: the logits carry bfloat16 rounding.
    assert not torch.equal(bf16.logits, f32.logits)
    torch.testing.assert_close(bf16.logits, f32.logits, rtol=0.05, atol=0.05)


# --------------------------------------------------------------------------------------------
# memory


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="no /proc/self/statm")
@pytest.mark.parametrize("backend", BACKENDS)
def test_no_memory_growth_over_repeated_calls(backend):
    model = tiny_net(8)
    x = batch(8, n=2)
    cam = GradCAM(model, backend=backend)
    for _ in range(20):  # warm-up: allocator pools, lazy imports, oneDNN kernels
        cam(x)
    gc.collect()
    start = rss_bytes()
    for _ in range(100):
        cam(x)
        assert hooks_left(model) == {}
    gc.collect()
    growth = rss_bytes() - start
    assert growth < 20 * 2**20, f"RSS grew by {growth / 2**20:.1f} MB over 100 calls"


def test_results_hold_no_graph():
    """Results are plain tensors: nothing in them keeps the autograd graph (and so the
    activations of every layer) alive."""
    model = tiny_net(9)
    result = GradCAM(model)(batch(9), targets=[0, 1])
    for t in [*result.raw.values(), *result.maps.values(), result.logits, result.targets]:
        assert t.grad_fn is None and not t.requires_grad


# --------------------------------------------------------------------------------------------
# bad input


def test_unknown_layer_lists_close_names():
    model = random_torchvision("resnet18")
    with pytest.raises(ValueError) as info:
        GradCAM(model, layers=["layer2", "lyaer4"])
    msg = str(info.value)
    assert "'lyaer4'" in msg
    assert re.search(r"\blayer4\b", msg)
    assert "avgpool" in msg and "fc" in msg  # the top-level candidates
    with pytest.raises(ValueError, match=r"layer4\.1\.conv2"):
        GradCAM(model, layers="layer4.1.conv3")


def test_foreign_module_and_empty_layers_rejected():
    model = tiny_net()
    with pytest.raises(ValueError, match="not part of the model"):
        GradCAM(model, layers=[nn.Conv2d(3, 3, 1)])
    with pytest.raises(ValueError, match="no layers"):
        GradCAM(model, layers=[])
    # Modules are accepted and named after their place in the model.
    assert GradCAM(model, layers=[model.layer2]).layer_names == ("layer2",)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("targets", [5, -1, [0, 5], [0, -1], torch.tensor([5, 0]), 10**6])
def test_target_out_of_range(backend, targets):
    model = tiny_net()
    with pytest.raises(ValueError, match="out of range"):
        GradCAM(model, backend=backend)(batch(), targets=targets)
    assert hooks_left(model) == {}


def conv_head_net() -> nn.Module:
    """A fully convolutional classifier (no nn.Linear): 1x1 conv head, then GAP."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(
            OrderedDict(
                body=nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU()),
                head=nn.Conv2d(6, 4, 1),
                pool=nn.AdaptiveAvgPool2d(1),
                flatten=nn.Flatten(),
            )
        )
    return model.eval()


@pytest.mark.parametrize("backend", BACKENDS)
def test_target_out_of_range_without_a_linear_layer(backend):
    """The class count then comes from the logits; the error must still be a ValueError (an
    index error on CUDA would be a device-side assert that poisons the process)."""
    model = conv_head_net()
    cam = GradCAM(model, layers="body", backend=backend)
    assert cam(batch(), targets=[3, 0]).maps["body"].shape == (2, 16, 16)
    for bad in ([4, 0], [0, -1]):
        with pytest.raises(ValueError, match="out of range"):
            cam(batch(), targets=bad)
        assert hooks_left(model) == {}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("targets", [[4, 0], torch.tensor([0, 4])])
def test_targets_checked_against_this_calls_logits_when_the_head_changes(backend, targets):
    """Host-side target checks use the class count of the previous call (no device sync); a
    model whose head shrank since must still get the range error, not an index error."""
    model = tiny_net(classes=5)
    cam = GradCAM(model, backend=backend)
    cam(batch(), targets=[4, 0])  # class 4 exists: the engine now knows 5 classes
    model.fc = nn.Linear(model.fc.in_features, 3)
    with pytest.raises(ValueError, match="out of range"):
        cam(batch(), targets=targets)
    assert hooks_left(model) == {}
    assert cam(batch(), targets=[2, 0]).logits.shape == (2, 3)


@pytest.mark.parametrize("fused", [True, False])
def test_frozen_eval_touches_and_restores_only_what_it_changes(fused):
    """Mixed training flags and requires_grad flags come back exactly as they were."""
    model = tiny_net().train()
    model.layer2.eval()
    model.layer1[0].weight.requires_grad_(False)
    before = [(m.training) for m in model.modules()], [p.requires_grad for p in model.parameters()]
    GradCAM(model, fused=fused)(batch(), targets=[1, 2])
    after = [(m.training) for m in model.modules()], [p.requires_grad for p in model.parameters()]
    assert after == before


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_a_warm_cuda_call_syncs_the_host_at_most_twice():
    """The input's finiteness check and one final check (logits and every map at once): the
    queue is never drained mid-call, e.g. by a target range check after the forward (the
    targets' copy to the device is non-blocking)."""
    model = tiny_net().cuda()
    cam = GradCAM(model)
    x = batch().cuda()
    cam(x, targets=[1, 2])  # warm: the engine learns the class count
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            cam(x, targets=[1, 2])
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in seen if "called a synchronizing CUDA operation" in str(w.message)]
    assert len(syncs) <= 2, [str(w.message)[:200] for w in syncs]


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_shapes_and_dtypes(backend):
    model = tiny_net()
    cam = GradCAM(model, backend=backend)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        cam(torch.randn(3, 16, 16))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        cam(torch.randn(1, 1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"1 channels; the model expects 3"):
        cam(torch.randn(2, 1, 16, 16))
    with pytest.raises(TypeError, match="floating point"):
        cam(torch.zeros(2, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(TypeError, match="floating point"):
        cam(torch.zeros(2, 3, 16, 16, dtype=torch.int64))
    with pytest.raises(TypeError, match="tensor"):
        cam(np.zeros((2, 3, 16, 16), dtype=np.float32))
    with pytest.raises(ValueError, match="empty batch"):
        cam(torch.randn(0, 3, 16, 16))
    assert hooks_left(model) == {}


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_number_of_targets(backend):
    model = tiny_net()
    cam = GradCAM(model, backend=backend)
    for targets in ([0, 1], [0, 1, 2, 3], torch.tensor([[0, 1], [2, 3]])):
        with pytest.raises(ValueError, match=r"got \d+ targets for 3 images"):
            cam(batch(n=3), targets=targets)
    # A single target is broadcast to the batch.
    assert torch.equal(cam(batch(n=3), targets=[4]).targets, torch.tensor([4, 4, 4]))
    assert hooks_left(model) == {}


@pytest.mark.parametrize("targets", [1.7, [0.0, 1.0], torch.tensor([0.5, 1.5])])
def test_non_integer_targets_rejected(targets):
    """A float class index is a bug in the caller; silently truncating 1.7 to class 1 is not
    an answer."""
    with pytest.raises(TypeError, match="integer"):
        GradCAM(tiny_net())(batch(), targets=targets)


def test_bad_constructor_arguments():
    model = tiny_net()
    with pytest.raises(ValueError, match="backend"):
        GradCAM(model, backend="torchcam")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="autocast"):
        GradCAM(model, backend="captum", autocast=torch.bfloat16)


class WithUnused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_net()
        self.unused = nn.Conv2d(3, 3, 1)  # registered, never run by forward

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "layer,pattern", [("net.flatten", r"net\.flatten|shape"), ("unused", r"unused|not run")]
)
def test_layers_that_cannot_give_a_map(backend, layer, pattern):
    model = WithUnused()
    before = snapshot(model)
    with pytest.raises((ValueError, TypeError, AssertionError), match=pattern):
        GradCAM(model, layers=["net.layer2", layer], backend=backend)(batch(), targets=[0, 1])
    assert_same_state(model, before)


class LinearSE(nn.Module):
    """Squeeze-and-excitation with nn.Linear gates (2 outputs per... channel group)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, 2)
        self.fc2 = nn.Linear(2, channels)

    def forward(self, x):
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * s[:, :, None, None]


@pytest.mark.parametrize("backend", BACKENDS)
def test_class_count_comes_from_the_logits_not_the_last_linear(backend):
    """A fully convolutional head after a block with nn.Linear inside: the last nn.Linear
    (2 outputs) says nothing about the number of classes (4)."""
    model = conv_head_net()
    model.body.add_module("se", LinearSE(6))
    cam = GradCAM(model, layers="body", backend=backend)
    result = cam(batch(), targets=[3, 2])
    assert result.logits.shape == (2, 4) and result.targets.tolist() == [3, 2]
    with pytest.raises(ValueError, match="out of range"):
        cam(batch(), targets=[4, 2])
