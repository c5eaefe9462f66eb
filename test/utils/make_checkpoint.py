#!/usr/bin/env python3
"""Writes a checkpoint folder holding random tensors for every weight a module names.

    moe-translate --moe-list-weights MODULE.mlir > weights.json
    make_checkpoint.py weights.json OUTDIR [--seed N]

Reads the JSON that --moe-list-weights prints and writes OUTDIR/model.safetensors (plus a
minimal config.json) with deterministic pseudo-random values (standard library only):
floats ~ N(0, 0.5) for tensors whose name contains "router" or "gate.weight" (so routing
scores are well separated), N(0, 0.1) otherwise; FP8 and integer tensors get random bytes
that are never NaN encodings.
"""

import argparse
import json
import os
import random
import struct


def encode(dtype, count, scale, rng):
    if dtype == "F32":
        return struct.pack("<%df" % count, *[rng.gauss(0.0, scale) for _ in range(count)])
    if dtype == "BF16":
        return b"".join(struct.pack("<f", rng.gauss(0.0, scale))[2:] for _ in range(count))
    if dtype == "F8_E4M3":
        # Avoid S.1111.111 (NaN) and keep magnitudes moderate: exponent field <= 8.
        return bytes((rng.randrange(2) << 7) | (rng.randrange(9) << 3) | rng.randrange(8)
                     for _ in range(count))
    if dtype in ("U8", "I8"):
        return bytes(rng.randrange(256) for _ in range(count))
    raise SystemExit("make_checkpoint.py: unsupported dtype " + dtype)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("weights_json")
    parser.add_argument("outdir")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with open(args.weights_json) as f:
        listing = json.load(f)
    rng = random.Random(args.seed)
    header, chunks, offset = {}, [], 0
    for entry in listing["tensors"]:
        count = 1
        for dim in entry["stored_shape"]:
            count *= dim
        names = [entry["name"]]
        if "experts" in entry:
            names = [entry["name"].replace("{e}", str(e)) for e in range(entry["experts"])]
        routing = "router" in entry["name"] or "gate.weight" in entry["name"]
        for name in names:
            if entry["dtype"] == "U8" and name.endswith("_scales"):
                # MXFP4 scales: exponents near 127 keep values O(1).
                data = bytes(rng.randrange(122, 128) for _ in range(count))
            else:
                data = encode(entry["dtype"], count, 0.5 if routing else 0.1, rng)
            header[name] = {"dtype": entry["dtype"], "shape": entry["stored_shape"],
                            "data_offsets": [offset, offset + len(data)]}
            chunks.append(data)
            offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    os.makedirs(args.outdir, exist_ok=True)
    with open(os.path.join(args.outdir, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))
    with open(os.path.join(args.outdir, "config.json"), "w") as f:
        json.dump({"model_type": "moec-test"}, f)


if __name__ == "__main__":
    main()
