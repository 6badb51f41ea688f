"""Unit tests for xai_checks.report: files, schema, atomicity, partial studies, the page.

The fast tests build small synthetic StudyResults (tiny arrays, no model runs); one slow test
renders a real study on the embedded photos.
"""

from __future__ import annotations

import json
import math
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from markupsafe import escape

from xai_checks.claims import VERDICT_LEGEND, Status, evaluate_all
from xai_checks.report import (
    REPORT_FILES,
    SCHEMA_ID,
    SCHEMA_VERSION,
    ReportExistsError,
    SchemaError,
    build_results,
    validate_results,
    write_report,
)
from xai_checks.report import figures as report_figures
from xai_checks.report import writer as report_writer
from xai_checks.report.schema import packaged_schema, results_schema
from xai_checks.study import GridPGRun, ModelRun, SanityRun, StudyConfig, StudyResult

LAYERS = ("layer1", "layer2", "layer3", "layer4")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: photos in the synthetic studies: above every built-in claim's min_n (100, from the
#: calibration table), so every section is exercised with its tests, not as "too few photos"
N_PHOTOS = 120


# --------------------------------------------------------------------------- synthetic studies


def _records(
    rng: np.random.Generator,
    n: int,
    *,
    trend: bool,
    sweep: tuple[float, ...],
    nan: bool = False,
    boxes: bool = False,
) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        base = np.array([0.002, 0.006, 0.015, 0.04]) if trend else np.full(4, 0.01)
        ratio = base * rng.uniform(0.5, 1.5, 4)
        pooled = np.full(4, 0.04) * rng.uniform(0.8, 1.2, 4)
        label = i % 5
        pred = label if i % 4 else (label + 1) % 5
        rec: dict[str, Any] = {
            "file": f"/photos/n0000000{label}_{i}.JPEG",
            "label": label,
            "label_name": f"class {label}",
            "target": label,
            "pred": pred,
            "pred_name": f"class {pred}",
            "confidence": float(rng.uniform(0.3, 1.0)),
            "true_confidence": float(rng.uniform(0.0, 1.0)),
            "correct": pred == label,
            "ratio": {k: float(v) for k, v in zip(LAYERS, ratio, strict=True)},
            "ratio_pooled": {k: float(v) for k, v in zip(LAYERS, pooled, strict=True)},
            "sweep": {
                k: [float(r * (1.0 + (0.95 - t) * 8)) for t in sweep]
                for k, r in zip(LAYERS, ratio, strict=True)
            },
        }
        if nan and i == 0:
            rec["ratio"]["layer2"] = float("nan")
            rec["confidence"] = float("nan")
        if boxes and i % 2 == 0:
            rec["box"] = [10.0, 20.0, 100.0, 150.0]
            rec["box_area"] = 90.0 * 130.0 / (224.0 * 224.0)  # the box's share of the input
            rec["box_mass"] = {k: float(rng.uniform(0.2, 0.9)) for k in LAYERS}
        out.append(rec)
    return out


def _examples(
    rng: np.random.Generator, records: list[dict[str, Any]], k: int = 2, size: int = 12
) -> list[dict[str, Any]]:
    out = []
    for rec in records[:k]:
        out.append(
            {
                "file": rec["file"],
                "label_name": rec["label_name"],
                "pred_name": rec["pred_name"],
                "confidence": rec["confidence"],
                "correct": rec["correct"],
                "thumb": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                "maps": {k: rng.uniform(0, 1, (size, size)).astype(np.float16) for k in LAYERS},
                "ratio": rec["ratio"],
            }
        )
    return out


