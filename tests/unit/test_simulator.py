"""The fitted simulator: bounded, zero-inflated, tied values with a real study's dependence.

Synthetic ``results.json`` documents with a known shape (zeros, a grid, NaN, a correlation)
are the known answers here; the committed fit is checked for what the calibration needs of
it (each world's true effect where the world puts it)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps
from scipy.stats import mstats

from xai_checks import simulator as sim
from xai_checks.calibration import simulate, simulate_fitted
from xai_checks.claims import get_claim
from xai_checks.simulator import LAYERS, POOLED_GRID, Marginal, fit_results, per_photo_effects


def _results(n: int = 300, seed: int = 1) -> dict[str, Any]:
    """A results.json with zero-inflated ratios, pooled ratios on the 1/49 grid, GridPG scores
    with NaN controls and sanity rho: the fields the fit reads."""
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal(n)

    def ratios(zero: float, scale: float) -> np.ndarray:
        z = 0.8 * shared[:, None] + 0.6 * rng.standard_normal((n, 4))
        v = scale * np.exp(0.5 * z) * np.linspace(0.5, 1.5, 4)
        v[rng.random((n, 4)) < zero] = 0.0
        return np.clip(v, 0.0, 1.0)

    def photos(r: np.ndarray, pooled: np.ndarray) -> list[dict[str, Any]]:
        return [
            {
                "ratio": dict(zip(LAYERS, map(float, r[i]), strict=True)),
                "ratio_pooled": dict(zip(LAYERS, map(float, pooled[i]), strict=True)),
            }
            for i in range(n)
        ]

    model, control = ratios(0.4, 0.02), ratios(0.5, 0.01)
    pm = np.round(np.clip(model * 3, 0, 1) * 49) / 49
    pc = np.round(np.clip(control * 3, 0, 1) * 49) / 49
    g_model = np.clip(rng.beta(2, 3, (n, 4)) + np.linspace(0, 0.4, 4), 0, 1)
    g_control = rng.beta(2, 5, (n, 4))
    g_control[rng.random(n) < 0.2] = np.nan
    steps = ["fc", "layer4", "layer3", "layer2", "layer1", "conv1+bn1"]
    return {
        "models": {"pretrained": {"photos": photos(model, pm)},
                   "untrained": {"photos": photos(control, pc)}},
        "photoset": {"counts": {"listed": n, "used": n, "skipped": 0}},
        "gridpg": {"scores": {"pretrained": g_model.tolist(), "untrained": g_control.tolist()}},
        "sanity": {"steps": steps,
                   "rho": {s: rng.uniform(-0.2, 0.8, n).tolist() for s in steps}},
    }  # fmt: skip


@pytest.fixture(scope="module")
def fitted() -> dict[str, sim.FittedClaim]:
    doc = json.loads(json.dumps(fit_results(_results(), source="synthetic")))
    return {cid: sim.FittedClaim.from_dict(cid, d) for cid, d in doc["claims"].items()}


def test_a_marginal_keeps_zeros_bounds_and_the_pooled_grid():
    rng = np.random.default_rng(0)
    data = np.round(rng.beta(1, 8, 2000) * 49) / 49
    data[:800] = 0.0
    m = Marginal.fit(data, grid=POOLED_GRID)
    z = rng.standard_normal(200_000)
    drawn = m.values(z, 0.0, rng)
    assert drawn.min() >= 0.0 and drawn.max() <= data.max()
    # every draw is a whole number of 7x7 cells: ties by construction
    assert np.allclose(drawn * 49, np.round(drawn * 49), atol=1e-9)
    share = float(np.mean(drawn == 0.0))
    expected = float(np.mean(data == 0.0))
    assert abs(share - expected) < 4 * math.sqrt(expected * (1 - expected) / len(z))


def test_the_fit_keeps_the_real_dependence_and_missing_rate(fitted):
    gridpg = fitted["depth-localisation-gridpg"]
    assert gridpg.missing["control"] == pytest.approx(0.2, abs=0.07)
    assert gridpg.missing["model"] == 0.0
    seed = fitted["seed-depth-ratio"]
    drawn = seed.draw(np.random.default_rng(0), 1, 20000, {})
    values = drawn["model"][0]
    # the synthetic layers share a photo factor: the draws' layers correlate as the data's
    real = np.array(
        [
            [p["ratio"][layer] for layer in LAYERS]
            for p in _results()["models"]["pretrained"]["photos"]
        ]
    )
    r_real = np.corrcoef(real[:, 1], real[:, 2])[0, 1]
    r_sim = np.corrcoef(values[:, 1], values[:, 2])[0, 1]
    assert r_sim == pytest.approx(r_real, abs=0.15)
    nan_share = float(np.mean(np.isnan(fitted["depth-localisation-gridpg"].draw(
        np.random.default_rng(1), 1, 20000, {})["control"][0][:, 0])))  # fmt: skip
    assert nan_share == pytest.approx(gridpg.missing["control"], abs=4 * math.sqrt(0.25 / 20000))


@pytest.mark.parametrize("target", [-0.01, 0.0, 0.02, 0.05])
def test_a_rise_shift_puts_the_mean_rise_at_its_target(fitted, target):
    seed = fitted["seed-depth-ratio"]
    shift = seed.rise_shift("model", target)
    exact = seed.mean_rise_at("model", shift[0])
    assert exact == pytest.approx(target, abs=1e-4)
    n = 50_000
    drawn = seed.draw(np.random.default_rng(2), 1, n, {"model": shift})["model"][0]
    rise = per_photo_effects(
        "seed-depth-ratio",
        {"model": drawn, "control": drawn, "pooled": drawn, "control_pooled": drawn},
    )["rise"]
    se = float(np.nanstd(rise)) / math.sqrt(n)
    assert float(np.nanmean(rise)) == pytest.approx(target, abs=5 * se + 1e-4)  # fmt: skip


def test_mean_rises_of_many_shifts_are_each_shifts_own_bit_for_bit(fitted):
    """The rise curve is computed for blocks of shifts at once; each row's rise is the one
    ``mean_rise_at`` gives it alone, whatever block it falls in (5 rows in blocks of 2)."""
    seed = fitted["seed-depth-ratio"]
    k = len(seed.quantities["model"])
    rows = np.random.default_rng(3).uniform(-0.3, 0.3, size=(5, k))
    alone = np.array([seed.mean_rise_at("model", row) for row in rows])
    assert np.array_equal(seed.mean_rises_at("model", rows, rows=2), alone)
    assert np.array_equal(seed.mean_rises_at("model", rows[::-1]), alone[::-1])


def test_a_target_beyond_the_marginals_is_refused(fitted):
    with pytest.raises(ValueError, match="outside what the fitted marginals reach"):
        fitted["seed-depth-ratio"].rise_shift("model", 5.0)


def test_the_committed_fit_puts_each_boundary_component_at_the_sesoi(kept_measurements):
    """In every boundary world of the fitted simulator, the named component's true value is the
    SESOI (measured over many simulated photos: Monte-Carlo error only): the trimmed mean for
    the seed claim's own rise, pooled or not (the claim's ``trim``), the mean elsewhere."""
    worlds = (
        ("seed-depth-ratio", "rise", "rise"),
        ("seed-depth-ratio", "untrained", "beyond untrained"),
        ("seed-depth-ratio", "pooled", "left after pooling"),
        ("seed-depth-ratio", "joint", "joint (pooled beyond pooled untrained)"),
        ("depth-localisation-gridpg", "untrained", "beyond untrained"),
        ("depth-localisation-gridpg", "above", "layer4 above chance 0.25"),
        ("depth-localisation-gridpg", "rise", "rise"),
    )
    trim = get_claim("seed-depth-ratio").trim
    cuts = {("seed-depth-ratio", "rise"): trim, ("seed-depth-ratio", "pooled"): trim}

    def measure() -> list[list[float]]:
        rng = np.random.default_rng(3)
        out = []
        for claim_id, part, key in worlds:
            studies = simulate_fitted(claim_id, f"boundary:{part}", 5000, 4, rng)
            q = _quantities(claim_id, studies)
            effect = per_photo_effects(claim_id, q)[key]
            effect = effect[np.isfinite(effect)]
            cut = cuts.get((claim_id, part), 0.0)
            if cut:
                got = float(sps.trim_mean(effect, cut))
                se = float(mstats.trimmed_stde(effect, limits=(cut, cut)))
            else:
                got, se = float(effect.mean()), float(effect.std()) / math.sqrt(len(effect))
            out.append([got, se])
        return out

    # 140 000 simulated photos: kept between runs of the suite by content
    measured = kept_measurements("boundary components", measure)
    for (claim_id, part, _), (got, se) in zip(worlds, measured, strict=True):
        assert got == pytest.approx(get_claim(claim_id).sesoi, abs=5 * se), (claim_id, part)


def test_the_trimmed_boundary_is_not_the_mean_boundary():
    """The seed claim's rise has a far negative tail, so its trimmed mean and its mean part: a
    world placed by the trimmed mean puts the mean elsewhere (by more than Monte-Carlo
    error), and the control's mean rise sits the world's excess below the model's mean."""
    claim = get_claim("seed-depth-ratio")
    studies = simulate_fitted(
        "seed-depth-ratio", "boundary:rise", 20000, 1, np.random.default_rng(8)
    )
    q = _quantities("seed-depth-ratio", studies)
    effects = per_photo_effects("seed-depth-ratio", q)
    rise = effects["rise"][np.isfinite(effects["rise"])]
    se = float(rise.std()) / math.sqrt(len(rise))
    assert abs(float(rise.mean()) - claim.sesoi) > 5 * se
    beyond = effects["beyond untrained"]
    beyond = beyond[np.isfinite(beyond)]
    se_b = float(beyond.std()) / math.sqrt(len(beyond))
    assert float(beyond.mean()) == pytest.approx(2 * claim.sesoi, abs=5 * se_b)


