"""The pytest plugin, driven through pytester on a tiny model and a tiny photo folder."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["pytester"]
# in-process runs share the package already imported; xdist runs start processes of their own
pytestmark = pytest.mark.usefixtures("whole_package_imported")

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
    pytester.makepyfile(test_project_claims=TESTS)  # no suite module has this name
    return pytester


def test_verdict_table_json_and_junit(project: pytest.Pytester) -> None:
    junit = project.path / "junit.xml"
    out = project.path / "claims.json"
    result = project.runpytest(f"--junitxml={junit}", f"--xai-json={out}", "-p", "no:cacheprovider")
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
    assert "target photos" in result.stdout.str()
    payload = json.loads(out.read_text())
    assert payload["schema"] == "xai-checks/claims"
    assert payload["study"]["photoset"]["n_skipped"] == 1  # the corrupt file, counted
    # the model actually tested is named (claims.json said "msra" whatever model ran)
    roles = {m["role"]: m for m in payload["models"].values()}
    assert roles["under_test"]["class"] == "Tiny", payload["models"]
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
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert "needs @pytest.mark.claim" in result.stdout.str()
    assert result.ret != 0


def test_baseline_round_trip_and_regression(project: pytest.Pytester) -> None:
    baseline = project.path / "baseline.json"
    made = project.runpytest(
        f"--xai-baseline={baseline}", "--xai-update-baseline", "-p", "no:cacheprovider"
    )
    made.assert_outcomes(passed=2, skipped=1)
    assert baseline.exists()
    same = project.runpytest(f"--xai-baseline={baseline}", "-p", "no:cacheprovider")
    assert same.ret == 0
    same.stdout.fnmatch_lines(["*no regressions*"])
    # A verdict that flips against the baseline fails the run even though every test passed.
    data = json.loads(baseline.read_text())
    data["verdicts"]["native-captum-agreement"]["status"] = "REFUTED"
    baseline.write_text(json.dumps(data))
    flipped = project.runpytest(f"--xai-baseline={baseline}", "-p", "no:cacheprovider")
    flipped.assert_outcomes(passed=2, skipped=1)
    assert flipped.ret == 1
    flipped.stdout.fnmatch_lines(["*REGRESSION native-captum-agreement*REFUTED -> SUPPORTED*"])


def test_effect_drift_beyond_tolerance_fails(project: pytest.Pytester) -> None:
    baseline = project.path / "baseline.json"
    project.runpytest(f"--xai-baseline={baseline}", "--xai-update-baseline")
    data = json.loads(baseline.read_text())
    # the headline effect (the verdict's row, the one with a CI) is what is compared
    row = data["verdicts"]["native-captum-agreement"]["row"]
    assert row["effect"] is not None
    row["effect"] += 0.5
    baseline.write_text(json.dumps(data))
    result = project.runpytest(f"--xai-baseline={baseline}", "--xai-tolerance=0.1")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*REGRESSION native-captum-agreement: effect*"])


def test_missing_baseline_fails_with_advice(project: pytest.Pytester) -> None:
    result = project.runpytest("--xai-baseline=nope.json")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*does not exist*--xai-update-baseline*"])


AGREE = r"""
import pytest
from xai_checks.claims import Status

@pytest.mark.claim("native-captum-agreement")
def test_agree(claim_verdict):
    assert claim_verdict.status is Status.SUPPORTED
"""

AGREE_AGAIN = r"""
import pytest

@pytest.mark.claim("native-captum-agreement")
def test_agree_again(claim_verdict):
    assert claim_verdict.n > 0

@pytest.mark.claim("native-captum-agreement", layers=["layer4"], alpha=0.01)
def test_agree_layer4(claim_verdict):
    assert claim_verdict.claim.layers == ("layer4",)
    assert claim_verdict.claim.alpha == 0.01
"""


@pytest.fixture
def agreement_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """Two test files asking for the same claim (one with overrides): only the agreement
    phase runs, so each run takes seconds."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_a=AGREE, test_b=AGREE_AGAIN)
    return pytester


def _xdist(project: pytest.Pytester, kept: Any, name: str, *args: str) -> pytest.RunResult:
    """A run under -n 2 in processes of its own: kept between runs of the suite (three
    interpreters start for each, which makes it among the suite's slowest)."""
    pytest.importorskip("xdist")
    return kept.run(
        name,
        lambda: project.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", *args),
        root=project.path,
    )


