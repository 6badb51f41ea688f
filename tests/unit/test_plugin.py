"""The pytest plugin, driven through pytester on a tiny model and a tiny photo folder."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

pytest_plugins = ["pytester"]

CONFTEST = r"""
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from xai_checks.data import open_photoset


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.layer1 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU())
        self.layer3 = nn.Sequential(nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU())
        self.layer4 = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 1000)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture(scope="session")
def xai_model():
    return Tiny().eval()


@pytest.fixture(scope="session")
def xai_control_model():
    return None


@pytest.fixture(scope="session")
def xai_photoset(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    wnids = ["n01440764_tench", "n01443537_goldfish", "n01877812_wallaby",
             "n02123045_tabby", "n04037443_racer", "n07747607_orange"]
    for name in wnids:
        pixels = rng.integers(0, 255, size=(40, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{name}.JPEG")
    (root / "n03000134_chainlink_fence.JPEG").write_bytes(b"not a jpeg")
    return open_photoset(root)
"""

TESTS = r"""
import pytest
from xai_checks.claims import Status

@pytest.mark.claim("native-captum-agreement")
def test_agree(claim_verdict):
    assert claim_verdict.status is Status.SUPPORTED

@pytest.mark.claim("depth-localisation-gridpg")
def test_gridpg(claim_verdict):
    assert claim_verdict.status is Status.SUPPORTED

def test_direct(xai_verdict):
    v = xai_verdict("seed-depth-ratio")
    assert v.n == 6
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_claims=TESTS)
    return pytester


def test_verdict_table_json_and_junit(project: pytest.Pytester) -> None:
    junit = project.path / "junit.xml"
    out = project.path / "claims.json"
    result = project.runpytest_subprocess(
        f"--junitxml={junit}", f"--xai-json={out}", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*xai-checks claims*",
            "*claim*verdict*n*p*effect*",
            "*native-captum-agreement*SUPPORTED*",
            "*depth-localisation-gridpg*INCONCLUSIVE*",
            "*1 skipped*",
        ]
    )
    # the skip says why
    assert "mosaics" in result.stdout.str()
    payload = json.loads(out.read_text())
    assert payload["schema"] == "xai-checks/claims"
    assert payload["study"]["photoset"]["n_skipped"] == 1  # the corrupt file, counted
    assert set(payload["verdicts"]) == {
        "native-captum-agreement",
        "depth-localisation-gridpg",
        "seed-depth-ratio",
    }
    props = {p.get("name"): p.get("value") for p in ET.parse(junit).iter("property")}
    assert props["xai:native-captum-agreement:verdict"] == "SUPPORTED"
    assert props["xai:seed-depth-ratio:n"] == "6"


def test_claim_verdict_without_marker_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile("def test_x(claim_verdict):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert "needs @pytest.mark.claim" in result.stdout.str()
    assert result.ret != 0


def test_baseline_round_trip_and_regression(project: pytest.Pytester) -> None:
    baseline = project.path / "baseline.json"
    made = project.runpytest_subprocess(
        f"--xai-baseline={baseline}", "--xai-update-baseline", "-p", "no:cacheprovider"
    )
    made.assert_outcomes(passed=2, skipped=1)
    assert baseline.exists()
    same = project.runpytest_subprocess(f"--xai-baseline={baseline}", "-p", "no:cacheprovider")
    assert same.ret == 0
    same.stdout.fnmatch_lines(["*no regressions*"])
    # A verdict that flips against the baseline fails the run even though every test passed.
    data = json.loads(baseline.read_text())
    data["verdicts"]["native-captum-agreement"]["status"] = "REFUTED"
    baseline.write_text(json.dumps(data))
    flipped = project.runpytest_subprocess(f"--xai-baseline={baseline}", "-p", "no:cacheprovider")
    flipped.assert_outcomes(passed=2, skipped=1)
    assert flipped.ret == 1
    flipped.stdout.fnmatch_lines(["*REGRESSION native-captum-agreement*REFUTED -> SUPPORTED*"])


def test_effect_drift_beyond_tolerance_fails(project: pytest.Pytester) -> None:
    baseline = project.path / "baseline.json"
    project.runpytest_subprocess(f"--xai-baseline={baseline}", "--xai-update-baseline")
    data = json.loads(baseline.read_text())
    primary = data["verdicts"]["seed-depth-ratio"]["tests"]["primary"]
    assert primary["effect"] is not None
    primary["effect"] += 0.5
    baseline.write_text(json.dumps(data))
    result = project.runpytest_subprocess(f"--xai-baseline={baseline}", "--xai-tolerance=0.1")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*REGRESSION seed-depth-ratio: effect*"])


def test_missing_baseline_fails_with_advice(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("--xai-baseline=nope.json")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*does not exist*--xai-update-baseline*"])


def test_options_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["*xai-checks*", "*--xai-data*", "*--xai-baseline*"])
