"""The pytest route for a user's own model, stated in one conftest.py: ``xai_preprocess``
carries the input size and normalisation, ``--xai-target`` picks the explained class like the
CLI's ``--target``, and ``register_claim`` adds a claim without packaging it.

The model is the digits CNN of test_own_model (trained there on scikit-learn's real
handwritten digits, 64 px, mean/std 0.5); only the seed-depth-ratio phases run (one marked
claim), on 20 of the 100 held-out photos.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_own_model import NAMES, SIZE, project  # noqa: F401  (fixture; tests/unit is on sys.path)

from xai_checks.claims import Claim, get_claim, register_claim, registered_claims
from xai_checks.claims.registry import _FROM_CODE, ClaimRegistrationError
from xai_checks.data.classes import Preprocess, as_preprocess

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.usefixtures("one_thread")

#: the model and its preprocessing, in one place
CONFTEST = f"""
import pytest
from mynet import trained_cnn
@pytest.fixture(scope="session")
def xai_model():
    return trained_cnn()
@pytest.fixture(scope="session")
def xai_preprocess():
    return {{"input_size": {SIZE}, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}}
"""

#: a claim test that also records what the study ran with
STUDY_TEST = """
import json, pytest

@pytest.mark.claim("seed-depth-ratio")
def test_study(xai_study):
    study = xai_study.result()
    print("STUDY", json.dumps({
        "preprocess": study.config.preprocess.to_dict(),
        "target": study.config.target,
        "targets": sorted({r["target"] for r in study.under_test.records}),
        "accuracy": study.under_test.accuracy,
        "n": len(study.under_test.records),
    }))
"""

OPTIONS = ["--xai-data=photos", "--xai-classes=classes.txt", "--xai-limit=20"]


def _user_project(pytester: pytest.Pytester, project: Path, conftest: str = CONFTEST) -> None:  # noqa: F811
    for name in ("mynet.py", "digits.pt", "classes.txt"):
        (pytester.path / name).write_bytes((project / name).read_bytes())
    (pytester.path / "photos").symlink_to(project / "photos")
    pytester.makeconftest(conftest)
    pytester.syspathinsert()


def _study_line(result: pytest.RunResult) -> dict:
    lines = [ln for ln in result.stdout.lines if ln.startswith("STUDY ")]
    assert len(lines) == 1, result.stdout.str()[-3000:]
    return json.loads(lines[0][len("STUDY ") :])


def test_xai_preprocess_fixture_sets_the_studys_input(pytester, project):  # noqa: F811
    _user_project(pytester, project)
    assert len(CONFTEST.strip().splitlines()) <= 10
    pytester.makepyfile(test_user=STUDY_TEST)
    result = pytester.runpytest("-s", "-p", "no:cacheprovider", *OPTIONS)
    result.assert_outcomes(passed=1)
    study = _study_line(result)
    assert study["preprocess"] == {
        "input_size": SIZE,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "transform": None,
    }
    assert study["target"] == "true"
    # the CNN scored 0.96-0.98 on the held-out photos at its own preprocessing over eight
    # training seeds (test_own_model): 0.9 on these 20 allows two errors
    assert study["accuracy"] >= 0.9


def test_xai_target_names_a_class_of_the_users_class_list(pytester, project):  # noqa: F811
    _user_project(pytester, project)
    pytester.makepyfile(test_user=STUDY_TEST)
    result = pytester.runpytest("-s", "-p", "no:cacheprovider", "--xai-target=three", *OPTIONS)
    result.assert_outcomes(passed=1)
    study = _study_line(result)
    assert study["target"] == NAMES.index("three")
    assert study["targets"] == [NAMES.index("three")]  # every photo explained as a three


def test_xai_target_predicted_and_index(pytester, project):  # noqa: F811
    _user_project(pytester, project)
    pytester.makepyfile(test_user=STUDY_TEST)
    result = pytester.runpytest("-s", "-p", "no:cacheprovider", "--xai-target=7", *OPTIONS)
    result.assert_outcomes(passed=1)
    assert _study_line(result)["targets"] == [7]


def test_xai_target_unknown_class_is_a_usage_error_before_any_model(pytester, project):  # noqa: F811
    _user_project(pytester, project)
    pytester.makepyfile(test_user=STUDY_TEST)
    result = pytester.runpytest("-p", "no:cacheprovider", "--xai-target=eleven", *OPTIONS)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--xai-target 'eleven'" in result.stderr.str()
    assert "classes.txt" in result.stderr.str()


def test_target_option_parses_the_same_in_cli_and_plugin():
    from xai_checks.options import option

    row = option("target")
    assert row.cli == "--target" and row.plugin == "--xai-target"
    assert row.type is not None
    assert row.type("predicted") == "predicted" and row.type("12") == 12
    assert row.type("wallaby") == "wallaby"  # a name: resolved against the class list later
    with pytest.raises(Exception, match=">= 0"):
        row.type("-3")


def test_as_preprocess_forms():
    assert as_preprocess(Preprocess(input_size=32)) == Preprocess(input_size=32)
    assert as_preprocess({"input_size": 32, "mean": [0.5], "std": [0.25]}) == Preprocess(
        input_size=32, mean=(0.5,), std=(0.25,)
    )

    def transform(image):  # a callable: used as is
        raise AssertionError("not called here")

    made = as_preprocess(transform)
    assert made.build() is transform
    assert made.to_dict()["transform"].endswith("transform")
    with pytest.raises(ValueError, match="unknown preprocessing field"):
        as_preprocess({"size": 32})
    with pytest.raises(ValueError, match="expected a Preprocess"):
        as_preprocess(64)


# --------------------------------------------------------------------------- register_claim

#: a claim of the user's, registered in the conftest beside the model (no packaging)
CLAIM_CONFTEST = (
    CONFTEST
    + """