def test_xdist_gathers_every_verdict_and_fails_the_run_on_a_regression(
    agreement_project: pytest.Pytester, kept_measurements: Any
):
    """Under -n 2 the workers share one study, the table is printed, claims.json holds every
    verdict (no worker's write replaces another's) and the baseline is written once; a
    regression against that baseline fails the run (exit 1), as it does without xdist."""
    out = agreement_project.path / "claims.json"
    junit = agreement_project.path / "junit.xml"
    baseline = agreement_project.path / "baseline.json"
    made = _xdist(
        agreement_project,
        kept_measurements,
        "baseline written",
        f"--xai-json={out.name}",
        f"--junitxml={junit.name}",
        f"--xai-baseline={baseline.name}",
        "--xai-update-baseline",
    )
    assert made.ret == 0
    made.assert_outcomes(passed=3)
    made.stdout.fnmatch_lines(["*xai-checks claims*", "*native-captum-agreement*SUPPORTED*"])
    payload = json.loads(out.read_text())
    assert set(payload["verdicts"]) == {
        "native-captum-agreement",
        "native-captum-agreement[alpha=0.01,layers=layer4]",
    }
    # one computation for the whole run (the second study differs: other layers)
    configs = [tuple(s["description"]["config"]["layers"]) for s in payload["studies"]]
    assert sorted(configs) == sorted(set(configs)), configs
    props = [p.get("name") for p in ET.parse(junit).iter("property")]
    assert props.count("xai:native-captum-agreement:verdict") == 3

    data = json.loads(baseline.read_text())
    assert len(data["verdicts"]) == 2
    data["verdicts"]["native-captum-agreement"]["status"] = "REFUTED"
    baseline.write_text(json.dumps(data))
    result = _xdist(
        agreement_project, kept_measurements, "regressed", f"--xai-baseline={baseline.name}"
    )
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        ["*REGRESSION native-captum-agreement*REFUTED -> SUPPORTED*", "*xai-checks baseline*"]
    )


def test_xdist_missing_baseline_fails_the_run(
    agreement_project: pytest.Pytester, kept_measurements: Any
):
    result = _xdist(agreement_project, kept_measurements, "missing", "--xai-baseline=missing.json")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*does not exist*", "*3 passed*1 xai-checks baseline failure*"])


@pytest.mark.parametrize("kind", ["unreadable", "other-settings"])
def test_unusable_baseline_fails_unless_opted_out(agreement_project, kind):
    """An unreadable or incomparable baseline was skipped with a message, and the run passed."""
    baseline = agreement_project.path / "baseline.json"
    if kind == "unreadable":
        baseline.write_text("{ not json")
    else:
        settings = {"data": "photos", "seed": 7}
        study = {"photoset": {"fingerprint": "0123456789abcdef"}}
        baseline.write_text(json.dumps({"settings": settings, "study": study, "verdicts": {}}))
    args = ("-p", "no:cacheprovider", "-k", "test_agree and not layer4")
    failed = agreement_project.runpytest(f"--xai-baseline={baseline}", *args)
    assert failed.ret == 1
    failed.stdout.fnmatch_lines(
        [
            "*unreadable*" if kind == "unreadable" else "*other settings*seed*",
            "*2 passed*1 xai-checks baseline failure*",
        ]
    )
    if kind == "unreadable":
        allowed = agreement_project.runpytest(
            f"--xai-baseline={baseline}", "--xai-baseline-optional", *args
        )
        assert allowed.ret == 0
        allowed.stdout.fnmatch_lines(["*baseline not compared (--xai-baseline-optional)*"])


def test_strict_fails_a_claim_that_lacks_data(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, shared_photos: Path
) -> None:
    """GridPG on 6 noise photos is INCONCLUSIVE for lack of data: a skip, or a failure under
    --xai-strict=data (a CI runner that lost its photos must not go green)."""
    # strict=data also refuses a run whose 'auto' photos fell back to the embedded set; make
    # the shared photos findable from the tmp project, as they are from the repository
    monkeypatch.setenv("XAI_CHECKS_IMAGENET_SAMPLES", str(shared_photos))
    args = ("-p", "no:cacheprovider", "-k", "gridpg")
    lenient = project.runpytest(*args)
    lenient.assert_outcomes(skipped=1)
    strict = project.runpytest("--xai-strict=data", *args)
    strict.assert_outcomes(errors=1)  # the claim_verdict fixture fails: an error, not a skip
    assert strict.ret == 1
    strict.stdout.fnmatch_lines(["*--xai-strict=data: depth-localisation-gridpg*target photos*"])


