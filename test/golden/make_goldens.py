#!/usr/bin/env python3
"""Golden test data for moec's Hugging Face importer and float64 reference evaluator.

For every family below this script builds a TINY random model with transformers' own model and
config classes, saves it in bfloat16 (test/golden/<family>/ckpt/), and runs transformers' own
MoE block module on fixed inputs in float32 and bfloat16 (test/golden/<family>/T<T>/...).
A small, independent numpy float64 reference then recomputes the float32 goldens from the saved
checkpoint files (own safetensors reader, own FP8 / MXFP4 decoders) as a self-check.

    /work/venv-golden/bin/python test/golden/make_goldens.py [--only FAMILY] [--no-selfcheck]

Deterministic: fixed seeds, CPU only, single-threaded torch. See README.md for the layout.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import transformers
from safetensors.torch import load_file, save_file

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

HERE = Path(__file__).resolve().parent
TOKENS = [1, 7, 64]
POOL = 1024               # candidate tokens
TOL_REL = 1e-2            # required selection margin, relative to the score scale (std over the pool)
PHIMOE_MASK_DELTA = 4e-3  # sparsemixer: required |ratio - 2*eps| distance for every mask decision
H = 64
VOCAB = 128
SEED_BASE = 20240611

# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def bf16_round(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).to(t.dtype)


def is_bf16_exact(t: torch.Tensor) -> bool:
    t = t.detach().float()
    return bool(torch.equal(t, t.to(torch.bfloat16).float()))


class Rng:
    """Deterministic generator (torch.Generator based)."""

    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(seed)

    def randn(self, *shape, std=1.0):
        return torch.randn(*shape, generator=self.g, dtype=torch.float32) * std

    def uniform(self, *shape, lo=0.0, hi=1.0):
        return torch.rand(*shape, generator=self.g, dtype=torch.float32) * (hi - lo) + lo


# --------------------------------------------------------------------------------------------
# FP8 (e4m3, block-scaled) and MXFP4 quantizers used to MAKE the quantized checkpoints
# --------------------------------------------------------------------------------------------

FP8_BS = 32


def _round_up_4bit(s: torch.Tensor) -> torch.Tensor:
    """Round positive values UP to a 4-significant-bit number (so fp8(4 bit) * s is bf16-exact)."""
    m, e = torch.frexp(s.double())  # s = m * 2**e, m in [0.5, 1)
    m4 = torch.ceil(m * 16.0) / 16.0
    return torch.ldexp(m4, e).float()


def fp8_block_quantize(w: torch.Tensor, bs: int = FP8_BS):
    """w [R, C] float32 -> (q float8_e4m3fn [R, C], scale_inv f32 [ceil(R/bs), ceil(C/bs)], deq f32 [R, C]).

    W = q * scale_inv[i // bs, j // bs]; partial edge blocks allowed."""
    R, C = w.shape
    nr, nc = math.ceil(R / bs), math.ceil(C / bs)
    s = torch.empty(nr, nc, dtype=torch.float32)
    q = torch.empty(R, C, dtype=torch.float8_e4m3fn)
    for bi in range(nr):
        for bj in range(nc):
            blk = w[bi * bs:(bi + 1) * bs, bj * bs:(bj + 1) * bs]
            amax = blk.abs().max().clamp(min=1e-12)
            sc = _round_up_4bit((amax / 448.0).reshape(1))[0]
            s[bi, bj] = sc
            q[bi * bs:(bi + 1) * bs, bj * bs:(bj + 1) * bs] = (blk / sc).clamp(-448, 448).to(torch.float8_e4m3fn)
    s_full = s.repeat_interleave(bs, 0).repeat_interleave(bs, 1)[:R, :C]
    deq = q.float() * s_full
    assert is_bf16_exact(deq)
    return q, s, deq


FP4_LUT = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])


