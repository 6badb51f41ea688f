"""Grad-CAM against closed-form oracles.

(a) At a layer that feeds global average pooling then a linear layer, d logit_c / dA_k(i, j)
    = fc.weight[c, k] / (H·W) at every position, so Grad-CAM there is exactly
    ReLU(sum_k fc.weight[c, k] A_k) / (H·W) = ReLU(CAM) / (H·W), whatever the weights.
(b) A hand-weighted 1-channel 4x4 net whose maps are worked out by hand below.
The real pretrained ResNet-50 version of (a) is in ``test_cam_real.py``.
"""

from __future__ import annotations

from collections import OrderedDict
from fractions import Fraction as Fr

import pytest
import torch
from torch import nn

from xai_checks.cam import GradCAM


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every test here runs its tiny nets on one thread (see conftest)."""


# --------------------------------------------------------------------------------------------
# (a) the GAP -> fc oracle


def cam_oracle(acts: torch.Tensor, fc_weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """ReLU(sum_k W[c, k] A_k) / (H·W) for (N, K, H, W) activations; computed in float64."""
    h, w = acts.shape[-2:]
    cam = torch.einsum("nkhw,nk->nhw", acts.double(), fc_weight.double()[targets])
    return torch.relu(cam) / (h * w)


def capture(module: nn.Module, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    store: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda m, a, out: store.append(out.detach().clone()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return store[0]


def random_resnet18(seed: int, classes: int = 10) -> nn.Module:
    torchvision = pytest.importorskip("torchvision")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torchvision.models.resnet18(num_classes=classes)
        # "Any weights": a non-trivial fc (default init is small and zero-mean) and BN stats
        # that are not the identity.
        nn.init.normal_(model.fc.weight, std=1.0)
        nn.init.uniform_(model.fc.bias, -1.0, 1.0)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("backend", ["native", "captum"])
def test_gap_fc_oracle_random_resnet18(seed, backend):
    model = random_resnet18(seed)
    x = torch.randn(3, 3, 64, 96, generator=torch.Generator().manual_seed(seed))
    targets = torch.tensor([seed, 9, 4])
    acts = capture(model.layer4, model, x)
    assert acts.shape == (3, 512, 2, 3)
    # Adversarial weights for image 0's target row: remove its component along image 0's mean
    # activation vector, so that sum_k W[c, k] A_k averages to 0 over positions and the ReLU
    # in the oracle has negative positions to clip (random rows are often positive everywhere).
    with torch.no_grad():
        row = model.fc.weight[seed]
        mean_act = acts[0].mean(dim=(1, 2))
        row -= (row @ mean_act) / (mean_act @ mean_act) * mean_act
    signed = torch.einsum("nkhw,nk->nhw", acts, model.fc.weight.detach()[targets])
    assert bool((signed[0] < 0).any()) and bool((signed[0] > 0).any())

    result = GradCAM(model, layers="layer4", backend=backend)(x, targets=targets)
    expected = cam_oracle(acts, model.fc.weight.detach(), targets).float()
    got = result.raw["layer4"]
    assert got.shape == expected.shape
    scale = float(expected.abs().amax())
    assert scale > 0
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6 * scale)
    assert bool((got[0] == 0).any())  # the clipped positions are exactly zero


def test_gap_fc_oracle_fails_at_a_layer_not_feeding_gap():
    """The oracle is specific: at layer3 the gradient is not uniform and it does not hold."""
    model = random_resnet18(0)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    got = GradCAM(model, layers="layer4.0.conv1")(x, targets=[1, 2]).raw["layer4.0.conv1"]
    acts = capture(model.layer4[0].conv1, model, x)
    # Same shapes as a GAP-fed layer would need, but unrelated numbers.
    assert got.shape == acts.shape[:1] + acts.shape[2:]
    assert acts.shape[1] == model.fc.in_features
    expected = cam_oracle(acts, model.fc.weight.detach(), torch.tensor([1, 2])).float()
    assert not torch.allclose(got, expected, rtol=1e-3, atol=1e-4)


# --------------------------------------------------------------------------------------------
# (b) a hand-weighted tiny net
#
# Input x (1x1x4x4):          conv "conv": 1 -> 2 channels, kernel 2x2, stride 2, then ReLU
#   1 2 0 1                     channel 0: kernel [[1, 0], [0, 1]], bias -1   (a + d - 1)
#   0 1 3 0                     channel 1: kernel [[0, 1], [0, -1]], bias 0   (b - d)
#   2 0 1 1                   GAP, then "fc": W = [[1, -2], [-1, 3]], b = [0.5, -0.5]
#   1 1 0 2
#
# 2x2 patches: P00 = [[1,2],[0,1]]  P01 = [[0,1],[3,0]]  P10 = [[2,0],[1,1]]  P11 = [[1,1],[0,2]]
# conv output (pre-ReLU) A:  A0 = [[1+1-1, 0+0-1], [2+1-1, 1+2-1]] = [[1, -1], [2, 2]]
#                            A1 = [[2-1, 1-0], [0-1, 1-2]]          = [[1, 1], [-1, -1]]
# after ReLU R:              R0 = [[1, 0], [2, 2]]  (mean 5/4),  R1 = [[1, 1], [0, 0]]  (mean 1/2)
# logits: l0 = 5/4 - 2*(1/2) + 1/2 = 3/4,  l1 = -5/4 + 3*(1/2) - 1/2 = -1/4  -> predicted class 0
#
# Layer "relu" (feeds GAP): dl_c/dR_k = W[c, k] / 4 everywhere, so alpha = W[c] / 4.
#   class 0: alpha = (1/4, -1/2):  R0/4 - R1/2 = [[-1/4, -1/2], [1/2, 1/2]]
#            -> ReLU [[0, 0], [1/2, 1/2]]
#   class 1: alpha = (-1/4, 3/4): -R0/4 + 3R1/4 = [[1/2, 3/4], [-1/2, -1/2]]
#            -> ReLU [[1/2, 3/4], [0, 0]]
# Layer "conv" (before the ReLU): dl_c/dA_k = W[c, k]/4 * [A_k > 0]; masks [[1,0],[1,1]] (3 of 4)
# and [[1,1],[0,0]] (2 of 4), so alpha = (W[c,0] * 3/16, W[c,1] * 2/16).
#   class 0: alpha = (3/16, -1/4):  3A0/16 - A1/4
#            = [[3/16 - 4/16, -3/16 - 4/16], [6/16 + 4/16, 6/16 + 4/16]]
#            = [[-1/16, -7/16], [5/8, 5/8]]                 -> ReLU [[0, 0], [5/8, 5/8]]
#   class 1: alpha = (-3/16, 3/8): -3A0/16 + 3A1/8
#            = [[-3/16 + 6/16, 3/16 + 6/16], [-6/16 - 6/16, -6/16 - 6/16]]
#            = [[3/16, 9/16], [-3/4, -3/4]]                 -> ReLU [[3/16, 9/16], [0, 0]]
#
# Canonical maps: bilinear 2 -> 4 with align_corners=False samples the source at
# (i + 1/2)/2 - 1/2 = -1/4, 1/4, 3/4, 5/4, clamped to [0, 1]: out = [v0, 3v0/4 + v1/4,
# v0/4 + 3v1/4, v1] along each axis; then min-max.
#   [[0, 0], [v, v]] (class 0, both layers): rows 0, v/4, 3v/4, v -> min-max rows 0, 1/4, 3/4, 1.
#   class 1 at "conv", top row (3/16, 9/16) -> [3/16, 9/32, 15/32, 9/16]; rows are that times
#   1, 3/4, 1/4, 0; max 9/16, min 0 -> top row [1/3, 1/2, 5/6, 1], then x 3/4, x 1/4, x 0.
#   class 1 at "relu", top row (1/2, 3/4) -> [1/2, 9/16, 11/16, 3/4]; max 3/4, min 0
#   -> top row [2/3, 3/4, 11/12, 1], then x 3/4, x 1/4, x 0.

X = [[1, 2, 0, 1], [0, 1, 3, 0], [2, 0, 1, 1], [1, 1, 0, 2]]


def hand_net() -> nn.Module:
    model = nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(1, 2, kernel_size=2, stride=2),
            relu=nn.ReLU(),
            gap=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(2, 2),
        )
    )
    with torch.no_grad():
        model.conv.weight.copy_(
            torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]], [[[0.0, 1.0], [0.0, -1.0]]]])
        )
        model.conv.bias.copy_(torch.tensor([-1.0, 0.0]))
        model.fc.weight.copy_(torch.tensor([[1.0, -2.0], [-1.0, 3.0]]))
        model.fc.bias.copy_(torch.tensor([0.5, -0.5]))
    return model.eval()


def tensor(rows) -> torch.Tensor:
    return torch.tensor([[float(v) for v in row] for row in rows])


def rows_times(top, factors) -> list[list[Fr]]:
    return [[Fr(v) * f for v in top] for f in factors]


ROW_PROFILE = [Fr(1), Fr(3, 4), Fr(1, 4), Fr(0)]
EXPECTED = {
    # (layer, class): (raw 2x2, canonical 4x4)
    ("relu", 0): (
        [[0, 0], [Fr(1, 2), Fr(1, 2)]],
        [[0] * 4, [Fr(1, 4)] * 4, [Fr(3, 4)] * 4, [1] * 4],
    ),
    ("relu", 1): (
        [[Fr(1, 2), Fr(3, 4)], [0, 0]],
        rows_times([Fr(2, 3), Fr(3, 4), Fr(11, 12), 1], ROW_PROFILE),
    ),
    ("conv", 0): (
        [[0, 0], [Fr(5, 8), Fr(5, 8)]],
        [[0] * 4, [Fr(1, 4)] * 4, [Fr(3, 4)] * 4, [1] * 4],
    ),
    ("conv", 1): (
        [[Fr(3, 16), Fr(9, 16)], [0, 0]],
        rows_times([Fr(1, 3), Fr(1, 2), Fr(5, 6), 1], ROW_PROFILE),
    ),
}


@pytest.mark.parametrize("backend", ["native", "captum"])
@pytest.mark.parametrize("layer,target", sorted(EXPECTED))
def test_hand_computed_maps(backend, layer, target):
    model = hand_net()
    x = tensor(X)[None, None]
    result = GradCAM(model, layers=layer, backend=backend)(x, targets=[target])
    raw, canonical = EXPECTED[(layer, target)]
    torch.testing.assert_close(result.raw[layer][0], tensor(raw), rtol=0, atol=1e-6)
    torch.testing.assert_close(result.maps[layer][0], tensor(canonical), rtol=0, atol=1e-6)
    torch.testing.assert_close(result.logits[0], torch.tensor([0.75, -0.25]), rtol=0, atol=1e-6)


def test_hand_net_predicted_class_and_batch():
    """targets=None picks class 0 (l0 = 3/4 > l1 = -1/4); a batch mixing both targets gives
    each image its own hand-computed map."""
    model = hand_net()
    x = tensor(X)[None, None]
    result = GradCAM(model, layers=["conv", "relu"])(x)
    assert result.targets.tolist() == [0]
    torch.testing.assert_close(result.raw["conv"][0], tensor(EXPECTED[("conv", 0)][0]))
    both = GradCAM(model, layers=["conv", "relu"])(x.repeat(2, 1, 1, 1), targets=[1, 0])
    for layer in ("conv", "relu"):
        torch.testing.assert_close(both.raw[layer][0], tensor(EXPECTED[(layer, 1)][0]))
        torch.testing.assert_close(both.raw[layer][1], tensor(EXPECTED[(layer, 0)][0]))
