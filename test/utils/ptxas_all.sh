#!/bin/sh
# ptxas_all.sh ARCH DIR: assembles every DIR/*.ptx for ARCH (sm_80, sm_90a, ...) with the CUDA
# toolkit's ptxas, printing one line per kernel, and fails on the first one ptxas rejects.
arch=$1
dir=$2
ptxas=${PTXAS:-/usr/local/cuda/bin/ptxas}
count=0
for ptx in "$dir"/*.ptx; do
  if ! "$ptxas" -arch="$arch" -O3 "$ptx" -o /dev/null; then
    echo "ptxas -arch=$arch rejected $ptx"
    exit 1
  fi
  echo "ptxas -arch=$arch accepted $(basename "$ptx")"
  count=$((count + 1))
done
echo "ptxas -arch=$arch accepted $count kernels"
