"""The worst-case row: photos dropped from a deciding effect, scored against the verdict.

GridPG's excess over the untrained control drops a target photo whose control map has no
positive mass in the mosaic (its score is NaN). Simulated GridPG studies with a known share
of such photos are the known answer."""

from __future__ import annotations

import numpy as np
import pytest

from xai_checks.calibration import simulate
from xai_checks.claims import Status, evaluate, get_claim

CLAIM = "depth-localisation-gridpg"


def _study(world: str, *, n: int, dropped: int, seed: int = 0):
    study = simulate(CLAIM, world, n, 1, np.random.default_rng(seed))[0]
    assert study.gridpg is not None
    control = study.gridpg.scores["untrained"]
    control[:dropped] = np.nan  # no positive mass in the control's map
    return study


def _judge(study):
    return evaluate(get_claim(CLAIM).with_(n_boot=500), study)


def test_a_supported_verdict_with_few_drops_survives_the_worst_case():
    verdict = _judge(_study("effect", n=400, dropped=10))
    assert verdict.status is Status.SUPPORTED
    row = verdict.sensitivity
    assert row is not None and row["survives"] is True
    effect = row["effects"]["untrained"]
    assert effect["dropped"] == 10 and effect["n"] == 400
    # scored at the smallest kept difference: the estimate can only fall
    as_run = verdict.controls["untrained"]["effect"]["estimate"]
    assert effect["estimate"] < as_run
    assert any(r.code == "worst-case" and "survives" in r.text for r in verdict.reasons)
    assert verdict.to_dict()["sensitivity"]["survives"] is True


def test_a_supported_verdict_resting_on_many_drops_does_not_survive():
    verdict = _judge(_study("effect", n=400, dropped=200))
    assert verdict.status is Status.SUPPORTED
    assert verdict.sensitivity is not None and verdict.sensitivity["survives"] is False
    assert verdict.sensitivity["effects"]["untrained"]["decision"] != "present"
    assert any("would not survive" in r.text for r in verdict.reasons)


def test_no_drops_no_row():
    verdict = _judge(_study("effect", n=400, dropped=0))
    assert verdict.sensitivity is None
    assert verdict.to_dict()["sensitivity"] is None


@pytest.mark.parametrize("dropped", [20])
def test_a_negative_verdict_is_scored_in_the_models_favour(dropped):
    verdict = _judge(_study("confound", n=400, dropped=dropped, seed=3))
    assert verdict.status is Status.CONFOUNDED
    row = verdict.sensitivity
    assert row is not None and "largest" in row["rule"]
    assert (
        row["effects"]["untrained"]["estimate"]
        > verdict.controls["untrained"]["effect"]["estimate"]
    )
