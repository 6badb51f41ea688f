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

``boundary:<component>``  one component of the claim (the rise, the margin over the
                      baseline, the excess over each control, the joint contrast, one sanity
                      step) exactly at 1.0x the SESOI, every other at ``EFFECT_MULTIPLE`` times
                      it: where a minimal-effect test errs most often.

A run-level boundary world judges every claim together, each with one component at its SESOI,
and applies Holm across them: the family-wise false SUPPORTED rate.

Targets: every false SUPPORTED rate (null, confound, trivial, boundary, run-level) has a
one-sided Clopper-Pearson 95% upper bound at most alpha + 0.01, so a world where a rate is
compared with alpha needs about 2000 repetitions (the default for the boundary worlds); CONFOUNDED
under ``confound`` >= 0.9 at n >= 100; SUPPORTED
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
is judged alone (a family of one, no Holm) except in the run-level world.

``tox -e calibrate`` (or ``python -m xai_checks.calibration``) writes the full table.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import functools
import itertools
import json
import math
import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from xai_checks.claims import Status, apply_holm, evaluate, get_claim
from xai_checks.simulator import CONFOUND_RANGE, FITTED_CLAIMS, FittedClaim, load_fit
from xai_checks.stats import EFFECT_MULTIPLE
from xai_checks.study import GridPGRun, ModelRun, SanityRun, StudyConfig, StudyResult

__all__ = [
    "CALIBRATED_CLAIMS",
    "EFFECT_MULTIPLE",
    "SCENARIOS",
    "TRIVIAL_MULTIPLE",
    "WORLDS",
    "Scenario",
    "boundary_worlds",
    "calibrate",
    "check_targets",
    "cp_upper",
    "min_n_from",
    "run_boundary_rate",
    "simulate",
    "to_markdown",
]

#: ``gaussian``: the spreads of ``SCENARIOS``; ``fitted``: drawn from the fit to a real study
SIMULATORS = ("gaussian", "fitted")
#: studies per boundary world in the committed table. A rule whose true rate at the boundary
#: is exactly alpha (0.05) fails the target (one-sided 95% Clopper-Pearson upper bound <=
#: alpha + 0.01) with probability 0.39 at 2000 studies and 0.07 at 5000 (scipy.stats.binom):
#: 2000 cannot tell a rule at its nominal rate from one above it
TABLE_BOUNDARY_REPS = 5000
#: studies per null, confound and trivial cell at n >= the claim's min_n: their false SUPPORTED
#: rates sit well below alpha, which 1000 studies carry and 100 do not (two SUPPORTED in 100
#: give an upper bound of 0.062)
TABLE_FALSE_SUPPORTED_REPS = 1000
WORLDS = ("null", "confound", "effect", "effect+confound", "trivial+confound")
#: the sanity claim has no confound: its worlds
SANITY_WORLDS = ("null", "effect", "trivial")
#: the effect beyond the control in the ``trivial`` worlds, as a multiple of the SESOI
TRIVIAL_MULTIPLE = 0.75
#: the cascade steps of the sanity phase on a ResNet (output first)
#: the simulated studies' reference r is 0 on every photo, so the sanity claim's halfway
#: bound (1 + r) / 2 is this; the worlds set each step's margin below it
SANITY_BOUND = 0.5
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


#: Each claim's components: the effects SUPPORTED needs, one ``boundary:<component>`` world
#: each, where that component's true effect is exactly 1.0x the SESOI and every other one
#: ``EFFECT_MULTIPLE`` times it. A minimal-effect test is most often wrong there, so these
#: worlds carry the false-SUPPORTED claim.
BOUNDARY_COMPONENTS: dict[str, tuple[str, ...]] = {
    "seed-depth-ratio": ("rise", "untrained", "pooled", "joint"),
    "depth-localisation-gridpg": ("rise", "above", "untrained"),
    "depth-localisation-boxes": ("rise", "above", "untrained"),
    "sanity-randomisation": ("step",),
}
#: the component each claim puts at the SESOI in the run-level boundary world (every claim of
#: one run at its boundary, Holm across them)
RUN_BOUNDARY: dict[str, str] = {
    "seed-depth-ratio": "untrained",
    "depth-localisation-gridpg": "untrained",
    "depth-localisation-boxes": "untrained",
    "sanity-randomisation": "step",
}


def boundary_worlds(claim_id: str) -> tuple[str, ...]:
    """The claim's boundary worlds, ``boundary:<component>`` (none for a claim whose worlds
    carry a single ``boundary`` world of their own, as the faithfulness claims' do)."""
    return tuple(f"boundary:{c}" for c in BOUNDARY_COMPONENTS.get(claim_id, ()))


