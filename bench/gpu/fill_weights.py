#!/usr/bin/env python3
"""Writes synthetic weights for a folder compiled with `moe-compile --layout-only`.

    fill_weights.py FOLDER [--seed S] [--force]

reads FOLDER/weights.layout.json (the packed tensors moe-compile planned: name, dtype,
shape, offset, in file order, plus the weights hash the compiled library was built with)
and writes FOLDER/weights.safetensors: a safetensors file with exactly those tensors at
exactly those data offsets, `__metadata__` {"moec_weights_hash": <the layout's hash>}
(the runtime refuses a folder whose three hashes differ; it does not rehash the data), and
random values:

  BF16            N(0, 0.02), rounded to bf16 (ties to even)
  F32             N(0, 0.02), rounded to bf16-representable values, so that a bf16 copy
                  (what the torch baselines hold) is exact
  any "bias"      zeros (DeepSeek-V3's correction bias, expert biases)
  U8 "__pad.N"    zeros (alignment padding between tensors; it must stay zero)

The file is streamed tensor by tensor and never held in memory (DeepSeek-V3's layer is
22.6 GB). Generating 11 G normal samples would take minutes, so large tensors are cut from
a pool of 64 M samples, drawn once: each 32 MiB chunk starts at a random offset into the
pool. Every value is still an N(0, 0.02) sample and no two experts share their weights
(their chunks start at independent random offsets), which is all a benchmark needs; the
file is written at the disk's speed. The pool, the offsets and the small tensors all come
from --seed, so a fill is reproducible. Memory stays near 200 MB whatever the file size.

An existing weights.safetensors with the layout's hash and the expected size is kept
(a machine fills each shape once); --force rewrites it. The file is written under a
temporary name and renamed, so an interrupted fill leaves no plausible file behind.
Only numpy and the standard library.
"""

import argparse
import json
import os
import shutil
import struct
import sys
import time

import numpy as np

ITEMSIZE = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "U8": 1, "I8": 1, "I32": 4, "I64": 8}
STD = 0.02
POOL_ELEMENTS = 1 << 26    # 64 M bf16 samples (128 MiB)
CHUNK_ELEMENTS = 1 << 24   # 32 MiB of bf16 per write