def test_the_fitted_sanity_boundary_puts_the_first_step_at_the_sesoi():
    claim = get_claim("sanity-randomisation")
    studies = simulate_fitted(
        "sanity-randomisation", "boundary:step", 20000, 1, np.random.default_rng(4)
    )
    rho = np.abs(np.asarray(studies[0].sanity.rho[studies[0].sanity.steps[0]]))
    margin = 0.5 - rho[np.isfinite(rho)]
    se = float(margin.std()) / math.sqrt(len(margin))
    assert float(margin.mean()) == pytest.approx(claim.sesoi, abs=5 * se)


def test_fitted_values_are_bounded_and_the_pooled_ratio_is_on_the_grid():
    studies = simulate("seed-depth-ratio", "effect+confound", 400, 3, np.random.default_rng(5),
                       simulator="fitted")  # fmt: skip
    for study in studies:
        ratio = study.under_test.column("ratio")
        pooled = study.under_test.column("ratio_pooled")
        finite = ratio[np.isfinite(ratio)]
        assert finite.min() >= 0.0 and finite.max() <= 1.0
        assert np.mean(finite == 0.0) > 0.0  # zero-inflated, as the real ratio
        p = pooled[np.isfinite(pooled)]
        assert np.allclose(p * 49, np.round(p * 49), atol=1e-9)


