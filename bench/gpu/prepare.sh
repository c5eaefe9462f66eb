#!/usr/bin/env bash
# bench/gpu/prepare.sh - stages what the GPU machine needs to check and time moec's CUDA
# target, since that machine has no LLVM/MLIR (so no moe-compile): run it HERE, with moec
# built, then carry bench/gpu/.stage to the GPU machine and run bench/gpu/run.sh there.
#
#   bench/gpu/prepare.sh        # writes bench/gpu/.stage (a few MiB); builds nothing
#
# The stage holds:
#   goldens/<family>/model/        every golden checkpoint (test/golden/<family>/ckpt; the
#                                  families of test/codegen/cuda/families) compiled with
#                                  --target cuda:sm_90a, weights included (they are tiny)
#   goldens/<family>/T{1,7,64}/    the golden input and transformers' outputs of every MoE
#                                  layer (layer<L>.f32 / .bf16.safetensors)
#   goldens/<family>/golden.json   which layers are MoE, H, k, tokens (and config.json)
#   modules/<shape>.mlir           the three real shapes (bench/gpu/modules.py)
#   shapes/<shape>/                each compiled with --target cuda:sm_90a --layout-only:
#                                  weights.layout.json instead of the weights (22.6 GB for
#                                  DeepSeek-V3), filled with synthetic values there
#   libmoe_runtime.so              the runtime (LLVM-free)
#   stage.json                     commit, date, tools, what was staged
#
# Environment: MOE_COMPILE (default build/bin/moe-compile), RUNTIME_LIB (default
# build/lib/libmoe_runtime.so), STAGE (default bench/gpu/.stage), ARCH (default sm_90a: the
# H200 is compute capability 9.0, so the runtime loads these cubins rather than JIT the PTX).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
MOE_COMPILE="${MOE_COMPILE:-build/bin/moe-compile}"
RUNTIME_LIB="${RUNTIME_LIB:-build/lib/libmoe_runtime.so}"
STAGE="${STAGE:-bench/gpu/.stage}"
ARCH="${ARCH:-sm_90a}"
LIMIT_MIB=60

for f in "$MOE_COMPILE" "$RUNTIME_LIB"; do
  [[ -e "$f" ]] || { echo "missing $f: build moec first (ninja -C build)"; exit 1; }
done
"$MOE_COMPILE" --help | grep -q -- "--layout-only" \
  || { echo "$MOE_COMPILE has no --layout-only: rebuild it (ninja -C build moe-compile)"; exit 1; }
PTXAS="$(command -v ptxas || ls /usr/local/cuda/bin/ptxas 2>/dev/null || true)"
if [[ -z "$PTXAS" ]]; then
  echo "warning: no ptxas here: the folders will hold PTX only, which the driver JIT-compiles"
fi

rm -rf "$STAGE"
mkdir -p "$STAGE/goldens" "$STAGE/shapes" "$STAGE/modules"

