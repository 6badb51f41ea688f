"""Verdict rules on synthetic study numbers whose right verdict is known by construction."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xai_checks.claims import (
    BUILTIN_CLAIMS,
    Status,
    evaluate,
    evaluate_all,
    get_claim,
    registered_claims,
)
from xai_checks.study import GridPGRun, ModelRun, SanityRun, StudyConfig, StudyResult

LAYERS = ("layer1", "layer2", "layer3", "layer4")
#: photos in the synthetic studies: at least every built-in claim's min_n
N = 100


def _run(
    name: str, ratio: np.ndarray, pooled: np.ndarray | None = None, source: str = "msra"
) -> ModelRun:
    pooled = ratio if pooled is None else pooled
    run = ModelRun(name, {"source": source}, LAYERS)
    for i in range(len(ratio)):
        run.records.append(
            {
                "file": f"img{i}.JPEG",
                "label": i % 1000,
                "correct": True,
                "confidence": 0.99,
                "ratio": dict(zip(LAYERS, map(float, ratio[i]), strict=True)),
                "ratio_pooled": dict(zip(LAYERS, map(float, pooled[i]), strict=True)),
                "sweep": {layer: [0.0] for layer in LAYERS},
            }
        )
    return run


def _rising(n: int, rng: np.random.Generator, step: float = 0.1) -> np.ndarray:
    return np.arange(4) * step + rng.uniform(0, 0.02, size=(n, 4))


def _flat(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 0.1, size=(n, 4))


def _study(
    main: np.ndarray, control: np.ndarray | None = None, pooled: np.ndarray | None = None
) -> StudyResult:
    controls = {}
    if control is not None:
        controls["untrained"] = _run("untrained", control, source="random")
    return StudyResult(
        config=StudyConfig(),
        photoset={"name": "synthetic", "n_used": len(main)},
        under_test=_run("pretrained", main, pooled),
        controls=controls,
    )


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_seed_claim_supported_when_only_the_trained_model_rises(rng):
    study = _study(_rising(N, rng), control=_flat(N, rng))
    verdict = evaluate("seed-depth-ratio", study)
    assert verdict.status is Status.SUPPORTED, verdict.summary()
    assert verdict.tests["seed"]["pvalue"] < 0.05 and verdict.tests["seed"]["passes"]
    assert verdict.controls["untrained"]["explains_effect"] is False
    assert verdict.controls["pooled"]["explains_effect"] is False
    # every verdict carries its effect with a CI, its n of photos and a power statement
    row = verdict.row()
    assert row["n"] == N and row["n_unit"] == "photos"
    assert row["ci_low"] <= row["effect"] <= row["ci_high"]
    assert (
        row["sesoi"] == get_claim("seed-depth-ratio").sesoi
        and row["mde"] > 0
        and "80% power" in row["power_statement"]
    )


def test_seed_claim_confounded_when_the_untrained_control_rises_as_much(rng):
    study = _study(_rising(N, rng), control=_rising(N, rng))
    verdict = evaluate("seed-depth-ratio", study)
    assert verdict.status is Status.CONFOUNDED, verdict.summary()
    assert any(r.code == "control-explains" for r in verdict.reasons)
    # the seed's own test still passes, and stays visible as the seed ran it
    assert verdict.tests["seed"]["passes"] and verdict.tests["seed"]["method"] == "kruskal-wallis"


def test_a_small_control_effect_does_not_confound_a_large_one_at_large_n(rng):
    """A control that is significant but small (any artefact is, at large n) does not confound
    a large effect: judged by effect, the claim is SUPPORTED."""
    n = 1000
    main = _rising(n, rng, step=0.1) + rng.normal(0, 0.05, (n, 4))
    control = _rising(n, rng, step=0.005) + rng.normal(0, 0.05, (n, 4))  # small but real
    verdict = evaluate("seed-depth-ratio", _study(main, control=control))
    assert verdict.controls["untrained"]["passes"], "the control's own test is significant"
    assert verdict.status is Status.SUPPORTED, verdict.summary()


def test_seed_claim_confounded_when_pooling_removes_the_effect(rng):
    study = _study(_rising(N, rng), control=_flat(N, rng), pooled=_flat(N, rng))
    verdict = evaluate("seed-depth-ratio", study)
    assert verdict.status is Status.CONFOUNDED
    assert any(r.code == "pooling-explains" and "artefact" in r for r in verdict.reasons)
    share = verdict.controls["pooled"]["share_surviving"]
    assert share["ci_low"] <= share["estimate"] <= share["ci_high"] and share["estimate"] < 0.2


def test_seed_claim_refuted_without_an_effect(rng):
    verdict = evaluate("seed-depth-ratio", _study(_flat(N, rng), control=_flat(N, rng)))
    assert verdict.status is Status.REFUTED, verdict.summary()
    assert verdict.reasons[-1].code == "no-effect"


def test_seed_claim_refuted_when_medians_fall(rng):
    falling = _rising(N, rng)[:, ::-1].copy()
    verdict = evaluate("seed-depth-ratio", _study(falling, control=_flat(N, rng)))
    assert verdict.status is Status.REFUTED
    assert not verdict.tests["seed"]["passes"]


def test_seed_claim_inconclusive_with_too_few_images(rng):
    verdict = evaluate("seed-depth-ratio", _study(_rising(4, rng), control=_flat(4, rng)))
    assert verdict.status is Status.INCONCLUSIVE
    assert verdict.insufficient
    assert verdict.n == 4


def test_alpha_is_honoured(rng):
    main = _rising(N, rng, step=0.012) + rng.normal(0, 0.04, (N, 4))  # p about 1e-6
    study = _study(main, control=_flat(N, rng))
    loose = evaluate(get_claim("seed-depth-ratio").with_(alpha=0.05), study)
    strict = evaluate(get_claim("seed-depth-ratio").with_(alpha=1e-12), study)
    assert loose.status is Status.SUPPORTED, loose.summary()
    assert strict.status is Status.INCONCLUSIVE and strict.p_value > 1e-12


def _grid_study(
    main: np.ndarray, control: np.ndarray, targets: list[str] | None = None
) -> StudyResult:
    study = _study(np.zeros((len(main), 4)))
    study.controls["untrained"] = _run("untrained", np.zeros((len(main), 4)), source="random")
    targets = targets or [f"target{i}.JPEG" for i in range(len(main))]
    specs = [
        {"files": [t, "a.JPEG", "b.JPEG", "c.JPEG"], "cell": 0, "labels": [0, 1, 2, 3]}
        for t in targets
    ]
    study.gridpg = GridPGRun(
        layers=LAYERS, specs=specs, scores={"pretrained": main, "untrained": control}
    )
    return study


def test_gridpg_supported_confounded_and_refuted(rng):
    rising = np.clip(0.25 + _rising(N, rng, step=0.15), 0, 1)
    chance = rng.uniform(0.2, 0.3, size=(N, 4))
    claim = "depth-localisation-gridpg"
    assert evaluate(claim, _grid_study(rising, chance)).status is Status.SUPPORTED
    # a control that localises as well (per-photo noise: identical maps would give all-equal
    # differences, which read unclear)
    twin = rising + rng.normal(0, 0.01, rising.shape)
    assert evaluate(claim, _grid_study(rising, twin)).status is Status.CONFOUNDED
    assert evaluate(claim, _grid_study(chance, chance)).status is Status.REFUTED
    below = rising - 0.6  # rises, but layer4 below chance
    verdict = evaluate(claim, _grid_study(below, chance))
    assert verdict.status is Status.REFUTED and verdict.reasons[-1].code == "not-above-baseline"


def test_a_control_that_explains_an_established_rise_decides_first(rng):
    """Under a confound the rise is established and the control has it too, while the last
    layer's margin over chance is still unclear at n = 100. That is CONFOUNDED (the control
    explains the rise), not INCONCLUSIVE: the control decides before the unclear margin."""
    n = 100
    x = np.linspace(0.0, 1.0, 4)
    level = 0.15 + 0.3 * rng.standard_normal(n)  # last layer 0.35 +- 0.3: unclear vs 0.25 + 0.1
    main = level[:, None] + (0.2 + 0.02 * rng.standard_normal(n))[:, None] * x
    control = 0.25 + (0.2 + 0.02 * rng.standard_normal(n))[:, None] * x
    verdict = evaluate("depth-localisation-gridpg", _grid_study(main, control))
    above = verdict.tests["last_layer_above_chance"]
    assert above["decision"] == "unclear", above  # the margin over chance is undecided ...
    assert verdict.controls["untrained"]["effect"]["decision"] == "absent"
    assert verdict.status is Status.CONFOUNDED, verdict.summary()  # ... the control decides
    assert [r.code for r in verdict.reasons][-1] == "control-explains"


def test_gridpg_n_counts_distinct_target_photos(rng):
    """One photo is one vote: mosaics that repeat a target photo are not counted again."""
    rising = np.clip(0.25 + _rising(N, rng, step=0.15), 0, 1)
    targets = [f"t{i % 50}.JPEG" for i in range(N)]  # N mosaics, 50 distinct targets
    verdict = evaluate("depth-localisation-gridpg", _grid_study(rising, rising, targets))
    assert verdict.n == 50 == len(set(targets))
    assert any(r.code == "repeated-targets" for r in verdict.reasons)


def test_gridpg_without_mosaics_is_insufficient():
    study = _grid_study(np.empty((0, 4)), np.empty((0, 4)))
    verdict = evaluate("depth-localisation-gridpg", study)
    assert verdict.status is Status.INCONCLUSIVE and verdict.insufficient


def test_sanity_verdicts(rng):
    study = _study(np.zeros((N, 4)))
    low = rng.uniform(-0.3, 0.3, N)
    study.sanity = SanityRun(
        layer="layer4", steps=["fc", "layer4"], rho={"fc": list(low), "layer4": list(low / 2)}
    )
    verdict = evaluate("sanity-randomisation", study)
    assert verdict.status is Status.SUPPORTED, verdict.summary()
    assert verdict.n == N and verdict.effect_size["ci_low"] <= verdict.effect
    study.sanity.rho["layer4"] = list(rng.uniform(0.7, 0.95, N))
    verdict = evaluate("sanity-randomisation", study)
    assert verdict.status is Status.REFUTED and "layer4" in verdict.reasons[-1]
    # |rho| is what counts: strongly negative correlation is still similarity
    study.sanity.rho["layer4"] = [-x for x in study.sanity.rho["layer4"]]
    assert evaluate("sanity-randomisation", study).status is Status.REFUTED


def test_agreement_verdicts():
    study = _study(np.zeros((8, 4)))
    study.agreement = dict.fromkeys(LAYERS, 5e-7)
    assert evaluate("native-captum-agreement", study).status is Status.SUPPORTED
    study.agreement["layer2"] = 3e-5
    assert evaluate("native-captum-agreement", study).status is Status.REFUTED


def test_every_builtin_claim_evaluates_and_serialises(rng):
    study = _grid_study(rng.uniform(0, 1, (N, 4)), rng.uniform(0, 1, (N, 4)))
    study.sanity = SanityRun(layer="layer4", steps=["fc"], rho={"fc": [0.1, 0.2, float("nan")]})
    study.agreement = dict.fromkeys(LAYERS, 0.0)
    verdicts = evaluate_all(study)
    # every registered claim, the entry-point-only ones (the faithfulness claims) after the
    # built-ins; those read a phase this study did not run and say so
    assert [v.claim.id for v in verdicts] == [c.id for c in registered_claims()]
    assert [v.claim.id for v in verdicts][: len(BUILTIN_CLAIMS)] == [c.id for c in BUILTIN_CLAIMS]
    for v in verdicts:
        text = json.dumps(v.to_dict(), allow_nan=False)  # NaN must have become null
        assert json.loads(text)["status"] == v.status.value


def test_unknown_claim_lists_the_builtin_ones():
    with pytest.raises(KeyError, match="seed-depth-ratio"):
        get_claim("no-such-claim")


def _box_study(main: np.ndarray, control: np.ndarray, area: float = 0.2) -> StudyResult:
    study = _study(np.zeros((len(main), 4)), control=np.zeros((len(main), 4)))
    for name, values in (("pretrained", main), ("untrained", control)):
        for record, row in zip(study.runs[name].records, values, strict=True):
            record["box_mass"] = dict(zip(LAYERS, map(float, row), strict=True))
            record["box_area"] = area
    return study


def test_box_localisation_verdicts(rng):
    rising = np.clip(0.2 + _rising(N, rng, step=0.15), 0, 1)
    at_area = rng.uniform(0.15, 0.25, size=(N, 4))
    claim = "depth-localisation-boxes"
    assert evaluate(claim, _box_study(rising, at_area)).status is Status.SUPPORTED
    twin = rising + rng.normal(0, 0.01, rising.shape)  # identical maps: all-equal, unclear
    assert evaluate(claim, _box_study(rising, twin)).status is Status.CONFOUNDED
    assert evaluate(claim, _box_study(at_area, at_area)).status is Status.REFUTED
    # rises with depth, but layer4 holds no more mass than a uniform map would (area 0.9)
    verdict = evaluate(claim, _box_study(rising, at_area, area=0.9))
    assert verdict.status is Status.REFUTED and "area share" in verdict.reasons[-1]
    # one photo, one vote: a photo listed twice is counted once
    study = _box_study(rising, at_area)
    for run in study.runs.values():
        run.records[1]["file"] = run.records[0]["file"]
    assert evaluate(claim, study).n == N - 1


def test_box_claim_without_boxes_is_insufficient(rng):
    verdict = evaluate("depth-localisation-boxes", _study(_rising(20, rng)))
    assert verdict.status is Status.INCONCLUSIVE and verdict.insufficient
    assert "no bounding boxes" in verdict.reasons[0]


# --------------------------------------------------------------------------- claims as classes


def test_every_declared_field_is_read_and_unknown_ones_are_refused(rng):
    with pytest.raises(TypeError, match="no field"):
        get_claim("seed-depth-ratio").with_(treshold=0.9)  # typo: refused, not ignored
    study = _study(_rising(N, rng), control=_flat(N, rng))
    # paired_check: None drops the paired test, "friedman" swaps it in
    none = evaluate(get_claim("seed-depth-ratio").with_(paired_check=None), study)
    assert "paired_check" not in none.tests
    fried = evaluate(get_claim("seed-depth-ratio").with_(paired_check="friedman"), study)
    assert fried.tests["paired_check"]["method"] == "friedman"
    # localisation controls: without a declared control, none is compared
    rising = np.clip(0.25 + _rising(N, rng, step=0.15), 0, 1)
    bare = evaluate(
        get_claim("depth-localisation-gridpg").with_(controls=()), _grid_study(rising, rising)
    )
    assert "untrained" not in bare.controls and bare.status is Status.SUPPORTED


def test_threshold_is_read_from_the_study_and_a_mismatch_is_not_judged(rng):
    study = _study(_rising(N, rng), control=_flat(N, rng))
    study.config = StudyConfig(threshold=0.7)
    verdict = evaluate("seed-depth-ratio", study)
    assert "above 0.7 " in verdict.hypothesis and "0.85" not in verdict.hypothesis
    assert verdict.to_dict()["claim"]["hypothesis"] == verdict.hypothesis
    other = evaluate(get_claim("seed-depth-ratio").with_(threshold=0.85), study)
    assert other.status is Status.INCONCLUSIVE
    assert other.reasons[0].code == "threshold-mismatch"


def test_claim_text_names_the_method_the_study_used(rng):
    study = _study(_rising(N, rng), control=_flat(N, rng))
    object.__setattr__(study.config, "method", "layercam")
    for claim in BUILTIN_CLAIMS:
        text = claim.bind(study).hypothesis_for(study)
        assert "Grad-CAM" not in text and "ResNet" not in text, (claim.id, text)
    assert "LayerCAM" in evaluate("seed-depth-ratio", study).hypothesis


def test_phases_for_is_the_union_of_the_claims_needs():
    from xai_checks.claims import phases_for

    # the agreement phase reads the ratio phase's photos, so it brings it along
    assert phases_for(["native-captum-agreement"]) == ("ratio", "agreement")
    assert phases_for(["seed-depth-ratio", "sanity-randomisation"]) == ("ratio", "sanity")
    assert set(phases_for(BUILTIN_CLAIMS)) == {"ratio", "gridpg", "sanity", "agreement"}


def test_builtin_entry_points_in_pyproject_match_the_registry():
    import tomllib
    from pathlib import Path

    from xai_checks.claims.registry import BUILTIN_ENTRY_POINTS

    pyproject = Path(__file__).parents[2] / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text())["project"]["entry-points"]["xai_checks.claims"]
    # claims registered only as entry points (each with its phase) come after the built-ins
    assert {k: declared[k] for k in BUILTIN_ENTRY_POINTS} == BUILTIN_ENTRY_POINTS
    assert [c.id for c in BUILTIN_CLAIMS] == list(BUILTIN_ENTRY_POINTS)


THIRD_PARTY = """
from typing import ClassVar
from xai_checks.claims import Claim, Status
from xai_checks.claims.base import under_test


