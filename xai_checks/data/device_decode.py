"""Photos decoded, resized and normalised on the model's device, from file bytes.

The CPU path (:func:`~xai_checks.data.load_image` and a
:class:`~xai_checks.data.loading.PhotoTransform` in ``DataLoader`` workers) decodes every JPEG
with PIL on the host, which bounds a GPU study at the host's decoding rate. Here the workers
only read each file's bytes and its header (format, size, EXIF orientation); the main process
decodes a batch of JPEGs with one ``torchvision.io.decode_jpeg(..., device=device)`` call
(nvJPEG on a GPU) and resizes, crops and normalises on the device.

Photos the device decoder does not take are decoded on the CPU as before, in the workers, and
counted by reason (:attr:`DecodeCounts.cpu`): another format (PNG, WebP, ...), a JPEG that is not
plain RGB or greyscale (CMYK, YCCK), one stored rotated (an EXIF orientation, which the CPU path
applies), one the device decoder refuses. A file that will not load at all gets the CPU path's
reason, so the two paths skip the same photos with the same words.

The geometry is the CPU path's: the output size, the resize edge, the centre crop and each box
are computed by the same torchvision v2 functions; only the pixel arithmetic differs
(antialiased bilinear resampling of a uint8 tensor against PIL's, and nvJPEG's IDCT against
libjpeg-turbo's), by a tolerance ``tests/unit/test_device_decode.py`` measures on real photos.

One version-dependent path is taken out of torchvision's hands (:func:`resize_uint8_on_cpu`):
on the CPU, torchvision's ``resize`` of a uint8 tensor uses torch's uint8 kernel, whose
fixed-point sums round as PIL's do, only where its CPU check says so; torchvision 0.19, among
others, tests ``"AVX2" in get_cpu_capability()``, which is false on an AVX-512 CPU
(``"AVX512"``, https://github.com/pytorch/vision/issues/8374), and then resamples in float32
and rounds, one 8-bit level away from PIL on about a sixth of the values. Calling torch's
kernel directly gives every torchvision version PIL's rounding.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import torch
from PIL import Image
from torch import Tensor
from torchvision import tv_tensors
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as TF

from xai_checks.data.loading import (
    AutoTransform,
    ImageLoadError,
    PhotoTransform,
    link_problem,
    load_image,
    transform_photo,
)
from xai_checks.data.prefetch import Prefetcher

__all__ = [
    "DecodeCounts",
    "DeviceDecoder",
    "EncodedPhoto",
    "PhotoBytes",
    "device_batches",
    "resize_uint8_on_cpu",
    "supports_device_decode",
]

#: CPU-decoding reasons, as counted in :attr:`DecodeCounts.cpu`
NOT_JPEG = "not a JPEG"
NOT_RGB = "JPEG not RGB or greyscale"
ROTATED = "EXIF orientation"
REFUSED = "device decoder refused it"
#: JPEG modes the device decoder turns into RGB as PIL does
_JPEG_MODES = ("RGB", "L")
_EXIF_ORIENTATION = 0x0112


@dataclass
class EncodedPhoto:
    """One photo as a worker hands it over: JPEG bytes for the device, or the CPU path's tensor.

    ``kind`` is the transform to apply (``"standard"`` or ``"precropped"``, picked from the
    header as the CPU path picks it); ``box`` the photo's box already moved into the input's
    pixels; ``cpu_reason`` why the photo was decoded on the CPU (None for device bytes).
    """

    index: int
    data: Tensor | None = None  # uint8 (bytes,) of the JPEG file
    tensor: Tensor | None = None  # (3, S, S), the CPU path's model input
    kind: str = "standard"
    box: Any = None
    cpu_reason: str | None = None
    failure: str | None = None  # the photo will not load: the CPU path's reason


def supports_device_decode(transform: object) -> TypeGuard[PhotoTransform | AutoTransform]:
    """Whether photos for ``transform`` can be prepared on the device: the built-in transforms
    (standard, precropped, auto); a user's transform runs on PIL images, on the CPU."""
    return isinstance(transform, PhotoTransform | AutoTransform)


def _pick(transform: PhotoTransform | AutoTransform, image: Image.Image) -> PhotoTransform:
    """The transform the CPU path applies to ``image`` (only its size is read)."""
    if isinstance(transform, AutoTransform):
        return (
            transform.precropped
            if transform._pick(image) is transform.precropped
            else (transform.standard)
        )
    return transform


def _leading_resize(geometry: v2.Transform) -> v2.Resize:
    """The antialiased bilinear ``Resize`` a built-in transform's geometry starts with."""
    first = geometry.transforms[0] if isinstance(geometry, v2.Compose) else geometry
    if (
        not isinstance(first, v2.Resize)
        # an InterpolationMode, or its value on torchvision versions that store the string
        or InterpolationMode(first.interpolation) is not InterpolationMode.BILINEAR
        or not first.antialias
    ):
        raise TypeError(f"no device decoding for the geometry {geometry!r}")
    return first


