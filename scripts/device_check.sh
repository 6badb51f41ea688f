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
#   * real photos for the end-to-end rate: `--fetch-wheels` also copies a seeded subset of the
#     shared ImageNet samples (128 photos, ~14 MB, with their MANIFEST rows) into .devdata/
#     (git-ignored, never committed); the study and the end-to-end benchmark read them there.
#
# Run there:  bash scripts/device_check.sh   (device tool: carry [".whl", ".devdata"],
#             timeout_s 560). Every step has its own time limit and writes its file as it ends,
#             so a step that runs long costs only itself. Order: what the mission lacks first.
# Writes at most 8 files under $OUT (the tool brings back 8): machine.txt (GPU, versions, TF32
# and precision settings), install.log, bench-cuda.json, bench-cpu.json, bench-table.md (both
# runs merged: per-device tables, GPU/CPU ratios, the speed gate), study.log, tests.log,
# profile.txt (torch.profiler of warm CUDA calls; the GPU memory table and batch-size search are
# appended to it). The CPU bench is opt-in (XAI_DEVICE_CPU=1): the H200 host's CPU figures are
# in benchmarks/results, and the 8-minute budget goes to the GPU pipeline's cases:
#   * CUDA graphs: the plain_graph / ours_fused_graph bench cases (the issue's GPU targets),
#     the cuda-marked tests of test_cam_graphs.py;
#   * device decoding and overlap: the study with --device-decode --cuda-graphs on the carried
#     photos (study.log: photos/s, decode counts, eager fallbacks, peak memory from provenance),
#     the cuda-marked tests of test_device_decode.py (nvJPEG vs PIL tolerance) and
#     test_prefetch.py;
#   * memory: peak GPU memory of the study at 32 and 128 photos (flat in photos), and
#     benchmarks/gpu_memory.py (peak per batch size, the largest batch that fits).
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
  # Real photos for the end-to-end rate (the device machine has no network and no shared data).
  grep -qx '/.devdata/' "$exclude" 2>/dev/null || echo '/.devdata/' >> "$exclude"
  src="${XAI_CHECKS_IMAGENET_SAMPLES:-../shared/data/imagenet-samples}"
  rm -rf .devdata && mkdir -p .devdata/photos
  python3 - "$src" .devdata/photos 128 <<'PY' || exit 1
