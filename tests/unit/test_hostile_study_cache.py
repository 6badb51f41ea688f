"""The study kept between pytest runs (``--xai-study-cache``) under hostile or careless input:
a file that is truncated, altered, of another format, or built to run code is never loaded
(the study is computed again, and the run says why); a folder that cannot keep it says so;
nothing is lost."""

from __future__ import annotations

import hashlib
import os
import pickle
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from xai_checks.data import open_photoset
from xai_checks.data.classes import Preprocess
from xai_checks.kept_study import FORMAT_LINE, read_kept_study, write_kept_study
from xai_checks.session import Settings, XaiSession
from xai_checks.study import StudyConfig, StudyResult, run_study

pytestmark = pytest.mark.usefixtures("one_thread")

DESCRIPTION = {"config": "a small study", "photos": "four embedded photos"}


@pytest.fixture(scope="module")
def study() -> StudyResult:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.Conv2d(4, 8, 3, 2, 1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1000),
    ).eval()  # fmt: skip
    config = StudyConfig(
        layers=("0", "2"),
        phases=("ratio",),
        batch_size=4,
        preprocess=Preprocess(input_size=32),
        workers=0,
    )
    return run_study(model, open_photoset("embedded", limit=4, seed=0), config=config)


class Run:
    """One pytest run's session over ``root`` with the study cache at ``folder``."""

    def __init__(self, root: Path, study: StudyResult, folder: str = ".xai-checks/studies"):
        settings = Settings(
            data="embedded", labels=[], layout="auto", weights="msra", control="random",
            alpha=0.05, device="cpu", limit=4, seed=0, batch_size=4, layers=None,
            json_path=None, baseline=None, update_baseline=False, baseline_optional=False,
            tolerance=0.1, strict=(), values={"study_cache": folder},
        )  # fmt: skip
        self.session = XaiSession(SimpleNamespace(rootpath=root), settings)
        self.study = study
        self.computed = 0
        self.lines: list[str] = []
        path = self.session._durable_path(DESCRIPTION, [])
        assert path is not None
        self.path = path

    def get(self) -> Any:
        def compute() -> StudyResult:
            self.computed += 1
            return self.study

        return self.session.study(DESCRIPTION, compute, announce=self.lines.append)


def _kept(body: bytes, *, head: bytes = FORMAT_LINE) -> bytes:
    """A kept file around ``body`` whose checksum matches (anyone can compute a sha256)."""
    return head + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def _plant(run: Run, data: bytes) -> None:
    run.path.parent.mkdir(parents=True, exist_ok=True)
    run.path.write_bytes(data)


def test_an_unchanged_second_run_loads_the_kept_study(tmp_path, study):
    Run(tmp_path, study).get()
    second = Run(tmp_path, study)
    loaded = second.get()
    assert second.computed == 0 and isinstance(loaded, StudyResult)
    assert loaded.under_test.records == study.under_test.records
    assert any("loaded from" in line for line in second.lines), second.lines


class RunsCode:
    """A pickle that, loaded by a plain unpickler, creates the folder ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


class CallsThePackage:
    """A pickle that, loaded by a plain unpickler, calls a function of the package."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __reduce__(self) -> tuple[Any, ...]:
        from xai_checks.cache import remove_stale

        return (remove_stale, (str(self.folder),))


def _cases(study: StudyResult) -> dict[str, tuple[bytes, str]]:
    whole = _kept(pickle.dumps(study))
    return {
        "truncated": (whole[: len(whole) // 2], "truncated or altered"),
        "altered": (whole[:-1] + bytes([whole[-1] ^ 1]), "truncated or altered"),
        "a bare pickle": (pickle.dumps(study), "not a study kept by this version"),
        "another format line": (
            _kept(pickle.dumps(study), head=b"xai-checks kept study 0\n"),
            "not a study kept by this version",
        ),
        "another object": (_kept(pickle.dumps({"under_test": 1})), "holds a dict, not a study"),
        "empty": (b"", "not a study kept by this version"),
    }


@pytest.mark.parametrize(
    "case",
    ["truncated", "altered", "a bare pickle", "another format line", "another object", "empty"],
)
def test_a_kept_file_that_is_no_whole_study_is_computed_again_and_said(tmp_path, study, case):
    data, why = _cases(study)[case]
    run = Run(tmp_path, study)
    _plant(run, data)
    assert isinstance(run.get(), StudyResult)
    assert run.computed == 1
    assert any("is not used" in line and why in line for line in run.lines), run.lines
    kept, problem = read_kept_study(run.path)  # and the file is whole again
    assert problem is None and isinstance(kept, StudyResult)


def test_a_kept_file_built_to_run_code_never_runs_it(tmp_path, study):
    marker = tmp_path / "ran"
    run = Run(tmp_path, study)
    _plant(run, _kept(pickle.dumps(RunsCode(marker))))
    assert isinstance(run.get(), StudyResult)
    assert not marker.exists()
    assert run.computed == 1
    assert any("which a study never holds" in line for line in run.lines), run.lines


def test_a_kept_file_that_calls_the_package_is_refused(tmp_path, study):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / ".xai-tmp-precious").write_text("kept")
    run = Run(tmp_path, study)
    _plant(run, _kept(pickle.dumps(CallsThePackage(victim))))
    run.get()
    assert (victim / ".xai-tmp-precious").exists()
    assert any("xai_checks.cache.remove_stale" in line for line in run.lines), run.lines


def test_a_cache_folder_that_is_a_file_is_said_and_the_run_goes_on(tmp_path, study):
    (tmp_path / "kept").write_text("not a folder")
    run = Run(tmp_path, study, folder="kept")
    assert isinstance(run.get(), StudyResult) and run.computed == 1
    line = next(line for line in run.lines if "cannot be kept" in line)
    assert "is a file, not a folder" in line and "--xai-study-cache" in line


def test_a_read_only_cache_folder_is_said_and_the_run_goes_on(unprivileged, study):
    folder = unprivileged.folder / "kept"
    folder.mkdir()
    folder.chmod(0o555)

    def check() -> None:
        run = Run(unprivileged.folder, study, folder="kept")
        assert isinstance(run.get(), StudyResult) and run.computed == 1
        line = next(line for line in run.lines if "cannot be kept" in line)
        assert "ermission denied" in line, line

    unprivileged.run(check)


def test_a_symlinked_cache_folder_keeps_the_study_where_it_points(tmp_path, study):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "kept").symlink_to(elsewhere)
    Run(tmp_path / "project", study, folder="kept").get()
    assert len(list(elsewhere.glob("*.pickle"))) == 1
    second = Run(tmp_path / "project", study, folder="kept")
    second.get()
    assert second.computed == 0


