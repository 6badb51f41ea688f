"""Claims about explanations, and the rules that turn a study's numbers into verdicts.

A claim is a small class (:class:`Claim`) with its metadata as class attributes: its id, the
study phases it needs, its layers, alpha, minimum n, smallest effect size of interest (SESOI),
controls and params; ``evaluate(study)`` gives a :class:`Verdict` and ``report_section``
its part of the report. Built-in and third-party claims are registered the same way, in the
entry-point group ``xai_checks.claims`` (see :mod:`xai_checks.claims.registry`).

``SUPPORTED``     the effect is there and the controls say it means something;
``REFUTED``       the effect is not there (or goes the wrong way);
``INCONCLUSIVE``  too few photos, or the evidence cannot decide;
``CONFOUNDED``    the effect is there, but a control (the untrained network, or pooling every
                  map to one resolution) explains it: the evidence cannot tell the claimed
                  cause from the confound.

Every threshold is a claim's field, fixed before any data is seen; nothing is tuned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from xai_checks import stats
from xai_checks.claims.base import VERDICT_LEGEND, Claim, PowerRecord, Reason, Status, Verdict
from xai_checks.claims.depth_localisation_boxes import DepthLocalisationBoxes
from xai_checks.claims.depth_localisation_gridpg import DepthLocalisationGridPG
from xai_checks.claims.native_captum_agreement import NativeCaptumAgreement
from xai_checks.claims.registry import (
    ENTRY_POINT_GROUP,
    get_claim,
    register_claim,
    registered_claims,
)
from xai_checks.claims.sanity_randomisation import SanityRandomisation
from xai_checks.claims.seed_depth_ratio import SeedDepthRatio

if TYPE_CHECKING:
    from xai_checks.study import StudyResult

__all__ = [
    "BUILTIN_CLAIMS",
    "ENTRY_POINT_GROUP",
    "VERDICT_LEGEND",
    "Claim",
    "DepthLocalisationBoxes",
    "DepthLocalisationGridPG",
    "NativeCaptumAgreement",
    "Reason",
    "SanityRandomisation",
    "SeedDepthRatio",
    "Status",
    "Verdict",
    "apply_holm",
    "bottom_line",
    "evaluate",
    "evaluate_all",
    "get_claim",
    "multiplicity_note",
    "phases_for",
    "register_claim",
    "registered_claims",
]

#: the built-in claims with their defaults (the registry also holds third-party ones)
BUILTIN_CLAIMS: tuple[Claim, ...] = (
    SeedDepthRatio(),
    DepthLocalisationGridPG(),
    DepthLocalisationBoxes(),
    SanityRandomisation(),
    NativeCaptumAgreement(),
)


def evaluate(claim: Claim | str, study: StudyResult) -> Verdict:
    """The verdict of ``claim`` (an instance or a registered id) on ``study``'s numbers."""
    if isinstance(claim, str):
        claim = get_claim(claim)
    verdict = claim.bind(study).evaluate(study)
    if verdict.n == 0 and verdict.status is Status.SUPPORTED:  # no photos is no evidence
        verdict.status = Status.INCONCLUSIVE
        verdict.add("too-few-photos", "n = 0: no usable photo reached this claim")
        verdict.insufficient = True
    reached = verdict.n_photos
    if reached is not None and verdict.n < reached:  # say how many photos are behind it
        causes = "; ".join(f"{k}: {v}" for k, v in verdict.drops.items())
        verdict.reasons.insert(  # first, so that the last reason stays the deciding one
            0,
            Reason(
                "photos-dropped",
                f"the deciding effect rests on {verdict.n} of the {reached} photos"
                + (f" (dropped: {causes})" if causes else ""),
            ),
        )
    if verdict.power is None:  # every verdict says what its n could detect, or why it cannot
        verdict.power = _no_power_statement(verdict)
    return verdict


def _no_power_statement(verdict: Verdict) -> PowerRecord:
    claim = verdict.claim
    if claim.metric == "agreement":
        text = (
            f"not a statistical test: an exact bound checked on each of the {verdict.n} photos, "
            "so no power applies"
        )
    elif verdict.n < claim.min_n:
        text = (
            f"n = {verdict.n} photos is below this claim's min_n = {claim.min_n}, the n at which "
            f"the calibration (docs/calibration.md) reaches 80% power for a true effect of "
            f"2x its SESOI {claim.sesoi:g}: no effect was estimated"
        )
    else:
        text = "no effect was estimated, so no power statement is possible"
    return {"mde": None, "power": None, "n": verdict.n, "sesoi": claim.sesoi, "statement": text}


