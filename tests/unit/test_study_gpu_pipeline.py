"""The study's GPU pipeline switches on the CPU: ``device_decode`` (the byte path, decoded one
batch ahead) and ``cuda_graphs`` (eager on the CPU, counted) run the ratio phase to the same
per-photo numbers as the default path, and record their counts in the provenance."""

from __future__ import annotations

import pytest
import torch

from xai_checks.cam import graphs
from xai_checks.data import open_photoset
from xai_checks.study import StudyConfig, run_study


def test_device_decode_and_cuda_graphs_switches_on_the_cpu(shared_photos):
    torchvision = pytest.importorskip("torchvision")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torchvision.models.resnet18().eval()  # random weights: shapes only
    photos = open_photoset(shared_photos, limit=6, seed=0)
    base = StudyConfig(phases=("ratio",), batch_size=4, layers=("layer3", "layer4"), workers=0)
    plain = run_study(model, photos, controls={}, config=base)
    fast = run_study(
        model,
        photos,
        controls={},
        config=StudyConfig(**{**base.__dict__, "device_decode": True, "cuda_graphs": True}),
    )
    pipeline = fast.provenance["gpu_pipeline"]
    assert pipeline["decoded"] == {"device": 6, "cpu": {}}
    (stats,) = pipeline["cuda_graphs"].values()
    assert stats["eager"] == {graphs.NOT_CUDA: 2} and stats["replays"] == 0
    assert "gpu_pipeline" not in plain.provenance
    assert fast.config.device_decode and fast.config.cuda_graphs
    # inputs within one 8-bit level (test_device_decode.py): per-photo ratios move by a few
    # pixels at most (measured 0.0033 at layer1 on 64 photos with the trained ResNet-50)
    for a, b in zip(plain.under_test.records, fast.under_test.records, strict=True):
        assert a["file"] == b["file"] and a["target"] == b["target"]
        for layer in ("layer3", "layer4"):
            assert abs(a["ratio"][layer] - b["ratio"][layer]) <= 0.02, (a["file"], layer)