def test_strict_data_refuses_the_embedded_fallback(pytester: pytest.Pytester, monkeypatch):
    """With 'auto' and no shared photos the claims fell back to 8 embedded photos."""
    monkeypatch.delenv("XAI_CHECKS_IMAGENET_SAMPLES", raising=False)
    monkeypatch.setenv("XAI_CHECKS_CACHE", str(pytester.path / "cache"))
    pytester.makepyfile("def test_x():\n    pass\n")
    if (pytester.path.parent / "shared" / "data" / "imagenet-samples").is_dir():
        pytest.skip("the shared photos are found from here (../shared)")
    result = pytester.runpytest("--xai-strict=data", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "claims ran on the small embedded set" in result.stderr.str()
    lenient = pytester.runpytest("-p", "no:cacheprovider")
    assert lenient.ret == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--xai-alpha=0"], "--xai-alpha"),
        (["--xai-alpha=1.5"], "--xai-alpha"),
        (["--xai-alpha=nan"], "--xai-alpha"),
        (["--xai-alpha=-1"], "--xai-alpha"),
        (["--xai-limit=-5"], "--xai-limit"),
        (["--xai-limit=0"], "--xai-limit"),
        (["--xai-control=bogus"], "--xai-control"),
        (["--xai-device=meta"], "--xai-device"),
        (["--xai-strict=gpu"], "--xai-strict"),
        (["--xai-data=/no/such/folder"], "no such folder"),
        (["--xai-label=walaby"], "wallaby"),
        (["--xai-weights=imagenet-vit"], "unknown weights source"),
    ],
)
def test_bad_plugin_options_are_usage_errors_before_any_model(pytester, args, message):
    """These once ran (or died in a fixture traceback after the models loaded); -5 meant all."""
    pytester.makeconftest(
        "import pytest\n"
        "@pytest.fixture(scope='session')\n"
        "def xai_model():\n"
        "    raise AssertionError('model loaded')\n"
    )
    pytester.makepyfile(AGREE)
    result = pytester.runpytest(*args, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert "model loaded" not in result.stdout.str()


def test_label_absent_from_the_folder_is_a_usage_error(pytester: pytest.Pytester) -> None:
    root = pytester.path / "photos"
    root.mkdir()
    from PIL import Image

    Image.new("RGB", (32, 32)).save(root / "n01440764_tench.JPEG")
    pytester.makepyfile(AGREE)
    result = pytester.runpytest(
        f"--xai-data={root}", "--xai-label=wallaby", "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "no photos of 'wallaby'" in result.stderr.str()


LIMIT_PROBE = """
def test_probe(xai_study):
    print("LIMIT", xai_study.settings.limit)
"""


@pytest.mark.parametrize("data", ["embedded", "auto"])
def test_limit_auto_takes_the_clis_rule(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, data: str, request
) -> None:
    """``--xai-limit auto``: 400 photos where ``--xai-data auto`` finds the ImageNet samples,
    every photo of any other set, as ``xai-checks study --limit auto``."""
    if data == "auto":
        shared = request.getfixturevalue("shared_photos")
        monkeypatch.setenv("XAI_CHECKS_IMAGENET_SAMPLES", str(shared))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_probe=LIMIT_PROBE)
    result = pytester.runpytest(
        "-s", f"--xai-data={data}", "--xai-limit=auto", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*LIMIT {400 if data == 'auto' else None}"])


def test_options_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        ["*xai-checks*", "*--xai-data*", "*--xai-layers*", "*--xai-baseline*", "*--xai-strict*"]
    )


def test_regression_shows_in_the_final_summary_line(project: pytest.Pytester) -> None:
    """The summary line said "1 passed"; the regression was only in an earlier line."""
    baseline = project.path / "baseline.json"
    args = ("-p", "no:cacheprovider", "-k", "agree")
    project.runpytest(f"--xai-baseline={baseline}", "--xai-update-baseline", *args)
    data = json.loads(baseline.read_text())
    data["verdicts"]["native-captum-agreement"]["status"] = "REFUTED"
    baseline.write_text(json.dumps(data))
    result = project.runpytest(f"--xai-baseline={baseline}", *args)
    assert result.ret == 1
    last = [line for line in result.stdout.lines if line.strip()][-1]
    assert "1 passed" in last and "1 xai-checks baseline failure" in last, last


def test_sanity_numbers_have_their_own_heading() -> None:
    """The sanity row's numbers sat under "medians by layer (model under test)"."""
    from types import SimpleNamespace

    from xai_checks.table import verdict_lines

    verdict = SimpleNamespace(
        claim=SimpleNamespace(id="sanity-randomisation"),
        status=SimpleNamespace(value="SUPPORTED"),
        n=8,
        primary={},
        effect=None,
        reasons=["fine"],
        medians={"|spearman rho| with original": {"fc": 0.35, "layer4": 0.15}},
    )
    lines = verdict_lines([verdict])
    assert any("|spearman rho| with original: fc 0.35" in line for line in lines)
    assert not any("medians by layer" in line for line in lines)


HOLM = r"""
import pytest
from xai_checks.claims import Status

# min_n lowered so that the tiny photo folder reaches a p-value in both claims
@pytest.mark.claim("seed-depth-ratio", min_n=5)
def test_seed(claim_verdict):
    assert claim_verdict.multiplicity["method"] == "holm"
    assert claim_verdict.multiplicity["m"] == 2

@pytest.mark.claim("sanity-randomisation", min_n=5)
def test_sanity(claim_verdict):
    assert claim_verdict.multiplicity["method"] == "holm"

@pytest.mark.claim("native-captum-agreement")
def test_agree(claim_verdict):
    assert claim_verdict.multiplicity["method"] == "none"

def test_direct(xai_verdict):
    # asked for only directly: judged alone, and it says so
    v = xai_verdict("seed-depth-ratio", min_n=5, alpha=0.01)
    assert v.multiplicity["method"] == "none" and "directly" in v.multiplicity["note"]
"""


def test_holm_across_the_marked_claims_of_a_run(pytester: pytest.Pytester) -> None:
    """The plugin judged claim by claim and never applied Holm: a run of several claims each
    at alpha reported SUPPORTED verdicts no family-wise correction stood behind."""
    from xai_checks.stats import holm

    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_holm=HOLM)
    out = pytester.path / "claims.json"
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest(
        f"--xai-json={out}", f"--junitxml={junit}", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*Multiplicity: Holm across the 2 claim(s)*"])
    verdicts = json.loads(out.read_text())["verdicts"]
    family = ["seed-depth-ratio[min_n=5]", "sanity-randomisation[min_n=5]"]
    raw = [verdicts[k]["p_value"] for k in family]
    assert all(p is not None for p in raw), raw
    adjusted = [verdicts[k]["multiplicity"]["p_adjusted"] for k in family]
    assert adjusted == pytest.approx([float(p) for p in holm(raw)], rel=1e-12)
    assert verdicts["seed-depth-ratio[alpha=0.01,min_n=5]"]["multiplicity"]["method"] == "none"
    for k in family:  # the table, claims.json and junit show the same row
        assert verdicts[k]["row"]["p_holm"] == verdicts[k]["multiplicity"]["p_adjusted"]
    props = {p.get("name"): p.get("value") for p in ET.parse(junit).iter("property")}
    assert "xai:seed-depth-ratio:p_holm" in props
    assert "xai:seed-depth-ratio:power_statement" in props
    assert "power_statement" in json.dumps(verdicts["native-captum-agreement"]["row"])
    bottom = json.loads(out.read_text())["bottom_line"]
    assert bottom["status"] in {"holds", "does not hold", "undermined", "mixed", "not judged"}


def test_baseline_compares_the_headline_effect_and_reads_older_files() -> None:
    from xai_checks.session import compare_with_baseline

    def verdict(row_effect, primary_effect, with_row=True):
        v = {"status": "SUPPORTED", "tests": {"primary": {"effect": primary_effect}}}
        if with_row:
            v["row"] = {"effect": row_effect}
        return {"verdicts": {"c": v}}

    # both sides have rows: the headline (row) effect moved, the primary test's did not
    assert compare_with_baseline(verdict(0.5, 0.1), verdict(0.1, 0.1), tolerance=0.1)
    assert not compare_with_baseline(verdict(0.1, 0.9), verdict(0.1, 0.1), tolerance=0.1)
    # a baseline written before verdicts had rows: the primary effects are compared
    old = verdict(None, 0.1, with_row=False)
    assert compare_with_baseline(verdict(0.1, 0.5), old, tolerance=0.1)
    assert not compare_with_baseline(verdict(0.9, 0.1), old, tolerance=0.1)


def test_strict_kind_comes_from_reason_codes_not_text():
    """A shortage of photos whose text mentions a 'boxer' is still a shortage of data; the box
    claim's own shortage is one of boxes (it was guessed from the word 'box' in the text)."""
    from xai_checks.claims.base import Reason
    from xai_checks.plugin import lacking

    class V:
        def __init__(self, *reasons: Reason) -> None:
            self.reasons = list(reasons)

    photos = Reason("too-few-photos", "only 3 target photos (4 of class 'boxer')")
    boxes = Reason("too-few-boxes", "the photo set has no bounding boxes")
    assert lacking(V(photos)) == "data"
    assert lacking(V(boxes)) == "boxes"
    assert lacking(V()) == "data"


def _kept_study_project(pytester: pytest.Pytester) -> tuple[pytest.Pytester, Path]:
    """The agreement project on a photo folder that lives across runs (its files keep their
    sizes and times unless the test changes them), with the study cache at its default."""
    photos = pytester.path / "photos"
    photos.mkdir()
    conftest = (
        CONFTEST.replace(
            'root = tmp_path_factory.mktemp("photos")',
            f"root = __import__('pathlib').Path({str(photos)!r})",
        )
        .replace(
            'Image.fromarray(pixels).save(root / f"{name}.JPEG")',
            (
                'path = root / f"{name}.JPEG"\n'
                "        if not path.exists():\n"
                "            Image.fromarray(pixels).save(path)"
            ),
        )
        .replace('(root / "n03000134_chainlink_fence.JPEG").write_bytes(b"not a jpeg")', "pass")
    )
    pytester.makeconftest(conftest)
    pytester.makepyfile(test_a=AGREE)
    return pytester, photos


def test_a_second_run_loads_the_study_until_a_photo_changes(pytester: pytest.Pytester):
    """The study is kept between runs under .xai-checks/studies: an unchanged second run loads
    it and reaches the same verdict; a photo written anew is a different input, so the study
    is computed again; --xai-study-cache none neither reads nor writes it."""
    project, photos = _kept_study_project(pytester)
    first = project.runpytest("-p", "no:cacheprovider", "--xai-json=one.json")
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["*xai-checks: study * done in *"])
    kept = list((project.path / ".xai-checks" / "studies").glob("*.pickle"))
    assert len(kept) == 1

    second = project.runpytest("-p", "no:cacheprovider", "--xai-json=two.json")
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(["*xai-checks: study * loaded from *"])
    one = json.loads((project.path / "one.json").read_text())["verdicts"]
    two = json.loads((project.path / "two.json").read_text())["verdicts"]
    assert one == two

    photo = next(photos.glob("*.JPEG"))
    photo.write_bytes(photo.read_bytes() + b"\0")  # same name, other bytes
    third = project.runpytest("-p", "no:cacheprovider")
    third.assert_outcomes(passed=1)
    third.stdout.fnmatch_lines(["*xai-checks: study * done in *"])
    assert len(list((project.path / ".xai-checks" / "studies").glob("*.pickle"))) == 2

    off = project.runpytest("-p", "no:cacheprovider", "--xai-study-cache=none")
    off.assert_outcomes(passed=1)
    off.stdout.fnmatch_lines(["*xai-checks: study * done in *"])
    assert len(list((project.path / ".xai-checks" / "studies").glob("*.pickle"))) == 2


def test_an_edit_to_the_models_code_computes_the_study_again(pytester: pytest.Pytester):
    """Same class name, same weights, another forward: the kept study answered for other code,
    so the next run computes it again instead of loading it."""
    project, _ = _kept_study_project(pytester)
    project.runpytest("-p", "no:cacheprovider").stdout.fnmatch_lines(["*study * done in *"])
    conftest = project.path / "conftest.py"
    text = conftest.read_text()
    edited = text.replace("self.fc(x.mean(dim=(2, 3)))", "self.fc(x.amax(dim=(2, 3)))")
    assert edited != text
    conftest.write_text(edited)
    again = project.runpytest("-p", "no:cacheprovider")
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines(["*xai-checks: study * done in *"])
    assert len(list((project.path / ".xai-checks" / "studies").glob("*.pickle"))) == 2
