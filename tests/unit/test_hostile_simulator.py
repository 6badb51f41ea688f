"""The simulator's and the calibration's command lines under careless input: a results.json
that is not the default study's, and run sizes that cannot give a calibration, are exit 2 with
the reason and the fix, before any work; never a traceback, and never a table written from
zero resamples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xai_checks import calibration, simulator


def _fit(path: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> tuple[int, str]:
    out = tmp_path / "fit.json"
    lines: list[str] = []
    code = simulator.main(["fit", str(path), "--out", str(out)], echo=lines.append)
    assert not out.exists() or code == 0
    return code, "\n".join(lines)


@pytest.fixture(scope="module")
def own_model_results() -> dict[str, object]:
    """A valid results.json of a study whose model is the user's (run ``under_test``)."""
    from test_report import make_study

    from xai_checks.claims import evaluate_all
    from xai_checks.report import build_results

    study = make_study(
        models=("under_test", "untrained"), gridpg=None, sanity=False, agreement=False,
        examples=False,
    )  # fmt: skip
    return build_results(study, evaluate_all(study))


@pytest.mark.parametrize(
    "text,message",
    [
        ("{}", "not a results.json that xai-checks wrote"),
        ("[]", "not a results.json that xai-checks wrote"),
        ('{"models": NaN}', "not a results.json that xai-checks wrote"),
    ],
)
def test_a_file_that_is_no_results_json_is_exit_2(tmp_path, capsys, text, message):
    path = tmp_path / "results.json"
    path.write_text(text)
    code, said = _fit(path, capsys, tmp_path)
    assert code == 2 and message in said, said


def test_a_study_of_another_model_is_exit_2_naming_the_runs_and_the_fix(
    tmp_path, capsys, own_model_results
):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(own_model_results))
    code, said = _fit(path, capsys, tmp_path)
    assert code == 2, said
    assert "no model run(s) pretrained" in said and "under_test" in said
    assert "xai-checks study --data imagenet-samples" in said


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--reps", "0"], "--reps: must be at least 1, not 0"),
        (["--reps", "-5"], "--reps: must be at least 1, not -5"),
        (["--n", "30", "-3"], "--n: must be at least 2, not -3"),
        (["--n", "0"], "--n: must be at least 2, not 0"),
        (["--n-boot", "0"], "--n-boot: must be at least 100, not 0"),
        (["--boundary-reps", "x"], "expected a whole number, not 'x'"),
        (["--claims", "nope"], "invalid choice: 'nope'"),
        (["--false-supported-reps", "0"], "--false-supported-reps: must be at least 1, not 0"),
        (["--jobs", "0"], "--jobs: must be at least 1, not 0"),
    ],
)
def test_calibration_sizes_that_cannot_calibrate_are_exit_2_before_any_work(
    tmp_path, capsys, argv, message
):
    with pytest.raises(SystemExit) as info:
        calibration.main([*argv, "--out", str(tmp_path / "cal")])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "cal.json").exists()