def test_two_runs_writing_at_once_leave_a_whole_study(tmp_path, study):
    """Two sessions compute and keep the same study while a third reads: every read gives
    the whole study or none, never a partial file."""
    errors: list[str] = []
    reads: list[str] = []

    path = Run(tmp_path, study).path

    def write() -> None:
        for _ in range(5):
            assert write_kept_study(path, study) is None

    def read() -> None:
        for _ in range(50):
            kept, problem = read_kept_study(path)
            if problem is not None:
                errors.append(problem)
            reads.append("whole" if kept is not None else "none")

    threads = [threading.Thread(target=f) for f in (write, write, read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert "whole" in reads or "none" in reads
    kept, problem = read_kept_study(path)
    assert problem is None and isinstance(kept, StudyResult)


def _text(value: str) -> bytes:
    data = value.encode()
    return b"\x8c" + bytes([len(data)]) + data  # SHORT_BINUNICODE


def _exec_through(module: str, path: str, code: str) -> bytes:
    """A protocol-4 pickle that looks up ``module`` then the dotted ``path`` (to a getter of
    builtins) and runs ``code`` with ``exec``, as a plain unpickler would."""
    get = _text(module) + _text(path) + b"\x93"  # STACK_GLOBAL
    call_exec = get + _text("exec") + b"\x85R"  # (name,) then REDUCE: the exec function
    return b"\x80\x04" + call_exec + _text(code) + b"\x85R."


def test_a_kept_file_may_not_reach_further_through_an_allowed_module(tmp_path, study):
    """numpy.dtypes holds the dtype classes, and also ``__builtins__``: a dotted name through
    it reaches ``exec``."""
    marker = tmp_path / "ran"
    body = _exec_through(
        "numpy.dtypes", "__builtins__.get", f"import os; os.mkdir({str(marker)!r})"
    )
    pickle.loads(body)  # a plain unpickler runs it: the payload is real
    assert marker.exists()
    marker.rmdir()
    run = Run(tmp_path, study)
    _plant(run, _kept(body))
    run.get()
    assert not marker.exists() and run.computed == 1
    assert any("numpy.dtypes.__builtins__.get" in line for line in run.lines), run.lines


def test_a_kept_file_may_not_reach_another_library_through_the_package(tmp_path, study):
    """A dotted name through a module of the package reaches whatever that module imported
    (here numpy's ``_CopyMode`` enum through ``xai_checks.study.np``); only classes defined in
    the package itself are built."""
    body = _text("xai_checks.study") + _text("np._CopyMode") + b"\x93\x88\x85R."  # (True,)
    run = Run(tmp_path, study)
    _plant(run, _kept(b"\x80\x04" + body))
    run.get()
    assert run.computed == 1
    line = next(line for line in run.lines if "is not used" in line)
    assert "xai_checks.study.np._CopyMode, which a study never holds" in line, line


def _module_from(path: Path, name: str) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_key_follows_the_code_of_the_users_model_and_transform(tmp_path: Path) -> None:
    """A kept study answers for the code that made its numbers: an edit to the file that
    defines a model's module class, or to a transform (a callable's file, or the file a
    ``FILE.py:factory`` spec names), gives another key; reading the same files again does not."""
    from xai_checks.session import model_fingerprint, transform_digest

    source = tmp_path / "usernet.py"
    code = (
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = torch.nn.Linear(2, 2)\n"
        "    def forward(self, x):\n"
        "        return self.fc(x)\n"
        "def transform(image):\n"
        "    return image\n"
    )
    source.write_text(code)
    module = _module_from(source, "usernet_a")
    torch.manual_seed(0)
    model = module.Net()
    before = model_fingerprint(model)
    by_callable, by_spec = (
        transform_digest(module.transform),
        transform_digest(f"{source}:transform"),
    )
    assert model_fingerprint(model) == before
    assert transform_digest(module.transform) == by_callable
    assert before["code"] != model_fingerprint(nn.Linear(2, 2))["code"]

    source.write_text(code.replace("return self.fc(x)", "return self.fc(x).relu()"))
    assert model_fingerprint(model)["weights"] == before["weights"]
    assert model_fingerprint(model)["code"] != before["code"]
    assert transform_digest(module.transform) != by_callable
    assert transform_digest(f"{source}:transform") != by_spec
    assert transform_digest(None) is None
