"""Reading photos as RGB, and the transforms that turn them into model input."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision import transforms as T
from torchvision import tv_tensors
from torchvision.transforms import v2

from xai_checks._util import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INPUT_SIZE",
    "MAX_ASPECT",
    "MAX_SIDE",
    "AutoTransform",
    "BoxF",
    "ImageLoadError",
    "PhotoTransform",
    "TransformKind",
    "decode_hint",
    "link_problem",
    "load_image",
    "make_transform",
    "precropped_transform",
    "standard_transform",
    "to_rgb",
    "transform_photo",
]

INPUT_SIZE = 224
RESIZE_SIZE = 256
#: the longest side of a photo taken (longer ones are skipped before decoding): past any
#: camera's, and short of what Pillow's decompression-bomb guard refuses anyway
MAX_SIDE = 20_000
#: the most elongated photo taken, long side over short side (a 1 px high strip would be
#: resized to 256 px high, and its long side by the same factor, before the crop)
MAX_ASPECT = 20.0
#: White, the background that transparent pixels are composited onto.
BACKGROUND = (255, 255, 255)

TransformKind = Literal["standard", "precropped", "auto"]
Transform = Callable[[Image.Image], torch.Tensor]


class ImageLoadError(OSError):
    """A file that is missing, empty, corrupt, truncated or not an image; ``reason`` says which."""

    def __init__(self, path: str | os.PathLike[str], reason: str):
        super().__init__(f"cannot load {os.fspath(path)}: {reason}")
        self.path = Path(path)
        self.reason = reason


def _high_bit_depth_to_l(image: Image.Image) -> Image.Image:
    """16-bit or 32-bit greyscale (``I;16*``, ``I``, ``F``) to 8-bit ``L``, scaled by bit depth."""
    array = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        scaled = array / 257.0
    elif image.mode == "F":
        finite = array[np.isfinite(array)]
        top = float(finite.max()) if finite.size else 0.0
        scaled = array * 255.0 if top <= 1.0 else array
    else:  # "I": 32-bit ints, often 16-bit data in disguise
        top = float(array.max()) if array.size else 0.0
        scaled = array if top <= 255 else array / (257.0 if top <= 65535 else top / 255.0)
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """A new RGB image from any PIL mode.

    Greyscale, palette, CMYK, YCbCr and 16-bit images are converted; images with an alpha
    channel (RGBA, LA, palette with transparency) are composited onto white.
    """
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode.startswith("I") or mode == "F":
        image = _high_bit_depth_to_l(image)
    if image.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def link_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a symbolic link at ``path`` cannot be read (dangling, or a loop); None otherwise."""
    file = Path(path)
    if not file.is_symlink():
        return None
    try:
        file.stat()
    except FileNotFoundError:
        return f"dangling symbolic link (to {os.readlink(file)})"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        return None
    return None


def _refuse_shape(file: Path, size: tuple[int, int]) -> None:
    """:class:`ImageLoadError` for a photo whose side or aspect ratio is past the bounds,
    from its header alone (nothing decoded)."""
    width, height = size
    if max(width, height) > MAX_SIDE:
        raise ImageLoadError(file, f"{width}x{height} px: a side is over {MAX_SIDE} px")
    if min(width, height) < 1 or max(width, height) / min(width, height) > MAX_ASPECT:
        raise ImageLoadError(
            file, f"{width}x{height} px: aspect ratio over {MAX_ASPECT:g}:1 (a strip, not a photo)"
        )


