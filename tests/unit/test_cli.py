"""The xai-checks command: exit codes, usage errors, and end-to-end runs on real photos."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from xai_checks.cli import main
from xai_checks.data import find_imagenet_samples


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``xai-checks ARGS`` run in this process, its exit code and output captured as a process
    would give them (``test_study_runs_without_pytest`` starts the command as its own process)."""
    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        contextlib.chdir(cwd or Path.cwd()),
    ):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(["xai-checks", *args], code, out.getvalue(), err.getvalue())


@pytest.mark.parametrize(
    "command", [[], ["study"], ["check"], ["weights"], ["data", "fetch"], ["data", "info"]]
)
def test_help_for_every_command(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert "usage: xai-checks" in capsys.readouterr().out


def test_bad_option_is_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["study", "--threshold", "high"])
    assert info.value.code == 2


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model or running a study fails the test: usage errors come before both."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the options were checked")

    import xai_checks.models
    import xai_checks.study

    monkeypatch.setattr(xai_checks.models, "load_resnet50", refuse)
    monkeypatch.setattr(xai_checks.study, "run_study", refuse)


@pytest.mark.parametrize(
    "args",
    [
        ["--alpha", "0"],
        ["--alpha", "1.5"],
        ["--alpha", "nan"],
        ["--alpha", "-1"],
        ["--alpha", "inf"],
        ["--limit", "0"],
        ["--limit", "-1"],
        ["--limit", "many"],
        ["--control", "bogus"],
        ["--device", "meta"],
        ["--device", "gpu"],
        ["--batch-size", "0"],
        ["--threshold", "1.0"],
        ["--seed", "-3"],
        ["--mosaics", "0"],
        ["--gridpg-targets", "top3"],
        ["--layers", "layer1,,layer2"],
    ],
)
@pytest.mark.parametrize("command", ["study", "check"])
def test_bad_values_are_exit_2_before_any_model_loads(command, args, no_model, tmp_path, capsys):
    """Each of these once ran a whole study (or died in a traceback) before complaining."""
    with pytest.raises(SystemExit) as info:
        main([command, *args, *(["--out", str(tmp_path / "r")] if command == "study" else [])])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {args[0]}" in err and "Traceback" not in err


def test_limit_all_means_every_photo():
    from xai_checks.options import photo_limit

    assert photo_limit("all") is None
    assert photo_limit("ALL") is None
    assert photo_limit("7") == 7


