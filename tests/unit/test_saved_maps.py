"""``--save-maps``: every layer's raw and canonical maps of every photo in ``maps.npz``, read
back with :func:`xai_checks.saved_maps.load_maps`.

The round trip through the CLI runs the digits CNN of test_own_model (trained there on
scikit-learn's real handwritten digits) on 20 held-out photos, then recomputes the maps with
the CAM engine and compares.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_own_model import SIZE, project  # noqa: F401  (fixture; tests/unit is on sys.path)

from xai_checks.saved_maps import CANONICAL_DTYPE, MapWriter, load_maps

pytestmark = pytest.mark.usefixtures("one_thread")

LAYERS = ("stem", "block_a", "block_b", "block_c")


def test_writer_round_trip_batches_in_any_order_and_unused_rows(tmp_path):
    gen = torch.Generator().manual_seed(0)
    raw = {"a": torch.randn(5, 4, 4, generator=gen), "b": torch.randn(5, 2, 2, generator=gen)}
    canon = {k: torch.rand(5, 8, 8, generator=gen) for k in raw}
    ids = [f"photo_{i}.png" for i in range(6)]  # photo 5 is never written: a skipped photo
    writer = MapWriter(tmp_path / "maps.npz", ids=ids)
    for rows in ([3, 4], [0, 1, 2]):  # batches arrive in any order
        writer.add(
            "under_test",
            rows,
            raw={k: v[rows] for k, v in raw.items()},
            canonical={k: v[rows] for k, v in canon.items()},
        )
    writer.add("untrained", [0], raw={"a": raw["a"][:1]}, canonical={"a": canon["a"][:1]})
    writer.close()
    assert [p.name for p in tmp_path.iterdir()] == ["maps.npz"]  # no temporaries left

    saved = load_maps(tmp_path)  # a folder holding maps.npz, or the file itself
    assert saved.ids == tuple(ids)
    assert saved.runs == ("under_test", "untrained")
    assert saved.layers() == ("a", "b")
    assert saved.used().tolist() == [True] * 5 + [False]
    assert saved.used("untrained").tolist() == [True] + [False] * 5
    for layer in ("a", "b"):
        got_raw = saved.raw(layer)
        assert got_raw.dtype == np.float32 and got_raw.shape == (6, *raw[layer].shape[1:])
        np.testing.assert_array_equal(got_raw[:5], raw[layer].numpy())  # float32: exact
        got = saved.canonical(layer)
        assert got.dtype == CANONICAL_DTYPE
        # float16 on [0, 1]: round to nearest, spacing at most 2^-11 below 1
        assert np.abs(got[:5].astype(np.float32) - canon[layer].numpy()).max() <= 2**-12
    with pytest.raises(KeyError, match="no run"):
        saved.raw("a", run="pretrained")
    with pytest.raises(KeyError, match="holds no"):
        saved.raw("b", run="untrained")


def test_load_maps_refuses_other_files(tmp_path):
    (tmp_path / "maps.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a maps file"):
        load_maps(tmp_path)


def test_writer_discard_leaves_nothing(tmp_path):
    writer = MapWriter(tmp_path / "maps.npz", ids=["x"])
    writer.add("m", [0], raw={"a": np.zeros((1, 2, 2))}, canonical={"a": np.zeros((1, 4, 4))})
    writer.discard()
    assert list(tmp_path.iterdir()) == []


def _study(project, out, *extra):  # noqa: F811
    from xai_checks.cli import main

    return main(
        [
            "study",
            "--model",
            "mynet.py:trained_cnn",
            "--layers",
            ",".join(LAYERS),
            "--classes",
            "classes.txt",
            "--data",
            "photos",
            "--limit",
            "20",
            "--input-size",
            str(SIZE),
            "--mean",
            "0.5,0.5,0.5",
            "--std",
            "0.5,0.5,0.5",
            "--claim",
            "seed-depth-ratio",
            "--out",
            str(out),
            "--quiet",
            *extra,
        ]
    )


def test_cli_save_maps_round_trip(project, monkeypatch, tmp_path):  # noqa: F811
    from xai_checks.cam import CAM
    from xai_checks.data import open_photoset
    from xai_checks.data.classes import Preprocess, read_class_list
    from xai_checks.study import load_tensors

    monkeypatch.chdir(project)
    out = tmp_path / "report"
    assert _study(project, out, "--save-maps") == 0
    doc = json.loads((out / "results.json").read_text())
    saved = load_maps(out / "maps.npz")
    run = saved.runs[0]
    assert saved.runs == tuple(doc["models"])  # the model under test, then its control
    assert saved.layers(run) == LAYERS
    assert saved.used(run).all()
    # the ids join the maps with results.json's per-photo records
    assert list(saved.ids) == [p["file"] for p in doc["models"][run]["photos"]]

    # recompute: the same photos, in the same order, through the same engine
    photos = open_photoset(
        "photos", limit=20, seed=0, classes=read_class_list(project / "classes.txt")
    )
    assert tuple(str(s.path) for s in photos) == saved.ids
    namespace: dict = {}
    exec(compile((project / "mynet.py").read_text(), "mynet.py", "exec"), namespace)
    net = namespace["DigitNet"]()
    net.load_state_dict(torch.load(project / "digits.pt", weights_only=True))
    net.eval()
    transform = Preprocess(input_size=SIZE, mean=(0.5,) * 3, std=(0.5,) * 3).build(
        photos.transform_kind
    )
    x = load_tensors(list(photos), transform)
    labels = torch.tensor([s.label for s in photos])
    result = CAM(net, layers=list(LAYERS))(x, targets=labels)
    for layer, edge in zip(LAYERS, (32, 16, 8, 4), strict=True):
        raw = saved.raw(layer, run)
        assert raw.shape == (20, edge, edge)
        scale = float(np.abs(raw).max())
        # batches of 8 vs one batch of 20: float32 reduction order, relative to the map's scale
        np.testing.assert_allclose(raw, result.raw[layer].numpy(), rtol=0, atol=1e-5 * scale)
        canonical = saved.canonical(layer, run)
        assert canonical.shape == (20, SIZE, SIZE)
        diff = np.abs(canonical.astype(np.float32) - result.maps[layer].numpy()).max()
        assert diff <= 2**-12 + 1e-5  # float16 rounding plus the batching's float32 rounding

    # the report folder stays a report: --overwrite replaces it, maps.npz included
    assert _study(project, out, "--overwrite") == 0
    assert not (out / "maps.npz").exists()
    assert not list(tmp_path.glob(".report.maps-*"))
