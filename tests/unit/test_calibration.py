"""The tests of the tests: the claims' real evaluators on simulated studies.

The CI version runs few repetitions (about a minute on a loaded 2-core machine); the full
table is `tox -e calibrate`, committed as docs/calibration.md and .json. Bounds are binomial
99.9% Monte-Carlo bounds around the targets, and every draw is seeded, so a pass or a
failure repeats exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xai_checks.calibration import (
    CALIBRATED_CLAIMS,
    WORLDS,
    calibrate,
    check_targets,
    mc_bound,
    min_n_from,
)
from xai_checks.claims import get_claim

TABLE = Path(__file__).parents[2] / "docs" / "calibration.json"
REPS = 30


@pytest.fixture(scope="module")
def small_table():
    return calibrate(
        claims=("seed-depth-ratio", "depth-localisation-gridpg"), ns=(100,), reps=REPS, n_boot=200
    )


@pytest.mark.parametrize("claim_id", ["seed-depth-ratio", "depth-localisation-gridpg"])
def test_verdict_rates_meet_the_targets_at_n_100(small_table, claim_id):
    entry = small_table["claims"][claim_id]
    alpha = entry["alpha"]
    rows = {row["world"]: row for row in entry["rows"]}
    assert set(rows) == set(WORLDS)
    # false SUPPORTED <= alpha, also where a real effect sits between zero and the SESOI
    for world in ("null", "confound", "trivial+confound"):
        assert rows[world]["SUPPORTED"] <= mc_bound(alpha, REPS, upper=True), (world, rows)
    assert rows["confound"]["CONFOUNDED"] >= mc_bound(0.9, REPS, upper=False), rows
    if get_claim(claim_id).min_n <= 100:  # power at the claim's minimum n
        for world in ("effect", "effect+confound"):
            assert rows[world]["SUPPORTED"] >= mc_bound(0.8, REPS, upper=False), (world, rows)


def test_the_committed_table_sets_every_min_n_and_meets_its_targets():
    doc = json.loads(TABLE.read_text())
    assert doc["reps"] >= 500 and set(doc["ns"]) >= {10, 30, 100, 1000}
    assert set(doc["claims"]) == set(CALIBRATED_CLAIMS)
    for claim_id, entry in doc["claims"].items():
        assert get_claim(claim_id).min_n == min_n_from(entry), claim_id
        assert get_claim(claim_id).sesoi == entry["sesoi"], claim_id
        missed = check_targets(claim_id, entry | {"declared_min_n": min_n_from(entry)})
        assert not missed, (claim_id, missed)
