"""benchmarks/tables.py: ratio definitions are data in targets.toml, and the gate still gates."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tables() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_tables", ROOT / "benchmarks/tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_tables"] = module
    spec.loader.exec_module(module)
    return module


def test_ratios_come_from_the_toml(tables: ModuleType) -> None:
    defs = tables.load_definitions(ROOT / "benchmarks/targets.toml")
    assert defs.ratios["fused_all/plain"].num == ("all", "ours_fused")
    assert defs.ratios["fused_all/plain"].den == ("-", "plain")
    # a for_each_layer row expands to one ratio per layer
    assert {f"layer{i}/captum" for i in range(1, 5)} <= set(defs.ratios)
    assert defs.ratios["layer3/gradcam"].num == ("layer3", "ours_fused")
    assert next(iter(defs.impls)) == "plain"
    assert {t["status"] for t in defs.targets} == {"required", "aspirational"}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "targets.toml"
    path.write_text(text)
    return path


BASE = """
[impls]
plain = "plain inference"
ours_fused = "ours (fused)"

[[ratio]]
id = "fused_all/plain"
label = "fused / plain"
num = ["all", "ours_fused"]
den = ["-", "plain"]
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[[target]]\nname = "x"\nratio = "nope"\nmin = 1\n', "unknown ratio"),
        (
            '[[ratio]]\nid = "b"\nlabel = "b"\nnum = ["all", "captum"]\nden = ["-", "plain"]\n',
            "unknown case",
        ),
        ('[[ratio]]\nid = "c"\nlabel = "c"\nnum = ["all"]\nden = ["-", "plain"]\n', "a case is"),
        (
            '[[target]]\nname = "x"\nratio = "fused_all/plain"\nmin = 1\nstatus = "maybe"\n',
            "status must be",
        ),
    ],
)
def test_bad_definitions_are_refused(
    tables: ModuleType, tmp_path: Path, extra: str, message: str
) -> None:
    with pytest.raises(SystemExit, match=message):
        tables.load_definitions(_write(tmp_path, BASE + extra))


def _bench_json(tmp_path: Path, fused_vs_plain: float) -> Path:
    def case(impl: str, layer_set: str, vs_plain: float) -> dict[str, object]:
        t = 0.1 / vs_plain
        return {
            "stats": {"min": t, "median": t, "mean": t, "max": t, "stddev": 0.0, "rounds": 3},
            "extra_info": {
                "impl": impl,
                "layer_set": layer_set,
                "device": "cpu",
                "batch": 8,
                "vs_plain_paired": vs_plain,
            },
        }

    doc = {"benchmarks": [case("plain", "-", 1.0), case("ours_fused", "all", fused_vs_plain)]}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("measured", "status", "rc"),
    [
        (0.5, "required", 0),
        (0.3, "required", 1),
        (0.3, "aspirational", 0),
    ],
)
def test_gate_required_vs_aspirational(
    tables: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    measured: float,
    status: str,
    rc: int,
) -> None:
    targets = _write(
        tmp_path,
        BASE + f'[[target]]\nname = "floor"\nratio = "fused_all/plain"\nmin = 0.4\n'
        f'status = "{status}"\n',
    )
    run = _bench_json(tmp_path, measured)
    assert tables.main([str(run), "--targets", str(targets)]) == rc
    out = capsys.readouterr().out
    assert "fused / plain" in out  # the ratio's label from the toml, in the ratio table
    assert ("FAIL" in out) == (rc == 1)


@pytest.mark.parametrize(("weights", "said"), [("random", "seeded random weights"), (None, "MSRA")])
def test_the_table_names_the_weights_the_run_used(
    tables: ModuleType, tmp_path: Path, weights: str | None, said: str
) -> None:
    """The GPU runs use random weights (the pretrained tarball is not carried); their tables
    said "MSRA ImageNet weights" until the run recorded which."""
    path = _bench_json(tmp_path, 0.5)
    doc = json.loads(path.read_text())
    if weights:
        doc["machine_info"] = {"xai_checks": {"weights": weights}}
    path.write_text(json.dumps(doc))
    line = next(ln for ln in tables.machine_lines(tables.load_run(path), "min") if "run:" in ln)
    assert said in line


def test_end_to_end_cases_count_photos_per_round_not_the_batch(
    tables: ModuleType, tmp_path: Path
) -> None:
    """An end-to-end round is all N photos: images/s and the paired ratio to plain count them."""
    doc = json.loads(_bench_json(tmp_path, 0.5).read_text())
    for impl, seconds in (("engine_photos", 2.0), ("study_e2e", 2.5)):
        doc["benchmarks"].append(
            {
                "stats": {
                    "min": seconds,
                    "median": seconds,
                    "mean": seconds,
                    "max": seconds,
                    "stddev": 0.0,
                    "rounds": 2,
                },
                "extra_info": {
                    "impl": impl,
                    "layer_set": "all",
                    "device": "cpu",
                    "batch": 8,
                    "images_per_round": 40,
                    "paired_plain_s": [0.1, 0.1],
                    "round_s": [seconds, seconds],
                },
            }
        )
    path = tmp_path / "e2e.json"
    path.write_text(json.dumps(doc))
    cases = tables.load_run(path).index()[("cpu", 8)]
    assert cases[("all", "study_e2e")].ips("min") == pytest.approx(40 / 2.5)
    # plain: 8 images in 0.1 s = 80/s; e2e 16/s -> 0.2x of plain
    assert cases[("all", "study_e2e")].vs_plain == pytest.approx(0.2)
    ratio = tables.load_definitions().ratios["study_e2e/engine"]
    assert tables.ratio_value(cases, ratio, "paired") == pytest.approx(2.0 / 2.5)
