#!/usr/bin/env python3
"""Copies a single-file checkpoint folder with one tensor multiplied by a factor.

    scale_tensor.py SRC DST NAME FACTOR

Plants structure in a golden checkpoint, e.g. a super expert: one expert's down projection
scaled by 100 makes its outputs 100 times larger. BF16 values are scaled through f32 and
rounded to nearest even; F32 values are scaled in f32. Other files are copied unchanged.
Standard library only.
"""

import json
import os
import shutil
import struct
import sys


def bf16_from_f32_bits(bits):
    # Round to nearest even on the 16 dropped bits (finite values only).
    return (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    src, dst, name, factor = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    shutil.copytree(src, dst)
    path = os.path.join(dst, "model.safetensors")
    with open(path, "rb") as f:
        data = bytearray(f.read())
    (length,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + length])
    if name not in header:
        sys.exit("scale_tensor.py: no tensor %r in %s" % (name, path))
    info = header[name]
    begin, end = (8 + length + offset for offset in info["data_offsets"])
    if info["dtype"] == "BF16":
        count = (end - begin) // 2
        halves = struct.unpack_from("<%dH" % count, data, begin)
        scaled = []
        for half in halves:
            (value,) = struct.unpack("<f", struct.pack("<I", half << 16))
            (bits,) = struct.unpack("<I", struct.pack("<f", value * factor))
            scaled.append(bf16_from_f32_bits(bits))
        struct.pack_into("<%dH" % count, data, begin, *scaled)
    elif info["dtype"] == "F32":
        count = (end - begin) // 4
        values = struct.unpack_from("<%df" % count, data, begin)
        struct.pack_into("<%df" % count, data, begin, *[v * factor for v in values])
    else:
        sys.exit("scale_tensor.py: %s is %s; only BF16 and F32 are scaled" %
                 (name, info["dtype"]))
    with open(path, "wb") as f:
        f.write(bytes(data))


if __name__ == "__main__":
    main()