def resize_uint8_on_cpu(image: Tensor, resize: v2.Resize) -> Tensor:
    """uint8 ``image`` (3, H, W) on the CPU resized as ``resize`` sizes it, by torch's uint8
    antialiased bilinear kernel, whatever torchvision version and CPU (the module's note).

    The output size is ``resize``'s own, read off a box canvas it moves; applying ``resize``
    to the result is then the identity, so the geometry that follows only crops.
    """
    height, width = image.shape[-2:]
    canvas = tv_tensors.BoundingBoxes(
        torch.zeros(1, 4), format=tv_tensors.BoundingBoxFormat.XYXY, canvas_size=(height, width)
    )
    size = list(resize(canvas).canvas_size)
    if size == [height, width]:
        return image
    resized = torch.nn.functional.interpolate(
        image.unsqueeze(0), size=size, mode="bilinear", align_corners=False, antialias=True
    )
    return resized.squeeze(0)


def _moved_box(pick: PhotoTransform, size_hw: tuple[int, int], box: Sequence[float]) -> Any:
    """``box`` moved by ``pick``'s geometry, as :meth:`PhotoTransform.with_box` moves it."""
    boxes = tv_tensors.BoundingBoxes(
        torch.tensor([list(box)], dtype=torch.float64),
        format=tv_tensors.BoundingBoxFormat.XYXY,
        canvas_size=size_hw,
    )
    moved = pick.geometry(boxes)
    x0, y0, x1, y1 = (float(v) for v in moved[0])
    return (x0, y0, x1, y1)


class PhotoBytes(torch.utils.data.Dataset[EncodedPhoto]):
    """Photo ``i`` -> :class:`EncodedPhoto`; runs in ``DataLoader`` workers.

    Reads the file's bytes and its header only; decodes on the CPU (the CPU path's own code)
    just the photos the device decoder does not take.
    """

    def __init__(
        self,
        samples: Sequence[Any],
        transform: PhotoTransform | AutoTransform,
    ) -> None:
        if not supports_device_decode(transform):
            raise TypeError(f"no device decoding for the transform {transform!r}")
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def on_cpu(self, i: int, reason: str = REFUSED) -> EncodedPhoto:
        """Photo ``i`` decoded and transformed by the CPU path (``reason`` is counted)."""
        sample = self.samples[i]
        try:
            image = load_image(sample.path)
        except ImageLoadError as exc:
            return EncodedPhoto(i, failure=exc.reason)
        tensor, box = transform_photo(self.transform, image, sample.box)
        return EncodedPhoto(i, tensor=tensor, box=box, cpu_reason=reason)

    def __getitem__(self, i: int) -> EncodedPhoto:
        sample = self.samples[i]
        path = sample.path
        try:
            if link_problem(path) is not None:
                raise OSError("link")
            with open(path, "rb") as fh:
                data = fh.read()
            # Header only: PIL reads format, size and EXIF without decoding, and refuses a
            # decompression bomb here exactly as load_image would.
            with Image.open(io.BytesIO(data)) as header:
                fmt, mode, size = header.format, header.mode, header.size
                orientation = header.getexif().get(_EXIF_ORIENTATION, 1)
                pick = _pick(self.transform, header)
        except Exception:
            # Anything unusual: the CPU path decides (and names the reason if it cannot load).
            return self.on_cpu(i, NOT_JPEG)
        if fmt != "JPEG":
            return self.on_cpu(i, NOT_JPEG)
        if mode not in _JPEG_MODES:
            return self.on_cpu(i, NOT_RGB)
        if orientation not in (1, None):
            return self.on_cpu(i, ROTATED)
        width, height = size
        box = None if sample.box is None else _moved_box(pick, (height, width), sample.box)
        return EncodedPhoto(
            i, data=torch.frombuffer(bytearray(data), dtype=torch.uint8), kind=pick.kind, box=box
        )


def collate_encoded(items: list[EncodedPhoto]) -> list[EncodedPhoto]:
    """The DataLoader's collate: the batch's photos as they are (decoded later, together)."""
    return items


@dataclass
class DecodeCounts:
    """Photos decoded on the device, and on the CPU by reason (for a study's provenance)."""

    device: int = 0
    cpu: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "cpu": dict(self.cpu)}


