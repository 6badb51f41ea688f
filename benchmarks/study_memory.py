"""Peak memory of the study is flat in the number of photos: a benchmark gate, not a unit test.

Runs ``xai-checks study`` (pretrained model + untrained control, every phase) on a small and a
large sample of the ImageNet photos, each in its own process, and compares their peak RSS
(``ru_maxrss`` of the child). Passes when large / small <= the ratio target (1.5 by default).

    python benchmarks/study_memory.py --small 100 --large 1000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_of_study(limit: int, out: Path) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of one study run in a fresh process."""
    code = (
        "import resource, sys; from xai_checks.cli import main; "
        f"rc = main(['study', '--data', 'imagenet-samples', '--limit', '{limit}', "
        f"'--out', r'{out}', '--quiet']); "
        "print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"study --limit {limit} failed:\n{proc.stderr[-2000:]}")
    peak_kb = next(
        int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("PEAK_KB")
    )
    return peak_kb / 1024, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=1000)
    parser.add_argument("--target", type=float, default=1.5)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        small_rss, small_wall = peak_rss_of_study(args.small, Path(tmp) / "small")
        large_rss, large_wall = peak_rss_of_study(args.large, Path(tmp) / "large")
    ratio = large_rss / small_rss
    figures = {
        "small": {"photos": args.small, "peak_rss_mib": small_rss, "wall_s": small_wall},
        "large": {"photos": args.large, "peak_rss_mib": large_rss, "wall_s": large_wall},
        "ratio": ratio,
        "target": args.target,
        "passed": ratio <= args.target,
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    print(
        f"peak RSS {args.large} photos / {args.small} photos = {ratio:.2f} "
        f"(target <= {args.target}): {'PASS' if ratio <= args.target else 'FAIL'}"
    )
    return 0 if ratio <= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
