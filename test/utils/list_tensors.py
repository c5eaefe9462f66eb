#!/usr/bin/env python3
"""Lists a safetensors file's tensors, one line each (standard library only).

    list_tensors.py FILE [--prefix P]

Prints `NAME DTYPE [d0, d1, ...] BYTES` in file order for tensors whose name starts with
P, then `total BYTES` over those, so tests can check what a compiled weights file stores.
"""

import argparse
import json
import struct


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--prefix", default="")
    args = parser.parse_args()
    with open(args.path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    entries = [(name, info) for name, info in header.items() if name != "__metadata__"]
    entries.sort(key=lambda entry: entry[1]["data_offsets"][0])
    total = 0
    for name, info in entries:
        if not name.startswith(args.prefix):
            continue
        begin, end = info["data_offsets"]
        total += end - begin
        shape = ", ".join(str(d) for d in info["shape"])
        print("%s %s [%s] %d" % (name, info["dtype"], shape, end - begin))
    print("total %d" % total)


if __name__ == "__main__":
    main()