def evaluate_all(
    study: StudyResult,
    claims: Sequence[Claim] | None = None,
    *,
    alpha: float | None = None,
    multiplicity: str = "holm",
) -> list[Verdict]:
    """Every claim's verdict (default: every registered claim), optionally at another alpha.

    With ``multiplicity="holm"`` (the default) the claims of the run form one family and a
    SUPPORTED verdict must survive Holm's correction (:func:`apply_holm`); ``"none"`` skips it.
    """
    if multiplicity not in ("holm", "none"):
        raise ValueError(f"multiplicity must be 'holm' or 'none'; got {multiplicity!r}")
    out = []
    for claim in registered_claims() if claims is None else claims:
        if alpha is not None:
            claim = claim.with_(alpha=alpha)
        out.append(evaluate(claim, study))
    if multiplicity == "holm":
        apply_holm(out)
    return out


def apply_holm(verdicts: Sequence[Verdict]) -> None:
    """Holm (1979) across the claims of one run, in place.

    The family is every verdict with a claim-level p-value (``Verdict.p_value``: the largest
    p of the tests the claim needs, an intersection-union test; for an effect that is its
    minimal-effect test against the SESOI, the test SUPPORTED rests on, not a test against
    zero). So the chance that any claim of a run reads SUPPORTED while its true effects sit at
    the SESOI is held at alpha (the calibration's run-level boundary world measures it). A
    SUPPORTED verdict whose
    Holm-adjusted p is not below its alpha becomes INCONCLUSIVE and says why. Claims without
    a p-value (an exact numerical bound such as backend agreement) are outside the family.
    """
    family = [v for v in verdicts if v.decisive_p is not None]
    pvalues = [float(v.decisive_p or 0.0) for v in family]
    adjusted: list[float] = [float(p) for p in stats.holm(pvalues)] if family else []
    ids = [v.claim.id for v in family]
    for v, p_adj in zip(family, adjusted, strict=True):
        v.multiplicity = {
            "method": "holm",
            "family": ids,
            "m": len(family),
            "p": v.decisive_p,
            "p_adjusted": float(p_adj),
        }
        if v.status is Status.SUPPORTED and not float(p_adj) < v.claim.alpha:
            v.status = Status.INCONCLUSIVE
            v.add(
                "holm",
                f"not shown to reach the SESOI after Holm's correction across the run's "
                f"{len(family)} claims (adjusted p = {float(p_adj):.2g} >= {v.claim.alpha:g})",
            )
    for v in verdicts:
        if v.decisive_p is None:
            v.multiplicity = {
                "method": "none",
                "note": "no claim-level p-value (not a statistical test, or not reached)",
            }


_DEPTH_METRICS = ("ratio", "gridpg", "boxes")


