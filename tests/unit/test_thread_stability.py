"""The study's numbers under another CPU thread count (float summation order): the bounds that
docs/stability.md states, checked on the real ResNet-50 over real photos in two processes."""

from __future__ import annotations

import importlib.util
import math
import pickle
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: the coarsest grid of the ResNet-50's maps (layer4 at 224 px): a pooled ratio's step
CELL = 1 / 49
#: the largest weight of one layer in the fitted rise over 4 layers (stats.depth_rise)
RISE_WEIGHT = 0.9


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "thread_stability", ROOT / "benchmarks" / "thread_stability.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["thread_stability"] = module
    spec.loader.exec_module(module)
    return module


def _data() -> str:
    from xai_checks.data import find_imagenet_samples

    root = find_imagenet_samples()
    return "embedded" if root is None else str(root)


@pytest.mark.slow
def test_one_and_two_threads_move_the_verdict_effects_within_the_stated_bound(
    tmp_path, kept_measurements
):
    bench = _bench()

    def measure() -> dict[str, list]:
        studies = []
        for threads in (1, 2):
            out = tmp_path / f"{threads}.pickle"
            bench.study_in_subprocess(
                threads=threads, photos=8, data=_data(), out=out, phases=("ratio",)
            )
            studies.append(pickle.loads(out.read_bytes()))
        return {
            "numbers": [
                [[list(k), v] for k, v in bench.per_photo_numbers(s).items()] for s in studies
            ],
            "effects": [bench.verdict_effects(s)["seed-depth-ratio"]["effects"] for s in studies],
        }

    # two processes' studies of the real ResNet-50: kept between runs of the suite by content
    from xai_checks.models import _cache_paths

    data = _data()
    photos = () if data == "embedded" else (Path(data),)
    got = kept_measurements("two studies", measure, inputs=(_cache_paths()[0], *photos))
    pa, pb = ({tuple(k): v for k, v in numbers} for numbers in got["numbers"])
    effects_one, effects_two = got["effects"]
    assert pa and pa.keys() == pb.keys()
    files = {k[2] for k in pa}
    n = len(files)
    moved = 0.0  # per photo: the sum of every ratio's move, over layers and models
    for key, x in pa.items():
        d = abs(x - pb[key])
        if key[0] == "ratio_pooled":
            # a pooled ratio moves by whole cells of the 7x7 grid, never by a fraction of one
            assert abs(d / CELL - round(d / CELL)) < 1e-4, key
        if key[0] in ("ratio", "ratio_pooled"):
            moved += d
    # Every effect of the seed claim is a mean over photos of fitted rises (weights <= 0.9 per
    # layer) of one or two of these ratios, so it moves by at most 0.9 * moved / n.
    bound = RISE_WEIGHT * moved / n + 1e-9
    estimates = [
        key
        for key in effects_one
        if bench.is_decisive(key) and key.rsplit("/", 1)[-1] == "estimate"
    ]
    assert len(estimates) >= 4  # the effect, and beyond each control and both at once
    for key in estimates:
        a, b = effects_one[key], effects_two[key]
        assert math.isfinite(a) and abs(a - b) <= bound, (key, a, b, bound)
