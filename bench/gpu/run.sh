#!/usr/bin/env bash
# bench/gpu/run.sh - moec's CUDA target on the GPU machine, in one command: checks the
# machine, then bench/gpu/bench_gpu.py, which (1) runs every staged golden family on the GPU
# against transformers' outputs and (2) fills the three real shapes' synthetic weights
# (fill_weights.py, in the background while (1) runs; ~27 GB under $WORK, kept for a second
# run on the same machine) and times moec against torch._grouped_mm and transformers' MoE
# blocks. Designed to finish in ~8 minutes (bench_gpu.py stops starting new work at
# --time-limit, 480 s by default).
#
#   bash bench/gpu/run.sh [bench_gpu.py options]     # from the repository root
#
# Needs what bench/gpu/prepare.sh staged (bench/gpu/.stage: carry it with the device tool,
# carry: ["bench/gpu/.stage"]) and python3 with torch (CUDA), transformers, numpy and
# safetensors. No LLVM or MLIR: moec is reached through the staged libmoe_runtime.so.
# Results: $OUT/results.json, results.md, run.log, gpu.txt when OUT is set (the device
# tool's output folder), else bench/gpu/.stage/.
#
# Environment: PYTHON (python3), STAGE (bench/gpu/.stage), WORK (/tmp/moec-gpu); DRY_RUN=1
# tries this script where there is no GPU (bench_gpu.py --dry-run: the runtime's fake
# driver, torch on the CPU; use it with a tiny stage, e.g. selfcheck.py --keep DIR's
# DIR/stage).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
STAGE="${STAGE:-bench/gpu/.stage}"
WORK="${WORK:-/tmp/moec-gpu}"
RESULTS="${OUT:-$STAGE}"
export PYTHONUNBUFFERED=1

fail() { echo "run.sh: $*" >&2; exit 3; }
step() { printf '\n== %s\n' "$*"; }

step "machine"
[[ -f "$STAGE/libmoe_runtime.so" && -d "$STAGE/goldens" && -d "$STAGE/shapes" ]] \
  || fail "no stage at $STAGE: run bench/gpu/prepare.sh where moec is built, and carry bench/gpu/.stage"
mkdir -p "$RESULTS" "$WORK"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm,power.limit,temperature.gpu \
    --format=csv
  nvidia-smi -q > "$RESULTS/gpu.txt" 2>&1 || true
else
  echo "warning: no nvidia-smi"
fi
DRY=()
[[ "${DRY_RUN:-0}" == 1 ]] && DRY=(--dry-run)
"$PYTHON" - "$STAGE/libmoe_runtime.so" "${DRY_RUN:-0}" <<'PY' || fail "python3 cannot run the benchmark (above)"
import ctypes, sys
import numpy, safetensors, torch
try:
    import transformers
    tv = transformers.__version__
except ImportError as e:  # the benchmark still runs, without transformers' blocks
    tv = "MISSING (%s)" % e
print("python %s: torch %s (CUDA %s), transformers %s, numpy %s, safetensors %s" % (
    sys.version.split()[0], torch.__version__, torch.version.cuda, tv, numpy.__version__,
    safetensors.__version__))
if sys.argv[2] == "1":
    print("DRY_RUN=1: no GPU needed")
elif not torch.cuda.is_available():
    sys.exit("torch sees no GPU")
else:
    p = torch.cuda.get_device_properties(0)
    print("device 0: %s, compute capability %d.%d, %d SMs, %.0f GiB" % (
        p.name, p.major, p.minor, p.multi_processor_count, p.total_memory / 2**30))
ctypes.CDLL(sys.argv[1])  # loads here (its libstdc++/glibc needs are met)
print("libmoe_runtime.so loads")
PY
"$PYTHON" - "$STAGE/stage.json" <<'PY'
import json, sys
try:
    s = json.load(open(sys.argv[1]))
    print("stage: moec %s%s, staged %s, %s, %s" % (
        s["commit"], " + local changes" if s["modified"] else "", s["date"], s["arch"],
        s["ptxas_version"] or "no ptxas there: PTX only, JIT-compiled by the driver"))
except (OSError, ValueError, KeyError) as e:
    print("stage: no readable stage.json (%s)" % e)
PY
df -h "$WORK" | tail -1 | awk '{print "disk under '"$WORK"': " $4 " free (the shapes need ~27 GB once)"}'

step "bench_gpu.py"
"$PYTHON" -u bench/gpu/bench_gpu.py --stage "$STAGE" --work "$WORK" --out "$RESULTS/results.json" "${DRY[@]}" "$@" \
  2>&1 | tee "$RESULTS/run.log"
status=${PIPESTATUS[0]}
echo "run.sh: bench_gpu.py exit status $status (0 all right, 1 golden numerics failed, 2 benchmark problems); results in $RESULTS"
exit "$status"