class TopLayerAboveHalf(Claim):
    id: ClassVar[str] = "top-layer-above-half"
    title: ClassVar[str] = "The deepest layer's ratio median is above one half"
    metric: ClassVar[str] = "ratio"
    needs: ClassVar[tuple[str, ...]] = ("ratio",)

    def evaluate(self, study):
        run = under_test(study)
        values = sorted(r["ratio"][self.layers[-1]] for r in run.records)
        verdict = self.verdict(study, len(values))
        median = values[len(values) // 2]
        verdict.status = Status.SUPPORTED if median > 0.5 else Status.REFUTED
        verdict.add("median", f"median {median:.2f}")
        return verdict


class WrongId(TopLayerAboveHalf):
    id: ClassVar[str] = "not-the-entry-point-name"
"""


def _install_dist(root, entry_points: str) -> None:
    """A distribution on sys.path whose metadata registers claims (what `pip install` leaves)."""
    (root / "acme_claims.py").write_text(THIRD_PARTY)
    info = root / "acme_claims-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-claims\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


def test_a_third_party_claim_registers_through_the_entry_point_group(tmp_path, monkeypatch, rng):
    from xai_checks.claims import registered_claims

    _install_dist(
        tmp_path,
        "[xai_checks.claims]\ntop-layer-above-half = acme_claims:TopLayerAboveHalf\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        ids = [c.id for c in registered_claims(refresh=True)]
        assert ids[: len(BUILTIN_CLAIMS)] == [c.id for c in BUILTIN_CLAIMS]
        assert ids[-1] == "top-layer-above-half"
        study = _study(np.clip(_rising(N, rng, step=0.3), 0, 1))
        verdict = evaluate("top-layer-above-half", study)
        assert verdict.status is Status.SUPPORTED and verdict.claim.layers == LAYERS
        assert [v.claim.id for v in evaluate_all(study)][-1] == "top-layer-above-half"
    finally:
        monkeypatch.undo()
        registered_claims(refresh=True)


def test_an_entry_point_whose_name_is_not_the_claim_id_is_an_error(tmp_path, monkeypatch):
    from xai_checks.claims import registered_claims

    _install_dist(tmp_path, "[xai_checks.claims]\nsome-claim = acme_claims:WrongId\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(TypeError, match="must equal the claim's id"):
            registered_claims(refresh=True)
    finally:
        monkeypatch.undo()
        registered_claims(refresh=True)


def test_report_section_carries_the_verdict_row(rng):
    from xai_checks.report.sections import ReportSection, default_claim_section

    study = _study(_rising(N, rng), control=_flat(N, rng))
    claim = get_claim("seed-depth-ratio")
    verdict = evaluate(claim, study)
    assert claim.report_section(study, verdict) is None  # the report supplies the section
    section = default_claim_section(claim, study, verdict)
    assert isinstance(section, ReportSection) and section.id == "seed-depth-ratio"
    assert section.context["row"]["status"] == verdict.status.value
    assert section.context["hypothesis"] == verdict.hypothesis


def _verdict(claim_id: str, status: Status, p: float | None):
    from xai_checks.claims import Verdict

    claim = get_claim(claim_id).with_(layers=LAYERS)
    return Verdict(claim, status, [], 100, p_value=p)


def test_holm_across_the_claims_of_a_run():
    from xai_checks.claims import apply_holm

    # each significant alone at 0.05; together, Holm's adjusted p is 0.06 for both
    a = _verdict("seed-depth-ratio", Status.SUPPORTED, 0.03)
    b = _verdict("depth-localisation-gridpg", Status.SUPPORTED, 0.04)
    c = _verdict("native-captum-agreement", Status.SUPPORTED, None)  # exact bound: no p
    apply_holm([a, b, c])
    assert a.status is b.status is Status.INCONCLUSIVE
    assert a.multiplicity["p_adjusted"] == pytest.approx(0.06)
    assert a.reasons[-1].code == "holm" and a.multiplicity["m"] == 2
    assert c.status is Status.SUPPORTED and c.multiplicity["method"] == "none"


def test_bottom_line_connects_a_supported_depth_claim_with_a_failed_sanity_check():
    from xai_checks.claims import bottom_line

    grid = _verdict("depth-localisation-gridpg", Status.SUPPORTED, 1e-9)
    sanity = _verdict("sanity-randomisation", Status.REFUTED, 0.5)
    line = bottom_line([grid, sanity])
    assert line["status"] == "undermined"
    assert any("sanity" in p and "learned" in p for p in line["points"])
    seed = _verdict("seed-depth-ratio", Status.CONFOUNDED, 1e-9)
    ok_sanity = _verdict("sanity-randomisation", Status.SUPPORTED, 1e-3)
    mixed = bottom_line([seed, grid, ok_sanity])
    assert mixed["status"] == "mixed"
    assert any("learned nothing" in p for p in mixed["points"])
    assert bottom_line([grid, ok_sanity])["status"] == "holds"


def test_bottom_line_names_an_undecided_depth_claim():
    """The seed claim on 200 photos is INCONCLUSIVE (the residual after pooling straddles the
    SESOI) beside a SUPPORTED GridPG: the bottom line says 'holds' and also names the seed
    claim, so the reader learns that the seed's own measure was left undecided."""
    from xai_checks.claims import Reason, bottom_line

    grid = _verdict("depth-localisation-gridpg", Status.SUPPORTED, 1e-9)
    ok_sanity = _verdict("sanity-randomisation", Status.SUPPORTED, 1e-3)
    seed = _verdict("seed-depth-ratio", Status.INCONCLUSIVE, 1e-9)
    seed.reasons.append(Reason("control-unclear", "beyond the pooled control the rise is ..."))
    line = bottom_line([seed, grid, ok_sanity])
    assert line["status"] == "holds"
    assert any(p.startswith("seed-depth-ratio is INCONCLUSIVE") for p in line["points"]), line


def test_bottom_line_names_the_control_that_explains_the_seed():
    """On 400 and 1000 photos the seed claim is CONFOUNDED by pooling (map resolution), not
    by the untrained control; the bottom line names the control that explains it, not 'a
    network that learned nothing' whichever control it was."""
    from xai_checks.claims import Reason, bottom_line

    grid = _verdict("depth-localisation-gridpg", Status.SUPPORTED, 1e-9)
    seed = _verdict("seed-depth-ratio", Status.CONFOUNDED, 1e-9)
    seed.reasons.append(Reason("pooling-explains", "after pooling ... below 0.02"))
    points = bottom_line([seed, grid])["points"]
    assert any("map resolution" in p and "pooling" in p for p in points), points
    assert not any("learned nothing" in p for p in points), points


def test_every_verdict_states_its_power_even_when_no_effect_was_estimated(rng):
    """A verdict with too few photos, or one that is no statistical test, still states its
    power, so the table, claims.json and report never show a blank."""
    few = evaluate("seed-depth-ratio", _study(_rising(8, rng), control=_flat(8, rng)))
    assert few.insufficient and few.effect_size is None
    statement = few.row()["power_statement"]
    assert "n = 8" in statement and "min_n = 100" in statement, statement
    study = _study(_rising(N, rng), control=_flat(N, rng))
    study.agreement = {"layer1": 2e-7, "layer4": 5e-7}
    agree = evaluate("native-captum-agreement", study)
    row = agree.row()
    assert row["effect"] == pytest.approx(5e-7) and row["ci_low"] is None
    assert "not a statistical test" in row["power_statement"]


def test_the_verdict_shows_its_deciding_effect_n_and_tipping_sesoi(rng):
    """GridPG with the control's map empty on some photos: n is the photos the deciding effect
    uses, each drop is counted with its cause, and the tipping SESOI is the bound the decision
    read (SUPPORTED holds for every SESOI up to it, and fails just above it)."""
    rising = np.clip(0.25 + _rising(N, rng, step=0.15), 0, 1)
    chance = rng.uniform(0.2, 0.3, size=(N, 4))
    chance[:7, 0] = np.nan  # no finite score in the control on 7 target photos
    claim = get_claim("depth-localisation-gridpg").with_(min_n=50)
    v = evaluate(claim, _grid_study(rising, chance))
    assert v.status is Status.SUPPORTED
    row = v.row()
    assert row["n_photos"] == N and v.n == row["n"] == row["effect_n"]
    deciding = v.effect_size["deciding"]
    assert v.n == (N - 7 if deciding == "untrained" else N)
    assert sum(v.drops.values()) == 7 and any("untrained" in k for k in v.drops)
    tip = row["tipping_sesoi"]
    assert tip is not None and tip >= claim.sesoi
    assert tip == pytest.approx(v.tipping["supported_up_to"])
    assert evaluate(claim.with_(sesoi=tip * 0.99), _grid_study(rising, chance)).status is (
        Status.SUPPORTED
    )
    assert evaluate(claim.with_(sesoi=tip * 1.01), _grid_study(rising, chance)).status is not (
        Status.SUPPORTED
    )


def test_min_n_is_checked_on_the_deciding_effects_photos(rng):
    """Enough target photos, but the control's map is empty on most: the effect against it
    rests on too few photos to decide."""
    rising = np.clip(0.25 + _rising(N, rng, step=0.15), 0, 1)
    chance = rng.uniform(0.2, 0.3, size=(N, 4))
    claim = get_claim("depth-localisation-gridpg").with_(min_n=N - 5)
    chance[:10, 0] = np.nan
    v = evaluate(claim, _grid_study(rising, chance))
    assert v.status is Status.INCONCLUSIVE and v.insufficient
    assert any(r.code == "too-few-photos" for r in v.reasons)


def test_a_supported_verdict_shows_the_effect_closest_to_its_sesoi(rng):
    """A step with few finite values has the larger p (an exact Wilcoxon test on 5 photos
    cannot go below 1/32) though its margin is far above the SESOI; the verdict's effect is
    the step closest to failing, whose lower bound is the tipping SESOI, not the largest p."""
    n = 200
    strong = list(rng.uniform(0.0, 0.1, 5)) + [float("nan")] * (n - 5)  # margin about 0.45
    weak = list(rng.uniform(0.29, 0.31, n))  # margin 0.2: the weakest step
    study = _study(np.zeros((n, 4)))
    study.sanity = SanityRun(
        layer="layer4", steps=["fc", "layer4"], rho={"fc": strong, "layer4": weak}
    )
    verdict = evaluate("sanity-randomisation", study)
    assert verdict.status is Status.SUPPORTED, verdict.summary()
    assert verdict.effect_size["ci_low"] == pytest.approx(verdict.tipping["sesoi"])
    assert 0.15 < verdict.effect < 0.25 and verdict.n == n, verdict.effect_size
