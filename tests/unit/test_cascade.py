"""The sanity cascade's maps with the unchanged start of each step's forward taken from the
original pass: exactly the maps of running every step whole, on models that make serving a
module wrong in each way it could be (in-place ops after a served module, a skip connection
from an early module to the head, a module called twice, weights tied across the cut, a class
token on the root, an explained layer inside a stage)."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import Tensor, nn

from xai_checks.cascade import cascade_steps_state, recording, replay_plan, replaying
from xai_checks.models import cascade_steps, reinitialise_, trace_model
from xai_checks.study import StudyConfig, cascade_maps, make_cam

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 64


class SkipNet(nn.Module):
    """The stem's output reaches the head directly: serving the stem must keep that input."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(True))
        self.act = nn.ReLU()  # called twice: never served
        self.block1 = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1), nn.BatchNorm2d(8))
        self.block2 = nn.Sequential(nn.Conv2d(8, 8, 3, 2, 1), nn.BatchNorm2d(8))
        self.head = nn.Linear(16, 5)

    def forward(self, x: Tensor) -> Tensor:
        s = self.stem(x)
        a = self.act(self.block1(s))
        b = self.act(self.block2(a))
        pooled = torch.cat([s.mean(dim=(2, 3)), b.mean(dim=(2, 3))], dim=1)
        return self.head(pooled)


class TiedNet(nn.Module):
    """The head shares its weight with a conv that runs first: re-initialising the head
    changes the first conv too, so nothing before it may be served."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(3, 5, 1)
        self.block1 = nn.Sequential(nn.Conv2d(5, 5, 3, 2, 1), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(5, 5, 3, 2, 1), nn.ReLU())
        self.head = nn.Conv2d(3, 5, 1)
        self.head.weight = self.first.weight
        self.proj = nn.Linear(5, 4)

    def forward(self, x: Tensor) -> Tensor:
        y = self.block2(self.block1(self.first(x)))
        tied = self.head(x).mean(dim=(2, 3))  # the tied weight, used again at the end
        return self.proj(y.mean(dim=(2, 3)) + tied)


def _resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=7).eval()


def _vit() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(
        image_size=SIZE, patch_size=16, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
        num_classes=6,
    ).eval()  # fmt: skip


def _seeded(make):
    def build() -> nn.Module:
        torch.manual_seed(0)
        return make().eval()

    return build


CASES = {
    "resnet18": (_resnet18, ("layer1", "layer2", "layer3", "layer4")),
    "resnet18-inner-layer": (_resnet18, ("layer2", "layer4.0")),
    "skip": (_seeded(SkipNet), ("stem", "block1", "block2")),
    "tied": (_seeded(TiedNet), ("block1", "block2")),
    "vit": (_vit, ("encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1")),
}


def _whole(model, layer, steps, seed_of, batches, config) -> list[tuple[Tensor, list[Tensor]]]:
    """The cascade as it reads: one copy re-initialised step by step, every step run whole."""
    out = [(make_cam(model, [layer], config)(x, targets=y).maps[layer], []) for x, y in batches]
    randomised = copy.deepcopy(model)
    modules = dict(randomised.named_modules())
    for step, members in steps:
        reinitialise_(randomised, seed=seed_of(step), modules=[modules[m] for m in members])
        engine = make_cam(randomised, [layer], config)
        for (x, y), (_, maps) in zip(batches, out, strict=True):
            maps.append(engine(x, targets=y).maps[layer])
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_served_cascade_gives_the_maps_of_running_every_step_whole(case: str) -> None:
    make, layers = CASES[case]
    model = make()
    trace = trace_model(model, (1, 3, SIZE, SIZE))
    steps = cascade_steps(model, trace, layers)
    assert len(steps) >= 2, steps
    layer = layers[-1]
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(n, 3, SIZE, SIZE, generator=gen), torch.arange(n) % 4) for n in (3, 2)]
    config = StudyConfig(layers=layers)

    def seed_of(step: str) -> int:
        return 100 + len(step)

    before = copy.deepcopy(model.state_dict())
    served = list(cascade_maps(model, trace, layer, steps, seed_of, batches, config))
    whole = _whole(model, layer, steps, seed_of, batches, config)
    for (original, maps), (original_whole, maps_whole) in zip(served, whole, strict=True):
        assert torch.equal(original, original_whole)
        assert len(maps) == len(maps_whole) == len(steps)
        for step_maps, step_whole in zip(maps, maps_whole, strict=True):
            assert torch.equal(step_maps, step_whole)
    # the model under test is left as it was
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not any("forward" in m.__dict__ for m in model.modules())


@pytest.mark.parametrize(
    "settings", [{"channels_last": True}, {"backend": "captum"}], ids=["channels-last", "captum"]
)
def test_engines_with_their_own_copy_run_the_cascade_step_by_step(settings: dict) -> None:
    """A channels-last engine keeps a private copy of the weights and Captum has no served
    forward: the cascade runs each step whole, one engine per step, and gives the plain
    loop's maps."""
    model = _resnet18()
    layers = ("layer1", "layer2", "layer3", "layer4")
    trace = trace_model(model, (1, 3, SIZE, SIZE))
    steps = cascade_steps(model, trace, layers)
    gen = torch.Generator().manual_seed(2)
    batches = [(torch.randn(n, 3, SIZE, SIZE, generator=gen), torch.arange(n) % 4) for n in (2, 1)]
    config = StudyConfig(layers=layers, **settings)

    def seed_of(step: str) -> int:
        return 5 + len(step)

    got = list(cascade_maps(model, trace, "layer4", steps, seed_of, batches, config))
    want = _whole(model, "layer4", steps, seed_of, batches, config)
    for (original, maps), (original_whole, maps_whole) in zip(got, want, strict=True):
        assert torch.equal(original, original_whole)
        assert all(torch.equal(a, b) for a, b in zip(maps, maps_whole, strict=True))
        assert len(maps) == len(steps)


