"""The fused CAM pass captured once per input shape and replayed (CUDA graphs).

At the small batches a study runs, a CUDA call of the fused engine is bound by the host: the
forward and the activation-only backward launch a few hundred small kernels, each paying
Python, dispatcher and launch overhead. A CUDA graph records those launches once for a fixed
input shape and replays them with one call, so the host cost no longer grows with the kernel
count. Replay runs the very kernels eager mode ran (same shapes, same cuDNN algorithms), so the
maps equal the eager engine's up to the algorithms cuDNN picks at capture.

:class:`CapturedCAM` wraps a :class:`~xai_checks.cam.CAM` and keeps its call and result. It
falls back to the wrapped engine's eager call, and counts why, wherever capture is not
possible: not on CUDA, the Captum backend or the per-layer loop, more input shapes than
``max_shapes`` (a study has two: its full batches and its last one), or a capture that raised
(a model that syncs the host in its forward, e.g. ``.item()``).

``runner="static"`` is the CPU stand-in: the same fixed input buffers, the same step and the
same copies out, but each replay re-runs the step eagerly. It exercises everything but the
capture itself, which only a GPU can.

:func:`captured_forward` is plain inference captured the same way, so that a benchmark's
"engine / plain inference" ratio compares two replayed graphs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch
from torch import Tensor, nn

from xai_checks._util import check_finite, model_device, model_name
from xai_checks.cam.core import CAM, CAMResult, Targets
from xai_checks.cam.native import native_raw_maps
from xai_checks.cam.pipeline import canonical, check_targets

__all__ = ["CapturedCAM", "Runner", "captured_forward"]

Runner = Literal["auto", "cuda-graph", "static"]
T = TypeVar("T")

#: fallback reasons, as counted in :attr:`CapturedCAM.fallbacks`
NOT_CUDA = "not on a CUDA device"
NOT_FUSED = "backend or fused=False cannot be captured"
SHAPE_LIMIT = "more input shapes than max_shapes"
CAPTURE_FAILED = "capture raised"


def _capture_cuda(step: Callable[[], T], *, warmup: int, pool: Any) -> Callable[[], T]:
    """Warm ``step`` up on a side stream (autograd and cuDNN allocate lazily, which a capture
    must not do), capture one call, and return a replay that gives the captured outputs."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        out = step()

    def replay() -> T:
        graph.replay()
        return out

    return replay


def _capture_static(step: Callable[[], T], *, warmup: int, pool: Any) -> Callable[[], T]:
    """The CPU stand-in: each replay runs ``step`` again on the same fixed buffers."""
    del warmup, pool
    return step


def _resolve_runner(runner: Runner, device: torch.device) -> Runner | None:
    """The runner to use on ``device``; None where ``"auto"`` has none (not CUDA)."""
    if runner == "auto":
        return "cuda-graph" if device.type == "cuda" else None
    if runner == "cuda-graph" and device.type != "cuda":
        return None
    return runner


def _capture(runner: Runner, step: Callable[[], T], *, warmup: int, pool: Any) -> Callable[[], T]:
    if runner == "cuda-graph":
        return _capture_cuda(step, warmup=warmup, pool=pool)
    return _capture_static(step, warmup=warmup, pool=pool)


@dataclass
class _Outputs:
    raw: dict[str, Tensor]
    maps: dict[str, Tensor]
    logits: Tensor
    targets: Tensor
    magnitude: dict[str, Tensor]
    finite: Tensor  # (2,): the input is finite; the logits and every raw map are


@dataclass
class _Graph:
    x: Tensor  # the fixed input buffer
    t: Tensor | None  # the fixed targets buffer; None: the predicted class
    replay: Callable[[], _Outputs]
    fingerprint: tuple[object, ...]


def _fingerprint(model: nn.Module) -> tuple[object, ...]:
    """What a captured graph reads by address: parameters and buffers (moved or replaced tensors
    change it), and the precision flags the kernels were picked under."""
    return (
        tuple(t.data_ptr() for t in model.parameters()),
        tuple(t.data_ptr() for t in model.buffers()),
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
    )


