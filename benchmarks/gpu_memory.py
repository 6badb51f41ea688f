"""Peak GPU memory of the fused engine per batch size, and the largest batch that fits.

    python benchmarks/gpu_memory.py [--weights random] [--max-batch 1024]

For batch sizes 8, 16, 32, ... (doubling) it runs the fused four-layer engine (eager and, with
``--graphs``, replayed from a CUDA graph) on random inputs and prints the peak of
``torch.cuda.max_memory_allocated`` and images/s; the first batch size that runs out of memory
ends the search, and the largest that fit is printed. CUDA only (exit 2 without a GPU).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="random")
    parser.add_argument("--max-batch", type=int, default=1024)
    parser.add_argument("--graphs", action="store_true", help="also the CUDA-graph engine")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    from xai_checks.cam import CAM, DEFAULT_LAYERS
    from xai_checks.cam.graphs import CapturedCAM
    from xai_checks.models import load_resnet50

    model = load_resnet50(args.weights, device="cuda")
    total = torch.cuda.get_device_properties(0).total_memory
    print(f"{torch.cuda.get_device_name(0)}: {total / 2**30:.1f} GiB; ResNet-50, 4 layers fused")
    print("| batch | engine | peak GiB | images/s |")
    print("|---|---|---|---|")
    fits = 0
    batch = 8
    while batch <= args.max_batch:
        engines = {"eager": CAM(model, layers=list(DEFAULT_LAYERS))}
        if args.graphs:
            engines["graph"] = CapturedCAM(engines["eager"])  # type: ignore[assignment]
        try:
            for name, engine in engines.items():
                x = torch.randn(batch, 3, 224, 224, device="cuda")
                t = torch.randint(0, 1000, (batch,))
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                engine(x, targets=t)
                engine(x, targets=t)
                torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(3):
                    engine(x, targets=t)
                torch.cuda.synchronize()
                rate = 3 * batch / (time.perf_counter() - start)
                peak = torch.cuda.max_memory_allocated() / 2**30
                print(f"| {batch} | {name} | {peak:.2f} | {rate:.0f} |", flush=True)
                del x
        except torch.cuda.OutOfMemoryError:
            print(f"| {batch} | - | out of memory | - |")
            break
        fits = batch
        del engines
        batch *= 2
    print(f"largest batch that fits: {fits} (of those tried, doubling from 8)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
