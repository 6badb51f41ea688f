"""The report folder under hostile conditions: a symbolic link as ``--out``, and what a
write killed mid-way left beside it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from xai_checks.options import OptionError, preflight
from xai_checks.report import write_report
from xai_checks.report.writer import remove_stale_temporaries, report_folder


@pytest.fixture(scope="module")
def light_study() -> tuple[Any, list[Any]]:
    from test_report import make_study

    from xai_checks.claims import evaluate_all

    study = make_study(gridpg=None, sanity=False, agreement=False, examples=False)
    return study, evaluate_all(study)


def _values(out: Path, **more: Any) -> dict[str, Any]:
    return {"out": str(out), "data": "embedded", "overwrite": False, **more}


def test_a_symlinked_out_is_checked_where_it_points_before_the_run(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "thesis.txt").write_text("keep")
    link = tmp_path / "out"
    link.symlink_to(target)
    assert report_folder(link) == target.resolve()
    with pytest.raises(OptionError, match="not empty"):
        preflight(_values(link), front="cli", command="study")
    with pytest.raises(OptionError, match="earlier xai-checks report"):
        preflight(_values(link, overwrite=True), front="cli", command="study")
    (target / "thesis.txt").unlink()
    preflight(_values(link), front="cli", command="study")  # an empty folder is fine


def test_a_symlink_to_a_file_is_refused_before_the_run(tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    link = tmp_path / "out"
    link.symlink_to(a_file)
    with pytest.raises(OptionError, match="a file of that name exists"):
        preflight(_values(link), front="cli", command="study")


def test_the_report_is_written_through_a_symlink_to_an_empty_folder(tmp_path, light_study):
    study, verdicts = light_study
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "out"
    link.symlink_to(target)
    written = write_report(study, verdicts, link)
    assert written == target.resolve()
    assert link.is_symlink() and (link / "report.html").is_file()


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(done.stdout)


def test_what_a_killed_write_left_is_removed_on_the_next_run(tmp_path, light_study):
    study, verdicts = light_study
    dead = _dead_pid()
    stale = tmp_path / f".rep.tmp-{dead}-abcd1234"
    stale.mkdir()
    (stale / "results.json").write_text("{half")
    old = tmp_path / f".rep.old-{dead}-abcd1234"
    old.mkdir()
    live = tmp_path / f".rep.tmp-{os.getpid()}-live0000"  # a writer that still runs
    live.mkdir()
    unrelated = tmp_path / ".other.tmp-1-x"
    unrelated.mkdir()
    write_report(study, verdicts, tmp_path / "rep")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["rep", live.name, unrelated.name])


def test_a_temporary_without_a_pid_is_stale(tmp_path):
    """A temporary whose name holds no pid has no writer that could still own it."""
    stale = tmp_path / ".rep.tmp-k3j4h5"
    stale.mkdir()
    assert remove_stale_temporaries(tmp_path / "rep") == [stale.name]


def test_the_maps_a_killed_save_maps_run_left_are_removed_on_the_next_run(
    tmp_path, light_study, monkeypatch
):
    """``--save-maps`` writes a study's maps beside the report folder while it runs (memory-
    mapped arrays, gigabytes on a large study); a run killed mid-way leaves them, and the
    next run's report removes them, but never those of a run that still writes."""
    import numpy as np

    from xai_checks.report.writer import maps_temporary
    from xai_checks.saved_maps import MapWriter

    study, verdicts = light_study
    dead = _dead_pid()
    with monkeypatch.context() as patch:
        patch.setattr(os, "getpid", lambda: dead)
        killed = MapWriter(maps_temporary(tmp_path / "rep"), ids=["a.png"])
    killed.add(
        "under_test", [0], raw={"l": np.zeros((1, 2, 2))}, canonical={"l": np.zeros((1, 4, 4))}
    )
    maps_temporary(tmp_path / "rep").with_name(f".rep.maps-{dead}-partial.npz").write_bytes(b"PK")
    live = MapWriter(maps_temporary(tmp_path / "rep"), ids=["a.png"])  # this process: alive
    assert len(list(tmp_path.iterdir())) == 3
    write_report(study, verdicts, tmp_path / "rep")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["rep", live._dir.name]), left
    live.discard()