def test_the_confound_is_drawn_from_a_range():
    """Two confound studies of many photos differ in their model's rise by more than
    Monte-Carlo error: the confound is not one value. (In a confound world the model's rise
    is the confound alone; the seed claim places it by its trimmed mean.)"""
    studies = simulate_fitted("seed-depth-ratio", "confound", 5000, 6, np.random.default_rng(6))
    from xai_checks.stats import depth_rise

    trim = get_claim("seed-depth-ratio").trim
    rises = [float(sps.trim_mean(depth_rise(s.under_test.column("ratio")), trim)) for s in studies]
    sesoi = get_claim("seed-depth-ratio").sesoi
    lo, hi = sim.CONFOUND_RANGE
    assert all(lo * sesoi - 0.002 <= r <= hi * sesoi + 0.002 for r in rises)
    assert max(rises) - min(rises) > 0.1 * sesoi


def test_an_unknown_simulator_is_refused():
    with pytest.raises(ValueError, match="unknown simulator"):
        simulate("seed-depth-ratio", "null", 10, 1, np.random.default_rng(0), simulator="t3")


def test_the_qq_figure_is_written_and_compares_each_effect(tmp_path, fitted):
    out = tmp_path / "qq.png"
    summary = sim.qq_figure(_results(), out, fit=fitted, n_sim=4000)
    assert out.stat().st_size > 10_000
    assert len(summary) == 4 + 3 + 6
    # the synthetic study is what the fit was fitted to: its means agree within sampling error
    for name, row in summary.items():
        assert abs(row["real_mean"] - row["simulated_mean"]) <= max(row["real_iqr"], 1e-3), name


def _quantities(claim_id: str, studies: list) -> dict[str, np.ndarray]:
    if claim_id == "seed-depth-ratio":
        u, c = studies[0].under_test, studies[0].controls["untrained"]
        cat = lambda run, key: np.concatenate([s.runs[run].column(key) for s in studies])  # noqa: E731
        del u, c
        return {
            "model": cat("pretrained", "ratio"),
            "control": cat("untrained", "ratio"),
            "pooled": cat("pretrained", "ratio_pooled"),
            "control_pooled": cat("untrained", "ratio_pooled"),
        }
    return {
        "model": np.concatenate([s.gridpg.scores["pretrained"] for s in studies]),
        "control": np.concatenate([s.gridpg.scores["untrained"] for s in studies]),
    }