def test_unknown_label_exits_2_with_closest_names(capsys):
    assert main(["study", "--label", "walaby", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert "walaby" in err and "wallaby" in err


def test_label_absent_from_the_folder_exits_2(photo_folder, no_model, tmp_path, capsys):
    """A valid ImageNet class with no photos in the folder: a clear error, exit 2, no traceback."""
    assert (
        main(
            [
                "study",
                "--data",
                str(photo_folder),
                "--label",
                "wallaby",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    assert "no photos of 'wallaby'" in capsys.readouterr().err


def test_missing_data_folder_exits_2(tmp_path, capsys):
    assert main(["check", "--data", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_cuda_is_a_clear_usage_error(capsys):
    assert main(["check", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_unknown_claim_exits_2(capsys):
    assert main(["check", "--claim", "nope"]) == 2
    assert "seed-depth-ratio" in capsys.readouterr().err


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """Six real shared photos (none of them a wallaby) in a folder of their own."""
    shared = find_imagenet_samples()
    if shared is None:
        pytest.skip("shared photos absent (set XAI_CHECKS_IMAGENET_SAMPLES)")
    root = tmp_path / "photos"
    root.mkdir()
    for name in ("n01440764_tench", "n02123045_tabby", "n07747607_orange"):
        shutil.copy(shared / f"{name}.JPEG", root / f"{name}.JPEG")
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("where", ["data", "inside", "ancestor"])
def test_overwrite_never_touches_the_photo_folder(where, photo_folder, no_model, capsys):
    """`study --data photos --out photos --overwrite` once deleted every photo."""
    parent = photo_folder.parent
    before = _tree(parent)
    out = {"data": photo_folder, "inside": photo_folder / "r", "ancestor": parent}[where]
    assert main(["study", "--data", str(photo_folder), "--out", str(out), "--overwrite"]) == 2
    assert "photo folder" in capsys.readouterr().err
    assert _tree(parent) == before


def test_overwrite_refuses_a_folder_that_is_not_a_report(photo_folder, no_model, tmp_path, capsys):
    """`--out notreport --overwrite` once deleted notreport/thesis.txt."""
    out = tmp_path / "notreport"
    out.mkdir()
    (out / "thesis.txt").write_text("keep")
    assert main(["study", "--data", str(photo_folder), "--out", str(out), "--overwrite"]) == 2
    assert "not hold (only) an earlier xai-checks report" in capsys.readouterr().err
    assert (out / "thesis.txt").read_text() == "keep"


def test_overwrite_refuses_a_report_folder_with_foreign_files(photo_folder, no_model, tmp_path):
    from xai_checks.report import REPORT_MARKER

    out = tmp_path / "old-report"
    out.mkdir()
    (out / "report.html").write_text("old")
    (out / REPORT_MARKER).write_text(
        json.dumps({"schema": "xai-checks/report-folder", "files": ["report.html"]})
    )
    from xai_checks.report import is_report_folder

    assert is_report_folder(out)
    (out / "notes.txt").write_text("mine")
    assert not is_report_folder(out)
    assert main(["study", "--data", str(photo_folder), "--out", str(out), "--overwrite"]) == 2
    assert (out / "notes.txt").read_text() == "mine"


def test_write_report_refuses_to_overwrite_a_foreign_folder(tmp_path):
    """The Python API holds the same line as the CLI."""
    from xai_checks.report import ReportExistsError, write_report

    out = tmp_path / "notreport"
    out.mkdir()
    (out / "thesis.txt").write_text("keep")
    with pytest.raises(ReportExistsError, match="earlier xai-checks report"):
        write_report(None, [], out, overwrite=True)
    assert (out / "thesis.txt").read_text() == "keep"


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_bad_out_is_exit_2_before_the_study(kind, photo_folder, no_model, tmp_path, capsys):
    if kind == "file":
        out = tmp_path / "report.txt"
        out.write_text("a file")
    else:
        out = Path("/proc/xai-checks-cannot-write-here/report")
    assert main(["study", "--data", str(photo_folder), "--out", str(out)]) == 2
    assert "--out" in capsys.readouterr().err


def test_existing_report_folder_is_refused(tmp_path, capsys):
    (tmp_path / "report.html").write_text("old")
    assert main(["study", "--out", str(tmp_path)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "report.html").read_text() == "old"


def test_weights_json_names_source_path_and_hash(capsys):
    assert main(["weights", "--source", "msra", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["source"] == "msra"
    assert Path(info["path"]).is_file()
    assert len(info["sha256"]) == 64


def test_weights_unknown_source_fails_clearly(capsys):
    assert main(["weights", "--source", "imagenet-vit"]) == 1
    assert "unknown weights source" in capsys.readouterr().err


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    """Real shared photos made awkward (greyscale, odd sizes), plus broken files."""
    shared = find_imagenet_samples()
    if shared is None:
        pytest.skip("shared photos absent (set XAI_CHECKS_IMAGENET_SAMPLES)")
    root = tmp_path / "photos"
    root.mkdir()
    picks = [
        "n01877812_wallaby.JPEG",
        "n02123045_tabby.JPEG",
        "n01440764_tench.JPEG",
        "n07747607_orange.JPEG",
        "n03792782_mountain_bike.JPEG",
    ]
    for i, name in enumerate(picks):
        with Image.open(shared / name) as image:
            if i == 0:
                image.convert("L").save(root / name)
            elif i == 1:
                image.resize((97, 61)).save(root / name)
            else:
                shutil.copy(shared / name, root / name)
    (root / "n01443537_goldfish.JPEG").write_bytes(b"\xff\xd8\xff truncated")
    (root / "n01484850_great_white_shark.JPEG").write_bytes(b"")
    return root


@pytest.mark.slow
def test_study_on_a_messy_folder_runs_to_the_end_and_reports_skips(messy_folder, tmp_path):
    out = tmp_path / "report"
    proc = run_cli(
        "study",
        "--data",
        str(messy_folder),
        "--out",
        str(out),
        "--mosaics",
        "4",
        "--phases",
        "ratio",
        "agreement",
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "report.html").is_file()
    results = json.loads((out / "results.json").read_text())
    skipped = {Path(s["file"]).name for s in results["photoset"]["skipped"]}
    assert skipped == {"n01443537_goldfish.JPEG", "n01484850_great_white_shark.JPEG"}
    assert "skipped" in proc.stdout
    # a rerun into the same folder is refused, then allowed with --overwrite
    again = run_cli(
        "study", "--data", str(messy_folder), "--out", str(out), "--quiet", "--phases", "ratio"
    )
    assert again.returncode == 2
    replaced = run_cli(
        "study",
        "--data",
        str(messy_folder),
        "--out",
        str(out),
        "--quiet",
        "--phases",
        "ratio",
        "--overwrite",
    )
    assert replaced.returncode == 0, replaced.stderr


@pytest.mark.parametrize("source", ["embedded", "folder"])
def test_data_info_runs_end_to_end(source, photo_folder):
    """`xai-checks data info` crashed on every input (args.data vs args.source)."""
    target = "embedded" if source == "embedded" else str(photo_folder)
    proc = run_cli("data", "info", target)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    expected = "embedded" if source == "embedded" else "3"
    assert expected in proc.stdout


def test_data_info_bad_source_is_exit_2(tmp_path):
    proc = run_cli("data", "info", str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert "no such folder" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_folder_of_only_broken_photos_is_a_usage_error(tmp_path):
    """Nothing usable must not become SUPPORTED with n = 0 and exit 0."""
    root = tmp_path / "broken"
    root.mkdir()
    (root / "n01440764_tench.JPEG").write_bytes(b"\xff\xd8\xff truncated")
    (root / "n02123045_tabby.JPEG").write_bytes(b"")
    proc = run_cli("check", "--data", str(root), "--phases", "ratio", "agreement", "--quiet")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no usable photos" in proc.stderr
    assert "SUPPORTED" not in proc.stdout


@pytest.mark.slow
def test_study_runs_without_pytest(photo_folder, tmp_path):
    """A plain install has no pytest: the CLI must not import the plugin (it did, to print
    its table, and crashed after writing the report)."""
    out = tmp_path / "r"
    code = (
        "import sys; sys.modules['pytest'] = None\n"
        "from xai_checks.cli import main\n"
        f"sys.exit(main(['study', '--data', {str(photo_folder)!r}, '--out', {str(out)!r},"
        " '--phases', 'ratio', '--quiet']))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "seed-depth-ratio" in proc.stdout
    assert (out / "report.html").is_file()


@pytest.mark.slow
def test_check_exits_1_when_a_claim_is_confounded_or_refuted(tmp_path):
    proc = run_cli(
        "check",
        "--data",
        "embedded",
        "--phases",
        "ratio",
        "--json",
        "--quiet",
        "--claim",
        "seed-depth-ratio",
    )
    verdicts = json.loads(proc.stdout)
    status = verdicts[0]["status"]
    assert proc.returncode == (1 if status in ("REFUTED", "CONFOUNDED") else 0), proc.stderr


@pytest.fixture
def tutorial10_root(tmp_path: Path) -> Path:
    """A tutorial-10 TinyImageNet tree (224x224 crops, label_list.json) made from real photos:
    five 224x224 crops of the shared wallaby photo, and two other classes."""
    shared = find_imagenet_samples()
    if shared is None:
        pytest.skip("shared photos absent (set XAI_CHECKS_IMAGENET_SAMPLES)")
    from xai_checks.data import class_names, class_wnid, resolve_label

    root = tmp_path / "tiny"
    for label, source in (
        ("wallaby", "n01877812_wallaby.JPEG"),
        ("tabby", "n02123045_tabby.JPEG"),
        ("tench", "n01440764_tench.JPEG"),
    ):
        folder = root / class_wnid(resolve_label(label))
        folder.mkdir(parents=True)
        with Image.open(shared / source) as image:
            image = image.convert("RGB")
            w, h = image.size
            side = min(w, h)
            for k, frac in enumerate((1.0, 0.9, 0.8, 0.85, 0.95)):
                s = int(side * frac)
                left, top = (w - s) * k // 4, (h - s) // 2
                crop = image.crop((left, top, left + s, top + s)).resize((224, 224))
                crop.save(folder / f"{label}_{k}.JPEG")
    (root / "label_list.json").write_text(json.dumps(list(class_names())))
    return root


@pytest.mark.slow
def test_the_seed_study_is_a_one_liner(tutorial10_root, tmp_path):
    """`xai-checks study --data <tutorial-10 root> --label wallaby`: 5 images, as the study."""
    out = tmp_path / "seed"
    proc = run_cli(
        "study",
        "--data",
        str(tutorial10_root),
        "--label",
        "wallaby",
        "--out",
        str(out),
        "--quiet",
        "--phases",
        "ratio",
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    rows = results["models"]["pretrained"]["photos"]
    assert len(rows) == 5
    assert {row["label"] for row in rows} == {104}
    assert "seed-depth-ratio" in proc.stdout


def _fake_samples(root: Path) -> Path:
    root.mkdir()
    (root / "MANIFEST.tsv").write_text(
        "file\twnid\tclass_index\tclass_name\tsha256\n"
        "n01443537_goldfish.JPEG\tn01443537\t1\tgoldfish\t-\n",
        encoding="utf-8",
    )
    Image.new("RGB", (32, 32), (200, 100, 0)).save(root / "n01443537_goldfish.JPEG")
    return root


def test_data_auto_takes_400_samples_when_found_and_says_so(tmp_path, monkeypatch):
    """The main job's default: the ImageNet samples where this machine has them (400 unless
    --limit says otherwise), else the embedded photos with what to run for every claim."""
    from xai_checks.options import AUTO, AUTO_LIMIT, auto_photos_note

    samples = _fake_samples(tmp_path / "samples")
    monkeypatch.setenv("XAI_CHECKS_IMAGENET_SAMPLES", str(samples))
    limit, note = auto_photos_note("auto", AUTO)
    assert limit == AUTO_LIMIT == 400
    assert str(samples) in note and "400" in note
    assert auto_photos_note("auto", 50)[0] == 50
    assert auto_photos_note("embedded", AUTO) == (None, "")
    assert auto_photos_note(str(samples), None) == (None, "")

    monkeypatch.setattr("xai_checks.data.find_imagenet_samples", lambda: None)
    limit, note = auto_photos_note("auto", AUTO)
    assert limit is None
    assert "xai-checks data fetch imagenet-samples" in note and "8 photos" in note


def test_limit_all_with_data_auto_takes_every_sample(tmp_path, monkeypatch):
    """``--limit all`` is a choice, not the absence of one: with ``--data auto`` it must not
    fall back to the 400-photo default."""
    from xai_checks.cli import _parser
    from xai_checks.options import AUTO_LIMIT, auto_photos_note

    monkeypatch.setenv("XAI_CHECKS_IMAGENET_SAMPLES", str(_fake_samples(tmp_path / "samples")))
    given = _parser().parse_args(["study", "--limit", "all"])
    limit, note = auto_photos_note(given.data, given.limit)
    assert limit is None and "using all of them" in note
    unset = _parser().parse_args(["study"])
    assert auto_photos_note(unset.data, unset.limit)[0] == AUTO_LIMIT
    assert (
        auto_photos_note(unset.data, _parser().parse_args(["study", "--limit", "9"]).limit)[0] == 9
    )


def test_study_without_data_uses_the_samples_it_finds(tmp_path, monkeypatch, capsys):
    samples = _fake_samples(tmp_path / "samples")
    monkeypatch.setenv("XAI_CHECKS_IMAGENET_SAMPLES", str(samples))
    code = main(["study", "--weights", "random", "--phases", "ratio", "--out", str(tmp_path / "r")])
    assert code in (0, 1)  # verdicts on random weights are not the point here
    doc = json.loads((tmp_path / "r" / "results.json").read_text(encoding="utf-8"))
    assert doc["photoset"]["root"] == str(samples)
    assert "--data auto found the ImageNet samples" in capsys.readouterr().err
