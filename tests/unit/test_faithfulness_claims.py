"""The faithfulness phase's numbers and the two faithfulness claims, on known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xai_checks.claims import Status, evaluate, get_claim
from xai_checks.phases.faithfulness import MAP_KINDS, FaithfulnessRun, _permuted
from xai_checks.study import ModelRun, StudyConfig, StudyResult

LAYERS = ("layer1", "layer2", "layer3", "layer4")
FRACTIONS = (0.1, 0.5, 0.9)


def _study(gaps: dict[str, np.ndarray]) -> StudyResult:
    """A study whose faithfulness run has these (n, layers) ROAD gaps per map kind (flat
    curves around 0.5, so each curve's area is its height)."""
    n = len(gaps["model"])
    run = FaithfulnessRun(layers=LAYERS, fractions=FRACTIONS, removal="road", kinds=MAP_KINDS)
    run.files = [f"p{i}.JPEG" for i in range(n)]
    run.targets = [0] * n
    for kind, g in gaps.items():
        g3 = np.repeat(np.asarray(g, dtype=float)[..., None], len(FRACTIONS), axis=2)
        run.prob[kind] = {"morf": 0.5 - g3 / 2, "lerf": 0.5 + g3 / 2}
        run.logit[kind] = {"morf": -g3, "lerf": g3}
    study = StudyResult(
        config=StudyConfig(layers=LAYERS),
        photoset={"n_used": n},
        under_test=ModelRun("pretrained", {}, LAYERS),
    )
    study.phase_results["faithfulness"] = run
    return study


def _gaps(rng, n, *, model, permuted, untrained, sd=0.02):
    return {
        kind: np.asarray(level, dtype=float) + sd * rng.standard_normal((n, len(LAYERS)))
        for kind, level in (("model", model), ("permuted", permuted), ("untrained", untrained))
    }


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_the_gap_is_lerf_area_minus_morf_area():
    run = _study({k: np.full((2, 4), v) for k, v in zip(MAP_KINDS, (0.3, 0.1, 0.0), strict=True)})
    got = run.phase_results["faithfulness"]
    np.testing.assert_allclose(got.gap("model"), 0.3, atol=1e-12)
    np.testing.assert_allclose(got.gap("permuted"), 0.1, atol=1e-12)
    assert got.to_dict()["gap"]["model"][0] == pytest.approx([0.3] * 4)


def test_a_permuted_map_keeps_its_values_and_loses_its_places():
    raw = torch.arange(49, dtype=torch.float32).reshape(1, 7, 7)
    permuted = _permuted(raw, (7, 7), None, [123])
    original = _permuted(raw, (7, 7), None, [123])
    assert torch.equal(permuted, original)  # seeded
    # same histogram after the canonical normalisation (min-max of the same values)
    assert torch.allclose(permuted.flatten().sort().values, (raw.flatten() / 48).sort().values)
    assert not torch.allclose(permuted.flatten(), raw.flatten() / 48)


def _logic_only(claim_id: str):
    """The claim with its min_n lowered to the 60 photos these decision tests simulate (the
    min_n rule has its own test)."""
    return get_claim(claim_id).with_(min_n=30)


def test_beyond_random_is_supported_when_every_layer_beats_both_controls(rng):
    study = _study(_gaps(rng, 60, model=0.3, permuted=0.05, untrained=0.1))
    verdict = evaluate(_logic_only("faithfulness-beyond-random"), study)
    assert verdict.status is Status.SUPPORTED, verdict.reasons
    assert verdict.effect_size["estimate"] == pytest.approx(0.2, abs=0.02)


def test_beyond_random_is_refuted_when_one_layer_does_not_beat_a_control(rng):
    model = [0.05, 0.3, 0.3, 0.3]  # layer1's map is no better than the permuted map
    study = _study(_gaps(rng, 60, model=model, permuted=0.05, untrained=0.0))
    verdict = evaluate(_logic_only("faithfulness-beyond-random"), study)
    assert verdict.status is Status.REFUTED
    assert "permuted map's at layer1" in verdict.reasons[-1]


def test_beyond_random_needs_its_min_n(rng):
    claim = get_claim("faithfulness-beyond-random")
    study = _study(_gaps(rng, claim.min_n - 1, model=0.3, permuted=0.0, untrained=0.0))
    verdict = evaluate(claim, study)
    assert verdict.status is Status.INCONCLUSIVE and verdict.insufficient


def test_depth_faithfulness_supported_confounded_refuted(rng):
    claim = _logic_only("depth-faithfulness")
    rising = [0.0, 0.1, 0.2, 0.3]
    flat = [0.1, 0.1, 0.1, 0.1]
    cases = {
        Status.SUPPORTED: dict(model=rising, permuted=flat, untrained=flat),
        Status.CONFOUNDED: dict(model=rising, permuted=flat, untrained=rising),
        Status.REFUTED: dict(model=flat, permuted=flat, untrained=flat),
    }
    for expected, levels in cases.items():
        verdict = evaluate(claim, _study(_gaps(rng, 60, **levels)))
        assert verdict.status is expected, (expected, verdict.reasons)


def test_claims_say_when_the_phase_did_not_run():
    study = StudyResult(
        config=StudyConfig(layers=LAYERS),
        photoset={"n_used": 0},
        under_test=ModelRun("pretrained", {}, LAYERS),
    )
    for claim_id in ("faithfulness-beyond-random", "depth-faithfulness"):
        verdict = evaluate(get_claim(claim_id), study)
        assert verdict.status is Status.INCONCLUSIVE
        assert "did not run" in verdict.reasons[-1]


def test_each_claim_draws_its_own_section(rng):
    study = _study(_gaps(rng, 40, model=0.3, permuted=0.05, untrained=0.1))
    for claim_id, stem in (
        ("faithfulness-beyond-random", "faithfulness_gap_by_map"),
        ("depth-faithfulness", "faithfulness_gap_by_depth"),
    ):
        claim = get_claim(claim_id)
        section = claim.report_section(study, evaluate(claim, study))
        assert section is not None and stem in section.figures


def test_the_phase_draws_its_curves_and_its_json_follows_its_schema(rng):
    import jsonschema

    from xai_checks.phases import get_phase

    study = _study(_gaps(rng, 5, model=0.3, permuted=0.05, untrained=0.1))
    phase = get_phase("faithfulness")
    section = phase.report_section(study)
    assert section is not None and "faithfulness_curves" in section.figures
    jsonschema.validate(phase.to_json(study), phase.schema())


def test_the_phase_samples_enough_photos_to_decide_its_claims():
    """The faithfulness phase's default sample is the largest min_n of the claims that read it,
    so running it with its defaults can reach a verdict on each of them."""
    from xai_checks.claims import registered_claims
    from xai_checks.phases.faithfulness import FaithfulnessPhase

    readers = [c for c in registered_claims() if "faithfulness" in c.needs]
    assert {c.id for c in readers} >= {"faithfulness-beyond-random", "depth-faithfulness"}
    assert FaithfulnessPhase.options["images"] == max(c.min_n for c in readers)
