"""check_calibration.py CALIB CHECKPOINT_FILE EMBEDDING_NAME: every row of the calibration
file's hidden_states is the checkpoint embedding row of its token_ids entry (bf16 or f32)."""
import json
import struct
import sys


def read(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def values(header, body, name):
    info = header[name]
    a, b = info["data_offsets"]
    raw = body[a:b]
    if info["dtype"] == "F32":
        return info["shape"], list(struct.unpack("<%df" % (len(raw) // 4), raw))
    if info["dtype"] == "I32":
        return info["shape"], list(struct.unpack("<%di" % (len(raw) // 4), raw))
    assert info["dtype"] == "BF16", info["dtype"]
    halves = struct.unpack("<%dH" % (len(raw) // 2), raw)
    return info["shape"], [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in halves]


calib_header, calib = read(sys.argv[1])
ckpt_header, ckpt = read(sys.argv[2])
(tokens, hidden), states = values(calib_header, calib, "hidden_states")
_, ids = values(calib_header, calib, "token_ids")
(vocab, width), table = values(ckpt_header, ckpt, sys.argv[3])
assert width == hidden and len(ids) == tokens
for t, token in enumerate(ids):
    assert 0 <= token < vocab, token
    if states[t * hidden:(t + 1) * hidden] != table[token * width:(token + 1) * width]:
        print("row", t, "is not the embedding of token", token)
        sys.exit(1)
print("%d rows of %d, each its token's embedding" % (tokens, hidden))