def make_study(
    *,
    n: int = N_PHOTOS,
    models: tuple[str, ...] = ("pretrained", "untrained"),
    gridpg: str | None = "full",
    sanity: bool = True,
    agreement: bool = True,
    nan: bool = False,
    boxes: bool = False,
    skipped: int = 1,
    examples: bool = True,
) -> StudyResult:
    rng = np.random.default_rng(0)
    phases = (
        ("ratio",)
        + (("gridpg",) if gridpg else ())
        + (("sanity",) if sanity else ())
        + (("agreement",) if agreement else ())
    )
    config = StudyConfig(phases=phases, keep_examples=2)
    runs = {}
    for m, name in enumerate(models):
        weights = (
            {
                "source": "msra",
                "arch": "msra",
                "path": "/cache/w.pt",
                "sha256": "ab" * 32,
                "seed": None,
                "detail": "converted exactly",
            }
            if m == 0
            else {
                "source": "random",
                "arch": "msra",
                "path": None,
                "sha256": None,
                "seed": 0,
                "detail": "untrained",
            }
        )
        recs = _records(rng, n, trend=True, sweep=config.sweep, nan=nan, boxes=boxes)
        runs[name] = ModelRun(name, weights, LAYERS, recs, _examples(rng, recs) if examples else [])
    study = StudyResult(
        config=config,
        photoset={
            "name": "synthetic",
            "layout": "flat",
            "root": "/photos",
            "n_listed": n + skipped,
            "n_used": n,
            "n_skipped": skipped,
        },
        under_test=runs.pop(next(iter(runs))),
        controls=runs,
        skipped=[
            {"file": f"/photos/bad{i}.JPEG", "reason": "truncated or corrupt"}
            for i in range(skipped)
        ],
        timings={"ratio": 1.5, "total": 2.0},
        provenance={
            "xai_checks": "0.1.0",
            "python": "3.11",
            "torch": "2.x",
            "numpy": np.__version__,
            "device": "cpu",
            "threads": 1,
            "platform": "test",
            "processor": "x86_64",
        },
    )
    if gridpg == "full":
        n_m = n  # one mosaic per target photo
        scores = {
            name: np.clip(
                np.linspace(0.25, 0.8 if i == 0 else 0.3, 4)[None, :]
                + rng.normal(0, 0.05, (n_m, 4)),
                0,
                1,
            )
            for i, name in enumerate(models)
        }
        study.gridpg = GridPGRun(
            layers=LAYERS,
            specs=[
                {
                    "files": [f"/p/{i}-{j}.JPEG" for j in range(4)],
                    "labels": [0, 1, 2, 3],
                    "names": ["a", "b", "c", "d"],
                    "cell": i % 4,
                }
                for i in range(n_m)
            ],
            scores=scores,
            n_candidates=20,
            examples=[
                {
                    "model": name,
                    "thumb": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
                    "cell": 1,
                    "target_name": "b",
                    "maps": {k: rng.uniform(0, 1, (16, 16)).astype(np.float16) for k in LAYERS},
                    "scores": {k: float(scores[name][0, j]) for j, k in enumerate(LAYERS)},
                }
                for name in models
            ],
        )
    elif gridpg == "empty":
        study.gridpg = GridPGRun(
            layers=LAYERS,
            scores={name: np.empty((0, 4)) for name in models},
            n_candidates=3,
            note="only 3 photos of 3 classes are classified correctly; GridPG needs 4 classes",
        )
    if sanity:
        steps = ["fc", "layer4", "layer3", "layer2", "layer1", "conv1"]
        rho = {s: list(rng.uniform(-0.3, 0.3, 6)) for s in steps}
        if nan:
            rho["layer3"][0] = float("nan")
        study.sanity = SanityRun(
            layer="layer4",
            steps=steps,
            rho=rho,
            examples=[
                {
                    "step": "original",
                    "map": rng.uniform(0, 1, (12, 12)).astype(np.float16),
                    "thumb": rng.integers(0, 256, (12, 12, 3), dtype=np.uint8),
                }
            ]
            + [{"step": s, "map": rng.uniform(0, 1, (12, 12)).astype(np.float16)} for s in steps],
        )
    if agreement:
        study.agreement = {"layer1": 6e-7, "layer2": 0.0, "layer3": 7e-7, "layer4": 4e-7}
    return study


@pytest.fixture(scope="module")
def full_study() -> tuple[StudyResult, list[Any]]:
    study = make_study(nan=True, boxes=True)
    return study, evaluate_all(study)


@pytest.fixture(scope="module")
def light_study() -> tuple[StudyResult, list[Any]]:
    """Two cheap figures: for the tests about files and folders rather than content."""
    study = make_study(gridpg=None, sanity=False, agreement=False, examples=False)
    return study, evaluate_all(study)


@pytest.fixture(scope="module")
def full_report(
    tmp_path_factory: pytest.TempPathFactory, full_study: tuple[StudyResult, list[Any]]
) -> Path:
    """The full synthetic study's report, written once for the tests that only read it."""
    study, verdicts = full_study
    parent = tmp_path_factory.mktemp("full")
    out = write_report(
        study,
        verdicts,
        parent / "report",
        extra={"command": ["xai-checks", "run", "--photos", "synthetic"], "note": "x"},
    )
    assert sorted(p.name for p in parent.iterdir()) == ["report"]  # no temporary folders left
    return out


