"""Hypothesis properties of Grad-CAM over random small conv nets (seeded, so every example is
reproducible from its drawn seed)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from xai_checks.cam import GradCAM, upsample
from xai_checks.cam.pipeline import REL_EPS


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every test here runs its tiny nets on one thread (see conftest)."""


LAYERS = ("block1", "block2.bn", "block2")  # block2.bn: pre-ReLU, non-uniform grads
PROPS = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,  # CI-stable; the drawn seeds still cover many nets
    suppress_health_check=[HealthCheck.too_slow],
)


def small_net(seed: int, c_in: int, width: int, classes: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(
            OrderedDict(
                block1=nn.Sequential(nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU()),
                block2=nn.Sequential(
                    OrderedDict(
                        conv=nn.Conv2d(width, width + 2, 3, stride=2, padding=1),
                        bn=nn.BatchNorm2d(width + 2),
                        relu=nn.ReLU(),
                    )
                ),
                pool=nn.AdaptiveAvgPool2d(1),
                flatten=nn.Flatten(),
                fc=nn.Linear(width + 2, classes),
            )
        )
        model.block2.bn.running_mean.uniform_(-0.3, 0.3)
        model.block2.bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


@st.composite
def cases(draw):
    seed = draw(st.integers(0, 2**16))
    c_in = draw(st.sampled_from([1, 3]))
    width = draw(st.sampled_from([2, 4, 6]))
    classes = draw(st.sampled_from([2, 5]))
    n = draw(st.sampled_from([1, 3]))
    h = draw(st.sampled_from([5, 8, 12]))
    w = draw(st.sampled_from([6, 8, 13]))
    model = small_net(seed, c_in, width, classes)
    x = torch.randn(n, c_in, h, w, generator=torch.Generator().manual_seed(seed + 1))
    targets = draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n))
    return model, x, targets


@PROPS
@given(case=cases())
def test_maps_in_unit_interval_at_input_size(case):
    model, x, targets = case
    result = GradCAM(model, layers=LAYERS)(x, targets=targets)
    n, _, h, w = x.shape
    for layer in LAYERS:
        m = result.maps[layer]
        assert m.shape == (n, h, w)
        assert m.dtype == torch.float32
        assert bool(torch.isfinite(m).all())
        assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
        raw = result.raw[layer]
        assert raw.ndim == 3 and raw.shape[0] == n and float(raw.min()) >= 0.0
        # min-max with a relative floor: a map spans exactly [0, 1] unless its upsampled range is
        # below REL_EPS * its magnitude (then it spans range / floor; all-zero stays all zero).
        up = upsample(raw, (h, w))
        ranges = up.amax(dim=(1, 2)) - up.amin(dim=(1, 2))
        floor = REL_EPS * result.magnitude[layer]
        for i in range(n):
            span = float(m[i].max() - m[i].min())
            assert float(m[i].min()) == 0.0
            expected = min(1.0, float(ranges[i]) / float(floor[i])) if floor[i] > 0 else 0.0
            assert span == pytest.approx(expected, abs=1e-6)


def _with_fc(model: nn.Module, fn) -> nn.Module:
    clone = small_net(
        0, model.block1[0].in_channels, model.block1[0].out_channels, model.fc.out_features
    )
    clone.load_state_dict(model.state_dict())
    with torch.no_grad():
        fn(clone.fc)
    return clone.eval()


@PROPS
@given(case=cases(), shift=st.sampled_from([-50.0, -1.0, 0.5, 7.0, 1e3]))
def test_invariant_to_target_bias_shift(case, shift):
    model, x, targets = case
    before = GradCAM(model, layers=LAYERS)(x, targets=targets)

    def add(fc):
        for t in set(targets):
            fc.bias[t] += shift

    shifted = _with_fc(model, add)
    after = GradCAM(shifted, layers=LAYERS)(x, targets=targets)
    # The logit moved, the gradient did not: the maps must be bitwise the same.
    assert not torch.equal(before.logits, after.logits)
    for layer in LAYERS:
        assert torch.equal(before.raw[layer], after.raw[layer]), layer
        assert torch.equal(before.maps[layer], after.maps[layer]), layer


def _ranges(raw: torch.Tensor, size) -> torch.Tensor:
    up = upsample(raw, tuple(size))
    return up.amax(dim=(1, 2)) - up.amin(dim=(1, 2))


@PROPS
@given(case=cases(), scale=st.sampled_from([2.0**-10, 0.25, 4.0, 64.0]))
def test_invariant_to_power_of_two_scaling_of_last_linear_exactly(case, scale):
    """Scaling fc by 2^k scales every gradient, raw map, upsampled map and magnitude by exactly
    2^k (no rounding), so canonical maps must be bitwise equal -- everywhere, since the
    normaliser's floor is relative to the magnitude (an absolute epsilon would break this for
    small maps)."""
    model, x, targets = case
    before = GradCAM(model, layers=LAYERS)(x, targets=targets)

    def mul(fc):
        fc.weight.mul_(scale)
        fc.bias.mul_(scale)

    after = GradCAM(_with_fc(model, mul), layers=LAYERS)(x, targets=targets)
    for layer in LAYERS:
        assert torch.equal(after.raw[layer], before.raw[layer] * scale), layer
        assert torch.equal(after.maps[layer], before.maps[layer]), layer


@PROPS
@given(case=cases(), scale=st.sampled_from([0.3, 3.0, 40.0]))
def test_invariant_to_positive_scaling_of_last_linear(case, scale):
    """Any positive constant: equal to 1e-5 for maps whose range is well above rounding noise
    (1e-4 in raw units; the raw map is a difference of larger terms, so tinier ranges carry
    relative rounding noise of their own, about 1e-10 / range) -- and to 1e-3 down to 1e-6."""
    model, x, targets = case
    before = GradCAM(model, layers=LAYERS)(x, targets=targets)

    def mul(fc):
        fc.weight.mul_(scale)
        fc.bias.mul_(scale)

    after = GradCAM(_with_fc(model, mul), layers=LAYERS)(x, targets=targets)
    for layer in LAYERS:
        raw = before.raw[layer]
        torch.testing.assert_close(
            after.raw[layer], raw * scale, rtol=1e-4, atol=1e-6 * scale * float(raw.max())
        )
        ranges = _ranges(raw, x.shape[2:]) * min(scale, 1.0)
        diff = (after.maps[layer] - before.maps[layer]).abs().amax(dim=(1, 2))
        for i in range(x.shape[0]):
            if ranges[i] >= 1e-4:
                assert float(diff[i]) <= 1e-5, (layer, i)
            elif ranges[i] >= 1e-6:
                assert float(diff[i]) <= 1e-3, (layer, i)


@PROPS
@given(case=cases())
def test_native_equals_captum(case):
    model, x, targets = case
    native = GradCAM(model, layers=LAYERS)(x, targets=targets)
    captum = GradCAM(model, layers=LAYERS, backend="captum")(x, targets=targets)
    for layer in LAYERS:
        assert float((native.maps[layer] - captum.maps[layer]).abs().max()) <= 1e-5, layer
        scale = float(native.raw[layer].max())
        torch.testing.assert_close(
            native.raw[layer], captum.raw[layer], rtol=1e-5, atol=1e-6 * scale
        )