def f32_to_bf16_bits(x):
    """float32 array -> uint16 bf16 bit patterns, rounded to nearest, ties to even."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    r = u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))
    return (r >> np.uint32(16)).astype(np.uint16)


def bf16_bits_to_f32(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def read_layout(folder):
    """The layout's tensors, checked to tile the data buffer in order; returns
    (tensors with "nbytes" added, data size, weights hash)."""
    path = os.path.join(folder, "weights.layout.json")
    with open(path) as f:
        layout = json.load(f)
    tensors, end = layout["tensors"], 0
    for t in tensors:
        if t["dtype"] not in ITEMSIZE:
            sys.exit(f"{path}: tensor {t['name']}: dtype {t['dtype']} is not supported")
        t["nbytes"] = int(np.prod(t["shape"], dtype=np.int64)) * ITEMSIZE[t["dtype"]]
        if t["offset"] != end:  # the safetensors data buffer has no gaps
            sys.exit(f"{path}: tensor {t['name']} starts at {t['offset']}, expected {end} "
                     "(the layout's tensors must be contiguous, in order)")
        end += t["nbytes"]
    h = layout["weights_hash"]
    if len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
        sys.exit(f"{path}: weights_hash {h!r} is not 64 lowercase hex digits")
    return tensors, end, h


def header_bytes(tensors, weights_hash):
    """The 8-byte length and the JSON header, padded with spaces to a multiple of 8 (as
    moec's own writer does, so every tensor's data is 8-byte aligned in the file)."""
    header = {"__metadata__": {"moec_weights_hash": weights_hash}}
    for t in tensors:
        header[t["name"]] = {"dtype": t["dtype"], "shape": t["shape"],
                             "data_offsets": [t["offset"], t["offset"] + t["nbytes"]]}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def existing_matches(path, weights_hash, file_size):
    """True if `path` is a complete fill of this layout (hash in its metadata, full size)."""
    try:
        if os.path.getsize(path) != file_size:
            return False
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            meta = json.loads(f.read(n)).get("__metadata__") or {}
        return meta.get("moec_weights_hash") == weights_hash
    except (OSError, ValueError, struct.error):
        return False


class Filler:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.pool = None  # bf16 bits, drawn when the first large tensor needs it

    def normal_bf16_bits(self, n):
        return f32_to_bf16_bits(self.rng.standard_normal(n, dtype=np.float32) * np.float32(STD))

    def write_tensor(self, f, t):
        name, dtype, nbytes = t["name"], t["dtype"], t["nbytes"]
        if nbytes == 0:
            return
        if name.startswith("__pad") or "bias" in name:
            zeros = bytes(min(nbytes, 1 << 24))
            for start in range(0, nbytes, len(zeros)):
                f.write(zeros[:min(len(zeros), nbytes - start)])
            return
        n = nbytes // ITEMSIZE[dtype]
        if dtype == "BF16":
            if n <= (1 << 22):  # small: fresh samples
                f.write(self.normal_bf16_bits(n).tobytes())
                return
            if self.pool is None:  # drawn in pieces: the float32 temporaries stay small
                self.pool = np.empty(POOL_ELEMENTS, np.uint16)
                for start in range(0, POOL_ELEMENTS, 1 << 22):
                    self.pool[start:start + (1 << 22)] = self.normal_bf16_bits(1 << 22)
            done = 0
            while done < n:
                m = min(CHUNK_ELEMENTS, n - done)
                start = int(self.rng.integers(0, POOL_ELEMENTS - m + 1))
                f.write(memoryview(self.pool[start:start + m]))  # no copy
                done += m
            return
        if dtype in ("F32", "F16", "F64"):
            # Small in every layout so far (router, biases); drawn in chunks regardless.
            np_type = {"F32": np.float32, "F16": np.float16, "F64": np.float64}[dtype]
            for start in range(0, n, 1 << 22):
                m = min(1 << 22, n - start)
                v = bf16_bits_to_f32(self.normal_bf16_bits(m))  # bf16-exact values
                f.write(v.astype(np_type).tobytes())
            return
        sys.exit(f"tensor {name}: no synthetic values for dtype {dtype} (only pads may be "
                 "integer)")


def fill(folder, seed=0, force=False, log=print):
    """Writes FOLDER/weights.safetensors (unless a matching one is there); returns its path."""
    tensors, data_size, weights_hash = read_layout(folder)
    head = header_bytes(tensors, weights_hash)
    path = os.path.join(folder, "weights.safetensors")
    size = len(head) + data_size
    if not force and existing_matches(path, weights_hash, size):
        log(f"{path}: present ({size / 1e9:.2f} GB, hash {weights_hash[:12]}), kept")
        return path
    free = shutil.disk_usage(folder).free
    if free < size + (1 << 30):
        sys.exit(f"{folder}: {free / 1e9:.1f} GB free on its disk, the weights need "
                 f"{size / 1e9:.1f} GB")
    tmp = f"{path}.tmp-{os.getpid()}"
    t0 = time.perf_counter()
    filler = Filler(seed)
    try:
        with open(tmp, "wb", buffering=0) as f:
            f.write(head)
            for t in tensors:
                filler.write_tensor(f, t)
            if f.tell() != size:
                raise RuntimeError(f"wrote {f.tell()} bytes, expected {size}")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    dt = time.perf_counter() - t0
    log(f"{path}: wrote {len(tensors)} tensors, {size / 1e9:.2f} GB in {dt:.1f} s "
        f"({size / 1e9 / max(dt, 1e-9):.2f} GB/s), hash {weights_hash[:12]}")
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", help="a folder compiled with moe-compile --layout-only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="rewrite a matching weights file")
    a = ap.parse_args()
    fill(a.folder, a.seed, a.force)


if __name__ == "__main__":
    main()