@pytest.fixture
def low_dpi(monkeypatch: pytest.MonkeyPatch) -> None:
    """Render at a low resolution: same code paths, a fraction of the time."""
    monkeypatch.setattr(report_figures, "DPI", 30)


def _imgs(html: str) -> list[str]:
    return re.findall(r'<img[^>]*src="([^"]+)"', html)


# --------------------------------------------------------------------------- files


def test_writes_every_file(full_report: Path) -> None:
    out = full_report
    assert out.is_absolute() and out.name == "report"
    names = {p.name for p in out.iterdir()}
    for required in REPORT_FILES:
        assert required in names
    pngs = sorted(p for p in out.iterdir() if p.suffix == ".png")
    expected = {
        "ratio_boxplots",
        "threshold_sweep",
        "overlays",
        "overlays_control",
        "box_mass",
        "gridpg_scores",
        "gridpg_examples",
        "sanity_cascade",
        "sanity_examples",
        "agreement",
    }
    assert {p.stem for p in pngs} == expected
    for png in pngs:
        assert png.read_bytes().startswith(PNG_MAGIC)
    html = (out / "report.html").read_text(encoding="utf-8")
    srcs = _imgs(html)
    assert len(srcs) == len(pngs)  # one <img> per figure
    # each figure is stored once: the page links the PNG beside it, never embeds a copy
    assert sorted(srcs) == sorted(p.name for p in pngs)
    assert "base64" not in html
    # nothing fetched from elsewhere
    assert not re.search(r'(src|href)="(https?:|//|file:)', html)
    assert "<link" not in html and "<script" not in html


def test_page_content(full_report: Path, full_study: tuple[StudyResult, list[Any]]) -> None:
    _, verdicts = full_study
    html = (full_report / "report.html").read_text()
    for v in verdicts:
        assert f'class="badge {v.status.value}"' in html
        assert v.claim.id in html
    for status in Status:  # the legend explains every badge, in the one legend's words
        assert f'class="badge {status.value}"' in html
        assert str(escape(VERDICT_LEGEND[status.value])) in html
    order = [
        html.index(s)
        for s in (
            'id="verdicts"',
            'id="ratio"',
            'id="gridpg"',
            'id="sanity"',
            'id="agreement"',
            'id="skipped"',
            'id="provenance"',
        )
    ]
    assert order == sorted(order)
    assert "Bottom line" in html
    assert "truncated or corrupt" in html  # the skipped table
    assert "ab" * 32 in html  # weights hash in the provenance
    assert "synthetic" in html
    assert "xai-checks run --photos synthetic" in html  # the command line


def test_figures_leave_matplotlib_alone(
    tmp_path: Path, low_dpi: None, full_study: tuple[StudyResult, list[Any]]
) -> None:
    import matplotlib

    backend = matplotlib.get_backend()
    pyplot_before = "matplotlib.pyplot" in sys.modules
    write_report(*full_study, tmp_path / "r")
    assert matplotlib.get_backend() == backend
    assert ("matplotlib.pyplot" in sys.modules) == pyplot_before
    if pyplot_before:
        import matplotlib.pyplot as plt

        assert plt.get_fignums() == []


# --------------------------------------------------------------------------- results.json


