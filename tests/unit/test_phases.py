"""Study phases are registered units: entry points, options, JSON form, schema, report section."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from xai_checks.phases import Phase, get_phase, registered_phases
from xai_checks.phases.registry import BUILTIN_ENTRY_POINTS, PhaseRegistrationError

TOY = '''
from typing import ClassVar

import torch

from xai_checks.claims import Claim, Status
from xai_checks.phases import Phase
from xai_checks.report.sections import ReportSection


class PhotoBrightness(Phase):
    """Per photo of the ratio phase: its mean pixel value after the transform."""

    name: ClassVar[str] = "photo-brightness"
    needs: ClassVar[tuple[str, ...]] = ("ratio",)
    options: ClassVar[dict] = {"images": 3}

    def run(self, context):
        from xai_checks.study import load_tensors

        records = []
        usable = [s for s in context.photoset if str(s.path) not in context.skipped]
        transform = context.config.preprocess.build(context.photoset.transform_kind)
        for sample in usable[: self.settings(context.config)["images"]]:
            x = load_tensors([sample], transform)
            records.append({"file": str(sample.path), "brightness": float(x.mean())})
        return records

    def to_json(self, study):
        return {"records": self.output(study)}

    def schema(self):
        return {
            "type": "object",
            "required": ["records"],
            "properties": {"records": {"type": "array", "minItems": 1}},
        }

    def report_section(self, study):
        n = len(self.output(study))
        return ReportSection(
            id="photo-brightness",
            title="Toy phase: photo brightness",
            template="claim.html.j2",
            context={"note": f"brightness of {n} photos"},
        )


class PhotosHaveBrightness(Claim):
    id: ClassVar[str] = "photos-have-brightness"
    title: ClassVar[str] = "Every sampled photo has a finite brightness"
    metric: ClassVar[str] = "brightness"
    needs: ClassVar[tuple[str, ...]] = ("photo-brightness",)

    def evaluate(self, study):
        records = study.phase_results["photo-brightness"]
        verdict = self.verdict(study, len(records))
        ok = all(abs(r["brightness"]) < 1e3 for r in records)
        verdict.status = Status.SUPPORTED if ok else Status.REFUTED
        verdict.add("brightness", f"{len(records)} photos with a finite brightness")
        return verdict
'''


def _install_dist(root: Path, entry_points: str) -> None:
    """A distribution on sys.path whose metadata registers a phase and a claim."""
    (root / "acme_phase.py").write_text(TOY)
    info = root / "acme_phase-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-phase\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


ENTRY_POINTS = (
    "[xai_checks.phases]\nphoto-brightness = acme_phase:PhotoBrightness\n\n"
    "[xai_checks.claims]\nphotos-have-brightness = acme_phase:PhotosHaveBrightness\n"
)


@pytest.fixture
def toy_dist(tmp_path, monkeypatch):
    from xai_checks.claims import registered_claims

    dist = tmp_path / "dist"
    dist.mkdir()
    _install_dist(dist, ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(dist))
    registered_phases(refresh=True)
    registered_claims(refresh=True)
    yield dist
    monkeypatch.undo()
    registered_phases(refresh=True)
    registered_claims(refresh=True)


def test_builtin_phases_in_pyproject_match_the_registry():
    pyproject = Path(__file__).parents[2] / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text())["project"]["entry-points"]["xai_checks.phases"]
    assert declared == BUILTIN_ENTRY_POINTS
    assert [p.name for p in registered_phases()][: len(declared)] == list(declared)


def test_every_declared_claim_entry_point_loads_a_claim_of_that_id():
    from xai_checks.claims import get_claim

    pyproject = Path(__file__).parents[2] / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text())["project"]["entry-points"]["xai_checks.claims"]
    for name in declared:
        assert get_claim(name).id == name


def test_each_builtin_phase_has_a_schema_fragment_and_needs_registered_phases():
    names = {p.name for p in registered_phases()}
    for phase in registered_phases():
        assert isinstance(phase.schema(), dict) and phase.schema(), phase.name
        assert set(phase.needs) <= names


def test_phase_options_reject_unknown_names():
    from xai_checks.study import StudyConfig

    config = StudyConfig(phase_options={"faithfulness": {"imgs": 3}})
    with pytest.raises(ValueError, match="no option"):
        get_phase("faithfulness").settings(config)
    with pytest.raises(ValueError, match="unknown phases"):
        StudyConfig(phase_options={"nope": {}})


def test_an_entry_point_whose_name_is_not_the_phase_name_is_an_error(tmp_path, monkeypatch):
    _install_dist(tmp_path, "[xai_checks.phases]\nsome-phase = acme_phase:PhotoBrightness\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(PhaseRegistrationError, match="must equal the phase's name"):
            registered_phases(refresh=True)
    finally:
        monkeypatch.undo()
        registered_phases(refresh=True)


def test_a_third_party_phase_and_claim_register_and_show_in_the_table_and_report(
    toy_dist, tmp_path, capsys
):
    """Two entry-point lines and one module: the phase runs, its JSON follows its schema
    fragment, its section is in the report, and the claim's verdict is in the CLI table."""
    from xai_checks.cli import main
    from xai_checks.phases import phase_names

    assert phase_names()[-1] == "photo-brightness"
    assert isinstance(get_phase("photo-brightness"), Phase)
    out = tmp_path / "report"
    code = main(
        [
            "study",
            "--data",
            "embedded",
            "--limit",
            "4",
            "--phases",
            "ratio",
            "photo-brightness",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    row = next(line for line in printed.splitlines() if "photos-have-brightness" in line)
    assert "SUPPORTED" in row
    assert "photo-brightness" in printed  # the phases line of the table
    doc = json.loads((out / "results.json").read_text())
    assert len(doc["phases"]["photo-brightness"]["records"]) == 3
    assert doc["gridpg"] is None  # only the phases the claim needs ran
    html = (out / "report.html").read_text()
    assert "Toy phase: photo brightness" in html and "brightness of 3 photos" in html


def test_results_of_a_phase_are_checked_against_its_schema_fragment(toy_dist):
    from xai_checks.report.schema import SchemaError, results_schema, validate_results

    schema = results_schema()
    assert "photo-brightness" in schema["properties"]["phases"]["properties"]
    fragment = schema["properties"]["phases"]["properties"]["photo-brightness"]
    assert fragment["required"] == ["records"]
    with pytest.raises(SchemaError) as info:
        validate_results({"phases": {"photo-brightness": {"records": []}}})
    assert any("photo-brightness" in e for e in info.value.errors)


def test_a_default_run_leaves_out_the_claims_of_opt_in_phases_unless_asked():
    """Without --claim the CLI judges the claims its default phases can decide; choosing a
    faithfulness claim, or naming its phase in --phases, brings the phase and the claim in."""
    from xai_checks.claims import get_claim, phases_for, registered_claims
    from xai_checks.cli import _default_claims
    from xai_checks.phases.registry import OPT_IN_PHASES
    from xai_checks.study import DEFAULT_PHASES

    assert "faithfulness" in OPT_IN_PHASES and "faithfulness" not in DEFAULT_PHASES
    every = list(registered_claims())
    default = {c.id for c in _default_claims(every, None)}
    assert {"faithfulness-beyond-random", "depth-faithfulness"}.isdisjoint(default)
    assert {"seed-depth-ratio", "sanity-randomisation"} <= default
    asked = {c.id for c in _default_claims(every, ["ratio", "faithfulness"])}
    assert {"faithfulness-beyond-random", "depth-faithfulness"} <= asked
    assert "faithfulness" in phases_for([get_claim("faithfulness-beyond-random")])
