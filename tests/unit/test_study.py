"""The study engine on a tiny model: per-image numbers, boxes, skips, bounded examples."""

from __future__ import annotations

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
        study = run_study({"pretrained": Tiny(0), "untrained": Tiny(1)}, photos, config=config)
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
        a = run_study({"m": Tiny(0)}, photos, config=config)
    with pytest.warns(UserWarning):
        b = run_study({"m": Tiny(0)}, photos, config=config)
    assert np.array_equal(a.runs["m"].column("ratio"), b.runs["m"].column("ratio"))
    assert a.sanity is not None and b.sanity is not None
    assert a.sanity.steps == ["fc", "layer4", "layer3", "layer2", "layer1", "conv1"]
    np.testing.assert_array_equal(
        np.array(a.sanity.rho["layer4"]), np.array(b.sanity.rho["layer4"])
    )


def test_unknown_phase_is_rejected():
    with pytest.raises(ValueError, match="unknown phases"):
        StudyConfig(phases=("ratio", "telepathy"))
