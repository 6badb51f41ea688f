"""The claim registry: built-in and third-party claims both come from one entry-point group.

A package registers a claim in its ``pyproject.toml``::

    [project.entry-points."xai_checks.claims"]
    my-claim = "my_package.claims:MyClaim"

The entry point's name must equal the claim's ``id``; it may point at a :class:`Claim`
subclass (instantiated with its defaults) or at an instance.

Code that is not packaged (a ``conftest.py``, a notebook, a script) registers a claim with
:func:`register_claim` instead; from then on ``get_claim``, ``@pytest.mark.claim`` and the
CLI's ``--claim`` know it like an entry point's.
"""

from __future__ import annotations

import functools

from xai_checks._registry import load_registry
from xai_checks.claims.base import Claim

__all__ = ["ENTRY_POINT_GROUP", "get_claim", "register_claim", "registered_claims"]

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


#: claims registered from code with :func:`register_claim`, by id, in registration order
_FROM_CODE: dict[str, Claim] = {}


def register_claim(claim: type[Claim] | Claim) -> Claim:
    """Register ``claim`` (a :class:`Claim` subclass, instantiated with its defaults, or an
    instance) without packaging it, e.g. at the top of a ``conftest.py``; returns the
    instance. Registering the same class again (a conftest imported twice) changes nothing;
    an id that another claim already has is a :class:`ClaimRegistrationError`."""
    where = f"register_claim({getattr(claim, '__qualname__', type(claim).__qualname__)})"
    if not (isinstance(claim, Claim) or (isinstance(claim, type) and issubclass(claim, Claim))):
        raise ClaimRegistrationError(f"{where}: {claim!r} is not a Claim subclass or instance")
    made = claim() if isinstance(claim, type) else claim
    if not isinstance(getattr(made, "id", None), str) or not made.id:
        raise ClaimRegistrationError(f"{where}: the claim has no id")
    known = _registry().get(made.id) or _FROM_CODE.get(made.id)
    if known is not None and type(known) is not type(made):
        raise ClaimRegistrationError(
            f"{where}: the claim id {made.id!r} is already registered by "
            f"{type(known).__module__}.{type(known).__qualname__}"
        )
    _FROM_CODE[made.id] = made
    return made


def _all_claims() -> dict[str, Claim]:
    return {**_registry(), **_FROM_CODE}


def registered_claims(*, refresh: bool = False) -> tuple[Claim, ...]:
    """Every registered claim (built-ins first, then entry points', then those registered
    from code), each with its declared defaults."""
    if refresh:
        _registry.cache_clear()
    return tuple(_all_claims().values())


def get_claim(claim_id: str) -> Claim:
    """The registered claim ``claim_id`` (``KeyError`` naming the known ones otherwise)."""
    registry = _all_claims()
    try:
        return registry[claim_id]
    except KeyError:
        known = ", ".join(registry)
        raise KeyError(f"unknown claim {claim_id!r}; registered claims: {known}") from None
