#!/usr/bin/env bash
# bench/run.sh - moec's compiled MoE layer against eager numpy and torch, on this CPU, in one
# command: build check, synthetic checkpoints, moe-compile, the machine's ceilings
# (bench/peak.c), the benchmark (bench/bench_cpu.py), the table.
#
#   bench/run.sh                       # everything; results in bench/.data/results.json
#   PYTHON=v/bin/python bench/run.sh   # another venv with numpy, torch, safetensors
#
# Environment: PYTHON (default /work/venv-golden/bin/python), DATA (bench/.data),
# SKIP_BUILD=1 (use build/ as it is), CLANG (/usr/lib/llvm-22/bin/clang), BENCH_ARGS (extra
# bench_cpu.py options, e.g. "--tokens 1,8 --rounds 1").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-/work/venv-golden/bin/python}"
DATA="${DATA:-$ROOT/bench/.data}"
CLANG="${CLANG:-/usr/lib/llvm-22/bin/clang}"
LLVM_LIB="$(dirname "$(dirname "$CLANG")")/lib"
# R (num_hidden_layers) per shape: one layer is 138 MB (mixtral-like) / 151 MB (fine-grained)
# of bf16 weights, so two layers are ~9x the 32 MB L3 and ~300 MB on disk each.
LAYERS_mixtral_like=2
LAYERS_fine_grained=2

step() { printf '\n== %s\n' "$*"; }

step "build check"
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  # Another ninja on the same build folder would race with ours: wait for it.
  while pgrep -x ninja >/dev/null; do echo "another ninja is running; waiting"; sleep 10; done
  ninja -C build moe-compile moe-run moe_runtime
fi
for f in build/bin/moe-compile build/bin/moe-run build/lib/libmoe_runtime.so; do
  [[ -e "$f" ]] || { echo "missing $f (build moec first: cmake -S . -B build -G Ninja && ninja -C build)"; exit 1; }
done
"$PYTHON" -c "import numpy, torch, safetensors" || {
  echo "$PYTHON lacks numpy/torch/safetensors (python3 -m venv v && v/bin/pip install numpy torch safetensors)"; exit 1; }

step "checkpoints"
mkdir -p "$DATA"
for shape in mixtral-like fine-grained; do
  var="LAYERS_${shape//-/_}"; R="${!var}"
  ckpt="$DATA/$shape/ckpt"
  if ! "$PYTHON" -c "import json,sys; c=json.load(open('$ckpt/config.json')); sys.exit(c['num_hidden_layers']!=$R)" 2>/dev/null \
     || [[ ! -s "$ckpt/model.safetensors" ]]; then
    "$PYTHON" bench/make_checkpoint.py --shape "$shape" --layers "$R" --out "$ckpt"
  else
    echo "$ckpt: present ($R layers)"
  fi
done

step "moe-compile"
for shape in mixtral-like fine-grained; do
  rm -rf "$DATA/$shape/out"
  /usr/bin/time -f "  %es, %MKB max RSS" build/bin/moe-compile "$DATA/$shape/ckpt" -o "$DATA/$shape/out" --target cpu
done

step "ceilings (bench/peak.c)"
"$CLANG" -O3 -march=native -fopenmp -L"$LLVM_LIB" -Wl,-rpath,"$LLVM_LIB" bench/peak.c -o "$DATA/peak"
"$PYTHON" bench/bench_cpu.py --wait-quiet 900
uptime
# Best of two runs (each already best of 5): a ceiling is the most the machine did.
"$DATA/peak" > "$DATA/peak1.json"
"$DATA/peak" > "$DATA/peak2.json"
"$PYTHON" - "$DATA" <<'PY'
import json, sys
d = sys.argv[1]
a, b = (json.load(open(f"{d}/peak{i}.json")) for i in (1, 2))
best = {k: max(a[k], b[k]) if isinstance(a[k], float) else a[k] for k in a}
json.dump(best, open(f"{d}/peak.json", "w"))
print(json.dumps(best))
PY

step "benchmark"
uptime
# shellcheck disable=SC2086
"$PYTHON" bench/bench_cpu.py --data "$DATA" --peak "$DATA/peak.json" --out "$DATA/results.json" ${BENCH_ARGS:-}

step "quantized experts (bench/bench_quant.py)"
"$PYTHON" bench/bench_quant.py --data "$DATA" --peak-bin "$DATA/peak" --out "$DATA/quant-results.json"
