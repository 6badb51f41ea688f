"""ImageNet-1k labels: names, wnids, indices, synonyms, unknown and ambiguous names."""

from __future__ import annotations

import numpy as np
import pytest

from xai_checks.data import (
    AmbiguousLabelError,
    LabelError,
    UnknownLabelError,
    class_name,
    class_names,
    class_synonyms,
    class_wnid,
    class_wnids,
    resolve_label,
    tinyimagenet200_wnids,
    wnid_to_index,
)


def test_table_matches_torchvision_categories() -> None:
    from torchvision.models import ResNet50_Weights

    categories = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    assert list(class_names()) == list(categories)
    wnids = class_wnids()
    assert len(wnids) == 1000
    assert list(wnids) == sorted(set(wnids)), "wnids must be unique and in sorted order"


@pytest.mark.parametrize(
    ("label", "index"),
    [
        ("wallaby", 104),
        ("WALLABY", 104),
        ("  Wallaby ", 104),
        ("brush kangaroo", 104),  # WordNet synonym
        ("brush_kangaroo", 104),
        ("great_white_shark", 2),
        ("Great White Shark", 2),
        ("man-eater", 2),
        ("tabby cat", 281),
        ("tiger cat", 282),
        ("crane bird", 134),  # torchvision's de-duplicated names
        ("maillot tank suit", 639),
        ("cardigan", 474),  # exact case picks the sweater ...
        ("Cardigan", 264),  # ... or the corgi
        ("partridge", 86),  # a head word beats another class's secondary synonym
        ("missile", 657),
        ("n01877812", 104),
        ("n01440764", 0),
        ("104", 104),
        (" 104 ", 104),
        ("0", 0),
        (104, 104),
        (999, 999),
        (np.int64(104), 104),
    ],
)
def test_resolve_label(label: object, index: int) -> None:
    assert resolve_label(label) == index  # type: ignore[arg-type]


def test_lookups_by_index_and_wnid() -> None:
    assert class_name(104) == "wallaby"
    assert class_wnid(104) == "n01877812"
    assert wnid_to_index("n01877812") == 104
    assert class_synonyms(104) == ("wallaby", "brush kangaroo")
    for index in (0, 1, 134, 517, 638, 639, 999):
        assert wnid_to_index(class_wnid(index)) == index


def test_every_name_resolves_to_its_class_or_is_reported_ambiguous() -> None:
    ambiguous = {}
    for index, name in enumerate(class_names()):
        try:
            assert resolve_label(name) == index, name
        except AmbiguousLabelError as exc:
            assert index in exc.candidates
            ambiguous[name] = exc.candidates
    assert ambiguous == {"crane": (134, 517), "maillot": (638, 639)}


@pytest.mark.parametrize(
    ("label", "candidates", "wnids"),
    [
        ("crane", (134, 517), ("n02012849", "n03126707")),
        ("Crane", (134, 517), ("n02012849", "n03126707")),
        ("maillot", (638, 639), ("n03710637", "n03710721")),
        ("CARDIGAN", (264, 474), ("n02113186", "n02963159")),
        ("panda", (387, 388), ("n02509815", "n02510455")),
        ("grass snake", (55, 57), ("n01729977", "n01735189")),
    ],
)
def test_ambiguous_names_list_the_choices(
    label: str, candidates: tuple[int, ...], wnids: tuple[str, ...]
) -> None:
    with pytest.raises(AmbiguousLabelError) as info:
        resolve_label(label)
    assert info.value.candidates == candidates
    message = str(info.value)
    for index, wnid in zip(candidates, wnids, strict=True):
        assert wnid in message
        assert str(index) in message
    assert isinstance(info.value, ValueError)


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(UnknownLabelError) as info:
        resolve_label("walaby")
    assert "'wallaby' (104, n01877812)" in str(info.value)
    assert any("wallaby" in s for s in info.value.suggestions)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, LabelError)


@pytest.mark.parametrize("label", ["xyzzy-plugh", "", "   ", "n99999999", 1000, -1, "1000"])
def test_unknown_labels(label: object) -> None:
    with pytest.raises(UnknownLabelError):
        resolve_label(label)  # type: ignore[arg-type]


def test_unknown_wnid_suggests_neighbours() -> None:
    with pytest.raises(UnknownLabelError, match="wallaby"):
        wnid_to_index("n01877813")


@pytest.mark.parametrize("label", [True, 3.5, None, [104]])
def test_non_labels_are_type_errors(label: object) -> None:
    with pytest.raises(TypeError):
        resolve_label(label)  # type: ignore[arg-type]


def test_index_lookups_reject_out_of_range() -> None:
    with pytest.raises(UnknownLabelError):
        class_name(1000)
    with pytest.raises(UnknownLabelError):
        class_wnid(-1)


# TinyImageNet-200 -> ImageNet-1k, checked against torchvision's own category list.
TINY_SPOT_CHECKS = {
    "n02124075": (285, "Egyptian cat"),  # first line of wnids.txt
    "n04067472": (758, "reel"),
    "n01443537": (1, "goldfish"),
    "n02123045": (281, "tabby"),
    "n07749582": (951, "lemon"),
    "n12267677": (988, "acorn"),
    "n09246464": (972, "cliff"),
    "n03126707": (517, "crane"),  # the machine, not the bird
    "n02504458": (386, "African elephant"),  # last line of wnids.txt
}


