"""The claim registry: built-in and third-party claims both come from one entry-point group.

A package registers a claim in its ``pyproject.toml``::

    [project.entry-points."xai_checks.claims"]
    my-claim = "my_package.claims:MyClaim"

The entry point's name must equal the claim's ``id``; it may point at a :class:`Claim`
subclass (instantiated with its defaults) or at an instance.
"""

from __future__ import annotations

import functools
import importlib
import warnings
from importlib.metadata import EntryPoint, entry_points

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


def _instantiate(name: str, obj: object, where: str) -> Claim:
    if isinstance(obj, type) and issubclass(obj, Claim):
        claim = obj()
    elif isinstance(obj, Claim):
        claim = obj
    else:
        raise ClaimRegistrationError(
            f"entry point {name!r} ({where}) gives {obj!r}, not a Claim subclass or instance"
        )
    if claim.id != name:
        raise ClaimRegistrationError(
            f"entry point {name!r} ({where}) gives a claim whose id is {claim.id!r}; "
            "the entry-point name must equal the claim's id"
        )
    return claim


def _load_builtin(target: str) -> object:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@functools.cache
def _registry() -> dict[str, Claim]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        seen = found.get(ep.name)
        if seen is not None and seen.value != ep.value:
            raise ClaimRegistrationError(
                f"two packages register the claim {ep.name!r}: {seen.value} and {ep.value}"
            )
        found[ep.name] = ep
    missing = [name for name in BUILTIN_ENTRY_POINTS if name not in found]
    if missing:
        warnings.warn(
            f"the built-in claims {missing} are not registered as entry points (is xai-checks "
            "installed? `pip install -e .`); loading them directly",
            RuntimeWarning,
            stacklevel=3,
        )
    claims: dict[str, Claim] = {}
    for name, target in BUILTIN_ENTRY_POINTS.items():  # built-ins first, in table order
        builtin = found.pop(name, None)
        obj = builtin.load() if builtin is not None else _load_builtin(target)
        claims[name] = _instantiate(name, obj, builtin.value if builtin is not None else target)
    for name in sorted(found):  # then third-party claims, by name
        ep = found[name]
        try:
            obj = ep.load()
        except Exception as exc:
            raise ClaimRegistrationError(
                f"entry point {name!r} ({ep.value}) failed to load: {exc}"
            ) from exc
        claims[name] = _instantiate(name, obj, ep.value)
    return claims


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
