"""A simulator that looks like the data: per-photo numbers drawn from a real study's shape.

The calibration (:mod:`xai_checks.calibration`) judges simulated studies with the claims' real
evaluators. This module draws those studies from a fit to a real run's per-photo values
(``results.json``) instead of from Gaussians:

* **marginals**: each column (one metric of one model at one layer, or one sanity step) keeps
  the real column's share of exact zeros and the quantiles of its positive values, so draws
  are bounded by the observed range ([0, 1] for shares and |rho|), zero-inflated where the
  data are, and tied where the data are;
* **the pooled grid**: a column of maps pooled to the coarsest (7x7) grid is rounded to
  multiples of 1/49, as the real pooled ratio is (at random, up with probability equal to
  the remainder, so the rounding moves no mean);
* **dependence**: a Gaussian copula whose correlation matrix is the Pearson correlation of
  the real columns' normal scores (ranks, ties averaged, through the normal quantile
  function), so layer-to-layer, model-to-control and model-to-pooled dependence are the
  real study's;
* **missing photos**: each claim loses photos at the real run's rate (a GridPG target whose
  control map has no positive mass in the mosaic, a sanity step whose randomised map is
  constant), drawn independently of the values;
* **the confound**: drawn per simulated study from a range (``confound_range``, in units of
  the claim's SESOI), not fixed at one value.

A world sets each quantity's mean fitted rise (and, for a localisation claim, the last
layer's mean) exactly: every column of a quantity is moved on the value scale by
``rise * (x - 1/2)`` (x the layer's position in [0, 1]) and kept in [0, 1] and on its grid,
and the move that gives the target mean is solved on the marginals' exact expectation (a fine
quantile grid), so the true effect sits at the SESOI where a boundary world puts it, bounds,
zeros and grid included. The move keeps each layer's spread and shape; it cannot keep the
real support, since a world asks for rises the real model does not show.

``python -m xai_checks.simulator fit RESULTS.json`` writes the fit
(``xai_checks/data/simulator_fit.json``); ``python -m xai_checks.simulator qq RESULTS.json``
draws the QQ comparison of simulated and real per-photo effects (``docs/assets/simulator-qq.png``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize, special
from scipy import stats as sps

from xai_checks.stats import depth_rise

__all__ = [
    "FITTED_CLAIMS",
    "FIT_FILE",
    "FittedClaim",
    "Marginal",
    "fit_results",
    "load_fit",
    "per_photo_effects",
    "qq_figure",
]

FIT_FILE = Path(__file__).parent / "data" / "simulator_fit.json"
#: the claims drawn from the fit (the box claim has no real boxes to fit: it stays Gaussian)
FITTED_CLAIMS = ("seed-depth-ratio", "depth-localisation-gridpg", "sanity-randomisation")
LAYERS = ("layer1", "layer2", "layer3", "layer4")
#: the cascade steps of a ResNet-50, output first (the order of the sanity columns)
SANITY_STEP_NAMES = ("fc", "layer4", "layer3", "layer2", "layer1", "conv1+bn1")
#: quantiles stored per column's positive values
QUANTILE_POINTS = 101
#: the coarsest map grid of a ResNet-50 at 224 px (layer4): pooled ratios are multiples of 1/49
POOLED_GRID = 49
#: the confound's range, in units of the claim's SESOI: large enough that the confound alone
#: passes the rise test (the case CONFOUNDED exists for), and spread so no one value is tuned
CONFOUND_RANGE = (1.5, 3.0)
#: the value-scale offsets on which a quantity's mean rise is tabulated and inverted
_SHIFT_GRID = np.linspace(-2.0, 2.0, 1601)
#: the Monte-Carlo sample on which a trimmed mean rise is placed: its standard error is about
#: 1/600 of the rise's spread, small beside a study's (1/10 of it at 100 photos)
TRIM_MC_PHOTOS = 400_000
TRIM_MC_SEED = 20_261_203
#: per (fit, quantity): the fit and its Monte-Carlo sample's values before any move
_MC_SAMPLES: dict[tuple[int, str], tuple[Any, np.ndarray]] = {}
#: probability midpoints for the marginals' exact expectations
_U = (np.arange(4000) + 0.5) / 4000
_Z_OF_U = sps.norm.ppf(_U)

#: the standard normal CDF: ``sps.norm.cdf`` computes it with this function, behind argument
#: checks that cost several times the evaluation on the simulator's small per-call arrays
_normal_cdf = special.ndtr


@dataclass(frozen=True)
class Marginal:
    """One column's distribution: a share of exact zeros, and quantiles of the rest."""

    zero_share: float
    quantiles: np.ndarray
    grid: int | None = None

    def values(
        self,
        z: np.ndarray,
        offset: np.ndarray | float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Values for latent standard-normal draws ``z`` (monotone in z), moved by ``offset``
        on the value scale and kept in [0, 1] (a share or |rho| cannot leave it; what a move
        pushes past a bound piles up there, as zeros do in the data).

        A grid column is rounded to its grid at random, up with probability equal to the
        remainder (unbiased, so a move smaller than a cell still moves the mean, as a small
        change of a map moves some photos by a cell and not others); ``rng`` None: the
        unrounded values, whose mean is the rounded values' expectation."""
        return self.moved(self.unmoved(_normal_cdf(z)), offset, rng)

    def unmoved(self, u: np.ndarray) -> np.ndarray:
        """The column's values for uniform draws ``u`` before any move or rounding."""
        probs = np.linspace(0.0, 1.0, len(self.quantiles))
        rest = np.clip((u - self.zero_share) / max(1.0 - self.zero_share, 1e-12), 0.0, 1.0)
        return np.asarray(
            np.where(u < self.zero_share, 0.0, np.interp(rest, probs, self.quantiles))
        )

    def moved(
        self,
        unmoved: np.ndarray,
        offset: np.ndarray | float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """``unmoved`` values moved by ``offset``, kept in [0, 1] and rounded to the grid (see
        :meth:`values`)."""
        out = np.clip(unmoved + offset, 0.0, 1.0)
        if self.grid and rng is not None:
            cells = out * self.grid
            out = (
                np.floor(cells) + (rng.random(cells.shape) < cells - np.floor(cells))
            ) / self.grid
        return np.asarray(out, dtype=np.float64)

    def mean(self, offset: np.ndarray | float) -> np.ndarray:
        """The exact mean of the column moved by ``offset`` (each of them)."""
        o = np.atleast_1d(np.asarray(offset, dtype=np.float64))
        return self.values(_Z_OF_U[None, :], o[:, None]).mean(axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "zero_share": self.zero_share,
            "quantiles": [round(float(q), 6) for q in self.quantiles],
            "grid": self.grid,
        }

    @classmethod
    def fit(cls, values: np.ndarray, *, grid: int | None = None) -> Marginal:
        v = np.asarray(values, dtype=np.float64)
        zero = float(np.mean(v == 0.0))
        positive = v[v != 0.0]
        if not len(positive):
            positive = np.zeros(1)
        q = np.quantile(positive, np.linspace(0.0, 1.0, QUANTILE_POINTS))
        return cls(zero_share=zero, quantiles=q, grid=grid)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Marginal:
        return cls(
            zero_share=float(d["zero_share"]),
            quantiles=np.asarray(d["quantiles"], dtype=np.float64),
            grid=d.get("grid"),
        )


@dataclass(frozen=True)
class FittedClaim:
    """A claim's fitted columns: ``quantities`` name groups of columns (one per layer, or one
    per sanity step) whose latent scale a world moves together."""

    claim_id: str
    quantities: dict[str, list[str]]
    marginals: dict[str, Marginal]
    corr: np.ndarray
    #: per quantity: the share of photos that quantity loses (NaN in the real run)
    missing: dict[str, float]
    n_photos: int

    @property
    def columns(self) -> list[str]:
        return [c for cols in self.quantities.values() for c in cols]

    def draw(
        self, rng: np.random.Generator, reps: int, n: int, shifts: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """(reps, n, k) values per quantity; ``shifts[q]`` is (reps, k) or (k,) offsets on the
        value scale. Missing photos are NaN in every column of the quantity that lost them."""
        cols = self.columns
        chol = np.linalg.cholesky(self.corr)
        z = rng.standard_normal((reps, n, len(cols))) @ chol.T
        out: dict[str, np.ndarray] = {}
        j = 0
        for q, names in self.quantities.items():
            k = len(names)
            shift = np.broadcast_to(np.asarray(shifts.get(q, np.zeros(k))), (reps, k))
            vals = np.empty((reps, n, k))
            for i, name in enumerate(names):
                vals[..., i] = self.marginals[name].values(z[..., j + i], shift[:, None, i], rng)
            rate = self.missing.get(q, 0.0)
            if rate > 0:
                lost = rng.random((reps, n)) < rate
                vals[lost] = np.nan
            out[q] = vals
            j += k
        return out

    # ------------------------------------------------------------------ targets
    def rise_shift(self, quantity: str, target: np.ndarray | float) -> np.ndarray:
        """(len(target), k) offsets ``rise * (x - 1/2)`` giving each target mean rise
        (centred, so that deep and shallow layers move apart and every term of the mean rise
        grows with ``rise``)."""
        names = self.quantities[quantity]
        centred = np.linspace(-0.5, 0.5, len(names))
        curve = self.mean_rises_at(quantity, _SHIFT_GRID[:, None] * centred[None, :])
        target = np.atleast_1d(np.asarray(target, dtype=np.float64))
        rise = _invert(quantity, target, curve)
        return rise[:, None] * centred[None, :]

    def trimmed_rise_shift(
        self, quantity: str, target: np.ndarray | float, *, trim: float
    ) -> np.ndarray:
        """:meth:`rise_shift` for the ``trim`` trimmed mean of the per-photo fitted rise.

        The trimmed mean of a sum of dependent, bounded, tied columns has no closed form, so
        it is computed on one Monte-Carlo sample of ``TRIM_MC_PHOTOS`` photos (seeded, the
        same for every call, the grid's rounding included). On that sample each photo's rise,
        and so every order statistic and the trimmed mean, is nondecreasing in the move, so
        each target is found by bisection (Brent). Many distinct targets (a confound drawn
        per study) are read off the curve between the two extreme targets' moves."""
        names = self.quantities[quantity]
        centred = np.linspace(-0.5, 0.5, len(names))
        targets = np.atleast_1d(np.asarray(target, dtype=np.float64))

        def trimmed(a: float) -> float:
            return self._mc_trimmed_rise(quantity, a * centred, trim)

        lo_a, hi_a = float(_SHIFT_GRID[0]), float(_SHIFT_GRID[-1])
        reach = (trimmed(lo_a), trimmed(hi_a))
        if targets.min() < reach[0] or targets.max() > reach[1]:
            raise ValueError(
                f"a target trimmed mean rise of {quantity} ({targets.min():g}.."
                f"{targets.max():g}) is outside what the fitted marginals reach "
                f"({reach[0]:g}..{reach[1]:g})"
            )

        def solve(t: float) -> float:
            return float(optimize.brentq(lambda a: trimmed(a) - t, lo_a, hi_a, xtol=1e-9))

        unique = np.unique(targets)
        if len(unique) <= 2:
            found = {float(t): solve(float(t)) for t in unique}
            rise = np.array([found[float(t)] for t in targets])
        else:
            grid = np.linspace(solve(float(unique[0])), solve(float(unique[-1])), 65)
            curve = np.maximum.accumulate([trimmed(float(a)) for a in grid])
            keep = np.concatenate([[True], np.diff(curve) > 0])
            rise = np.interp(targets, curve[keep], grid[keep])
        return rise[:, None] * centred[None, :]

    def _mc_trimmed_rise(self, quantity: str, shifts: np.ndarray, trim: float) -> float:
        """The trimmed mean of the fitted rise of ``quantity`` moved by ``shifts``, on the
        fixed Monte-Carlo sample."""
        names = self.quantities[quantity]
        key = (id(self), quantity)
        if key not in _MC_SAMPLES:
            index = [self.columns.index(c) for c in names]
            chol = np.linalg.cholesky(self.corr[np.ix_(index, index)])
            z = np.random.default_rng(TRIM_MC_SEED).standard_normal((TRIM_MC_PHOTOS, len(names)))
            u = _normal_cdf(z @ chol.T)
            unmoved = np.stack(
                [self.marginals[name].unmoved(u[:, i]) for i, name in enumerate(names)], axis=1
            )
            # the fit itself is kept beside its sample, so its id is not reused while cached
            _MC_SAMPLES[key] = (self, unmoved)
        unmoved = _MC_SAMPLES[key][1]
        rounding = np.random.default_rng(TRIM_MC_SEED + 1)
        values = np.stack(
            [
                self.marginals[name].moved(unmoved[:, i], float(shifts[i]), rounding)
                for i, name in enumerate(names)
            ],
            axis=1,
        )
        return float(sps.trim_mean(depth_rise(values), trim))

    def mean_rise_at(self, quantity: str, shifts: np.ndarray) -> float:
        """The exact mean fitted rise of ``quantity`` with its columns moved by ``shifts``
        (one offset per column)."""
        return float(self.mean_rises_at(quantity, np.asarray(shifts)[None, :])[0])

    def mean_rises_at(self, quantity: str, shifts: np.ndarray, *, rows: int = 128) -> np.ndarray:
        """:meth:`mean_rise_at` for each row of ``shifts`` (G, k), ``rows`` rows at a time
        (each holds a (rows, 4000) array per column). Each row's terms are summed in the same
        order as alone, so a row's rise does not depend on the rows beside it."""
        names = self.quantities[quantity]
        centred = np.arange(len(names)) - (len(names) - 1) / 2.0
        weights = centred / float(centred @ centred) * (len(names) - 1)
        shifts = np.asarray(shifts, dtype=np.float64).reshape(-1, len(names))
        out = np.empty(len(shifts))
        for start in range(0, len(shifts), rows):
            block = shifts[start : start + rows]
            total: np.ndarray | float = 0
            for i, (w, name) in enumerate(zip(weights, names, strict=True)):
                total = total + w * self.marginals[name].mean(block[:, i])
            out[start : start + rows] = total
        return out

    def rise_and_last_shift(
        self, quantity: str, rise_target: float, last_target: float
    ) -> np.ndarray:
        """(k,) offsets giving a mean rise and a last-layer mean at once: the last layer's
        offset is fixed by its target, the others ``rise * (1 - x)`` below it."""
        names = self.quantities[quantity]
        last = self.marginals[names[-1]]
        t = float(
            _invert(f"{quantity} (last layer)", np.array([last_target]), last.mean(_SHIFT_GRID))[0]
        )
        x = np.linspace(0.0, 1.0, len(names))
        rises = self.mean_rises_at(quantity, t - _SHIFT_GRID[:, None] * (1.0 - x)[None, :])
        a = float(_invert(quantity, np.array([rise_target]), rises)[0])
        return np.asarray(t - a * (1.0 - x))

    def level_shift(self, quantity: str, targets: np.ndarray) -> np.ndarray:
        """(k,) offsets giving each column of ``quantity`` its target mean."""
        out = []
        for name, target in zip(self.quantities[quantity], targets, strict=True):
            curve = self.marginals[name].mean(_SHIFT_GRID)
            out.append(float(_invert(name, np.array([target]), curve)[0]))
        return np.asarray(out)

    # ------------------------------------------------------------------ (de)serialise
    def to_dict(self) -> dict[str, Any]:
        return {
            "quantities": self.quantities,
            "marginals": {k: m.to_dict() for k, m in self.marginals.items()},
            "corr": [[round(float(v), 4) for v in row] for row in self.corr],
            "missing": self.missing,
            "n_photos": self.n_photos,
        }

    @classmethod
    def from_dict(cls, claim_id: str, d: dict[str, Any]) -> FittedClaim:
        return cls(
            claim_id=claim_id,
            quantities={k: list(v) for k, v in d["quantities"].items()},
            marginals={k: Marginal.from_dict(m) for k, m in d["marginals"].items()},
            corr=np.asarray(d["corr"], dtype=np.float64),
            missing={k: float(v) for k, v in d["missing"].items()},
            n_photos=int(d["n_photos"]),
        )


def _invert(what: str, target: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """The offsets on ``_SHIFT_GRID`` where ``curve`` (a mean, tabulated on that grid) first
    reaches each target. Means flatten where every value sits at a bound (0 or 1), so the
    running maximum is inverted: the first offset that reaches it."""
    rising = np.maximum.accumulate(curve)
    lo, hi = float(rising[0]), float(rising[-1])
    if np.any(target < lo) or np.any(target > hi):
        raise ValueError(
            f"a target mean of {what} ({target.min():g}..{target.max():g}) is outside what the "
            f"fitted marginals reach ({lo:g}..{hi:g})"
        )
    # strictly increasing abscissae for np.interp: drop the flat stretches
    keep = np.concatenate([[True], np.diff(rising) > 0])
    return np.asarray(np.interp(target, rising[keep], _SHIFT_GRID[keep]))


# ----------------------------------------------------------------------------- fitting


def _normal_scores(v: np.ndarray) -> np.ndarray:
    ranks = sps.rankdata(v, method="average")
    return np.asarray(sps.norm.ppf(ranks / (len(v) + 1)))


def _nearest_corr(c: np.ndarray) -> np.ndarray:
    """The matrix with negative eigenvalues raised to a floor, rescaled to a unit diagonal."""
    w, v = np.linalg.eigh((c + c.T) / 2.0)
    fixed = (v * np.maximum(w, 1e-6)) @ v.T
    d = np.sqrt(np.diag(fixed))
    return np.asarray(fixed / np.outer(d, d))


def _fit_claim(
    claim_id: str,
    quantities: dict[str, list[str]],
    table: dict[str, np.ndarray],
    missing: dict[str, float],
    grids: dict[str, int | None],
) -> FittedClaim:
    names = [c for cols in quantities.values() for c in cols]
    matrix = np.column_stack([table[c] for c in names])
    complete = np.all(np.isfinite(matrix), axis=1)
    matrix = matrix[complete]
    scores = np.column_stack([_normal_scores(matrix[:, j]) for j in range(matrix.shape[1])])
    corr = _nearest_corr(np.corrcoef(scores, rowvar=False))
    # each marginal from all of its column's finite values (a photo missing elsewhere still
    # tells this column's shape); the dependence from the photos with every column finite
    marginals = {c: Marginal.fit(table[c][np.isfinite(table[c])], grid=grids.get(c)) for c in names}
    return FittedClaim(claim_id, quantities, marginals, corr, missing, int(matrix.shape[0]))


def _photo_table(results: dict[str, Any], model: str, key: str) -> np.ndarray:
    photos = results["models"][model]["photos"]
    return np.array(
        [[np.nan if p.get(key) is None else p[key].get(layer, np.nan) for layer in LAYERS]
         for p in photos],
        dtype=np.float64,
    )  # fmt: skip


def fit_input_problem(results: Any) -> str | None:
    """Why ``results`` (a loaded ``results.json``) cannot be fitted, or None: the fit reads
    the default study, the ImageNet ResNet-50 (``pretrained``) and its ``untrained`` control
    at ``layer1`` .. ``layer4``, with the GridPG and sanity phases."""
    from xai_checks.report.schema import SchemaError, validate_results

    try:
        validate_results(results)
    except SchemaError as exc:
        return f"not a results.json that xai-checks wrote ({'; '.join(exc.errors[:3])})"
    rerun = (
        "; fit a study of the default model with every phase: xai-checks study --data "
        "imagenet-samples --control random"
    )
    models = results["models"]
    missing = [m for m in ("pretrained", "untrained") if m not in models]
    if missing:
        return f"it has no model run(s) {', '.join(missing)} (its runs: {', '.join(models)}){rerun}"
    for name in ("pretrained", "untrained"):
        layers = list(models[name].get("layers") or [])
        if layers != list(LAYERS):
            return f"{name} ran layers {layers}, not {list(LAYERS)}{rerun}"
    absent = [phase for phase in ("gridpg", "sanity") if not results.get(phase)]
    if absent:
        return f"it has no {' or '.join(absent)} results{rerun}"
    return None


def fit_results(results: dict[str, Any], *, source: str = "") -> dict[str, Any]:
    """The simulator's fit to one study's ``results.json`` (models ``pretrained`` and
    ``untrained``, the GridPG and sanity phases)."""
    table: dict[str, np.ndarray] = {}
    seed_q: dict[str, list[str]] = {}
    grids: dict[str, int | None] = {}
    for q, model, key in (
        ("model", "pretrained", "ratio"),
        ("control", "untrained", "ratio"),
        ("pooled", "pretrained", "ratio_pooled"),
        ("control_pooled", "untrained", "ratio_pooled"),
    ):
        m = _photo_table(results, model, key)
        seed_q[q] = [f"{q}/{layer}" for layer in LAYERS]
        for j, name in enumerate(seed_q[q]):
            table[name] = m[:, j]
            grids[name] = POOLED_GRID if key == "ratio_pooled" else None
    counts = results["photoset"]["counts"]
    lost = float(counts.get("skipped", 0)) / max(float(counts.get("listed", 1)), 1.0)
    fits: dict[str, FittedClaim] = {
        "seed-depth-ratio": _fit_claim(
            "seed-depth-ratio", seed_q, table, dict.fromkeys(seed_q, lost), grids
        )
    }
    grid = results["gridpg"]
    g_q: dict[str, list[str]] = {}
    g_missing: dict[str, float] = {}
    for q, model in (("model", "pretrained"), ("control", "untrained")):
        s = np.asarray(grid["scores"][model], dtype=np.float64)
        g_q[q] = [f"gridpg/{q}/{layer}" for layer in LAYERS]
        for j, name in enumerate(g_q[q]):
            table[name] = s[:, j]
        g_missing[q] = float(np.mean(~np.all(np.isfinite(s), axis=1))) if len(s) else 0.0
    fits["depth-localisation-gridpg"] = _fit_claim(
        "depth-localisation-gridpg", g_q, table, g_missing, {}
    )
    sanity = results["sanity"]
    steps = list(sanity["steps"])
    rho = {s: np.abs(np.asarray(sanity["rho"][s], dtype=np.float64)) for s in steps}
    s_q = {"abs_rho": [f"sanity/{s}" for s in steps]}
    for s in steps:
        table[f"sanity/{s}"] = rho[s]
    s_missing = {"abs_rho": float(np.mean([np.mean(~np.isfinite(rho[s])) for s in steps]))}
    fits["sanity-randomisation"] = _fit_claim("sanity-randomisation", s_q, table, s_missing, {})
    return {
        "schema": "xai-checks/simulator-fit",
        "source": source,
        "method": (
            "per column: share of exact zeros and 101 quantiles of the positive values "
            "over the column's finite values (pooled ratios rounded to multiples of 1/49); "
            "dependence: Pearson correlation "
            "of the columns' normal scores (average ranks) over the photos with every column "
            "finite, eigenvalues floored at 1e-6; missing: share of photos with a NaN in the "
            "quantity (the ratio phase: photos skipped of those listed)"
        ),
        "confound_range_sesoi": list(CONFOUND_RANGE),
        "sanity_steps": steps,
        "claims": {cid: f.to_dict() for cid, f in fits.items()},
    }


def load_fit(path: Path = FIT_FILE) -> dict[str, FittedClaim]:
    """The committed fit, one :class:`FittedClaim` per claim in ``FITTED_CLAIMS``."""
    doc = json.loads(path.read_text())
    return {cid: FittedClaim.from_dict(cid, d) for cid, d in doc["claims"].items()}


# ----------------------------------------------------------------------------- effects


def _rise(values: np.ndarray) -> np.ndarray:
    return depth_rise(values)


def per_photo_effects(
    claim_id: str, q: dict[str, np.ndarray], *, bound: float = 0.5, chance: float = 0.25
) -> dict[str, np.ndarray]:
    """Each effect the claim decides on, per photo, from (n, k) arrays per quantity (NaN
    where a photo is missing): the same differences the claims' evaluators build."""
    if claim_id == "seed-depth-ratio":
        return {
            "rise": _rise(q["model"]),
            "beyond untrained": _rise(q["model"]) - _rise(q["control"]),
            "left after pooling": _rise(q["pooled"]),
            "joint (pooled beyond pooled untrained)": _rise(q["pooled"])
            - _rise(q["control_pooled"]),
        }
    if claim_id == "depth-localisation-gridpg":
        return {
            "rise": _rise(q["model"]),
            f"layer4 above chance {chance:g}": q["model"][:, -1] - chance,
            "beyond untrained": _rise(q["model"]) - _rise(q["control"]),
        }
    if claim_id == "sanity-randomisation":
        margins = bound - q["abs_rho"]
        steps = SANITY_STEP_NAMES[: margins.shape[1]]
        return {f"{bound:g} - |rho|, {step}": margins[:, j] for j, step in enumerate(steps)}
    raise ValueError(f"no fitted simulator for {claim_id!r}")


def real_quantities(results: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """The real run's (n, k) arrays per claim and quantity, as :func:`per_photo_effects`
    takes them."""
    grid = results["gridpg"]
    sanity = results["sanity"]
    return {
        "seed-depth-ratio": {
            "model": _photo_table(results, "pretrained", "ratio"),
            "control": _photo_table(results, "untrained", "ratio"),
            "pooled": _photo_table(results, "pretrained", "ratio_pooled"),
            "control_pooled": _photo_table(results, "untrained", "ratio_pooled"),
        },
        "depth-localisation-gridpg": {
            "model": np.asarray(grid["scores"]["pretrained"], dtype=np.float64),
            "control": np.asarray(grid["scores"]["untrained"], dtype=np.float64),
        },
        "sanity-randomisation": {
            "abs_rho": np.abs(
                np.column_stack([np.asarray(sanity["rho"][s], float) for s in sanity["steps"]])
            )
        },
    }


def qq_figure(
    results: dict[str, Any],
    out: Path,
    *,
    fit: dict[str, FittedClaim] | None = None,
    n_sim: int = 20000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """The QQ comparison: per claim and effect, the real per-photo quantiles against the
    simulated ones (the fit drawn as is, no world's shift), written to ``out`` (PNG).
    Returns, per effect, the largest |real - simulated| quantile gap over the central 90%
    and the real effect's interquartile range to read it against."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fit = fit or load_fit()
    real = real_quantities(results)
    rng = np.random.default_rng(seed)
    panels = [
        (cid, name, r_eff, s_eff)
        for cid in FITTED_CLAIMS
        for (name, r_eff), s_eff in zip(
            per_photo_effects(cid, real[cid]).items(),
            per_photo_effects(
                cid, {k: v[0] for k, v in fit[cid].draw(rng, 1, n_sim, {}).items()}
            ).values(),
            strict=True,
        )
    ]
    cols = 4
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    summary: dict[str, dict[str, float]] = {}
    probs = np.linspace(0.01, 0.99, 99)
    for ax, (cid, name, r_eff, s_eff) in zip(axes.flat, panels, strict=False):
        r = r_eff[np.isfinite(r_eff)]
        s = s_eff[np.isfinite(s_eff)]
        rq, sq = np.quantile(r, probs), np.quantile(s, probs)
        ax.plot(sq, rq, ".", ms=3, color="#1f77b4")
        lo, hi = min(rq.min(), sq.min()), max(rq.max(), sq.max())
        ax.plot([lo, hi], [lo, hi], "-", lw=0.8, color="#888888")
        ax.set_title(f"{cid}\n{name}", fontsize=7)
        ax.set_xlabel("simulated quantile", fontsize=7)
        ax.set_ylabel("real quantile", fontsize=7)
        ax.tick_params(labelsize=6)
        central = (probs >= 0.05) & (probs <= 0.95)
        summary[f"{cid}: {name}"] = {
            "max_gap_central_90": float(np.max(np.abs(rq - sq)[central])),
            "real_iqr": float(np.subtract(*np.quantile(r, [0.75, 0.25]))),
            "real_mean": float(r.mean()),
            "simulated_mean": float(s.mean()),
            "real_n": len(r),
        }
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(
        "Per-photo effects: real study (y) against the fitted simulator (x), quantiles 1-99%",
        fontsize=9,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return summary


def main(argv: Sequence[str] | None = None, *, echo: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(prog="python -m xai_checks.simulator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="fit the simulator to a study's results.json")
    f.add_argument("results", type=Path)
    f.add_argument("--out", type=Path, default=FIT_FILE)
    f.add_argument("--source", default="", help="how the results were made (recorded)")
    q = sub.add_parser("qq", help="the QQ figure of simulated and real per-photo effects")
    q.add_argument("results", type=Path)
    q.add_argument("--out", type=Path, default=Path("docs/assets/simulator-qq.png"))
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.results.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        echo(f"cannot read {args.results}: {exc}")
        return 2
    problem = fit_input_problem(results)
    if problem is not None:
        echo(f"cannot fit {args.results}: {problem}")
        return 2
    if args.command == "fit":
        doc = fit_results(results, source=args.source)
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
        echo(f"wrote {args.out}")
        return 0
    summary = qq_figure(results, args.out)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    for name, row in summary.items():
        echo(
            f"{name}: real mean {row['real_mean']:.4f}, simulated {row['simulated_mean']:.4f}; "
            f"largest central quantile gap {row['max_gap_central_90']:.4f} "
            f"(real IQR {row['real_iqr']:.4f})"
        )
    echo(f"wrote {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