echo "== goldens ($ARCH)"
families=()
for t in test/codegen/cuda/families/*.test; do families+=("$(basename "$t" .test)"); done
for fam in "${families[@]}"; do
  src="test/golden/$fam"
  dst="$STAGE/goldens/$fam"
  mkdir -p "$dst"
  "$MOE_COMPILE" "$src/ckpt" -o "$dst/model" --target "cuda:$ARCH" >/dev/null
  cp "$src/golden.json" "$dst/"
  cp "$src/ckpt/config.json" "$dst/"
  layers="$(python3 -c 'import json,sys; print(" ".join(map(str, json.load(open(sys.argv[1]))["moe_layers"])))' "$src/golden.json")"
  for T in 1 7 64; do
    mkdir -p "$dst/T$T"
    cp "$src/T$T/input.safetensors" "$dst/T$T/"
    for L in $layers; do
      cp "$src/T$T/layer$L.f32.safetensors" "$dst/T$T/"
      [[ -e "$src/T$T/layer$L.bf16.safetensors" ]] && cp "$src/T$T/layer$L.bf16.safetensors" "$dst/T$T/"
    done
  done
  printf '  %-17s layers %-5s %s\n' "$fam" "$layers" "$(du -sh "$dst" | cut -f1)"
done

echo "== shapes ($ARCH, layout only)"
python3 bench/gpu/modules.py --out "$STAGE/modules" >/dev/null
for m in "$STAGE"/modules/*.mlir; do
  name="$(basename "$m" .mlir)"
  "$MOE_COMPILE" "$m" -o "$STAGE/shapes/$name" --target "cuda:$ARCH" --layout-only >/dev/null
  [[ -e "$STAGE/shapes/$name/weights.layout.json" && ! -e "$STAGE/shapes/$name/weights.safetensors" ]] \
    || { echo "$name: expected weights.layout.json and no weights.safetensors"; exit 1; }
  python3 - "$STAGE/shapes/$name" <<'PY'
import json, sys
d = sys.argv[1]
L = json.load(open(d + "/manifest.json"))["layers"][0]
size = L["num_experts"] * L["expert_bytes"] + L["always_bytes"]
print("  %-15s H %-5d E %-3d k %d I %-5d shared %-4d  weights to fill: %.2f GB"
      % (d.rsplit("/", 1)[1], L["hidden_size"], L["num_experts"], L["top_k"],
         L["expert_width"], L["shared_width"], size / 1e9))
PY
done

cp "$RUNTIME_LIB" "$STAGE/libmoe_runtime.so"

# What the GPU machine's loader must provide (its image is newer than this one; shown so a
# mismatch is recognisable should the libraries refuse to load there).
glibc_needs() {
  objdump -T "$1" 2>/dev/null | grep -o 'GLIBC[A-Z]*_[0-9.]*' | sort -t_ -k2 -V | awk -F_ '
    {v[$1]=$0} END {for (k in v) printf "%s ", v[k]}'
}
echo "== libraries need: libmoe_runtime.so: $(glibc_needs "$STAGE/libmoe_runtime.so")"
echo "                   libmoe_model.so:   $(glibc_needs "$STAGE/goldens/mixtral/model/libmoe_model.so")"

python3 - "$STAGE" "$ARCH" "$PTXAS" "${families[@]}" <<'PY'
import json, os, subprocess, sys, time
stage, arch, ptxas, fams = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
def git(*a):
    p = subprocess.run(["git", *a], capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else None
ptxas_version = None
if ptxas:
    out = subprocess.run([ptxas, "--version"], capture_output=True, text=True).stdout
    ptxas_version = out.strip().splitlines()[-1] if out.strip() else None
info = dict(
    date=time.strftime("%Y-%m-%d %H:%M:%S %Z"), commit=git("rev-parse", "--short", "HEAD"),
    modified=(git("status", "--porcelain", "--untracked-files=no") or "").splitlines(),
    arch=arch, ptxas=ptxas or None, ptxas_version=ptxas_version,
    families={f: json.load(open(f"{stage}/goldens/{f}/golden.json"))["moe_layers"] for f in fams},
    shapes=sorted(os.listdir(f"{stage}/shapes")))
json.dump(info, open(f"{stage}/stage.json", "w"), indent=1)
PY

bytes="$(du -sb "$STAGE" | cut -f1)"
mib=$(( (bytes + 1048575) / 1048576 ))
tracked="$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)"
echo "== stage: $STAGE, $mib MiB ($(find "$STAGE" -type f | wc -l) files); with the tracked tree" \
     "$(( (bytes + tracked) / 1048576 )) MiB of the device tool's 64 MiB"
if (( mib > LIMIT_MIB )); then
  echo "the stage is larger than $LIMIT_MIB MiB: it would not travel"; exit 1
fi
if ! git check-ignore -q "$STAGE/stage.json"; then
  echo "warning: $STAGE is not git-ignored; add '/bench/gpu/.stage/' to .gitignore (it must not be" \
       "committed; the device tool takes an ignored path when 'carry' names it)"
fi
echo "next: on the GPU machine, carry [\"$STAGE\"] and run: bash bench/gpu/run.sh"
