"""A model's own labels and preprocessing: a class list and an input transform.

:class:`ClassList` names a model's outputs in order. ``None`` wherever a class list is taken
means ImageNet-1k (the 1000 classes of :mod:`xai_checks.data.labels`).

:class:`Preprocess` says how a photo becomes model input: the standard ImageNet eval transform
scaled to ``input_size`` with ``mean``/``std``, or a user's ``transform`` factory
(``FILE.py:factory`` returning a callable PIL image -> tensor, or that callable itself).
:func:`as_preprocess` takes any of the forms a pytest ``xai_preprocess`` fixture may return.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from xai_checks.data.loading import IMAGENET_MEAN, IMAGENET_STD, INPUT_SIZE

__all__ = [
    "MAX_INPUT_SIZE",
    "MIN_STD",
    "ClassList",
    "ClassListError",
    "Preprocess",
    "as_preprocess",
    "probe_preprocess",
    "read_class_list",
]

#: the largest ``input_size`` taken without ``allow_large``: a 4096 px square is 200 MB of
#: float32 input per photo and channel triple, already past any ImageNet-style CNN's use
MAX_INPUT_SIZE = 4096
#: the largest class-list file read: a million classes of 16 characters
MAX_CLASS_LIST_BYTES = 16 * 1024 * 1024
#: the smallest normalisation std: the transform divides in float32, and below this a
#: photo's values leave the range where gradients mean anything (1e-300 is 0 in float32)
MIN_STD = 1e-6


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
        if file.exists() and not file.is_file():
            raise ClassListError(f"class list {file} is not a regular file")
        with file.open("rb") as handle:
            raw = handle.read(MAX_CLASS_LIST_BYTES + 1)
        if len(raw) > MAX_CLASS_LIST_BYTES:
            raise ClassListError(
                f"class list {file} is over {MAX_CLASS_LIST_BYTES} bytes: not a class list"
            )
        text = raw.decode("utf-8")
    except OSError as exc:
        raise ClassListError(f"cannot read class list {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ClassListError(
            f"class list {file} is not UTF-8 text (byte {exc.start}: {exc.reason}); "
            "save it as UTF-8"
        ) from None
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
    #: a user transform: ``FILE.py:factory`` / ``package.module:factory`` naming a factory that
    #: returns it, or the callable (PIL image -> tensor) itself; replaces mean/std and resizing
    #: (``input_size`` still sizes the trace that finds the layers: give the transform's)
    transform: str | Callable[[Image.Image], torch.Tensor] | None = None
    #: take an ``input_size`` above :data:`MAX_INPUT_SIZE` (memory grows with its square)
    allow_large: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.input_size, int) or isinstance(self.input_size, bool):
            raise ValueError(f"input_size must be a whole number; got {self.input_size!r}")
        if self.input_size < 8:
            raise ValueError(f"input_size must be >= 8; got {self.input_size!r}")
        if self.input_size > MAX_INPUT_SIZE and not self.allow_large:
            raise ValueError(
                f"input_size {self.input_size} is above {MAX_INPUT_SIZE} px: one photo would "
                f"take {_gib(self.input_size)} GiB as model input; pass --allow-large-input "
                "(Python: Preprocess(allow_large=True)) if that is meant"
            )
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"mean {self.mean} and std {self.std} need one value per channel")
        if any(not s >= MIN_STD for s in self.std):
            raise ValueError(f"std must be >= {MIN_STD} (float32 division); got {self.std}")

    @property
    def is_default(self) -> bool:
        return self == Preprocess()

    def build(self, kind: str = "standard") -> Callable[[Image.Image], torch.Tensor]:
        """The transform for a photo set of ``kind`` (``standard``, ``precropped``, ``auto``)."""
        if self.transform is not None and not isinstance(self.transform, str):
            return self.transform
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
            "transform": self.transform_name,
        }

    @property
    def transform_name(self) -> str | None:
        """The transform as text: its spec, or a callable's ``module.qualname``."""
        if self.transform is None or isinstance(self.transform, str):
            return self.transform
        kind = self.transform if hasattr(self.transform, "__qualname__") else type(self.transform)
        return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', repr(kind))}"


def as_preprocess(value: Any) -> Preprocess:
    """A :class:`Preprocess` from what a pytest ``xai_preprocess`` fixture returns: a
    :class:`Preprocess`, a mapping of its fields (``{"input_size": 64, "mean": ..., "std":
    ...}``), or a callable transform (PIL image -> tensor; give ``input_size`` with it through
    the mapping form when it is not 224). :class:`ValueError` names what is wrong."""
    if isinstance(value, Preprocess):
        return value
    if isinstance(value, dict | Mapping):
        unknown = set(value) - {f for f in Preprocess.__dataclass_fields__}
        if unknown:
            raise ValueError(
                f"unknown preprocessing field(s) {sorted(unknown)}; use "
                f"{', '.join(Preprocess.__dataclass_fields__)}"
            )
        fields = dict(value)
        for key in ("mean", "std"):
            if key in fields:
                fields[key] = tuple(float(v) for v in fields[key])
        return Preprocess(**fields)
    if callable(value):
        return Preprocess(transform=value)
    raise ValueError(
        f"expected a Preprocess, a mapping of its fields or a callable transform; got "
        f"{type(value).__name__}"
    )


def _gib(size: int, channels: int = 3) -> str:
    return f"{size * size * channels * 4 / 2**30:.1f}"


#: a probe photo for :func:`probe_preprocess`: a smooth gradient, so no channel equals a mean
def _probe_image() -> Image.Image:
    ramp = torch.linspace(0, 255, 96).to(torch.uint8)
    rgb = torch.stack([ramp.view(1, -1).expand(80, -1), ramp.view(-1, 1)[:80].expand(-1, 96)])
    rgb = torch.cat([rgb, rgb[:1].flip(1)]).permute(1, 2, 0).contiguous()
    return Image.fromarray(rgb.numpy(), mode="RGB")


def probe_preprocess(preprocess: Preprocess, *, kind: str, channels: int) -> None:
    """Build ``preprocess``'s transform and run it on one probe photo: :class:`ValueError`
    with a message unless it gives a finite float tensor (C, H, W) with the model's
    ``channels``. Run before any photo is decoded, so a broken transform is a usage error."""
    if preprocess.transform is None and len(preprocess.mean) != channels:
        raise ValueError(
            f"mean/std (--mean/--std) give {len(preprocess.mean)} values but the model takes "
            f"{channels} input channels; give one per channel"
        )
    made = preprocess.build(kind)
    what = (
        f"transform {preprocess.transform_name!r}" if preprocess.transform else "the preprocessing"
    )
    try:
        out = made(_probe_image())
    except Exception as exc:
        raise ValueError(f"{what} raised {type(exc).__name__} on a photo: {exc}") from None
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"{what} returned {type(out).__name__}, not a torch.Tensor (C, H, W)")
    if out.dim() != 3 or not out.is_floating_point():
        raise ValueError(
            f"{what} returned a {out.dtype} tensor of shape {tuple(out.shape)}; expected a float "
            "tensor (C, H, W)"
        )
    if out.shape[0] != channels:
        raise ValueError(f"{what} gives {out.shape[0]} channel(s) but the model takes {channels}")
    if not torch.isfinite(out).all():
        raise ValueError(f"{what} gives non-finite values (is a std too small?)")


def denormalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Undo ``Normalize(mean, std)`` on (N, C, H, W)."""
    m = torch.tensor(list(mean), dtype=images.dtype).view(1, -1, 1, 1)
    s = torch.tensor(list(std), dtype=images.dtype).view(1, -1, 1, 1)
    return images * s + m