def worlds_for(claim_id: str) -> tuple[str, ...]:
    """The worlds a claim is calibrated in (the boundary worlds last)."""
    if claim_id in FAITHFULNESS_SCENARIOS:
        return _faithfulness_worlds(claim_id)
    base = SANITY_WORLDS if claim_id == "sanity-randomisation" else WORLDS
    return (*base, *boundary_worlds(claim_id))


def is_false_supported_world(world: str) -> bool:
    """Worlds where every SUPPORTED is a false SUPPORTED (an effect at or below the SESOI)."""
    return world in ("null", "confound") or world.startswith(("trivial", "boundary"))


class _SimRun(ModelRun):
    """A ModelRun whose per-layer columns are given as arrays (the evaluator is unchanged)."""

    def __init__(self, name: str, columns: dict[str, np.ndarray], records: list[dict[str, Any]]):
        super().__init__(name, {"source": "simulated"}, LAYERS, records)
        self._columns = columns

    def column(self, key: str) -> np.ndarray:
        return self._columns[key]


def _components(world: str, claim_id: str, sesoi: float) -> dict[str, float | None]:
    """Mean rises of a world: the model's, the control's, the model's and the control's
    after pooling, and (None: the scenario's level) the last layer's margin over the
    baseline. The excess over the control is ``model - control``, the rise left after pooling
    ``pooled``, the joint contrast ``pooled - control_pooled``."""
    if world.startswith("boundary:"):
        part = world.split(":", 1)[1]
        at, big = sesoi, EFFECT_MULTIPLE * sesoi
        if part not in BOUNDARY_COMPONENTS[claim_id]:
            raise ValueError(f"unknown boundary component {part!r} for {claim_id}")
        # the named component at the SESOI, every other one at EFFECT_MULTIPLE x the SESOI
        model = at if part == "rise" else big
        excess = at if part == "untrained" else big
        pooled = at if part == "pooled" else big
        joint = at if part == "joint" else big
        return {
            "model": model,
            "control": model - excess,
            "pooled": pooled,
            "control_pooled": pooled - joint,
            "above": at if part == "above" else big,
        }
    effect, confound = _shape(world, claim_id, sesoi)
    return {
        "model": effect + confound,
        "control": confound,
        "pooled": effect,
        "control_pooled": 0.0,
        "above": None,
    }


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
    claim_id: str,
    world: str,
    n: int,
    reps: int,
    rng: np.random.Generator,
    *,
    simulator: str = "gaussian",
) -> list[StudyResult]:
    """``reps`` simulated studies of ``n`` photos for one claim in one world (vectorised).

    ``simulator``: ``gaussian`` (the spreads of ``SCENARIOS``) or ``fitted`` (bounded,
    zero-inflated, tied values with the real study's dependence and missing photos:
    :mod:`xai_checks.simulator`; the box claim, which has no real boxes to fit, stays
    Gaussian)."""
    if world not in worlds_for(claim_id):
        raise ValueError(f"unknown world {world!r}; choose from {worlds_for(claim_id)}")
    if simulator not in SIMULATORS:
        raise ValueError(f"unknown simulator {simulator!r}; choose from {SIMULATORS}")
    if claim_id in FAITHFULNESS_SCENARIOS:
        return simulate_faithfulness(claim_id, world, n, reps, rng)
    if simulator == "fitted" and claim_id in FITTED_CLAIMS:
        return simulate_fitted(claim_id, world, n, reps, rng)
    claim = get_claim(claim_id)
    sc = SCENARIOS[claim_id]
    comp = _components(world, claim_id, claim.sesoi)
    if claim_id == "sanity-randomisation":
        bound = SANITY_BOUND
        steps = list(SANITY_STEPS)
        # the world's effect is how far below the bound the mean |rho| falls; in the boundary
        # world the first step falls exactly the SESOI below it, the others twice as far.
        # rho stays positive (|rho| is the statistic), so the clip never moves a mean.
        if world.startswith("boundary:"):
            margins = np.full(len(steps), EFFECT_MULTIPLE * claim.sesoi)
            margins[0] = claim.sesoi
        else:
            margins = np.full(len(steps), float(comp["model"] or 0.0))
        mean = (bound - margins)[None, :, None]
        rho = np.clip(mean + sc.sd_rho * rng.standard_normal((reps, len(steps), n)), -1, 1)
        return _sanity_studies(steps, rho)
    model_rise, control_rise = float(comp["model"] or 0.0), float(comp["control"] or 0.0)
    z = rng.standard_normal((reps, n))
    centre = sc.level
    if comp["above"] is not None:  # the last layer's mean sits ``above`` over the baseline
        chance = float(claim.params.get("chance", 0.0))
        centre = chance + float(comp["above"]) - model_rise
    level = centre + sc.sd_level * rng.standard_normal((reps, n))
    area = None
    if claim_id == "depth-localisation-boxes":
        area = rng.uniform(0.1, 0.6, size=(reps, n))
        shift = 0.0 if comp["above"] is None else centre
        level = area + shift + sc.sd_level * rng.standard_normal((reps, n))
    model = _layer_values(
        rng, reps, n, level=level, mean_rise=model_rise, sd_rise=sc.sd_rise,
        sd_noise=sc.sd_noise, z=z,
    )  # fmt: skip
    c_level = _pick(sc.level_control, sc.level) + _pick(
        sc.sd_level_control, sc.sd_level
    ) * rng.standard_normal((reps, n))
    if area is not None:
        c_level = area + _pick(sc.sd_level_control, sc.sd_level) * rng.standard_normal((reps, n))
    control = _layer_values(
        rng, reps, n, level=c_level, mean_rise=control_rise, sd_rise=sc.sd_rise_control,
        sd_noise=_pick(sc.sd_noise_control, sc.sd_noise),
    )  # fmt: skip
    zp = sc.pooled_corr * z + math.sqrt(1 - sc.pooled_corr**2) * rng.standard_normal((reps, n))
    p_level = level
    if sc.level_pooled is not None:
        p_level = sc.level_pooled + _pick(sc.sd_level_pooled, sc.sd_level) * rng.standard_normal(
            (reps, n)
        )
    pooled = _layer_values(
        rng, reps, n, level=p_level, mean_rise=float(comp["pooled"] or 0.0),
        sd_rise=_pick(sc.sd_rise_pooled, sc.sd_rise),
        sd_noise=_pick(sc.sd_noise_pooled, sc.sd_noise), z=zp,
    )  # fmt: skip
    # the control's pooled maps: its own level, the pooled spreads, no rise beyond the world's
    control_pooled = _layer_values(
        rng, reps, n, level=p_level, mean_rise=float(comp["control_pooled"] or 0.0),
        sd_rise=_pick(sc.sd_rise_pooled, sc.sd_rise),
        sd_noise=_pick(sc.sd_noise_pooled, sc.sd_noise),
    )  # fmt: skip
    return _studies(
        claim_id,
        {"model": model, "control": control, "pooled": pooled, "control_pooled": control_pooled},
        area,
        n,
        reps,
    )


