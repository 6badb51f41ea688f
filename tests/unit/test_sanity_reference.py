"""The sanity claim's empirical reference: |rho| between the maps of two independently
re-initialised copies of the model, which sets each photo's halfway bound (1 + r) / 2."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from test_claims import _study
from test_study import Tiny

from xai_checks.claims import Status, evaluate, get_claim
from xai_checks.data import open_photoset
from xai_checks.study import SanityRun, StudyConfig, run_study

pytestmark = pytest.mark.usefixtures("one_thread")
N = 200


def _sanity(rho: np.ndarray, reference: np.ndarray | None) -> SanityRun:
    return SanityRun(
        layer="layer4",
        steps=["fc", "layer4"],
        rho={"fc": list(rho), "layer4": list(rho)},
        reference=[] if reference is None else list(reference),
    )


def test_the_bound_is_halfway_to_the_measured_reference():
    """|rho| about 0.55: below the halfway bound 0.8 of a reference r = 0.6 by 0.25, above the
    bound 0.5 of r = 0: the same maps read SUPPORTED against the measured reference and
    REFUTED against the assumed one."""
    rng = np.random.default_rng(0)
    rho = rng.uniform(0.5, 0.6, N)
    study = _study(np.zeros((N, 4)))
    study.sanity = _sanity(rho, np.full(N, 0.6))
    verdict = evaluate("sanity-randomisation", study)
    assert verdict.status is Status.SUPPORTED, verdict.summary()
    # the effect is the mean over photos of (1 + r) / 2 - |rho|: the statistic the text names
    assert verdict.effect == pytest.approx(float(np.mean(0.8 - rho)), abs=1e-9)
    assert verdict.tests["primary"]["bound_mean"] == pytest.approx(0.8)
    study.sanity = _sanity(rho, np.zeros(N))
    assert evaluate("sanity-randomisation", study).status is Status.REFUTED


def test_the_hypothesis_and_the_statistic_both_say_mean():
    claim = get_claim("sanity-randomisation")
    study = _study(np.zeros((N, 4)))
    study.sanity = _sanity(np.full(N, 0.2), np.full(N, 0.1))
    verdict = evaluate(claim, study)
    assert "mean over photos" in verdict.hypothesis and "median" not in verdict.hypothesis
    assert "(1 + r) / 2" in verdict.hypothesis
    assert verdict.tests["primary"]["method"].startswith("mean |Spearman rho|")
    assert list(verdict.medians) == ["mean |spearman rho| with original"]


def test_a_constant_reference_map_counts_as_r_zero():
    """A re-initialised copy's map is often constant (rho undefined): that photo keeps its
    vote with r = 0 (no shared rank order), and the count is reported."""
    reference = np.full(N, 0.6)
    reference[: N // 2] = np.nan
    rho = np.full(N, 0.3) + np.linspace(0.0, 0.05, N)
    study = _study(np.zeros((N, 4)))
    study.sanity = _sanity(rho, reference)
    verdict = evaluate("sanity-randomisation", study)
    assert verdict.n == N
    assert verdict.tests["primary"]["reference_constant_maps"] == N // 2
    bound = np.where(np.isnan(reference), 0.5, 0.8)
    assert verdict.effect == pytest.approx(float(np.mean(bound - rho)), abs=1e-9)


def test_a_study_without_the_reference_uses_zero_and_says_so():
    study = _study(np.zeros((N, 4)))
    study.sanity = _sanity(np.full(N, 0.2) + np.linspace(0, 0.05, N), None)
    verdict = evaluate("sanity-randomisation", study)
    assert verdict.status is Status.SUPPORTED
    assert verdict.tests["primary"]["bound_mean"] == 0.5
    assert any(r.code == "no-reference" for r in verdict.reasons)


def test_the_sanity_phase_measures_the_reference_on_every_photo(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    rng = np.random.default_rng(0)
    for k in range(4):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            root / f"n01443537_goldfish_{k}.JPEG"
        )
    config = StudyConfig(batch_size=4, phases=("sanity",), sanity_images=4)
    study = run_study(Tiny(0), open_photoset(root, layout="flat"), controls={}, config=config)
    assert study.sanity is not None
    ref = np.asarray(study.sanity.reference)
    assert ref.shape == (4,)
    assert np.all(np.isnan(ref) | (np.abs(ref) <= 1.0))
    again = run_study(Tiny(0), open_photoset(root, layout="flat"), controls={}, config=config)
    assert again.sanity is not None
    np.testing.assert_array_equal(again.sanity.reference, study.sanity.reference)  # seeded
