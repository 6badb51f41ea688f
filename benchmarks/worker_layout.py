"""One process with N intra-op threads against N one-thread workers (``--workers``), in one run.

Runs the same CLI study twice on the same photos, alternating the order over ``--repeats``,
and prints each layout's wall time (the command's, start-up included), the ratio, and the
peak resident memory of the largest process (one worker, or the one process).

    python benchmarks/worker_layout.py --data ../shared/data/imagenet-samples --limit 48

docs/distributed.md quotes the figures; the ratio is what to compare between machines.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _measure(data: str, limit: int, workers: int, threads: int, out: Path) -> None:
    """In a process of its own: run the study, print its wall time and the peak resident memory
    of the largest process it started (``RUSAGE_CHILDREN`` counts only this one's)."""
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "xai_checks",
            "study",
            "--data",
            data,
            "--limit",
            str(limit),
            "--workers",
            str(workers),
            "--quiet",
            "--out",
            str(out),
            "--overwrite",
        ],
        env={**os.environ, "OMP_NUM_THREADS": str(threads)},
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - start
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    print(json.dumps({"seconds": seconds, "peak_gib": peak_gib}))


def _run(data: str, limit: int, workers: int, threads: int, out: Path) -> tuple[float, float]:
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--measure",
            data,
            str(limit),
            str(workers),
            str(threads),
            str(out),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    row = json.loads(done.stdout.strip().splitlines()[-1])
    return float(row["seconds"]), float(row["peak_gib"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data")
    parser.add_argument("--measure", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=48)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    if args.measure:
        data, limit, workers, threads, out = args.measure
        _measure(data, int(limit), int(workers), int(threads), Path(out))
        return 0
    if not args.data:
        parser.error("--data is required")
    times: dict[str, list[float]] = {"threads": [], "workers": []}
    peak: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        for i in range(args.repeats):
            order = ["threads", "workers"] if i % 2 == 0 else ["workers", "threads"]
            for layout in order:
                workers, threads = (1, args.cores) if layout == "threads" else (args.cores, 1)
                seconds, gib = _run(args.data, args.limit, workers, threads, Path(folder) / layout)
                times[layout].append(seconds)
                peak[layout] = max(peak.get(layout, 0.0), gib)
    t, w = statistics.median(times["threads"]), statistics.median(times["workers"])
    print(f"{args.limit} photos, {args.cores} cores, median of {args.repeats}")
    print(f"1 process x {args.cores} threads: {t:.1f} s, peak {peak['threads']:.2f} GiB")
    print(f"{args.cores} workers x 1 thread: {w:.1f} s, peak {peak['workers']:.2f} GiB per worker")
    print(f"workers / threads time ratio: {w / t:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