def _sanity_studies(steps: Sequence[str], rho: np.ndarray) -> list[StudyResult]:
    """One study per rep from (reps, steps, n) Spearman rho."""
    studies = []
    for r in range(rho.shape[0]):
        study = StudyResult(
            config=StudyConfig(),
            photoset={"n_used": rho.shape[2]},
            under_test=_SimRun("pretrained", {}, []),
        )
        study.sanity = SanityRun(
            layer="layer4",
            steps=list(steps),
            rho={s: rho[r, j].tolist() for j, s in enumerate(steps)},
            reference=[0.0] * rho.shape[2],
        )
        studies.append(study)
    return studies


def _studies(
    claim_id: str,
    arrays: dict[str, np.ndarray],
    area: np.ndarray | None,
    n: int,
    reps: int,
) -> list[StudyResult]:
    """One study per rep from (reps, n, k) arrays per quantity."""
    config = StudyConfig()
    files = [f"sim{i:05d}.JPEG" for i in range(n)]
    model, control = arrays["model"], arrays["control"]
    pooled, control_pooled = arrays.get("pooled"), arrays.get("control_pooled")
    studies: list[StudyResult] = []

    records: list[dict[str, Any]]
    controls: dict[str, ModelRun]
    for r in range(reps):
        if claim_id == "seed-depth-ratio":
            records = [{"file": f, "ratio": {}} for f in files]
            assert pooled is not None and control_pooled is not None
            main = _SimRun("pretrained", {"ratio": model[r], "ratio_pooled": pooled[r]}, records)
            controls = {
                "untrained": _SimRun(
                    "untrained", {"ratio": control[r], "ratio_pooled": control_pooled[r]}, records
                )
            }
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


def _sanity_margins(world: str, claim_id: str, sesoi: float, steps: int) -> np.ndarray:
    """Each cascade step's margin below the bound in a sanity world: in the boundary world
    the first step sits exactly at the SESOI, the others at ``EFFECT_MULTIPLE`` times it."""
    if world.startswith("boundary:"):
        margins = np.full(steps, EFFECT_MULTIPLE * sesoi)
        margins[0] = sesoi
        return margins
    return np.full(steps, float(_components(world, claim_id, sesoi)["model"] or 0.0))


@functools.cache
def _fit() -> dict[str, FittedClaim]:
    return load_fit()


#: for a claim that judges its model's own rise by a trimmed mean (its ``trim``): the fitted
#: quantities so judged, each with the control quantity whose contrast with it is a mean
TRIMMED_PAIRS = {"model": "control", "pooled": "control_pooled"}