def load_image(path: str | os.PathLike[str], *, size_hint: int | None = None) -> Image.Image:
    """Read an image file as a fully loaded, upright RGB :class:`PIL.Image.Image` (the file is
    closed).

    A photo with a side over :data:`MAX_SIDE` or an aspect ratio over :data:`MAX_ASPECT` is
    refused from its header, before decoding. ``size_hint`` is the shortest side the caller
    needs: a JPEG is decoded at the smallest scale that keeps its short side at least that
    (Pillow's ``draft``), any other format is reduced by a whole factor after decoding
    (``Image.reduce``) when it is at least twice that, so memory follows the hint, not the file.

    The EXIF orientation is applied (a phone photo stored on its side comes out as it is
    shown). Multi-frame files give their first frame. Raises :class:`ImageLoadError` with the
    reason for a missing, unreadable, empty, corrupt, truncated or non-image file, a dangling
    symbolic link or a link loop (truncated files are caught only while PIL's global
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left at its default, False).
    """
    file = Path(path)
    link = link_problem(file)
    if link is not None:
        raise ImageLoadError(file, link)
    try:
        size = file.stat().st_size
    except FileNotFoundError:
        raise ImageLoadError(file, "no such file") from None
    except PermissionError:
        raise ImageLoadError(file, "permission denied") from None
    except OSError as exc:
        raise ImageLoadError(file, f"cannot read it ({exc.strerror or exc})") from exc
    if not file.is_file():
        raise ImageLoadError(file, "not a regular file")
    if size == 0:
        raise ImageLoadError(file, "empty file (0 bytes)")
    try:
        with Image.open(file) as image:
            _refuse_shape(file, image.size)
            image.seek(0)
            if size_hint is not None and image.format == "JPEG":
                image.draft(image.mode, _draft_size(image.size, size_hint))
            image.load()
            decoded: Image.Image = image
            if size_hint is not None and min(image.size) // size_hint >= 2:
                decoded = image.reduce(min(image.size) // size_hint)
            upright = ImageOps.exif_transpose(decoded)
            return to_rgb(upright if upright is not None else decoded)
    except PermissionError:
        raise ImageLoadError(file, "permission denied") from None
    except UnidentifiedImageError:
        raise ImageLoadError(file, "not an image file PIL can identify") from None
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(file, f"too large to decode safely ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower():
            reason = f"truncated or corrupt ({reason})"
        else:
            reason = f"corrupt image data ({reason})"
        raise ImageLoadError(file, reason) from exc


def _draft_size(size: tuple[int, int], short: int) -> tuple[int, int]:
    """The size to ask ``draft`` for: ``size`` scaled so its short side is ``short`` (draft
    keeps at least the size asked for)."""
    scale = short / min(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def decode_hint(transform: object) -> int | None:
    """The short side ``transform`` needs a photo decoded at (None: the full photo)."""
    hint = getattr(transform, "decode_hint", None)
    return hint if isinstance(hint, int) else None


BoxF = tuple[float, float, float, float]
"""A box (x0, y0, x1, y1) in pixels, fractional after a transform."""


class PhotoTransform:
    """A photo (PIL) -> model input (3, size, size), carrying boxes along exactly.

    ``kind`` ``"standard"``: Resize(resize) on the short side, CenterCrop(size) (ImageNet's
    eval transform); ``"precropped"``: Resize((size, size)), nothing cropped away. The geometry
    is a ``torchvision.transforms.v2`` pipeline that moves the image and its
    ``BoundingBoxes`` together, so a box is mapped by the very resize and crop the pixels went
    through, from the one decoded image. Then ``ToTensor`` and ``Normalize(mean, std)``, bit for
    bit as torchvision's v1 eval pipeline (v2's ``ToDtype`` multiplies by 1/255 and differs in
    the last bit).
    """

    def __init__(
        self,
        kind: Literal["standard", "precropped"] = "standard",
        *,
        size: int = INPUT_SIZE,
        resize: int | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        if kind == "standard":
            edge = resize if resize is not None else round(size * RESIZE_SIZE / INPUT_SIZE)
            self.geometry: v2.Transform = v2.Compose([v2.Resize(edge), v2.CenterCrop(size)])
        elif kind == "precropped":
            edge = size
            self.geometry = v2.Resize((size, size))
        else:
            raise ValueError(f"unknown transform kind {kind!r}: use 'standard' or 'precropped'")
        self.kind = kind
        #: decode photos with a short side of at least twice what the resize keeps, so the
        #: antialiased resize still averages over full-resolution detail
        self.decode_hint = 2 * edge
        self.to_tensor = T.ToTensor()
        self.normalize = T.Normalize(mean=list(mean), std=list(std))

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.normalize(self.to_tensor(self.geometry(image)))

    def with_box(self, image: Image.Image, box: Sequence[float]) -> tuple[torch.Tensor, BoxF]:
        """The model input and ``box`` (x0, y0, x1, y1 in ``image``'s pixels) moved into the
        input's pixels (clipped to it)."""
        boxes = tv_tensors.BoundingBoxes(
            torch.tensor([list(box)], dtype=torch.float64),
            format=tv_tensors.BoundingBoxFormat.XYXY,
            canvas_size=(image.height, image.width),
        )
        moved_image, moved = self.geometry(image, boxes)
        x0, y0, x1, y1 = (float(v) for v in moved[0])
        return self.normalize(self.to_tensor(moved_image)), (x0, y0, x1, y1)

    def __repr__(self) -> str:
        return f"PhotoTransform({self.kind!r}, {self.geometry}, {self.normalize})"


def standard_transform() -> PhotoTransform:
    """torchvision's ImageNet eval transform: Resize(256), CenterCrop(224), ToTensor, Normalize."""
    return PhotoTransform("standard")


def precropped_transform() -> PhotoTransform:
    """For photos already framed for the model (e.g. 224x224 or 64x64 crops): resize the whole
    image to 224x224 (nothing cropped away), ToTensor, Normalize."""
    return PhotoTransform("precropped")


class AutoTransform:
    """Per image: the precropped transform for square images no larger than ``size``, the
    standard one otherwise."""

    def __init__(
        self,
        *,
        size: int = INPUT_SIZE,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.size = size
        self.standard = PhotoTransform("standard", size=size, mean=mean, std=std)
        self.precropped = PhotoTransform("precropped", size=size, mean=mean, std=std)
        self.decode_hint = max(self.standard.decode_hint, self.precropped.decode_hint)

    def _pick(self, image: Image.Image) -> PhotoTransform:
        width, height = image.size
        return self.precropped if width == height and width <= self.size else self.standard

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self._pick(image)(image)

    def with_box(self, image: Image.Image, box: Sequence[float]) -> tuple[torch.Tensor, BoxF]:
        return self._pick(image).with_box(image, box)

    def __repr__(self) -> str:
        return f"AutoTransform(square <= {self.size}: precropped; else standard)"


def transform_photo(
    transform: Transform, image: Image.Image, box: Sequence[float] | None
) -> tuple[torch.Tensor, BoxF | None]:
    """``transform(image)``, and ``box`` mapped into the result's pixels where the transform
    can say where it moved them (a :class:`PhotoTransform` or :class:`AutoTransform`);
    ``None`` for no box or any other callable."""
    with_box = getattr(transform, "with_box", None)
    if box is None or with_box is None:
        return transform(image), None
    tensor, moved = with_box(image, box)
    return tensor, moved


def make_transform(
    kind: TransformKind = "standard",
    *,
    size: int = INPUT_SIZE,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> PhotoTransform | AutoTransform:
    """The transform called ``kind``: ``"standard"``, ``"precropped"`` or ``"auto"``, for input
    ``size`` (the resize edge keeps ImageNet's 256/224 ratio) and normalisation ``mean``/``std``."""
    if kind in ("standard", "precropped"):
        return PhotoTransform(kind, size=size, mean=mean, std=std)
    if kind == "auto":
        return AutoTransform(size=size, mean=mean, std=std)
    raise ValueError(f"unknown transform kind {kind!r}: use 'standard', 'precropped' or 'auto'")
