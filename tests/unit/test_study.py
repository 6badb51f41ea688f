"""The study engine on a tiny model: per-image numbers, boxes, skips, bounded examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from xai_checks.data import open_photoset
from xai_checks.study import StudyConfig, run_study

pytestmark = pytest.mark.usefixtures("one_thread")


class Tiny(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.conv1 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
            self.layer1 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
            self.layer2 = nn.Sequential(nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU())
            self.layer3 = nn.Sequential(nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU())
            self.layer4 = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU())
            self.fc = nn.Linear(8, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        return self.fc(x.mean(dim=(2, 3)))


WNIDS = ("n02124075", "n01443537", "n04067472")  # Egyptian cat 285, goldfish 1, reel 758


def _tinyimagenet200(root):
    """A TinyImageNet-200 val split: 64x64 photos with one box each, plus one broken file."""
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    (root / "words.txt").write_text("".join(f"{w}\tx\n" for w in WNIDS))
    rng = np.random.default_rng(0)
    lines = []
    for k in range(7):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
            root / "val" / "images" / f"val_{k}.JPEG"
        )
        lines.append(f"val_{k}.JPEG\t{WNIDS[k % 3]}\t0\t0\t32\t16")  # top-left quarter-by-half
    (root / "val" / "images" / "val_7.JPEG").write_bytes(b"broken")
    lines.append(f"val_7.JPEG\t{WNIDS[0]}\t0\t0\t8\t8")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


def test_study_records_boxes_skips_and_bounded_examples(tmp_path):
    photos = open_photoset(_tinyimagenet200(tmp_path / "tiny200"))
    config = StudyConfig(batch_size=3, keep_examples=2, phases=("ratio",))
    with pytest.warns(UserWarning, match="val_7"):
        study = run_study(Tiny(0), photos, controls={"untrained": Tiny(1)}, config=config)
    assert study.photoset["n_used"] == 7 and study.photoset["n_skipped"] == 1
    assert [s["file"].endswith("val_7.JPEG") for s in study.skipped] == [True]
    for run in study.runs.values():
        assert len(run.records) == 7
        assert len(run.examples) == 2  # bounded, whatever the number of photos
        for record in run.records:
            # a 64x64 photo shown whole at 224x224: the box (0,0)-(32,16) covers 1/8 of it
            assert record["box_area"] == pytest.approx(1 / 8)
            assert set(record["box_mass"]) == set(config.layers)
            # NaN only where the whole map is zero (documented by mass_in_region)
            assert all(np.isnan(m) or 0.0 <= m <= 1.0 for m in record["box_mass"].values())
            assert all(0.0 <= r <= 1.0 for r in record["ratio"].values())
        assert run.column("ratio").shape == (7, 4)
        assert run.column("box_mass").shape == (7, 4)
        assert np.isfinite(run.column("box_mass")).any()
    assert study.gridpg is None and study.sanity is None and study.agreement is None


def test_study_is_deterministic(tmp_path):
    photos = open_photoset(_tinyimagenet200(tmp_path / "tiny200"))
    config = StudyConfig(batch_size=4, phases=("ratio", "sanity"), sanity_images=3)
    with pytest.warns(UserWarning):
        a = run_study(Tiny(0), photos, controls={}, name="m", config=config)
    with pytest.warns(UserWarning):
        b = run_study(Tiny(0), photos, controls={}, name="m", config=config)
    assert np.array_equal(a.runs["m"].column("ratio"), b.runs["m"].column("ratio"))
    assert a.sanity is not None and b.sanity is not None
    assert a.sanity.steps == ["fc", "layer4", "layer3", "layer2", "layer1", "conv1"]
    np.testing.assert_array_equal(
        np.array(a.sanity.rho["layer4"]), np.array(b.sanity.rho["layer4"])
    )


def test_sanity_photos_are_a_seeded_class_stratified_sample(tmp_path):
    """On a folder sorted by class (the 1000 ImageNet samples, by wnid) the first
    ``sanity_images`` photos would be the first classes only: the sanity cascade takes a seeded,
    class-stratified sample of the usable photos and records which photos it used."""
    root = tmp_path / "flat"
    root.mkdir()
    rng = np.random.default_rng(0)
    for wnid, name in (("n01443537", "goldfish"), ("n02124075", "Egyptian_cat")):
        for k in range(4):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
                root / f"{wnid}_{name}_{k}.JPEG"
            )
    photos = open_photoset(root, layout="flat")
    config = StudyConfig(batch_size=4, phases=("sanity",), sanity_images=4)
    study = run_study(Tiny(0), photos, controls={}, config=config)
    assert study.sanity is not None and len(study.sanity.files) == 4
    assert all(len(v) == 4 for v in study.sanity.rho.values())
    wnids = [Path(f).name.split("_")[0] for f in study.sanity.files]
    assert sorted(wnids) == ["n01443537"] * 2 + ["n02124075"] * 2, wnids  # both classes, 2 each
    again = run_study(Tiny(0), photos, controls={}, config=config)
    assert again.sanity is not None and again.sanity.files == study.sanity.files  # seeded


def test_unknown_phase_is_rejected():
    with pytest.raises(ValueError, match="unknown phases"):
        StudyConfig(phases=("ratio", "telepathy"))


# --------------------------------------------------------------------------- roles and control


def test_control_is_the_model_under_tests_own_class_reinitialised():
    """The control of a resnet18 is an untrained resnet18, never a silent untrained ResNet-50."""
    import torchvision

    from xai_checks.models import reinitialised_copy

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = torchvision.models.resnet18(num_classes=10).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    control = reinitialised_copy(model, seed=0)
    again = reinitialised_copy(model, seed=0)
    assert type(control) is type(model)
    assert control.state_dict().keys() == model.state_dict().keys()
    assert sum(p.numel() for p in control.parameters()) == 11_181_642  # resnet18, 10 classes
    for key, value in model.state_dict().items():  # the model under test is untouched
        assert torch.equal(value, before[key])
    changed = [
        k
        for k, v in control.state_dict().items()
        if v.is_floating_point() and not torch.equal(v, before[k])
    ]
    convs = [k for k in before if k.endswith("conv1.weight") or k.endswith("fc.weight")]
    assert set(convs) <= set(changed)
    for key, value in control.state_dict().items():  # seeded: the same control every time
        assert torch.equal(value, again.state_dict()[key])
    assert control.xai_weights.source == "reinitialised"
    assert control.xai_weights.arch == "ResNet"


def test_a_parameterised_module_without_initialiser_gets_the_stated_rule():
    """A module owning a parameter but no reset_parameters was a ValueError (no control)."""
    from xai_checks.models import reinitialised_copy

    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gain = nn.Parameter(torch.full((4,), 3.0))
            self.offset_bias = nn.Parameter(torch.full((4,), 3.0))
            self.table = nn.Parameter(torch.full((5, 4), 3.0))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.gain[:, None, None]

    model = nn.Sequential(nn.Conv2d(3, 4, 3), Scale())
    control = reinitialised_copy(model)
    scale = control[1]
    assert torch.equal(scale.gain, torch.ones(4))  # vector, not a bias: ones
    assert torch.equal(scale.offset_bias, torch.zeros(4))  # vector named bias: zeros
    assert scale.table.abs().max() <= 0.04 and scale.table.std() > 0.005  # trunc normal 0.02
    assert "1 by generic rule" in control.xai_weights.detail


def test_roles_are_explicit_and_the_default_control_is_the_same_class(tmp_path):
    photos = open_photoset(_tinyimagenet200(tmp_path / "tiny200"))
    config = StudyConfig(batch_size=4, phases=("ratio",))
    with pytest.warns(UserWarning, match="val_7"):
        study = run_study(Tiny(0), photos, config=config)
    assert study.under_test.role == "under_test" and study.under_test.model_class == "Tiny"
    assert list(study.controls) == ["untrained"]
    control = study.controls["untrained"]
    assert control.role == "control" and control.model_class == "Tiny"
    assert control.weights_source == "reinitialised"
    assert list(study.runs) == ["under_test", "untrained"]  # a user model: not "pretrained"
    confidence = [[r["confidence"] for r in run.records] for run in study.runs.values()]
    assert confidence[0] != confidence[1]  # different weights, different outputs


def test_run_study_refuses_a_dict_of_models(tmp_path):
    photos = open_photoset(_tinyimagenet200(tmp_path / "tiny200"))
    with pytest.raises(TypeError, match="controls="):
        run_study({"a": Tiny(0)}, photos)  # type: ignore[arg-type]


class _RecordsTF32(Tiny):
    seen: list[tuple[bool, bool]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        return super().forward(x)


@pytest.mark.parametrize("tf32", [False, True])
def test_the_study_runs_in_the_precision_it_records_and_restores_torchs_flags(tmp_path, tf32):
    """TF32 is a study setting (recorded in its config), set for the whole run and restored
    after, whatever PyTorch's flags were before."""
    photos = open_photoset(_tinyimagenet200(tmp_path / "tiny200"))
    model = _RecordsTF32(0)
    model.seen = []
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = not tf32
    try:
        config = StudyConfig(batch_size=4, phases=("ratio",), tf32=tf32)
        with pytest.warns(UserWarning):
            study = run_study(model, photos, controls={}, config=config)
        assert model.seen and set(model.seen) == {(tf32, tf32)}
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (
            not tf32,
            not tf32,
        )
        assert study.config.to_dict()["tf32"] is tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
