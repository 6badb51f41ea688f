#!/usr/bin/env bash
# The GPU checks, as one short prepared script for a lent accelerator machine (this project's
# `device` tool; see benchmarks/README.md, "GPU check").
#
# That machine has Python 3.12 with torch 2.11 / torchvision 0.26 preinstalled and NO network:
# nothing can be downloaded there, so
#   * the project is installed with `pip install --no-deps -e .` (its torch pin is not honoured:
#     the machine's torch is used and recorded);
#   * captum, grad-cam and the pure-Python packages the machine lacks come from wheels carried
#     in .whl/, fetched HERE beforehand with `bash scripts/device_check.sh --fetch-wheels`;
#   * the pretrained weights (a 91 MB npm tarball) are not carried: tests marked `slow` (real
#     weights, real photos) are deselected, and the throughput benchmark runs on seeded random
#     weights (XAI_BENCH_WEIGHTS=random; throughput does not depend on the weights' values).
#
# Run there:  bash scripts/device_check.sh          (device tool: carry [".whl"], timeout ~540 s)
# Writes at most 8 files under $OUT (the tool brings back 8): machine.txt (GPU, versions, TF32
# and precision settings), install.log, tests.log, bench-cpu.json, bench-cuda.json,
# bench-table.md, study.log.
set -uo pipefail

WHEELS=(
  "captum==0.9.0"
  "ttach==0.0.3"
  "jsonschema==4.26.0"
  "jsonschema-specifications==2025.9.1"
  "referencing==0.37.0"
  "rpds-py==2026.9.1"
  "pooch==1.9.0"
  "platformdirs==4.14.8"
  "torchcam==0.5.0"
)
SDIST_WHEELS=("grad-cam==1.5.7")  # published as an sdist only: built into a wheel here

if [ "${1:-}" = "--fetch-wheels" ]; then
  # HERE, with network, in the repository root: fill .whl/ (git-ignored) for the device.
  exclude="$(git rev-parse --git-common-dir)/info/exclude"  # works in a worktree too
  grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
  mkdir -p .whl
  PIP="${PIP:-python3 -m pip}"
  for spec in "${WHEELS[@]}"; do
    $PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d .whl "$spec" || exit 1
  done
  for spec in "${SDIST_WHEELS[@]}"; do
    $PIP wheel -q --no-deps --no-build-isolation -w .whl "$spec" || exit 1
  done
  ls -l .whl
  exit 0
fi

OUT="${OUT:-$PWD/device-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 XAI_CHECKS_CACHE=/tmp/xai-cache XAI_BENCH_WEIGHTS=random
step() { echo "== $* ($(date -u +%T))"; }

step "machine"
{
  nvidia-smi || echo "no nvidia-smi"
  "$PY" - <<'PY'
import platform, torch, torchvision
print("python", platform.python_version(), "| torch", torch.__version__,
      "| torchvision", torchvision.__version__, "| CUDA", torch.version.cuda,
      "| cuDNN", torch.backends.cudnn.version())
if torch.cuda.is_available():
    print("GPU", torch.cuda.get_device_name(0))
# Precision as the checks run: PyTorch's defaults, stated rather than assumed.
print("TF32 matmul (torch.backends.cuda.matmul.allow_tf32):", torch.backends.cuda.matmul.allow_tf32)
print("TF32 conv (torch.backends.cudnn.allow_tf32):", torch.backends.cudnn.allow_tf32)
print("float32 matmul precision:", torch.get_float32_matmul_precision())
print("cudnn.benchmark:", torch.backends.cudnn.benchmark,
      "| deterministic:", torch.backends.cudnn.deterministic)
print("CPU threads:", torch.get_num_threads())
PY
} > "$OUT/machine.txt" 2>&1
tail -8 "$OUT/machine.txt"

step "install (no network: carried wheels, then the project without its dependencies)"
{
  set -e
  ls .whl/*.whl
  "$PY" -m pip install --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  "$PY" -m pip install --no-deps --no-build-isolation --no-index -e .
  set +e
} > "$OUT/install.log" 2>&1 || { tail -20 "$OUT/install.log"; exit 1; }
export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import xai_checks.cam, captum, pytorch_grad_cam, jsonschema; print('imports ok')" \
  >> "$OUT/install.log" 2>&1 || { tail -20 "$OUT/install.log"; exit 1; }

step "CUDA equivalence tests (no pretrained weights: 'slow' deselected)"
# CPU vs CUDA (TF32 off inside those tests, see their no_tf32 fixture), every CAM method,
# channels_last on CUDA; then the whole fast unit suite for the CAM engine on this torch.
"$PY" -m pytest -p no:cacheprovider -q -rA -m "not slow" \
  tests/unit/test_cam_equivalence.py tests/unit/test_cam_methods.py \
  tests/unit/test_cam_oracles.py tests/unit/test_cam_robustness.py \
  > "$OUT/tests.log" 2>&1
echo "tests exit $?"; grep -E "passed|failed" "$OUT/tests.log" | tail -2
grep -E "cuda|CUDA" "$OUT/tests.log" | grep -E "PASSED|FAILED|SKIPPED" | head -20

step "throughput, CPU (batch 8) then CUDA (batch 8, 32); random weights, TF32 as PyTorch defaults"
"$PY" -m pytest -p no:cacheprovider benchmarks --benchmark-only -q --bench-batches=8 \
  --bench-devices=cpu --bench-layer-sets=layer4,all --bench-rounds=3 \
  --benchmark-json="$OUT/bench-cpu.json" > /tmp/bench-cpu.log 2>&1
echo "cpu bench exit $?"
"$PY" -m pytest -p no:cacheprovider benchmarks --benchmark-only -q --bench-batches=8,32 \
  --bench-devices=cuda --bench-layer-sets=layer4,all --bench-rounds=5 \
  --benchmark-json="$OUT/bench-cuda.json" > /tmp/bench-cuda.log 2>&1
echo "cuda bench exit $?"
{
  "$PY" benchmarks/tables.py "$OUT/bench-cpu.json"
  "$PY" benchmarks/tables.py "$OUT/bench-cuda.json"
  echo; echo "## logs (tails)"; tail -5 /tmp/bench-cpu.log; tail -5 /tmp/bench-cuda.log
} > "$OUT/bench-table.md" 2>&1
grep -E "vs plain|MISS|PASS" "$OUT/bench-table.md" | head -20

step "end-to-end study on 1 GPU rank (torchrun), embedded photos, random weights"
# The photo set that ships with the installed packages (no shared photos there); random weights
# as the model under test, so only the rate and the distributed launch mean anything.
if "$PY" -c "import torch.distributed.run" 2>/dev/null; then
  start=$SECONDS
  "$PY" -m torch.distributed.run --standalone --nproc-per-node 1 \
    -m xai_checks study --device cuda --weights random --out /tmp/study-report \
    > "$OUT/study.log" 2>&1
  rc=$?
  echo "wall seconds: $((SECONDS - start)), exit $rc" >> "$OUT/study.log"
  echo "study exit $rc"; tail -5 "$OUT/study.log"
else
  echo "no torch.distributed.run" > "$OUT/study.log"
fi
step "done"
ls -l "$OUT"
