"""A model's own labels and preprocessing: a class list and an input transform.

:class:`ClassList` names a model's outputs in order. ``None`` wherever a class list is taken
means ImageNet-1k (the 1000 classes of :mod:`xai_checks.data.labels`).

:class:`Preprocess` says how a photo becomes model input: the standard ImageNet eval transform
scaled to ``input_size`` with ``mean``/``std``, or a user's ``transform`` factory
(``FILE.py:factory`` returning a callable PIL image -> tensor).
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from xai_checks.data.loading import IMAGENET_MEAN, IMAGENET_STD, INPUT_SIZE

__all__ = ["ClassList", "ClassListError", "Preprocess", "read_class_list"]


class ClassListError(ValueError):
    """A class list that cannot be read, or does not fit the model (a usage error)."""


def _fold(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).replace("_", " ").split()).casefold()


@dataclass(frozen=True)
class ClassList:
    """Class names in the model's output order; ``source`` says where they came from."""

    names: tuple[str, ...]
    source: str = "given"

    def __post_init__(self) -> None:
        if not self.names:
            raise ClassListError(f"class list {self.source} is empty")
        seen: dict[str, int] = {}
        for i, name in enumerate(self.names):
            key = _fold(name)
            if not key:
                raise ClassListError(f"class list {self.source}: entry {i} is blank")
            if key in seen:
                raise ClassListError(
                    f"class list {self.source}: {name!r} (line {i + 1}) repeats line "
                    f"{seen[key] + 1}"
                )
            seen[key] = i

    def __len__(self) -> int:
        return len(self.names)

    def index(self, label: str) -> int | None:
        """The output index of ``label`` (a name, case/underscore-insensitive, or an index)."""
        text = label.strip()
        if text.isdigit() and int(text) < len(self.names):
            return int(text)
        key = _fold(text)
        for i, name in enumerate(self.names):
            if _fold(name) == key:
                return i
        return None

    def name(self, index: int) -> str:
        return self.names[index]

    def check_outputs(self, n_outputs: int, *, model: str = "the model") -> None:
        """:class:`ClassListError` unless the list names exactly ``n_outputs`` classes."""
        if n_outputs != len(self.names):
            raise ClassListError(
                f"the class list {self.source} names {len(self.names)} classes, but {model} "
                f"has {n_outputs} outputs; give one name per output, in output order"
            )


def read_class_list(path: str | os.PathLike[str]) -> ClassList:
    """One class name per line (blank lines and ``#`` comments ignored), in output order."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ClassListError(f"cannot read class list {file}: {exc.strerror or exc}") from None
    names = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    return ClassList(tuple(names), source=str(file))


@dataclass(frozen=True)
class Preprocess:
    """How photos become model input. The default is ImageNet's eval transform."""

    input_size: int = INPUT_SIZE
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    #: ``FILE.py:factory`` / ``package.module:factory`` of a user transform; replaces the above
    transform: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.input_size, bool) or self.input_size < 8:
            raise ValueError(f"input_size must be an int >= 8; got {self.input_size!r}")
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"mean {self.mean} and std {self.std} need one value per channel")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive; got {self.std}")

    @property
    def is_default(self) -> bool:
        return self == Preprocess()

    def build(self, kind: str = "standard") -> Callable[[Image.Image], torch.Tensor]:
        """The transform for a photo set of ``kind`` (``standard``, ``precropped``, ``auto``)."""
        if self.transform is not None:
            from xai_checks.models import load_factory

            factory = load_factory(self.transform, what="transform")
            try:
                made = factory()
            except Exception as exc:
                raise ValueError(
                    f"transform {self.transform!r}: the factory raised {type(exc).__name__}: {exc}"
                ) from exc
            if not callable(made):
                raise ValueError(f"transform {self.transform!r} did not return a callable")
            return made
        from xai_checks.data.loading import make_transform

        return make_transform(
            kind,  # type: ignore[arg-type]
            size=self.input_size,
            mean=self.mean,
            std=self.std,
        )

    def input_shape(self, channels: int = 3) -> tuple[int, int, int, int]:
        return (1, channels, self.input_size, self.input_size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "transform": self.transform,
        }


def denormalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Undo ``Normalize(mean, std)`` on (N, C, H, W)."""
    m = torch.tensor(list(mean), dtype=images.dtype).view(1, -1, 1, 1)
    s = torch.tensor(list(std), dtype=images.dtype).view(1, -1, 1, 1)
    return images * s + m