from typing import ClassVar
from xai_checks.claims import Claim, Status, register_claim
from xai_checks.claims.base import under_test

class DeepestLayerNotEmpty(Claim):
    id: ClassVar[str] = "deepest-layer-not-empty"
    title: ClassVar[str] = "Some pixel of the deepest layer's map is high"
    metric: ClassVar[str] = "ratio"
    needs: ClassVar[tuple[str, ...]] = ("ratio",)

    def evaluate(self, study):
        deepest = study.config.layers[-1]
        values = [r["ratio"][deepest] for r in under_test(study).records]
        verdict = self.verdict(study, n=len(values))
        verdict.status = Status.SUPPORTED if min(values) > 0 else Status.REFUTED
        return verdict

register_claim(DeepestLayerNotEmpty)
"""
)

CLAIM_TEST = """
import pytest

@pytest.mark.claim("deepest-layer-not-empty")
def test_mine(claim_verdict):
    verdict = claim_verdict
    print("MINE", verdict.claim.id, verdict.status.value, verdict.n)
"""


def test_register_claim_from_a_conftest_serves_the_marker(pytester, project):  # noqa: F811
    _user_project(pytester, project, CLAIM_CONFTEST)
    pytester.makepyfile(test_user=CLAIM_TEST)
    result = pytester.runpytest("-s", "-p", "no:cacheprovider", *OPTIONS)
    result.assert_outcomes(passed=1)
    lines = [ln for ln in result.stdout.lines if ln.startswith("MINE ")]
    assert len(lines) == 1
    _, claim_id, status, n = lines[0].split()
    assert claim_id == "deepest-layer-not-empty"
    assert status in ("SUPPORTED", "REFUTED")
    assert int(n) == 20


class _Mine(Claim):
    id = "test-registry-mine"
    title = "a claim registered from code"
    needs = ("ratio",)


class _Impostor(Claim):
    id = "seed-depth-ratio"
    title = "a second claim with a built-in's id"
    needs = ("ratio",)


def test_register_claim_api():
    try:
        made = register_claim(_Mine)
        assert isinstance(made, _Mine)
        assert get_claim("test-registry-mine") is made
        assert registered_claims()[-1] is made  # after the built-ins
        register_claim(_Mine)  # a conftest imported twice: no change, no error
        assert [c.id for c in registered_claims()].count("test-registry-mine") == 1
        with pytest.raises(ClaimRegistrationError, match="already registered"):
            register_claim(_Impostor)
        with pytest.raises(ClaimRegistrationError, match="not a Claim"):
            register_claim(object)  # type: ignore[arg-type]
    finally:
        _FROM_CODE.pop("test-registry-mine", None)


def test_cli_target_unknown_name_is_exit_2_before_any_model(monkeypatch, tmp_path, capsys):
    """The CLI's --target goes through the same row check as --xai-target."""
    import xai_checks.models
    import xai_checks.study
    from xai_checks.cli import main

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr(xai_checks.models, "load_resnet50", refuse)
    monkeypatch.setattr(xai_checks.study, "run_study", refuse)
    code = main(["study", "--target", "walaby", "--data", "embedded", "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "--target 'walaby'" in err and "wallaby" in err and "Traceback" not in err