def simulate_fitted(
    claim_id: str, world: str, n: int, reps: int, rng: np.random.Generator
) -> list[StudyResult]:
    """``reps`` studies drawn from the fit to a real study (:mod:`xai_checks.simulator`): each
    quantity's latent scale moved so that its mean fitted rise (and, where the world sets it,
    the last layer's mean) is the world's exactly (for a claim with a ``trim``, the model's
    own rise, pooled or not, is placed by its trimmed mean, and each control's mean rise
    the world's excess below that quantity's mean); in the confound worlds the confound is
    drawn per study from ``CONFOUND_RANGE`` times the SESOI."""
    fit = _fit()[claim_id]
    claim = get_claim(claim_id)
    sesoi = claim.sesoi
    if claim_id == "sanity-randomisation":
        steps = fit.quantities["abs_rho"]
        bound = SANITY_BOUND
        shift = fit.level_shift(
            "abs_rho", bound - _sanity_margins(world, claim_id, sesoi, len(steps))
        )
        rho = fit.draw(rng, reps, n, {"abs_rho": shift})["abs_rho"]
        return _sanity_studies([s.split("/", 1)[1] for s in steps], np.swapaxes(rho, 1, 2))
    comp = _components(world, claim_id, sesoi)
    confound = np.zeros(reps)
    if world.endswith("confound"):
        lo, hi = CONFOUND_RANGE
        confound = rng.uniform(lo * sesoi, hi * sesoi, size=reps)
        comp = {**comp, "model": float(comp["model"] or 0.0) - _shape(world, claim_id, sesoi)[1]}
        comp["control"] = 0.0
    trim = float(getattr(claim, "trim", 0.0))
    shifts: dict[str, np.ndarray] = {}
    for q in fit.quantities:
        target = float(comp[q] or 0.0)
        # the confound moves the model and its control alike
        target_r = target + confound if q in ("model", "control") else np.full(reps, target)
        paired = {control: own for own, control in TRIMMED_PAIRS.items()}
        # only the localisation claims decide on the last layer's margin over a baseline
        if q == "model" and comp["above"] is not None and "above" in BOUNDARY_COMPONENTS[claim_id]:
            chance = float(claim.params.get("chance", 0.0))
            shifts[q] = fit.rise_and_last_shift(q, target, chance + float(comp["above"]))
        elif trim and q in TRIMMED_PAIRS:
            shifts[q] = fit.trimmed_rise_shift(q, target_r, trim=trim)
        elif trim and q in paired:
            # the contrast with the control is a mean: the control's mean rise sits the
            # world's excess below the mean rise that the trimmed target gave its model
            own = paired[q]
            excess = float(comp[own] or 0.0) - target
            rows, back = np.unique(shifts[own], axis=0, return_inverse=True)
            own_mean = fit.mean_rises_at(own, rows)[back.ravel()]
            shifts[q] = fit.rise_shift(q, own_mean - excess)
        else:
            shifts[q] = fit.rise_shift(q, target_r)
    return _studies(claim_id, fit.draw(rng, reps, n, shifts), None, n, reps)


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

    Per photo and layer position x in [0, 1]:
    ``level + rise * x + photo + kind + noise`` for the map under test, where ``photo``
    (sd ``sd_photo``) is shared by the photo's maps of every kind (a photo the model is sure of
    has room for a larger gap whatever the map), ``kind`` (sd ``sd_kind``) is shared by one map
    kind's layers on the photo (what makes its layers' gaps correlate), ``rise`` varies per
    photo and kind with ``sd_rise`` and ``noise`` (sd ``sd_noise``) is each map's own.
    """

    level: float
    sd_photo: float
    sd_rise: float
    sd_noise: float
    #: the controls' level (a permuted or untrained map opens a small gap of its own)
    level_control: float
    sd_kind: float = 0.0


#: Spreads fitted to the faithfulness phase on the default ResNet-50 over 24 shared photos
#: (docs/calibration-faithfulness.md gives the run and the fitted moments): the paired
#: differences the claims test have a per-photo sd of about 0.25-0.37 per layer and 0.29 for
#: the rise beyond the untrained maps; a map kind's layers correlate (about 0.7 for the model
#: and the untrained maps); the kinds' photo means hardly do, so sd_photo is 0.
_FITTED_FAITHFULNESS = FaithfulnessScenario(
    level=0.06, sd_photo=0.0, sd_rise=0.127, sd_noise=0.12, level_control=0.0, sd_kind=0.16
)
FAITHFULNESS_SCENARIOS: dict[str, FaithfulnessScenario] = {
    "faithfulness-beyond-random": _FITTED_FAITHFULNESS,
    "depth-faithfulness": _FITTED_FAITHFULNESS,
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
        kind_level = sc.sd_kind * rng.standard_normal((reps, n, 1))
        noise = sc.sd_noise * rng.standard_normal((reps, n, len(LAYERS)))
        gaps[kind] = level + shape + photo + kind_level + per_photo_rise + noise
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
    claim_id: str,
    world: str,
    n: int,
    *,
    reps: int,
    seed: int,
    n_boot: int,
    simulator: str = "gaussian",
) -> dict[str, float]:
    """The rate of each verdict over ``reps`` simulated studies (real evaluator)."""
    claim = _calibration_claim(claim_id, n_boot)
    rng = np.random.default_rng(
        [seed, worlds_for(claim_id).index(world), n, CALIBRATED_CLAIMS.index(claim_id)]
    )
    counts = dict.fromkeys(STATUSES, 0)
    for study in simulate(claim_id, world, n, reps, rng, simulator=simulator):
        counts[evaluate(claim, study).status.value] += 1
    return {s: c / reps for s, c in counts.items()}


def cp_upper(count: int, reps: int) -> float:
    """Clopper-Pearson one-sided 95% upper bound of a rate of ``count`` in ``reps`` (scipy).

    One-sided because the target is an upper limit on the rate: the bound exceeds the true
    rate at most 5% of the time, which is what "the rate is at most alpha + slack" needs."""
    test = sps.binomtest(count, reps, alternative="less")
    return float(test.proportion_ci(confidence_level=0.95).high)


def _row(world: str, n: int, reps: int, rates: dict[str, float]) -> dict[str, Any]:
    """A table row: the rates, and the Monte-Carlo error of the rate the world is about."""
    row: dict[str, Any] = {"world": world, "n": n, "reps": reps, **rates}
    key = "SUPPORTED"
    p = rates[key]
    row["mc_se"] = math.sqrt(p * (1 - p) / reps)
    row["supported_cp_upper"] = cp_upper(round(p * reps), reps)
    return row


def run_boundary_rate(
    *,
    n: int,
    reps: int,
    seed: int,
    n_boot: int,
    claims: Sequence[str] = tuple(RUN_BOUNDARY),
    simulator: str = "gaussian",
) -> dict[str, Any]:
    """The run-level boundary world: every claim of one run has a component exactly at its
    SESOI (``RUN_BOUNDARY``), the others at ``EFFECT_MULTIPLE`` times it; the claims are
    judged together and Holm runs across them (:func:`xai_checks.claims.apply_holm`).

    Returns the family-wise false SUPPORTED rate (any claim SUPPORTED in a run) with Holm,
    and without it for contrast."""
    streams = {
        cid: simulate(
            cid,
            f"boundary:{RUN_BOUNDARY[cid]}",
            n,
            reps,
            np.random.default_rng([seed, 99, n, CALIBRATED_CLAIMS.index(cid)]),
            simulator=simulator,
        )
        for cid in claims
    }
    judges = {cid: _calibration_claim(cid, n_boot) for cid in claims}
    any_holm = any_raw = 0
    for r in range(reps):
        verdicts = [evaluate(judges[cid], streams[cid][r]) for cid in claims]
        any_raw += any(v.status is Status.SUPPORTED for v in verdicts)
        apply_holm(verdicts)
        any_holm += any(v.status is Status.SUPPORTED for v in verdicts)
    return {
        "world": "run-boundary",
        "claims": list(claims),
        "components": {cid: RUN_BOUNDARY[cid] for cid in claims},
        "n": n,
        "reps": reps,
        "familywise_false_supported_holm": any_holm / reps,
        "familywise_cp_upper_holm": cp_upper(any_holm, reps),
        "familywise_false_supported_without_holm": any_raw / reps,
        "mc_se": math.sqrt((any_holm / reps) * (1 - any_holm / reps) / reps),
    }


def _calibration_claim(claim_id: str, n_boot: int) -> Any:
    claim = get_claim(claim_id).with_(min_n=2, n_boot=n_boot)
    if "details" in claim.params:  # display-only tests off; the decision path is unchanged
        claim = claim.with_(details=False)
    return claim


class _Deferred:
    """A task run when its result is asked for (the one-process pool)."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._call = call

    def result(self) -> Any:
        return self._call()


