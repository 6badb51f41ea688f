"""The records a photo set is made of: a labelled :class:`Sample` and a :class:`Skipped` file.

They live apart from the layouts (``photoset.py``) and the embedded set (``embedded.py``) so that
both can build samples without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from xai_checks.data.labels import class_name, class_wnid

__all__ = ["Box", "Sample", "Skipped", "make_sample"]

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Sample:
    """One labelled photo. ``box`` is (x0, y0, x1, y1) in the original image's pixels."""

    path: Path
    label: int
    wnid: str
    name: str
    box: Box | None = None


class Skipped(NamedTuple):
    """A file left out of a photo set, and why."""

    path: Path
    reason: str


def make_sample(path: Path, label: int, box: Box | None = None) -> Sample:
    """A :class:`Sample` for ``path`` with its wnid and class name filled in from ``label``."""
    return Sample(path=path, label=label, wnid=class_wnid(label), name=class_name(label), box=box)
