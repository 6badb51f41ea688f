"""Faithfulness throughput: our batched ROAD (4 layers, 1 method, K = 9, MoRF + LeRF) against
pytorch-grad-cam's ``ROADCombined`` loop on the same photos and maps, in one run.

Run: ``pytest benchmarks/test_faithfulness_throughput.py --benchmark-only -s``; photos from
``XAI_BENCH_PHOTOS`` (default: the shared ImageNet samples), ``XAI_BENCH_FAITH_PHOTOS`` of them
(default 2). Case ids: ``cpu-faithfulness-ours`` / ``cpu-faithfulness-gradcam``; the profile
split (imputation vs forward) of ours goes in ``extra_info``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from benchmarks.conftest import resnet50_on

LAYERS = ("layer1", "layer2", "layer3", "layer4")
FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _photos(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from xai_checks.data import standard_transform

    folder = Path(os.environ.get("XAI_BENCH_PHOTOS", "/work/shared/data/imagenet-samples"))
    files = sorted(folder.glob("*.JPEG"))[:n]
    if not files:
        pytest.skip(f"no photos in {folder}")
    from PIL import Image

    tf = standard_transform()
    x = torch.stack([tf(Image.open(f).convert("RGB")) for f in files])
    model = resnet50_on("cpu")
    with torch.no_grad():
        return x, model(x).argmax(1)


@pytest.fixture(scope="module")
def inputs() -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    from xai_checks.cam import GradCAM

    x, t = _photos(int(os.environ.get("XAI_BENCH_FAITH_PHOTOS", "2")))
    maps = GradCAM(resnet50_on("cpu"), layers=list(LAYERS))(x, targets=t).maps
    return x, t, {k: v.detach() for k, v in maps.items()}


@pytest.mark.parametrize("impl", ["ours", "gradcam"])
def test_faithfulness_throughput(benchmark, impl, inputs) -> None:
    import xai_checks.faithfulness as fa

    x, t, maps = inputs
    model = resnet50_on("cpu")
    if impl == "ours":
        split = {"impute_s": 0.0}
        real_impute = fa.impute_linear

        def timed_impute(*args, **kwargs):
            start = time.perf_counter()
            out = real_impute(*args, **kwargs)
            split["impute_s"] += time.perf_counter() - start
            return out

        def run() -> None:
            fa.impute_linear = timed_impute  # type: ignore[assignment]
            try:
                for layer in LAYERS:
                    g = torch.Generator().manual_seed(0)
                    for order in ("morf", "lerf"):
                        fa.perturbation_curves(
                            model, x, maps[layer], t, order=order, generator=g, batch_size=32
                        )
            finally:
                fa.impute_linear = real_impute

    else:
        from pytorch_grad_cam.metrics.road import ROADCombined
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

        targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in t]

        def run() -> None:
            for layer in LAYERS:
                ROADCombined(percentiles=[round(100 * f) for f in FRACTIONS])(
                    x, maps[layer].numpy(), targets, model
                )

    start = time.perf_counter()
    benchmark.pedantic(run, rounds=1, iterations=1)
    wall = time.perf_counter() - start
    benchmark.extra_info.update(
        {"impl": f"faith_{impl}", "photos": len(x), "photos_per_s": len(x) / wall}
    )
    if impl == "ours":
        benchmark.extra_info["impute_share"] = split["impute_s"] / wall
    print(f"\n{impl}: {len(x) / wall:.4f} photos/s ({wall:.1f} s)", benchmark.extra_info)
