"""The claim registry: built-in and third-party claims both come from one entry-point group.

A package registers a claim in its ``pyproject.toml``::

    [project.entry-points."xai_checks.claims"]
    my-claim = "my_package.claims:MyClaim"

The entry point's name must equal the claim's ``id``; it may point at a :class:`Claim`
subclass (instantiated with its defaults) or at an instance.
"""

from __future__ import annotations

import functools

from xai_checks._registry import load_registry
from xai_checks.claims.base import Claim

__all__ = ["ENTRY_POINT_GROUP", "get_claim", "registered_claims"]

ENTRY_POINT_GROUP = "xai_checks.claims"

#: the built-in claims, in the order tables show them (also declared as entry points)
BUILTIN_ENTRY_POINTS: dict[str, str] = {
    "seed-depth-ratio": "xai_checks.claims.seed_depth_ratio:SeedDepthRatio",
    "depth-localisation-gridpg": (
        "xai_checks.claims.depth_localisation_gridpg:DepthLocalisationGridPG"
    ),
    "depth-localisation-boxes": "xai_checks.claims.depth_localisation_boxes:DepthLocalisationBoxes",
    "sanity-randomisation": "xai_checks.claims.sanity_randomisation:SanityRandomisation",
    "native-captum-agreement": "xai_checks.claims.native_captum_agreement:NativeCaptumAgreement",
}


class ClaimRegistrationError(TypeError):
    """An entry point in ``xai_checks.claims`` that does not give a valid claim."""


@functools.cache
def _registry() -> dict[str, Claim]:
    return load_registry(
        ENTRY_POINT_GROUP,
        base=Claim,
        builtins=BUILTIN_ENTRY_POINTS,
        kind="claim",
        name_attr="id",
        error=ClaimRegistrationError,
    )


def registered_claims(*, refresh: bool = False) -> tuple[Claim, ...]:
    """Every registered claim (built-ins first), each with its declared defaults."""
    if refresh:
        _registry.cache_clear()
    return tuple(_registry().values())


def get_claim(claim_id: str) -> Claim:
    """The registered claim ``claim_id`` (``KeyError`` naming the known ones otherwise)."""
    registry = _registry()
    try:
        return registry[claim_id]
    except KeyError:
        known = ", ".join(registry)
        raise KeyError(f"unknown claim {claim_id!r}; registered claims: {known}") from None
