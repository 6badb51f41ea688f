"""How the report names things: the CAM method, each model's role and class, a claim's reasons.

Read from what the study and the claims recorded, never assumed (no "Grad-CAM" or "ResNet-50"
written into text that could describe another run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from xai_checks.cam.methods import method_title
from xai_checks.defaults import AUTO_LIMIT

if TYPE_CHECKING:
    from xai_checks.claims.base import Verdict
    from xai_checks.study import ModelRun, StudyResult

__all__ = [
    "method_name",
    "model_class",
    "model_roles",
    "reason_texts",
    "see_more",
]


def method_name(study: StudyResult) -> str:
    """The CAM method the study used, as a reader knows it (``Grad-CAM`` unless recorded)."""
    return method_title(str(getattr(study.config, "method", None) or "gradcam"))


def model_roles(study: StudyResult) -> list[tuple[str, str, ModelRun]]:
    """``(name, role, run)`` for every model: ``under test`` first, then each control.

    Reads the explicit roles (``study.under_test`` / ``study.controls``) where the study records
    them; an older result falls back to its run order.
    """
    under = getattr(study, "under_test", None)
    controls = getattr(study, "controls", None)
    if under is not None and isinstance(controls, Mapping):
        out = [(under.name, "under test", under)]
        out += [
            (run.name, "control" if role == run.name else f"control: {role}", run)
            for role, run in controls.items()
        ]
        return out
    names = list(study.runs)
    return [
        (name, "under test" if i == 0 else "control", study.runs[name])
        for i, name in enumerate(names)
    ]


def model_class(run: ModelRun) -> str | None:
    """The model's class name, where the study recorded it."""
    for attr in ("model_class", "class_name", "arch"):
        value = getattr(run, attr, None)
        if value:
            return str(value)
    weights = getattr(run, "weights", None) or {}
    return weights.get("model_class") or weights.get("class_name")


def reason_texts(verdict: Verdict) -> list[str]:
    """A verdict's reasons as text: structured reasons (``{"code", "text"}``) or plain strings."""
    out = []
    for reason in getattr(verdict, "reasons", None) or []:
        if isinstance(reason, Mapping):
            out.append(str(reason.get("text") or reason.get("code") or ""))
        else:
            text = getattr(reason, "text", None)
            out.append(str(text if text is not None else reason))
    return [r for r in out if r]


def see_more(verdicts: Sequence[Verdict], study: StudyResult | None = None) -> list[str]:
    """What to run to see the claims that had too little data here (empty when none did).

    Shown in the report's header and printed by ``xai-checks study`` after its table. The
    ImageNet samples are suggested only to a study on ImageNet-1k's classes; a model with its
    own classes is told to give more photos of them.
    """
    starved = [v.claim.id for v in verdicts if getattr(v, "insufficient", False)]
    if not starved:
        return []
    lines = [
        f"Too little data in this photo set for: {', '.join(starved)}.",
    ]
    photoset = getattr(study, "photoset", None) or {}
    if photoset.get("classes", "imagenet-1k") != "imagenet-1k":
        lines.append(
            f"Give more photos of the model's {photoset.get('n_classes', '')} classes (a larger "
            f"--data folder; {photoset.get('n_used', 0)} were used here), or --limit all if a "
            "limit cut them."
        )
        return lines
    if any("box" not in c for c in starved):
        lines.append(
            "To see every claim on real photos, fetch the 1000 ImageNet sample photos once and "
            f"run the study on {AUTO_LIMIT} of them: xai-checks data fetch imagenet-samples && "
            f"xai-checks study --data imagenet-samples --limit {AUTO_LIMIT}"
        )
    if any("box" in c for c in starved):
        lines.append(
            "The box claim needs photos with object boxes, e.g. a TinyImageNet-200 tree: "
            "xai-checks study --data PATH/tiny-imagenet-200 --layout tinyimagenet200"
        )
    return lines