def test_tinyimagenet200_wnids_all_map_into_imagenet1k() -> None:
    from torchvision.models import ResNet50_Weights

    categories = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    wnids = tinyimagenet200_wnids()
    assert len(wnids) == 200
    assert len(set(wnids)) == 200
    indices = [wnid_to_index(w) for w in wnids]  # raises if any is not an ImageNet-1k class
    assert len(set(indices)) == 200
    assert wnids[0] == "n02124075"
    assert wnids[-1] == "n02504458"
    for wnid, (index, name) in TINY_SPOT_CHECKS.items():
        assert wnid in wnids
        assert wnid_to_index(wnid) == index
        assert categories[index] == name
        assert class_name(index) == name


# --------------------------------------------------------------------------- a model's own classes


def _digit_folder(root, names=("zero", "one", "dog")):
    from PIL import Image

    for name in names:
        (root / name).mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (16, 16), (k * 40, 0, 0)).save(root / name / f"{name}{k}.png")
    return root


def test_class_list_reads_names_in_output_order(tmp_path):
    from xai_checks.data.classes import read_class_list

    path = tmp_path / "classes.txt"
    path.write_text("# my digits\nzero\n\nOne\ngreat_white shark\n")
    classes = read_class_list(path)
    assert classes.names == ("zero", "One", "great_white shark")
    assert classes.index("one") == 1 and classes.index("great white_shark") == 2
    assert classes.index("2") == 2 and classes.index("ten") is None


@pytest.mark.parametrize(
    ("text", "match"), [("a\nb\nA\n", "repeats line 1"), ("# nothing\n\n", "is empty")]
)
def test_bad_class_lists_are_clear_errors(tmp_path, text, match):
    from xai_checks.data.classes import ClassListError, read_class_list

    path = tmp_path / "classes.txt"
    path.write_text(text)
    with pytest.raises(ClassListError, match=match):
        read_class_list(path)


def test_a_photo_whose_label_is_not_a_model_class_is_a_counted_skip(tmp_path):
    from xai_checks.data import open_photoset
    from xai_checks.data.classes import ClassList

    classes = ClassList(("zero", "one"), source="classes.txt")
    photos = open_photoset(_digit_folder(tmp_path / "p"), classes=classes)
    assert [s.label for s in photos] == [0, 0, 1, 1]
    assert {s.name for s in photos} == {"zero", "one"}
    assert photos.class_name(1) == "one"
    assert len(photos.skipped) == 2
    assert all("'dog' is not among the model's classes" in s.reason for s in photos.skipped)


def test_imagenet_labels_map_onto_a_class_list_or_are_skipped(tmp_path):
    from PIL import Image

    from xai_checks.data import open_photoset
    from xai_checks.data.classes import ClassList

    folder = tmp_path / "flat"
    folder.mkdir()
    for wnid in ("n01440764", "n01443537", "n01514859"):  # tench, goldfish, hen
        Image.new("RGB", (16, 16)).save(folder / f"{wnid}_1.JPEG")
    photos = open_photoset(folder, classes=ClassList(("hen", "tench")))
    assert sorted((s.name, s.label) for s in photos) == [("hen", 0), ("tench", 1)]
    assert [s.path.name for s in photos.skipped] == ["n01443537_1.JPEG"]


def test_class_list_length_must_match_the_model_before_any_photo(tmp_path, monkeypatch):
    import torch

    from xai_checks.data import open_photoset
    from xai_checks.data.classes import ClassList
    from xai_checks.study import StudyConfig, StudyUsageError, run_study

    photos = open_photoset(_digit_folder(tmp_path / "p"), classes=ClassList(("zero", "one")))
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 10),
    )
    decoded = []
    monkeypatch.setattr("xai_checks.study.load_image", lambda p: decoded.append(p))
    with pytest.raises(StudyUsageError, match=r"names 2 classes, but .* has 10 outputs"):
        run_study(model, photos, config=StudyConfig(layers=("0",)))
    assert decoded == []  # refused before any photo was read


def test_cli_class_list_mismatch_is_exit_2(tmp_path, capsys):
    from xai_checks.cli import main

    (tmp_path / "net.py").write_text(
        "import torch\n"
        "def make():\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1),"
        " torch.nn.Flatten(), torch.nn.Linear(4, 10))\n"
    )
    (tmp_path / "classes.txt").write_text("zero\none\n")
    _digit_folder(tmp_path / "p")
    code = main(
        [
            "study",
            "--model",
            f"{tmp_path}/net.py:make",
            "--classes",
            str(tmp_path / "classes.txt"),
            "--data",
            str(tmp_path / "p"),
            "--out",
            str(tmp_path / "r"),
            "--quiet",
            "--claim",
            "native-captum-agreement",
        ]
    )
    assert code == 2
    assert "names 2 classes" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_10_class_model_without_a_class_list_is_a_usage_error(tmp_path):
    import torch
    from PIL import Image

    from xai_checks.data import open_photoset
    from xai_checks.study import StudyConfig, StudyUsageError, run_study

    (tmp_path / "p" / "tench").mkdir(parents=True)
    Image.new("RGB", (16, 16)).save(tmp_path / "p" / "tench" / "a.png")
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 10),
    )
    with pytest.raises(StudyUsageError, match="10 outputs, but the photo labels are ImageNet"):
        run_study(model, open_photoset(tmp_path / "p"), config=StudyConfig(layers=("0",)))
