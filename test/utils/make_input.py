#!/usr/bin/env python3
"""Writes a safetensors file with one tensor (default `hidden_states`) of shape [T, H].

    make_input.py OUT T H [--dtype F32|BF16|I32] [--name NAME]

Values are a fixed pseudo-random sequence (standard library only), exactly representable in
bf16 unless --inexact.
"""

import argparse
import json
import random
import struct


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("tokens", type=int)
    parser.add_argument("hidden", type=int)
    parser.add_argument("--dtype", default="F32", choices=["F32", "BF16", "I32"])
    parser.add_argument("--name", default="hidden_states")
    parser.add_argument("--inexact", action="store_true",
                        help="full f32 mantissas (not representable in bf16)")
    args = parser.parse_args()
    rng = random.Random(1234)
    count = args.tokens * args.hidden
    if args.inexact:
        values = [rng.gauss(0.0, 1.0) for _ in range(count)]
    else:
        values = [round(rng.gauss(0.0, 1.0) * 64) / 64 for _ in range(count)]
    if args.dtype == "F32":
        data = struct.pack("<%df" % count, *values)
    elif args.dtype == "I32":
        data = struct.pack("<%di" % count, *[int(v) for v in values])
    else:
        data = b"".join(struct.pack("<f", v)[2:] for v in values)
    header = {args.name: {"dtype": args.dtype, "shape": [args.tokens, args.hidden],
                          "data_offsets": [0, len(data)]}}
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(args.out, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


if __name__ == "__main__":
    main()
