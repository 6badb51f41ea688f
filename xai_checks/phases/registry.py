"""The phase registry: built-in and third-party phases come from one entry-point group.

A package registers a phase in its ``pyproject.toml``::

    [project.entry-points."xai_checks.phases"]
    my-phase = "my_package.phases:MyPhase"

The entry point's name must equal the phase's ``name``; it may point at a :class:`Phase`
subclass (instantiated without arguments) or at an instance. Phases run in registry order:
the built-ins in :data:`BUILTIN_ENTRY_POINTS`'s order, then third-party ones by name, each
after the phases it ``needs``.
"""

from __future__ import annotations

import functools

from xai_checks._registry import entry_points_of, load_registry
from xai_checks.phases.base import Phase

__all__ = [
    "BUILTIN_ENTRY_POINTS",
    "ENTRY_POINT_GROUP",
    "OPT_IN_PHASES",
    "PhaseRegistrationError",
    "get_phase",
    "phase_names",
    "registered_phases",
]

ENTRY_POINT_GROUP = "xai_checks.phases"

#: the built-in phases, in the order a study runs them (also declared as entry points)
BUILTIN_ENTRY_POINTS: dict[str, str] = {
    "ratio": "xai_checks.phases.builtin:RatioPhase",
    "gridpg": "xai_checks.phases.builtin:GridPGPhase",
    "sanity": "xai_checks.phases.builtin:SanityPhase",
    "agreement": "xai_checks.phases.builtin:AgreementPhase",
    "faithfulness": "xai_checks.phases.faithfulness:FaithfulnessPhase",
}


#: built-in phases a study runs only when asked (``--phases``, ``--claim``, or a pytest claim
#: marker that needs them): the faithfulness phase sends hundreds of perturbed copies of each
#: photo through the model, far more than the other phases together
OPT_IN_PHASES: frozenset[str] = frozenset({"faithfulness"})


class PhaseRegistrationError(TypeError):
    """An entry point in ``xai_checks.phases`` that does not give a valid phase."""


def phase_names() -> tuple[str, ...]:
    """Every registered phase's name, in run order, without importing any phase."""
    found = entry_points_of(ENTRY_POINT_GROUP, kind="phase", error=PhaseRegistrationError)
    return (*BUILTIN_ENTRY_POINTS, *sorted(n for n in found if n not in BUILTIN_ENTRY_POINTS))


@functools.cache
def _registry() -> dict[str, Phase]:
    phases = load_registry(
        ENTRY_POINT_GROUP,
        base=Phase,
        builtins=BUILTIN_ENTRY_POINTS,
        kind="phase",
        error=PhaseRegistrationError,
    )
    for phase in phases.values():
        unknown = [n for n in phase.needs if n not in phases]
        if unknown:
            raise PhaseRegistrationError(
                f"phase {phase.name!r} needs unregistered phase(s) {unknown}"
            )
    return phases


def registered_phases(*, refresh: bool = False) -> tuple[Phase, ...]:
    """Every registered phase, in run order (built-ins first)."""
    if refresh:
        _registry.cache_clear()
    return tuple(_registry().values())


def get_phase(name: str) -> Phase:
    """The registered phase ``name`` (``KeyError`` naming the known ones otherwise)."""
    registry = _registry()
    try:
        return registry[name]
    except KeyError:
        known = ", ".join(registry)
        raise KeyError(f"unknown phase {name!r}; registered phases: {known}") from None
