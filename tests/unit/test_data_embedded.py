"""The embedded photo set: real photos from installed packages, nothing downloaded."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from xai_checks.data import (
    embedded_photos,
    iter_batches,
    load_image,
    open_photoset,
    standard_transform,
)
from xai_checks.data.embedded import package_dir

REQUIRED = {"skimage", "matplotlib"}  # runtime dependencies of xai-checks


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XAI_CHECKS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the embedded set must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_entries_are_well_formed() -> None:
    photos = embedded_photos()
    ids = [p.id for p in photos]
    assert len(ids) == len(set(ids))
    for photo in photos:
        assert photo.description.strip()
        assert photo.wnid.startswith("n") and 0 <= photo.label < 1000
    from_required = {p.label for p in photos if p.package in REQUIRED}
    assert len(from_required) >= 6, "at least 6 classes from the runtime dependencies alone"


def test_every_photo_records_its_licence_and_source() -> None:
    """The photo list says where each photo comes from and under what terms."""
    import json
    from importlib import resources

    text = resources.files("xai_checks.data").joinpath("embedded_photos.json").read_text()
    doc = json.loads(text)
    for entry in doc["photos"]:
        assert entry["licence"].strip(), entry["id"]
        assert entry["source"].strip(), entry["id"]
    # what was searched for more photos, so the next person does not search again
    assert doc["searched"]["installed"] and doc["searched"]["pypi_wheels_inspected"]


def test_required_files_are_on_disk_inside_the_packages() -> None:
    for photo in embedded_photos():
        if photo.package not in REQUIRED:
            continue
        base = package_dir(photo.package)
        assert base is not None, photo.package
        assert (base / photo.file).is_file(), f"{photo.package}/{photo.file}"


def test_open_embedded_offline(cache: Path, offline: None) -> None:
    photos = open_photoset("embedded")
    assert photos.name == "embedded" and photos.layout == "embedded" and photos.root is None
    present = [p for p in embedded_photos() if package_dir(p.package) is not None]
    assert len(photos) == len(present)
    assert len(photos.skipped) == len(embedded_photos()) - len(present)
    assert {s.label for s in photos} == {p.label for p in present}
    for sample in photos:
        image = load_image(sample.path)
        assert image.mode == "RGB"
        assert min(image.size) >= 100
    batches = list(iter_batches(photos, batch_size=3, transform=standard_transform()))
    assert sum(len(b) for b in batches) == len(photos)


def test_crops_are_written_once_into_the_cache(cache: Path) -> None:
    cropped = {p.id: p for p in embedded_photos() if p.crop is not None}
    assert cropped, "the set has cropped entries"
    first = open_photoset("embedded")
    paths = {s.path for s in first}
    made = sorted((cache / "embedded").glob("*.png"))
    assert len(made) == len(cropped)
    for path in made:
        photo = cropped[path.name.split("-")[0]]
        assert photo.crop is not None
        x0, y0, x1, y1 = photo.crop
        assert load_image(path).size == (x1 - x0, y1 - y0)
        assert path in paths
        source = load_image(package_dir(photo.package) / photo.file)  # type: ignore[operator]
        assert np.array_equal(np.asarray(load_image(path)), np.asarray(source.crop(photo.crop)))
    stamps = {p: p.stat().st_mtime_ns for p in made}
    open_photoset("embedded")
    assert {p: p.stat().st_mtime_ns for p in made} == stamps, "crops are not rewritten"


def test_embedded_labels_and_limit(cache: Path) -> None:
    assert open_photoset("embedded", labels=["espresso"]).labels == (967,)
    assert len(open_photoset("embedded", limit=3, seed=1)) == 3
    assert len(set(s.label for s in open_photoset("embedded", limit=6))) == 6


def test_a_folder_called_embedded_is_still_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "embedded"
    folder.mkdir()
    with pytest.raises(ValueError, match="cannot tell the layout"):
        open_photoset(folder)


@pytest.mark.slow
def test_pretrained_model_gets_every_embedded_photo_right(cache: Path) -> None:
    from xai_checks.models import load_resnet50

    model = load_resnet50("msra").eval()
    photos = open_photoset("embedded")
    wrong = []
    with torch.no_grad():
        for batch in iter_batches(photos, batch_size=4, transform=standard_transform()):
            probs = model(batch.images).softmax(dim=1)
            top = probs.argmax(dim=1)
            for sample, predicted, row in zip(batch.samples, top.tolist(), probs, strict=True):
                if predicted != sample.label:
                    wrong.append(
                        f"{sample.path.name}: {predicted} ({float(row[predicted]):.2f}) "
                        f"instead of {sample.label} ({float(row[sample.label]):.2f})"
                    )
    assert wrong == []
