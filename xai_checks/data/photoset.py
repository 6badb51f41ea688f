"""Photo sets: labelled photos found on disk in one of several layouts, and batches of them.

Layouts (``layout=`` of :func:`open_photoset`, or detected with ``"auto"``):

``"flat"``
    ``<root>/<wnid>_<name>.JPEG`` (the ImageNet sample set). ``MANIFEST.tsv`` (file, wnid, ...)
    is used when present; otherwise labels come from the file names.
``"tutorial10"``
    The UvA deep-learning tutorial 10 TinyImageNet: ``<root>/<wnid>/*.JPEG`` and
    ``<root>/label_list.json`` (1000 short names in sorted-wnid order).
``"tinyimagenet200"``
    Stanford's TinyImageNet-200: ``wnids.txt``, ``train/<wnid>/images/*.JPEG`` with
    ``train/<wnid>/<wnid>_boxes.txt``, ``val/images/*.JPEG`` with ``val/val_annotations.txt``.
    Bounding boxes are kept on each :class:`Sample`. ``split`` picks ``"val"`` (the default),
    ``"train"`` or ``"all"``.
``"imagefolder"``
    ``<root>/<class>/*.jpg`` where ``<class>`` is a wnid or a class name (``wallaby``,
    ``great_white_shark``).

Every sample's label is the ImageNet-1k index. Samples are in a deterministic order: by label,
then by path.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, overload

import torch

from xai_checks.data.classes import ClassList
from xai_checks.data.labels import (
    LabelError,
    describe_class,
    is_wnid,
    resolve_label,
    wnid_to_index,
)
from xai_checks.data.labels import class_name as imagenet_class_name
from xai_checks.data.loading import (
    BoxF,
    ImageLoadError,
    Transform,
    link_problem,
    load_image,
    make_transform,
    transform_photo,
)
from xai_checks.data.samples import Box, Sample, Skipped, make_sample

__all__ = [
    "IMAGE_EXTENSIONS",
    "LAYOUTS",
    "Batch",
    "DataWarning",
    "LayoutError",
    "PhotoSet",
    "Sample",
    "Skipped",
    "SkippedImageWarning",
    "detect_layout",
    "iter_batches",
    "open_photoset",
    "select",
    "stratified_subset",
]

Layout = Literal["auto", "flat", "tutorial10", "tinyimagenet200", "imagefolder"]
LAYOUTS: tuple[str, ...] = ("flat", "tutorial10", "tinyimagenet200", "imagefolder")
IMAGE_EXTENSIONS = frozenset(
    {".jpeg", ".jpg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
MANIFEST = "MANIFEST.tsv"
_FLAT_NAME = re.compile(r"(n\d{8})(?:[_\-. ].*)?")


class LayoutError(ValueError):
    """A folder whose layout cannot be told or does not hold what its layout needs."""


class DataWarning(UserWarning):
    """Something in a photo set that was worked around (a missing class, an odd label list)."""


class SkippedImageWarning(DataWarning):
    """A photo that could not be loaded and was skipped."""


@dataclass
class PhotoSet(Sequence[Sample]):
    """A labelled, ordered set of photos.

    ``skipped`` lists the files left out (at opening, and by :func:`iter_batches` for files
    that would not load), so that callers can report how many there were.
    ``transform_kind`` is the transform that suits the set (``"precropped"`` for sets of
    ready-framed crops, ``"standard"`` otherwise).
    """

    name: str
    layout: str
    root: Path | None
    samples: tuple[Sample, ...]
    skipped: list[Skipped] = field(default_factory=list)
    transform_kind: Literal["standard", "precropped", "auto"] = "standard"
    #: the model's classes the labels index into; ``None``: ImageNet-1k
    classes: ClassList | None = None

    def class_name(self, index: int) -> str:
        """The name of output ``index`` in this set's label space."""
        return self.classes.name(index) if self.classes is not None else imagenet_class_name(index)

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Sample]: ...

    def __getitem__(self, index: int | slice) -> Sample | Sequence[Sample]:
        return self.samples[index]

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    @property
    def labels(self) -> tuple[int, ...]:
        """The distinct class indices present, sorted."""
        return tuple(sorted({s.label for s in self.samples}))

    def __repr__(self) -> str:
        where = f", root={str(self.root)!r}" if self.root else ""
        return (
            f"PhotoSet(name={self.name!r}, layout={self.layout!r}{where}, "
            f"{len(self.samples)} photos of {len(self.labels)} classes, "
            f"{len(self.skipped)} skipped)"
        )


