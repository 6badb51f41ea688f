"""Photos that would exhaust memory are refused from their header, before decoding, as
counted skips; decoding follows the size the model needs, not the file's.

The failing input is a 119-byte PNG of 12000x1 pixels: resized to a 256 px short side, its
long side became 3 million pixels (about 3 GB).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from xai_checks.data.loading import (
    MAX_ASPECT,
    MAX_SIDE,
    ImageLoadError,
    PhotoTransform,
    decode_hint,
    load_image,
)


def _strip(path: Path, width: int, height: int) -> Path:
    Image.new("RGB", (width, height), (200, 30, 30)).save(path, format="PNG")
    return path


@pytest.fixture
def strip_png(tmp_path: Path) -> Path:
    path = _strip(tmp_path / "strip.png", 12000, 1)
    assert path.stat().st_size < 200  # the attack costs the attacker nothing
    return path


@pytest.mark.parametrize("size", [(12000, 1), (1, 12000), (2100, 100)])
def test_a_strip_is_refused_by_its_aspect_ratio(tmp_path, size):
    path = _strip(tmp_path / "s.png", *size)
    with pytest.raises(ImageLoadError, match="aspect ratio"):
        load_image(path)


def test_a_side_past_the_bound_is_refused(tmp_path):
    path = _strip(tmp_path / "wide.png", MAX_SIDE + 1, 2000)
    with pytest.raises(ImageLoadError, match="a side is over"):
        load_image(path)


def test_a_panorama_within_the_bounds_loads(tmp_path):
    path = _strip(tmp_path / "pano.png", int(100 * MAX_ASPECT), 100)
    assert load_image(path).size == (int(100 * MAX_ASPECT), 100)


def test_a_large_jpeg_decodes_at_the_hinted_size_and_gives_the_same_input(tmp_path):
    """draft() keeps at least twice the resize edge: the model input moves by JPEG's own
    rounding, far less than one grey level on average."""
    path = tmp_path / "big.jpg"
    import numpy as np

    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    Image.fromarray(small).resize((1600, 1200), Image.Resampling.BICUBIC).save(path, quality=95)
    transform = PhotoTransform("standard")
    hint = decode_hint(transform)
    assert hint == 512
    hinted = load_image(path, size_hint=hint)
    assert min(hinted.size) >= hint and hinted.size[0] < 1600
    full = transform(load_image(path))
    diff = (transform(hinted) - full).abs().mean().item()
    assert diff < 0.02, diff  # normalised units: 0.02 is about 1.2 grey levels of 255


def test_a_png_past_twice_the_hint_is_reduced(tmp_path):
    path = _strip(tmp_path / "big.png", 2000, 1500)
    assert load_image(path, size_hint=512).size == (1000, 750)
    assert load_image(path, size_hint=None).size == (2000, 1500)


def test_the_study_counts_the_strip_as_a_skip(strip_png, tmp_path):
    from xai_checks.data import open_photoset

    folder = tmp_path / "photos" / "n01440764"
    folder.mkdir(parents=True)
    (folder / "strip.png").write_bytes(strip_png.read_bytes())
    photos = open_photoset(tmp_path / "photos", layout="imagefolder")
    from xai_checks.study import _PhotoData

    data = _PhotoData(list(photos), PhotoTransform("standard"), "standard", None)
    _, tensor, reason = data[0]
    assert tensor is None and "aspect ratio" in reason


#: loads and transforms one photo as the study does, and prints the peak resident memory
PEAK = """
import json, resource, sys
from xai_checks.data.loading import ImageLoadError, PhotoTransform, decode_hint, load_image
transform = PhotoTransform("standard")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    transform(load_image(sys.argv[1], size_hint=decode_hint(transform)))
    outcome = "loaded"
except ImageLoadError as exc:
    outcome = exc.reason
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"before_kb": before, "peak_kb": after, "outcome": outcome}))
"""


def _peak(path: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PEAK, str(path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_peak_memory_on_the_strip_is_within_10_percent_of_a_normal_photo(strip_png):
    """Each in a fresh process (ru_maxrss is a process's high-water mark); the normal photo is
    the embedded set's first (a real photo of a few hundred pixels a side)."""
    from xai_checks.data.embedded import embedded_samples

    photo = embedded_samples()[0][0].path
    normal, strip = _peak(photo), _peak(strip_png)
    assert normal["outcome"] == "loaded"
    assert "aspect ratio" in str(strip["outcome"])
    assert int(strip["peak_kb"]) <= 1.10 * int(normal["peak_kb"]), (normal, strip)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_the_exif_orientation_survives_the_size_hint(tmp_path, suffix):
    image = Image.new("RGB", (2000, 1200), (10, 20, 30))
    exif = image.getexif()
    exif[0x0112] = 6  # stored on its side: shown rotated by 90 degrees
    path = tmp_path / f"side{suffix}"
    image.save(path, exif=exif)
    assert load_image(path).size == (1200, 2000)
    assert load_image(path, size_hint=512).size == (600, 1000)


def test_a_fifo_named_like_a_photo_is_counted_not_lost(tmp_path):
    import os

    from xai_checks.data import open_photoset

    folder = tmp_path / "photos" / "n01440764"
    folder.mkdir(parents=True)
    Image.new("RGB", (64, 48)).save(folder / "real.jpg")
    os.mkfifo(folder / "pipe.jpg")
    photos = open_photoset(tmp_path / "photos", layout="imagefolder")
    assert sorted(s.path.name for s in photos.samples) == ["pipe.jpg", "real.jpg"]
    with pytest.raises(ImageLoadError, match="not a regular file"):
        load_image(folder / "pipe.jpg")  # read without blocking on the pipe
