#!/usr/bin/env python3
"""Copies a checkpoint folder and breaks it one way, for the importer's error tests.

    mutate_checkpoint.py SRC DST set-config KEY JSON     # config.json[KEY] = JSON value
    mutate_checkpoint.py SRC DST drop-config KEY
    mutate_checkpoint.py SRC DST drop-tensor NAME        # rewrite its file without NAME
    mutate_checkpoint.py SRC DST remove FILE             # e.g. a shard
    mutate_checkpoint.py SRC DST truncate FILE BYTES     # keep the first BYTES bytes
    mutate_checkpoint.py SRC DST header-length FILE N    # claim an N-byte header

Standard library only.
"""

import json
import os
import shutil
import struct
import sys


def rewrite_without(path, name):
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + length])
    base = 8 + length
    del header[name]
    entries = sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                     key=lambda kv: kv[1]["data_offsets"][0])
    buffer = bytearray()
    for key, info in entries:
        begin, end = info["data_offsets"]
        chunk = data[base + begin:base + end]
        info["data_offsets"] = [len(buffer), len(buffer) + len(chunk)]
        buffer += chunk
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + bytes(buffer))


def main(argv):
    src, dst, action, *args = argv[1:]
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    config_path = os.path.join(dst, "config.json")
    if action in ("set-config", "drop-config"):
        with open(config_path) as f:
            config = json.load(f)
        if action == "set-config":
            config[args[0]] = json.loads(args[1])
        else:
            del config[args[0]]
        with open(config_path, "w") as f:
            json.dump(config, f, indent=2)
    elif action == "drop-tensor":
        index = os.path.join(dst, "model.safetensors.index.json")
        if os.path.exists(index):
            with open(index) as f:
                shard = json.load(f)["weight_map"][args[0]]
        else:
            shard = "model.safetensors"
        rewrite_without(os.path.join(dst, shard), args[0])
    elif action == "remove":
        os.remove(os.path.join(dst, args[0]))
    elif action == "truncate":
        path = os.path.join(dst, args[0])
        with open(path, "r+b") as f:
            f.truncate(int(args[1]))
    elif action == "header-length":
        path = os.path.join(dst, args[0])
        with open(path, "r+b") as f:
            f.write(struct.pack("<Q", int(args[1])))
    else:
        sys.exit("unknown action " + action)


if __name__ == "__main__":
    main(sys.argv)