# ----------------------------------------------------------------------------- layout helpers


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _visible(entries: Iterable[Path]) -> list[Path]:
    return sorted(p for p in entries if not p.name.startswith("."))


def _listed(path: Path) -> bool:
    """Anything but a folder: a file, a symbolic link even when broken, a FIFO or a device
    (the ones that are not photos are counted as skips when read, not lost)."""
    return path.is_symlink() or not path.is_dir()


def _images_in(folder: Path) -> list[Path]:
    return [p for p in _visible(folder.iterdir()) if _listed(p) and _is_image(p)]


def _subdirs(folder: Path) -> list[Path]:
    return [p for p in _visible(folder.iterdir()) if p.is_dir()]


def _has_images(folder: Path) -> bool:
    return any(p.is_file() and _is_image(p) for p in folder.iterdir())


def _looks_tinyimagenet200(root: Path) -> bool:
    return (root / "wnids.txt").is_file() and ((root / "train").is_dir() or (root / "val").is_dir())


def _looks_tutorial10(root: Path) -> bool:
    return (root / "label_list.json").is_file() and any(
        is_wnid(d.name) and _has_images(d) for d in _subdirs(root)
    )


def _looks_flat(root: Path) -> bool:
    if (root / MANIFEST).is_file():
        return True
    images = _images_in(root)
    return bool(images) and any(_FLAT_NAME.fullmatch(p.stem) for p in images)


def _looks_imagefolder(root: Path) -> bool:
    return any(_has_images(d) for d in _subdirs(root))


def detect_layout(root: str | os.PathLike[str]) -> str:
    """The layout of folder ``root`` (one of :data:`LAYOUTS`); :class:`LayoutError` if none fits."""
    folder = Path(root)
    if not folder.is_dir():
        raise FileNotFoundError(f"photo folder {folder} does not exist or is not a folder")
    checks = (
        ("tinyimagenet200", _looks_tinyimagenet200),
        ("tutorial10", _looks_tutorial10),
        ("flat", _looks_flat),
        ("imagefolder", _looks_imagefolder),
    )
    for name, looks in checks:
        if looks(folder):
            return name
    entries = _visible(folder.iterdir())
    n_dirs = sum(p.is_dir() for p in entries)
    raise LayoutError(
        f"cannot tell the layout of {folder} ({len(entries) - n_dirs} files, {n_dirs} folders, "
        "no photos found where a layout expects them). Expected one of: flat "
        "(<wnid>_<name>.JPEG files or MANIFEST.tsv), tutorial10 (<wnid>/*.JPEG + "
        "label_list.json), tinyimagenet200 (wnids.txt, train/, val/), imagefolder "
        "(<wnid or class name>/*.jpg). Name the layout with layout=... if it is one of these."
    )


