#!/usr/bin/env python3
"""Compares moe-run's output with expected values (standard library only: CI has no numpy).

    compare_safetensors.py ACTUAL EXPECTED --tolerance TOL [--ids set|ordered|skip]

For `hidden_states` and `topk_weights` it prints the relative Frobenius error
||actual - expected|| / ||expected|| and fails when it exceeds TOL. `topk_ids` must match
exactly. With --ids set (the default) each token's (id, weight) pairs are compared as a set,
sorted by id: the order of a token's k slots carries no meaning, and some routers (DeepSeek's
topk(sorted=False)) leave it unspecified. --ids skip ignores routing (bf16 runs, whose
weights are rounded). Missing tensors and shape mismatches fail.
"""

import argparse
import json
import math
import struct
import sys

FORMATS = {"F32": ("f", 4), "F64": ("d", 8), "I32": ("i", 4), "I64": ("q", 8)}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        fmt, size = FORMATS[info["dtype"]]
        begin, end = info["data_offsets"]
        count = (end - begin) // size
        values = struct.unpack_from("<%d%s" % (count, fmt), data, base + begin)
        tensors[name] = (info["shape"], values)
    return tensors


def sort_slots_by_id(tensors):
    """Reorders each token's k slots by expert id, in topk_ids and topk_weights alike."""
    if "topk_ids" not in tensors or "topk_weights" not in tensors:
        return
    shape, ids = tensors["topk_ids"]
    _, weights = tensors["topk_weights"]
    k = shape[1]
    new_ids, new_weights = [], []
    for t in range(shape[0]):
        pairs = sorted(zip(ids[t * k:(t + 1) * k], weights[t * k:(t + 1) * k]))
        new_ids += [p[0] for p in pairs]
        new_weights += [p[1] for p in pairs]
    tensors["topk_ids"] = (shape, new_ids)
    tensors["topk_weights"] = (shape, new_weights)


def relative_error(actual, expected):
    diff = math.sqrt(sum((a - e) ** 2 for a, e in zip(actual, expected)))
    norm = math.sqrt(sum(e * e for e in expected))
    return diff / norm if norm > 0 else diff


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("actual")
    parser.add_argument("expected")
    parser.add_argument("--tolerance", type=float, required=True)
    parser.add_argument("--ids", choices=["set", "ordered", "skip"], default="set")
    args = parser.parse_args()

    actual = read_safetensors(args.actual)
    expected = read_safetensors(args.expected)
    if args.ids == "set":
        for tensors in (actual, expected):
            sort_slots_by_id(tensors)
    ok = True
    names = ["hidden_states"] + (["topk_weights", "topk_ids"] if args.ids != "skip" else [])
    for name in names:
        if name not in expected:
            continue
        if name not in actual:
            print("%s: missing from %s" % (name, args.actual))
            ok = False
            continue
        (a_shape, a), (e_shape, e) = actual[name], expected[name]
        if a_shape != e_shape:
            print("%s: shape %s, expected %s" % (name, a_shape, e_shape))
            ok = False
        elif name == "topk_ids":
            mismatches = sum(1 for x, y in zip(a, e) if x != y)
            print("%s: %d of %d differ" % (name, mismatches, len(e)))
            ok &= mismatches == 0
        else:
            error = relative_error(a, e)
            verdict = "ok" if error <= args.tolerance else "EXCEEDS"
            print("%s: rel_err=%.3e tolerance=%.1e %s" % (name, error, args.tolerance, verdict))
            ok &= error <= args.tolerance
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
