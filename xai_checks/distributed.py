"""One study over several processes with ``torch.distributed`` (launched by ``torchrun``).

Each rank takes a deterministic, disjoint shard of the work (whole batches of photos, GridPG
mosaic batches, sanity photos): item ``i`` belongs to rank ``i % world``. Per-photo results are
exchanged with ``all_gather_object`` after each phase, so every rank ends with the same
:class:`~xai_checks.study.StudyResult`; only rank 0 writes files.

A rank whose phase raises still joins the exchange, carrying its error: every rank then raises
:class:`RankFailed` naming the rank and its error, instead of waiting on a collective that
would never complete. A rank that dies outright is caught by torchrun (it stops the others)
and, failing that, by the collective timeout (``XAI_CHECKS_DIST_TIMEOUT``, seconds).

Backends: NCCL when the study runs on CUDA, gloo on the CPU.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

__all__ = ["RankFailed", "Shard", "distributed_from_env", "env_world_size"]

T = TypeVar("T")
ENV_TIMEOUT = "XAI_CHECKS_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0


class RankFailed(RuntimeError):
    """Another rank (or this one) failed during a distributed phase."""


@dataclass(frozen=True)
class Shard:
    """This process's place in the study: ``rank`` of ``world``. ``Shard()`` is one process."""

    rank: int = 0
    world: int = 1

    def __post_init__(self) -> None:
        if self.world < 1 or not 0 <= self.rank < self.world:
            raise ValueError(f"bad shard: rank {self.rank} of {self.world}")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def mine(self, index: int) -> bool:
        """Whether work item ``index`` belongs to this rank (round robin)."""
        return index % self.world == self.rank

    def run(self, phase: str, work: Callable[[], T]) -> list[T]:
        """Run ``work`` on every rank and return every rank's result, in rank order.

        If any rank raised, every rank raises :class:`RankFailed` with that rank's error (the
        failing rank chains its own exception).
        """
        if not self.distributed:
            return [work()]
        import torch.distributed as dist

        error: BaseException | None = None
        try:
            payload: tuple[bool, Any] = (True, work())
        except Exception as exc:  # reported to every rank below
            error = exc
            payload = (False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, payload)
        failed = [(r, p[1]) for r, p in enumerate(gathered) if not p[0]]
        if failed:
            rank, text = failed[0]
            message = f"study phase {phase!r} failed on rank {rank} of {self.world}: {text}"
            if error is not None:
                raise RankFailed(message) from error
            raise RankFailed(message)
        return [p[1] for p in gathered]


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when not launched by torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def _timeout() -> _dt.timedelta:
    raw = os.environ.get(ENV_TIMEOUT)
    seconds = float(raw) if raw else DEFAULT_TIMEOUT_S
    return _dt.timedelta(seconds=seconds)


@contextlib.contextmanager
def distributed_from_env(
    device: torch.device | str = "cpu",
) -> Iterator[tuple[Shard, torch.device]]:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ...) for the body.

    Yields ``(shard, device)``: on CUDA each rank takes ``cuda:LOCAL_RANK``. Without torchrun
    (``WORLD_SIZE`` unset or 1) it yields ``Shard()`` and ``device`` unchanged, touching
    nothing. The group is destroyed on exit, error or not.
    """
    device = torch.device(device)
    world = env_world_size()
    if world <= 1:
        yield Shard(), device
        return
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    owned = not dist.is_initialized()
    if owned:
        if backend == "nccl":
            dist.init_process_group(backend=backend, timeout=_timeout(), device_id=device)
        else:
            dist.init_process_group(backend=backend, timeout=_timeout())
    try:
        yield Shard(rank=dist.get_rank(), world=dist.get_world_size()), device
    finally:
        if owned and dist.is_initialized():
            dist.destroy_process_group()


def is_main_process() -> bool:
    """False on torchrun ranks other than 0 (they compute their shard and write nothing)."""
    try:
        return int(os.environ.get("RANK", "0")) == 0
    except ValueError:
        return True


class TorchrunPytestPlugin:
    """Under ``torchrun ... -m pytest``: every rank joins the process group for the session, so
    the study the plugin runs is sharded (``run_study`` uses the initialised group); the plugin
    writes its files on rank 0 only (:func:`is_main_process`)."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._context: Any = None

    def pytest_sessionstart(self, session: Any) -> None:
        if env_world_size() > 1 and self._context is None:
            self._context = distributed_from_env(self.device)
            self._context.__enter__()

    def pytest_unconfigure(self, config: Any) -> None:
        if self._context is not None:
            context, self._context = self._context, None
            context.__exit__(None, None, None)