def _read_flat(root: Path, skipped: list[Skipped]) -> list[Sample]:
    manifest = root / MANIFEST
    samples: list[Sample] = []
    if manifest.is_file():
        with open(manifest, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
        if not rows or "file" not in rows[0]:
            raise LayoutError(f"{manifest} has no 'file' column")
        for line, row in enumerate(rows, start=2):
            path = root / row["file"]
            wnid = (row.get("wnid") or "").strip()
            match = _FLAT_NAME.fullmatch(Path(row["file"]).stem)
            if not wnid and match:
                wnid = match.group(1)
            try:
                label = wnid_to_index(wnid)
            except LabelError as exc:
                raise LayoutError(f"{manifest}, line {line}: {exc}") from None
            stated = (row.get("class_index") or "").strip()
            if stated and (not stated.isdigit() or int(stated) != label):
                raise LayoutError(
                    f"{manifest}, line {line}: class_index {stated} disagrees with wnid {wnid} "
                    f"(index {label})"
                )
            if not path.is_file():
                why = link_problem(path) or f"listed in {MANIFEST} but missing"
                skipped.append(Skipped(path, why))
                continue
            samples.append(make_sample(path, label))
        return samples
    for path in _visible(root.iterdir()):
        if not _listed(path) or path.suffix.lower() in {".tsv", ".txt", ".md", ".json"}:
            continue
        if not _is_image(path):
            skipped.append(Skipped(path, "not an image file name"))
            continue
        match = _FLAT_NAME.fullmatch(path.stem)
        if not match:
            skipped.append(Skipped(path, "file name does not start with a wnid"))
            continue
        try:
            samples.append(make_sample(path, wnid_to_index(match.group(1))))
        except LabelError as exc:
            skipped.append(Skipped(path, str(exc)))
    return samples


def _read_tutorial10(root: Path, skipped: list[Skipped]) -> list[Sample]:
    label_file = root / "label_list.json"
    if not label_file.is_file():
        raise LayoutError(f"{root} has no label_list.json (tutorial10 layout)")
    try:
        names = json.loads(label_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LayoutError(f"{label_file} is not readable JSON: {exc}") from exc
    if (
        not isinstance(names, list)
        or len(names) != 1000
        or not all(isinstance(n, str) for n in names)
    ):
        raise LayoutError(f"{label_file} must be a JSON list of 1000 class names")
    samples: list[Sample] = []
    disagree: list[str] = []
    for folder in _subdirs(root):
        if not is_wnid(folder.name):
            skipped.append(Skipped(folder, "folder name is not a wnid"))
            continue
        try:
            label = wnid_to_index(folder.name)
        except LabelError as exc:
            skipped.append(Skipped(folder, str(exc)))
            continue
        try:
            if resolve_label(names[label]) != label:
                disagree.append(f"{folder.name}: {names[label]!r}")
        except LabelError:
            pass  # the short name is ambiguous ('crane') or unknown to us; the wnid decides
        for path in _visible(folder.iterdir()):
            if _listed(path) and _is_image(path):
                samples.append(make_sample(path, label))
            elif _listed(path):
                skipped.append(Skipped(path, "not an image file name"))
    if disagree:
        warnings.warn(
            f"{label_file} disagrees with the ImageNet-1k table for {len(disagree)} folders "
            f"(the folder's wnid is used): {', '.join(disagree[:5])}",
            DataWarning,
            stacklevel=3,
        )
    return samples


def _read_boxes(path: Path) -> dict[str, tuple[str, Box]]:
    """``file -> (wnid or '', box)`` from a TinyImageNet annotation file."""
    boxes: dict[str, tuple[str, Box]] = {}
    if not path.is_file():
        return boxes
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) == 6:
                wnid, coords = parts[1], parts[2:]
            elif len(parts) == 5:
                wnid, coords = "", parts[1:]
            else:
                raise ValueError(f"{len(parts)} fields")
            x0, y0, x1, y1 = (int(c) for c in coords)
        except ValueError as exc:
            raise LayoutError(f"{path}, line {number}: cannot read {line!r} ({exc})") from None
        boxes[parts[0]] = (wnid, (x0, y0, x1, y1))
    return boxes


def _read_tinyimagenet200(root: Path, skipped: list[Skipped], split: str) -> list[Sample]:
    if split not in ("val", "train", "all"):
        raise ValueError(f"split must be 'val', 'train' or 'all', not {split!r}")
    wnids_file = root / "wnids.txt"
    if not wnids_file.is_file():
        raise LayoutError(f"{root} has no wnids.txt (tinyimagenet200 layout)")
    wnids = [w.strip() for w in wnids_file.read_text(encoding="utf-8").split() if w.strip()]
    labels: dict[str, int] = {}
    unknown = []
    for wnid in wnids:
        try:
            labels[wnid] = wnid_to_index(wnid)
        except LabelError:
            unknown.append(wnid)
    if unknown:
        raise LayoutError(
            f"{wnids_file} lists wnids that are not ImageNet-1k classes: {unknown[:5]}"
        )
    samples: list[Sample] = []
    if split in ("val", "all"):
        val = root / "val"
        annotations = _read_boxes(val / "val_annotations.txt")
        images = val / "images"
        if split == "val" and not images.is_dir():
            raise LayoutError(f"{root} has no val/images folder")
        on_disk = _images_in(images) if images.is_dir() else []
        for path in on_disk:
            entry = annotations.get(path.name)
            if entry is None:
                skipped.append(Skipped(path, "not listed in val/val_annotations.txt"))
            elif entry[0] not in labels:
                skipped.append(Skipped(path, f"wnid {entry[0]} is not in wnids.txt"))
            else:
                samples.append(make_sample(path, labels[entry[0]], entry[1]))
        present = {p.name for p in on_disk}
        skipped.extend(
            Skipped(images / name, "listed in val/val_annotations.txt but missing")
            for name in sorted(set(annotations) - present)
        )
    if split in ("train", "all"):
        train = root / "train"
        if split == "train" and not train.is_dir():
            raise LayoutError(f"{root} has no train folder")
        for wnid in sorted(labels):
            folder = train / wnid
            if not folder.is_dir():
                continue
            boxes = _read_boxes(folder / f"{wnid}_boxes.txt")
            images = folder / "images" if (folder / "images").is_dir() else folder
            for path in _images_in(images):
                entry = boxes.get(path.name)
                samples.append(make_sample(path, labels[wnid], entry[1] if entry else None))
    return samples


def _read_imagefolder_classes(
    root: Path, skipped: list[Skipped], classes: ClassList
) -> list[Sample]:
    """ImageFolder whose folders are named by the model's own classes; a folder named by no
    class is a counted skip of each of its photos."""
    samples: list[Sample] = []
    for folder in _subdirs(root):
        label = classes.index(folder.name)
        for path in _visible(folder.iterdir()):
            if not _listed(path):
                continue
            if not _is_image(path):
                skipped.append(Skipped(path, "not an image file name"))
            elif label is None:
                skipped.append(
                    Skipped(
                        path,
                        f"label {folder.name!r} is not among the model's classes "
                        f"({classes.source})",
                    )
                )
            else:
                samples.append(Sample(path=path, label=label, wnid="", name=classes.name(label)))
    return samples


def _to_classes(found: list[Sample], skipped: list[Skipped], classes: ClassList) -> list[Sample]:
    """ImageNet-labelled samples relabelled into ``classes`` (by wnid, then by name)."""
    out: list[Sample] = []
    for s in found:
        label = classes.index(s.wnid) if s.wnid else None
        if label is None:
            label = classes.index(s.name)
        if label is None:
            skipped.append(
                Skipped(
                    s.path,
                    f"label {s.name!r} ({s.wnid}) is not among the model's classes "
                    f"({classes.source})",
                )
            )
            continue
        out.append(
            Sample(path=s.path, label=label, wnid=s.wnid, name=classes.name(label), box=s.box)
        )
    return out


def _read_imagefolder(root: Path, skipped: list[Skipped]) -> list[Sample]:
    samples: list[Sample] = []
    problems: list[str] = []
    for folder in _subdirs(root):
        try:
            label = resolve_label(folder.name)
        except LabelError as exc:
            if _has_images(folder):
                problems.append(f"{folder.name!r}: {exc}")
            else:
                skipped.append(Skipped(folder, "no photos, and its name is no class"))
            continue
        for path in _visible(folder.iterdir()):
            if _listed(path) and _is_image(path):
                samples.append(make_sample(path, label))
            elif _listed(path):
                skipped.append(Skipped(path, "not an image file name"))
    if problems:
        raise LayoutError(
            f"imagefolder {root}: class folders must be named by wnid or class name; "
            + "; ".join(problems[:5])
        )
    return samples


# ----------------------------------------------------------------------------- selection


def select(
    samples: Sequence[Sample],
    *,
    labels: Iterable[str | int] | None = None,
    limit: int | None = None,
    seed: int = 0,
    classes: ClassList | None = None,
) -> list[Sample]:
    """Filter ``samples`` to ``labels`` (resolved with :func:`resolve_label`, or in
    ``classes``), then take a seeded, class-stratified subset of at most ``limit``; the result
    is sorted."""
    chosen = list(samples)
    if labels is not None:
        if isinstance(labels, str | int):
            labels = [labels]
        wanted = {
            resolve_label(label) if classes is None else _resolve_in(classes, label)
            for label in labels
        }
        if not wanted:
            raise ValueError("labels= is empty: name at least one class, or pass None for all")
        chosen = [s for s in chosen if s.label in wanted]
        missing = wanted - {s.label for s in chosen}
        if missing and not chosen:
            raise ValueError(
                "no photos of the requested classes: "
                + ", ".join(_describe(i, classes) for i in sorted(missing))
            )
        if missing:
            warnings.warn(
                "no photos of " + ", ".join(_describe(i, classes) for i in sorted(missing)),
                DataWarning,
                stacklevel=3,
            )
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive int or None, not {limit!r}")
        chosen = stratified_subset(chosen, limit=limit, seed=seed)
    return sorted(chosen, key=_order)


def _describe(index: int, classes: ClassList | None) -> str:
    return describe_class(index) if classes is None else f"{classes.name(index)!r} ({index})"


def _resolve_in(classes: ClassList, label: str | int) -> int:
    index = classes.index(str(label))
    if index is None:
        raise LabelError(f"{label!r} is not among the model's classes ({classes.source})")
    return index


def stratified_subset(samples: list[Sample], *, limit: int, seed: int) -> list[Sample]:
    """A seeded, class-stratified subset of at most ``limit`` samples: classes in a seeded
    order, one photo of each in turn (``open_photoset(limit=...)`` and the sanity phase)."""
    if limit >= len(samples):
        return samples
    rng = random.Random(seed)
    groups: dict[int, list[Sample]] = {}
    for sample in sorted(samples, key=_order):
        groups.setdefault(sample.label, []).append(sample)
    order = sorted(groups)
    rng.shuffle(order)
    for label in order:
        rng.shuffle(groups[label])
    taken: list[Sample] = []
    depth = 0
    while len(taken) < limit:
        for label in order:
            if depth < len(groups[label]):
                taken.append(groups[label][depth])
                if len(taken) == limit:
                    break
        depth += 1
    return taken


def _order(sample: Sample) -> tuple[int, str]:
    return sample.label, str(sample.path)


# ----------------------------------------------------------------------------- opening


def open_photoset(
    source: str | os.PathLike[str],
    *,
    layout: Layout = "auto",
    labels: Iterable[str | int] | None = None,
    limit: int | None = None,
    seed: int = 0,
    split: Literal["val", "train", "all"] = "val",
    classes: ClassList | None = None,
) -> PhotoSet:
    """Open a labelled photo set.

    ``source`` is a folder, or ``"embedded"`` (real photos shipped inside installed packages),
    or ``"imagenet-samples"`` (the 1000-photo ImageNet sample set: ``$XAI_CHECKS_IMAGENET_SAMPLES``,
    the cache's fetched copy, or ``../shared/data/imagenet-samples``). A :class:`pathlib.Path`
    is always a folder, even one called ``embedded``.

    ``layout`` is ``"auto"`` or one of :data:`LAYOUTS`; ``labels`` keeps only those classes
    (names, wnids or indices); ``limit`` takes a seeded, class-stratified subset of that size;
    ``split`` is used by the tinyimagenet200 layout only. ``classes`` is the model's own class
    list: labels then index into it (ImageFolder folders are named by its names; other layouts'
    ImageNet labels are matched by wnid or name), and a photo whose label is not in it is a
    counted skip. With ``classes``, ``labels=`` names classes of that list.
    """
    if isinstance(source, str) and source == "embedded":
        from xai_checks.data.embedded import embedded_samples

        embedded, missing = embedded_samples()
        if classes is not None:
            embedded = _to_classes(list(embedded), missing, classes)
        return PhotoSet(
            name="embedded",
            layout="embedded",
            root=None,
            samples=tuple(select(embedded, labels=labels, limit=limit, seed=seed, classes=classes)),
            skipped=missing,
            transform_kind="standard",
            classes=classes,
        )
    name: str | None = None
    if isinstance(source, str) and source == "imagenet-samples":
        from xai_checks.data.fetch import imagenet_samples_dir

        root = imagenet_samples_dir()
        name = "imagenet-samples"
        if layout == "auto":
            layout = "flat"
    else:
        root = Path(source).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"photo folder {root} does not exist or is not a folder")
    chosen = detect_layout(root) if layout == "auto" else layout
    skipped: list[Skipped] = []
    if chosen == "flat":
        found = _read_flat(root, skipped)
    elif chosen == "tutorial10":
        found = _read_tutorial10(root, skipped)
    elif chosen == "tinyimagenet200":
        found = _read_tinyimagenet200(root, skipped, split)
    elif chosen == "imagefolder":
        found = (
            _read_imagefolder(root, skipped)
            if classes is None
            else _read_imagefolder_classes(root, skipped, classes)
        )
    else:
        raise ValueError(f"unknown layout {chosen!r}: use 'auto' or one of {', '.join(LAYOUTS)}")
    broken = {s.path: why for s in found if (why := link_problem(s.path)) is not None}
    skipped.extend(Skipped(path, why) for path, why in broken.items())
    found = [s for s in found if s.path not in broken]
    if classes is not None and chosen != "imagefolder":
        found = _to_classes(found, skipped, classes)
    if not found:
        why = (
            f"; {len(skipped)} skipped, e.g. {skipped[0].path.name}: {skipped[0].reason}"
            if skipped
            else ""
        )
        raise LayoutError(f"no photos found in {root} (layout {chosen}){why}")
    return PhotoSet(
        name=name or root.resolve().name,
        layout=chosen,
        root=root,
        samples=tuple(select(found, labels=labels, limit=limit, seed=seed, classes=classes)),
        skipped=skipped,
        transform_kind="precropped" if chosen in ("tutorial10", "tinyimagenet200") else "standard",
        classes=classes,
    )


