"""Grad-CAM throughput on the real ImageNet ResNet-50 (MSRA weights), with pytest-benchmark.

Cases are ``{device}-b{batch}-{layer set}-{implementation}`` (``{device}-b{batch}-plain`` for the
ceiling), so ``-k`` selects them: ``-k "cpu and b8"``, ``-k "all or plain"``, ``-k "not gradcam"``.

Implementations (all produce per-layer maps at input resolution, per-image min-max):

``plain``            ``torch.inference_mode()`` forward only: the ceiling.
``ours_fused``       ``xai_checks.cam.GradCAM(model, layers=...)``: one forward, one
                     activation-only backward for every requested layer.
``ours_loop``        the same with ``fused=False``: one forward/backward per layer (``all`` only).
``captum``           ``captum.attr.LayerGradCam`` per layer, ``relu_attributions=True``, then
                     ``LayerAttribution.interpolate(..., "bilinear")`` and the same min-max: what a
                     user would write to get the canonical maps from Captum.
``gradcam``          PyPI ``grad-cam``'s ``pytorch_grad_cam.GradCAM`` per layer with
                     ``ClassifierOutputTarget`` (its own resize and scaling, returns numpy).
``ours_fused_cl``    ``CAM(model, layers=..., memory_format=torch.channels_last)``: the shipped
                     option (a private channels_last copy of the model; ``all`` and ``layer4``),
                     next to ``plain_cl``, plain inference on a channels_last copy.
``plain_graph``      plain inference replayed from a CUDA graph (CUDA only), and
``ours_fused_graph`` ``CapturedCAM``: the fused engine replayed from a CUDA graph (``all`` and
                     ``layer4``): the pair of the issue's GPU targets, both sides captured.
``engine_photos``    the fused engine over N real photos decoded and transformed beforehand, in
                     batches of the case's size (``all`` only; a round is all N photos).
``study_e2e``        the study end to end on the same N photos: ``run_study`` with the ratio
                     phase and no control, i.e. decoding in ``DataLoader`` workers + transform +
                     the fused engine + per-photo metrics. ``study_e2e / engine_photos`` is
                     the "end-to-end photos/s vs the engine alone" ratio.

Engine experiments (``--bench-variants=yes``, batch 8 only, see ``engine_variants.py``):
``plain_bf16``/``ours_fused_bf16`` (autocast bfloat16), ``plain_bnfold``/``ours_fused_bnfold``
(BatchNorm folded into the convs), ``plain_fast``/``ours_fused_fast`` (both: BN folded and
channels_last), ``ours_analytic`` (layer4's closed-form gradient, no backward). The hooks no
longer copy activations (shipped: a copy only when the model changes one in place), so the
former ``ours_fused_noclone`` experiment is the shipped engine.

Inputs are random-normal tensors of shape (N, 3, 224, 224) with random target classes, seeded:
throughput does not depend on image content (no data-dependent control flow in ResNet-50 or in
any of the implementations), so no photos are needed, except by the two end-to-end cases, which
read ``XAI_BENCH_E2E_PHOTOS`` (default 24) photos of the shared ImageNet samples (or the folder
``XAI_BENCH_PHOTOS``) and skip, saying so, where there are none.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from benchmarks.conftest import (
    bench_batches,
    bench_case_budget,
    bench_devices,
    bench_e2e,
    bench_layer_sets,
    bench_paired,
    bench_rounds,
    bench_variants,
    resnet50_on,
)

LAYERS = ("layer1", "layer2", "layer3", "layer4")
SIZE = (224, 224)
VARIANT_BATCH = 8
NOTE = "inputs: seeded random-normal (N,3,224,224), random targets; content-independent"


@dataclass(frozen=True)
class Case:
    device: str
    batch: int
    layer_set: str  # "layer1".."layer4", "all", or "-" for plain inference
    impl: str

    @property
    def id(self) -> str:
        if self.layer_set == "-":
            return f"{self.device}-b{self.batch}-{self.impl}"
        return f"{self.device}-b{self.batch}-{self.layer_set}-{self.impl}"


def cases(config: pytest.Config) -> list[Case]:
    out: list[Case] = []
    sets = bench_layer_sets(config)
    variants = bench_variants(config)
    for device in bench_devices(config):
        for batch in bench_batches(config):
            out.append(Case(device, batch, "-", "plain"))
            out.append(Case(device, batch, "-", "plain_cl"))
            if device == "cuda":  # both sides replayed from CUDA graphs: a fair ratio
                out.append(Case(device, batch, "-", "plain_graph"))
            for ls in sets:
                out.append(Case(device, batch, ls, "ours_fused"))
                if ls in ("all", "layer4"):
                    out.append(Case(device, batch, ls, "ours_fused_cl"))
                    if device == "cuda":
                        out.append(Case(device, batch, ls, "ours_fused_graph"))
                if ls == "all":
                    out.append(Case(device, batch, ls, "ours_loop"))
                out.append(Case(device, batch, ls, "captum"))
                out.append(Case(device, batch, ls, "gradcam"))
                if ls == "all" and bench_e2e(config):
                    out.append(Case(device, batch, ls, "engine_photos"))
                    out.append(Case(device, batch, ls, "study_e2e"))
            if variants and batch == VARIANT_BATCH:
                out.append(Case(device, batch, "-", "plain_bf16"))
                out.append(Case(device, batch, "-", "plain_bnfold"))
                out.append(Case(device, batch, "-", "plain_fast"))
                for ls in ("all", "layer4"):
                    if ls in sets:
                        out.append(Case(device, batch, ls, "ours_fused_bf16"))
                        out.append(Case(device, batch, ls, "ours_fused_bnfold"))
                        out.append(Case(device, batch, ls, "ours_fused_fast"))
                if "layer4" in sets:
                    out.append(Case(device, batch, "layer4", "ours_analytic"))
    return out


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" in metafunc.fixturenames:
        cs = cases(metafunc.config)
        metafunc.parametrize("case", cs, ids=[c.id for c in cs])


# --------------------------------------------------------------------------- implementations


def layer_names(layer_set: str) -> tuple[str, ...]:
    return LAYERS if layer_set == "all" else (layer_set,)


def inputs(batch: int, device: str) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1234 + batch)
    x = torch.randn(batch, 3, *SIZE, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    return x.to(device), t.to(device)


def build(
    case: Case,
    model: nn.Module,
    x: Tensor,
    t: Tensor,
    monkeypatch: pytest.MonkeyPatch,
    info: dict[str, Any],
) -> tuple[Callable[[], Any], Callable[[], None]]:
    """Return ``(run, cleanup)`` for ``case``; everything built outside the timed region.

    Engine experiments first check their maps against the shipped engine on two images and
    put the largest difference in ``info``.
    """
    names = layer_names(case.layer_set) if case.layer_set != "-" else ()
    modules = [model.get_submodule(n) for n in names]
    nothing: Callable[[], None] = lambda: None  # noqa: E731

    if case.impl == "plain":

        def run() -> Any:
            with torch.inference_mode():
                return model(x)

        return run, nothing

    if case.impl == "plain_graph":
        from xai_checks.cam.graphs import captured_forward

        forward = captured_forward(model, x)

        def run() -> Any:
            return forward(x)

        return run, nothing

    if case.impl == "ours_fused_graph":
        from xai_checks.cam import CAM
        from xai_checks.cam.graphs import CapturedCAM

        captured = CapturedCAM(CAM(model, layers=list(names)))
        captured(x, targets=t)  # eager + capture, outside the timed region
        info["graph_stats"] = captured.stats()

        def run() -> Any:
            return captured(x, targets=t)

        return run, nothing

    if case.impl == "plain_cl":
        m_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)

        def run() -> Any:
            with torch.inference_mode():
                return m_cl(x_cl)

        return run, nothing

    if case.impl == "plain_bnfold":
        from benchmarks.engine_variants import fold_batchnorm

        m_bn = fold_batchnorm(model)

        def run() -> Any:
            with torch.inference_mode():
                return m_bn(x)

        return run, nothing

    if case.impl == "ours_fused_bnfold":
        from benchmarks.engine_variants import fold_batchnorm
        from xai_checks.cam import GradCAM

        cam = GradCAM(fold_batchnorm(model), layers=list(names))
        diff = max_map_difference(GradCAM(model, layers=list(names)), x[:2], t[:2], cam, x[:2])
        info["max_abs_map_diff_vs_shipped"] = diff
        return (lambda: cam(x, targets=t)), nothing

    if case.impl == "plain_fast":
        from benchmarks.engine_variants import fold_batchnorm

        m_fast = fold_batchnorm(model).to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)

        def run() -> Any:
            with torch.inference_mode():
                return m_fast(x_cl)

        return run, nothing

    if case.impl == "ours_fused_fast":
        from benchmarks.engine_variants import fold_batchnorm
        from xai_checks.cam import GradCAM

        m_fast = fold_batchnorm(model).to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        cam = GradCAM(m_fast, layers=list(names))
        info["max_abs_map_diff_vs_shipped"] = max_map_difference(
            GradCAM(model, layers=list(names)), x[:2], t[:2], cam, x_cl[:2]
        )
        return (lambda: cam(x_cl, targets=t)), nothing

    if case.impl == "plain_bf16":

        def run() -> Any:
            with torch.inference_mode(), torch.autocast(x.device.type, dtype=torch.bfloat16):
                return model(x)

        return run, nothing

    if case.impl in ("ours_fused", "ours_loop"):
        from xai_checks.cam import GradCAM

        cam = GradCAM(model, layers=list(names), fused=case.impl == "ours_fused")
        return (lambda: cam(x, targets=t)), nothing

    if case.impl == "ours_fused_bf16":
        from xai_checks.cam import GradCAM

        cam = GradCAM(model, layers=list(names), autocast=torch.bfloat16)
        info["max_abs_map_diff_vs_shipped"] = max_map_difference(
            GradCAM(model, layers=list(names)), x[:2], t[:2], cam, x[:2]
        )  # bf16: reported, not asserted
        return (lambda: cam(x, targets=t)), nothing

    if case.impl == "ours_fused_cl":
        from xai_checks.cam import CAM, GradCAM

        cam = CAM(model, layers=list(names), memory_format=torch.channels_last)
        diff = max_map_difference(GradCAM(model, layers=list(names)), x[:2], t[:2], cam, x[:2])
        # Other conv kernels, other rounding: reported, not asserted (see README).
        info["max_abs_map_diff_vs_shipped"] = diff
        return (lambda: cam(x, targets=t)), nothing

    if case.impl == "ours_analytic":
        from benchmarks.engine_variants import layer4_analytic
        from xai_checks.cam import GradCAM

        ref4 = GradCAM(model, layers=["layer4"])(x[:2], targets=t[:2])
        got4 = layer4_analytic(model, x[:2], t[:2])
        diff = float((got4["maps"] - ref4.maps["layer4"]).abs().max())
        assert diff < 1e-4, diff
        info["max_abs_map_diff_vs_shipped"] = diff
        return (lambda: layer4_analytic(model, x, t)), nothing

    if case.impl in ("engine_photos", "study_e2e"):
        return e2e_build(case, model)

    if case.impl == "captum":
        from captum.attr import LayerAttribution, LayerGradCam

        from xai_checks.metrics import minmax_normalise

        explainers = [LayerGradCam(model, m) for m in modules]

        def run() -> Any:
            out = []
            for e in explainers:
                a = e.attribute(x, target=t, relu_attributions=True)
                up = LayerAttribution.interpolate(a, SIZE, interpolate_mode="bilinear")
                out.append(minmax_normalise(up[:, 0].detach()))
            return out

        return run, nothing

    if case.impl == "gradcam":
        from pytorch_grad_cam import GradCAM as PyPIGradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cams = [PyPIGradCAM(model=model, target_layers=[m]) for m in modules]
        targets = [ClassifierOutputTarget(int(c)) for c in t.tolist()]

        def run() -> Any:
            return [cam(input_tensor=x, targets=targets) for cam in cams]

        def cleanup() -> None:
            for cam in cams:
                cam.activations_and_grads.release()
            model.zero_grad(set_to_none=True)

        return run, cleanup

    raise AssertionError(f"unknown implementation {case.impl!r}")


_PHOTOS: dict[str, Any] = {}


def e2e_photos() -> Any:
    """The N real photos of the end-to-end cases (opened once), or a skip that says why."""
    if "set" not in _PHOTOS:
        from xai_checks.data import open_photoset

        n = int(os.environ.get("XAI_BENCH_E2E_PHOTOS", "24"))
        source = os.environ.get("XAI_BENCH_PHOTOS", "imagenet-samples")
        try:
            _PHOTOS["set"] = open_photoset(source, limit=n, seed=0)
        except (FileNotFoundError, ValueError) as exc:
            _PHOTOS["set"] = f"no photos for the end-to-end cases ({source}): {exc}"
    if isinstance(_PHOTOS["set"], str):
        pytest.skip(_PHOTOS["set"])
    return _PHOTOS["set"]


def e2e_build(case: Case, model: nn.Module) -> tuple[Callable[[], Any], Callable[[], None]]:
    """Both end-to-end cases process the same N photos per round, at the case's batch size."""
    from xai_checks.cam import GradCAM
    from xai_checks.data import load_image
    from xai_checks.study import StudyConfig, run_study

    photos = e2e_photos()
    device = next(model.parameters()).device
    # On CUDA both sides run the GPU pipeline: the study decodes on the device and both replay
    # the engine from CUDA graphs, so the ratio is what decoding and the study's own work cost.
    gpu = device.type == "cuda"
    config = StudyConfig(
        phases=("ratio",), batch_size=case.batch, device_decode=gpu, cuda_graphs=gpu
    )
    if case.impl == "study_e2e":
        return (lambda: run_study(model, photos, controls={}, config=config)), lambda: None
    transform = config.preprocess.build("standard")
    samples = list(photos)
    batches = []
    for i in range(0, len(samples), case.batch):
        chunk = samples[i : i + case.batch]
        x = torch.stack([transform(load_image(s.path)) for s in chunk]).to(device)
        batches.append((x, torch.tensor([s.label for s in chunk], device=device)))
    cam: Any = GradCAM(model, layers=list(LAYERS))
    if gpu:
        from xai_checks.cam.graphs import CapturedCAM

        cam = CapturedCAM(cam)

    def run() -> Any:
        return [cam(x, targets=y) for x, y in batches]

    return run, lambda: None


