"""Calibration: the tests of the tests.

A vectorised simulator draws per-photo, per-layer numbers for each built-in statistical claim
in five worlds, and the claim's **real** evaluator (:func:`xai_checks.claims.evaluate`, the
same code a study runs) judges every simulated study. The rates of each verdict say how often
the verdict machinery is wrong:

``null``              no depth effect, no confound;
``confound``          the same rise in the model and its control (what map resolution gives),
                      removed by pooling;
``effect``            a rise in the model beyond the control of ``EFFECT_MULTIPLE`` (2) times
                      the claim's SESOI;
``effect+confound``   both;
``trivial+confound``  the confound plus a rise beyond the control of ``TRIVIAL_MULTIPLE``
                      (0.75) times the SESOI: real, but smaller than the smallest effect of
                      interest. This is where the seed claim's real numbers sit (on the 200-photo
                      baseline the rise left after pooling is 0.014 against a SESOI of 0.02), and
                      where a decision rule that calls "significant against zero" present flips
                      from SUPPORTED to CONFOUNDED as n grows. (The sanity claim, which has no
                      confound, has ``trivial`` instead.)

Targets (issue 11): false SUPPORTED under ``null``, ``confound`` and ``trivial*`` <= alpha
(allowing for Monte-Carlo error); CONFOUNDED under ``confound`` >= 0.9 at n >= 100; SUPPORTED
under ``effect`` and ``effect+confound`` >= 0.8 at the claim's ``min_n``; no verdict flips
from SUPPORTED to CONFOUNDED only because n grew. Each claim's ``min_n`` is the smallest n of
the table at which SUPPORTED reaches 0.8 in both effect worlds.

The simulator's spreads (``SCENARIOS``) are fitted to the real 200-photo baseline study
(pretrained and untrained ResNet-50 on 200 of the shared ImageNet photos: a line per photo
through its four layers gives the level, the rise and the residual noise; the rise's spread is
corrected for the noise's share). The confound's size is not fitted: it is 2x the SESOI for
every claim, large enough that the confound alone passes the rise test, which is the case
CONFOUNDED exists for (the seed claim's measured confound, the rise that pooling removes, is
0.017: below its SESOI, so alone it would read REFUTED; the localisation claims' untrained
control shows none). The box claim has no real boxes to fit and borrows GridPG's spreads.
The evaluator runs with ``min_n`` lowered to 2 (so rates below a claim's minimum are measured,
not masked) and, for time, ``n_boot`` = 500 bootstrap resamples instead of 2000; each claim
is judged alone (a family of one, no Holm).

``tox -e calibrate`` (or ``python -m xai_checks.calibration``) writes the full table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from xai_checks.claims import Status, evaluate, get_claim
from xai_checks.stats import EFFECT_MULTIPLE
from xai_checks.study import GridPGRun, ModelRun, SanityRun, StudyConfig, StudyResult

__all__ = [
    "CALIBRATED_CLAIMS",
    "EFFECT_MULTIPLE",
    "SCENARIOS",
    "TRIVIAL_MULTIPLE",
    "WORLDS",
    "Scenario",
    "calibrate",
    "check_targets",
    "min_n_from",
    "readme_table",
    "simulate",
    "to_markdown",
]

WORLDS = ("null", "confound", "effect", "effect+confound", "trivial+confound")
#: the sanity claim has no confound: its worlds
SANITY_WORLDS = ("null", "effect", "trivial")
#: the effect beyond the control in the ``trivial`` worlds, as a multiple of the SESOI
TRIVIAL_MULTIPLE = 0.75
#: the cascade steps of the sanity phase on a ResNet (output first)
SANITY_STEPS = ("fc", "layer4", "layer3", "layer2", "layer1", "conv1+bn1")
LAYERS = ("layer1", "layer2", "layer3", "layer4")
CALIBRATED_CLAIMS = (
    "seed-depth-ratio",
    "depth-localisation-gridpg",
    "depth-localisation-boxes",
    "sanity-randomisation",
    "faithfulness-beyond-random",
    "depth-faithfulness",
)
STATUSES = tuple(s.value for s in Status)


@dataclass(frozen=True)
class Scenario:
    """Spreads of one claim's per-photo numbers (fitted to the real 200-photo baseline).

    A photo's value at layer position x in [0, 1] (first to last layer) is
    ``level + (mean_rise + sd_rise * z) * x + sd_noise * e`` with z, e standard normal, its
    level drawn with ``sd_level``. The model's mean rise is ``effect + confound``, the
    control's ``confound``; the pooled map keeps the effect but not the confound, and shares
    ``pooled_corr`` of the model's z. The control and the pooled map have their own level and
    spreads where given (None: the model's).
    """

    level: float
    sd_level: float
    sd_rise: float
    sd_noise: float
    confound: float
    sd_rise_control: float
    pooled_corr: float = 0.7
    #: sanity only: the spread of per-photo Spearman rho around its mean
    sd_rho: float = 0.15
    level_control: float | None = None
    sd_level_control: float | None = None
    sd_noise_control: float | None = None
    level_pooled: float | None = None
    sd_level_pooled: float | None = None
    sd_rise_pooled: float | None = None
    sd_noise_pooled: float | None = None


#: Fitted to the 200-photo baseline study (see the module docstring and docs/calibration.md).
SCENARIOS: dict[str, Scenario] = {
    "seed-depth-ratio": Scenario(
        level=-0.002, sd_level=0.0065, sd_rise=0.010, sd_noise=0.013,
        confound=0.04, sd_rise_control=0.013,
        level_control=0.003, sd_level_control=0.016, sd_noise_control=0.0165,
        level_pooled=0.047, sd_level_pooled=0.030, sd_rise_pooled=0.020, sd_noise_pooled=0.032,
        pooled_corr=0.6,
    ),
    "depth-localisation-gridpg": Scenario(
        level=0.21, sd_level=0.144, sd_rise=0.111, sd_noise=0.138, confound=0.2,
        sd_rise_control=0.111, level_control=0.254, sd_level_control=0.157,
        sd_noise_control=0.093,
    ),
    "depth-localisation-boxes": Scenario(
        level=0.0, sd_level=0.144, sd_rise=0.111, sd_noise=0.138, confound=0.2,
        sd_rise_control=0.111, sd_level_control=0.157, sd_noise_control=0.093,
    ),
    "sanity-randomisation": Scenario(
        level=0.0, sd_level=0.0, sd_rise=0.0, sd_noise=0.0, confound=0.0,
        sd_rise_control=0.0, sd_rho=0.2,
    ),
}  # fmt: skip


def worlds_for(claim_id: str) -> tuple[str, ...]:
    """The worlds a claim is calibrated in."""
    if claim_id in FAITHFULNESS_SCENARIOS:
        return _faithfulness_worlds(claim_id)
    return SANITY_WORLDS if claim_id == "sanity-randomisation" else WORLDS


class _SimRun(ModelRun):
    """A ModelRun whose per-layer columns are given as arrays (the evaluator is unchanged)."""

    def __init__(self, name: str, columns: dict[str, np.ndarray], records: list[dict[str, Any]]):
        super().__init__(name, {"source": "simulated"}, LAYERS, records)
        self._columns = columns

    def column(self, key: str) -> np.ndarray:
        return self._columns[key]


def _shape(world: str, claim_id: str, sesoi: float) -> tuple[float, float]:
    """(effect, confound) of a world for a claim."""
    sc = SCENARIOS[claim_id]
    if world.startswith("effect"):
        effect = EFFECT_MULTIPLE * sesoi
    elif world.startswith("trivial"):
        effect = TRIVIAL_MULTIPLE * sesoi
    else:
        effect = 0.0
    confound = sc.confound if world.endswith("confound") else 0.0
    return effect, confound


def _layer_values(
    rng: np.random.Generator,
    reps: int,
    n: int,
    *,
    level: np.ndarray | float,
    mean_rise: float,
    sd_rise: float,
    sd_noise: float,
    z: np.ndarray | None = None,
) -> np.ndarray:
    """(reps, n, k) values: level + per-photo rise * x + noise."""
    x = np.linspace(0.0, 1.0, len(LAYERS))
    if z is None:
        z = rng.standard_normal((reps, n))
    rise = mean_rise + sd_rise * z
    noise = sd_noise * rng.standard_normal((reps, n, len(LAYERS)))
    return np.asarray(level)[..., None] + rise[..., None] * x + noise


def _pick(value: float | None, default: float) -> float:
    return default if value is None else value


def simulate(
    claim_id: str, world: str, n: int, reps: int, rng: np.random.Generator
) -> list[StudyResult]:
    """``reps`` simulated studies of ``n`` photos for one claim in one world (vectorised)."""
    if world not in worlds_for(claim_id):
        raise ValueError(f"unknown world {world!r}; choose from {worlds_for(claim_id)}")
    if claim_id in FAITHFULNESS_SCENARIOS:
        return simulate_faithfulness(claim_id, world, n, reps, rng)
    claim = get_claim(claim_id)
    sc = SCENARIOS[claim_id]
    effect, confound = _shape(world, claim_id, claim.sesoi)
    config = StudyConfig()
    files = [f"sim{i:05d}.JPEG" for i in range(n)]
    studies: list[StudyResult] = []
    if claim_id == "sanity-randomisation":
        bound = float(claim.params["bound"])
        steps = list(SANITY_STEPS)
        # the world's effect is how far below the bound the mean |rho| falls
        mean = bound - effect
        rho = np.clip(mean + sc.sd_rho * rng.standard_normal((reps, len(steps), n)), -1, 1)
        for r in range(reps):
            study = StudyResult(
                config=config, photoset={"n_used": n}, under_test=_SimRun("pretrained", {}, [])
            )
            study.sanity = SanityRun(
                layer="layer4",
                steps=steps,
                rho={s: rho[r, j].tolist() for j, s in enumerate(steps)},
            )
            studies.append(study)
        return studies
    z = rng.standard_normal((reps, n))
    level = sc.level + sc.sd_level * rng.standard_normal((reps, n))
    area = None
    if claim_id == "depth-localisation-boxes":
        area = rng.uniform(0.1, 0.6, size=(reps, n))
        level = area + sc.sd_level * rng.standard_normal((reps, n))
    model = _layer_values(
        rng, reps, n, level=level, mean_rise=effect + confound, sd_rise=sc.sd_rise,
        sd_noise=sc.sd_noise, z=z,
    )  # fmt: skip
    c_level = _pick(sc.level_control, sc.level) + _pick(
        sc.sd_level_control, sc.sd_level
    ) * rng.standard_normal((reps, n))
    if area is not None:
        c_level = area + _pick(sc.sd_level_control, sc.sd_level) * rng.standard_normal((reps, n))
    control = _layer_values(
        rng, reps, n, level=c_level, mean_rise=confound, sd_rise=sc.sd_rise_control,
        sd_noise=_pick(sc.sd_noise_control, sc.sd_noise),
    )  # fmt: skip
    zp = sc.pooled_corr * z + math.sqrt(1 - sc.pooled_corr**2) * rng.standard_normal((reps, n))
    p_level = level
    if sc.level_pooled is not None:
        p_level = sc.level_pooled + _pick(sc.sd_level_pooled, sc.sd_level) * rng.standard_normal(
            (reps, n)
        )
    pooled = _layer_values(
        rng, reps, n, level=p_level, mean_rise=effect,
        sd_rise=_pick(sc.sd_rise_pooled, sc.sd_rise),
        sd_noise=_pick(sc.sd_noise_pooled, sc.sd_noise), z=zp,
    )  # fmt: skip
    records: list[dict[str, Any]]
    controls: dict[str, ModelRun]
    for r in range(reps):
        if claim_id == "seed-depth-ratio":
            records = [{"file": f, "ratio": {}} for f in files]
            main = _SimRun("pretrained", {"ratio": model[r], "ratio_pooled": pooled[r]}, records)
            controls = {"untrained": _SimRun("untrained", {"ratio": control[r]}, records)}
            studies.append(
                StudyResult(
                    config=config, photoset={"n_used": n}, under_test=main, controls=controls
                )
            )
        elif claim_id == "depth-localisation-gridpg":
            study = StudyResult(
                config=config,
                photoset={"n_used": n},
                under_test=_SimRun("pretrained", {}, []),
                controls={"untrained": _SimRun("untrained", {}, [])},
            )
            study.gridpg = GridPGRun(
                layers=LAYERS,
                specs=[{"files": [f], "cell": 0} for f in files],
                scores={"pretrained": model[r], "untrained": control[r]},
            )
            studies.append(study)
        else:  # boxes
            assert area is not None
            records = [
                {"file": f, "box_mass": {}, "box_area": float(a)}
                for f, a in zip(files, area[r], strict=True)
            ]
            main = _SimRun("pretrained", {"box_mass": model[r]}, records)
            controls = {"untrained": _SimRun("untrained", {"box_mass": control[r]}, records)}
            studies.append(
                StudyResult(
                    config=config, photoset={"n_used": n}, under_test=main, controls=controls
                )
            )
    return studies


# ----------------------------------------------------------------------------- faithfulness

#: the faithfulness claims' worlds: ``null`` (the map carries no information: its ROAD gap is
#: the controls'), ``effect`` (every compared difference at ``EFFECT_MULTIPLE`` times the SESOI),
#: ``boundary`` (every difference at exactly the SESOI: a SUPPORTED there is a false one, so
#: its rate must stay at or below alpha) and, for the depth claim, ``confound`` (the untrained
#: maps' gap rises as much as the model's, by 2x the SESOI: CONFOUNDED is the right verdict)
FAITHFULNESS_WORLDS = ("null", "effect", "boundary")
DEPTH_FAITHFULNESS_WORLDS = ("null", "confound", "effect", "boundary")


@dataclass(frozen=True)
class FaithfulnessScenario:
    """Spreads of the per-photo ROAD gap (LeRF - MoRF AUC of the target probability).

    Per photo and layer position x in [0, 1]: ``level + rise * x + photo + noise`` for the
    map under test, where ``photo`` (sd ``sd_photo``) is shared by the photo's maps of every
    kind (a photo the model is sure of has room for a larger gap whatever the map), ``rise``
    varies per photo with ``sd_rise`` and ``noise`` (sd ``sd_noise``) is each map's own.
    """

    level: float
    sd_photo: float
    sd_rise: float
    sd_noise: float
    #: the controls' level (a permuted or untrained map opens a small gap of its own)
    level_control: float


#: Provisional spreads, from the faithfulness phase on the default ResNet-50 over the shared
#: photos (see docs/calibration.md for the run they come from).
FAITHFULNESS_SCENARIOS: dict[str, FaithfulnessScenario] = {
    "faithfulness-beyond-random": FaithfulnessScenario(
        level=0.05, sd_photo=0.15, sd_rise=0.10, sd_noise=0.10, level_control=0.05
    ),
    "depth-faithfulness": FaithfulnessScenario(
        level=0.05, sd_photo=0.15, sd_rise=0.10, sd_noise=0.10, level_control=0.05
    ),
}


def _faithfulness_worlds(claim_id: str) -> tuple[str, ...]:
    return DEPTH_FAITHFULNESS_WORLDS if claim_id == "depth-faithfulness" else FAITHFULNESS_WORLDS


def simulate_faithfulness(
    claim_id: str, world: str, n: int, reps: int, rng: np.random.Generator
) -> list[StudyResult]:
    """``reps`` simulated studies of ``n`` photos for a faithfulness claim (ROAD gaps per photo,
    layer and map kind, written as flat curves whose areas are those gaps)."""
    from xai_checks.phases.faithfulness import MAP_KINDS, FaithfulnessRun

    if world not in _faithfulness_worlds(claim_id):
        raise ValueError(f"unknown world {world!r}; choose from {_faithfulness_worlds(claim_id)}")
    claim = get_claim(claim_id)
    sc = FAITHFULNESS_SCENARIOS[claim_id]
    size = {"null": 0.0, "effect": EFFECT_MULTIPLE, "boundary": 1.0, "confound": EFFECT_MULTIPLE}
    effect = size[world] * claim.sesoi
    x = np.linspace(0.0, 1.0, len(LAYERS))
    photo = sc.sd_photo * rng.standard_normal((reps, n, 1))
    gaps: dict[str, np.ndarray] = {}
    for kind in MAP_KINDS:
        if claim_id == "depth-faithfulness":
            # the model's gap rises by `effect` beyond the untrained maps' rise; under confound
            # both rise by it
            rise = effect if kind == "model" else (effect if world == "confound" else 0.0)
            level = sc.level if kind == "model" else sc.level_control
            shape = rise * x
        else:
            # the model's gap beats each control's by `effect` at every layer
            level = sc.level_control + (effect if kind == "model" else 0.0)
            shape = 0.0 * x
        per_photo_rise = sc.sd_rise * rng.standard_normal((reps, n, 1)) * x
        noise = sc.sd_noise * rng.standard_normal((reps, n, len(LAYERS)))
        gaps[kind] = level + shape + photo + per_photo_rise + noise
    k = 3
    fractions = (0.1, 0.5, 0.9)
    config = StudyConfig()
    studies = []
    for r in range(reps):
        run = FaithfulnessRun(layers=LAYERS, fractions=fractions, removal="road", kinds=MAP_KINDS)
        run.files = [f"sim{i:05d}.JPEG" for i in range(n)]
        for kind in MAP_KINDS:
            g = np.repeat(gaps[kind][r][..., None], k, axis=2)
            run.prob[kind] = {"morf": 0.5 - g / 2, "lerf": 0.5 + g / 2}
        study = StudyResult(
            config=config, photoset={"n_used": n}, under_test=_SimRun("pretrained", {}, [])
        )
        study.phase_results["faithfulness"] = run
        studies.append(study)
    return studies


def verdict_rates(
    claim_id: str, world: str, n: int, *, reps: int, seed: int, n_boot: int
) -> dict[str, float]:
    """The rate of each verdict over ``reps`` simulated studies (real evaluator)."""
    claim = get_claim(claim_id).with_(min_n=2, n_boot=n_boot)
    if "details" in claim.params:  # display-only tests off; the decision path is unchanged
        claim = claim.with_(details=False)
    rng = np.random.default_rng(
        [seed, worlds_for(claim_id).index(world), n, CALIBRATED_CLAIMS.index(claim_id)]
    )
    counts = dict.fromkeys(STATUSES, 0)
    for study in simulate(claim_id, world, n, reps, rng):
        counts[evaluate(claim, study).status.value] += 1
    return {s: c / reps for s, c in counts.items()}


def calibrate(
    *,
    claims: Sequence[str] = CALIBRATED_CLAIMS,
    ns: Sequence[int] = (10, 30, 50, 100, 300, 1000),
    reps: int = 500,
    n_boot: int = 500,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The calibration table: verdict rates per claim, world and n, with the targets."""
    start = time.perf_counter()
    table: dict[str, Any] = {}
    for claim_id in claims:
        claim = get_claim(claim_id)
        worlds = worlds_for(claim_id)
        rows = []
        for world in worlds:
            for n in ns:
                t0 = time.perf_counter()
                rates = verdict_rates(claim_id, world, n, reps=reps, seed=seed, n_boot=n_boot)
                rows.append({"world": world, "n": n, "reps": reps, **rates})
                if progress:
                    progress(
                        f"{claim_id} {world:16s} n={n:<5d} "
                        + " ".join(f"{s[:4]} {rates[s]:.3f}" for s in STATUSES)
                        + f"  ({time.perf_counter() - t0:.1f} s)"
                    )
        table[claim_id] = {
            "alpha": claim.alpha,
            "sesoi": claim.sesoi,
            "declared_min_n": claim.min_n,
            "scenario": asdict(SCENARIOS.get(claim_id) or FAITHFULNESS_SCENARIOS[claim_id]),
            "rows": rows,
        }
        table[claim_id]["min_n_from_table"] = min_n_from(table[claim_id])
    return {
        "schema": "xai-checks/calibration",
        "worlds": list(WORLDS),
        "ns": list(ns),
        "reps": reps,
        "n_boot": n_boot,
        "seed": seed,
        "seconds": time.perf_counter() - start,
        "claims": table,
        "targets": check_targets_dict(table),
    }


def _rate(entry: dict[str, Any], world: str, n: int, status: str) -> float | None:
    for row in entry["rows"]:
        if row["world"] == world and row["n"] == n:
            return float(row[status])
    return None


def min_n_from(entry: dict[str, Any], *, power: float = 0.8) -> int | None:
    """The smallest n at which SUPPORTED reaches ``power`` in every effect world (and stays).

    The measured rate itself must reach ``power`` (no Monte-Carlo slack: a claim's minimum is
    set where the table shows the power, not where it might be); the targets then check the
    same rates with the slack."""
    ns = sorted({row["n"] for row in entry["rows"]})
    worlds = [
        w for w in ("effect", "effect+confound") if any(r["world"] == w for r in entry["rows"])
    ]
    ok = [all((_rate(entry, w, n, "SUPPORTED") or 0) >= power for w in worlds) for n in ns]
    for i, n in enumerate(ns):
        if all(ok[i:]):
            return n
    return None


def mc_bound(rate: float, reps: int, *, upper: bool, level: float = 0.999) -> float:
    """The rate a binomial count of ``reps`` trials would not pass (one-sided ``level``)."""
    q = level if upper else 1 - level
    return float(sps.binom.ppf(q, reps, rate)) / reps


def check_targets_dict(table: dict[str, Any]) -> dict[str, list[str]]:
    """Each claim's failed targets (empty when every target holds)."""
    return {claim_id: check_targets(claim_id, entry) for claim_id, entry in table.items()}


def check_targets(claim_id: str, entry: dict[str, Any]) -> list[str]:
    """The issue's targets for one claim's rows, allowing Monte-Carlo error (99.9 % bounds)."""
    alpha = float(entry["alpha"])
    failures = []
    rows = entry["rows"]
    for row in rows:
        reps = int(row["reps"])
        if row["world"] in ("null", "confound", "boundary") or row["world"].startswith("trivial"):
            limit = mc_bound(alpha, reps, upper=True)
            if row["SUPPORTED"] > limit:
                failures.append(
                    f"false SUPPORTED {row['SUPPORTED']:.3f} > {limit:.3f} "
                    f"({row['world']}, n={row['n']})"
                )
        if row["world"] == "confound" and row["n"] >= 100:
            limit = mc_bound(0.9, reps, upper=False)
            if row["CONFOUNDED"] < limit:
                failures.append(
                    f"CONFOUNDED {row['CONFOUNDED']:.3f} < {limit:.3f} (confound, n={row['n']})"
                )
    min_n = entry.get("declared_min_n")
    for world in ("effect", "effect+confound"):
        rate = _rate(entry, world, int(min_n), "SUPPORTED") if min_n else None
        if rate is not None:
            reps = next(int(r["reps"]) for r in rows if r["world"] == world)
            limit = mc_bound(0.8, reps, upper=False)
            if rate < limit:
                failures.append(f"SUPPORTED {rate:.3f} < {limit:.3f} ({world}, min_n={min_n})")
    for world in sorted({r["world"] for r in rows}):  # no SUPPORTED -> CONFOUNDED flip as n grows
        series = sorted(((r["n"], r) for r in rows if r["world"] == world), key=lambda t: t[0])
        for (n0, a), (n1, b) in itertools.pairwise(series):
            reps = int(a["reps"])
            slack = 3 * math.sqrt(0.25 / reps)
            if (
                b["CONFOUNDED"] > a["CONFOUNDED"] + slack
                and b["SUPPORTED"] < a["SUPPORTED"] - slack
            ):
                failures.append(f"SUPPORTED -> CONFOUNDED as n grows {n0} -> {n1} ({world})")
    return failures


def to_markdown(doc: dict[str, Any]) -> str:
    """The calibration table as Markdown (committed as docs/calibration.md)."""
    lines = [
        "# Calibration: how often each verdict comes out in simulated worlds",
        "",
        f"Generated by `tox -e calibrate` (`python -m xai_checks.calibration`): {doc['reps']} "
        f"simulated studies per world and n, each judged by the claim's real evaluator "
        f"(n_boot = {doc['n_boot']}, min_n lowered to 2 so rates below the minimum show, each "
        f"claim alone, no Holm); seed {doc['seed']}; {doc['seconds']:.0f} s.",
        "",
        "Worlds: **null** (no depth effect, no confound), **confound** (the same rise in model "
        "and control, removed by pooling), **effect** (a rise beyond the control of "
        f"{EFFECT_MULTIPLE:g}x the claim's SESOI), **effect+confound** (both), "
        f"**trivial+confound** (the confound plus a rise beyond the control of "
        f"{TRIVIAL_MULTIPLE:g}x the SESOI: real but below the smallest effect of interest; the "
        "sanity claim, without a confound, has **trivial**). In null, confound and trivial "
        "every SUPPORTED is a false SUPPORTED. SUPPORTED needs each effect shown to reach the "
        "SESOI (the CI's lower bound at or above it), CONFOUNDED a control's excess shown below "
        "it. Targets: false SUPPORTED <= alpha (Monte-Carlo 99.9% bound), CONFOUNDED >= 0.9 "
        "under confound at n >= 100, SUPPORTED >= 0.8 in both effect worlds at the claim's "
        "min_n, no SUPPORTED -> CONFOUNDED flip as n grows.",
        "",
        "Spreads fitted to the real 200-photo baseline study (`SCENARIOS` in "
        "`xai_checks/calibration.py`): "
        + "; ".join(
            f"{cid}: " + ", ".join(f"{k} {v:g}" for k, v in sc.items() if v is not None)
            for cid, sc in ((c, e["scenario"]) for c, e in doc["claims"].items())
        )
        + ".",
        "",
    ]
    for claim_id, entry in doc["claims"].items():
        lines += [
            f"## {claim_id}",
            "",
            f"alpha {entry['alpha']}, SESOI {entry['sesoi']}, min_n declared "
            f"{entry['declared_min_n']}, min_n from this table {entry['min_n_from_table']}.",
            "",
            "| world | n | SUPPORTED | REFUTED | INCONCLUSIVE | CONFOUNDED |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for row in entry["rows"]:
            lines.append(
                f"| {row['world']} | {row['n']} | "
                + " | ".join(f"{row[s]:.3f}" for s in STATUSES)
                + " |"
            )
        failed = doc["targets"].get(claim_id, [])
        lines += [
            "",
            "Targets: " + ("all met." if not failed else "**missed**: " + "; ".join(failed)),
            "",
        ]
    return "\n".join(lines)


def readme_table(doc: dict[str, Any]) -> str:
    """The compact table the README shows: per claim, the rates that the targets are about
    (false SUPPORTED under null, confound and trivial, CONFOUNDED under confound and
    trivial+confound, SUPPORTED under the two effect worlds) at each n. ``tox -e calibrate``
    prints it; a test keeps the README's copy equal to the committed table."""
    ns = list(doc["ns"])
    cells = [
        ("null", "SUPPORTED", "false SUPPORTED, null"),
        ("confound", "SUPPORTED", "false SUPPORTED, confound"),
        ("confound", "CONFOUNDED", "CONFOUNDED, confound"),
        ("trivial+confound", "SUPPORTED", "false SUPPORTED, trivial+confound"),
        ("trivial+confound", "CONFOUNDED", "CONFOUNDED, trivial+confound"),
        ("trivial", "SUPPORTED", "false SUPPORTED, trivial"),
        ("effect", "SUPPORTED", "SUPPORTED (power), effect"),
        ("effect+confound", "SUPPORTED", "SUPPORTED (power), effect+confound"),
    ]
    head = "| claim (SESOI, min_n) | rate, world | " + " | ".join(f"n={n}" for n in ns) + " |"
    lines = [head, "|---|---|" + "---:|" * len(ns)]
    for claim_id, entry in doc["claims"].items():
        label = f"`{claim_id}` ({entry['sesoi']:g}, {entry['min_n_from_table']})"
        for world, status, what in cells:
            rates = [_rate(entry, world, n, status) for n in ns]
            if all(r is None for r in rates):
                continue
            shown = " | ".join("-" if r is None else f"{r:.3f}" for r in rates)
            lines.append(f"| {label} | {what} | {shown} |")
            label = ""
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xai_checks.calibration", description=__doc__)
    parser.add_argument("--reps", type=int, default=500)
    parser.add_argument("--n", type=int, nargs="+", default=[10, 30, 50, 100, 300, 1000])
    parser.add_argument("--n-boot", type=int, default=500)
    parser.add_argument("--claims", nargs="+", default=list(CALIBRATED_CLAIMS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/calibration"))
    args = parser.parse_args(argv)
    doc = calibrate(
        claims=args.claims,
        ns=args.n,
        reps=args.reps,
        n_boot=args.n_boot,
        seed=args.seed,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(to_markdown(doc))
    print("the README's table (paste it under 'Calibration'):\n" + readme_table(doc))
    failed = {k: v for k, v in doc["targets"].items() if v}
    print(f"wrote {args.out.with_suffix('.md')} and .json; targets missed: {failed or 'none'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