class CapturedCAM:
    """``cam``'s fused pass captured per input shape and replayed; the same call and result.

    Args:
        cam: a native, fused :class:`~xai_checks.cam.CAM` (any method, layers, memory format).
        runner: ``"auto"`` (CUDA graphs on a CUDA model, else the eager engine),
            ``"cuda-graph"``, or ``"static"`` (the CPU stand-in, see the module docstring).
        max_shapes: input shapes (batch size, channels, height, width, dtype, targets given or
            not) captured at most; calls at further shapes run eagerly.
        warmup: eager calls on a side stream before a capture.

    The first call at a new shape runs the eager engine (which checks the input, the layers and
    the targets and settles the engine's hook mode) and then captures; later calls at that shape
    replay. Results are copies, so a later call never overwrites an earlier result. Host syncs
    per replayed call: one (the finiteness of input, logits and maps, read together).
    """

    def __init__(
        self,
        cam: CAM,
        *,
        runner: Runner = "auto",
        max_shapes: int = 2,
        warmup: int = 3,
    ) -> None:
        if runner not in ("auto", "cuda-graph", "static"):
            raise ValueError(f"unknown runner {runner!r}: use 'auto', 'cuda-graph' or 'static'")
        if max_shapes < 1:
            raise ValueError(f"max_shapes must be >= 1; got {max_shapes}")
        self.cam = cam
        self.runner: Runner = runner
        self.max_shapes = max_shapes
        self.warmup = warmup
        self._graphs: dict[tuple[object, ...], _Graph] = {}
        self._refused: dict[tuple[object, ...], str] = {}
        self._pool: Any = None
        #: eager calls by reason (the first call at each shape is eager too: counted as "first")
        self.fallbacks: Counter[str] = Counter()
        #: calls answered by a replay
        self.replays = 0

    @property
    def layer_names(self) -> tuple[str, ...]:
        return self.cam.layer_names

    @property
    def layers(self) -> dict[str, nn.Module]:
        return self.cam.layers

    def stats(self) -> dict[str, Any]:
        """Replays, eager calls by reason, and the shapes captured: for a study's provenance."""
        return {
            "runner": self.runner,
            "replays": self.replays,
            "eager": dict(self.fallbacks),
            "shapes_captured": len(self._graphs),
            "refused": sorted(set(self._refused.values())),
        }

    def _reason(self, x: Tensor) -> str | None:
        cam = self.cam
        if cam.backend != "native" or not cam.fused:
            return NOT_FUSED
        if _resolve_runner(self.runner, model_device(cam.model)) is None:
            return NOT_CUDA
        if x.device != model_device(cam.model) and x.device.type != "cpu":
            return NOT_CUDA  # input on another accelerator: the eager engine moves it
        return None

    def __call__(self, x: Tensor, *, targets: Targets = None) -> CAMResult:
        reason = self._reason(x) if isinstance(x, Tensor) else NOT_FUSED
        if reason is not None:
            self.fallbacks[reason] += 1
            return self.cam(x, targets=targets)
        key = (tuple(x.shape), x.dtype, targets is None)
        graph = self._graphs.get(key)
        model, _ = self.cam._engine_model()
        if graph is not None and graph.fingerprint != _fingerprint(model):
            self._graphs.clear()  # the weights moved or the precision changed: capture again
            graph = None
        if graph is None:
            result = self.cam(x, targets=targets)  # checks everything, settles the hook mode
            if key in self._refused:
                self.fallbacks[self._refused[key]] += 1
            elif len(self._graphs) >= self.max_shapes:
                self._refused[key] = SHAPE_LIMIT
                self.fallbacks[SHAPE_LIMIT] += 1
            else:
                self.fallbacks["first call at a shape"] += 1
                self._try_capture(key, x, result, predicted=targets is None)
            return result
        return self._replay(graph, x, targets)

    def _try_capture(
        self, key: tuple[object, ...], x: Tensor, first: CAMResult, *, predicted: bool
    ) -> None:
        runner = _resolve_runner(self.runner, model_device(self.cam.model))
        assert runner is not None
        try:
            self._graphs[key] = self._build(runner, x, first, predicted=predicted)
        except Exception as exc:  # a model the graph cannot hold: eager from now on
            self._refused[key] = f"{CAPTURE_FAILED}: {type(exc).__name__}: {exc}"
            if runner == "cuda-graph":
                torch.cuda.synchronize()

    def _build(self, runner: Runner, x: Tensor, first: CAMResult, *, predicted: bool) -> _Graph:
        cam = self.cam
        model, layers = cam._engine_model()
        device = model_device(cam.model)
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), x.dtype)
        static_x = torch.empty(
            x.shape, dtype=dtype, device=device, memory_format=cam.memory_format
        ).copy_(x)
        static_t = None if predicted else first.targets.to(device).clone()
        classes = int(first.logits.shape[1])
        size = (int(x.shape[2]), int(x.shape[3]))
        clone = cam._clone

        def step() -> _Outputs:
            raw, logits, t, scales = native_raw_maps(
                model,
                layers,
                static_x,
                static_t,
                method=cam.method,
                autocast=cam.autocast,
                clone=clone,
                checked_classes=classes,
            )
            maps = {
                k: canonical(v.contiguous(), size, eps=cam.eps, scale=scales[k])
                for k, v in raw.items()
            }
            outputs_finite = torch.stack(
                [torch.isfinite(logits).all(), *(torch.isfinite(v).all() for v in raw.values())]
            ).all()
            finite = torch.stack([torch.isfinite(static_x).all(), outputs_finite])
            return _Outputs(raw, maps, logits, t, scales, finite)

        pool = None
        if runner == "cuda-graph":
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            pool = self._pool
        replay = _capture(runner, step, warmup=self.warmup, pool=pool)
        return _Graph(static_x, static_t, replay, _fingerprint(model))

    def _replay(self, graph: _Graph, x: Tensor, targets: Targets) -> CAMResult:
        cam = self.cam
        cam._check_input(x)
        t = cam._targets(targets, x.shape[0], graph.x.device)
        if t is not None:
            assert graph.t is not None
            if isinstance(targets, Tensor) and targets.device.type != "cpu":
                check_targets(t, int(cam._classes or 0))  # given on the device: one sync
            graph.t.copy_(t, non_blocking=True)
        graph.x.copy_(x, non_blocking=True)
        out = graph.replay()
        finite = out.finite.tolist()  # the one host sync of a replayed call
        if not finite[0]:
            check_finite(x.detach(), what="the input batch")
        if not finite[1]:
            who = model_name(cam.model)
            check_finite(out.logits, what=f"the logits of {who}")
            for layer, values in out.raw.items():
                check_finite(values, what=f"the {layer} {cam.method.title} maps of {who}")
        self.replays += 1
        return CAMResult(
            cam.layer_names,
            {k: v.clone() for k, v in out.raw.items()},
            {k: v.clone() for k, v in out.maps.items()},
            out.targets.clone(),
            out.logits.clone(),
            cam.backend,
            {"replayed": True},
            method=cam.method.name,
            magnitude={k: v.clone() for k, v in out.magnitude.items()},
        )


def captured_forward(
    model: nn.Module, example: Tensor, *, runner: Runner = "auto", warmup: int = 3
) -> Callable[[Tensor], Tensor]:
    """Plain inference (``torch.inference_mode``) of ``model`` at ``example``'s shape, captured
    like :class:`CapturedCAM` captures the engine; the returned call copies its input in,
    replays, and returns the logits buffer (overwritten by the next call). Eager inference where
    ``runner`` has no capture on the model's device."""
    device = model_device(model)
    resolved = _resolve_runner(runner, device)
    if resolved is None:

        def eager(x: Tensor) -> Tensor:
            with torch.inference_mode():
                return model(x)

        return eager
    static_x = example.detach().to(device, copy=True)

    def step() -> Tensor:
        with torch.inference_mode():
            return model(static_x)

    pool = torch.cuda.graph_pool_handle() if resolved == "cuda-graph" else None
    replay = _capture(resolved, step, warmup=warmup, pool=pool)

    def call(x: Tensor) -> Tensor:
        static_x.copy_(x, non_blocking=True)
        return replay()

    return call
