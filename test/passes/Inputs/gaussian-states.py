"""Writes calibration hidden states [T, H] of i.i.d. N(0, 1) values (the golden inputs'
distribution, held out: a seed of its own) as F32 `hidden_states` in a safetensors file.
Usage: gaussian-states.py OUT T H SEED"""
import json
import random
import struct
import sys

out, tokens, hidden, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
values = [rng.gauss(0.0, 1.0) for _ in range(tokens * hidden)]
data = struct.pack(f"<{len(values)}f", *values)
header = json.dumps({"hidden_states": {"dtype": "F32", "shape": [tokens, hidden],
                                       "data_offsets": [0, len(data)]}}).encode()
header += b" " * (-len(header) % 8)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(header)) + header + data)
