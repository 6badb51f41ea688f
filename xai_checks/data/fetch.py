"""Downloading the 1000-photo ImageNet sample set, and finding it on disk.

The photos come from the public GitHub repository EliSchwartz/imagenet-sample-images (one photo
per ImageNet-1k class; ImageNet's terms apply: research and non-commercial use). Every file is
checked against the sha256 in the manifest this package carries (``imagenet_samples.tsv``).
Files already present with the right hash are kept; each download is written atomically and a
file whose hash does not match is never left behind.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from xai_checks.cache import (
    DownloadError,
    atomic_write,
    cache_dir,
    cache_lock,
    download_checked,
    remove_stale,
    sha256_file,
)
from xai_checks.data.labels import LabelError, class_name, wnid_to_index

__all__ = [
    "DATASETS",
    "DEFAULT_BASE_URL",
    "ENV_DATA_URL",
    "ENV_IMAGENET_SAMPLES",
    "DataNotFoundError",
    "FetchError",
    "FetchReport",
    "fetch_dataset",
    "fetch_imagenet_samples",
    "find_imagenet_samples",
    "imagenet_samples_dir",
    "read_manifest",
]

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/EliSchwartz/imagenet-sample-images/master/"
ENV_DATA_URL = "XAI_CHECKS_DATA_URL"
ENV_IMAGENET_SAMPLES = "XAI_CHECKS_IMAGENET_SAMPLES"
DATASETS = ("imagenet-samples",)
FETCH_COMMAND = "xai-checks data fetch imagenet-samples"
_CACHE_SUB = "imagenet-samples"
_WNID_PREFIX = re.compile(r"(n\d{8})_")
_HEX64 = re.compile(r"[0-9a-f]{64}")

Progress = Callable[[int, int, str], None]


class FetchError(OSError):
    """Files not fetched or not matching their hash; ``failures`` maps file -> why."""

    def __init__(self, message: str, *, failures: Mapping[str, str]):
        super().__init__(message)
        self.failures = dict(failures)


class DataNotFoundError(FileNotFoundError):
    """A photo set that is not on this machine; the message says how to get it."""


@dataclass
class FetchReport:
    """What :func:`fetch_imagenet_samples` did."""

    dest: Path
    downloaded: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.downloaded) + len(self.present)


def read_manifest(source: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """``file -> sha256`` from a TSV with ``file`` and ``sha256`` columns (default: the packaged
    manifest of the ImageNet sample set)."""
    if source is None:
        text = (
            resources.files("xai_checks.data").joinpath("imagenet_samples.tsv").read_text("utf-8")
        )
        where = "imagenet_samples.tsv"
    else:
        text = Path(source).read_text(encoding="utf-8")
        where = os.fspath(source)
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    manifest: dict[str, str] = {}
    for row in csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE):
        name, digest = row.get("file"), (row.get("sha256") or "").lower()
        if not name or not _HEX64.fullmatch(digest):
            raise ValueError(f"{where}: every row needs a file and a 64-hex sha256: {row}")
        _check_name(name)
        manifest[name] = digest
    if not manifest:
        raise ValueError(f"{where} lists no files")
    return manifest


def _check_name(name: str) -> None:
    parts = Path(name).parts
    if len(parts) != 1 or name in (".", "..") or "\\" in name:
        raise ValueError(f"manifest file names must be plain names, not {name!r}")


def _base_url(base_url: str | None) -> str:
    url = base_url or os.environ.get(ENV_DATA_URL) or DEFAULT_BASE_URL
    return url if url.endswith("/") else url + "/"


def _fetch_one(
    name: str, expected: str, *, dest: Path, base: str, overwrite: bool, timeout: float
) -> tuple[str, str | None]:
    """``("present" | "downloaded" | "failed", reason)`` for one file."""
    target = dest / name
    if target.is_file() and sha256_file(target) != expected:
        target.unlink()  # a stale or damaged copy: never keep a file with the wrong hash
    elif target.is_file() and not overwrite:
        return "present", None
    url = base + urllib.parse.quote(name)
    try:
        download_checked(url, target, sha256=expected, timeout=timeout)
    except DownloadError as exc:
        if exc.kind == "hash":
            return "failed", "sha256 does not match the manifest"
        return "failed", f"{exc.reason} ({url})"
    return "downloaded", None


def _make_folder(folder: Path) -> None:
    """Create the destination, or say plainly why it cannot be one."""
    for part in (folder, *folder.parents):
        if part.exists() and not part.is_dir():
            raise FetchError(
                f"cannot fetch into {folder}: {part} is a file, not a folder", failures={}
            )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(
            f"cannot create the folder {folder}: {exc.strerror or exc}", failures={}
        ) from exc


def _write_full_manifest(dest: Path, manifest: Mapping[str, str]) -> None:
    """``MANIFEST.tsv`` in the shared set's format, written last: it marks a complete copy."""
    rows = []
    for name, digest in sorted(manifest.items()):
        match = _WNID_PREFIX.match(name)
        if not match:
            return
        try:
            index = wnid_to_index(match.group(1))
        except LabelError:
            return
        rows.append(f"{name}\t{match.group(1)}\t{index}\t{class_name(index)}\t{digest}\n")
    with atomic_write(dest / "MANIFEST.tsv", "w") as handle:
        handle.write("file\twnid\tclass_index\tclass_name\tsha256\n")
        handle.writelines(rows)


