"""The Python API under hostile models and preprocessing: each is refused with a message
naming the problem (before a photo is decoded where it can be), never a raw traceback from
deep inside, and a model that changes under the study is caught."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from xai_checks.data import open_photoset
from xai_checks.data.classes import Preprocess
from xai_checks.study import ModelChangedError, StudyConfig, StudyUsageError, run_study

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.Conv2d(4, 8, 3, 2, 1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1000),
    ).eval()  # fmt: skip


class Drifting(nn.Module):
    """Its bias drifts by 0.02 on every call: the maps are never reproducible."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _tiny()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.net[-1].bias.add_(0.02)
        return self.net(x)


def _config(**changes: object) -> StudyConfig:
    values: dict[str, object] = {
        "layers": ("0", "2"),
        "phases": ("ratio",),
        "batch_size": 4,
        "preprocess": Preprocess(input_size=32),
        "workers": 0,
    }
    values.update(changes)
    return StudyConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def photos():
    return open_photoset("embedded", limit=4, seed=0)


def test_a_model_that_changes_itself_fails_clearly(photos):
    with pytest.raises(ModelChangedError, match="changed during the study"):
        run_study(Drifting(), photos, controls={}, config=_config(layers=("net.0", "net.2")))


def test_a_steady_model_passes_the_check(photos):
    result = run_study(_tiny(), photos, controls={}, config=_config())
    assert result.photoset["n_used"] > 0


def test_a_model_on_the_meta_device_is_a_usage_error(photos):
    with torch.device("meta"):
        model = _tiny()
    with pytest.raises(StudyUsageError, match="meta device"):
        run_study(model, photos, controls={}, config=_config())


@pytest.mark.parametrize(
    "preprocess,message",
    [
        (Preprocess(input_size=32, mean=(0.5, 0.5), std=(0.5, 0.5)), "give 2 values"),
    ],
)
def test_preprocessing_that_does_not_fit_the_model_is_a_usage_error(photos, preprocess, message):
    with pytest.raises(StudyUsageError, match=message):
        run_study(_tiny(), photos, controls={}, config=_config(preprocess=preprocess))


@pytest.mark.parametrize(
    "kwargs",
    [{"std": (1e-300,) * 3}, {"input_size": 40_000}, {"input_size": 10**20}, {"input_size": 8.5}],
)
def test_preprocess_refuses_values_that_cannot_work(kwargs):
    with pytest.raises(ValueError):
        Preprocess(**kwargs)  # type: ignore[arg-type]


def test_allow_large_lifts_the_input_size_bound():
    assert Preprocess(input_size=5000, allow_large=True).input_size == 5000
    assert Preprocess(input_size=5000, allow_large=True) == Preprocess(
        input_size=5000, allow_large=True
    )


RANK_FAILS = """
import sys, torch
from torch import nn
from xai_checks.data import open_photoset
from xai_checks.data.classes import Preprocess
from xai_checks.distributed import RankFailed, distributed_from_env
from xai_checks.study import StudyConfig, run_study


class FailsOnRank1(nn.Module):
    def __init__(self, rank):
        super().__init__()
        torch.manual_seed(0)
        self.rank = rank
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.Conv2d(4, 8, 3, 2, 1))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1000))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.rank == 1 and self.calls > 1:  # the trace passes; the first photo batch fails
            raise ValueError("forward failed on a photo")
        return self.head(self.body(x))


with distributed_from_env("cpu") as (shard, _):
    config = StudyConfig(layers=("body.0", "body.2"), phases=("ratio",), batch_size=2, workers=0,
                         preprocess=Preprocess(input_size=32))
    try:
        run_study(FailsOnRank1(shard.rank), open_photoset("embedded", limit=4), controls={},
                  config=config, shard=shard)
    except RankFailed as exc:
        print(f"rank {shard.rank}: {exc}".splitlines()[0], file=sys.stderr)
        sys.exit(3)
"""


def test_a_forward_that_fails_on_one_rank_in_the_ratio_phase_fails_every_rank(tmp_path):
    script = tmp_path / "fails.py"
    script.write_text(textwrap.dedent(RANK_FAILS))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "XAI_CHECKS_DIST_TIMEOUT": "120"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", str(script)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    for rank in (0, 1):
        expected = f"rank {rank}: study phase 'ratio' failed on rank 1 of 2: ValueError"
        assert expected in proc.stderr, proc.stderr[-3000:]
    assert "Connection closed by peer" not in proc.stderr


@pytest.mark.parametrize("seeds", [0, 101, 10**9])
def test_control_seeds_outside_its_range_is_refused_by_the_config(seeds):
    with pytest.raises(ValueError, match="control_seeds must be 1 to 100"):
        _config(control_seeds=seeds)
