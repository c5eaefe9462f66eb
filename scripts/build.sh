#!/usr/bin/env bash
# Installs what is missing (scripts/setup.sh), then configures and builds moec into build/.
# Ninja is used for a fresh build folder; an existing one keeps the generator it has.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
if [ ! -f build/CMakeCache.txt ]; then
  generator=()
  command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
  cmake -S . -B build "${generator[@]}"
fi
cmake --build build -j "$(nproc)"
