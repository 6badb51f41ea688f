"""Reading photos as RGB, and the transforms that turn them into model input."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision import transforms as T

from xai_checks._util import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INPUT_SIZE",
    "AutoTransform",
    "ImageLoadError",
    "TransformKind",
    "link_problem",
    "load_image",
    "make_transform",
    "precropped_transform",
    "standard_transform",
    "to_rgb",
]

INPUT_SIZE = 224
RESIZE_SIZE = 256
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


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Read an image file as a fully loaded, upright RGB :class:`PIL.Image.Image` (the file is
    closed).

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
            image.seek(0)
            image.load()
            upright = ImageOps.exif_transpose(image)
            return to_rgb(upright if upright is not None else image)
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


def _normalize() -> T.Normalize:
    return T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)


def standard_transform() -> T.Compose:
    """torchvision's ImageNet eval transform: Resize(256), CenterCrop(224), ToTensor, Normalize."""
    return T.Compose([T.Resize(RESIZE_SIZE), T.CenterCrop(INPUT_SIZE), T.ToTensor(), _normalize()])


def precropped_transform() -> T.Compose:
    """For photos already framed for the model (e.g. 224x224 or 64x64 crops): resize the whole
    image to 224x224 (nothing cropped away), ToTensor, Normalize."""
    return T.Compose([T.Resize((INPUT_SIZE, INPUT_SIZE)), T.ToTensor(), _normalize()])


class AutoTransform:
    """Per image: :func:`precropped_transform` for square images no larger than 224x224,
    :func:`standard_transform` otherwise."""

    def __init__(self) -> None:
        self.standard = standard_transform()
        self.precropped = precropped_transform()

    def __call__(self, image: Image.Image) -> torch.Tensor:
        width, height = image.size
        if width == height and width <= INPUT_SIZE:
            return self.precropped(image)
        return self.standard(image)

    def __repr__(self) -> str:
        return "AutoTransform(square <= 224: precropped; else standard)"


def make_transform(kind: TransformKind = "standard") -> Transform:
    """The transform called ``kind``: ``"standard"``, ``"precropped"`` or ``"auto"``."""
    if kind == "standard":
        return standard_transform()
    if kind == "precropped":
        return precropped_transform()
    if kind == "auto":
        return AutoTransform()
    raise ValueError(f"unknown transform kind {kind!r}: use 'standard', 'precropped' or 'auto'")