class DeviceDecoder:
    """Decodes a batch of :class:`EncodedPhoto` into model input on ``device``.

    ``transform`` is the CPU path's (its size, resize edge, mean and std are used); the output
    equals it up to the decoders' and resamplers' rounding. Call it on a worker batch; it
    returns ``(indices, images (N, 3, S, S) on device or None, boxes, failed)``, the CPU
    loader's batch, in the photos' order.
    """

    def __init__(self, transform: PhotoTransform | AutoTransform, device: torch.device) -> None:
        if not supports_device_decode(transform):
            raise TypeError(f"no device decoding for the transform {transform!r}")
        self.device = torch.device(device)
        self.counts = DecodeCounts()
        picks = (
            {"standard": transform.standard, "precropped": transform.precropped}
            if isinstance(transform, AutoTransform)
            else {transform.kind: transform}
        )
        self._geometry: dict[str, Callable[[Tensor], Tensor]] = {
            kind: pick.geometry for kind, pick in picks.items()
        }
        self._resize = {kind: _leading_resize(pick.geometry) for kind, pick in picks.items()}
        normalize = next(iter(picks.values())).normalize
        self._mean = [float(m) for m in normalize.mean]
        self._std = [float(s) for s in normalize.std]

    def _decode(self, data: list[Tensor]) -> list[Tensor | None]:
        """uint8 (3, H, W) per photo on the device; None where the device decoder refuses it."""
        try:
            out = decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device)
            return list(out)
        except RuntimeError:
            pass  # one bad photo fails the batch: decode one by one to find it
        decoded: list[Tensor | None] = []
        for d in data:
            try:
                decoded.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=self.device))
            except RuntimeError:
                decoded.append(None)
        return decoded

    def _prepare(self, image: Tensor, kind: str) -> Tensor:
        """uint8 (3, H, W) -> the model input (3, S, S): the CPU path's geometry on a tensor,
        then ToTensor's ``/ 255`` and Normalize, in float32 as torchvision computes them.

        On the CPU the resize is torch's uint8 kernel (:func:`resize_uint8_on_cpu`); elsewhere
        torch has no uint8 kernel and torchvision resamples in float32 on every version."""
        if image.device.type == "cpu":
            image = resize_uint8_on_cpu(image, self._resize[kind])
        moved = self._geometry[kind](image)
        return TF.normalize(moved.to(torch.float32).div(255), mean=self._mean, std=self._std)

    def __call__(
        self, batch: list[EncodedPhoto], *, on_cpu: Callable[[int], EncodedPhoto] | None = None
    ) -> tuple[list[int], Tensor | None, list[Any], list[tuple[int, str]]]:
        failed = [(p.index, p.failure) for p in batch if p.failure is not None]
        ok = [p for p in batch if p.failure is None]
        jpegs = [p for p in ok if p.data is not None]
        decoded = self._decode([p.data for p in jpegs if p.data is not None]) if jpegs else []
        inputs: dict[int, Tensor] = {}
        for photo, image in zip(jpegs, decoded, strict=True):
            if image is not None:
                inputs[photo.index] = self._prepare(image, photo.kind)
                self.counts.device += 1
            elif on_cpu is not None:
                redone = on_cpu(photo.index)
                if redone.failure is not None:
                    failed.append((photo.index, redone.failure))
                    continue
                assert redone.tensor is not None
                photo.tensor, photo.box = redone.tensor, redone.box
                photo.cpu_reason = redone.cpu_reason
            else:
                failed.append((photo.index, f"corrupt image data ({REFUSED})"))
        for photo in ok:
            if photo.tensor is not None:
                inputs[photo.index] = photo.tensor.to(self.device, non_blocking=True)
                self.counts.cpu[photo.cpu_reason or NOT_JPEG] += 1
        kept = [p for p in ok if p.index in inputs]
        images = torch.stack([inputs[p.index] for p in kept]) if kept else None
        failed.sort()
        return [p.index for p in kept], images, [p.box for p in kept], failed


def device_batches(
    samples: Sequence[Any],
    batches: list[list[int]],
    transform: PhotoTransform | AutoTransform,
    device: torch.device,
    *,
    workers: int,
) -> tuple[Iterable[Any], DecodeCounts]:
    """The study's batches ``(indices, images on device, boxes, failed)`` from file bytes read
    by ``workers`` DataLoader processes, decoded on ``device`` one batch ahead of the consumer
    (:class:`~xai_checks.data.prefetch.Prefetcher`); and the decode counts, filled as it runs."""
    data = PhotoBytes(samples, transform)
    loader = torch.utils.data.DataLoader(
        data,
        batch_sampler=batches,
        collate_fn=collate_encoded,
        num_workers=workers,
        prefetch_factor=2 if workers else None,
    )
    decoder = DeviceDecoder(transform, device)
    staged = Prefetcher(loader, lambda batch: decoder(batch, on_cpu=data.on_cpu), device=device)
    return staged, decoder.counts
