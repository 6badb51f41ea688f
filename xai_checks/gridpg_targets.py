"""Which photos may be a GridPG mosaic's target: the rule, defined once.

Both rules select on the model under test's own output, so both condition the claim on that
model; they differ in how strongly.

``confident`` (the default)
    the model classifies the photo correctly with top-1 probability at or above
    ``StudyConfig.gridpg_confidence`` (0.9). This keeps the photos on which the model's
    evidence for the true class is strongest: typically one large, central, unoccluded object
    of a class the model knows well. The claim is then about those photos only; the
    localisation scores are those of easy photos, higher than over all photos, and the photos
    the model finds hard or gets wrong (where an explanation is most often wanted) are left
    out. The untrained control is scored on the same mosaics, so the selection does not favour
    the model against it, but it is not an unbiased sample of the photos either.
``top5``
    the photo's true label is among the model's five most probable classes (ties with the
    true class count in its favour). Wrong top-1 predictions and unsure ones stay in, as long
    as the model ranks the true class at all: a much weaker dependence on the model's output,
    and a larger, more representative set of targets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["GRIDPG_TARGETS", "GridPGTargets", "describe_gridpg_targets", "is_gridpg_target"]

GridPGTargets = Literal["confident", "top5"]

#: the rules' names, for option choices and validation
GRIDPG_TARGETS: tuple[str, ...] = ("confident", "top5")

#: the top-k of the ``top5`` rule
TOP_K = 5


def is_gridpg_target(record: Mapping[str, Any], *, rule: str, confidence: float) -> bool:
    """Whether a photo's ratio-phase record qualifies as a GridPG target under ``rule``.

    ``record`` holds ``correct`` and ``confidence`` (top-1 probability) and, for ``top5``,
    ``true_rank`` (0 when no class is more probable than the true one).
    """
    if rule == "confident":
        return bool(record["correct"]) and float(record["confidence"]) >= confidence
    if rule == "top5":
        return int(record["true_rank"]) < TOP_K
    raise ValueError(f"unknown GridPG target rule {rule!r}; choose from {GRIDPG_TARGETS}")


def describe_gridpg_targets(rule: str, *, confidence: float) -> str:
    """The rule in words, to follow "photos ..." (the report, notes, the hypothesis)."""
    if rule == "confident":
        return f"that the model classifies correctly with confidence >= {confidence:g}"
    if rule == "top5":
        return f"whose true label is among the model's top {TOP_K} classes"
    raise ValueError(f"unknown GridPG target rule {rule!r}; choose from {GRIDPG_TARGETS}")
