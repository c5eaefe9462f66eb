#!/usr/bin/env bash
# The main job on the bundled example: build moec, then verify the hand-written Mixtral layer
# in examples/, decompose it into explicit routing / dispatch / experts / combine ops, and
# list the checkpoint tensors it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build.sh >/dev/null
example=examples/mixtral_layer.mlir
echo "== $example, verified and decomposed (moe-opt --moe-explicit)"
build/bin/moe-opt "$example" --moe-explicit
echo
echo "== tensors it reads (moe-translate --moe-list-weights)"
build/bin/moe-translate --moe-list-weights "$example"
