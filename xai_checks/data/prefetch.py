"""Overlap: the next batch is read and prepared while the current one is explained.

:class:`Prefetcher` wraps an iterable of raw batches (a ``DataLoader`` whose workers read the
files) and a ``stage`` function (decode on the device, or copy to it). Batch ``k + 1`` is
staged on a background thread, and on CUDA on a side stream, from the moment batch ``k`` is
handed out, so decoding overlaps the engine's work on ``k``; at most two batches are staged or
in use at once, so memory does not grow with the number of photos.

On CUDA the consumer's stream waits for the staging stream's event before it touches a batch,
and every staged tensor is marked as used by the consumer's stream (``record_stream``), so the
allocator never hands its memory out while the engine still reads it. Without CUDA (the CPU
stand-in) the events are not needed: the thread's result is complete when the future is.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

import torch
from torch import Tensor

__all__ = ["Prefetcher", "host_copy"]

R = TypeVar("R")
S = TypeVar("S")


def _tensors(tree: Any) -> Iterator[Tensor]:
    if isinstance(tree, Tensor):
        yield tree
    elif isinstance(tree, dict):
        for v in tree.values():
            yield from _tensors(v)
    elif isinstance(tree, list | tuple):
        for v in tree:
            yield from _tensors(v)


class Prefetcher(Generic[R, S]):
    """Iterate ``stage(raw)`` over ``batches``, staging the next batch while this one is used.

    ``device``: where ``stage`` puts tensors; on CUDA staging runs on a side stream.
    """

    def __init__(
        self,
        batches: Iterable[R],
        stage: Callable[[R], S],
        *,
        device: torch.device | str = "cpu",
    ) -> None:
        self.batches = batches
        self.stage = stage
        self.device = torch.device(device)
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    def _staged(self, raw: R) -> tuple[S, Any]:
        if self._stream is None:
            return self.stage(raw), None
        with torch.cuda.stream(self._stream):
            out = self.stage(raw)
            event = torch.cuda.Event()
            event.record(self._stream)
        return out, event

    def _hand_over(self, staged: tuple[S, Any]) -> S:
        out, event = staged
        if event is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(event)
            for tensor in _tensors(out):
                if tensor.device.type == "cuda":
                    tensor.record_stream(current)
        return out

    def __iter__(self) -> Iterator[S]:
        raw_batches = iter(self.batches)
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="xai-prefetch") as pool:

            def submit() -> concurrent.futures.Future[tuple[S, Any]] | None:
                try:
                    raw = next(raw_batches)
                except StopIteration:
                    return None
                return pool.submit(self._staged, raw)

            pending = submit()
            while pending is not None:
                current = pending.result()
                pending = submit()  # batch k + 1 is staged while batch k is used
                yield self._hand_over(current)


def host_copy(tree: Any) -> Any:
    """``tree`` (tensors in dicts, lists, tuples) with every tensor on the host, from one sync:
    device tensors are copied without blocking into pinned memory, then the stream is waited
    on once (``.cpu()`` per tensor would wait once per tensor)."""
    devices = {t.device for t in _tensors(tree) if t.device.type == "cuda"}

    def copy(node: Any) -> Any:
        if isinstance(node, Tensor):
            if node.device.type != "cuda":
                return node
            host = torch.empty(node.shape, dtype=node.dtype, pin_memory=True)
            return host.copy_(node, non_blocking=True)
        if isinstance(node, dict):
            return {k: copy(v) for k, v in node.items()}
        if isinstance(node, list):
            return [copy(v) for v in node]
        if isinstance(node, tuple):
            return tuple(copy(v) for v in node)
        return node

    out = copy(tree)
    for device in devices:
        torch.cuda.current_stream(device).synchronize()
    return out