import random, shutil, sys
from pathlib import Path
src, dst, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
header, *rows = (src / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()
pick = sorted(random.Random(0).sample(rows, n))
for row in pick:
    shutil.copyfile(src / row.split("\t")[0], dst / row.split("\t")[0])
(dst / "MANIFEST.tsv").write_text("\n".join([header, *pick]) + "\n", encoding="utf-8")
print(f"{n} photos of {src} -> {dst}")
PY
  du -sh .devdata
  exit 0
fi

OUT="${OUT:-$PWD/device-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
PHOTOS="${XAI_BENCH_PHOTOS:-$PWD/.devdata/photos}"
export PYTHONUNBUFFERED=1 XAI_CHECKS_CACHE=/tmp/xai-cache XAI_BENCH_WEIGHTS=random
export XAI_BENCH_PHOTOS="$PHOTOS" XAI_BENCH_E2E_PHOTOS="${XAI_BENCH_E2E_PHOTOS:-128}"
export XAI_CHECKS_IMAGENET_SAMPLES="$PHOTOS"  # the device-decoding tests' real photos
step() { echo "== $* ($(date -u +%T))"; }

step "machine"
{
  nvidia-smi || echo "no nvidia-smi"
  lscpu | grep -E "Model name|^CPU\(s\)" || true
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
tail -9 "$OUT/machine.txt"

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
ls "$PHOTOS"/MANIFEST.tsv >/dev/null 2>&1 || echo "no photos at $PHOTOS: the end-to-end cases skip"

# Throughput: batch 8 on both devices (the GPU/CPU table), batch 32 on CUDA; random weights,
# TF32 as PyTorch's defaults (see machine.txt); short per-case budgets: ratios, not records.
step "throughput, CUDA (batch 8, 32)"
timeout 140 "$PY" -m pytest -p no:cacheprovider benchmarks --benchmark-only -q \
  --bench-batches=8,32 --bench-devices=cuda --bench-layer-sets=layer4,all --bench-rounds=5 \
  --bench-case-budget=3 --benchmark-json="$OUT/bench-cuda.json" > /tmp/bench-cuda.log 2>&1
echo "cuda bench exit $?"; tail -2 /tmp/bench-cuda.log
step "throughput, CPU (batch 8)"
[ -z "${XAI_DEVICE_CPU:-}" ] && echo "skipped (opt-in: XAI_DEVICE_CPU=1)" || timeout 150 "$PY" -m pytest -p no:cacheprovider benchmarks --benchmark-only -q \
  --bench-batches=8 --bench-devices=cpu --bench-layer-sets=layer4,all --bench-rounds=3 \
  --bench-case-budget=4 --benchmark-json="$OUT/bench-cpu.json" > /tmp/bench-cpu.log 2>&1
echo "cpu bench exit $?"; tail -2 /tmp/bench-cpu.log
{
  "$PY" - "$OUT/bench-cuda.json" "$OUT/bench-cpu.json" /tmp/bench-both.json <<'PY'
import json, sys
from pathlib import Path
runs = [json.loads(Path(p).read_text()) for p in sys.argv[1:-1] if Path(p).is_file()]
merged = dict(runs[0]) if runs else {"benchmarks": []}
merged["benchmarks"] = [b for r in runs for b in r.get("benchmarks", [])]
Path(sys.argv[-1]).write_text(json.dumps(merged))
PY
  "$PY" benchmarks/tables.py /tmp/bench-both.json --allow-missing \
    --title "Grad-CAM throughput, ResNet-50 (random weights), CPU and GPU of one machine"
  echo; echo "## logs (tails)"; tail -5 /tmp/bench-cuda.log; tail -5 /tmp/bench-cpu.log
} > "$OUT/bench-table.md" 2>&1
grep -E "GPU / CPU|x \||MISS|PASS" "$OUT/bench-table.md" | head -12

step "end-to-end study on 1 GPU rank (torchrun), the carried photos, random weights"
# Random weights as the model under test: only the rate and the distributed launch mean
# anything here (verdicts on random weights are not the study's).
start=$SECONDS
timeout 60 "$PY" -m torch.distributed.run --standalone --nproc-per-node 1 \
  -m xai_checks study --device cuda --weights random --data "$PHOTOS" --out /tmp/study-report \
  --phases ratio > "$OUT/study.log" 2>&1
rc=$?
echo "wall seconds: $((SECONDS - start)), exit $rc" >> "$OUT/study.log"
grep -iE "seconds|phase|photos" /tmp/study-report/results.json 2>/dev/null | head -20 >> "$OUT/study.log"
echo "study exit $rc"; tail -4 "$OUT/study.log"
# The GPU pipeline: device decoding one batch ahead, the engine replayed from CUDA graphs.
# Peak memory at 32 and 128 photos (batch 32) shows whether it stays flat in the photos.
for n in 32 128; do
  step "study, GPU pipeline (--device-decode --cuda-graphs), $n photos, batch 32"
  start=$SECONDS
  timeout 60 "$PY" -m xai_checks study --device cuda --weights random --data "$PHOTOS" \
    --limit "$n" --batch-size 32 --phases ratio --device-decode --cuda-graphs \
    --out "/tmp/study-gpu-$n" >> "$OUT/study.log" 2>&1
  rc=$?
  echo "== GPU pipeline, $n photos: wall seconds $((SECONDS - start)), exit $rc" >> "$OUT/study.log"
  "$PY" - "/tmp/study-gpu-$n/results.json" >> "$OUT/study.log" 2>&1 <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t, n = r.get("timings", {}), r.get("photoset", {}).get("n_used")
print("ratio phase s:", t.get("ratio"), "| photos:", n,
      "| photos/s:", round(n / t["ratio"], 1) if n and t.get("ratio") else None)
print("gpu_pipeline:", json.dumps(r.get("provenance", {}).get("gpu_pipeline")))
PY
  tail -2 "$OUT/study.log"
done

step "CUDA tests: CPU vs CUDA for every CAM method, channels_last; CUDA graphs, nvJPEG, prefetch"
timeout 80 "$PY" -m pytest -p no:cacheprovider -q -rA -s -m "not slow" -k "cuda or nvjpeg" \
  tests/unit/test_cam_equivalence.py tests/unit/test_cam_methods.py \
  tests/unit/test_cam_oracles.py tests/unit/test_cam_robustness.py \
  tests/unit/test_cam_graphs.py tests/unit/test_device_decode.py tests/unit/test_prefetch.py \
  > "$OUT/tests.log" 2>&1
echo "tests exit $?"; grep -E "passed|failed" "$OUT/tests.log" | tail -2
step "precision: CPU vs CUDA maps under PyTorch's defaults (TF32 convolutions) and with TF32 off"
timeout 30 "$PY" - >> "$OUT/tests.log" 2>&1 <<'PY'
import torch
from xai_checks.cam import CAM
from xai_checks.models import load_resnet50
torch.manual_seed(0)
x = torch.randn(4, 3, 224, 224)
t = torch.randint(0, 1000, (4,))
layers = ["layer1", "layer2", "layer3", "layer4"]
cpu = CAM(load_resnet50("random"), layers=layers)(x, targets=t)
gpu_model = load_resnet50("random", device="cuda")
def diffs(fmt=torch.contiguous_format):
    got = CAM(gpu_model, layers=layers, memory_format=fmt)(x.cuda(), targets=t.cuda())
    return {n: f"{float((got.maps[n].cpu() - cpu.maps[n]).abs().max()):.1e}" for n in layers}
print("max |canonical map CUDA - CPU|, random ResNet-50 (seeded), 4 random inputs, Grad-CAM")
print("cudnn.allow_tf32 =", torch.backends.cudnn.allow_tf32, "(default):", diffs())
print("  + channels_last on CUDA:", diffs(torch.channels_last))
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
print("TF32 off (full float32):", diffs())
print("  + channels_last on CUDA:", diffs(torch.channels_last))
PY
tail -6 "$OUT/tests.log"
step "profile: where a warm CUDA call of layer4 Grad-CAM spends its time (batch 8)"
timeout 25 "$PY" - > "$OUT/profile.txt" 2>&1 <<'PY'
import torch
from torch.profiler import ProfilerActivity, profile
from xai_checks.cam import GradCAM
from xai_checks.models import load_resnet50
model = load_resnet50("random", device="cuda")
x = torch.randn(8, 3, 224, 224, device="cuda")
t = torch.randint(0, 1000, (8,))
for layers in (["layer4"], ["layer1", "layer2", "layer3", "layer4"]):
    cam = GradCAM(model, layers=layers)
    for _ in range(5):
        cam(x, targets=t)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            cam(x, targets=t)
        torch.cuda.synchronize()
    print(f"== {layers}: 10 calls")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=50))
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    for _ in range(10):
        with torch.inference_mode():
            model(x)
    torch.cuda.synchronize()
print("== plain inference: 10 calls")
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=6, max_name_column_width=50))
PY
grep -E "Self CPU time total|Self CUDA time total" "$OUT/profile.txt"
step "GPU memory: peak per batch size (eager and CUDA graph), the largest batch that fits"
timeout 60 "$PY" benchmarks/gpu_memory.py --weights random --graphs --max-batch 1024 \
  >> "$OUT/profile.txt" 2>&1
echo "memory exit $?"; tail -3 "$OUT/profile.txt"
step "done"
ls -l "$OUT"
