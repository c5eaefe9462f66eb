#!/usr/bin/env python3
"""Writes a synthetic Mixtral-format checkpoint for the CPU benchmark.

    make_checkpoint.py --shape mixtral-like --layers 2 --out bench/.data/mixtral-like/ckpt

The folder gets config.json (model_type "mixtral", hidden_act silu, dtype bfloat16) and
model.safetensors holding, for every decoder layer L < R (num_hidden_layers = R):

    model.layers.L.block_sparse_moe.gate.weight           [E, H] BF16
    model.layers.L.block_sparse_moe.experts.{e}.w1.weight [I, H] BF16
    model.layers.L.block_sparse_moe.experts.{e}.w3.weight [I, H] BF16
    model.layers.L.block_sparse_moe.experts.{e}.w2.weight [H, I] BF16

Weights are random normal (every layer its own seed): w1, w3 ~ N(0, 1/H), w2 ~ N(0, 1/I),
so with unit-variance hidden states every intermediate is O(1). The router is N(0, s^2/H)
with s = --router-scale (default 2): logits of a unit-variance token then spread with
standard deviation ~s, so the softmax is far from uniform and the k-th and (k+1)-th
experts are well separated (routing is robust to float rounding). Only the MoE tensors are
written; moec reads nothing else. Needs only numpy.
"""

import argparse
import json
import os
import struct
import sys

import numpy as np

SHAPES = {
    # name: (hidden H, expert width I, experts E, top-k)
    "mixtral-like": (1024, 2816, 8, 2),
    "fine-grained": (1024, 384, 64, 8),
}


def to_bf16_bits(x):
    """float32 array -> uint16 bf16 bit patterns, round to nearest even (no NaNs here)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def layer_tensors(layer, H, I, E):
    """(name, shape) of one layer's tensors, in file order."""
    p = f"model.layers.{layer}.block_sparse_moe."
    out = [(p + "gate.weight", [E, H])]
    for e in range(E):
        out.append((p + f"experts.{e}.w1.weight", [I, H]))
        out.append((p + f"experts.{e}.w3.weight", [I, H]))
        out.append((p + f"experts.{e}.w2.weight", [H, I]))
    return out


def write_checkpoint(out, shape, layers, seed=1234, router_scale=2.0):
    H, I, E, k = SHAPES[shape]
    os.makedirs(out, exist_ok=True)
    config = {
        "architectures": ["MixtralForCausalLM"],
        "model_type": "mixtral",
        "hidden_act": "silu",
        "dtype": "bfloat16",
        "torch_dtype": "bfloat16",
        "hidden_size": H,
        "intermediate_size": I,
        "num_local_experts": E,
        "num_experts_per_tok": k,
        "num_hidden_layers": layers,
        "num_attention_heads": 8,
        "num_key_value_heads": 8,
        "head_dim": H // 8,
        "rms_norm_eps": 1e-5,
        "router_jitter_noise": 0.0,
        "output_router_logits": False,
        "vocab_size": 32000,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,
        "moec_bench": {"shape": shape, "seed": seed, "router_scale": router_scale},
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")

    names = [t for L in range(layers) for t in layer_tensors(L, H, I, E)]
    header, offset = {}, 0
    for name, shp in names:
        n = 2 * int(np.prod(shp))
        header[name] = {"dtype": "BF16", "shape": shp, "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    path = os.path.join(out, "model.safetensors")
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for L in range(layers):
            rng = np.random.default_rng([seed, L])
            for name, shp in layer_tensors(L, H, I, E):
                if name.endswith("gate.weight"):
                    std = router_scale / np.sqrt(H)
                elif name.endswith("w2.weight"):
                    std = 1.0 / np.sqrt(I)
                else:
                    std = 1.0 / np.sqrt(H)
                w = rng.standard_normal(shp, dtype=np.float32) * np.float32(std)
                f.write(to_bf16_bits(w).tobytes())
    os.replace(path + ".tmp", path)
    return path, 8 + len(blob) + offset


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--layers", type=int, required=True, help="R: num_hidden_layers")
    ap.add_argument("--out", required=True, help="checkpoint folder to write")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--router-scale", type=float, default=2.0)
    a = ap.parse_args()
    path, size = write_checkpoint(a.out, a.shape, a.layers, a.seed, a.router_scale)
    print(f"{path}: {size / 1e6:.1f} MB ({a.shape}, {a.layers} layers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
