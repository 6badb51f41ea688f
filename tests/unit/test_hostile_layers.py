"""Layers that make no sense are refused once, up front, on every route (``run_study`` in
Python, the CLI, the pytest plugin), before any photo is read: a name given twice, a reversed
order, a 1 x 1 output, a module run twice, a module never run, and too few layers for a depth
claim. Each message names the layers and what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

from xai_checks.data import open_photoset
from xai_checks.study import StudyConfig, StudyUsageError, run_study

pytest_plugins = ["pytester"]

NET = r"""
import torch
from torch import nn


def stage(i, o):
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem, self.block_a, self.block_b = stage(3, 8), stage(8, 8), stage(8, 8)
        self.shared = nn.Conv2d(8, 8, 1)  # run twice in forward
        self.never = nn.Conv2d(8, 8, 1)  # never run
        self.pool = nn.AdaptiveAvgPool2d(1)  # a 1 x 1 output
        self.fc = nn.Linear(8, 1000)

    def forward(self, x):
        x = self.block_b(self.block_a(self.stem(x)))
        x = self.shared(self.shared(x))
        return self.fc(self.pool(x).flatten(1))


def make():
    return Net().eval()
"""

CASES = {
    "duplicate": (["block_a", "block_a"], r"'block_a' given more than once"),
    "reversed": (["block_b", "block_a", "stem"], r"shallow to deep.*stem, block_a, block_b"),
    "1x1": (["stem", "block_a", "pool"], r"'pool' \(1, 8, 1, 1\).*not? output a spatial map"),
    "called-twice": (["stem", "block_a", "shared"], r"'shared' \(2 calls\).*more than once"),
    "never-run": (["stem", "block_a", "never"], r"'never'.*not run by its forward"),
}


def _net() -> nn.Module:
    namespace: dict[str, object] = {}
    exec(compile(NET, "net.py", "exec"), namespace)
    return namespace["make"]()  # type: ignore[operator,no-any-return]


@pytest.fixture(scope="module")
def photos():
    return open_photoset("embedded")


@pytest.mark.parametrize("case", list(CASES))
def test_python_route_refuses_before_any_photo(case, photos, monkeypatch):
    layers, message = CASES[case]
    import xai_checks.study as study

    def no_photos(*args, **kwargs):
        raise AssertionError("a photo was read")

    monkeypatch.setattr(study, "ratio_phase", no_photos)
    config = StudyConfig(layers=tuple(layers), preprocess=StudyConfig().preprocess)
    with pytest.raises(StudyUsageError, match=message):
        run_study(_net(), photos, config=config)


def test_too_few_layers_for_a_depth_claim_names_the_claim(photos, monkeypatch):
    """Two layers for a trend over depth ended in 'values needs at least 3 columns' after the
    whole study had run."""
    import xai_checks.study as study
    from xai_checks.claims import get_claim

    monkeypatch.setattr(study, "ratio_phase", lambda *a, **k: pytest.fail("a photo was read"))
    config = StudyConfig(layers=("block_a", "block_b"))
    claims = [get_claim("seed-depth-ratio"), get_claim("native-captum-agreement")]
    with pytest.raises(StudyUsageError, match=r"claim 'seed-depth-ratio' needs at least 3"):
        run_study(_net(), photos, config=config, claims=claims)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xai_checks", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=600,
    )


@pytest.mark.parametrize("case", ["reversed", "called-twice"])
def test_cli_route_exits_2(case, tmp_path: Path):
    layers, message = CASES[case]
    (tmp_path / "net.py").write_text(NET)
    proc = run_cli(
        "study", "--model", f"{tmp_path / 'net.py'}:make", "--data", "embedded",
        "--layers", ",".join(layers), "--input-size", "64", "--out", str(tmp_path / "r"),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    import re

    assert re.search(message, proc.stderr), proc.stderr
    assert not (tmp_path / "r").exists()


def test_plugin_route_is_a_usage_error(pytester: pytest.Pytester):
    pytester.makepyfile(net=NET)
    pytester.makeconftest(
        "import pytest\nfrom net import make\n\n"
        "@pytest.fixture(scope='session')\ndef xai_model():\n    return make()\n"
    )
    pytester.makepyfile(
        test_c="import pytest\n\n@pytest.mark.claim('seed-depth-ratio')\n"
        "def test_c(claim_verdict):\n    pass\n"
    )
    result = pytester.runpytest_subprocess(
        "--xai-data=embedded", "--xai-layers=block_b,block_a,stem",
        "--xai-input-size=64",
    )  # fmt: skip
    output = "\n".join(result.outlines + result.errlines)
    assert "shallow to deep" in output, output
    assert result.ret != 0
