"""``maps.npz`` handed back from outside (:func:`xai_checks.saved_maps.load_maps`): a file
that xai-checks did not write, or that changed since, is a :class:`MapsFileError` naming the
file, the array and the fix; never a raw numpy error, a pickle loaded, an allocation the file
cannot fill, or NaN maps returned as if they were maps."""

from __future__ import annotations

import io
import resource
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from xai_checks.saved_maps import MapsFileError, MapWriter, load_maps

IDS = [f"photo_{i}.png" for i in range(3)]


@pytest.fixture
def good(tmp_path: Path) -> Path:
    """A maps file as a study writes it: one run, one layer, three photos."""
    rng = np.random.default_rng(0)
    writer = MapWriter(tmp_path / "good.npz", ids=IDS)
    writer.add(
        "under_test",
        [0, 1, 2],
        raw={"layer1": rng.standard_normal((3, 4, 4)).astype(np.float32)},
        canonical={"layer1": rng.random((3, 8, 8))},
    )
    return writer.close()


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array(out, array, allow_pickle=True)
    return out.getvalue()


def _header_only(shape: tuple[int, ...], descr: str) -> bytes:
    """A member whose header claims ``shape`` but that holds 16 bytes."""
    out = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue() + b"\0" * 16


def _swap(source: Path, target: Path, replace: dict[str, bytes], **kwargs: int) -> Path:
    """``source`` with members replaced (``name.npy`` -> bytes), written to ``target``."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", **kwargs) as new:
        for info in old.infolist():
            data = replace.pop(info.filename, None)
            new.writestr(info.filename, old.read(info) if data is None else data)
        for name, data in replace.items():
            new.writestr(name, data)
    return target


def _read_all(path: Path) -> None:
    saved = load_maps(path)
    for run in saved.runs:
        saved.used(run)
        for layer in saved.layers(run):
            saved.raw(layer, run)
            saved.canonical(layer, run)


def test_the_good_file_reads_back(good):
    _read_all(good)


CASES: dict[str, tuple[Callable[[Path, Path], Path], str]] = {
    "ids pickled (allow_pickle stays off)": (
        lambda g, t: _swap(g, t, {"ids.npy": _npy(np.array([object()] * 3, dtype=object))}),
        "'ids' holds Python objects",
    ),
    "ids a 0-d array": (
        lambda g, t: _swap(g, t, {"ids.npy": _npy(np.array("photo.png"))}),
        "'ids' has shape ()",
    ),
    "ids numbers": (
        lambda g, t: _swap(g, t, {"ids.npy": _npy(np.arange(3))}),
        "'ids' is int64, not text",
    ),
    "runs empty": (
        lambda g, t: _swap(g, t, {"runs.npy": _npy(np.array([], dtype=np.str_))}),
        "is empty or repeats a run",
    ),
    "raw of another shape": (
        lambda g, t: _swap(g, t, {"under_test/layer1/raw.npy": _npy(np.zeros((3, 16)))}),
        "'under_test/layer1/raw' has shape (3, 16)",
    ),
    "raw of another dtype": (
        lambda g, t: _swap(g, t, {"under_test/layer1/raw.npy": _npy(np.zeros((3, 4, 4)))}),
        "is float64, not float32",
    ),
    "raw with rows for other photos": (
        lambda g, t: _swap(
            g, t, {"under_test/layer1/raw.npy": _npy(np.zeros((5, 4, 4), np.float32))}
        ),
        "has 5 rows for 3 photos",
    ),
    "used as numbers": (
        lambda g, t: _swap(g, t, {"under_test/used.npy": _npy(np.ones(3, np.int64))}),
        "'under_test/used' is int64, not bool",
    ),
    "NaN canonical maps": (
        lambda g, t: _swap(
            g,
            t,
            {"under_test/layer1/canonical.npy": _npy(np.full((3, 8, 8), np.nan, np.float16))},
        ),
        "holds NaN or infinite maps",
    ),
    "canonical maps outside [0, 1]": (
        lambda g, t: _swap(
            g,
            t,
            {"under_test/layer1/canonical.npy": _npy(np.full((3, 8, 8), 7, np.float16))},
        ),
        "outside [0, 1]",
    ),
    "infinite raw maps": (
        lambda g, t: _swap(
            g, t, {"under_test/layer1/raw.npy": _npy(np.full((3, 4, 4), np.inf, np.float32))}
        ),
        "holds NaN or infinite maps",
    ),
    "a huge shape in a small file": (
        lambda g, t: _swap(
            g, t, {"under_test/layer1/raw.npy": _header_only((3, 100_000, 100_000), "<f4")}
        ),
        "needs 120000000000",
    ),
    "huge ids in a small file": (
        lambda g, t: _swap(g, t, {"ids.npy": _header_only((10**9,), "<U100")}),
        "needs 400000000000",
    ),
    "compressed members (a zip bomb's route)": (
        lambda g, t: _swap(g, t, {}, compression=zipfile.ZIP_DEFLATED),
        "is compressed",
    ),
    "truncated": (
        lambda g, t: t.write_bytes(g.read_bytes()[:-100]) and t,
        "not a maps file written by xai-checks, or cut short",
    ),
    "a missing layer's maps": (
        lambda g, t: _swap(g, t, {"under_test/layers.npy": _npy(np.array(["layer1", "layer2"]))}),
        "holds no 'under_test/layer2/raw'",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_maps_file_from_outside_is_refused_naming_the_array_and_the_fix(good, tmp_path, case):
    make, message = CASES[case]
    bad = make(good, tmp_path / "bad.npz")
    # a reader that tried to allocate what a header claims would fail here, not with our error
    limit = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, limit[1]))
    try:
        with pytest.raises(MapsFileError, match="xai-checks study --save-maps") as info:
            _read_all(bad)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, limit)
    assert message in str(info.value), str(info.value)
    assert str(bad) in str(info.value)


def test_a_symlink_to_something_else_is_refused(good, tmp_path):
    link = tmp_path / "maps.npz"
    link.symlink_to("/etc/hostname")
    with pytest.raises(MapsFileError, match="not a maps file"):
        load_maps(tmp_path)


def test_a_folder_without_maps_names_the_option(tmp_path):
    with pytest.raises(MapsFileError, match=r"no maps file at .*--save-maps"):
        load_maps(tmp_path)


def test_a_symlink_to_a_maps_file_reads_it(good, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "elsewhere" / "maps.npz"
    link.symlink_to(good)
    assert load_maps(link.parent).ids == tuple(IDS)