def fetch_imagenet_samples(
    dest: str | os.PathLike[str] | None = None,
    *,
    base_url: str | None = None,
    overwrite: bool = False,
    manifest: str | os.PathLike[str] | Mapping[str, str] | None = None,
    workers: int = 8,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> FetchReport:
    """Download the ImageNet sample photos into ``dest`` (default: the cache) and check them.

    ``base_url`` defaults to ``$XAI_CHECKS_DATA_URL``, then :data:`DEFAULT_BASE_URL`.
    ``manifest`` (``file -> sha256``, or a TSV path) defaults to the packaged one. Files already
    present with the right hash are not downloaded again (unless ``overwrite``). Raises
    :class:`FetchError` naming every file that failed; those files are not left in ``dest``.
    ``MANIFEST.tsv`` is written into ``dest`` once every file is good.
    """
    wanted = dict(manifest) if isinstance(manifest, Mapping) else read_manifest(manifest)
    for name in wanted:
        _check_name(name)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    folder = Path(dest).expanduser() if dest is not None else cache_dir(_CACHE_SUB)
    _make_folder(folder)
    base = _base_url(base_url)
    report = FetchReport(dest=folder)
    failures: dict[str, str] = {}
    names = sorted(wanted)
    with cache_lock(folder / ".fetch"):
        remove_stale(folder)  # partial files of a killed fetch: every writer here holds this lock
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = pool.map(
                lambda n: _fetch_one(
                    n, wanted[n], dest=folder, base=base, overwrite=overwrite, timeout=timeout
                ),
                names,
            )
            for done, (name, (status, reason)) in enumerate(zip(names, results, strict=True), 1):
                if status == "present":
                    report.present.append(name)
                elif status == "downloaded":
                    report.downloaded.append(name)
                else:
                    failures[name] = reason or "failed"
                if progress is not None:
                    progress(done, len(names), name)
        if failures:
            with contextlib.suppress(FileNotFoundError):
                (folder / "MANIFEST.tsv").unlink()
            shown = "; ".join(f"{n}: {why}" for n, why in sorted(failures.items())[:10])
            more = f" (and {len(failures) - 10} more)" if len(failures) > 10 else ""
            raise FetchError(
                f"{len(failures)} of {len(names)} files could not be fetched into {folder} "
                f"from {base}: {shown}{more}. Good files were kept; run again to resume.",
                failures=failures,
            )
        _write_full_manifest(folder, wanted)
    return report


def fetch_dataset(
    name: str,
    *,
    dest: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> FetchReport:
    """Fetch a named photo set (what ``xai-checks data fetch NAME`` runs)."""
    if name == "imagenet-samples":
        return fetch_imagenet_samples(
            dest, base_url=base_url, overwrite=overwrite, progress=progress
        )
    if name == "embedded":
        raise ValueError("the 'embedded' photo set ships with installed packages: nothing to fetch")
    raise ValueError(f"unknown photo set {name!r}: can fetch {', '.join(DATASETS)}")


def _complete(folder: Path) -> bool:
    return (folder / "MANIFEST.tsv").is_file()


def find_imagenet_samples() -> Path | None:
    """Where the ImageNet sample set is: ``$XAI_CHECKS_IMAGENET_SAMPLES``, the cache's fetched
    copy, or ``../shared/data/imagenet-samples`` from the current folder; None if nowhere."""
    env = os.environ.get(ENV_IMAGENET_SAMPLES)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise DataNotFoundError(
                f"${ENV_IMAGENET_SAMPLES} is {env!r}, which is not a folder; unset it or "
                f"run `{FETCH_COMMAND}`"
            )
        return path
    cached = _cached_dir()
    if cached is not None and _complete(cached):
        return cached
    shared = Path.cwd().parent / "shared" / "data" / "imagenet-samples"
    if shared.is_dir():
        return shared
    return None


def _cached_dir() -> Path | None:
    try:
        return cache_dir() / _CACHE_SUB
    except OSError:
        return None


def imagenet_samples_dir() -> Path:
    """:func:`find_imagenet_samples`, or :class:`DataNotFoundError` saying how to fetch them."""
    found = find_imagenet_samples()
    if found is None:
        raise DataNotFoundError(
            "the ImageNet sample photos are not on this machine. Run "
            f"`{FETCH_COMMAND}` (about 110 MB) to download them into the cache, or set "
            f"${ENV_IMAGENET_SAMPLES} to a folder holding them."
        )
    return found
