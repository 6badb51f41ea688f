"""A CPU study spread over one-thread worker processes on this machine (``--workers``).

Why one thread each: oneDNN picks its convolution blocking (and PyTorch its convolution
algorithm) by the number of intra-op threads, so the same photo run with 1 and with 2 threads
gives activations that differ in the last bits, and a map value a hair from a threshold lands on
either side of it. Ranks of one thread compute every photo the one-thread way, whatever the
machine's core count, at about the speed of one process with as many threads (its threads
synchronise at every operator; the ranks only at the end of each phase; docs/distributed.md has
the measured ratio).

The workers are the ranks :mod:`xai_checks.distributed` already shards a study over (the same
environment ``torchrun`` sets, on the loopback interface); this module only starts them, waits,
and turns their exit codes into one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["auto_workers", "launch_workers"]

#: seconds the other workers get to exit on their own once one has failed (a phase that raised
#: reaches every rank through the error exchange at once); after that they are stopped, since a
#: worker that died outright leaves the rest waiting in a collective
GRACE_S = 20.0


def auto_workers(cap: int) -> int:
    """One worker per intra-op thread torch would use here (``OMP_NUM_THREADS`` or the physical
    cores), at most ``cap``."""
    import torch

    return max(1, min(int(torch.get_num_threads()), cap))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(procs: Sequence[subprocess.Popen[bytes]], sig: int) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # exited between poll and signal
                p.send_signal(sig)


def _wait(procs: Sequence[subprocess.Popen[bytes]]) -> list[int]:
    """Every worker's exit code. Once one has failed, the rest get :data:`GRACE_S` to stop on
    their own before they are stopped."""
    failed_at: float | None = None
    while True:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes):
            return [int(c) for c in codes if c is not None]
        if failed_at is None and any(c not in (None, 0) for c in codes):
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > GRACE_S:
            _stop(procs, signal.SIGTERM)
            failed_at = None  # signalled once; now wait for them
            while any(p.poll() is None for p in procs):
                time.sleep(0.1)
        time.sleep(0.1)


def _exit_code(codes: Sequence[int]) -> int:
    """Rank 0's code when it failed by itself; otherwise the first failing rank's (1 for a
    rank killed by a signal)."""
    if codes[0] > 0:
        return codes[0]
    failing = [c for c in codes if c != 0]
    if not failing:
        return 0
    return failing[0] if failing[0] > 0 else 1


def _tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def launch_workers(argv: Sequence[str], workers: int) -> int:
    """Run ``python -m xai_checks ARGV`` as ``workers`` one-thread ranks; return one exit code.

    Rank 0 speaks for the run (its output is this command's; it writes the report). The other
    ranks' output is kept in a temporary file and shown when such a rank failed, unless it is
    the usage error (exit 2) that rank 0 has already shown. The exit code:
    :func:`_exit_code`.
    Ctrl-C reaches every worker (same process group); a SIGINT sent to this process alone is
    passed on to them; either way the run exits 130 once they have stopped.
    """
    port = _free_port()
    base = {
        **os.environ,
        "WORLD_SIZE": str(workers),
        "LOCAL_WORLD_SIZE": str(workers),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "xai_checks", *argv]
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="xai-checks-workers-") as folder:
        logs = [Path(folder) / f"rank{r}.log" for r in range(workers)]
        interrupted = False
        try:
            for rank in range(workers):
                env = {**base, "RANK": str(rank), "LOCAL_RANK": str(rank)}
                if rank == 0:
                    procs.append(subprocess.Popen(command, env=env))
                else:
                    with logs[rank].open("wb") as log:
                        procs.append(
                            subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
                        )
            codes = _wait(procs)
        except KeyboardInterrupt:
            interrupted = True
            time.sleep(0.5)  # a terminal's Ctrl-C reached the workers too: let them stop first
            _stop(procs, signal.SIGINT)
            codes = _wait(procs)
        finally:
            _stop(procs, signal.SIGTERM)  # only if this process itself is failing
            for p in procs:
                p.wait()
        if interrupted:
            return 130
        for rank, code in enumerate(codes[1:], start=1):
            if code != 0 and not (code == 2 and codes[0] == 2):  # exit 2: rank 0 said it too
                print(
                    f"xai-checks: worker {rank} of {workers} failed (exit {code}):\n"
                    f"{_tail(logs[rank])}",
                    file=sys.stderr,
                )
        return _exit_code(codes)