def test_the_plan_serves_the_outermost_modules_that_ended_before_the_first_change() -> None:
    model = _resnet18()
    trace = trace_model(model, (1, 3, SIZE, SIZE))
    steps = cascade_steps(model, trace, ("layer1", "layer2", "layer3", "layer4"))
    _, states = cascade_steps_state(model, steps, lambda step: 7)
    plans = {s.name: replay_plan(trace, s.changed, ["layer4"]) for s in states}
    stem = ("conv1", "bn1", "relu", "maxpool")
    assert plans == {
        "fc": (*stem, "layer1", "layer2", "layer3", "layer4"),
        "layer4": (*stem, "layer1", "layer2", "layer3"),
        "layer3": (*stem, "layer1", "layer2"),
        "layer2": (*stem, "layer1"),
        "layer1": stem,
        "conv1+bn1": (),
    }
    # an explained layer inside a stage: the layer itself is served (its hook still fires), the
    # stage around it is not
    fc = next(s for s in states if s.name == "fc")
    served = (*stem, "layer1", "layer2", "layer3", "layer4.0")
    assert replay_plan(trace, fc.changed, ["layer4.0"]) == served


def test_the_plan_serves_nothing_past_a_changed_root_or_a_tied_weight_or_a_second_call() -> None:
    vit = _vit()
    trace = trace_model(vit, (1, 3, SIZE, SIZE))
    steps = cascade_steps(vit, trace, ("encoder.layers.encoder_layer_1",))
    _, states = cascade_steps_state(vit, steps, lambda step: 7)
    assert "" in states[0].changed  # the class token belongs to the root
    assert all(
        replay_plan(trace, s.changed, ["encoder.layers.encoder_layer_1"]) == () for s in states
    )

    tied = _seeded(TiedNet)()
    trace = trace_model(tied, (1, 3, SIZE, SIZE))
    steps = cascade_steps(tied, trace, ("block1", "block2"))
    _, states = cascade_steps_state(tied, steps, lambda step: 7)
    head = states[0]
    assert {"head", "first"} <= head.changed  # measured, not read off the step's members
    assert replay_plan(trace, head.changed, ["block2"]) == ()

    skip = _seeded(SkipNet)()
    trace = trace_model(skip, (1, 3, SIZE, SIZE))
    steps = cascade_steps(skip, trace, ("stem", "block1", "block2"))
    _, states = cascade_steps_state(skip, steps, lambda step: 7)
    assert trace.calls["act"] == 2
    assert "act" not in replay_plan(trace, states[0].changed, ["block2"])


def test_recording_drops_a_module_run_twice_and_replaying_restores_the_forward() -> None:
    model = _seeded(SkipNet)()
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad(), recording(model, ["stem", "act"]) as outputs:
        model(x)
    assert set(outputs) == {"stem"}  # act ran twice
    served = outputs["stem"] + 1.0
    with torch.no_grad(), replaying(model, {"stem": served}):
        assert "forward" in model.stem.__dict__
        assert torch.equal(model.stem(x), served)  # served once
        assert not torch.equal(model.stem(x), served)  # then the module itself runs
    assert "forward" not in model.stem.__dict__
