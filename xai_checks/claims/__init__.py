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

from xai_checks.claims.base import Claim, Reason, Status, Verdict
from xai_checks.claims.depth_localisation_boxes import DepthLocalisationBoxes
from xai_checks.claims.depth_localisation_gridpg import DepthLocalisationGridPG
from xai_checks.claims.native_captum_agreement import NativeCaptumAgreement
from xai_checks.claims.registry import ENTRY_POINT_GROUP, get_claim, registered_claims
from xai_checks.claims.sanity_randomisation import SanityRandomisation
from xai_checks.claims.seed_depth_ratio import SeedDepthRatio

if TYPE_CHECKING:
    from xai_checks.study import StudyResult

__all__ = [
    "BUILTIN_CLAIMS",
    "ENTRY_POINT_GROUP",
    "Claim",
    "DepthLocalisationBoxes",
    "DepthLocalisationGridPG",
    "NativeCaptumAgreement",
    "Reason",
    "SanityRandomisation",
    "SeedDepthRatio",
    "Status",
    "Verdict",
    "evaluate",
    "evaluate_all",
    "get_claim",
    "phases_for",
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
    return verdict


def evaluate_all(
    study: StudyResult,
    claims: Sequence[Claim] | None = None,
    *,
    alpha: float | None = None,
) -> list[Verdict]:
    """Every claim's verdict (default: every registered claim), optionally at another alpha."""
    out = []
    for claim in registered_claims() if claims is None else claims:
        if alpha is not None:
            claim = claim.with_(alpha=alpha)
        out.append(evaluate(claim, study))
    return out


def phases_for(claims: Iterable[Claim | str]) -> tuple[str, ...]:
    """The study phases the given claims need (their union, in the study's order)."""
    from xai_checks.study import PHASES

    needed: set[str] = set()
    for claim in claims:
        needed.update((get_claim(claim) if isinstance(claim, str) else claim).needs)
    unknown = needed - set(PHASES)
    if unknown:
        raise ValueError(f"claims need unknown phases {sorted(unknown)}; the study has {PHASES}")
    return tuple(p for p in PHASES if p in needed)