def test_results_round_trip_and_schema(
    full_report: Path, full_study: tuple[StudyResult, list[Any]]
) -> None:
    study, verdicts = full_study
    out = full_report
    text = (out / "results.json").read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    doc = json.loads(text)
    validate_results(doc)
    assert doc["schema"] == SCHEMA_ID == "xai-checks/results"
    assert doc["schema_version"] == SCHEMA_VERSION == 1
    prov = doc["provenance"]
    assert prov["command"] == "xai-checks run --photos synthetic"
    assert prov["seed"] == study.config.seed
    assert prov["run_time_s"] == 2.0
    assert prov["models"]["pretrained"]["sha256"] == "ab" * 32
    assert prov["models"]["untrained"]["source"] == "random"
    assert doc["config"] == json.loads(json.dumps(study.config.to_dict()))
    ps = doc["photoset"]
    assert ps["counts"] == {"listed": N_PHOTOS + 1, "used": N_PHOTOS, "skipped": 1, "classes": 5}
    assert ps["skipped"] == [{"file": "/photos/bad0.JPEG", "reason": "truncated or corrupt"}]
    rows = doc["models"]["pretrained"]["photos"]
    assert len(rows) == N_PHOTOS
    assert rows[0]["ratio"]["layer2"] is None  # NaN -> null
    assert rows[0]["confidence"] is None
    assert rows[1]["ratio"] == study.runs["pretrained"].records[1]["ratio"]
    assert rows[0]["box_mass"] is not None and rows[1]["box_mass"] is None
    grid = doc["gridpg"]
    assert grid["n_mosaics"] == N_PHOTOS and len(grid["specs"]) == N_PHOTOS
    assert study.gridpg is not None
    assert np.allclose(grid["scores"]["untrained"], study.gridpg.scores["untrained"])
    assert doc["sanity"]["rho"]["layer3"][0] is None
    assert doc["agreement"]["layer2"] == 0.0
    assert doc["verdicts"] == json.loads(json.dumps([v.to_dict() for v in verdicts]))
    names = {(t["claim"], t["name"]) for t in doc["tests"]}
    assert ("seed-depth-ratio", "primary") in names
    assert ("seed-depth-ratio", "control:untrained") in names
    assert ("seed-depth-ratio", "control:pooled") in names
    assert doc["extra"] == {"command": ["xai-checks", "run", "--photos", "synthetic"], "note": "x"}


def test_validate_rejects_broken_documents(full_study: tuple[StudyResult, list[Any]]) -> None:
    doc = build_results(*full_study)
    validate_results(doc)
    broken = json.loads(json.dumps(doc))
    del broken["verdicts"]
    broken["schema_version"] = 2
    broken["models"]["pretrained"]["photos"][1]["ratio"]["layer1"] = "high"
    broken["verdicts_extra"] = []
    with pytest.raises(SchemaError) as err:
        validate_results(broken)
    text = str(err.value)
    assert "verdicts" in text and "schema_version" in text and "layer1" in text
    assert len(err.value.errors) == 4
    nan_doc = json.loads(json.dumps(doc))
    nan_doc["agreement"]["layer1"] = float("nan")
    with pytest.raises(SchemaError):
        validate_results(nan_doc)


def test_schema_is_valid_json_schema(full_study: tuple[StudyResult, list[Any]]) -> None:
    import jsonschema

    schema = results_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(build_results(*full_study), schema)