class _InProcess(contextlib.AbstractContextManager["_InProcess"]):
    """The pool of ``jobs=1``: each cell runs in this process, in table order, as it is read."""

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn: Callable[..., Any], *args: Any) -> _Deferred:
        return _Deferred(functools.partial(fn, *args))


def _pool(jobs: int) -> Any:
    if jobs <= 1:
        return _InProcess()
    # spawn: a forked child would inherit the parent's torch and BLAS thread pools
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=jobs, mp_context=multiprocessing.get_context("spawn")
    )


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    return call(), time.perf_counter() - t0


def calibrate(
    *,
    claims: Sequence[str] = CALIBRATED_CLAIMS,
    ns: Sequence[int] = (10, 30, 50, 100, 300, 1000),
    reps: int = 300,
    boundary_ns: Sequence[int] = (100, 300),
    boundary_reps: int = 2000,
    false_supported_reps: int = TABLE_FALSE_SUPPORTED_REPS,
    run_n: int | None = 100,
    n_boot: int = 500,
    seed: int = 0,
    simulator: str = "gaussian",
    jobs: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The calibration table: verdict rates per claim, world and n, with the targets.

    ``reps`` studies per cell in the null, confound, effect and trivial worlds;
    ``boundary_reps`` in the boundary worlds (at ``boundary_ns``) and the run-level one (at
    ``run_n``; None: skip), where a rate is compared with alpha; ``false_supported_reps`` in
    the null, confound and trivial worlds at n >= the claim's min_n, where the false SUPPORTED
    target holds too. ``jobs`` processes compute the cells (the table does not depend on it).
    """
    start = time.perf_counter()
    cells: dict[str, list[tuple[str, int, int]]] = {}
    for claim_id in claims:
        # every world where a rate is compared with alpha at the SESOI: the boundary:<part>
        # worlds, and the faithfulness claims' single boundary world
        at_sesoi = [w for w in worlds_for(claim_id) if w == "boundary" or w.startswith("boundary:")]
        min_n = get_claim(claim_id).min_n
        cells[claim_id] = [
            (w, n, false_supported_reps if is_false_supported_world(w) and n >= min_n else reps)
            for w in worlds_for(claim_id)
            if w not in at_sesoi
            for n in ns
        ]
        cells[claim_id] += [(w, n, boundary_reps) for w in at_sesoi for n in boundary_ns]
    run_claims = [c for c in claims if c in RUN_BOUNDARY]
    # each cell draws from its own seeded stream, so the cells are independent and a pool of
    # processes gives the table that one process gives
    with _pool(jobs) as pool:
        # the run-level world is the longest task: first, so that it does not run alone at the end
        run_future = None
        if run_n is not None:
            run_future = pool.submit(
                _timed,
                functools.partial(
                    run_boundary_rate,
                    n=run_n,
                    reps=boundary_reps,
                    seed=seed,
                    n_boot=n_boot,
                    claims=run_claims,
                    simulator=simulator,
                ),
            )
        pending = {
            (claim_id, world, n): pool.submit(
                _timed,
                functools.partial(
                    verdict_rates,
                    claim_id,
                    world,
                    n,
                    reps=k,
                    seed=seed,
                    n_boot=n_boot,
                    simulator=simulator,
                ),
            )
            for claim_id, rows in cells.items()
            for world, n, k in rows
        }
        table: dict[str, Any] = {}
        for claim_id, claim_cells in cells.items():
            claim = get_claim(claim_id)
            rows = []
            for world, n, k in claim_cells:
                rates, seconds = pending[(claim_id, world, n)].result()
                rows.append(_row(world, n, k, rates))
                if progress:
                    progress(
                        f"{claim_id} {world:18s} n={n:<5d} reps={k:<5d} "
                        + " ".join(f"{s[:4]} {rates[s]:.3f}" for s in STATUSES)
                        + f"  ({seconds:.1f} s)"
                    )
            table[claim_id] = {
                "alpha": claim.alpha,
                "sesoi": claim.sesoi,
                "declared_min_n": claim.min_n,
                "scenario": asdict(SCENARIOS.get(claim_id) or FAITHFULNESS_SCENARIOS[claim_id]),
                "rows": rows,
            }
            table[claim_id]["min_n_from_table"] = min_n_from(table[claim_id])
        run = None
        if run_future is not None:
            run, seconds = run_future.result()
            if progress:
                progress(
                    f"run-boundary n={run_n} reps={boundary_reps}: family-wise false SUPPORTED "
                    f"{run['familywise_false_supported_holm']:.3f} with Holm, "
                    f"{run['familywise_false_supported_without_holm']:.3f} without "
                    f"({seconds:.1f} s)"
                )
    alpha = min((e["alpha"] for e in table.values()), default=0.05)
    targets = check_targets_dict(table)
    if run is not None and run["familywise_cp_upper_holm"] > alpha + TARGET_SLACK:
        targets["run-boundary"] = [
            f"family-wise false SUPPORTED upper bound {run['familywise_cp_upper_holm']:.3f} > "
            f"{alpha + TARGET_SLACK:.3f}"
        ]
    return {
        "schema": "xai-checks/calibration",
        "worlds": list(WORLDS),
        "boundary_worlds": {cid: list(boundary_worlds(cid)) for cid in claims},
        "ns": list(ns),
        "reps": reps,
        "boundary_ns": list(boundary_ns),
        "boundary_reps": boundary_reps,
        "false_supported_reps": false_supported_reps,
        "n_boot": n_boot,
        "seed": seed,
        "simulator": simulator,
        "seconds": time.perf_counter() - start,
        "claims": table,
        "run_boundary": run,
        "targets": targets,
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


#: a false SUPPORTED rate's one-sided Clopper-Pearson 95% upper bound must be at most alpha + this
TARGET_SLACK = 0.01


def mc_bound(rate: float, reps: int, *, upper: bool, level: float = 0.999) -> float:
    """The rate a binomial count of ``reps`` trials would not pass (one-sided ``level``)."""
    q = level if upper else 1 - level
    return float(sps.binom.ppf(q, reps, rate)) / reps


def check_targets_dict(table: dict[str, Any]) -> dict[str, list[str]]:
    """Each claim's failed targets (empty when every target holds)."""
    return {claim_id: check_targets(claim_id, entry) for claim_id, entry in table.items()}


def check_targets(claim_id: str, entry: dict[str, Any]) -> list[str]:
    """The targets for one claim's rows.

    False SUPPORTED (null, confound, trivial and boundary worlds, at n >= the claim's declared
    ``min_n``, where it can say SUPPORTED): the one-sided Clopper-Pearson 95% upper bound of the
    rate at most alpha + ``TARGET_SLACK``, so the table's reps must be enough to carry the claim.
    Power and CONFOUNDED: 99.9 % binomial bounds around 0.8 and 0.9."""
    alpha = float(entry["alpha"])
    failures = []
    rows = entry["rows"]
    min_n = entry.get("declared_min_n")
    for row in rows:
        reps = int(row["reps"])
        # below min_n the claim reads INCONCLUSIVE whatever the data: the table shows the rate
        # the rule alone would give there, but no user can get that SUPPORTED
        judged = not min_n or int(row["n"]) >= int(min_n)
        if judged and is_false_supported_world(row["world"]):
            upper = cp_upper(round(row["SUPPORTED"] * reps), reps)
            if upper > alpha + TARGET_SLACK:
                failures.append(
                    f"false SUPPORTED {row['SUPPORTED']:.3f} (upper bound {upper:.3f}) > "
                    f"{alpha + TARGET_SLACK:.3f} ({row['world']}, n={row['n']}, reps={reps})"
                )
        if row["world"] == "confound" and row["n"] >= 100:
            limit = mc_bound(0.9, reps, upper=False)
            if row["CONFOUNDED"] < limit:
                failures.append(
                    f"CONFOUNDED {row['CONFOUNDED']:.3f} < {limit:.3f} (confound, n={row['n']})"
                )
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
    slack = TARGET_SLACK
    lines = [
        "# Calibration: how often each verdict comes out in simulated worlds",
        "",
        f"Generated by `tox -e calibrate` (`python -m xai_checks.calibration`): "
        f"{doc['boundary_reps']} simulated studies per boundary world (n = "
        f"{', '.join(map(str, doc['boundary_ns']))}) and for the run-level boundary world, "
        f"{doc.get('false_supported_reps', doc['reps'])} per null, confound and trivial cell "
        f"at n >= the claim's min_n, {doc['reps']} per other cell; each study judged by the "
        f"claim's real evaluator (n_boot = {doc['n_boot']}, min_n lowered to 2 so rates below "
        f"the minimum show, each claim alone except in the run-level world); the "
        f"`{doc.get('simulator', 'gaussian')}` simulator ([simulator.md](simulator.md)); seed "
        f"{doc['seed']}; {doc['seconds']:.0f} s.",
        "",
        "Worlds: **null** (no depth effect, no confound), **confound** (the same rise in model "
        "and control, removed by pooling), **effect** (a rise beyond the control of "
        f"{EFFECT_MULTIPLE:g}x the claim's SESOI), **effect+confound** (both), "
        f"**trivial+confound** (the confound plus a rise beyond the control of "
        f"{TRIVIAL_MULTIPLE:g}x the SESOI; the sanity claim, without a confound, has "
        "**trivial**), and **boundary:<component>**: one component of the claim (its rise, "
        "its margin over the baseline, its excess over each control, the joint contrast, one "
        "sanity step) exactly at 1.0x the SESOI and every other at "
        f"{EFFECT_MULTIPLE:g}x: where a minimal-effect test is most often wrong. In null, "
        "confound, trivial and boundary worlds every SUPPORTED is a false SUPPORTED.",
        "",
        "SUPPORTED needs each effect's lower bound (the union of the BCa bootstrap and "
        "Student's t intervals; for an effect judged by its trimmed mean, the seed claim's own "
        "rise, the Tukey-McLaughlin t interval in place of Student's) at or above the SESOI; "
        "in a boundary world the component at the SESOI is that effect's estimand, its trimmed "
        "mean where it has one. Its p-value, which Holm adjusts across "
        "a run's claims, is that minimal-effect test's. Targets: every false SUPPORTED rate's "
        f"one-sided Clopper-Pearson 95% upper bound <= alpha + {slack:g}; CONFOUNDED >= 0.9 under "
        "confound at n >= 100 and SUPPORTED >= 0.8 in both effect worlds at the claim's min_n "
        "(99.9% binomial bounds); no SUPPORTED -> CONFOUNDED flip as n grows. `mc se` is the "
        "Monte-Carlo standard error of the SUPPORTED rate, `upper` its one-sided "
        "Clopper-Pearson 95% upper bound.",
        "",
    ]
    run = doc.get("run_boundary")
    if run:
        lines += [
            "## Run-level boundary world (Holm across the claims)",
            "",
            f"Every claim of one run has one component at exactly its SESOI "
            f"({', '.join(f'{c}: {p}' for c, p in run['components'].items())}), n = "
            f"{run['n']}, {run['reps']} runs. Family-wise false SUPPORTED (any claim of the "
            f"run SUPPORTED): **{run['familywise_false_supported_holm']:.3f}** with Holm "
            f"(mc se {run['mc_se']:.3f}, upper {run['familywise_cp_upper_holm']:.3f}); "
            f"{run['familywise_false_supported_without_holm']:.3f} without it.",
            "",
        ]
    lines += [
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
            "| world | n | reps | SUPPORTED | mc se | upper | REFUTED | INCONCLUSIVE | "
            "CONFOUNDED |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in entry["rows"]:
            lines.append(
                f"| {row['world']} | {row['n']} | {row['reps']} | {row['SUPPORTED']:.3f} | "
                f"{row.get('mc_se', math.nan):.3f} | "
                f"{row.get('supported_cp_upper', math.nan):.3f} | "
                + " | ".join(f"{row[s]:.3f}" for s in STATUSES if s != "SUPPORTED")
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
    """The compact table the docs show: per claim, the rates that the targets are about
    (false SUPPORTED under null, confound and trivial, CONFOUNDED under confound and
    trivial+confound, SUPPORTED under the two effect worlds) at each n. The docs site
    generates it from ``docs/calibration.json`` at build time (``scripts/docs_hooks.py``)."""
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


#: the fewest bootstrap resamples ``--n-boot`` takes
MIN_BOOT = 100


def _at_least(low: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``low`` (a usage error, exit 2, otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xai_checks.calibration", description=__doc__)
    parser.add_argument("--reps", type=_at_least(1), default=100)
    parser.add_argument("--n", type=_at_least(2), nargs="+", default=[10, 30, 50, 100, 300])
    parser.add_argument("--boundary-reps", type=_at_least(1), default=TABLE_BOUNDARY_REPS)
    parser.add_argument("--boundary-n", type=_at_least(2), nargs="+", default=[100])
    parser.add_argument(
        "--false-supported-reps",
        type=_at_least(1),
        default=TABLE_FALSE_SUPPORTED_REPS,
        help="studies per null, confound and trivial cell at n >= the claim's min_n",
    )
    parser.add_argument("--run-n", type=_at_least(2), default=100)
    parser.add_argument(
        "--n-boot",
        type=_at_least(MIN_BOOT),
        default=500,
        help=f"bootstrap resamples per interval (at least {MIN_BOOT}: a 95%% interval from "
        "fewer rests on the two or three most extreme resamples of each tail)",
    )
    parser.add_argument(
        "--claims",
        nargs="+",
        choices=list(CALIBRATED_CLAIMS),
        default=list(SCENARIOS),
        help="default: the claims of docs/calibration.md (the faithfulness claims' provisional "
        "table is docs/calibration-faithfulness.md)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--simulator",
        choices=SIMULATORS,
        default="gaussian",
        help="gaussian: the spreads of SCENARIOS; fitted: bounded, zero-inflated values with "
        "a real study's dependence and missing photos (xai_checks/data/simulator_fit.json)",
    )
    parser.add_argument(
        "--jobs",
        type=_at_least(1),
        default=1,
        help="processes that compute the cells (each cell has its own seeded stream, so the "
        "table is the same for any number)",
    )
    parser.add_argument("--out", type=Path, default=Path("docs/calibration"))
    args = parser.parse_args(argv)
    doc = calibrate(
        claims=args.claims,
        ns=args.n,
        reps=args.reps,
        boundary_ns=args.boundary_n,
        boundary_reps=args.boundary_reps,
        false_supported_reps=args.false_supported_reps,
        run_n=args.run_n,
        n_boot=args.n_boot,
        seed=args.seed,
        simulator=args.simulator,
        jobs=args.jobs,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(to_markdown(doc))
    print("the compact table (the docs site shows it from the .json):\n" + readme_table(doc))
    failed = {k: v for k, v in doc["targets"].items() if v}
    print(f"wrote {args.out.with_suffix('.md')} and .json; targets missed: {failed or 'none'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
