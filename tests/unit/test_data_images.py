"""Loading images of every mode, transforms, the four folder layouts, selection and batching.

Every photo here is generated into a temporary folder.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from xai_checks.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AmbiguousLabelError,
    AutoTransform,
    DataWarning,
    ImageLoadError,
    LayoutError,
    PhotoSet,
    Sample,
    SkippedImageWarning,
    UnknownLabelError,
    class_synonyms,
    detect_layout,
    iter_batches,
    load_image,
    make_transform,
    open_photoset,
    precropped_transform,
    standard_transform,
    tinyimagenet200_wnids,
    transform_photo,
)

# ----------------------------------------------------------------------------- image makers


def noise(size: tuple[int, int], *, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A reproducible random image of (width, height) ``size``."""
    rng = np.random.default_rng(seed)
    width, height = size
    channels = {"RGB": 3, "L": 1}[mode]
    array = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    return Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode=mode)


def jpeg(path: Path, *, size: tuple[int, int] = (40, 30), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise(size, seed=seed).save(path, format="JPEG", quality=90)
    return path


def jpeg_bytes(*, size: tuple[int, int] = (64, 48), seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    noise(size, seed=seed).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_odd_files(folder: Path, *, prefix: str = "") -> dict[str, Path]:
    """Greyscale, RGBA, CMYK, palette, LA, 16-bit, tiny, and four broken files."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def at(name: str) -> Path:
        files[name.split(".")[0]] = folder / f"{prefix}{name}"
        return files[name.split(".")[0]]

    noise((32, 24), seed=1, mode="L").save(at("grey.JPEG"), format="JPEG")
    rgba = np.zeros((20, 20, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red everywhere ...
    rgba[:10, :, 3] = 255  # ... opaque in the top half, fully transparent below
    Image.fromarray(rgba, mode="RGBA").save(at("rgba.png"))
    Image.new("CMYK", (24, 24), (255, 0, 0, 0)).save(at("cmyk.JPEG"), format="JPEG", quality=95)
    palette = Image.new("P", (16, 16), 0)
    palette.putpalette([0, 128, 255] + [0, 0, 0] * 255)
    palette.save(at("palette.png"))
    Image.new("LA", (12, 12), (100, 255)).save(at("la.png"))
    sixteen = np.full((10, 10), 65535, dtype=np.uint16)
    sixteen[:, :5] = 32896  # 128 * 257
    Image.fromarray(sixteen).save(at("sixteen.png"))
    noise((5, 7), seed=2).save(at("tiny.JPEG"), format="JPEG")
    at("empty.JPEG").write_bytes(b"")
    at("text.JPEG").write_text("this is not a photo\n", encoding="utf-8")
    at("garbage.JPEG").write_bytes(np.random.default_rng(3).bytes(2048))
    whole = jpeg_bytes(size=(64, 64), seed=4)
    at("truncated.JPEG").write_bytes(whole[: len(whole) // 2])
    return files


BROKEN = ("empty", "text", "garbage", "truncated")


# ----------------------------------------------------------------------------- load_image


@pytest.fixture
def odd(tmp_path: Path) -> dict[str, Path]:
    return write_odd_files(tmp_path / "odd")


def test_every_mode_loads_as_rgb(odd: dict[str, Path]) -> None:
    expected_sizes = {
        "grey": (32, 24),
        "rgba": (20, 20),
        "cmyk": (24, 24),
        "palette": (16, 16),
        "la": (12, 12),
        "sixteen": (10, 10),
        "tiny": (5, 7),
    }
    assert Image.open(odd["grey"]).mode == "L"
    assert Image.open(odd["cmyk"]).mode == "CMYK"
    assert Image.open(odd["palette"]).mode == "P"
    assert Image.open(odd["sixteen"]).mode.startswith("I")
    for name, size in expected_sizes.items():
        image = load_image(odd[name])
        assert image.mode == "RGB", name
        assert image.size == size, name


def test_colours_survive_conversion(odd: dict[str, Path]) -> None:
    grey = np.asarray(load_image(odd["grey"]))
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    rgba = np.asarray(load_image(odd["rgba"]))
    assert tuple(rgba[0, 0]) == (255, 0, 0)  # opaque red stays red
    assert tuple(rgba[-1, -1]) == (255, 255, 255)  # transparent becomes white, not red or black
    cyan = np.asarray(load_image(odd["cmyk"])).astype(int)
    assert np.abs(cyan[12, 12] - np.array([0, 255, 255])).max() <= 8
    assert tuple(np.asarray(load_image(odd["palette"]))[0, 0]) == (0, 128, 255)
    assert tuple(np.asarray(load_image(odd["la"]))[0, 0]) == (100, 100, 100)
    sixteen = np.asarray(load_image(odd["sixteen"]))
    assert tuple(sixteen[0, 0]) == (128, 128, 128)
    assert tuple(sixteen[0, -1]) == (255, 255, 255)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("empty", "empty file"),
        ("text", "not an image"),
        ("garbage", "not an image"),
        ("truncated", "truncated"),
    ],
)
def test_broken_files_raise_with_a_reason(odd: dict[str, Path], name: str, reason: str) -> None:
    with pytest.raises(ImageLoadError) as info:
        load_image(odd[name])
    assert reason in info.value.reason
    assert info.value.path == odd[name]
    assert str(odd[name]) in str(info.value)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "nope.JPEG")
    with pytest.raises(ImageLoadError, match="not a regular file"):
        load_image(tmp_path)


def test_loaded_image_does_not_hold_the_file_open(tmp_path: Path) -> None:
    path = jpeg(tmp_path / "a.JPEG")
    image = load_image(path)
    path.unlink()  # the pixels are already in memory
    assert np.asarray(image).shape == (30, 40, 3)


def _with_orientation(image: Image.Image, path: Path, orientation: int) -> Path:
    """Save ``image`` stored the way a camera held sideways stores it: pixels turned so that
    the EXIF ``orientation`` tag turns them back (6: turn 90 degrees clockwise to show)."""
    stored = {
        3: image.transpose(Image.Transpose.ROTATE_180),
        6: image.transpose(Image.Transpose.ROTATE_90),  # PIL's ROTATE_90 is anticlockwise
        8: image.transpose(Image.Transpose.ROTATE_270),
    }[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, format="PNG", exif=exif)
    return path


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int) -> None:
    """A photo stored sideways with an EXIF orientation tag is read upright."""
    upright = noise((40, 30), seed=3)
    path = _with_orientation(upright, tmp_path / "phone.png", orientation)
    with Image.open(path) as raw:
        assert raw.size == ((30, 40) if orientation in (6, 8) else (40, 30))
    loaded = load_image(path)
    assert loaded.size == (40, 30)
    assert np.array_equal(np.asarray(loaded), np.asarray(upright))


_SHARED = Path(
    os.environ.get("XAI_CHECKS_IMAGENET_SAMPLES")
    or Path(__file__).resolve().parents[3] / "shared" / "data" / "imagenet-samples"
)


@pytest.mark.skipif(
    not (_SHARED / "n02504458_African_elephant.JPEG").is_file(), reason="shared photos absent"
)
def test_real_photo_stored_sideways_keeps_its_confidence(tmp_path: Path) -> None:
    """A real photo stored sideways with an EXIF orientation tag: read sideways, this
    elephant drops below 0.5 confidence; read upright through the tag, the model sees exactly
    the same input as from the upright file."""
    from xai_checks.models import load_resnet50

    original = load_image(_SHARED / "n02504458_African_elephant.JPEG")
    path = _with_orientation(original, tmp_path / "elephant.png", 6)
    transform = standard_transform()
    with Image.open(path) as raw:
        sideways = transform(raw.convert("RGB"))
    upright, through_tag = transform(original), transform(load_image(path))
    assert torch.equal(upright, through_tag)
    model = load_resnet50("msra")
    with torch.no_grad():
        probs = model(torch.stack([upright, through_tag, sideways])).softmax(dim=1)
    label = 386  # African elephant
    assert probs[0].argmax() == label and probs[0, label] > 0.9
    assert torch.equal(probs[1], probs[0])
    assert probs[2, label] < 0.5, "the stored pixels alone are not enough: the tag matters"


def test_dangling_links_and_link_loops_are_counted_skips(tmp_path: Path) -> None:
    """Before: ``is_file()`` is False for both, so they vanished without a trace."""
    root = tmp_path / "set"
    jpeg(root / "tench" / "good.jpg")
    (root / "tench" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (root / "tench" / "loop.jpg").symlink_to(root / "tench" / "loop.jpg")
    photos = open_photoset(root, layout="imagefolder")
    assert [s.path.name for s in photos] == ["good.jpg"]
    reasons = {s.path.name: s.reason for s in photos.skipped}
    assert reasons == {
        "gone.jpg": f"dangling symbolic link (to {tmp_path / 'nowhere.jpg'})",
        "loop.jpg": "symbolic link loop",
    }
    with pytest.raises(ImageLoadError, match="dangling symbolic link"):
        load_image(root / "tench" / "gone.jpg")
    with pytest.raises(ImageLoadError, match="symbolic link loop"):
        load_image(root / "tench" / "loop.jpg")


def test_dangling_link_in_a_flat_folder_is_a_counted_skip(tmp_path: Path) -> None:
    jpeg(tmp_path / "n01440764_tench.JPEG")
    (tmp_path / "n01443537_goldfish.JPEG").symlink_to(tmp_path / "missing.JPEG")
    photos = open_photoset(tmp_path, layout="flat")
    assert len(photos) == 1
    assert [(s.path.name, s.reason.split(" (")[0]) for s in photos.skipped] == [
        ("n01443537_goldfish.JPEG", "dangling symbolic link")
    ]


def test_permission_denied_is_worded_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A denied read is called 'permission denied', not 'corrupt image data'. The denial is
    simulated at ``Image.open``; the test below makes it real."""
    path = jpeg(tmp_path / "locked.jpg")

    def denied(*args: object, **kwargs: object) -> Image.Image:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("xai_checks.data.loading.Image.open", denied)
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert info.value.reason == "permission denied"


def test_permission_denied_on_a_real_unreadable_file(unprivileged: Any) -> None:
    path = jpeg(unprivileged.folder / "locked.jpg")
    path.chmod(0)

    def check() -> None:
        with pytest.raises(ImageLoadError) as info:
            load_image(path)
        assert info.value.reason == "permission denied"

    unprivileged.run(check)


# ----------------------------------------------------------------------------- transforms


def test_standard_transform_is_torchvisions_eval_pipeline() -> None:
    image = noise((400, 300), seed=5)
    reference = T.Compose(
        [
            T.Resize(256),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    out = standard_transform()(image)
    assert out.shape == (3, 224, 224)
    assert torch.equal(out, reference(image))


def test_normalisation_constants() -> None:
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406)
    assert IMAGENET_STD == (0.229, 0.224, 0.225)
    out = precropped_transform()(Image.new("RGB", (224, 224), (255, 0, 128)))
    colour = (255, 0, 128)
    expected = [
        (v / 255 - m) / s for v, m, s in zip(colour, IMAGENET_MEAN, IMAGENET_STD, strict=True)
    ]
    assert torch.allclose(out[:, 100, 100], torch.tensor(expected), atol=1e-6)


def test_precropped_keeps_a_224_image_whole() -> None:
    image = noise((224, 224), seed=6)
    out = precropped_transform()(image)
    plain = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)(T.ToTensor()(image))
    assert torch.equal(out, plain)


def framed(size: int, border: int) -> Image.Image:
    """Red frame ``border`` pixels wide around a blue square."""
    image = Image.new("RGB", (size, size), (255, 0, 0))
    image.paste((0, 0, 255), (border, border, size - border, size - border))
    return image


def test_precropped_keeps_the_border_that_standard_crops_away() -> None:
    image = framed(64, 3)  # at 256 px the frame is 12 px wide; the centre crop removes 16 px
    red = precropped_transform()(image)[:, 1, 1]
    blue = standard_transform()(image)[:, 1, 1]
    assert red[0] > red[2], "precropped must keep the red frame in the corner"
    assert blue[2] > blue[0], "standard crops the frame away"
    assert precropped_transform()(image).shape == (3, 224, 224)


def test_make_transform_kinds() -> None:
    assert isinstance(make_transform("auto"), AutoTransform)
    small, large = framed(224, 3), noise((300, 200), seed=7)
    auto = make_transform("auto")
    assert torch.equal(auto(small), make_transform("precropped")(small))
    assert torch.equal(auto(large), make_transform("standard")(large))
    assert not torch.equal(auto(small), make_transform("standard")(small))
    with pytest.raises(ValueError, match="unknown transform kind"):
        make_transform("centre")  # type: ignore[arg-type]


def test_tiny_image_goes_through_the_standard_transform(odd: dict[str, Path]) -> None:
    out = standard_transform()(load_image(odd["tiny"]))
    assert out.shape == (3, 224, 224)
    assert torch.isfinite(out).all()


# ----------------------------------------------------------------------------- layouts

FLAT_FILES = ("n01877812_wallaby.JPEG", "n01440764_tench.JPEG", "n02123045_tabby.JPEG")


def make_flat(root: Path, *, manifest: bool = False) -> Path:
    for seed, name in enumerate(FLAT_FILES):
        jpeg(root / name, seed=seed)
    if manifest:
        lines = ["file\twnid\tclass_index\tclass_name\tsha256"]
        for name, index in zip(FLAT_FILES, (104, 0, 281), strict=True):
            lines.append(f"{name}\t{name[:9]}\t{index}\tx\t{'0' * 64}")
        (root / "MANIFEST.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_flat_layout_from_file_names(tmp_path: Path) -> None:
    root = make_flat(tmp_path / "flat")
    (root / "README.md").write_text("hello", encoding="utf-8")
    jpeg(root / "holiday.JPEG", seed=9)
    jpeg(root / "n99999999_nothing.JPEG", seed=10)
    assert detect_layout(root) == "flat"
    photos = open_photoset(root)
    assert photos.layout == "flat"
    assert photos.name == "flat"
    assert photos.transform_kind == "standard"
    assert [s.label for s in photos] == [0, 104, 281]
    assert [s.path.name for s in photos] == sorted(FLAT_FILES)
    wallaby = photos[1]
    assert (wallaby.wnid, wallaby.name, wallaby.box) == ("n01877812", "wallaby", None)
    reasons = {s.path.name: s.reason for s in photos.skipped}
    assert set(reasons) == {"holiday.JPEG", "n99999999_nothing.JPEG"}
    assert "wnid" in reasons["holiday.JPEG"]


def test_flat_layout_with_manifest(tmp_path: Path) -> None:
    root = make_flat(tmp_path / "flat", manifest=True)
    (root / "n01440764_tench.JPEG").unlink()
    jpeg(root / "n01443537_goldfish.JPEG")  # not in the manifest: the manifest decides
    photos = open_photoset(root)
    assert [s.label for s in photos] == [104, 281]
    assert [(s.path.name, s.reason) for s in photos.skipped] == [
        ("n01440764_tench.JPEG", "listed in MANIFEST.tsv but missing")
    ]


def test_flat_manifest_that_contradicts_itself(tmp_path: Path) -> None:
    root = make_flat(tmp_path / "flat", manifest=True)
    manifest = root / "MANIFEST.tsv"
    manifest.write_text(manifest.read_text().replace("\t104\t", "\t105\t"), encoding="utf-8")
    with pytest.raises(LayoutError, match="class_index 105"):
        open_photoset(root)


def short_names() -> list[str]:
    """The tutorial's label_list.json: WordNet head words (so 'crane' appears twice)."""
    return [class_synonyms(i)[0] for i in range(1000)]


def make_tutorial10(root: Path, *, per_class: int = 5) -> Path:
    root.mkdir(parents=True)
    (root / "label_list.json").write_text(json.dumps(short_names()), encoding="utf-8")
    for c, wnid in enumerate(("n01877812", "n01440764", "n03126707")):
        (root / wnid).mkdir()
        for k in range(per_class):
            noise((224, 224), seed=10 * c + k).save(root / wnid / f"{wnid}_{k}.JPEG", "JPEG")
    return root


def test_tutorial10_layout(tmp_path: Path) -> None:
    root = make_tutorial10(tmp_path / "TinyImageNet")
    names = json.loads((root / "label_list.json").read_text())
    assert names.index("wallaby") == 104
    assert detect_layout(root) == "tutorial10"
    photos = open_photoset(root)
    assert photos.layout == "tutorial10"
    assert photos.transform_kind == "precropped"
    assert Counter(s.label for s in photos) == {0: 5, 104: 5, 517: 5}
    assert all(s.name == "wallaby" for s in photos if s.wnid == "n01877812")
    only = open_photoset(root, labels=["wallaby"])
    assert len(only) == 5 and only.labels == (104,)


def test_tutorial10_bad_label_list(tmp_path: Path) -> None:
    root = make_tutorial10(tmp_path / "t10", per_class=1)
    (root / "label_list.json").write_text(json.dumps(short_names()[:999]), encoding="utf-8")
    with pytest.raises(LayoutError, match="1000 class names"):
        open_photoset(root, layout="tutorial10")


def test_tutorial10_label_list_that_disagrees_warns(tmp_path: Path) -> None:
    root = make_tutorial10(tmp_path / "t10", per_class=1)
    names = short_names()
    names[104] = "goldfish"
    (root / "label_list.json").write_text(json.dumps(names), encoding="utf-8")
    with pytest.warns(DataWarning, match="n01877812"):
        photos = open_photoset(root)
    assert 104 in photos.labels  # the folder's wnid decides


TINY = ("n02124075", "n01443537", "n04067472")  # Egyptian cat 285, goldfish 1, reel 758


def make_tinyimagenet200(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(TINY) + "\n", encoding="utf-8")
    (root / "words.txt").write_text(
        "n02124075\tEgyptian cat\nn01443537\tgoldfish, Carassius auratus\nn04067472\treel\n",
        encoding="utf-8",
    )
    for c, wnid in enumerate(TINY):
        images = root / "train" / wnid / "images"
        images.mkdir(parents=True)
        boxes = []
        for k in range(2):
            noise((64, 64), seed=100 + 10 * c + k).save(images / f"{wnid}_{k}.JPEG", "JPEG")
            boxes.append(f"{wnid}_{k}.JPEG\t{k}\t{c}\t{40 + k}\t{50 + c}")
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("\n".join(boxes) + "\n")
    val = root / "val" / "images"
    val.mkdir(parents=True)
    annotations = []
    for k in range(6):
        noise((64, 64), seed=200 + k).save(val / f"val_{k}.JPEG", "JPEG")
        annotations.append(f"val_{k}.JPEG\t{TINY[k % 3]}\t{k}\t{k + 1}\t{k + 30}\t{k + 40}")
    annotations.append(f"val_99.JPEG\t{TINY[0]}\t0\t0\t10\t10")  # listed, not on disk
    noise((64, 64), seed=299).save(val / "val_6.JPEG", "JPEG")  # on disk, not listed
    (root / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
    (root / "test" / "images").mkdir(parents=True)
    noise((64, 64), seed=300).save(root / "test" / "images" / "test_0.JPEG", "JPEG")
    return root


def test_tinyimagenet200_val_keeps_boxes(tmp_path: Path) -> None:
    root = make_tinyimagenet200(tmp_path / "tiny-imagenet-200")
    assert set(TINY) <= set(tinyimagenet200_wnids())
    assert detect_layout(root) == "tinyimagenet200"
    photos = open_photoset(root)
    assert photos.layout == "tinyimagenet200"
    assert photos.transform_kind == "precropped"
    assert len(photos) == 6
    assert photos.labels == (1, 285, 758)
    by_name = {s.path.name: s for s in photos}
    assert by_name["val_0.JPEG"].label == 285 and by_name["val_0.JPEG"].name == "Egyptian cat"
    assert by_name["val_1.JPEG"].wnid == "n01443537" and by_name["val_1.JPEG"].label == 1
    assert by_name["val_2.JPEG"].label == 758
    assert by_name["val_4.JPEG"].box == (4, 5, 34, 44)
    skipped = {s.path.name: s.reason for s in photos.skipped}
    assert "not listed" in skipped["val_6.JPEG"]
    assert "missing" in skipped["val_99.JPEG"]
    assert not any("test_0" in str(s.path) for s in photos)


def test_tinyimagenet200_train_and_all(tmp_path: Path) -> None:
    root = make_tinyimagenet200(tmp_path / "tiny")
    train = open_photoset(root, split="train")
    assert len(train) == 6
    boxes = {s.path.name: s.box for s in train}
    assert boxes["n01443537_1.JPEG"] == (1, 1, 41, 51)
    assert Counter(s.label for s in train) == {1: 2, 285: 2, 758: 2}
    assert len(open_photoset(root, split="all")) == 12
    with pytest.raises(ValueError, match="split"):
        open_photoset(root, split="test")  # type: ignore[arg-type]


def test_tinyimagenet200_rejects_a_wnid_outside_imagenet1k(tmp_path: Path) -> None:
    root = make_tinyimagenet200(tmp_path / "tiny")
    (root / "wnids.txt").write_text("n02124075\nn00000042\n", encoding="utf-8")
    with pytest.raises(LayoutError, match="n00000042"):
        open_photoset(root)


def test_imagefolder_by_wnid_and_by_name(tmp_path: Path) -> None:
    root = tmp_path / "folder"
    jpeg(root / "wallaby" / "a.jpg", seed=1)
    jpeg(root / "wallaby" / "b.jpg", seed=2)
    jpeg(root / "n01440764" / "x.jpeg", seed=3)
    jpeg(root / "great_white_shark" / "s.JPEG", seed=4)
    jpeg(root / ".ipynb_checkpoints" / "junk.jpg", seed=5)
    (root / "wallaby" / "notes.txt").write_text("x")
    assert detect_layout(root) == "imagefolder"
    photos = open_photoset(root)
    assert [s.label for s in photos] == [0, 2, 104, 104]
    assert [s.path.name for s in photos] == ["x.jpeg", "s.JPEG", "a.jpg", "b.jpg"]
    assert [s.path.name for s in photos.skipped] == ["notes.txt"]


def test_imagefolder_with_an_ambiguous_or_unknown_class(tmp_path: Path) -> None:
    root = tmp_path / "folder"
    jpeg(root / "crane" / "a.jpg")
    with pytest.raises(LayoutError, match="n02012849"):
        open_photoset(root)
    (root / "crane").rename(root / "kangaroo-ish")
    with pytest.raises(LayoutError, match="kangaroo-ish"):
        open_photoset(root, layout="imagefolder")


def test_undetectable_and_missing_folders(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LayoutError, match="cannot tell the layout"):
        open_photoset(empty)
    (empty / "notes.txt").write_text("x")
    (empty / "sub").mkdir()
    (empty / "sub" / "more.txt").write_text("x")
    with pytest.raises(LayoutError, match="cannot tell the layout"):
        detect_layout(empty)
    with pytest.raises(FileNotFoundError):
        open_photoset(tmp_path / "absent")


def test_named_layout_that_does_not_fit(tmp_path: Path) -> None:
    root = make_flat(tmp_path / "flat")
    with pytest.raises(LayoutError, match=r"label_list\.json"):
        open_photoset(root, layout="tutorial10")
    with pytest.raises(LayoutError, match=r"wnids\.txt"):
        open_photoset(root, layout="tinyimagenet200")
    with pytest.raises(ValueError, match="unknown layout"):
        open_photoset(root, layout="coco")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- labels= and limit=


@pytest.fixture
def folder_of_15(tmp_path: Path) -> Path:
    root = tmp_path / "fifteen"
    for c, name in enumerate(("wallaby", "tench", "goldfish")):
        for k in range(5):
            jpeg(root / name / f"{k}.jpg", seed=10 * c + k)
    return root


def test_labels_filter(folder_of_15: Path) -> None:
    assert open_photoset(folder_of_15, labels=["Wallaby"]).labels == (104,)
    assert open_photoset(folder_of_15, labels=["n01440764", 1]).labels == (0, 1)
    assert open_photoset(folder_of_15, labels="tench").labels == (0,)
    with pytest.warns(DataWarning, match="koala"):
        assert open_photoset(folder_of_15, labels=["wallaby", "koala"]).labels == (104,)
    with pytest.raises(ValueError, match="no photos of the requested classes"):
        open_photoset(folder_of_15, labels=["koala"])
    with pytest.raises(UnknownLabelError):
        open_photoset(folder_of_15, labels=["wallabee-ish"])
    with pytest.raises(AmbiguousLabelError):
        open_photoset(folder_of_15, labels=["crane"])


def test_limit_is_seeded_stratified_and_sorted(folder_of_15: Path) -> None:
    first = open_photoset(folder_of_15, limit=7, seed=3)
    again = open_photoset(folder_of_15, limit=7, seed=3)
    assert list(first) == list(again)
    assert len(first) == 7
    counts = Counter(s.label for s in first)
    assert set(counts) == {0, 1, 104}
    assert max(counts.values()) - min(counts.values()) <= 1
    keys = [(s.label, str(s.path)) for s in first]
    assert keys == sorted(keys)
    picks = {
        tuple(s.path.name for s in open_photoset(folder_of_15, limit=3, seed=k)) for k in range(8)
    }
    assert len(picks) > 1, "different seeds must be able to pick different photos"
    assert all(len(set(p)) <= 3 for p in picks)
    classes = {open_photoset(folder_of_15, limit=2, seed=k).labels for k in range(12)}
    assert len(classes) > 1, "which classes get the remainder must depend on the seed"
    assert all(len(c) == 2 for c in classes)
    assert len(open_photoset(folder_of_15, limit=100)) == 15
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="limit"):
            open_photoset(folder_of_15, limit=bad)  # type: ignore[arg-type]


def test_limit_after_labels(folder_of_15: Path) -> None:
    photos = open_photoset(folder_of_15, labels=["wallaby", "tench"], limit=4, seed=0)
    assert Counter(s.label for s in photos) == {0: 2, 104: 2}


def test_photoset_is_a_sequence(folder_of_15: Path) -> None:
    photos = open_photoset(folder_of_15)
    assert isinstance(photos, PhotoSet)
    assert len(photos) == 15
    assert isinstance(photos[0], Sample)
    assert photos[-1] == list(photos)[-1]
    assert len(photos[2:5]) == 3
    assert photos[0] in photos
    assert "15 photos of 3 classes" in repr(photos)
    with pytest.raises(AttributeError):
        photos[0].label = 3  # type: ignore[misc]


# ----------------------------------------------------------------------------- batching


def test_iter_batches_skips_broken_files_and_reports_them(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    write_odd_files(root / "wallaby")
    for k in range(2):
        jpeg(root / "tench" / f"{k}.jpg", seed=k)
    photos = open_photoset(root)
    assert len(photos) == 13 and photos.skipped == []
    with pytest.warns(SkippedImageWarning) as caught:
        batches = list(iter_batches(photos, batch_size=4))
    assert len(caught) == 4
    assert [len(b) for b in batches] == [4, 4, 1]
    assert {s.path.stem for s in photos.skipped} == set(BROKEN)
    reasons = {s.path.stem: s.reason for s in photos.skipped}
    assert "empty" in reasons["empty"] and "truncated" in reasons["truncated"]
    for batch in batches:
        assert batch.images.dtype == torch.float32
        assert batch.images.shape == (len(batch), 3, 224, 224)
        assert batch.labels.dtype == torch.long
        assert batch.labels.tolist() == [s.label for s in batch.samples]
        assert torch.isfinite(batch.images).all()
    assert sum(len(b) for b in batches) == 13 - len(BROKEN)
    with pytest.warns(SkippedImageWarning):
        list(iter_batches(photos, batch_size=4))
    assert len(photos.skipped) == len(BROKEN), "a file is recorded once, however often it fails"


def test_iter_batches_is_lazy(folder_of_15: Path) -> None:
    photos = open_photoset(folder_of_15)
    calls: list[int] = []
    standard = standard_transform()

    def counting(image: Image.Image) -> torch.Tensor:
        calls.append(1)
        return standard(image)

    batches = iter_batches(photos, batch_size=4, transform=counting)
    assert calls == []
    first = next(batches)
    assert len(first) == 4 and len(calls) == 4, "only one batch may be loaded at a time"
    next(batches)
    assert len(calls) == 8
    assert sum(len(b) for b in batches) == 7


def test_iter_batches_defaults_to_the_sets_transform(tmp_path: Path) -> None:
    root = make_tutorial10(tmp_path / "t10", per_class=1)
    photos = open_photoset(root)
    batch = next(iter_batches(photos, batch_size=8))
    image = load_image(batch.samples[0].path)
    assert torch.equal(batch.images[0], precropped_transform()(image))


def test_iter_batches_rejects_bad_batch_sizes(folder_of_15: Path) -> None:
    photos = open_photoset(folder_of_15)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            next(iter_batches(photos, batch_size=bad))  # type: ignore[arg-type]


def test_iter_batches_over_a_plain_list(folder_of_15: Path) -> None:
    samples = list(open_photoset(folder_of_15))[:3]
    samples.append(Sample(path=folder_of_15 / "gone.jpg", label=0, wnid="n01440764", name="tench"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(iter_batches(samples, batch_size=2, transform=standard_transform()))
    assert [len(b) for b in batches] == [2, 1]
    assert any(issubclass(w.category, SkippedImageWarning) for w in caught)


# ------------------------------------------------------------------------------------- boxes


def _box_by_hand(
    box: tuple[int, int, int, int], image_size: tuple[int, int], kind: str, size: int = 224
) -> tuple[float, float, float, float]:
    """A box mapped into the model's input by hand: an independent oracle for the transform."""
    w, h = image_size
    x0, y0, x1, y1 = box
    if kind == "precropped":
        sx, sy = size / w, size / h
        return (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
    scale = 256 / min(w, h)
    nw, nh = w * scale, h * scale
    left, top = (nw - size) / 2, (nh - size) / 2
    return (x0 * scale - left, y0 * scale - top, x1 * scale - left, y1 * scale - top)


def test_tinyimagenet200_boxes_move_with_the_pixels_in_one_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Boxes come out of the same transform as the pixels (torchvision.transforms.v2 on the
    image and its BoundingBoxes), exactly where a hand-written mapping puts them, and each
    photo is decoded once."""
    root = make_tinyimagenet200(tmp_path / "tiny")
    photos = open_photoset(root, split="all")
    opened: list[str] = []
    real_open = Image.open

    def counting_open(fp: object, *args: object, **kwargs: object) -> Image.Image:
        opened.append(str(fp))
        return real_open(fp, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("xai_checks.data.loading.Image.open", counting_open)
    batches = list(iter_batches(photos, batch_size=5))
    assert sorted(opened) == sorted(str(s.path) for s in photos)
    got = [(s, b) for batch in batches for s, b in zip(batch.samples, batch.boxes, strict=True)]
    assert len(got) == len(photos) == 12
    for sample, box in got:
        assert sample.box is not None and box is not None
        expected = _box_by_hand(sample.box, (64, 64), "precropped")
        assert box == pytest.approx(expected, abs=1e-9), sample.path.name


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (333, 517), (256, 256)])
def test_standard_transform_maps_a_box_exactly(size: tuple[int, int]) -> None:
    """The standard transform: Resize(256) truncates the long side to an int and CenterCrop
    rounds its offset, which a mapping by real-valued scale ignores (off by up to a pixel).
    The v2 box equals the mapping of those very integer sizes, and stays within a pixel of the
    real-valued one."""
    w, h = size
    box = (50, 40, 180, 150)
    _, moved = standard_transform().with_box(noise(size), box)
    short = min(w, h)
    nw, nh = (256, int(256 * h / w)) if w == short else (int(256 * w / h), 256)
    left, top = round((nw - 224) / 2.0), round((nh - 224) / 2.0)  # as CenterCrop rounds
    sx, sy = nw / w, nh / h
    exact = (box[0] * sx - left, box[1] * sy - top, box[2] * sx - left, box[3] * sy - top)
    clipped = tuple(min(max(v, 0.0), 224.0) for v in exact)
    # v2 computes the scale factors in float32 (relative error <= 2**-24 each): for coordinates
    # up to ~600 px that is < 1e-4 px.
    assert moved == pytest.approx(clipped, abs=1e-4)
    by_hand = [min(max(v, 0.0), 224.0) for v in _box_by_hand(box, size, "standard")]
    assert max(abs(a - b) for a, b in zip(moved, by_hand, strict=True)) < 1.0


def test_a_drawn_box_lands_inside_its_mapped_box() -> None:
    """Oracle on pixels: a white rectangle drawn at the box on black comes out where the
    mapped box says (its bright pixels inside, the box's interior bright)."""
    w, h, box = 320, 240, (60, 30, 200, 170)
    array = np.zeros((h, w, 3), dtype=np.uint8)
    array[box[1] : box[3], box[0] : box[2]] = 255
    out, moved = standard_transform().with_box(Image.fromarray(array), box)
    rgb = out * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    bright = rgb.mean(dim=0) > 0.5
    rows, cols = bright.any(dim=1).nonzero().flatten(), bright.any(dim=0).nonzero().flatten()
    x0, y0, x1, y1 = moved
    # Bilinear resampling smears the edge by at most a pixel either way.
    assert x0 - 1 <= int(cols.min()) <= x0 + 1 and x1 - 1 <= int(cols.max()) + 1 <= x1 + 1
    assert y0 - 1 <= int(rows.min()) <= y0 + 1 and y1 - 1 <= int(rows.max()) + 1 <= y1 + 1
    assert bool(bright[int(y0) + 1 : int(y1) - 1, int(x0) + 1 : int(x1) - 1].all())


def test_a_transform_that_cannot_map_boxes_says_so(tmp_path: Path) -> None:
    root = make_tinyimagenet200(tmp_path / "tiny")
    photos = open_photoset(root)
    plain = T.Compose([T.Resize((224, 224)), T.ToTensor()])
    with pytest.warns(DataWarning, match="cannot map boxes"):
        batches = list(iter_batches(photos, batch_size=8, transform=plain))
    assert batches[0].boxes == [None] * len(photos)
    image = noise((64, 64))
    tensor, box = transform_photo(precropped_transform(), image, None)
    assert box is None and torch.equal(tensor, precropped_transform()(image))


def test_make_transform_takes_size_mean_and_std() -> None:
    image = noise((300, 200), seed=9)
    custom = make_transform("standard", size=112, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    reference = T.Compose(
        [T.Resize(128), T.CenterCrop(112), T.ToTensor(), T.Normalize([0.5] * 3, [0.25] * 3)]
    )
    assert torch.equal(custom(image), reference(image))
    assert make_transform("auto", size=112)(noise((100, 100))).shape == (3, 112, 112)


def test_the_unprivileged_check_is_bound_by_file_modes(unprivileged: Any) -> None:
    """The fixture above really drops root's privileges: a file of mode 000 is unreadable."""
    path = unprivileged.folder / "locked.txt"
    path.write_text("secret", encoding="utf-8")
    path.chmod(0)

    def check() -> None:
        with pytest.raises(PermissionError):
            path.read_text(encoding="utf-8")

    unprivileged.run(check)
