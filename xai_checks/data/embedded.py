"""The embedded photo set: real photos that ship inside installed packages.

Nothing is downloaded: scikit-image bundles its classic test photos in its wheel (``coffee``,
``camera``, ``astronaut``, ``rocket``, ``motorcycle_*``) and matplotlib bundles
``grace_hopper.jpg``. The list, with each photo's ImageNet-1k class and a description, is data
(``embedded_photos.json``). Photos with a ``crop`` frame one object of a larger scene; their
cropped copies are written once into the cache (``<cache>/embedded``), named after the source
file's hash, and read from there.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from xai_checks.cache import atomic_write, cache_dir, cache_lock, sha256_file
from xai_checks.data.labels import LabelError, wnid_to_index
from xai_checks.data.loading import ImageLoadError, load_image
from xai_checks.data.samples import Box, Sample, Skipped, make_sample

__all__ = ["EmbeddedPhoto", "embedded_photos", "embedded_samples", "package_dir"]


@dataclass(frozen=True)
class EmbeddedPhoto:
    """One entry of ``embedded_photos.json``."""

    id: str
    package: str
    file: str
    wnid: str
    label: int
    crop: Box | None
    description: str


def package_dir(package: str) -> Path | None:
    """The folder of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def embedded_photos() -> tuple[EmbeddedPhoto, ...]:
    """The entries of the embedded set, in file order."""
    text = resources.files("xai_checks.data").joinpath("embedded_photos.json").read_text("utf-8")
    photos = []
    for entry in json.loads(text)["photos"]:
        crop = entry.get("crop")
        photos.append(
            EmbeddedPhoto(
                id=entry["id"],
                package=entry["package"],
                file=entry["file"],
                wnid=entry["wnid"],
                label=wnid_to_index(entry["wnid"]),
                crop=None
                if crop is None
                else (int(crop[0]), int(crop[1]), int(crop[2]), int(crop[3])),
                description=entry["description"],
            )
        )
    return tuple(photos)


def _cropped(photo: EmbeddedPhoto, source: Path, crop: Box) -> Path:
    digest = sha256_file(source)[:12]
    x0, y0, x1, y1 = crop
    target = cache_dir("embedded") / f"{photo.id}-{digest}-{x0}_{y0}_{x1}_{y1}.png"
    if target.is_file():  # written atomically: no lock needed to read (a read-only cache works)
        return target
    with cache_lock(target):
        if not target.is_file():
            image = load_image(source)
            width, height = image.size
            if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
                raise ImageLoadError(source, f"crop {crop} lies outside the {width}x{height} image")
            with atomic_write(target) as handle:
                image.crop(crop).save(handle, format="PNG")
    return target


def embedded_samples() -> tuple[list[Sample], list[Skipped]]:
    """The embedded set's samples, and the entries that are not on this machine (with why)."""
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    for photo in embedded_photos():
        base = package_dir(photo.package)
        if base is None:
            skipped.append(
                Skipped(Path(photo.package) / photo.file, f"{photo.package} is not installed")
            )
            continue
        source = base / photo.file
        if not source.is_file():
            skipped.append(Skipped(source, f"{photo.package} was installed without this file"))
            continue
        try:
            path = source if photo.crop is None else _cropped(photo, source, photo.crop)
            samples.append(make_sample(path, photo.label))
        except (ImageLoadError, LabelError) as exc:
            skipped.append(Skipped(source, str(exc)))
    return samples, skipped
