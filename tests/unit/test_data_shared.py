"""The real shared ImageNet sample set (../shared/data/imagenet-samples), when it is there."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from PIL import Image

from xai_checks.cache import sha256_file
from xai_checks.data import (
    ENV_IMAGENET_SAMPLES,
    iter_batches,
    load_image,
    open_photoset,
    resolve_label,
)
from xai_checks.data.fetch import read_manifest

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "imagenet-samples"

pytestmark = pytest.mark.skipif(
    not (SHARED / "MANIFEST.tsv").is_file(), reason="shared photos absent"
)


@pytest.fixture(scope="module")
def manifest() -> list[dict[str, str]]:
    with open(SHARED / "MANIFEST.tsv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def test_all_1000_photos_with_the_manifests_labels(manifest: list[dict[str, str]]) -> None:
    photos = open_photoset(SHARED)
    assert photos.layout == "flat"
    assert len(photos) == 1000 and photos.skipped == []
    by_file = {s.path.name: s for s in photos}
    for row in manifest:
        sample = by_file[row["file"]]
        assert sample.label == int(row["class_index"])
        assert sample.wnid == row["wnid"]
        assert sample.name == row["class_name"]
    assert [s.label for s in photos] == list(range(1000))
    assert by_file["n01877812_wallaby.JPEG"].label == resolve_label("wallaby") == 104


def test_labels_from_file_names_agree_with_the_manifest(
    manifest: list[dict[str, str]], tmp_path: Path
) -> None:
    for row in manifest[:50]:
        (tmp_path / row["file"]).symlink_to(SHARED / row["file"])
    photos = open_photoset(tmp_path)  # no MANIFEST.tsv here: names decide
    assert [s.label for s in photos] == [int(r["class_index"]) for r in manifest[:50]]


def test_packaged_hashes_match_the_shared_manifest(manifest: list[dict[str, str]]) -> None:
    packaged = read_manifest()
    assert packaged == {row["file"]: row["sha256"] for row in manifest}
    for row in manifest[::97]:
        assert sha256_file(SHARED / row["file"]) == row["sha256"]


def test_greyscale_photos_load_as_rgb() -> None:
    grey = []
    for path in sorted(SHARED.glob("*.JPEG")):
        with Image.open(path) as image:
            if image.mode != "RGB":
                grey.append((path, image.mode))
    assert len(grey) == 23
    assert {mode for _, mode in grey} == {"L"}
    for path, _ in grey:
        rgb = load_image(path)
        assert rgb.mode == "RGB"
        r, g, b = rgb.split()
        assert r.tobytes() == g.tobytes() == b.tobytes()


def test_open_by_name_and_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_IMAGENET_SAMPLES, str(SHARED))
    photos = open_photoset("imagenet-samples", limit=40, seed=0)
    assert photos.name == "imagenet-samples"
    assert len(photos) == 40 and len(photos.labels) == 40  # one photo per class: 40 classes
    batches = list(iter_batches(photos, batch_size=16))
    assert [len(b) for b in batches] == [16, 16, 8]
    assert all(b.images.shape[1:] == (3, 224, 224) for b in batches)
    assert torch.cat([b.labels for b in batches]).tolist() == [s.label for s in photos]