def _unnamed_keys(value: Any, schema: dict[str, Any], defs: dict[str, Any], path: str) -> list[str]:
    """The keys of ``value`` that ``schema`` does not name, wherever it names its properties."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[1]]
    for branch in schema.get("oneOf", []):
        if jsonschema.Draft202012Validator({"$defs": defs, **branch}).is_valid(value):
            return _unnamed_keys(value, branch, defs, path)
    found: list[str] = []
    if isinstance(value, dict):
        named = schema.get("properties")
        if named is not None:
            found += [f"{path}.{key}" for key in value if key not in named]
        for key, item in value.items():
            sub = (named or {}).get(key, schema.get("additionalProperties"))
            if isinstance(sub, dict):
                found += _unnamed_keys(item, sub, defs, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            found += _unnamed_keys(item, schema["items"], defs, f"{path}[{i}]")
    return found


def test_the_schema_names_every_key_the_writer_writes(
    full_study: tuple[StudyResult, list[Any]],
) -> None:
    """Sub-objects admit extra keys (for newer writers), so validation alone cannot show that
    the schema describes everything written: each key must be named where its object names
    its properties."""
    schema = results_schema()
    doc = build_results(*full_study)
    unnamed = _unnamed_keys(doc, schema, schema["$defs"], "$")
    # the study's settings (hand-kept schema names the main ones) and the effect's figures
    # beyond its headline are written without a description
    allowed = re.compile(r"^\$\.(config\.[a-z_0-9]+|verdicts\[\d+\]\.effect\.[a-z_]+)$")
    assert [k for k in unnamed if not allowed.match(k)] == []
    assert any(k.startswith("$.verdicts[0].effect.") for k in unnamed)  # the walk reaches them


# --------------------------------------------------------------------------- atomicity


def test_refuses_non_empty_folder_unless_overwrite(
    tmp_path: Path, light_study: tuple[StudyResult, list[Any]]
) -> None:
    study, verdicts = light_study
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ReportExistsError, match="not empty"):
        write_report(study, verdicts, out)
    # --overwrite replaces only an earlier report, never a folder of someone else's files
    with pytest.raises(ReportExistsError, match="earlier xai-checks report"):
        write_report(study, verdicts, out, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    report = tmp_path / "report"
    write_report(study, verdicts, report)
    write_report(study, verdicts, report, overwrite=True)  # replacing a report works
    assert (report / "report.html").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r", "report"]  # old one deleted


def test_empty_folder_is_used_and_files_refused(
    tmp_path: Path, light_study: tuple[StudyResult, list[Any]]
) -> None:
    study, verdicts = light_study
    empty = tmp_path / "empty"
    empty.mkdir()
    write_report(study, verdicts, empty)
    assert (empty / "results.json").exists()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ReportExistsError, match="not a folder"):
        write_report(study, verdicts, a_file, overwrite=True)
    assert a_file.read_text() == "x"


@pytest.mark.parametrize("where", ["figure", "html"])
@pytest.mark.parametrize("existing", [False, True])
def test_failure_midway_leaves_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    light_study: tuple[StudyResult, list[Any]],
    where: str,
    existing: bool,
) -> None:
    study, verdicts = light_study
    out = tmp_path / "r"
    if existing:
        write_report(study, verdicts, out)
        before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    if where == "figure":  # after the first figure was rendered
        monkeypatch.setattr(report_figures, "threshold_sweep", boom)
    else:  # after every PNG and results.json were written into the temporary folder
        monkeypatch.setattr(report_writer, "render_html", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_report(study, verdicts, out, overwrite=True)
    if existing:
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    else:
        assert not out.exists()
        assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- partial studies


PARTIAL = {
    "ratio-only": dict(gridpg=None, sanity=False, agreement=False),
    "single-model": dict(models=("pretrained",)),
    "gridpg-empty": dict(gridpg="empty"),
    "nan-everywhere": dict(nan=True),
    "no-examples": dict(examples=False, skipped=0),
    "too-few-images": dict(n=2, gridpg="empty", sanity=False),
}


@pytest.mark.parametrize("kind", list(PARTIAL))
def test_partial_studies_render(tmp_path: Path, low_dpi: None, kind: str) -> None:
    study = make_study(**PARTIAL[kind])  # type: ignore[arg-type]
    verdicts = evaluate_all(study)
    out = write_report(study, verdicts, tmp_path / kind)
    html = (out / "report.html").read_text()
    doc = json.loads((out / "results.json").read_text())
    validate_results(doc)
    pngs = [p for p in out.iterdir() if p.suffix == ".png"]
    assert len(_imgs(html)) == len(pngs)
    for v in verdicts:
        assert f'class="badge {v.status.value}"' in html
    if kind == "ratio-only":
        assert doc["gridpg"] is None and doc["sanity"] is None and doc["agreement"] is None
        assert "grid pointing game did not run" in html
        assert "randomisation check did not run" in html
        assert "Phases not run" in html
    if kind == "single-model":
        assert list(doc["models"]) == ["pretrained"]
        assert "No control model" in html
        assert not (out / "overlays_control.png").exists()
    if kind == "gridpg-empty":
        assert doc["gridpg"]["n_mosaics"] == 0
        assert "GridPG needs 4 classes" in html  # the phase's note is shown
        assert not (out / "gridpg_scores.png").exists()
    if kind == "no-examples":
        assert not (out / "overlays.png").exists()
        assert "Nothing skipped" in html


def test_nothing_skipped_message(tmp_path: Path, low_dpi: None) -> None:
    study = make_study(skipped=0, examples=False)
    out = write_report(study, evaluate_all(study), tmp_path / "r")
    assert "Nothing skipped" in (out / "report.html").read_text()


def test_all_nan_ratios_render(tmp_path: Path, low_dpi: None) -> None:
    study = make_study(gridpg=None, sanity=False, agreement=False)
    for run in study.runs.values():
        for rec in run.records:
            rec["ratio"] = {k: float("nan") for k in LAYERS}
            rec["ratio_pooled"] = {k: float("nan") for k in LAYERS}
            rec["sweep"] = {k: [float("nan")] * len(study.config.sweep) for k in LAYERS}
    with warnings.catch_warnings():  # claims' nanmedian warns on an all-NaN layer
        warnings.simplefilter("ignore", RuntimeWarning)
        verdicts = evaluate_all(study)
    out = write_report(study, verdicts, tmp_path / "r")
    validate_results(json.loads((out / "results.json").read_text()))


# --------------------------------------------------------------------------- a real study


@pytest.mark.slow
def test_real_study_on_embedded_photos(tmp_path: Path) -> None:
    from xai_checks.data import open_photoset
    from xai_checks.models import load_resnet50
    from xai_checks.study import run_study

    photos = open_photoset("embedded")
    study = run_study(
        load_resnet50(),
        photos,
        config=StudyConfig(sanity_images=4, agreement_images=2),
    )
    verdicts = evaluate_all(study)
    out = write_report(study, verdicts, tmp_path / "real", extra={"command": "pytest"})
    doc = json.loads((out / "results.json").read_text())
    validate_results(doc)
    assert doc["photoset"]["counts"]["used"] == len(photos)
    assert doc["provenance"]["models"]["pretrained"]["sha256"]
    html = (out / "report.html").read_text()
    pngs = [p for p in out.iterdir() if p.suffix == ".png"]
    assert len(_imgs(html)) == len(pngs) >= 6
    for v in verdicts:
        assert f'class="badge {v.status.value}"' in html
    assert math.isfinite(doc["provenance"]["run_time_s"])


# --------------------------------------------------------------------------- sections, templates


def test_schema_file_is_the_one_schema() -> None:
    """One JSON Schema file ships in the package; validation reads it (no copy in Python)."""
    from importlib import resources

    from xai_checks.report import schema as schema_module

    text = resources.files("xai_checks.report").joinpath("results.schema.json").read_text()
    assert json.loads(text) == packaged_schema()
    # validation reads that file, with each registered phase's fragment under "phases"
    merged = results_schema()
    assert {k: v for k, v in merged.items() if k != "properties"} == {
        k: v for k, v in packaged_schema().items() if k != "properties"
    }
    assert not hasattr(schema_module, "RESULTS_SCHEMA")


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        (("verdicts", 0, "status"), "MAYBE", "status"),
        (("verdicts", 0, "n"), -1, "n"),
        (("verdicts", 0, "reasons", 0), {"code": "x"}, "reasons"),
        (("photoset", "counts", "used"), "12", "used"),
        (("gridpg", "specs", 0, "cell"), 4, "cell"),
        (("provenance", "models", "pretrained", "sha256"), "not-a-hash", "sha256"),
        (("config", "threshold"), 1.5, "threshold"),
    ],
)
def test_schema_rejects_broken_core_fields(
    full_study: tuple[StudyResult, list[Any]], path: tuple[Any, ...], value: Any, where: str
) -> None:
    doc = json.loads(json.dumps(build_results(*full_study)))
    validate_results(doc)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(SchemaError, match=where):
        validate_results(doc)


def test_the_inlined_schema_gives_the_same_errors_as_the_references(
    full_study: tuple[StudyResult, list[Any]],
) -> None:
    """Validation runs on the schema with its local references inlined; on a valid document and
    on one broken where a definition is used (a verdict, a photo, a nullable number, a weights
    record, a reference beside a description) it reports what the schema as written reports."""
    import jsonschema

    from xai_checks.report.schema import inline_local_refs

    schema = results_schema()
    inlined = inline_local_refs(schema)
    outside = {k: v for k, v in inlined.items() if k != "$defs"}
    assert "$ref" not in json.dumps(outside)
    cls = jsonschema.validators.validator_for(schema)

    def errors(validator_schema: dict[str, Any], doc: Any) -> list[tuple[str, str]]:
        found = cls(validator_schema).iter_errors(doc)
        return sorted((e.json_path, e.message) for e in found)

    doc = json.loads(json.dumps(build_results(*full_study)))
    assert errors(inlined, doc) == errors(schema, doc) == []
    doc["verdicts"][0]["status"] = "MAYBE"
    doc["verdicts"][0]["p_value"] = "small"
    doc["provenance"]["run_time_s"] = "slow"
    doc["provenance"]["models"]["pretrained"]["sha256"] = "not-a-hash"
    first = next(iter(doc["models"].values()))
    first["photos"][0] = {"unexpected": True}
    got = errors(inlined, doc)
    assert len({path for path, _ in got}) == 5 and got == errors(schema, doc), got


def test_schema_accepts_structured_reasons_and_new_sub_fields(
    full_study: tuple[StudyResult, list[Any]],
) -> None:
    """Teammates add fields to sub-objects; the core stays strict, the rest stays open."""
    doc = json.loads(json.dumps(build_results(*full_study)))
    doc["verdicts"][0]["reasons"] = [{"code": "control-explains", "text": "the control..."}]
    doc["verdicts"][0]["effect"] = {"value": 0.7, "ci": [0.6, 0.8]}
    doc["provenance"]["distributed"] = {"world_size": 2}
    doc["gridpg"]["n_photos"] = 6
    validate_results(doc)
    doc["unknown_top_level"] = 1
    with pytest.raises(SchemaError, match="unknown_top_level"):
        validate_results(doc)


def test_page_escapes_everything(tmp_path: Path, low_dpi: None) -> None:
    """Autoescape: a hostile class name, file name or reason cannot inject markup."""
    study = make_study(gridpg=None, sanity=False, agreement=False, examples=False)
    evil = '<script>alert("x")</script>'
    for rec in study.runs["pretrained"].records:
        rec["label_name"] = evil
    study.skipped = [{"file": f"/p/{evil}.JPEG", "reason": evil}]
    verdicts = evaluate_all(study)
    verdicts[0].reasons.append(evil)
    out = write_report(study, verdicts, tmp_path / "r", extra={"command": evil})
    html = (out / "report.html").read_text()
    assert "<script" not in html
    assert "&lt;script&gt;" in html


def _third_party_claim(section: bool) -> Any:
    from xai_checks.claims import Claim
    from xai_checks.report import ReportSection

    class MyClaim(Claim):
        id = "my-claim" if section else "other-claim"
        title = "A third-party claim"
        metric = "mine"
        test = "none"

        def hypothesis_for(self, study: Any) -> str:
            return "Maps <b>matter</b>."

        def evaluate(self, study: Any) -> Any:
            verdict = self.verdict(study, 12)
            verdict.status = Status.SUPPORTED if section else Status.REFUTED
            verdict.add("because", "because <i>so</i>" if section else "it failed")
            return verdict

    if not section:
        return MyClaim()

    class WithSection(MyClaim):
        def report_section(self, study: Any, verdict: Any) -> ReportSection:
            from matplotlib.figure import Figure

            fig = Figure(figsize=(2, 1))
            fig.subplots().plot([0, 1], [1, 0])
            return ReportSection(
                id="mine",
                title="My own check",
                template="<p class='mine'>{{ section.context.word }}</p>"
                "{% for stem in section.figures %}"
                '<img src="{{ png_uri(section.figures[stem]) }}">'
                "{% endfor %}",
                context={
                    "word": "<i>hello</i>",
                    "lead": "A third-party claim.",
                    "verdict": verdict,
                },
                figures={"my_plot": fig},
            )

    return WithSection()


def test_a_claim_plugs_in_its_own_section(tmp_path: Path, low_dpi: None) -> None:
    """``Claim.report_section`` returns a ReportSection with its own template and figure."""
    study = make_study(gridpg=None, sanity=False, agreement=False, examples=False)
    claim = _third_party_claim(section=True)
    verdicts = [*evaluate_all(study), claim.evaluate(study)]
    out = write_report(study, verdicts, tmp_path / "r")
    html = (out / "report.html").read_text()
    assert "<p class='mine'>&lt;i&gt;hello&lt;/i&gt;</p>" in html
    assert 'id="mine"' in html and "My own check" in html
    assert "because &lt;i&gt;so&lt;/i&gt;" in html  # its structured reason, escaped
    assert (out / "my_plot.png").read_bytes().startswith(PNG_MAGIC)
    assert len(_imgs(html)) == len(list(out.glob("*.png")))
    doc = json.loads((out / "results.json").read_text())
    assert [v["claim"]["id"] for v in doc["verdicts"]][-1] == "my-claim"


def test_a_claim_without_a_section_still_shows(tmp_path: Path, low_dpi: None) -> None:
    """The base class's default section (verdict row and reasons) is rendered as is."""
    study = make_study(gridpg=None, sanity=False, agreement=False, examples=False)
    claim = _third_party_claim(section=False)
    verdicts = [*evaluate_all(study), claim.evaluate(study)]
    html = (write_report(study, verdicts, tmp_path / "r") / "report.html").read_text()
    assert 'id="other-claim"' in html and "it failed" in html
    assert "Maps &lt;b&gt;matter&lt;/b&gt;." in html


