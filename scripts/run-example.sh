#!/usr/bin/env bash
# The main job on the bundled example: build moec, compile the tiny Mixtral checkpoint in
# examples/ (saved by transformers) ahead of time for this CPU, run its MoE layer 1 on 64
# tokens through the runtime, check it against the float64 reference evaluator and time it.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build.sh >/dev/null
out=build/example/mixtral-tiny
mkdir -p build/example
build/bin/moe-compile examples/mixtral-tiny -o "$out"
echo "== $out: $(ls "$out" | tr '\n' ' ')"
build/bin/moe-run "$out" --layer 1 --input examples/mixtral-tiny-input.safetensors \
  --output build/example/output.safetensors --check --bench 200