# ----------------------------------------------------------------------------- batching


@dataclass(frozen=True)
class Batch:
    """Model-ready images (B, 3, 224, 224), their labels (B,) and the samples they came from.

    ``boxes[i]`` is sample ``i``'s box mapped into the model input's pixels (moved by the same
    transform as the pixels), or ``None`` where it has none.
    """

    images: torch.Tensor
    labels: torch.Tensor
    samples: list[Sample]
    boxes: list[BoxF | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)


def iter_batches(
    photoset: PhotoSet | Sequence[Sample],
    *,
    batch_size: int = 32,
    transform: Transform | None = None,
) -> Iterator[Batch]:
    """Load, transform and stack photos ``batch_size`` at a time; only one batch is held.

    ``transform`` defaults to the one the photo set suits (``photoset.transform_kind``).
    A photo that will not load is skipped with a :class:`SkippedImageWarning` and recorded in
    ``photoset.skipped`` (once per file).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")
    if transform is None:
        transform = make_transform(getattr(photoset, "transform_kind", "standard"))
    skipped: list[Skipped] | None = getattr(photoset, "skipped", None)
    images: list[torch.Tensor] = []
    samples: list[Sample] = []
    boxes: list[BoxF | None] = []
    warned = False
    for sample in photoset:
        try:
            image = load_image(sample.path)
        except ImageLoadError as exc:
            warnings.warn(f"skipped {sample.path}: {exc.reason}", SkippedImageWarning, stacklevel=2)
            if skipped is not None and all(s.path != sample.path for s in skipped):
                skipped.append(Skipped(sample.path, exc.reason))
            continue
        tensor, box = transform_photo(transform, image, sample.box)
        if sample.box is not None and box is None and not warned:
            warnings.warn(
                f"the transform {transform!r} cannot map boxes (use make_transform or a "
                "PhotoTransform): boxes are left out",
                DataWarning,
                stacklevel=2,
            )
            warned = True
        images.append(tensor)
        samples.append(sample)
        boxes.append(box)
        if len(samples) == batch_size:
            yield _stack(images, samples, boxes)
            images, samples, boxes = [], [], []
    if samples:
        yield _stack(images, samples, boxes)


def _stack(images: list[torch.Tensor], samples: list[Sample], boxes: list[BoxF | None]) -> Batch:
    return Batch(
        images=torch.stack(images),
        labels=torch.tensor([s.label for s in samples], dtype=torch.long),
        samples=samples,
        boxes=boxes,
    )