def test_sections_are_unique_when_a_claim_runs_twice(tmp_path: Path, low_dpi: None) -> None:
    """The same claim twice (say, with other params) gets a second section and its own PNGs."""
    from xai_checks.report import sections

    study = make_study(gridpg=None, sanity=False, agreement=False, examples=False)
    verdicts = evaluate_all(study)
    doc = build_results(study, verdicts)
    ids = [s.id for s in sections.collect_sections(study, verdicts, doc)]
    assert ids[0] == "verdicts" and ids[-2:] == ["skipped", "provenance"]
    out = write_report(study, [*verdicts, verdicts[0]], tmp_path / "r")
    html = (out / "report.html").read_text()
    assert 'id="ratio"' in html and 'id="ratio-2"' in html
    assert (out / "ratio_boxplots.png").exists() and (out / "ratio_boxplots-2.png").exists()
    assert len(_imgs(html)) == len(list(out.glob("*.png")))


def test_a_third_party_claim_on_a_built_in_metric_gets_its_own_section(
    tmp_path: Path, low_dpi: None
) -> None:
    """Like the README's example: metric 'ratio', no report_section of its own."""
    from xai_checks.claims import Claim

    class TopLayer(Claim):
        id = "top-layer-above-half"
        title = "The deepest layer's ratio median is above one half"
        metric = "ratio"
        needs = ("ratio",)

        def evaluate(self, study: Any) -> Any:
            verdict = self.verdict(study, n=3)
            verdict.status = Status.REFUTED
            verdict.add("median", "median 0.04")
            return verdict

    study = make_study(gridpg=None, sanity=False, agreement=False, examples=False)
    verdicts = [*evaluate_all(study), TopLayer().evaluate(study)]
    html = (write_report(study, verdicts, tmp_path / "r") / "report.html").read_text()
    assert 'id="ratio"' in html and 'id="top-layer-above-half"' in html


