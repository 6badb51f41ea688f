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
import importlib
import warnings
from importlib.metadata import EntryPoint, entry_points

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