def bottom_line(verdicts: Sequence[Verdict]) -> dict[str, object]:
    """One reconciled conclusion for a run's verdicts, for the report's top line.

    Returns ``{"status": ..., "text": ..., "points": [...]}``: ``status`` is ``"holds"``
    (every claim that could be judged is SUPPORTED and the checks that guard them pass),
    ``"does not hold"`` (a depth claim is REFUTED or CONFOUNDED with nothing supported),
    ``"undermined"`` (a depth claim is SUPPORTED but a guard failed: the maps do not depend
    on the learned weights, or the backends disagree), ``"mixed"`` or ``"not judged"``.
    """
    by_metric: dict[str, Verdict] = {}
    for v in verdicts:
        by_metric.setdefault(v.claim.metric, v)
    judged = [v for v in verdicts if not v.insufficient and v.status is not Status.INCONCLUSIVE]
    points: list[str] = []
    supported_depth = [
        v for v in verdicts if v.claim.metric in _DEPTH_METRICS and v.status is Status.SUPPORTED
    ]
    failed_depth = [
        v
        for v in verdicts
        if v.claim.metric in _DEPTH_METRICS and v.status in (Status.REFUTED, Status.CONFOUNDED)
    ]
    sanity = by_metric.get("randomisation")
    agreement = by_metric.get("agreement")
    guards_failed = []
    if sanity is not None and sanity.status is not Status.SUPPORTED:
        guards_failed.append(
            f"the sanity check is {sanity.status.value}: the maps may not depend on what the "
            "model learned, so no map-based claim can be credited to the model"
        )
    if agreement is not None and agreement.status is Status.REFUTED:
        guards_failed.append(
            "the native and Captum maps disagree: the numbers themselves are in doubt"
        )
    for v in supported_depth:
        points.append(f"{v.claim.id} is SUPPORTED: {v.claim.title.lower()}")
    for v in failed_depth:
        why = v.reasons[-1] if v.reasons else ""
        points.append(f"{v.claim.id} is {v.status.value}: {why}")
    if supported_depth and failed_depth:
        seed = next((v for v in failed_depth if v.claim.metric == "ratio"), None)
        if seed is not None and seed.status is Status.CONFOUNDED:
            codes = {getattr(r, "code", "") for r in seed.reasons}
            if "pooling-explains" in codes:
                points.append(
                    "the seed's ratio rise is mostly map resolution: too little of it survives "
                    "pooling every layer's map to one grid, so it cannot show localisation; the "
                    "ground-truth claims can, and do"
                )
            if "control-explains" in codes or "pooling-explains" not in codes:
                points.append(
                    "the seed's ratio measure rises in a network that learned nothing too, so "
                    "it cannot show localisation; the ground-truth claims can, and do"
                )
    points.extend(guards_failed)
    if not judged:
        status, text = "not judged", "No claim could be judged on these photos."
    elif supported_depth and guards_failed:
        status = "undermined"
        text = (
            "Deeper layers look better localised, but a guard failed, so this run cannot "
            "credit that to the model."
        )
    elif supported_depth and not failed_depth:
        status = "holds" if not guards_failed else "undermined"
        text = "Deeper layers localise what the label is about, beyond the controls."
    elif supported_depth:
        status = "mixed"
        text = (
            "Ground truth says deeper layers localise the label; the claims that fail here "
            "measure it in a way a control explains."
        )
    elif failed_depth:
        status = "does not hold"
        text = "No depth claim holds up against its controls on these photos."
    else:
        status = "mixed" if guards_failed else "not judged"
        text = "The depth claims could not be decided on these photos."
    undecided = []
    for v in verdicts:
        if v.status is not Status.INCONCLUSIVE:
            continue
        if v.claim.metric in _DEPTH_METRICS and not v.insufficient and v.reasons:
            # enough photos, and still undecided: say why (a CI straddles the SESOI)
            points.append(f"{v.claim.id} is INCONCLUSIVE: {v.reasons[-1]}")
        else:
            undecided.append(v.claim.id)
    if undecided:
        points.append(f"not decided here: {', '.join(undecided)}")
    return {"status": status, "text": text, "points": points}


def multiplicity_note(verdicts: Sequence[Verdict]) -> str:
    """One sentence on how the run's claims were corrected for testing several at once."""
    holm = [v for v in verdicts if (v.multiplicity or {}).get("method") == "holm"]
    alone = [v.claim.id for v in verdicts if (v.multiplicity or {}).get("method") != "holm"]
    if not holm:
        return (
            "Multiplicity: no correction (no claim of this run has a claim-level p-value)."
            if verdicts
            else ""
        )
    family = list((holm[0].multiplicity or {}).get("family", [v.claim.id for v in holm]))
    text = (
        f"Multiplicity: Holm across the {len(family)} claim(s) of this run with a p-value "
        f"({', '.join(family)}); a SUPPORTED verdict needs its Holm-adjusted p below alpha."
    )
    if alone:
        text += f" Not in the family (no p-value, or judged alone): {', '.join(alone)}."
    return text


def phases_for(claims: Iterable[Claim | str]) -> tuple[str, ...]:
    """The study phases the given claims need (their union, in the study's order)."""
    from xai_checks.phases import get_phase, phase_names

    known = phase_names()
    needed: set[str] = set()
    for claim in claims:
        needed.update((get_claim(claim) if isinstance(claim, str) else claim).needs)
    unknown = needed - set(known)
    if unknown:
        raise ValueError(f"claims need unknown phases {sorted(unknown)}; the study has {known}")
    wanted = set(needed)
    for name in needed:  # and the phases those phases read
        wanted.update(get_phase(name).needs)
    return tuple(p for p in known if p in wanted)