def test_numbers_read_well(full_report: Path) -> None:
    """No raw floats on the page: run time, extra values and p-values are formatted."""
    html = (full_report / "report.html").read_text()
    assert re.search(r"\d\.\d{6,}", re.sub(r"base64,[^\"]+", "", html)) is None


def test_results_carry_the_bottom_line_and_each_verdicts_row(
    full_study: tuple[StudyResult, list[Any]],
) -> None:
    """The schema describes what every verdict now carries (its row: n of photos, effect with
    CI, p and Holm's p, power) and the run's reconciled bottom line, and holds them to it."""
    from xai_checks.claims import bottom_line

    study, verdicts = full_study
    doc = json.loads(json.dumps(build_results(study, verdicts)))
    validate_results(doc)
    assert doc["bottom_line"]["status"] == bottom_line(verdicts)["status"]
    assert "Holm" in doc["bottom_line"]["multiplicity"]
    for v in doc["verdicts"]:
        assert v["row"]["n"] == v["n"] and v["row"]["power_statement"]
    targets = {spec["files"][spec["cell"]] for spec in doc["gridpg"]["specs"]}
    assert doc["gridpg"]["n_targets"] == len(targets)
    for path, value in (
        (("verdicts", 0, "row", "n"), -1),
        (("verdicts", 0, "multiplicity", "method"), "bonferroni?"),
        (("bottom_line", "status"), "fine"),
    ):
        broken = json.loads(json.dumps(doc))
        target = broken
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        with pytest.raises(SchemaError):
            validate_results(broken)


def test_bottom_line_on_the_page_reconciles_the_verdicts(
    full_study: tuple[StudyResult, list[Any]],
) -> None:
    """The page could say deeper layers localise beside a red REFUTED sanity chip and never
    connect the two: the bottom line is now claims.bottom_line's reconciled one."""
    import copy

    from xai_checks.report.html import _bottom_line

    _, verdicts = full_study
    changed = copy.deepcopy(verdicts)
    for v in changed:
        if v.claim.metric == "gridpg":
            v.status = Status.SUPPORTED
        elif v.claim.metric == "randomisation":
            v.status = Status.REFUTED
        elif v.claim.metric in ("ratio", "boxes"):
            v.status = Status.INCONCLUSIVE
    bottom = _bottom_line(changed)
    assert bottom["verdict"] == "undermined" and bottom["status"] == "CONFOUNDED"
    assert "guard failed" in bottom["headline"]
    texts = [line["text"] for line in bottom["lines"]]
    assert any("sanity check is REFUTED" in t for t in texts), texts
    assert any(t.startswith("Multiplicity: Holm") for t in texts), texts
