"""The overlap logic of ``xai_checks.data.prefetch`` with its CPU stand-in (a background thread,
no stream): batch k + 1 is staged while batch k is used, never further ahead, in order.

No timing: overlap is shown by events that a serial loader could never set in time (the
consumer waits for batch k + 1's staging to start while it still holds batch k; a serial loader
would deadlock, so the wait has a timeout and the test fails instead).
"""

from __future__ import annotations

import threading

import pytest
import torch

from xai_checks.data.prefetch import Prefetcher, host_copy

WAIT_S = 30.0  # a deadlock guard, not a speed bound: the event is set within microseconds


def test_batches_come_staged_and_in_order():
    got = list(Prefetcher(range(5), lambda k: (k, torch.full((2,), float(k)))))
    assert [k for k, _ in got] == [0, 1, 2, 3, 4]
    assert all(torch.equal(t, torch.full((2,), float(k))) for k, t in got)


def test_empty_and_single_batch():
    assert list(Prefetcher([], lambda k: k)) == []
    assert list(Prefetcher([7], lambda k: k * 2)) == [14]


def test_the_next_batch_is_staged_while_this_one_is_used_and_no_further():
    started = {k: threading.Event() for k in range(4)}
    finished = {k: threading.Event() for k in range(4)}
    log: list[str] = []

    def stage(k: int) -> int:
        started[k].set()
        log.append(f"stage {k}")
        finished[k].set()
        return k

    for k in Prefetcher(range(4), stage):
        log.append(f"use {k}")
        if k + 1 < 4:
            # still holding batch k: batch k + 1 is being staged (a serial loader never would)
            assert started[k + 1].wait(WAIT_S), f"batch {k + 1} was not staged during {k}"
            assert finished[k + 1].wait(WAIT_S)
        if k + 2 < 4:
            assert not started[k + 2].is_set(), "staged two batches ahead"
    assert log.index("stage 1") < log.index("use 1")
    assert [e for e in log if e.startswith("use")] == ["use 0", "use 1", "use 2", "use 3"]


def test_a_staging_error_surfaces_at_its_batch():
    def stage(k: int) -> int:
        if k == 2:
            raise ValueError("bad batch 2")
        return k

    seen = []
    with pytest.raises(ValueError, match="bad batch 2"):
        for k in Prefetcher(range(4), stage):
            seen.append(k)
    assert seen == [0, 1]


def test_host_copy_keeps_structure_and_host_tensors():
    a, b = torch.arange(3), torch.ones(2, 2)
    out = host_copy({"x": [a, (b, 5)], "n": "name"})
    assert out["x"][0] is a and out["x"][1][0] is b and out["x"][1][1] == 5 and out["n"] == "name"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_prefetch_stages_on_a_side_stream_and_hands_over_safely():
    main = torch.cuda.current_stream()
    streams = []

    def stage(k: int) -> torch.Tensor:
        streams.append(torch.cuda.current_stream())
        return torch.full((1024, 1024), float(k), device="cuda") * 2

    total = 0.0
    for k, t in enumerate(Prefetcher(range(6), stage, device="cuda")):
        total += float((t / 2 - k).abs().max())
    assert total == 0.0
    assert all(s != main for s in streams)
    out = host_copy({"a": torch.arange(4, device="cuda")})
    assert out["a"].device.type == "cpu" and out["a"].tolist() == [0, 1, 2, 3]
