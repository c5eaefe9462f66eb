#!/usr/bin/env python3
"""The MoE layer shapes of bench/gpu, as moe dialect modules (one decoder layer each).

The real shapes are too large to carry as checkpoints (DeepSeek-V3's routed experts alone
are 22.5 GB of bf16), so prepare.sh compiles these modules with `moe-compile --layout-only`
and the GPU machine fills the weights with synthetic values (fill_weights.py). The same
generator writes tiny variants of each shape (--tiny) that selfcheck.py compiles with
real checkpoints, so the code paths that read real shapes are tested here at small sizes.

Weight names are the Hugging Face on-disk names of each family (layer 0), so a checkpoint
saved with those names (selfcheck.py writes one) compiles against the module unchanged.

    modules.py --out DIR [--tiny]     # writes DIR/<shape>.mlir for every shape
"""

import argparse
import os

# Real model sizes. `family` picks the transformers block bench_gpu.py compares with.
SHAPES = {
    # Mixtral-8x7B: softmax over 8 experts, top-2 renormalized.
    "mixtral-8x7b": dict(family="mixtral", H=4096, I=14336, E=8, k=2, shared=0),
    # Qwen3-30B-A3B: softmax over 128 experts, top-8 renormalized (norm_topk_prob).
    "qwen3-30b-a3b": dict(family="qwen3_moe", H=2048, I=768, E=128, k=8, shared=0),
    # DeepSeek-V3: sigmoid scores + correction bias, 8 groups of 32 experts, the best 4
    # groups by the sum of their top-2 scores, top-8, normalized (+1e-20), scaled by 2.5,
    # and one always-on shared expert of width 2048. bf16 experts (the checkpoint's FP8
    # would be dequantized to bf16 by moec anyway).
    "deepseek-v3": dict(family="deepseek_v3", H=7168, I=2048, E=256, k=8, shared=2048,
                        n_group=8, topk_group=4, scaling=2.5),
}

# The same structures at toy sizes (same routing, same k where E allows, every
# dimension a multiple of the 64-wide weight panels so nothing is padded).
TINY = {
    "mixtral-8x7b": dict(SHAPES["mixtral-8x7b"], H=128, I=192),
    "qwen3-30b-a3b": dict(SHAPES["qwen3-30b-a3b"], H=128, I=64, E=32),
    "deepseek-v3": dict(SHAPES["deepseek-v3"], H=128, I=64, E=32, shared=64),
}


def weight_names(shape):
    """Hugging Face on-disk names of layer 0's MoE tensors: {role: name}; experts' names
    hold {e} for the expert index."""
    fam = shape["family"]
    if fam == "mixtral":
        p = "model.layers.0.block_sparse_moe."
        return dict(router=p + "gate.weight", gate=p + "experts.{e}.w1.weight",
                    up=p + "experts.{e}.w3.weight", down=p + "experts.{e}.w2.weight")
    p = "model.layers.0.mlp."
    names = dict(router=p + "gate.weight", gate=p + "experts.{e}.gate_proj.weight",
                 up=p + "experts.{e}.up_proj.weight", down=p + "experts.{e}.down_proj.weight")
    if fam == "deepseek_v3":
        names.update(correction_bias=p + "gate.e_score_correction_bias",
                     shared_gate=p + "shared_experts.gate_proj.weight",
                     shared_up=p + "shared_experts.up_proj.weight",
                     shared_down=p + "shared_experts.down_proj.weight")
    return names


def routing_attr(shape):
    k = shape["k"]
    if shape["family"] == "deepseek_v3":
        return ("#moe.routing<scoring = sigmoid, k = %d, selection = group_limited, "
                "normalize = true, norm_epsilon = 1.0e-20, scaling = %s, n_group = %d, "
                "topk_group = %d, group_score = top2_sum, logits_type = f32>"
                % (k, repr(float(shape["scaling"])), shape["n_group"], shape["topk_group"]))
    # Mixtral and Qwen3-MoE (norm_topk_prob = true) route alike.
    return "#moe.routing<scoring = softmax, k = %d, normalize = true, logits_type = f32>" % k


def module_text(name, shape):
    H, I, E, S = shape["H"], shape["I"], shape["E"], shape["shared"]
    n = weight_names(shape)
    t = lambda *dims: "tensor<%sxbf16>" % "x".join(str(d) for d in dims)
    x = "tensor<?x%dxbf16>" % H
    lines = [
        "// %s: one MoE layer (H %d, E %d, expert width %d, top-%d%s), written by"
        % (name, H, E, I, shape["k"], ", shared width %d" % S if S else ""),
        "// bench/gpu/modules.py. Weights are references; compile with --layout-only.",
        "func.func @layer_0(%%x: %s) -> %s {" % (x, x),
        '  %%wg = moe.weight "%s" : %s' % (n["router"], t(E, H)),
    ]
    operands, types = ["%wg"], [t(E, H)]
    router = "router(%wg)"
    if "correction_bias" in n:
        lines.append('  %%cb = moe.weight "%s" : tensor<%dxf32>' % (n["correction_bias"], E))
        router = "router(%wg correction_bias %cb)"
        types.append("tensor<%dxf32>" % E)
    for v, role, dims in (("%g", "gate", (E, I, H)), ("%u", "up", (E, I, H)),
                          ("%d", "down", (E, H, I))):
        lines.append('  %s = moe.weight "%s" experts(%d) : %s' % (v, n[role], E, t(*dims)))
        types.append(t(*dims))
    shared = ""
    if S:
        for v, role, dims in (("%sg", "shared_gate", (S, H)), ("%su", "shared_up", (S, H)),
                              ("%sd", "shared_down", (H, S))):
            lines.append('  %s = moe.weight "%s" : %s' % (v, n[role], t(*dims)))
            types.append(t(*dims))
        shared = " shared(gate %sg up %su down %sd)"
    lines += [
        "  %%y = moe.layer %%x routing %s" % routing_attr(shape),
        "      ffn #moe.ffn<activation = silu>%s"
        % (" shared_ffn #moe.ffn<activation = silu>" if S else ""),
        "      %s experts(gate %%g up %%u down %%d)%s" % (router, shared),
        "      : (%s) -> %s" % (", ".join([x] + types), x),
        "  return %%y : %s" % x,
        "}",
    ]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for <shape>.mlir")
    ap.add_argument("--tiny", action="store_true", help="the toy-sized variants")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for name, shape in (TINY if a.tiny else SHAPES).items():
        path = os.path.join(a.out, name + ".mlir")
        with open(path, "w") as f:
            f.write(module_text(name, shape))
        print(path)


if __name__ == "__main__":
    main()
