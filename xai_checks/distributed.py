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
import math
import os
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

__all__ = [
    "DistributedEnvError",
    "RankFailed",
    "Shard",
    "check_env",
    "distributed_from_env",
    "env_world_size",
]

T = TypeVar("T")
ENV_TIMEOUT = "XAI_CHECKS_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
#: a week: beyond that a hung collective is never noticed (and timedelta overflows near 1e14)
MAX_TIMEOUT_S = 7 * 24 * 3600.0


class RankFailed(RuntimeError):
    """Another rank (or this one) failed during a distributed phase."""


class DistributedEnvError(ValueError):
    """A distributed environment that is bad or half set (a usage error, exit 2)."""


#: what torchrun sets besides ``WORLD_SIZE``; without them the process group cannot form
_TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def check_env() -> None:
    """:class:`DistributedEnvError` naming the variable, for a bad ``XAI_CHECKS_DIST_TIMEOUT``
    or a ``WORLD_SIZE`` above 1 without the rest of what torchrun sets."""
    _timeout()
    raw = os.environ.get("WORLD_SIZE")
    if raw is None or raw.strip() == "":
        return
    try:
        world = int(raw)
    except ValueError:
        raise DistributedEnvError(f"WORLD_SIZE={raw!r} is not a whole number") from None
    if world < 1:
        raise DistributedEnvError(f"WORLD_SIZE={raw!r} must be >= 1")
    if world == 1:
        return
    missing = [name for name in _TORCHRUN_VARS if not os.environ.get(name)]
    if missing:
        raise DistributedEnvError(
            f"WORLD_SIZE={raw} is set but not {', '.join(missing)}: launch with torchrun (it "
            "sets them all), or unset WORLD_SIZE"
        )
    for name in ("RANK", "LOCAL_RANK"):
        value = os.environ[name]
        if not value.isdigit() or (name == "RANK" and int(value) >= world):
            raise DistributedEnvError(f"{name}={value!r} is not a rank of WORLD_SIZE={raw}")


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

    def guard(self, phase: str, work: Callable[[], T]) -> T:
        """Run ``work``, a phase whose only collective is its own last step, a
        :meth:`run` of the same ``phase``. If ``work`` raises before reaching that exchange,
        this rank joins it carrying the error, so every rank raises :class:`RankFailed`
        instead of the others waiting for a rank that will never come."""
        if not self.distributed:
            return work()
        try:
            return work()
        except RankFailed:
            raise  # the exchange was reached: every rank already knows
        except Exception as exc:
            error = exc

            def reraise() -> Any:
                raise error

            self.run(phase, reraise)
            raise  # unreachable: run raises RankFailed for this rank's own error


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when not launched by torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def _timeout() -> _dt.timedelta:
    raw = os.environ.get(ENV_TIMEOUT)
    if not raw:
        return _dt.timedelta(seconds=DEFAULT_TIMEOUT_S)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_TIMEOUT_S):
        raise DistributedEnvError(
            f"{ENV_TIMEOUT}={raw!r}: give the collective timeout in seconds, a number in "
            f"(0, {MAX_TIMEOUT_S:.0f}]"
        )
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
    if world > 1:
        check_env()
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