def max_map_difference(ref_cam: Any, x_ref: Tensor, t: Tensor, cam: Any, x: Tensor) -> float:
    """Largest absolute difference between two engines' canonical maps (values in [0, 1])."""
    ref = ref_cam(x_ref, targets=t)
    got = cam(x, targets=t)
    return max(float((got.maps[n] - ref.maps[n]).abs().max()) for n in ref.layers)


# --------------------------------------------------------------------------- the benchmark


def test_throughput(
    benchmark: Any,
    case: Case,
    need_device: str,
    machine: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    device = need_device
    config = request.config
    model = resnet50_on(device)
    x, t = inputs(case.batch, device)
    info: dict[str, Any] = {}
    run, cleanup = build(case, model, x, t, monkeypatch, info)
    paired = bench_paired(config) and case.impl != "plain"
    plain_run = build(Case(device, case.batch, "-", "plain"), model, x, t, monkeypatch, {})[0]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def clock(fn: Callable[[], Any]) -> float:
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t0

    case_s: list[float] = []
    plain_s: list[float] = []

    def timed() -> None:
        case_s.append(clock(run))

    def setup() -> None:
        # Paired design: plain inference timed right before every round of the case, so that
        # "case vs plain" is measured under the same load, round by round.
        if paired:
            plain_s.append(clock(plain_run))

    benchmark.group = f"{device} batch {case.batch}"
    if not benchmark.disabled:
        warm_up(device, case.batch, model, x, t)
    load_before = _loadavg()
    try:
        if benchmark.disabled:
            benchmark.pedantic(timed, rounds=1, iterations=1)
            return
        # One warm-up round (not recorded), which also sizes the number of timed rounds.
        setup()
        warm = clock(run) + (plain_s.pop() if plain_s else 0.0)
        rounds = bench_rounds(config)
        if case.batch < 8:
            rounds *= 2  # cheap calls: more rounds for a steadier minimum
        budget = bench_case_budget(config)
        rounds = max(2, min(rounds, int(budget // max(warm, 1e-9))))
        benchmark.pedantic(timed, setup=setup, rounds=rounds, warmup_rounds=0, iterations=1)
    finally:
        cleanup()
    stats = benchmark.stats.stats
    extra = benchmark.extra_info
    images = len(e2e_photos()) if case.impl in ("engine_photos", "study_e2e") else case.batch
    extra.update(
        device=device,
        batch=case.batch,
        layer_set=case.layer_set,
        impl=case.impl,
        layers=list(layer_names(case.layer_set)) if case.layer_set != "-" else [],
        inputs=NOTE,
        loadavg_before=load_before,
        loadavg_after=_loadavg(),
        machine=machine,
        round_s=case_s,
        images_per_round=images,
        images_per_s_best=images / stats.min,
        images_per_s_median=images / stats.median,
        images_per_s_mean=images / stats.mean,
        **info,
    )
    if paired and len(plain_s) == len(case_s):
        extra["paired_plain_s"] = plain_s
        # Best plain call over best case round, both from the same minutes: robust to load
        # that changes between cases and to one slow round (a median of 2-3 rounds is not).
        # Images/s over images/s: an end-to-end round is N photos, a plain call one batch.
        extra["vs_plain_paired"] = (min(plain_s) / case.batch) / (min(case_s) / images)


_WARM: set[tuple[str, int]] = set()


def warm_up(device: str, batch: int, model: nn.Module, x: Tensor, t: Tensor) -> None:
    """Before the first case of each (device, batch): a few untimed plain and Grad-CAM calls.

    The first calls at a new shape pay for oneDNN primitive creation and for the allocator
    growing its heap (page faults: at batch 32, seconds); without this the first case timed
    at each batch size (plain inference) would look much slower than it is.
    """
    if (device, batch) in _WARM:
        return
    from xai_checks.cam import GradCAM

    cam = GradCAM(model, layers=list(LAYERS))
    for _ in range(2):
        with torch.inference_mode():
            model(x)
        cam(x, targets=t)
    if device == "cuda":
        torch.cuda.synchronize()
    _WARM.add((device, batch))


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None
