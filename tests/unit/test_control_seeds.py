"""The random networks as a sample: R seeded untrained controls and R draws of the sanity
cascade, on a tiny model; R = 1 is the single network; the option is validated up front."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.unit.test_study import Tiny, _tinyimagenet200
from xai_checks.claims import _rules as R
from xai_checks.cli import main
from xai_checks.data import open_photoset
from xai_checks.distributed import Shard
from xai_checks.models import derived_seed, reinitialised_copy
from xai_checks.study import (
    ModelRun,
    StudyConfig,
    _gridpg_scores,
    control_seed,
    gridpg_phase,
    run_study,
    sanity_seed,
)

pytestmark = pytest.mark.usefixtures("one_thread")

pytest_plugins = ["pytester"]


def _study(tmp_path, **config):
    root = tmp_path / "tiny200"
    photos = open_photoset(root if root.exists() else _tinyimagenet200(root))
    settings = StudyConfig(batch_size=3, phases=("ratio", "sanity"), **config)
    with pytest.warns(UserWarning, match="val_7"):
        return run_study(Tiny(), photos, config=settings)


def _numbers(run: ModelRun) -> list[tuple[str, dict[str, float]]]:
    return [(r["file"], r["ratio"]) for r in run.records]


def test_seeds_derive_from_the_study_seed_and_the_first_is_the_study_seed():
    assert control_seed(7, 0) == 7
    later = {control_seed(7, r) for r in range(1, 5)}
    assert len(later) == 4 and 7 not in later
    assert control_seed(8, 1) not in later
    assert sanity_seed(7, "fc", 0) == derived_seed(7, "sanity/fc")
    assert sanity_seed(7, "fc", 1) != sanity_seed(7, "fc", 0)


def test_one_network_is_the_single_control_and_more_add_later_draws(tmp_path):
    one = _study(tmp_path, control_seeds=1)
    three = _study(tmp_path, control_seeds=3, control_seed_photos=4, control_seed_sanity=3)
    assert one.control_seeds is None
    # the first draw is the study's own control and cascade, whatever R is
    assert _numbers(one.controls["untrained"]) == _numbers(three.controls["untrained"])
    assert _numbers(one.under_test) == _numbers(three.under_test)
    assert one.sanity is not None and three.sanity is not None
    assert one.sanity.rho.keys() == three.sanity.rho.keys()
    for step, rho in one.sanity.rho.items():
        np.testing.assert_array_equal(rho, three.sanity.rho[step])
    seeds = three.control_seeds
    assert seeds is not None and seeds.count == 3 and seeds.control == "untrained"
    assert seeds.seeds == [control_seed(0, 1), control_seed(0, 2)]
    files = {r["file"] for r in three.under_test.records}
    drawn = [_numbers(run) for run in seeds.runs]
    assert all(len(d) == 4 and {f for f, _ in d} <= files for d in drawn)
    # different seeds, different networks: their maps differ on the same photos
    first = dict(_numbers(three.controls["untrained"]))
    assert drawn[0] != drawn[1]
    assert all(first[f] != ratio for f, ratio in drawn[0])
    assert seeds.sanity_rows == [0, 1, 2]
    assert len(seeds.sanity) == 2
    for rho in seeds.sanity:
        assert set(rho) == set(three.sanity.steps)
        assert all(len(v) == 3 for v in rho.values())
    a, b = (np.array([rho[step] for step in three.sanity.steps]) for rho in seeds.sanity)
    assert not np.array_equal(a, b, equal_nan=True)
    assert "control_seeds" in three.timings


def test_a_claim_reads_the_later_draws_by_photo(tmp_path):
    study = _study(tmp_path, control_seeds=3, control_seed_photos=4, control_seed_sanity=3)
    files = [r["file"] for r in study.under_test.records]
    later = R.later_draws(study, "untrained", "ratio", ("layer1", "layer4"), files)
    assert len(later) == 2
    for draw, run in zip(later, study.control_seeds.runs, strict=True):
        ran = {r["file"]: r["ratio"] for r in run.records}
        for f, row in zip(files, draw, strict=True):
            if f in ran:
                assert row.tolist() == [ran[f]["layer1"], ran[f]["layer4"]]
            else:
                assert np.isnan(row).all()
    assert R.later_draws(study, "another control", "ratio", ("layer1",), files) == []
    matrix = R.with_draws(np.zeros(len(files)), [d[:, 0] for d in later])
    assert matrix.shape == (len(files), 3)


def test_results_json_carries_the_later_draws_and_validates(tmp_path):
    from xai_checks.report.schema import build_results, validate_results

    study = _study(tmp_path, control_seeds=2, control_seed_photos=3, control_seed_sanity=2)
    doc = build_results(study, [])
    validate_results(doc)
    seeds = doc["control_seeds"]
    assert seeds["count"] == 2 and len(seeds["ratio"]) == 1 and len(seeds["ratio"][0]) == 3
    assert len(seeds["sanity"]) == 1 and seeds["sanity_rows"] == [0, 1]


def test_a_later_draw_scores_the_gridpg_mosaics_as_the_gridpg_phase_does(tmp_path):
    """The later draws rebuild the mosaics from their specs: a network scores the same there
    as in the GridPG phase itself."""
    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for k, wnid in enumerate(("n01443537", "n01530575", "n01531178", "n01532829") * 2):
        (root / wnid).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
            root / wnid / f"p{k}.JPEG"
        )
    photos = open_photoset(root, layout="imagefolder")
    config = StudyConfig(batch_size=3, phases=("ratio",))
    model = Tiny()
    control = reinitialised_copy(model, seed=control_seed(0, 1))
    first = ModelRun("m", {}, config.layers)
    first.records = [
        {"file": str(s.path), "correct": True, "confidence": 1.0, "true_rank": 0} for s in photos
    ]
    grid = gridpg_phase({"m": model, "c": control}, photos, first, config, None, Shard())
    assert len(grid.specs) == 8
    rows = [1, 4, 6, 7]
    again = _gridpg_scores({"c": control}, photos, grid, rows, config, Shard())["c"]
    np.testing.assert_allclose(again, grid.scores["c"][rows], rtol=0, atol=1e-6)


def test_fewer_than_one_network_is_exit_2_in_the_cli(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["study", "--control-seeds", "0", "--out", str(tmp_path / "r")])
    assert info.value.code == 2
    assert "argument --control-seeds" in capsys.readouterr().err


def test_fewer_than_one_network_is_a_usage_error_in_the_plugin(pytester):
    pytester.makepyfile(test_nothing="def test_ok():\n    assert True\n")
    result = pytester.runpytest_inprocess("--xai-control-seeds=0", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--xai-control-seeds" in result.stdout.str() + result.stderr.str()


def test_the_study_config_refuses_zero_networks():
    with pytest.raises(ValueError, match="control_seeds"):
        StudyConfig(control_seeds=0)


def test_the_report_row_says_how_far_the_effect_moves_between_networks():
    from types import SimpleNamespace

    from xai_checks.report.builtin import seeds_text

    verdict = SimpleNamespace(
        controls={
            "untrained": {
                "seeds": {"count": 5, "min": 0.018, "max": 0.025, "photos_every_seed": 100}
            },
            "pooled": {"ran": True},
        },
        tests={"seeds": {"fc": {"count": 2, "note": "1 photo(s) carry every seed"}}},
    )
    text = seeds_text(verdict)
    assert "untrained: 5 networks, effect per network 0.018 to 0.025 (on 100 photos)" in text
    assert "step fc: 1 photo(s) carry every seed" in text
    assert seeds_text(SimpleNamespace(controls={"untrained": {"ran": True}}, tests={})) == ""
