"""Shared fixtures and options for the Grad-CAM throughput benchmarks.

These benchmarks are not part of the unit test run (``testpaths = ["tests"]``); run them with
``pytest benchmarks --benchmark-only`` (see ``benchmarks/README.md``).

Options (each also readable from an environment variable, handy under tox):

``--bench-batches`` / ``XAI_BENCH_BATCHES``
    comma-separated batch sizes, default ``1,8``. ``32`` is supported but slow on a small CPU.
``--bench-devices`` / ``XAI_BENCH_DEVICES``
    ``cpu,cuda`` by default; CUDA cases skip with "no CUDA device" when there is none.
``--bench-layer-sets`` / ``XAI_BENCH_LAYER_SETS``
    any of ``layer1,layer2,layer3,layer4,all`` (default: all five).
``--bench-rounds`` / ``XAI_BENCH_ROUNDS``
    timed rounds per case (default 3, after one warm-up round).
``--bench-case-budget`` / ``XAI_BENCH_CASE_BUDGET``
    seconds one case may take (default 40): fewer rounds (at least 2) for slow cases.
``--bench-paired`` / ``XAI_BENCH_PAIRED``
    ``yes``/``no`` (default ``yes``): time plain inference right before every round of every
    case, for load-robust ratios (see README).
``--bench-threads`` / ``XAI_BENCH_THREADS``
    ``torch.set_num_threads`` for the run (default: torch's choice).
``--bench-variants`` / ``XAI_BENCH_VARIANTS``
    ``yes``/``no`` (default ``no``): also time the engine experiments (channels_last, bf16
    autocast, BN folding, no-clone hooks, the analytic layer4 shortcut) at batch 8 only.
"""

from __future__ import annotations

import contextlib
import os
import platform
from typing import Any

import pytest
import torch

ALL_LAYER_SETS = ("layer1", "layer2", "layer3", "layer4", "all")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xai-checks benchmarks")
    group.addoption("--bench-batches", default=None, help="comma-separated batch sizes (1,8)")
    group.addoption("--bench-devices", default=None, help="comma-separated devices (cpu,cuda)")
    group.addoption("--bench-layer-sets", default=None, help="layer1..layer4,all (all five)")
    group.addoption("--bench-rounds", default=None, type=int, help="timed rounds per case (3)")
    group.addoption("--bench-variants", default=None, help="yes/no: engine experiments (no)")
    group.addoption(
        "--bench-e2e", default=None, help="yes/no: end-to-end study cases on real photos (yes)"
    )
    group.addoption("--bench-threads", default=None, type=int, help="torch.set_num_threads")
    group.addoption("--bench-paired", default=None, help="yes/no: time plain before each round")
    group.addoption(
        "--bench-case-budget", default=None, type=float, help="seconds per case, sizes rounds (40)"
    )


def _opt(config: pytest.Config, name: str, env: str, default: str) -> str:
    value = config.getoption(name)
    if value is None:
        value = os.environ.get(env, default)
    return str(value)


def bench_batches(config: pytest.Config) -> list[int]:
    raw = _opt(config, "--bench-batches", "XAI_BENCH_BATCHES", "1,8")
    return [int(b) for b in raw.split(",") if b.strip()]


def bench_devices(config: pytest.Config) -> list[str]:
    raw = _opt(config, "--bench-devices", "XAI_BENCH_DEVICES", "cpu,cuda")
    return [d.strip() for d in raw.split(",") if d.strip()]


def bench_layer_sets(config: pytest.Config) -> list[str]:
    raw = _opt(config, "--bench-layer-sets", "XAI_BENCH_LAYER_SETS", ",".join(ALL_LAYER_SETS))
    sets = [s.strip() for s in raw.split(",") if s.strip()]
    unknown = [s for s in sets if s not in ALL_LAYER_SETS]
    if unknown:
        raise pytest.UsageError(f"unknown layer sets {unknown}; choose from {ALL_LAYER_SETS}")
    return sets


def bench_rounds(config: pytest.Config) -> int:
    return int(_opt(config, "--bench-rounds", "XAI_BENCH_ROUNDS", "3"))


def _yes(raw: str) -> bool:
    return raw.strip().lower() in ("1", "yes", "true", "on")


def bench_variants(config: pytest.Config) -> bool:
    return _yes(_opt(config, "--bench-variants", "XAI_BENCH_VARIANTS", "no"))


def bench_e2e(config: pytest.Config) -> bool:
    return _yes(_opt(config, "--bench-e2e", "XAI_BENCH_E2E", "yes"))


def bench_paired(config: pytest.Config) -> bool:
    return _yes(_opt(config, "--bench-paired", "XAI_BENCH_PAIRED", "yes"))


def bench_case_budget(config: pytest.Config) -> float:
    return float(_opt(config, "--bench-case-budget", "XAI_BENCH_CASE_BUDGET", "40"))


def pytest_configure(config: pytest.Config) -> None:
    threads = _opt(config, "--bench-threads", "XAI_BENCH_THREADS", "")
    if threads:
        torch.set_num_threads(int(threads))


# --------------------------------------------------------------------------- machine description


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> dict[str, Any]:
    """What the numbers depend on: CPU, threads, GPU, library versions."""
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "weights": os.environ.get("XAI_BENCH_WEIGHTS", "msra"),
        "gpu": None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cudnn"] = torch.backends.cudnn.version()
    try:
        import captum

        info["captum"] = captum.__version__
    except Exception:  # pragma: no cover - optional
        info["captum"] = None
    try:
        from importlib.metadata import version

        info["grad_cam"] = version("grad-cam")
    except Exception:  # pragma: no cover - optional
        info["grad_cam"] = None
    return info


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    machine_info["xai_checks"] = machine_description()
    with contextlib.suppress(OSError):
        machine_info["xai_checks"]["loadavg_at_start"] = list(os.getloadavg())


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def machine() -> dict[str, Any]:
    return machine_description()


_MODELS: dict[str, torch.nn.Module] = {}


def resnet50_on(device: str) -> torch.nn.Module:
    """The real ImageNet ResNet-50 (MSRA weights, cached by xai_checks) on ``device``, shared.

    ``XAI_BENCH_WEIGHTS=random`` uses seeded random weights instead (a machine without the
    weights, e.g. the offline GPU machine of scripts/device_check.sh); throughput does not
    depend on the weights' values."""
    if device not in _MODELS:
        from xai_checks.models import load_resnet50

        weights = os.environ.get("XAI_BENCH_WEIGHTS", "msra")
        _MODELS[device] = load_resnet50(weights, device=device)
    return _MODELS[device]


@pytest.fixture
def need_device(request: pytest.FixtureRequest) -> str:
    device: str = request.node.callspec.params["case"].device
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return device