def mxfp4_quantize(w: torch.Tensor):
    """w [..., C] float32, C % 32 == 0 -> (blocks u8 [..., C/32, 16], scales u8 [..., C/32], deq f32 [..., C]).

    Element 2j of a 32-block is the LOW nibble of byte j, element 2j+1 the HIGH nibble;
    value = FP4_LUT[nibble] * 2**(scale - 127)."""
    *lead, C = w.shape
    assert C % 32 == 0
    wb = w.reshape(*lead, C // 32, 32)
    amax = wb.abs().amax(-1).clamp(min=2.0 ** -100)
    e = torch.floor(torch.log2(amax)) - 2  # amax / 2**e in [4, 8)
    e = e.clamp(-127, 127)
    scaled = wb / torch.exp2(e)[..., None]
    mags = FP4_LUT[:8]
    idx = (scaled.abs()[..., None] - mags).abs().argmin(-1)  # nearest magnitude (ties -> smaller)
    sign = ((scaled < 0) & (idx > 0)).to(torch.int64)
    nib = (idx | (sign << 3)).to(torch.uint8)
    deq = (FP4_LUT[nib.long()] * torch.exp2(e)[..., None]).reshape(*lead, C)
    blocks = (nib[..., 0::2] | (nib[..., 1::2] << 4)).to(torch.uint8)
    scales = (e + 127).to(torch.uint8)
    return blocks.contiguous(), scales.contiguous(), deq


# --------------------------------------------------------------------------------------------
# Family definitions
# --------------------------------------------------------------------------------------------


class Family:
    name = ""
    seed_offset = 0
    k = 0
    num_experts = 0
    kind = ""                 # selection rule, see analyse_selection()
    router_logit_std = 1.5
    pool = POOL               # candidate tokens drawn
    topk_sorted = True        # torch.topk(sorted=True) in transformers' router
    quant = None              # None | "fp8" | "mxfp4"
    shard_size = None

    # --- model construction
    def config(self):
        raise NotImplementedError

    def model_class(self):
        raise NotImplementedError

    def layers(self, model):
        return model.model.layers

    def block(self, model, L):
        return self.layers(model)[L].mlp

    def router(self, block):
        return block.gate

    def moe_block_class(self):
        raise NotImplementedError

    def expected_moe_layers(self, cfg):
        """The family's layer rule, written from the modeling code (cross-checked against the model)."""
        return list(range(cfg.num_hidden_layers))

    def parse_router(self, out):
        """-> (logits, ids, weights) as transformers' router returned them."""
        logits, weights, ids = out
        return logits, ids, weights

    def init_block(self, block, rng: Rng):
        """Reset the MoE block's parameters to well-scaled random values (bf16-rounded later)."""
        for name, p in block.named_parameters():
            p.data.copy_(self.init_param(name, p, rng))

    def init_param(self, name, p, rng):
        shape = tuple(p.shape)
        leaf = name.rsplit(".", 1)[-1]
        if name in ("gate.weight", "router.weight", "router.layer.weight"):
            return rng.randn(*shape, std=self.router_logit_std / math.sqrt(shape[-1]))
        if name.endswith("bias"):
            return rng.randn(*shape, std=0.3)
        if leaf == "gate_up_proj":
            return rng.randn(*shape, std=1.0 / math.sqrt(shape[-1]))
        if leaf == "down_proj":
            return rng.randn(*shape, std=1.0 / math.sqrt(shape[-1]))
        if len(shape) == 2:  # nn.Linear [out, in] (shared experts, shared_expert_gate)
            return rng.randn(*shape, std=1.0 / math.sqrt(shape[-1]))
        raise RuntimeError(f"{self.name}: no init rule for {name} {shape}")

    # --- numpy reference (float64), from checkpoint tensors
    def ref_block(self, ck, cfg, L, x):
        raise NotImplementedError

    notes = ""
    facts: list = []


DENSE_I = 40  # width of the dense (non-MoE) MLP layers: distinct from every expert width


def _base(**kw):
    # 2 attention heads of head_dim 8 (attention is irrelevant here; small keeps the checkpoints small)
    d = dict(vocab_size=VOCAB, hidden_size=H, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
             max_position_embeddings=128)
    d.update(kw)
    return d


# ---------------------------------------------------------------- numpy reference helpers


def np_silu(x):
    return x / (1.0 + np.exp(-x))


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_softmax(x, axis=-1):
    m = x.max(axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / e.sum(axis=axis, keepdims=True)


def np_topk_desc(s, k):
    order = np.argsort(-s, axis=-1, kind="stable")[..., :k]
    return order, np.take_along_axis(s, order, -1)


def np_swiglu_experts(x, ids, w, Wg, Wu, Wd):
    """out[t] = sum_j w[t,j] * Wd[e] @ (silu(Wg[e] @ x) * (Wu[e] @ x)), e = ids[t,j]."""
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        for j in range(ids.shape[1]):
            e = ids[t, j]
            h = np_silu(Wg[e] @ x[t]) * (Wu[e] @ x[t])
            out[t] += w[t, j] * (Wd[e] @ h)
    return out


def np_mlp(x, Wg, Wu, Wd):
    return (np_silu(x @ Wg.T) * (x @ Wu.T)) @ Wd.T


def cfg_get(cfg, *names):
    """First present key: transformers 5.x writes e.g. qwen3_moe's expert count as num_local_experts while
    the real Qwen3-MoE checkpoints say num_experts (attribute_map aliases)."""
    for n in names:
        if n in cfg and cfg[n] is not None:
            return cfg[n]
    raise KeyError(names)


def stack_experts(ck, fmt, E):
    return np.stack([ck[fmt.format(e=e)] for e in range(E)])


# ---------------------------------------------------------------- Mixtral


class Mixtral(Family):
    name = "mixtral"
    seed_offset = 1
    k = 2
    num_experts = 8
    kind = "topk"

    def config(self):
        from transformers import MixtralConfig
        return MixtralConfig(**_base(intermediate_size=32, num_hidden_layers=2, num_local_experts=8,
                                     num_experts_per_tok=2))

    def model_class(self):
        from transformers import MixtralForCausalLM
        return MixtralForCausalLM

    def moe_block_class(self):
        from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock
        return MixtralSparseMoeBlock

    def ref_block(self, ck, cfg, L, x):
        p = f"model.layers.{L}.block_sparse_moe."
        E, k = cfg["num_local_experts"], cfg["num_experts_per_tok"]
        prob = np_softmax(x @ ck[p + "gate.weight"].T)
        ids, w = np_topk_desc(prob, k)
        w = w / w.sum(-1, keepdims=True)
        Wg = stack_experts(ck, p + "experts.{e}.w1.weight", E)
        Wu = stack_experts(ck, p + "experts.{e}.w3.weight", E)
        Wd = stack_experts(ck, p + "experts.{e}.w2.weight", E)
        return np_swiglu_experts(x, ids, w, Wg, Wu, Wd), ids, w


# ---------------------------------------------------------------- Qwen2-MoE


class Qwen2Moe(Family):
    name = "qwen2_moe"
    seed_offset = 2
    k = 4
    num_experts = 8
    kind = "topk"
    shard_size = "150KB"

    def config(self):
        from transformers import Qwen2MoeConfig
        return Qwen2MoeConfig(**_base(intermediate_size=DENSE_I, moe_intermediate_size=32,
                                      shared_expert_intermediate_size=64, num_hidden_layers=4, num_experts=8,
                                      num_experts_per_tok=4, norm_topk_prob=False, decoder_sparse_step=2,
                                      mlp_only_layers=[]))

    def model_class(self):
        from transformers import Qwen2MoeForCausalLM
        return Qwen2MoeForCausalLM

    def moe_block_class(self):
        from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeSparseMoeBlock
        return Qwen2MoeSparseMoeBlock

    def expected_moe_layers(self, cfg):
        return [L for L in range(cfg.num_hidden_layers)
                if L not in cfg.mlp_only_layers and cfg.num_experts > 0 and (L + 1) % cfg.decoder_sparse_step == 0]

    def ref_block(self, ck, cfg, L, x):
        p = f"model.layers.{L}.mlp."
        E, k = cfg_get(cfg, "num_experts", "num_local_experts"), cfg["num_experts_per_tok"]
        prob = np_softmax(x @ ck[p + "gate.weight"].T)
        ids, w = np_topk_desc(prob, k)
        if cfg["norm_topk_prob"]:
            w = w / w.sum(-1, keepdims=True)
        Wg = stack_experts(ck, p + "experts.{e}.gate_proj.weight", E)
        Wu = stack_experts(ck, p + "experts.{e}.up_proj.weight", E)
        Wd = stack_experts(ck, p + "experts.{e}.down_proj.weight", E)
        out = np_swiglu_experts(x, ids, w, Wg, Wu, Wd)
        sh = np_mlp(x, ck[p + "shared_expert.gate_proj.weight"], ck[p + "shared_expert.up_proj.weight"],
                    ck[p + "shared_expert.down_proj.weight"])
        out = out + np_sigmoid(x @ ck[p + "shared_expert_gate.weight"].T) * sh
        return out, ids, w


# ---------------------------------------------------------------- Qwen3-MoE


class Qwen3Moe(Qwen2Moe):
    name = "qwen3_moe"
    seed_offset = 3
    k = 3
    num_experts = 8
    shard_size = None

    def config(self):
        from transformers import Qwen3MoeConfig
        return Qwen3MoeConfig(**_base(intermediate_size=DENSE_I, moe_intermediate_size=32, num_hidden_layers=3,
                                      num_experts=8, num_experts_per_tok=3, norm_topk_prob=True,
                                      decoder_sparse_step=1, mlp_only_layers=[1]))

    def model_class(self):
        from transformers import Qwen3MoeForCausalLM
        return Qwen3MoeForCausalLM

    def moe_block_class(self):
        from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock
        return Qwen3MoeSparseMoeBlock

    def ref_block(self, ck, cfg, L, x):
        p = f"model.layers.{L}.mlp."
        E, k = cfg_get(cfg, "num_experts", "num_local_experts"), cfg["num_experts_per_tok"]
        prob = np_softmax(x @ ck[p + "gate.weight"].T)
        ids, w = np_topk_desc(prob, k)
        if cfg["norm_topk_prob"]:
            w = w / w.sum(-1, keepdims=True)
        Wg = stack_experts(ck, p + "experts.{e}.gate_proj.weight", E)
        Wu = stack_experts(ck, p + "experts.{e}.up_proj.weight", E)
        Wd = stack_experts(ck, p + "experts.{e}.down_proj.weight", E)
        return np_swiglu_experts(x, ids, w, Wg, Wu, Wd), ids, w


# ---------------------------------------------------------------- OLMoE


class Olmoe(Qwen3Moe):
    name = "olmoe"
    seed_offset = 4
    k = 4
    num_experts = 8

    def config(self):
        from transformers import OlmoeConfig
        d = _base(intermediate_size=32, num_hidden_layers=2, num_experts=8, num_experts_per_tok=4,
                  norm_topk_prob=False, eos_token_id=2)
        del d["head_dim"]  # OLMoE's q_norm/k_norm assume heads * head_dim == hidden_size
        return OlmoeConfig(**d)

    def model_class(self):
        from transformers import OlmoeForCausalLM
        return OlmoeForCausalLM

    def moe_block_class(self):
        from transformers.models.olmoe.modeling_olmoe import OlmoeSparseMoeBlock
        return OlmoeSparseMoeBlock

    def expected_moe_layers(self, cfg):
        return list(range(cfg.num_hidden_layers))  # every OLMoE layer is MoE (no rule in the code)


# ---------------------------------------------------------------- DeepSeek-V2


_MLA = dict(kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8, num_key_value_heads=2)


class DeepseekV2(Family):
    name = "deepseek_v2"
    seed_offset = 5
    k = 4
    num_experts = 16
    kind = "v2_group"
    topk_sorted = False

    def config(self):
        from transformers import DeepseekV2Config
        return DeepseekV2Config(**_base(**_MLA, q_lora_rank=32, intermediate_size=DENSE_I, moe_intermediate_size=32,
                                        num_hidden_layers=2, n_routed_experts=16, num_experts_per_tok=4,
                                        n_group=4, topk_group=2, topk_method="group_limited_greedy",
                                        routed_scaling_factor=16.0, n_shared_experts=2, first_k_dense_replace=1,
                                        norm_topk_prob=False))

    def model_class(self):
        from transformers import DeepseekV2ForCausalLM
        return DeepseekV2ForCausalLM

    def moe_block_class(self):
        from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2Moe
        return DeepseekV2Moe

    def expected_moe_layers(self, cfg):
        return [L for L in range(cfg.num_hidden_layers) if L >= cfg.first_k_dense_replace]

    def ref_route(self, cfg, logits):
        E, k = cfg["n_routed_experts"], cfg["num_experts_per_tok"]
        prob = np_softmax(logits)
        if cfg["topk_method"] == "group_limited_greedy":
            G, tg = cfg["n_group"], cfg["topk_group"]
            gs = prob.reshape(-1, G, E // G).max(-1)
            gidx, _ = np_topk_desc(gs, tg)
            keep = np.zeros_like(gs, dtype=bool)
            np.put_along_axis(keep, gidx, True, -1)
            prob_sel = np.where(np.repeat(keep, E // G, axis=-1), prob, 0.0)
        else:
            prob_sel = prob
        ids, _ = np_topk_desc(prob_sel, k)
        w = np.take_along_axis(prob, ids, -1) * cfg["routed_scaling_factor"]
        return ids, w

    def ref_block(self, ck, cfg, L, x):
        p = f"model.layers.{L}.mlp."
        E = cfg["n_routed_experts"]
        ids, w = self.ref_route(cfg, x @ ck[p + "gate.weight"].T)
        Wg = stack_experts(ck, p + "experts.{e}.gate_proj.weight", E)
        Wu = stack_experts(ck, p + "experts.{e}.up_proj.weight", E)
        Wd = stack_experts(ck, p + "experts.{e}.down_proj.weight", E)
        out = np_swiglu_experts(x, ids, w, Wg, Wu, Wd)
        out += np_mlp(x, ck[p + "shared_experts.gate_proj.weight"], ck[p + "shared_experts.up_proj.weight"],
                      ck[p + "shared_experts.down_proj.weight"])
        return out, ids, w


class DeepseekV2Lite(DeepseekV2):
    name = "deepseek_v2_lite"
    seed_offset = 6
    k = 3
    num_experts = 8
    kind = "topk"

    def config(self):
        from transformers import DeepseekV2Config
        return DeepseekV2Config(**_base(**_MLA, q_lora_rank=None, intermediate_size=DENSE_I, moe_intermediate_size=32,
                                        num_hidden_layers=2, n_routed_experts=8, num_experts_per_tok=3,
                                        topk_method="greedy", routed_scaling_factor=1.0, n_shared_experts=2,
                                        first_k_dense_replace=1, norm_topk_prob=False))


# ---------------------------------------------------------------- DeepSeek-V3


class DeepseekV3Bf16(Family):
    name = "deepseek_v3_bf16"
    seed_offset = 8
    k = 4
    num_experts = 16
    kind = "v3"
    topk_sorted = False
    router_logit_std = 1.5
    bias_std = 0.1

    def config(self):
        from transformers import DeepseekV3Config
        return DeepseekV3Config(**_base(**_MLA, q_lora_rank=32, intermediate_size=DENSE_I, moe_intermediate_size=48,
                                        num_hidden_layers=2, n_routed_experts=16, num_experts_per_tok=4,
                                        n_group=4, topk_group=2, norm_topk_prob=True, routed_scaling_factor=2.5,
                                        n_shared_experts=1, first_k_dense_replace=1,
                                        topk_method="noaux_tc", scoring_func="sigmoid"))

    def model_class(self):
        from transformers import DeepseekV3ForCausalLM
        return DeepseekV3ForCausalLM

    def moe_block_class(self):
        from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE
        return DeepseekV3MoE

    def expected_moe_layers(self, cfg):
        return [L for L in range(cfg.num_hidden_layers) if L >= cfg.first_k_dense_replace]

    def init_block(self, block, rng):
        super().init_block(block, rng)
        b = block.gate.e_score_correction_bias
        b.data.copy_(rng.randn(*b.shape, std=self.bias_std))

    def ref_route(self, cfg, logits, bias):
        E, k, G, tg = cfg["n_routed_experts"], cfg["num_experts_per_tok"], cfg["n_group"], cfg["topk_group"]
        s = np_sigmoid(logits)
        c = s + bias
        gs = np.sort(c.reshape(-1, G, E // G), axis=-1)[..., -2:].sum(-1)
        gidx, _ = np_topk_desc(gs, tg)
        keep = np.zeros_like(gs, dtype=bool)
        np.put_along_axis(keep, gidx, True, -1)
        c = np.where(np.repeat(keep, E // G, axis=-1), c, -np.inf)
        ids, _ = np_topk_desc(c, k)
        w = np.take_along_axis(s, ids, -1)
        if cfg["norm_topk_prob"]:
            w = w / (w.sum(-1, keepdims=True) + 1e-20)
        return ids, w * cfg["routed_scaling_factor"]

    def ref_block(self, ck, cfg, L, x):
        p = f"model.layers.{L}.mlp."
        E = cfg["n_routed_experts"]
        ids, w = self.ref_route(cfg, x @ ck[p + "gate.weight"].T, ck[p + "gate.e_score_correction_bias"])
        Wg = stack_experts(ck, p + "experts.{e}.gate_proj.weight", E)
        Wu = stack_experts(ck, p + "experts.{e}.up_proj.weight", E)
        Wd = stack_experts(ck, p + "experts.{e}.down_proj.weight", E)
        out = np_swiglu_experts(x, ids, w, Wg, Wu, Wd)
        out += np_mlp(x, ck[p + "shared_experts.gate_proj.weight"], ck[p + "shared_experts.up_proj.weight"],
                      ck[p + "shared_experts.down_proj.weight"])
        return out, ids, w


class DeepseekV3Fp8(DeepseekV3Bf16):
    name = "deepseek_v3"
    seed_offset = 7
    quant = "fp8"
    quantization_config = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                           "weight_block_size": [FP8_BS, FP8_BS]}

    def fp8_targets(self, moe_layers, E):
        """On-disk names of the FP8 tensors (MoE layers' routed + shared expert projections)."""
        names = []
        for L in moe_layers:
            p = f"model.layers.{L}.mlp."
            for e in range(E):
                names += [p + f"experts.{e}.{n}_proj.weight" for n in ("gate", "up", "down")]
            names += [p + f"shared_experts.{n}_proj.weight" for n in ("gate", "up", "down")]
        return names


# ---------------------------------------------------------------- PhiMoE


class Phimoe(Family):
    name = "phimoe"
    seed_offset = 9
    k = 2
    num_experts = 8
    kind = "phimoe"
    router_logit_std = 1.0
    pool = 8192   # tokens whose sparsemixer masks keep >1 expert are rare (need a near tie within 2*eps)

    def config(self):
        from transformers import PhimoeConfig
        return PhimoeConfig(**_base(intermediate_size=32, num_hidden_layers=2, num_local_experts=8,
                                    num_experts_per_tok=2, router_jitter_noise=0.01, input_jitter_noise=0.0))

    def model_class(self):
        from transformers import PhimoeForCausalLM
        return PhimoeForCausalLM

    def router(self, block):
        return block.router

    def moe_block_class(self):
        from transformers.models.phimoe.modeling_phimoe import PhimoeSparseMoeBlock
        return PhimoeSparseMoeBlock

    @staticmethod
    def np_sparsemixer(s, eps):
        """float64 sparsemixer (inference branch), s [T, E] logits -> ids [T,2], w [T,2], info."""
        T, E = s.shape
        ids = np.zeros((T, 2), dtype=np.int64)
        w = np.zeros((T, 2))
        for t in range(T):
            st = s[t]
            i1 = int(np.argmax(st))
            m1 = st[i1]
            mask1 = (m1 - st) / np.maximum(np.abs(st), m1) > 2 * eps
            g1 = np_softmax(np.where(mask1, -np.inf, st))
            s2 = st.copy()
            s2[i1] = -np.inf
            i2 = int(np.argmax(s2))
            m2 = s2[i2]
            mask2 = (m2 - st) / np.maximum(np.abs(st), m2) > 2 * eps
            g2 = np_softmax(np.where(mask2, -np.inf, s2))
            ids[t] = (i1, i2)
            w[t] = (g1[i1], g2[i2])
        return ids, w

    def ref_block(self, ck, cfg, L, x):
        p = f"model.layers.{L}.block_sparse_moe."
        E = cfg["num_local_experts"]
        ids, w = self.np_sparsemixer(x @ ck[p + "gate.weight"].T, cfg["router_jitter_noise"])
        Wg = stack_experts(ck, p + "experts.{e}.w1.weight", E)
        Wu = stack_experts(ck, p + "experts.{e}.w3.weight", E)
        Wd = stack_experts(ck, p + "experts.{e}.w2.weight", E)
        return np_swiglu_experts(x, ids, w, Wg, Wu, Wd), ids, w


# ---------------------------------------------------------------- GPT-OSS


class GptOssBf16(Family):
    name = "gpt_oss_bf16"
    seed_offset = 11
    k = 4
    num_experts = 8
    kind = "topk"
    gate_up_std = 0.4     # large enough that the swiglu clamps (limit 7) are exercised

    def config(self):
        from transformers import GptOssConfig
        return GptOssConfig(**_base(intermediate_size=64, num_hidden_layers=2, num_local_experts=8,
                                    num_experts_per_tok=4, sliding_window=16))

    def model_class(self):
        from transformers import GptOssForCausalLM
        return GptOssForCausalLM

    def router(self, block):
        return block.router

    def moe_block_class(self):
        from transformers.models.gpt_oss.modeling_gpt_oss import GptOssMLP
        return GptOssMLP

    def init_param(self, name, p, rng):
        shape = tuple(p.shape)
        if name == "experts.gate_up_proj":  # [E, H, 2I] (x @ W)
            return rng.randn(*shape, std=self.gate_up_std)
        if name == "experts.down_proj":     # [E, I, H] (x @ W)
            return rng.randn(*shape, std=1.0 / math.sqrt(shape[1]))
        return super().init_param(name, p, rng)

    @staticmethod
    def np_experts(x, ids, w, Wgu, bgu, Wd, bd, limit, alpha):
        """Wgu [E, 2I, H] (rows interleaved gate/up), bgu [E, 2I], Wd [E, H, I], bd [E, H]."""
        out = np.zeros_like(x)
        for t in range(x.shape[0]):
            for j in range(ids.shape[1]):
                e = ids[t, j]
                gu = Wgu[e] @ x[t] + bgu[e]
                gate, up = gu[0::2], gu[1::2]
                gate = np.minimum(gate, limit)
                up = np.clip(up, -limit, limit)
                h = (up + 1.0) * (gate * np_sigmoid(alpha * gate))
                out[t] += w[t, j] * (Wd[e] @ h + bd[e])
        return out

    def ref_route(self, ck, cfg, L, x):
        p = f"model.layers.{L}.mlp."
        logits = x @ ck[p + "router.weight"].T + ck[p + "router.bias"]
        ids, top = np_topk_desc(logits, cfg["num_experts_per_tok"])
        return ids, np_softmax(top)

    def ref_block(self, ck, cfg, L, x):
        p = f"model.layers.{L}.mlp.experts."
        ids, w = self.ref_route(ck, cfg, L, x)
        Wgu = ck[p + "gate_up_proj"].transpose(0, 2, 1)  # on disk [E, H, 2I] (in-memory layout)
        Wd = ck[p + "down_proj"].transpose(0, 2, 1)      # on disk [E, I, H]
        out = self.np_experts(x, ids, w, Wgu, ck[p + "gate_up_proj_bias"], Wd, ck[p + "down_proj_bias"],
                              cfg["swiglu_limit"], cfg["swiglu_alpha"])
        return out, ids, w


class GptOssMxfp4(GptOssBf16):
    name = "gpt_oss"
    seed_offset = 10
    quant = "mxfp4"
    quantization_config = {"modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                      "model.embed_tokens", "lm_head"],
                           "quant_method": "mxfp4"}

    def ref_block(self, ck, cfg, L, x):
        p = f"model.layers.{L}.mlp.experts."
        ids, w = self.ref_route(ck, cfg, L, x)
        Wgu = np_mxfp4_dequant(ck[p + "gate_up_proj_blocks"], ck[p + "gate_up_proj_scales"])  # [E, 2I, H]
        Wd = np_mxfp4_dequant(ck[p + "down_proj_blocks"], ck[p + "down_proj_scales"])         # [E, H, I]
        out = self.np_experts(x, ids, w, Wgu, ck[p + "gate_up_proj_bias"], Wd, ck[p + "down_proj_bias"],
                              cfg["swiglu_limit"], cfg["swiglu_alpha"])
        return out, ids, w


# ---------------------------------------------------------------- Granite-MoE


class GraniteMoe(Family):
    name = "granitemoe"
    seed_offset = 12
    k = 2
    num_experts = 8
    kind = "topk"

    def config(self):
        from transformers import GraniteMoeConfig
        return GraniteMoeConfig(**_base(intermediate_size=32, num_hidden_layers=2, num_local_experts=8,
                                        num_experts_per_tok=2, embedding_multiplier=12.0, residual_multiplier=0.22,
                                        attention_multiplier=0.0078125, logits_scaling=8.0))

    def model_class(self):
        from transformers import GraniteMoeForCausalLM
        return GraniteMoeForCausalLM

    def block(self, model, L):
        return self.layers(model)[L].block_sparse_moe

    def router(self, block):
        return block.router

    def moe_block_class(self):
        from transformers.models.granitemoe.modeling_granitemoe import GraniteMoeMoE
        return GraniteMoeMoE

    def ref_block(self, ck, cfg, L, x):
        p = f"model.layers.{L}.block_sparse_moe."
        I = cfg["intermediate_size"]
        logits = x @ ck[p + "router.layer.weight"].T
        ids, top = np_topk_desc(logits, cfg["num_experts_per_tok"])
        w = np_softmax(top)
        Win = ck[p + "input_linear.weight"]   # [E, 2I, H]: rows [0:I] gate, [I:2I] up
        Wout = ck[p + "output_linear.weight"]  # [E, H, I]
        return np_swiglu_experts(x, ids, w, Win[:, :I], Win[:, I:], Wout), ids, w


# ---------------------------------------------------------------- Llama-4


class Llama4(Family):
    name = "llama4"
    seed_offset = 13
    k = 1
    num_experts = 8
    kind = "topk"

    def config(self):
        from transformers import Llama4Config
        tc = _base(intermediate_size=32, intermediate_size_mlp=DENSE_I, num_hidden_layers=4,
                   num_local_experts=8, num_experts_per_tok=1, interleave_moe_layer_step=2)
        vc = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=8,
                  patch_size=4, vision_output_dim=16, projector_input_dim=16, projector_output_dim=64)
        return Llama4Config(vision_config=vc, text_config=tc)

    def model_class(self):
        from transformers import Llama4ForConditionalGeneration
        return Llama4ForConditionalGeneration

    def layers(self, model):
        return model.language_model.model.layers

    def block(self, model, L):
        return self.layers(model)[L].feed_forward

    def router(self, block):
        return block.router

    def moe_block_class(self):
        from transformers.models.llama4.modeling_llama4 import Llama4TextMoe
        return Llama4TextMoe

    def expected_moe_layers(self, cfg):
        tc = cfg.text_config
        return list(range(tc.interleave_moe_layer_step - 1, tc.num_hidden_layers, tc.interleave_moe_layer_step))

    def parse_router(self, out):
        scores, logits = out
        ids = torch.topk(logits, self.k, dim=1).indices  # the same call Llama4Router makes
        return logits, ids, scores.gather(1, ids)

    def init_param(self, name, p, rng):
        shape = tuple(p.shape)
        if name == "experts.gate_up_proj":  # [E, H, 2I] (x @ W), first half gate
            return rng.randn(*shape, std=1.0 / math.sqrt(shape[1]))
        if name == "experts.down_proj":     # [E, I, H]
            return rng.randn(*shape, std=1.0 / math.sqrt(shape[1]))
        return super().init_param(name, p, rng)

    def ref_block(self, ck, cfg, L, x):
        p = f"language_model.model.layers.{L}.feed_forward."
        tc = cfg["text_config"]
        I = tc["intermediate_size"]
        logits = x @ ck[p + "router.weight"].T
        ids, top = np_topk_desc(logits, tc["num_experts_per_tok"])
        w = np_sigmoid(top)
        Wgu = ck[p + "experts.gate_up_proj"]  # [E, H, 2I]
        Wd = ck[p + "experts.down_proj"]      # [E, I, H]
        out = np_mlp(x, ck[p + "shared_expert.gate_proj.weight"], ck[p + "shared_expert.up_proj.weight"],
                     ck[p + "shared_expert.down_proj.weight"])
        for t in range(x.shape[0]):
            for j in range(ids.shape[1]):
                e = ids[t, j]
                xin = x[t] * w[t, j]          # the routing weight scales the expert INPUT
                gu = xin @ Wgu[e]
                out[t] += (gu[I:] * np_silu(gu[:I])) @ Wd[e]
        return out, ids, w


FAMILIES = [Mixtral(), Qwen2Moe(), Qwen3Moe(), Olmoe(), DeepseekV2(), DeepseekV2Lite(), DeepseekV3Fp8(),
            DeepseekV3Bf16(), Phimoe(), GptOssMxfp4(), GptOssBf16(), GraniteMoe(), Llama4()]
BY_NAME = {f.name: f for f in FAMILIES}

# --------------------------------------------------------------------------------------------
# independent safetensors reader + FP8 / MXFP4 decoders (numpy) for the self-check
# --------------------------------------------------------------------------------------------


def _e4m3_table():
    t = np.zeros(256)
    for b in range(256):
        s, e, m = b >> 7, (b >> 3) & 15, b & 7
        if e == 15 and m == 7:
            v = np.nan
        elif e == 0:
            v = (m / 8.0) * 2.0 ** -6
        else:
            v = (1.0 + m / 8.0) * 2.0 ** (e - 7)
        t[b] = -v if s else v
    return t


E4M3 = _e4m3_table()
NP_FP4 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])


def read_safetensors_np(path):
    """Minimal reader: float types -> float64 arrays, integer types -> integer arrays."""
    data = Path(path).read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    hdr = json.loads(data[8:8 + n])
    base = 8 + n
    out, dtypes = {}, {}
    for name, info in hdr.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = data[base + b:base + e]
        dt, shape = info["dtype"], info["shape"]
        if dt == "BF16":
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        elif dt == "F32":
            a = np.frombuffer(raw, "<f4").astype(np.float64)
        elif dt == "F8_E4M3":
            a = E4M3[np.frombuffer(raw, np.uint8)]
        elif dt == "U8":
            a = np.frombuffer(raw, np.uint8).copy()
        elif dt == "I32":
            a = np.frombuffer(raw, "<i4").copy()
        else:
            raise ValueError(f"{path}: dtype {dt} not handled")
        out[name] = a.reshape(shape)
        dtypes[name] = dt
    return out, dtypes


def read_checkpoint_np(ckdir):
    ckdir = Path(ckdir)
    idx = ckdir / "model.safetensors.index.json"
    files = sorted(set(json.loads(idx.read_text())["weight_map"].values())) if idx.exists() else ["model.safetensors"]
    ck, dts = {}, {}
    for fn in files:
        a, d = read_safetensors_np(ckdir / fn)
        ck.update(a)
        dts.update(d)
    # FP8: W = fp8 * scale_inv[i // bs, j // bs]
    cfg = json.loads((ckdir / "config.json").read_text())
    qc = cfg.get("quantization_config", {})
    if qc.get("quant_method") == "fp8":
        br, bc = qc["weight_block_size"]
        for name in [n for n in ck if n + "_scale_inv" in ck]:
            w, s = ck[name], ck[name + "_scale_inv"]
            R, C = w.shape
            assert s.shape == (math.ceil(R / br), math.ceil(C / bc)), (name, s.shape)
            ck[name] = w * np.repeat(np.repeat(s, br, 0), bc, 1)[:R, :C]
    return ck, dts, cfg


def np_mxfp4_dequant(blocks, scales):
    """blocks u8 [..., G, 16], scales u8 [..., G] -> [..., G*32] float64 (low nibble = even element)."""
    lo = NP_FP4[blocks & 0x0F]
    hi = NP_FP4[blocks >> 4]
    vals = np.stack([lo, hi], axis=-1).reshape(*blocks.shape[:-1], 32)
    vals = vals * np.exp2(scales.astype(np.float64) - 127.0)[..., None]
    return vals.reshape(*blocks.shape[:-2], blocks.shape[-2] * 32)


# --------------------------------------------------------------------------------------------
# routing analysis (margins in the family's selection space)
# --------------------------------------------------------------------------------------------


def _gaps_topk(s, k):
    """s [N, E] -> (order [N, k], min gap over adjacent pairs 1..k+1 (orders the top k and separates k/k+1))."""
    order = np.argsort(-s, axis=1, kind="stable")
    ss = np.take_along_axis(s, order, 1)
    return order[:, :k], (ss[:, :k] - ss[:, 1:k + 1]).min(1)


def _group_limited(c, G, tg, k, group_score):
    N, E = c.shape
    gs = group_score(c.reshape(N, G, E // G))
    gorder = np.argsort(-gs, axis=1, kind="stable")
    gss = np.take_along_axis(gs, gorder, 1)
    ggap = gss[:, tg - 1] - gss[:, tg]
    keep = np.zeros_like(gs, dtype=bool)
    np.put_along_axis(keep, gorder[:, :tg], True, 1)
    cm = np.where(np.repeat(keep, E // G, axis=1), c, -np.inf)
    order = np.argsort(-cm, axis=1, kind="stable")
    ss = np.take_along_axis(cm, order, 1)
    egap = (ss[:, :k] - ss[:, 1:k + 1]).min(1)
    return order[:, :k], np.minimum(ggap, egap), ggap, egap


def analyse_selection(fam, cfg, logits32, block32):
    """Return dict(ids [N,k] (selection order of the rule), margin_rel [N], ok [N], extra...) from float32 logits."""
    s = logits32.double().numpy()
    k = fam.k
    res = {}
    if fam.kind == "topk":          # softmax->topk (monotone in the logits) or topk->softmax/sigmoid
        ids, gap = _gaps_topk(s, k)
        scale = s.std()
    elif fam.kind == "v2_group":    # softmax, group score = max in group; logits are monotone in the probs
        ids, gap, ggap, egap = _group_limited(s, cfg.n_group, cfg.topk_group, k, lambda g: g.max(-1))
        scale = s.std()
        res["group_gap_rel"] = ggap / scale
    elif fam.kind == "v3":          # sigmoid + bias, group score = sum of top-2 in group
        bias = block32.gate.e_score_correction_bias.detach().double().numpy()
        c = 1.0 / (1.0 + np.exp(-s)) + bias
        ids, gap, ggap, egap = _group_limited(c, cfg.n_group, cfg.topk_group, k,
                                              lambda g: np.sort(g, -1)[..., -2:].sum(-1))
        scale = c.std()
        res["group_gap_rel"] = ggap / scale
        ids_nobias, _, _, _ = _group_limited(1.0 / (1.0 + np.exp(-s)), cfg.n_group, cfg.topk_group, k,
                                             lambda g: np.sort(g, -1)[..., -2:].sum(-1))
        res["bias_changes_choice"] = np.array([set(a) != set(b) for a, b in zip(ids, ids_nobias)])
    elif fam.kind == "phimoe":
        ids, gap = _gaps_topk(s, 2)
        scale = s.std()
        eps = cfg.router_jitter_noise
        N, E = s.shape
        d_min = np.full(N, np.inf)
        matters1 = np.zeros(N, dtype=bool)
        matters2 = np.zeros(N, dtype=bool)
        for t in range(N):
            i1, i2 = ids[t]
            m1, m2 = s[t, i1], s[t, i2]
            r1 = (m1 - s[t]) / np.maximum(np.abs(s[t]), m1)
            r2 = (m2 - s[t]) / np.maximum(np.abs(s[t]), m2)
            o1 = [j for j in range(E) if j != i1]
            o2 = [j for j in range(E) if j not in (i1, i2)]
            d_min[t] = min(np.abs(r1[o1] - 2 * eps).min(), np.abs(r2[o2] - 2 * eps).min())
            matters1[t] = (r1[o1] <= 2 * eps).any()
            matters2[t] = (r2[o2] <= 2 * eps).any()
        res.update(mask_dist=d_min, mask1_matters=matters1, mask2_matters=matters2)
    else:
        raise ValueError(fam.kind)
    res["ids"] = ids
    res["margin_rel"] = gap / scale
    res["scale"] = float(scale)
    ok = gap >= TOL_REL * scale
    if fam.kind == "phimoe":
        ok &= res["mask_dist"] >= PHIMOE_MASK_DELTA
    res["ok"] = ok
    return res


# --------------------------------------------------------------------------------------------
# build / save / load
# --------------------------------------------------------------------------------------------


def clean_ckpt_dir(d: Path):
    keep = {"config.json", "model.safetensors", "model.safetensors.index.json"}
    for p in d.iterdir():
        if p.name in keep or (p.name.startswith("model-") and p.name.endswith(".safetensors")):
            continue
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def load_model(fam, path, dtype):
    m = fam.model_class().from_pretrained(path, dtype=dtype, experts_implementation="eager")
    m.eval()
    return m


def build(fam, outdir: Path, log):
    """Build the random model, save the checkpoint, return (f32 model, bf16 model, info)."""
    seed = SEED_BASE + 1000 * fam.seed_offset
    torch.manual_seed(seed)
    rng = Rng(seed + 1)
    cfg = fam.config()
    model = fam.model_class()(cfg).eval()

    # MoE layers: by the model's own block class, cross-checked with the family's config rule.
    layers = fam.layers(model)
    moe_layers = [L for L in range(len(layers)) if isinstance(fam.block(model, L), fam.moe_block_class())]
    assert moe_layers == fam.expected_moe_layers(cfg), (moe_layers, fam.expected_moe_layers(cfg))
    assert 0 < len(moe_layers), fam.name
    dense_layers = [L for L in range(len(layers)) if L not in moe_layers]

    with torch.no_grad():
        for L in moe_layers:
            fam.init_block(fam.block(model, L), rng)
        for p in model.parameters():
            p.data.copy_(bf16_round(p.data))
        for b_name, b in model.named_buffers():
            if b_name.endswith("e_score_correction_bias"):
                b.data.copy_(bf16_round(b.data))

    qinfo = {}
    if fam.quant == "fp8":
        qinfo = quantize_fp8_in_memory(fam, model, moe_layers, rng)
    elif fam.quant == "mxfp4":
        qinfo = quantize_mxfp4_in_memory(fam, model, moe_layers, rng)

    for n, p in model.named_parameters():
        assert is_bf16_exact(p.data), n

    # plain bf16 checkpoint (save_pretrained); for quantized families it is an intermediate
    ckdir = outdir / "ckpt"
    if ckdir.exists():
        shutil.rmtree(ckdir)
    tmp = Path(tempfile.mkdtemp(prefix=f"golden_{fam.name}_")) if fam.quant else None
    plain = tmp / "plain" if tmp else ckdir
    mb = copy.deepcopy(model).to(torch.bfloat16)
    for mod in mb.modules():
        if isinstance(getattr(mod, "e_score_correction_bias", None), torch.Tensor):
            # as transformers keeps it (_keep_in_fp32_modules_strict): F32 on disk, like real checkpoints
            mod.e_score_correction_bias = mod.e_score_correction_bias.float()
    kw = {"max_shard_size": fam.shard_size} if fam.shard_size else {}
    mb.save_pretrained(plain, **kw)
    del mb
    clean_ckpt_dir(plain)

    m32 = load_model(fam, plain, torch.float32)
    m16 = load_model(fam, plain, torch.bfloat16)
    # round trip: what transformers loads back equals what we built
    ref_sd = model.state_dict()
    for n, t in m32.state_dict().items():
        if n in ref_sd and t.is_floating_point():
            assert torch.equal(t, ref_sd[n].float()), f"{fam.name}: round trip mismatch {n}"
    for n, t in m16.state_dict().items():
        if n in ref_sd and t.is_floating_point():
            assert torch.equal(t.float(), ref_sd[n].float()), f"{fam.name}: bf16 round trip mismatch {n}"

    info = {"moe_layers": moe_layers, "dense_layers": dense_layers, "quant": qinfo}
    if fam.quant == "fp8":
        write_fp8_checkpoint(fam, plain, ckdir, qinfo, log, info)
    elif fam.quant == "mxfp4":
        write_mxfp4_checkpoint(fam, plain, ckdir, qinfo, m32, moe_layers, log, info)
    if tmp:
        shutil.rmtree(tmp)
    return model, m32, m16, info


# ---------------------------------------------------------------- FP8


def quantize_fp8_in_memory(fam, model, moe_layers, rng):
    """Quantize the routed + shared expert weights of MoE layers (on-disk orientation [out, in]) to FP8 e4m3
    with 32x32 block scales, and set the model's weights to exactly the dequantized values."""
    q = {}
    with torch.no_grad():
        for L in moe_layers:
            blk = fam.block(model, L)
            p = f"model.layers.{L}.mlp."
            I = blk.experts.intermediate_dim
            gu, dn = blk.experts.gate_up_proj, blk.experts.down_proj
            for e in range(gu.shape[0]):
                for nm, rows in (("gate", slice(0, I)), ("up", slice(I, 2 * I))):
                    w = _fp8_blocky(gu[e, rows], rng)
                    qq, s, deq = fp8_block_quantize(w)
                    gu[e, rows] = deq
                    q[p + f"experts.{e}.{nm}_proj.weight"] = (qq, s)
                w = _fp8_blocky(dn[e], rng)
                qq, s, deq = fp8_block_quantize(w)
                dn[e] = deq
                q[p + f"experts.{e}.down_proj.weight"] = (qq, s)
            for nm in ("gate", "up", "down"):
                lin = getattr(blk.shared_experts, f"{nm}_proj")
                qq, s, deq = fp8_block_quantize(_fp8_blocky(lin.weight.data, rng))
                lin.weight.data.copy_(deq)
                q[p + f"shared_experts.{nm}_proj.weight"] = (qq, s)
    return q


def _fp8_blocky(w, rng):
    """Give every 32x32 block its own magnitude (x 2**U(-1.5,1.5)) so that a wrong block index is visible."""
    R, C = w.shape
    nr, nc = math.ceil(R / FP8_BS), math.ceil(C / FP8_BS)
    f = torch.exp2(rng.uniform(nr, nc, lo=-1.5, hi=1.5))
    return w.float() * f.repeat_interleave(FP8_BS, 0).repeat_interleave(FP8_BS, 1)[:R, :C]


def write_fp8_checkpoint(fam, plain: Path, ckdir: Path, q, log, info):
    ckdir.mkdir(parents=True)
    sd = load_file(plain / "model.safetensors")
    n_fp8 = 0
    for name, (qq, s) in q.items():
        assert name in sd, name
        assert torch.equal(sd[name].float(), qq.float() * s.repeat_interleave(FP8_BS, 0).repeat_interleave(
            FP8_BS, 1)[:qq.shape[0], :qq.shape[1]]), name
        sd[name] = qq.contiguous()
        sd[name + "_scale_inv"] = s.contiguous()
        n_fp8 += 1
    save_file(sd, ckdir / "model.safetensors", metadata={"format": "pt"})
    cfg = json.loads((plain / "config.json").read_text())
    cfg["quantization_config"] = fam.quantization_config
    (ckdir / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    partial = sorted({tuple(qq.shape) for qq, _ in q.values() if any(d % FP8_BS for d in qq.shape)})
    info["fp8"] = {"n_fp8_tensors": n_fp8, "shapes_with_partial_blocks": [list(x) for x in partial]}
    info["fp8"]["transformers_check"] = check_fp8_with_transformers(fam, ckdir, q, log)


def check_fp8_with_transformers(fam, ckdir, q, log):
    """(a) transformers' own Fp8Dequantize._dequantize_one on our tensors; (b) from_pretrained(dequantize)."""
    res = {}
    from transformers.integrations.finegrained_fp8 import Fp8Dequantize
    op = Fp8Dequantize(hf_quantizer=None)
    bad, good = [], 0
    for name, (qq, s) in q.items():
        mine = qq.float() * s.repeat_interleave(FP8_BS, 0).repeat_interleave(FP8_BS, 1)[:qq.shape[0], :qq.shape[1]]
        try:
            theirs = op._dequantize_one(qq, s, output_dtype=torch.float32)
            if torch.equal(theirs, mine):
                good += 1
            else:
                bad.append((name, list(qq.shape), float((theirs - mine).abs().max())))
        except Exception as ex:  # noqa: BLE001
            bad.append((name, list(qq.shape), f"{type(ex).__name__}: {ex}"))
    # control: a tensor whose dims are multiples of the block size
    ctl = torch.Generator().manual_seed(5)
    cq, cs, cdeq = fp8_block_quantize(torch.randn(64, 96, generator=ctl) * 0.1)
    res["Fp8Dequantize_control_full_blocks_64x96_equal"] = bool(
        torch.equal(op._dequantize_one(cq, cs, output_dtype=torch.float32), cdeq))
    res["Fp8Dequantize_equal"] = good
    res["Fp8Dequantize_differs"] = len(bad)
    res["Fp8Dequantize_differs_shapes"] = sorted({str(b[1]) for b in bad})
    if bad:
        res["Fp8Dequantize_example"] = str(bad[0])
    log(f"  transformers Fp8Dequantize: {good} tensors equal, {len(bad)} differ "
        f"(shapes {res['Fp8Dequantize_differs_shapes']}); control 64x96 (full blocks) equal: "
        f"{res['Fp8Dequantize_control_full_blocks_64x96_equal']}")
    # (b) the full loader
    try:
        from transformers import FineGrainedFP8Config
        import transformers.quantizers.quantizer_finegrained_fp8 as qfp8
        patched = False
        orig_check = qfp8.is_accelerate_available
        if not qfp8.is_accelerate_available():
            # accelerate is only used by validate_environment's availability check on this path
            qfp8.is_accelerate_available = lambda: True
            patched = True
        try:
            m = fam.model_class().from_pretrained(ckdir, dtype=torch.float32,
                                                  quantization_config=FineGrainedFP8Config(dequantize=True))
        finally:
            qfp8.is_accelerate_available = orig_check
        sd = m.state_dict()
        eq = neq = 0
        worst = 0.0
        for L in sorted({int(n.split(".")[2]) for n in q}):
            blk = fam.block(m, L)
            p = f"model.layers.{L}.mlp."
            I = blk.experts.intermediate_dim
            for e in range(blk.experts.gate_up_proj.shape[0]):
                for nm, t in ((f"experts.{e}.gate_proj.weight", blk.experts.gate_up_proj[e, :I]),
                              (f"experts.{e}.up_proj.weight", blk.experts.gate_up_proj[e, I:]),
                              (f"experts.{e}.down_proj.weight", blk.experts.down_proj[e])):
                    qq, s = q[p + nm]
                    mine = qq.float() * s.repeat_interleave(FP8_BS, 0).repeat_interleave(FP8_BS, 1)[
                        :qq.shape[0], :qq.shape[1]]
                    d = float((t.detach().float() - mine).abs().max())
                    worst = max(worst, d)
                    eq, neq = (eq + 1, neq) if d == 0 else (eq, neq + 1)
            for nm in ("gate", "up", "down"):
                qq, s = q[p + f"shared_experts.{nm}_proj.weight"]
                mine = qq.float() * s.repeat_interleave(FP8_BS, 0).repeat_interleave(FP8_BS, 1)[
                    :qq.shape[0], :qq.shape[1]]
                t = getattr(blk.shared_experts, f"{nm}_proj").weight
                d = float((t.detach().float() - mine).abs().max())
                worst = max(worst, d)
                eq, neq = (eq + 1, neq) if d == 0 else (eq, neq + 1)
        res["from_pretrained_dequantize"] = {"loaded": True, "accelerate_check_patched": patched,
                                             "tensors_equal": eq, "tensors_differ": neq,
                                             "max_abs_diff": worst}
        log(f"  transformers from_pretrained(FineGrainedFP8Config(dequantize=True)) on CPU: loaded; "
            f"{eq} expert tensors equal ours, {neq} differ (max abs diff {worst:.3g})")
        del sd, m
    except Exception as ex:  # noqa: BLE001
        res["from_pretrained_dequantize"] = {"loaded": False, "error": f"{type(ex).__name__}: {str(ex)[:300]}"}
        log(f"  transformers from_pretrained FP8 dequantize load failed: {type(ex).__name__}: {str(ex)[:200]}")
    return res


# ---------------------------------------------------------------- MXFP4


def quantize_mxfp4_in_memory(fam, model, moe_layers, rng):
    """In-memory gate_up_proj is [E, H, 2I] and down_proj [E, I, H] (x @ W). On disk the blocks are of the
    TRANSPOSE, W_disk[e] = param[e].T ([E, 2I, H] / [E, H, I], nn.Linear [out, in] order), packed along the
    last (input) dim in 32-element blocks."""
    q = {}
    with torch.no_grad():
        for L in moe_layers:
            ex = fam.block(model, L).experts
            p = f"model.layers.{L}.mlp.experts."
            for nm in ("gate_up_proj", "down_proj"):
                param = getattr(ex, nm)
                wd = param.data.transpose(1, 2).contiguous()          # on-disk orientation
                E, R, C = wd.shape
                f = torch.exp2(rng.uniform(E, R, C // 32, lo=-2.0, hi=2.0).round())
                wd = wd * f.repeat_interleave(32, -1)                 # per-block magnitudes vary
                blocks, scales, deq = mxfp4_quantize(wd)
                param.data.copy_(deq.transpose(1, 2))
                q[p + nm] = (blocks.reshape(E, R, C // 32, 16), scales)
    return q


def write_mxfp4_checkpoint(fam, plain: Path, ckdir: Path, q, m32, moe_layers, log, info):
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors
    ckdir.mkdir(parents=True)
    sd = load_file(plain / "model.safetensors")
    checks = {}
    for name, (blocks, scales) in q.items():
        assert name in sd, name
        del sd[name]
        sd[name + "_blocks"] = blocks
        sd[name + "_scales"] = scales
        # confirm the packing with transformers' own MXFP4 dequantization
        theirs = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)
        L = int(name.split(".")[2])
        mine = getattr(fam.block(m32, L).experts, name.rsplit(".", 1)[1]).detach()
        checks[name] = bool(torch.equal(theirs, mine))
        assert checks[name], f"{name}: transformers' convert_moe_packed_tensors disagrees with our packing"
    save_file(sd, ckdir / "model.safetensors", metadata={"format": "pt"})
    cfg = json.loads((plain / "config.json").read_text())
    cfg["quantization_config"] = fam.quantization_config
    (ckdir / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    log(f"  transformers convert_moe_packed_tensors(blocks, scales) == in-memory params for "
        f"{sum(checks.values())}/{len(checks)} tensors")
    res = {"convert_moe_packed_tensors_equal": f"{sum(checks.values())}/{len(checks)}"}
    try:
        from transformers import Mxfp4Config
        m = fam.model_class().from_pretrained(ckdir, dtype=torch.float32,
                                              quantization_config=Mxfp4Config(dequantize=True))
        eq = 0
        for L in moe_layers:
            for nm in ("gate_up_proj", "down_proj", "gate_up_proj_bias", "down_proj_bias"):
                a = getattr(fam.block(m, L).experts, nm).detach().float()
                b = getattr(fam.block(m32, L).experts, nm).detach().float()
                eq += int(torch.equal(a, b))
        res["from_pretrained_dequantize"] = {"loaded": True, "expert_tensors_equal": f"{eq}/{4 * len(moe_layers)}"}
        log(f"  transformers from_pretrained(Mxfp4Config(dequantize=True)) on CPU: {eq}/{4 * len(moe_layers)} "
            f"expert tensors equal ours")
    except Exception as ex:  # noqa: BLE001
        res["from_pretrained_dequantize"] = {"loaded": False, "error": f"{type(ex).__name__}: {str(ex)[:300]}"}
        log(f"  transformers MXFP4 dequantize load failed: {type(ex).__name__}: {str(ex)[:200]}")
    info["mxfp4"] = res


# --------------------------------------------------------------------------------------------
# goldens
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def run_router(fam, router, x):
    logits, ids, w = fam.parse_router(router(x))
    return logits, ids, w


def _same_ids(a, b, ordered):
    a, b = a.long(), b.long()
    if ordered:
        return (a == b).all(1)
    return (a.sort(1).values == b.sort(1).values).all(1)


def _weights_by_id(ids, w):
    o = ids.long().sort(1)
    return o.values, w.float().gather(1, o.indices)


@torch.no_grad()
def choose_tokens(fam, cfg, m32, m16, moe_layers, seed, log):
    g = torch.Generator().manual_seed(seed + 7)
    npool = fam.pool
    pool = bf16_round(torch.randn(npool, H, generator=g))
    ok_all = torch.ones(npool, dtype=torch.bool)
    per_layer = {}
    for L in moe_layers:
        b32 = fam.block(m32, L)
        r32 = fam.router(b32)
        r64 = copy.deepcopy(r32).double()
        r16 = fam.router(fam.block(m16, L))
        lg32, id32, w32 = run_router(fam, r32, pool)
        lg64, id64, w64 = run_router(fam, r64, pool.double())
        lg16, id16, w16 = run_router(fam, r16, pool.to(torch.bfloat16))
        ana = analyse_selection(fam, cfg, lg32.float(), b32)
        mine = torch.from_numpy(ana["ids"])
        ordered = fam.topk_sorted
        agree = _same_ids(id32, id64, ordered) & _same_ids(id32, id16, ordered)
        rule_ok = _same_ids(id32, mine, ordered)  # my reading of the rule == transformers' choice
        # weights must agree too (catches e.g. a flipped sparsemixer mask)
        _, wa = _weights_by_id(id32, w32)
        _, wb = _weights_by_id(id64, w64)
        _, wc = _weights_by_id(id16, w16)
        scale_w = wa.abs().amax(1).clamp(min=1e-30)
        wagree = ((wa - wb).abs().amax(1) <= 1e-5 * scale_w) & ((wa - wc).abs().amax(1) <= 3e-2 * scale_w)
        ok = torch.from_numpy(ana["ok"]) & agree & rule_ok & wagree
        per_layer[L] = dict(ana=ana, ok=ok, disagree=int((~agree).sum()), rule_mismatch=int((~rule_ok).sum()))
        log(f"  layer {L}: robust {int(ok.sum())}/{npool} (dtype disagreements {int((~agree).sum())}, "
            f"rule mismatches among margin-ok {int((~rule_ok & torch.from_numpy(ana['ok'])).sum())}, "
            f"score scale {ana['scale']:.3f})")
        assert int((~rule_ok & torch.from_numpy(ana["ok"])).sum()) == 0, "selection rule replica disagrees"
        ok_all &= ok
    kept = torch.nonzero(ok_all).flatten().tolist()
    groups = None
    if fam.kind == "phimoe":
        # put tokens whose second-step sparsemixer mask keeps >1 expert (w2 < 1) first, round-robin per layer
        groups = [[t for t in kept if all(per_layer[L]["ana"]["mask2_matters"][t] for L in moe_layers)]]
        groups += [[t for t in kept if per_layer[L]["ana"]["mask2_matters"][t]] for L in moe_layers]
        rest = [t for t in kept if not any(per_layer[L]["ana"]["mask2_matters"][t] for L in moe_layers)]
    elif fam.kind == "v3":
        # alternate tokens whose choice the e_score_correction_bias changes with tokens where it does not
        # (the T=1 token is one where the bias matters)
        chg = [t for t in kept if any(per_layer[L]["ana"]["bias_changes_choice"][t] for L in moe_layers)]
        groups = [chg]
        rest = [t for t in kept if t not in set(chg)]
    if groups is not None:
        order, seen = [], set()
        its = [iter(gr) for gr in groups] + [iter(rest)]
        active = True
        while active:
            active = False
            for it in its:
                for t in it:
                    if t not in seen:
                        seen.add(t)
                        order.append(t)
                        active = True
                        break
        order += [t for t in kept if t not in seen]
        kept = order
    if len(kept) < max(TOKENS):
        raise RuntimeError(f"{fam.name}: only {len(kept)} robust tokens")
    return pool, kept, per_layer


@torch.no_grad()
def run_block(fam, model, L, x):
    blk = fam.block(model, L)
    cap = {}
    h = fam.router(blk).register_forward_hook(lambda mod, inp, out: cap.setdefault("out", out))
    try:
        y = blk(x.reshape(1, x.shape[0], x.shape[1]))
    finally:
        h.remove()
    if isinstance(y, tuple):
        y = y[0]
    _, ids, w = fam.parse_router(cap["out"])
    return y.reshape(x.shape[0], -1), ids, w


def generate_family(fam, log):
    outdir = HERE / fam.name
    if outdir.exists():
        shutil.rmtree(outdir)
    outdir.mkdir(parents=True)
    log(f"== {fam.name}")
    model, m32, m16, info = build(fam, outdir, log)
    cfg = m32.config.get_text_config() if fam.name == "llama4" else m32.config
    moe_layers = info["moe_layers"]
    seed = SEED_BASE + 1000 * fam.seed_offset
    pool, kept, per_layer = choose_tokens(fam, cfg, m32, m16, moe_layers, seed, log)
    log(f"  kept {len(kept)}/{fam.pool} tokens robust in all MoE layers {moe_layers}")

    margins = {}
    extra = {}
    gm_diff = {}
    for T in TOKENS:
        tdir = outdir / f"T{T}"
        tdir.mkdir()
        idx = kept[:T]
        x = pool[idx].contiguous()
        save_file({"hidden_states": x}, tdir / "input.safetensors")
        for L in moe_layers:
            ana = per_layer[L]["ana"]
            margins[f"T{T}/layer{L}"] = float(ana["margin_rel"][idx].min())
            for tag, m, dt in (("f32", m32, torch.float32), ("bf16", m16, torch.bfloat16)):
                y, ids, w = run_block(fam, m, L, x.to(dt))
                tensors = {"hidden_states": y.float().contiguous(),
                           "topk_ids": ids.to(torch.int32).contiguous(),
                           "topk_weights": w.float().contiguous()}
                save_file(tensors, tdir / f"layer{L}.{tag}.safetensors")
                if tag == "bf16" and hasattr(fam.block(m, L).experts, "config") and \
                        getattr(fam.block(m, L).experts.config, "_experts_implementation", None) == "eager":
                    # what transformers' default experts implementation (grouped_mm) gives in bf16
                    exp = fam.block(m, L).experts
                    exp.config._experts_implementation_internal = "grouped_mm"
                    try:
                        y2, _, _ = run_block(fam, m, L, x.to(dt))
                        gm_diff[f"T{T}/layer{L}"] = float((y2.float() - y.float()).abs().max() /
                                                          y.float().abs().max())
                    finally:
                        exp.config._experts_implementation_internal = "eager"
            if fam.kind == "phimoe":
                extra[f"T{T}/layer{L}"] = {
                    "tokens_with_step1_mask_keeping_more_than_one": int(ana["mask1_matters"][idx].sum()),
                    "tokens_with_step2_mask_keeping_more_than_one": int(ana["mask2_matters"][idx].sum())}
            if fam.kind == "v3":
                extra[f"T{T}/layer{L}"] = {"tokens_where_bias_changes_choice":
                                           int(ana["bias_changes_choice"][idx].sum())}
        if fam.name.startswith("gpt_oss"):
            extra[f"T{T}"] = gpt_oss_clamp_stats(fam, m32, moe_layers, x)

    gj = {
        "family": fam.name,
        "model_type": m32.config.model_type,
        "architecture": type(m32).__name__,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "hidden_size": H,
        "num_experts": fam.num_experts,
        "k": fam.k,
        "moe_layers": moe_layers,
        "dense_layers": info["dense_layers"],
        "tokens": TOKENS,
        "experts_implementation": "eager" if fam.name != "llama4" else "n/a (Llama4TextExperts is dense bmm)",
        "topk_order": ("as torch.topk(sorted=True) returns: descending selection score" if fam.topk_sorted else
                       "UNSPECIFIED: transformers uses torch.topk(sorted=False); compare (id, weight) pairs as sets"),
        "selection": {"kind": fam.kind, "tol_rel": TOL_REL, "pool": fam.pool, "kept": len(kept),
                      "min_margin_rel_per_file": margins},
        "notes": fam.notes + quant_note(fam, info),
    }
    if fam.kind == "phimoe":
        gj["selection"]["phimoe_mask_delta"] = PHIMOE_MASK_DELTA
    if extra:
        gj["extra"] = extra
    if gm_diff:
        gj["bf16_grouped_mm_vs_eager_max_rel_diff"] = gm_diff
    if fam.quant:
        gj["quantization"] = info.get(fam.quant)
    (outdir / "golden.json").write_text(json.dumps(gj, indent=2) + "\n")
    for p in outdir.rglob("*"):  # safetensors writes 0600 files
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return gj


def quant_note(fam, info):
    if fam.quant == "fp8":
        tc = info["fp8"]["transformers_check"]
        fp = tc["from_pretrained_dequantize"]
        if fp.get("loaded"):
            how = ("transformers 5.23 CAN load this FP8 checkpoint on CPU with "
                   "FineGrainedFP8Config(dequantize=True)" +
                   (" (after bypassing its accelerate-is-installed check; accelerate is not in the venv and is "
                    "not otherwise used on this path)" if fp.get("accelerate_check_patched") else "") +
                   f", but its dequantized expert weights do NOT equal ours: {fp['tensors_equal']} equal, "
                   f"{fp['tensors_differ']} differ (max abs diff {fp['max_abs_diff']:.3g}).")
        else:
            how = f"transformers could not load this FP8 checkpoint on CPU: {fp.get('error')}."
        return (f" FP8 CHECK: {how} Cause: integrations/finegrained_fp8.py Fp8Dequantize._dequantize_one derives "
                f"the block size from the scale grid (block = dim // n_scale_blocks, 48 // 2 = 24) instead of "
                f"weight_block_size, so every tensor with a partial edge block is mis-scaled "
                f"({tc['Fp8Dequantize_differs']} of {tc['Fp8Dequantize_differs'] + tc['Fp8Dequantize_equal']} "
                f"here; all have a 48 dim); a full-block control tensor (64x96) dequantizes exactly "
                f"({tc['Fp8Dequantize_control_full_blocks_64x96_equal']}). The goldens use the correct "
                f"W = fp8 * scale_inv[i//32, j//32].")
    if fam.quant == "mxfp4":
        r = info["mxfp4"]
        fp = r["from_pretrained_dequantize"]
        load = (f"transformers from_pretrained(..., quantization_config=Mxfp4Config(dequantize=True)) loads it on "
                f"CPU and its dequantized expert tensors equal ours ({fp['expert_tensors_equal']})."
                if fp.get("loaded") else f"transformers could not load it on CPU: {fp.get('error')}.")
        return (f" MXFP4 CHECK: convert_moe_packed_tensors(blocks, scales) == our in-memory params for "
                f"{r['convert_moe_packed_tensors_equal']} tensors; {load}")
    return ""


@torch.no_grad()
def gpt_oss_clamp_stats(fam, m32, moe_layers, x):
    st = {}
    for L in moe_layers:
        ex = fam.block(m32, L).experts
        gu = torch.einsum("th,ehf->etf", x, ex.gate_up_proj) + ex.gate_up_proj_bias[:, None, :]
        st[f"layer{L}"] = {"frac_gate_above_limit": float((gu[..., ::2] > ex.limit).float().mean()),
                           "frac_up_outside_limit": float((gu[..., 1::2].abs() > ex.limit).float().mean())}
    return st


# --------------------------------------------------------------------------------------------
# self-check: independent numpy float64 reference from the checkpoint files
# --------------------------------------------------------------------------------------------


def selfcheck(fam, log):
    d = HERE / fam.name
    ck, dts, cfg = read_checkpoint_np(d / "ckpt")
    gj = json.loads((d / "golden.json").read_text())
    rows = []
    for T in TOKENS:
        x = read_safetensors_np(d / f"T{T}" / "input.safetensors")[0]["hidden_states"]
        for L in gj["moe_layers"]:
            g = read_safetensors_np(d / f"T{T}" / f"layer{L}.f32.safetensors")[0]
            y, ids, w = fam.ref_block(ck, cfg, L, x)
            rel = float(np.abs(y - g["hidden_states"]).max() / np.abs(g["hidden_states"]).max())
            gi, gw = g["topk_ids"].astype(np.int64), g["topk_weights"]
            oi, ow = np.sort(gi, 1), np.take_along_axis(gw, np.argsort(gi, 1), 1)
            ri, rw = np.sort(ids, 1), np.take_along_axis(w, np.argsort(ids, 1), 1)
            ids_ok = bool((oi == ri).all())
            if fam.topk_sorted:
                ids_ok &= bool((gi == ids).all())
            wrel = float(np.abs(ow - rw).max() / np.abs(rw).max())
            rows.append((T, L, rel, wrel, ids_ok))
    worst = max(r[2] for r in rows)
    worst_w = max(r[3] for r in rows)
    all_ids = all(r[4] for r in rows)
    gj["selfcheck_numpy_f64"] = {"max_rel_err_hidden": worst, "max_rel_err_weights": worst_w, "ids_match": all_ids}
    (d / "golden.json").write_text(json.dumps(gj, indent=2) + "\n")
    return worst, worst_w, all_ids


# --------------------------------------------------------------------------------------------
# notes per family (go to golden.json)
# --------------------------------------------------------------------------------------------

Mixtral.notes = (
    "MixtralForCausalLM, 2 layers, all MoE (no layer rule). On disk model.layers.L.block_sparse_moe.gate.weight "
    "[E,H], experts.{e}.w1 (gate) / w3 (up) [I,H], w2 (down) [H,I]; in memory (v5) renamed to mlp.gate / "
    "mlp.experts.gate_up_proj [E,2I,H]=cat(w1,w3) / down_proj. Router: logits=x W^T in the activation dtype, "
    "softmax(logits.float()) -> topk(sorted) -> always divided by their sum; the weights STAY float32 (not cast "
    "to bf16), so in the bf16 run each expert output (bf16) * weight (f32) is computed in f32 and rounded to "
    "bf16 before index_add_ into a bf16 buffer (ascending expert id order).")
Qwen2Moe.notes = (
    "Qwen2MoeForCausalLM, 4 layers, decoder_sparse_step=2 -> MoE layers 1,3; layers 0,2 dense mlp.{gate,up,down}_proj "
    "of width intermediate_size=40. Saved SHARDED (max_shard_size=150KB) with model.safetensors.index.json. "
    "norm_topk_prob=false: weights are the plain softmax probabilities of the top-4 (cast to the activation dtype). "
    "Block = routed + sigmoid(x w_sg^T) * shared_expert(x), shared width 64.")
Qwen3Moe.notes = (
    "Qwen3MoeForCausalLM, 3 layers, decoder_sparse_step=1, mlp_only_layers=[1] -> MoE layers 0,2, layer 1 dense. "
    "norm_topk_prob=true (top-3 renormalised in fp32, then cast to the activation dtype). No shared expert.")
Olmoe.notes = (
    "OlmoeForCausalLM, 2 layers, all MoE; config.intermediate_size IS the expert width; norm_topk_prob=false, "
    "top-4 of 8. Same router code as Qwen2/3-MoE.")
DeepseekV2.notes = (
    "DeepseekV2ForCausalLM, 2 layers, first_k_dense_replace=1 -> layer 0 dense (width intermediate_size=40), "
    "MoE layer 1. topk_method=group_limited_greedy, n_group=4, topk_group=2, 16 experts, top-4, "
    "routed_scaling_factor=16, n_shared_experts=2 (shared width 2*32=64). Router math in fp32 (input and weight "
    "cast) in every run; weights = softmax prob * 16 (norm_topk_prob ignored), kept in fp32. topk uses "
    "sorted=False: compare ids/weights as (id, weight) sets.")
DeepseekV2Lite.notes = (
    "DeepseekV2ForCausalLM with topk_method=greedy, routed_scaling_factor=1.0, q_lora_rank=null, 8 experts top-3, "
    "n_shared_experts=2, first_k_dense_replace=1 -> 2 layers, MoE layer 1. topk sorted=False: compare as sets.")
DeepseekV3Bf16.notes = (
    "DeepseekV3ForCausalLM, plain bf16 checkpoint (e_score_correction_bias stored F32, as transformers keeps it in "
    "fp32). 2 layers, first_k_dense_replace=1 -> layer 0 dense, MoE layer 1. sigmoid scoring, e_score_correction_bias random "
    "N(0,0.1) (changes the choice for many tokens, see extra), n_group=4, topk_group=2 (group score = sum of the "
    "top-2 biased scores), non-selected groups masked to -inf, top-4 (sorted=False: compare as sets), "
    "weights = unbiased sigmoid / (sum + 1e-20) * 2.5, fp32. 1 shared expert of width 48.")
DeepseekV3Fp8.notes = (
    "Same model as deepseek_v3_bf16 (other seed) but the checkpoint stores the MoE layers' routed-expert AND "
    "shared-expert gate/up/down_proj weights as F8_E4M3 with F32 <name>_scale_inv [ceil(out/32), ceil(in/32)] "
    "(weight_block_size [32,32]); W[i,j] = fp8[i,j] * scale_inv[i//32, j//32]. Expert width 48 makes partial "
    "edge blocks (16 rows of gate/up, 16 columns of down). scale_inv values have 4-bit significands so the "
    "dequantized weights are exactly bf16-representable; the goldens use the model with its weights SET to "
    "exactly the dequantized values (f32 and bf16 runs). Attention, dense layer 0, router and bias are BF16/F32 "
    "(real DeepSeek-V3 also quantizes attention and dense MLP weights: an importer should dequantize ANY weight "
    "that has a sibling *_scale_inv). See quantization.transformers_check for what transformers' own FP8 "
    "dequantization does with these tensors.")
Phimoe.notes = (
    "PhimoeForCausalLM, 2 layers, all MoE, 8 experts, top-2 sparsemixer with eps = router_jitter_noise = 0.01 "
    "(used at inference). On disk block_sparse_moe.gate.weight / experts.{e}.w1,w3,w2 (in memory mlp.router / "
    "mlp.experts). Router logits in the activation dtype (bf16 in the bf16 run, NO fp32 cast; the softmaxes run "
    "in bf16 too). Weights [w1, w2] are not renormalised. Token order: tokens whose second-step mask keeps more "
    "than one expert (w2 < 1) come first (see extra for counts); every sparsemixer mask decision is at least "
    "0.004 away from the 2*eps threshold and agrees in f64/f32/bf16.")
GptOssBf16.notes = (
    "GptOssForCausalLM, plain bf16 checkpoint as save_pretrained writes it: model.layers.L.mlp.router.weight [E,H], "
    "router.bias [E], mlp.experts.gate_up_proj [E,H,2I] (in-memory layout, used as x @ W, columns interleaved "
    "gate=0::2, up=1::2), gate_up_proj_bias [E,2I], down_proj [E,I,H] (x @ W), down_proj_bias [E,H]. Router: "
    "logits = x W^T + b in the activation dtype, topk(sorted) of the logits, softmax over the k in that dtype. "
    "Experts: clamp gate<=7, up in [-7,7], (up+1)*gate*sigmoid(1.702*gate); weights are chosen large enough that "
    "the clamps are active for some elements (see extra).")
GptOssMxfp4.notes = (
    "GPT-OSS MXFP4 checkpoint like the real model: model.layers.L.mlp.experts.gate_up_proj_blocks U8 "
    "[E, 2I, H/32, 16], gate_up_proj_scales U8 [E, 2I, H/32], gate_up_proj_bias BF16 [E, 2I], down_proj_blocks U8 "
    "[E, H, I/32, 16], down_proj_scales U8 [E, H, I/32], down_proj_bias BF16 [E, H]; router weight/bias BF16. "
    "TRANSPOSITION: the dequantized on-disk matrix of expert e is the TRANSPOSE of the in-memory parameter: "
    "W_disk[e] = gate_up_proj[e].T ([2I,H], nn.Linear [out,in] order, rows interleaved gate/up), "
    "down_disk[e] = down_proj[e].T ([H,I]); transformers' convert_moe_packed_tensors ends with "
    ".transpose(1, 2). Packing: low nibble = element 2j, high nibble = element 2j+1 of each 32-element block "
    "along the input dim; value = LUT[nibble] * 2^(scale-127). Confirmed with "
    "transformers.integrations.mxfp4.convert_moe_packed_tensors (exactly equal).")
GraniteMoe.notes = (
    "GraniteMoeForCausalLM, 2 layers, all MoE. On disk block_sparse_moe.router.layer.weight [E,H], "
    "block_sparse_moe.input_linear.weight [E,2I,H] (rows [0:I] gate, [I:2I] up), output_linear.weight [E,H,I]. "
    "Router: logits = x W^T computed in the activation dtype THEN .float(); topk(sorted) of the logits, "
    "softmax over the k in fp32, cast to the activation dtype. residual_multiplier (0.22 here) is applied by "
    "the decoder layer OUTSIDE the block and is NOT in the goldens.")
Llama4.notes = (
    "Llama4ForConditionalGeneration with a tiny vision tower, so text tensors carry the language_model. prefix: "
    "language_model.model.layers.L.feed_forward.router.weight [E,H], feed_forward.experts.gate_up_proj [E,H,2I] "
    "(x @ W; first half gate, second half up), experts.down_proj [E,I,H] (x @ W), "
    "feed_forward.shared_expert.{gate,up,down}_proj.weight (nn.Linear). text_config.interleave_moe_layer_step=2, "
    "4 layers -> moe_layers [1,3] (config.json also stores moe_layers explicitly); dense layers 0,2 use "
    "feed_forward.{gate,up,down}_proj of width intermediate_size_mlp=40. top-1; topk_weights = sigmoid(logit) "
    "(computed in fp32, cast back to the activation dtype); the weight multiplies the expert INPUT; every expert "
    "runs on every token (unrouted tokens see input 0 and contribute exactly 0); block = shared_expert(x) + sum.")


# --------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=sorted(BY_NAME), action="append", help="family (repeatable)")
    ap.add_argument("--no-selfcheck", action="store_true")
    args = ap.parse_args()
    fams = [BY_NAME[n] for n in args.only] if args.only else FAMILIES

    def log(msg):
        print(msg, flush=True)

    log(f"transformers {transformers.__version__}, torch {torch.__version__}, numpy {np.__version__}")
    for fam in fams:
        generate_family(fam, log)
    if args.no_selfcheck:
        return
    log("\nself-check: numpy float64 reference (own safetensors/FP8/MXFP4 decoding) vs the f32 goldens")
    log(f"{'family':<18} {'max rel err (out)':>18} {'max rel err (w)':>16} {'ids':>5}")
    failed = []
    for fam in fams:
        worst, worst_w, ids_ok = selfcheck(fam, log)
        log(f"{fam.name:<18} {worst:>18.3e} {worst_w:>16.3e} {'ok' if ids_ok else 'FAIL':>5}")
        if worst > 1e-5 or worst_w > 1e-5 or not ids_ok:
            failed.append(fam.name)
    if failed:
        log(f"SELF-CHECK FAILED: {failed}")
        sys.exit(1)


if __name__ == "__main__":
    main()
