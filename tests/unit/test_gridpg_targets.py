"""Which photos GridPG takes as targets: the two rules, the rank the ratio phase records, and
the option on both front ends."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from xai_checks.data import open_photoset
from xai_checks.gridpg_targets import GRIDPG_TARGETS, describe_gridpg_targets, is_gridpg_target
from xai_checks.options import add_cli_options, add_plugin_options
from xai_checks.study import ModelRun, StudyConfig, gridpg_phase, run_study

pytestmark = pytest.mark.usefixtures("one_thread")

#: six ImageNet classes, two photos each (GridPG needs four distinct classes among targets)
CLASSES = (
    "n01440764_tench",
    "n01443537_goldfish",
    "n01484850_great_white_shark",
    "n01491361_tiger_shark",
    "n01494475_hammerhead",
    "n01496331_electric_ray",
)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.layer1 = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4, padding=1), nn.ReLU())
            self.layer2 = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU())
            self.fc = nn.Linear(8, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layer2(self.layer1(x)).mean(dim=(2, 3)))


@pytest.fixture
def photos(tmp_path: Path):
    rng = np.random.default_rng(0)
    for name in CLASSES:
        for k in range(2):
            pixels = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / f"{name}_{k}.JPEG")
    return open_photoset(tmp_path)


def _record(file: str, *, correct: bool, confidence: float, true_rank: int) -> dict:
    return {"file": file, "correct": correct, "confidence": confidence, "true_rank": true_rank}


@pytest.mark.parametrize(
    ("record", "confident", "top5"),
    [
        ({"correct": True, "confidence": 0.95, "true_rank": 0}, True, True),
        ({"correct": True, "confidence": 0.9, "true_rank": 0}, True, True),  # >= is in
        ({"correct": True, "confidence": 0.6, "true_rank": 0}, False, True),  # unsure, right
        ({"correct": False, "confidence": 0.97, "true_rank": 4}, False, True),  # 5th is in
        ({"correct": False, "confidence": 0.97, "true_rank": 5}, False, False),  # 6th is out
    ],
)
def test_each_rule_keeps_exactly_the_photos_it_states(record, confident, top5):
    assert is_gridpg_target(record, rule="confident", confidence=0.9) is confident
    assert is_gridpg_target(record, rule="top5", confidence=0.9) is top5


def test_an_unknown_rule_is_an_error_everywhere():
    with pytest.raises(ValueError, match="top3"):
        is_gridpg_target({}, rule="top3", confidence=0.9)
    with pytest.raises(ValueError, match="top3"):
        describe_gridpg_targets("top3", confidence=0.9)
    with pytest.raises(ValueError, match="gridpg_targets"):
        StudyConfig(gridpg_targets="top3")  # type: ignore[arg-type]


@pytest.mark.parametrize("rule", GRIDPG_TARGETS)
def test_thegridpg_phase_takes_as_targets_the_photos_the_rule_keeps(photos, rule):
    files = sorted(str(s.path) for s in photos)
    # one photo of each class is a confident, correct top-1; the other has its true class at
    # rank 3 (wrong top-1, kept by top5 only); the first class's second photo at rank 7 (neither)
    records = []
    for i, file in enumerate(files):
        if i % 2 == 0:
            records.append(_record(file, correct=True, confidence=0.95, true_rank=0))
        else:
            rank = 7 if i == 1 else 3
            records.append(_record(file, correct=False, confidence=0.5, true_rank=rank))
    run = ModelRun("m", {}, ("layer1", "layer2"), records=records)
    config = StudyConfig(layers=("layer1", "layer2"), gridpg_targets=rule, batch_size=4)
    grid = gridpg_phase({"m": Tiny()}, photos, run, config, None)
    expected = {r["file"] for r in records if is_gridpg_target(r, rule=rule, confidence=0.9)}
    assert len(expected) == (6 if rule == "confident" else 11)
    assert grid.n_candidates == len(expected)
    assert {spec["target_file"] for spec in grid.specs} == expected
    assert grid.scores["m"].shape == (len(expected), 2)


def test_the_ratio_phase_records_the_true_labels_rank(photos):
    config = StudyConfig(layers=("layer1", "layer2"), phases=("ratio",), batch_size=5)
    study = run_study(Tiny(), photos, controls={}, config=config)
    model = Tiny().eval()
    transform = config.preprocess.build(photos.transform_kind)
    for sample, record in zip(photos, study.under_test.records, strict=True):
        with Image.open(sample.path) as image:
            logits = model(transform(image.convert("RGB")).unsqueeze(0))[0]
        # classes strictly above the true one; float noise between batch sizes is far below
        # the gaps between a random network's logits, so the count is exact
        assert record["true_rank"] == int((logits > logits[sample.label]).sum())
        assert (record["true_rank"] == 0) == record["correct"]


def test_the_option_reaches_both_front_ends():
    parser = argparse.ArgumentParser()
    add_cli_options(parser, "study")
    assert parser.parse_args([]).gridpg_targets == "confident"
    assert parser.parse_args(["--gridpg-targets", "top5"]).gridpg_targets == "top5"
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--gridpg-targets", "top3"])
    assert info.value.code == 2
    added: dict[str, dict] = {}
    add_plugin_options(SimpleNamespace(addoption=lambda flag, **kw: added.setdefault(flag, kw)))
    assert added["--xai-gridpg-targets"]["choices"] == GRIDPG_TARGETS
