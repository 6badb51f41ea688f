"""Study phases as registered units (entry-point group ``xai_checks.phases``).

See :class:`xai_checks.phases.base.Phase` for what a phase declares and
:mod:`xai_checks.phases.registry` for how it is registered.
"""

from xai_checks.phases.base import Phase, PhaseContext
from xai_checks.phases.registry import (
    ENTRY_POINT_GROUP,
    get_phase,
    phase_names,
    registered_phases,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Phase",
    "PhaseContext",
    "get_phase",
    "phase_names",
    "registered_phases",
]
