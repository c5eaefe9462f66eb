"""same_layout.py LAYOUT.json WEIGHTS.safetensors: checks that a --layout-only plan lists
exactly the tensors (name, dtype, shape, byte offset) of a real weights file, in order."""
import json
import struct
import sys

layout = json.load(open(sys.argv[1]))["tensors"]
with open(sys.argv[2], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
real = sorted(((info["data_offsets"][0], name, info["dtype"], info["shape"])
               for name, info in header.items() if name != "__metadata__"))
planned = [(t["offset"], t["name"], t["dtype"], t["shape"]) for t in layout]
if planned != real:
    for a, b in zip(planned, real):
        if a != b:
            print("differs:", a, "vs", b)
            break
    print("layouts differ: %d planned, %d written" % (len(planned), len(real)))
    sys.exit(1)
print("%d tensors at the same offsets" % len(planned))
