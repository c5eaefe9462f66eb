#!/usr/bin/env python3
"""moec's CUDA target on a real GPU: numerics on every golden family, then speed on three
real MoE layer shapes against PyTorch and transformers, in one run.

Runs on the GPU machine, which has python3 with torch (CUDA), transformers, numpy and
safetensors but no LLVM/MLIR: moec is reached only through libmoe_runtime.so (ctypes,
include/moe/runtime.h) and the folders bench/gpu/prepare.sh compiled and staged here.
bench/gpu/run.sh is the one command; this script is what it runs.

1. Numerics (the staged goldens, test/golden/<family>): every MoE layer of every family at
   T = 1, 7, 64 through moe_model_open_device(folder, "cuda:0") and moe_layer_run, against
   transformers' float32 output: relative Frobenius error of hidden_states (bound --tol,
   1e-2: the kernels compute in bf16 with f32 accumulation; transformers' own bf16 run is
   printed beside it for scale) and the routing (topk_ids per token compared as sets:
   DeepSeek's top-k is unsorted). Outputs are poisoned (NaN, id -7) before each call, so
   an unwritten element fails. Each family runs in its own process: a kernel fault leaves a
   CUDA context unusable, and must not take the other families or the benchmark with it.
   Any failure ends the run (exit 1) unless --bench-even-if-wrong.

2. Benchmark (one process per shape: mixtral-8x7b, qwen3-30b-a3b, deepseek-v3; see
   modules.py), for T in 1, 16, 64, 512, 4096. The staged shape folders hold no weights
   (moe-compile --layout-only): each is copied to --work and fill_weights.py fills it
   (~27 GB in all, in the background while the numerics run; kept for a second run on
   the same machine). Then, in each shape's process:
   - ceilings, measured in that process with torch: device-to-device copy bandwidth (a
     2 GiB copy, bytes read + written) and the bf16 matmul rate (8192^3), medians of 10;
   - contenders, all computing the same function with the same weights: the synthetic
     weights fill_weights.py wrote are read back from the moec folder and unpacked from
     moec's panel layout into ordinary [E, out, in] tensors that the torch contenders use:
       moec              moe_layer_run from pinned host buffers: the time INCLUDES copying
                         hidden (f32) in and the output (f32) out. Reported beside it: the
                         pure transfer time of those bytes (torch pinned copies) and the
                         moec kernels' own time from the CUDA profiler (CUPTI), so the
                         kernel time is known, not only estimated
       moec-device       moe_layer_run_device where the runtime has it: torch's device
                         tensors (f32) in and out, enqueued on a torch stream, no host
                         copies: the figure to hold against the torch contenders
       grouped_mm        routing in torch (f32 logits, as moec), tokens sorted by expert,
                         int32 offsets, torch._grouped_mm for gate/up and down, weighted
                         index_add_; the shared expert as plain matmuls
       grouped_mm-graph  the same captured in a CUDA graph (moec replays a graph too for
                         T <= 64), so decode compares kernels rather than Python launches
       hf-eager          transformers' own MoE block of the family (MixtralSparseMoeBlock,
                         Qwen3MoeSparseMoeBlock, DeepseekV3MoE), bf16, experts_implementation
                         "eager" (the per-expert loop of the modeling file)
       hf-grouped_mm     the same block with transformers' default experts implementation
   - CUDA events around every call (synchronized), warm-up first, median of N (N adapted so
     that a slow contender does not eat the time limit); inputs rotate over 4 random token
     batches (the weights are far larger than the 60 MB L2 anyway);
   - TFLOP/s = (2*T*k*3*H*I + 2*T*3*H*S) / t (routed + shared experts; router not
     counted); TB/s = bf16 weight bytes the call must read / t: distinct experts chosen x
     3*H*I*2 + router E*H*2 + shared 3*H*S*2 (moec keeps its router in f32: +E*H*2, <1 %);
     both as fractions of the measured ceilings; the ratio moec / grouped_mm (> 1: moec
     slower);
   - numerics at full size: moec's output and routing against the grouped_mm reference on
     every input (rows whose routing differs, a tie at f32 rounding level, are counted
     and left out of the error).

Results: --out (JSON, rewritten after every phase so a partial run leaves something) and a
markdown table on stdout (also written beside --out as .md) for bench/RESULTS.md.

    bench_gpu.py --stage bench/gpu/.stage --work /tmp/moec-gpu --out results.json
    bench_gpu.py --table results.json             # reprint the tables of a results file
    bench_gpu.py --dry-run --stage S --work W     # no GPU: the fake CUDA driver (see --help)
"""

import argparse
import contextlib
import ctypes
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import modules  # noqa: E402  (bench/gpu/modules.py: the shapes)

MOE_DTYPE_F32 = 15  # include/moe/dtype.h
TOKENS = [1, 16, 64, 512, 4096]
INPUT_SETS = 4
CONTENDERS = ["moec", "moec-device", "grouped_mm", "grouped_mm-graph", "hf-eager",
              "hf-grouped_mm"]
CASE_PREFIX = "@@case "


# ----------------------------------------------------------------------------------------
# libmoe_runtime through ctypes (no torch here: the numerics processes do not need it)
# ----------------------------------------------------------------------------------------

class LayerInfo(ctypes.Structure):
    _fields_ = [("layer", ctypes.c_int32), ("hidden_size", ctypes.c_int64),
                ("num_experts", ctypes.c_int32), ("top_k", ctypes.c_int32)]


class Runtime:
    def __init__(self, path):
        L = self.lib = ctypes.CDLL(path)
        L.moe_last_error.restype = ctypes.c_char_p
        L.moe_status_string.argtypes = [ctypes.c_int]
        L.moe_status_string.restype = ctypes.c_char_p
        L.moe_model_open_device.argtypes = [ctypes.c_char_p, ctypes.c_char_p,
                                            ctypes.POINTER(ctypes.c_void_p)]
        L.moe_model_open_device.restype = ctypes.c_int
        L.moe_model_close.argtypes = [ctypes.c_void_p]
        L.moe_model_close.restype = None
        L.moe_model_num_layers.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32)]
        L.moe_model_num_layers.restype = ctypes.c_int
        L.moe_model_layer_info.argtypes = [ctypes.c_void_p, ctypes.c_int32,
                                           ctypes.POINTER(LayerInfo)]
        L.moe_model_layer_info.restype = ctypes.c_int
        L.moe_layer_run.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p,
                                    ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                                    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        L.moe_layer_run.restype = ctypes.c_int
        # moe_layer_run_device (device buffers, a stream, no host copies) is newer than
        # moe_layer_run: bound when the library has it
        self.has_run_device = hasattr(L, "moe_layer_run_device")
        if self.has_run_device:
            L.moe_layer_run_device.argtypes = [
                ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p, ctypes.c_int64,
                ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                ctypes.c_void_p]
            L.moe_layer_run_device.restype = ctypes.c_int

    def error(self, call, status):
        return RuntimeError("%s: %s: %s" % (call, self.lib.moe_status_string(status).decode(),
                                            self.lib.moe_last_error().decode()))


class Model:
    """A compiled folder opened on a device; run() takes raw host addresses."""

    def __init__(self, runtime, folder, device="cuda:0"):
        self.rt, self.handle = runtime, ctypes.c_void_p()
        s = runtime.lib.moe_model_open_device(folder.encode(), device.encode(),
                                              ctypes.byref(self.handle))
        if s != 0:
            raise runtime.error("moe_model_open_device(%s, %s)" % (folder, device), s)
        n = ctypes.c_int32()
        runtime.lib.moe_model_num_layers(self.handle, ctypes.byref(n))
        self.layers = {}
        for i in range(n.value):
            info = LayerInfo()
            runtime.lib.moe_model_layer_info(self.handle, i, ctypes.byref(info))
            self.layers[info.layer] = info

    def run(self, layer, hidden, tokens, hidden_size, out, ids=None, weights=None):
        s = self.rt.lib.moe_layer_run(self.handle, layer, hidden, MOE_DTYPE_F32, tokens,
                                      hidden_size, out, ids, weights)
        if s != 0:
            raise self.rt.error("moe_layer_run(layer %d, T=%d)" % (layer, tokens), s)

    def run_device(self, layer, hidden, tokens, hidden_size, out, ids=None, weights=None,
                   stream=None):
        """Device pointers in and out, enqueued on `stream` (a CUstream handle); returns
        without waiting."""
        s = self.rt.lib.moe_layer_run_device(self.handle, layer, hidden, tokens, hidden_size,
                                             out, ids, weights, stream)
        if s != 0:
            raise self.rt.error("moe_layer_run_device(layer %d, T=%d)" % (layer, tokens), s)

    def close(self):
        if self.handle:
            self.rt.lib.moe_model_close(self.handle)
            self.handle = ctypes.c_void_p()


# ----------------------------------------------------------------------------------------
# Comparisons (numpy; shared by the golden and the full-size checks)
# ----------------------------------------------------------------------------------------

def rel_err(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / d) if d > 0 else float(np.linalg.norm(a - b))


def same_sets(ids_a, ids_b):
    """Per token: are the chosen experts the same set (order ignored)?"""
    return (np.sort(np.asarray(ids_a), axis=1) == np.sort(np.asarray(ids_b), axis=1)).all(axis=1)


def weights_err(ids_a, w_a, ids_b, w_b):
    """Largest |w_a - w_b| over the (token, expert) pairs both chose, relative to the
    largest |w_b|: routing weights matched by expert id, since the order may differ."""
    ia, ib = np.asarray(ids_a), np.asarray(ids_b)
    oa, ob = np.argsort(ia, axis=1), np.argsort(ib, axis=1)
    wa = np.take_along_axis(np.asarray(w_a, np.float64), oa, axis=1)
    wb = np.take_along_axis(np.asarray(w_b, np.float64), ob, axis=1)
    rows = same_sets(ia, ib)
    if not rows.any():
        return None
    return float(np.abs(wa[rows] - wb[rows]).max() / max(np.abs(wb).max(), 1e-30))


# ----------------------------------------------------------------------------------------
# 1. Numerics on the goldens (one child process per family)
# ----------------------------------------------------------------------------------------

def family_cases(stage, family):
    """The (layer, T) cases a staged family has, from its golden.json."""
    with open(os.path.join(stage, "goldens", family, "golden.json")) as f:
        g = json.load(f)
    return g, [(L, T) for L in g["moe_layers"] for T in g["tokens"]]


def numerics_child(a):
    """Runs every case of one family and prints one CASE_PREFIX JSON line per case."""
    from safetensors.numpy import load_file
    base = os.path.join(a.stage, "goldens", a.family)
    g, cases = family_cases(a.stage, a.family)
    t0 = time.perf_counter()
    try:
        model = Model(Runtime(a.runtime), os.path.join(base, "model"), a.device)
    except Exception as e:  # noqa: BLE001 - every case fails with the reason
        for L, T in cases:
            print(CASE_PREFIX + json.dumps(dict(family=a.family, layer=L, T=T, ok=False,
                                                error=str(e))), flush=True)
        return
    print("%s: opened on %s in %.2f s" % (a.family, a.device, time.perf_counter() - t0),
          flush=True)
    for L, T in cases:
        case = dict(family=a.family, layer=L, T=T)
        try:
            info = model.layers[L]
            H, k = info.hidden_size, info.top_k
            x = np.ascontiguousarray(load_file(os.path.join(base, "T%d" % T, "input.safetensors"))
                                     ["hidden_states"], dtype=np.float32)
            gold = load_file(os.path.join(base, "T%d" % T, "layer%d.f32.safetensors" % L))
            out = np.full((T, H), np.nan, np.float32)       # poisoned: unwritten fails
            ids = np.full((T, k), -7, np.int32)
            w = np.full((T, k), np.nan, np.float32)
            model.run(L, x.ctypes.data, T, H, out.ctypes.data, ids.ctypes.data, w.ctypes.data)
            agree = same_sets(ids, gold["topk_ids"])
            case.update(
                rel_err=rel_err(out, gold["hidden_states"]) if np.isfinite(out).all() else None,
                nonfinite=int((~np.isfinite(out)).sum()),
                routing_agree=int(agree.sum()), tokens=T,
                weights_err=weights_err(ids, w, gold["topk_ids"], gold["topk_weights"]))
            bf16 = os.path.join(base, "T%d" % T, "layer%d.bf16.safetensors" % L)
            if os.path.exists(bf16):  # transformers' own bf16 run, for scale
                case["hf_bf16_rel_err"] = rel_err(load_file(bf16)["hidden_states"],
                                                  gold["hidden_states"])
            case["ok"] = bool(case["nonfinite"] == 0 and case["rel_err"] <= a.tol
                              and agree.all())  # (nonfinite == 0: rel_err is a number)
        except Exception as e:  # noqa: BLE001 - report it as this case's failure
            case.update(ok=False, error=str(e))
        print(CASE_PREFIX + json.dumps(case), flush=True)
    model.close()
    print("%s: done" % a.family, flush=True)


def run_child(args, env, timeout, prefix, on_line):
    """Runs this script as a child with `args`; echoes its output (prefixed) and hands
    every line to on_line. Returns (exit code or None if killed at the timeout, tail)."""
    cmd = [sys.executable, "-u", os.path.abspath(__file__)] + args
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=env, start_new_session=True)
    killed = []

    def kill():
        killed.append(True)
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass

    timer = threading.Timer(timeout, kill)
    timer.start()
    tail = []
    try:
        for line in p.stdout:
            line = line.rstrip("\n")
            tail = (tail + [line])[-20:]
            if not line.startswith(CASE_PREFIX):
                print("  [%s] %s" % (prefix, line), flush=True)
            on_line(line)
        p.wait()
    finally:
        timer.cancel()
    return (None if killed else p.returncode), tail


def run_numerics(a, env_for, log, deadline):
    fams = sorted(d for d in os.listdir(os.path.join(a.stage, "goldens"))
                  if os.path.isdir(os.path.join(a.stage, "goldens", d)))
    if a.families:
        fams = [f for f in fams if f in a.families.split(",")]
    cases = []
    timeout = a.family_timeout
    for fam in fams:
        g, expected = family_cases(a.stage, fam)
        got = {}
        left = deadline - time.time()
        if left < 10:
            for L, T in expected:
                cases.append(dict(family=fam, layer=L, T=T, ok=False,
                                  error="not run: past the time limit"))
                log(format_case(cases[-1]))
            continue

        def on_line(line, got=got):
            if line.startswith(CASE_PREFIX):
                c = json.loads(line[len(CASE_PREFIX):])
                got[(c["layer"], c["T"])] = c
                log(format_case(c))

        rc, tail = run_child(["--child", "numerics", "--family", fam, "--stage", a.stage,
                              "--runtime", a.runtime, "--device", a.device,
                              "--tol", str(a.tol)],
                             env_for(g["hidden_size"], g["k"]), min(timeout, left), fam,
                             on_line)
        for L, T in expected:
            if (L, T) not in got:  # the child died or hung before this case
                why = ("killed after %.0f s (a hung kernel?)" % min(timeout, left) if rc is None
                       else "the process exited with %s before this case" % rc)
                c = dict(family=fam, layer=L, T=T, ok=False, error=why,
                         output_tail=tail[-5:])
                got[(L, T)] = c
                log(format_case(c))
            cases.append(got[(L, T)])
        if rc is None:  # one hang is likely a shared kernel's: give the others less time
            timeout = min(timeout, 20)
    return cases


def fmt(x, spec="%.2e"):
    return "—" if x is None else spec % x


def format_case(c):
    head = "%-17s layer %-2d T=%-3d" % (c["family"], c["layer"], c["T"])
    if "error" in c:
        return "%s FAIL  %s" % (head, c["error"])
    return ("%s %s  rel_err=%s (hf bf16 %s)  routing %d/%d  weights_err=%s%s" % (
        head, "ok  " if c["ok"] else "FAIL", fmt(c["rel_err"]),
        "%.1e" % c["hf_bf16_rel_err"] if "hf_bf16_rel_err" in c else "-",
        c["routing_agree"], c["tokens"],
        "%.1e" % c["weights_err"] if c.get("weights_err") is not None else "-",
        "  nonfinite=%d" % c["nonfinite"] if c["nonfinite"] else ""))


# ----------------------------------------------------------------------------------------
# 2. The benchmark: torch parts (imported only in the shape processes)
# ----------------------------------------------------------------------------------------

def read_safetensors_header(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header, 8 + n


class PackedWeights:
    """A compiled folder's weights.safetensors, memory-mapped, tensor by tensor as numpy."""

    def __init__(self, folder):
        self.path = os.path.join(folder, "weights.safetensors")
        self.header, self.base = read_safetensors_header(self.path)
        self.mm = np.memmap(self.path, dtype=np.uint8, mode="c")  # copy-on-write: torch
        # wants writable arrays, nothing is ever written

    def get(self, name):
        if name not in self.header:
            raise KeyError("%s: no tensor %s (tensors: %s)" % (self.path, name,
                                                             ", ".join(sorted(self.header))))
        t = self.header[name]
        a, b = t["data_offsets"]
        raw = self.mm[self.base + a:self.base + b]
        dt = {"BF16": np.uint16, "F32": np.float32}[t["dtype"]]
        return raw.view(dt).reshape(t["shape"])


def unpack_ffn(torch, packed, prefix, E, H, I, dev, chunk=16):
    """moec's panel layout back to nn.Linear orientation, on `dev`: returns
    (w13 [E, 2I, H] = cat(gate, up) as transformers holds gate_up_proj, w2 [E, H, I]).

    The layout (lib/Codegen/CPU/WeightPacking.h): w1 [E][panels1][K rows][P], column c of
    panel p holding gate row p*P/2 + c (c < P/2) or up row p*P/2 + c - P/2; w2
    [E][panels2][Kpad][P], column c of panel p holding output row p*P + c. Padding (rows
    past H or I) is dropped. Works expert chunk by chunk (DeepSeek-V3's w1 is 15 GB)."""
    w1, w2 = packed.get(prefix + "w1"), packed.get(prefix + "w2")
    E1, p1, Krows, P = w1.shape
    E2, p2, Kpad, P2 = w2.shape
    if not (E1 == E2 == E and P == P2 and P % 2 == 0 and p1 * P // 2 >= I and Krows >= H
            and p2 * P >= H and Kpad >= I):
        raise RuntimeError(
            "%s: %sw1 %s / w2 %s do not fit the panel layout this script unpacks for "
            "E=%d H=%d I=%d (did WeightPacking change?)" % (packed.path, prefix, list(w1.shape),
                                                            list(w2.shape), E, H, I))
    half = P // 2
    w13 = torch.empty(E, 2 * I, H, dtype=torch.bfloat16, device=dev)
    w2t = torch.empty(E, H, I, dtype=torch.bfloat16, device=dev)

    def bf16(a):
        return torch.from_numpy(np.ascontiguousarray(a).view(np.int16)).to(dev).view(torch.bfloat16)

    for e0 in range(0, E, chunk):
        e1 = min(E, e0 + chunk)
        n = e1 - e0
        blk = bf16(w1[e0:e1])                                   # [n, p1, K, P]
        w13[e0:e1, :I] = blk[..., :half].permute(0, 1, 3, 2).reshape(n, p1 * half, Krows)[:, :I, :H]
        w13[e0:e1, I:] = blk[..., half:].permute(0, 1, 3, 2).reshape(n, p1 * half, Krows)[:, :I, :H]
        del blk
        blk = bf16(w2[e0:e1])                                   # [n, p2, Kpad, P]
        w2t[e0:e1] = blk.permute(0, 1, 3, 2).reshape(n, p2 * P, Kpad)[:, :H, :I]
        del blk
    return w13, w2t


class LayerWeights:
    """One layer's weights as torch tensors on `dev`, read from moec's packed file."""

    def __init__(self, torch, folder, spec, dev):
        packed = PackedWeights(folder)
        L, E, H, I, S = spec["layer"], spec["E"], spec["H"], spec["I"], spec["shared"]
        p = "layer%d." % L
        self.router = torch.from_numpy(np.array(packed.get(p + "router"))).to(dev)  # f32 [E, H]
        self.bias = (torch.from_numpy(np.array(packed.get(p + "correction_bias"))).to(dev)
                     if spec["family"] == "deepseek_v3" else None)
        self.w13, self.w2 = unpack_ffn(torch, packed, p + "experts.", E, H, I, dev)
        self.shared = None
        if S:
            s13, s2 = unpack_ffn(torch, packed, p + "shared.", 1, H, S, dev)
            self.shared = (s13[0, :S], s13[0, S:], s2[0])  # gate [S, H], up [S, H], down [H, S]
        del packed


def pick_grouped_mm(torch):
    """torch._grouped_mm (or its public name in newer torch); None if neither exists."""
    for fn in (getattr(torch, "_grouped_mm", None),
               getattr(torch.nn.functional, "grouped_mm", None)):
        if fn is not None:
            return fn
    return None


def grouped_mm_loop(x, w, offs):
    """What torch._grouped_mm computes, one matmul per group: rows offs[e-1]:offs[e] of x
    times w[e] ([E, K, N]). Only for the CPU self-check where the fused op is missing."""
    out = x.new_zeros(x.shape[0], w.shape[2])
    start = 0
    for e, end in enumerate(offs.tolist()):
        if end > start:
            out[start:end] = x[start:end] @ w[e]
        start = end
    return out


class Reference:
    """The layer in plain PyTorch: f32 routing as moec computes it, then grouped matmuls."""

    def __init__(self, torch, spec, lw, gmm):
        self.torch, self.spec, self.lw, self.gmm = torch, spec, lw, gmm
        self.w13_t = lw.w13.transpose(1, 2)  # [E, H, 2I]: x @ w13_t = x @ w13.T per expert
        self.w2_t = lw.w2.transpose(1, 2)    # [E, I, H]

    def route(self, x):
        torch, s = self.torch, self.spec
        T, E, k = x.shape[0], s["E"], s["k"]
        logits = x.float() @ self.lw.router.t()
        if s["family"] == "deepseek_v3":
            # sigmoid scores; the correction bias only chooses; groups ranked by the sum of
            # their top-2 choice scores; the other groups' experts are out (-inf)
            scores = logits.sigmoid()
            choice = scores + self.lw.bias
            ng = s["n_group"]
            group = choice.view(T, ng, E // ng).topk(2, dim=-1).values.sum(-1)
            keep = torch.zeros_like(group).scatter_(1, group.topk(s["topk_group"], dim=-1).indices, 1.0)
            keep = keep.bool().unsqueeze(-1).expand(T, ng, E // ng).reshape(T, E)
            ids = choice.masked_fill(~keep, float("-inf")).topk(k, dim=-1).indices
            w = scores.gather(1, ids)
            w = w / (w.sum(-1, keepdim=True) + 1e-20) * s["scaling"]
        else:  # softmax over all experts, top-k, renormalized (Mixtral, Qwen3-MoE)
            w, ids = torch.softmax(logits, dim=-1).topk(k, dim=-1)
            w = w / w.sum(-1, keepdim=True)
        return ids, w

    def __call__(self, x, routing=False):
        torch, F = self.torch, self.torch.nn.functional
        T, H = x.shape
        E, k, I = self.spec["E"], self.spec["k"], self.spec["I"]
        ids, w = self.route(x)
        flat = ids.reshape(-1)
        order = torch.argsort(flat, stable=True)          # (token, slot) pairs by expert
        tok = order // k
        # tokens per expert without a host sync (bincount would need one: graph-safe)
        counts = torch.zeros(E, dtype=torch.int32, device=x.device).scatter_add_(
            0, flat.int(), torch.ones_like(flat, dtype=torch.int32))
        offs = torch.cumsum(counts, 0, dtype=torch.int32)
        h = self.gmm(x[tok], self.w13_t, offs=offs)        # [T*k, 2I]
        h = F.silu(h[:, :I]) * h[:, I:]
        y = self.gmm(h, self.w2_t, offs=offs)              # [T*k, H]
        out = torch.zeros(T, H, dtype=torch.float32, device=x.device)
        out.index_add_(0, tok, y.float() * w.reshape(-1)[order, None])
        if self.lw.shared is not None:
            sg, su, sd = self.lw.shared
            out += (F.silu(x @ sg.t()) * (x @ su.t())) @ sd.t()
        return (out, ids, w) if routing else out


def build_hf_block(torch, spec, lw):
    """transformers' own MoE block of the shape's family, holding the same weights (no
    copy: its parameters are the unpacked tensors). Raises with a clear message when the
    installed transformers lacks the class or lays its parameters out differently."""
    import transformers
    fam, H, I, E, k, S = (spec[x] for x in ("family", "H", "I", "E", "k", "shared"))
    common = dict(hidden_size=H, hidden_act="silu", num_experts_per_tok=k)
    try:
        if fam == "mixtral":
            from transformers import MixtralConfig
            from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock as Block
            cfg = MixtralConfig(intermediate_size=I, num_local_experts=E, **common)
        elif fam == "qwen3_moe":
            from transformers import Qwen3MoeConfig
            from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock as Block
            cfg = Qwen3MoeConfig(moe_intermediate_size=I, num_experts=E, norm_topk_prob=True, **common)
        else:
            from transformers import DeepseekV3Config
            from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE as Block
            cfg = DeepseekV3Config(moe_intermediate_size=I, n_routed_experts=E,
                                   n_shared_experts=S // I, n_group=spec["n_group"],
                                   topk_group=spec["topk_group"], norm_topk_prob=True,
                                   routed_scaling_factor=spec["scaling"], **common)
    except ImportError as e:
        raise RuntimeError("transformers %s has no %s MoE block: %s"
                           % (transformers.__version__, fam, e)) from e
    cfg._experts_implementation = "eager"
    # Built on the meta device (no memory, no init), then every parameter is replaced.
    with torch.device("meta"):
        block = Block(cfg)
    P = torch.nn.Parameter

    def put(module, name, tensor):
        old = getattr(module, name, None)
        if old is None or tuple(old.shape) != tuple(tensor.shape):
            raise RuntimeError("transformers %s: %s.%s is %s, expected shape %s (the block's "
                               "layout changed)" % (transformers.__version__, type(module).__name__,
                                                    name, None if old is None else tuple(old.shape),
                                                    tuple(tensor.shape)))
        if isinstance(old, P):
            setattr(module, name, P(tensor, requires_grad=False))
        else:
            setattr(module, name, tensor)  # a buffer (DeepSeek's correction bias)

    # bf16 blocks get a bf16 router (exact: fill_weights.py writes bf16-representable values)
    put(block.gate, "weight", lw.router.to(lw.w13.dtype))
    put(block.experts, "gate_up_proj", lw.w13)
    put(block.experts, "down_proj", lw.w2)
    if fam == "deepseek_v3":
        put(block.gate, "e_score_correction_bias", lw.bias)
        sg, su, sd = lw.shared
        put(block.shared_experts.gate_proj, "weight", sg)
        put(block.shared_experts.up_proj, "weight", su)
        put(block.shared_experts.down_proj, "weight", sd)
    left = [n for n, t in list(block.named_parameters()) + list(block.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError("transformers %s: %s has tensors this script does not set: %s"
                           % (transformers.__version__, type(block).__name__, left))
    block.eval()

    def run(x, impl="eager"):
        config = getattr(block.experts, "config", None)
        if config is not None:
            config._experts_implementation = impl
        elif impl != "eager":
            raise RuntimeError("transformers %s: the experts have no implementations to "
                               "choose from" % transformers.__version__)
        y = block(x.unsqueeze(0))
        return (y[0] if isinstance(y, tuple) else y)[0]

    def routing(x):
        r = block.gate(x)
        return r[2] if isinstance(r, tuple) and len(r) == 3 else None

    return block, run, routing


class Clock:
    """Per-call times in µs: CUDA events around each call with a synchronize before it
    (so one call's time is its own), or perf_counter on the CPU (dry run)."""

    def __init__(self, torch, cuda):
        self.torch, self.cuda = torch, cuda
        if cuda:
            self.start = torch.cuda.Event(enable_timing=True)
            self.end = torch.cuda.Event(enable_timing=True)

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def once(self, fn, *args):
        self.sync()
        if self.cuda:
            self.start.record()
            fn(*args)
            self.end.record()
            self.end.synchronize()
            return self.start.elapsed_time(self.end) * 1e3
        t = time.perf_counter_ns()
        fn(*args)
        return (time.perf_counter_ns() - t) * 1e-3

    def series(self, fn, n_inputs, warmup, iters, budget_s, min_iters=5):
        """Warm-up calls, then up to `iters` timed calls rotating over the inputs; fewer
        (at least min_iters) when a call is so slow that `iters` would exceed budget_s."""
        w = [self.once(fn, i % n_inputs) for i in range(max(warmup, 1))]
        n = int(max(min_iters, min(iters, budget_s / max(w[-1] * 1e-6, 1e-9))))
        return [self.once(fn, (warmup + i) % n_inputs) for i in range(n)]


def summarize(times):
    t = np.asarray(times)
    return dict(median_us=float(np.median(t)), p10_us=float(np.percentile(t, 10)),
                p90_us=float(np.percentile(t, 90)), iters=len(times))


def measure_ceilings(torch, cuda, dev, clock, log):
    """Device-to-device copy bandwidth (bytes read + written) and the bf16 matmul rate,
    medians of 10 after 3 warm-up runs (small sizes on the CPU in a dry run)."""
    nbytes = (2 << 30) if cuda else (64 << 20)
    n = 8192 if cuda else 512
    src = torch.randn(nbytes // 2, dtype=torch.bfloat16, device=dev)
    dst = torch.empty_like(src)
    t = clock.series(lambda i: dst.copy_(src), 1, 3, 10, 1e9, min_iters=10)
    copy_tbs = 2 * nbytes / (np.median(t) * 1e-6) / 1e12
    del src, dst
    a = torch.randn(n, n, dtype=torch.bfloat16, device=dev)
    b = torch.randn(n, n, dtype=torch.bfloat16, device=dev)
    c = torch.empty(n, n, dtype=torch.bfloat16, device=dev)
    t2 = clock.series(lambda i: torch.matmul(a, b, out=c), 1, 3, 10, 1e9, min_iters=10)
    mm_tflops = 2 * n ** 3 / (np.median(t2) * 1e-6) / 1e12
    del a, b, c
    if cuda:
        torch.cuda.empty_cache()
    r = dict(copy_tbs=float(copy_tbs), copy_bytes=nbytes, copy_us=float(np.median(t)),
             matmul_tflops=float(mm_tflops), matmul_n=n, matmul_us=float(np.median(t2)))
    log("ceilings: copy %.2f TB/s (%d MiB, read + written), bf16 matmul %.0f TFLOP/s (%d^3)"
        % (copy_tbs, nbytes >> 20, mm_tflops, n))
    return r


def profile_moec(torch, call, n_inputs, calls=5):
    """The moec kernels' own device time per call (CUPTI, through torch.profiler): the
    runtime launches through the driver API on its own stream, which CUDA events on
    torch's stream cannot isolate. Returns None where the profiler sees nothing."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    # (CPU activity too: some kineto versions drop device events that no CPU-side event
    # brackets; the calls profiled here are not the timed ones)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for i in range(calls):
            call(i % n_inputs)
        torch.cuda.synchronize()
    kernels, copies = {}, 0.0
    for e in prof.events():
        if e.device_type != DeviceType.CUDA:
            continue
        us = e.time_range.elapsed_us()
        if e.name.startswith("moe_layer_"):
            kernels[e.name] = kernels.get(e.name, 0.0) + us / calls
        elif "memcpy" in e.name.lower():
            copies += us / calls
    if not kernels:
        return None
    return dict(kernels_us=sum(kernels.values()), memcpy_us=copies,
                per_kernel_us=dict(sorted(kernels.items(), key=lambda kv: -kv[1])))


def shape_child(a):
    """Benchmarks one shape; writes its results to a.result after every T."""
    import torch
    cuda = torch.cuda.is_available() and not a.dry_run
    dev = torch.device("cuda:0" if cuda else "cpu")
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False

    def log(msg):
        print(msg, flush=True)

    with open(os.path.join(a.folder, "manifest.json")) as f:
        manifest = json.load(f)
    lay = manifest["layers"][0]
    spec = dict(modules.SHAPES[a.shape], layer=lay["layer"], H=lay["hidden_size"],
                I=lay["expert_width"], E=lay["num_experts"], k=lay["top_k"],
                shared=lay["shared_width"])
    H, I, E, k, S = (spec[x] for x in ("H", "I", "E", "k", "shared"))
    res = dict(shape=a.shape, spec=spec, device=str(dev), torch=torch.__version__,
               gpu=torch.cuda.get_device_name(0) if cuda else "cpu (dry run)",
               rows=[], numerics=[], transfers=[], moec_profile=[], errors=[])
    try:
        import transformers
        res["transformers"] = transformers.__version__
    except ImportError as e:
        res["transformers"] = None
        res["errors"].append("transformers: %s" % e)

    def save():
        with open(a.result, "w") as f:
            json.dump(res, f, indent=1)

    clock = Clock(torch, cuda)
    res["ceilings"] = measure_ceilings(torch, cuda, dev, clock, log)
    save()

    t0 = time.perf_counter()
    lw = LayerWeights(torch, a.folder, spec, dev)
    res["unpack_s"] = time.perf_counter() - t0
    log("weights unpacked from %s in %.1f s" % (a.folder, res["unpack_s"]))
    t0 = time.perf_counter()
    try:  # without moec the baselines are still worth timing
        model = Model(Runtime(a.runtime), a.folder, a.device)
        res["moec_open_s"] = time.perf_counter() - t0
        log("moec folder opened on %s in %.1f s" % (a.device, res["moec_open_s"]))
    except RuntimeError as e:
        model = None
        res["errors"].append("moec: %s" % e)
        log("moec: %s" % e)

    gmm = pick_grouped_mm(torch)
    ref = Reference(torch, spec, lw, gmm)
    try:  # a missing or unusable fused op is reported, the loop stands in
        ref(torch.randn(4, H, device=dev).to(torch.bfloat16))
    except Exception as e:  # noqa: BLE001
        res["errors"].append("torch._grouped_mm unusable here (%s); grouped_mm uses a loop" % e)
        ref.gmm = gmm = grouped_mm_loop
    hf = None
    try:
        hf = build_hf_block(torch, spec, lw)
    except Exception as e:  # noqa: BLE001
        res["errors"].append("transformers block: %s" % e)
        log("transformers block unavailable: %s" % e)

    flops_per_token = 2.0 * k * 3 * H * I + 2.0 * 3 * H * S
    pinned = cuda
    tokens = [int(t) for t in a.tokens.split(",")]

    def bench_tokens(T):
        """Numerics, transfers, timings and the kernel profile at T tokens."""
        gen = torch.Generator().manual_seed(1000 + T)
        xs = [torch.randn(T, H, generator=gen).to(torch.bfloat16) for _ in range(INPUT_SETS)]
        xd = [x.to(dev) for x in xs]                                   # torch contenders
        xh = [x.float().pin_memory() if pinned else x.float() for x in xs]  # moec (host f32)

        def host(*shape, dtype=torch.float32):
            t = torch.empty(*shape, dtype=dtype)
            return t.pin_memory() if pinned else t

        out, ids, tw = host(T, H), host(T, k, dtype=torch.int32), host(T, k)

        def moec_call(i):
            model.run(spec["layer"], xh[i].data_ptr(), T, H, out.data_ptr())

        # moec on device buffers (moe_layer_run_device, where the library has it): torch's
        # tensors and stream, no host copies, so it compares with the torch contenders as is
        device_run = bool(cuda and model and model.rt.has_run_device)
        if device_run:
            xd32 = [x.float() for x in xd]
            outd = torch.empty(T, H, device=dev)
            idsd = torch.empty(T, k, dtype=torch.int32, device=dev)
            twd = torch.empty(T, k, device=dev)

            # A stream of its own: torch's default stream is the legacy NULL stream, which
            # the runtime would read as "the model's own (non-blocking) stream", and CUDA
            # events on torch's stream would then not bracket the work. The contender is
            # timed with this stream current, so the events are recorded on it.
            dstream = torch.cuda.Stream()

            def stream():
                return ctypes.c_void_p(dstream.cuda_stream)

            def moec_device_call(i):
                model.run_device(spec["layer"], xd32[i].data_ptr(), T, H, outd.data_ptr(),
                                 None, None, stream())

        # Full-size numerics: moec and transformers against the reference, every input.
        num = dict(T=T)
        distinct = []
        moec_error = None if model else "not opened"
        with torch.inference_mode():
            for i in range(INPUT_SETS):
                r_out, r_ids, _ = ref(xd[i], routing=True)
                r_out, r_ids = r_out.cpu().numpy(), r_ids.cpu().numpy()
                distinct.append(len(np.unique(r_ids)))
                out.fill_(float("nan"))
                ids.fill_(-7)
                try:
                    if moec_error is None:
                        model.run(spec["layer"], xh[i].data_ptr(), T, H, out.data_ptr(),
                                  ids.data_ptr(), tw.data_ptr())
                except RuntimeError as e:  # a device fault may break torch's calls too
                    moec_error = str(e)
                    res["errors"].append("T=%d moec: %s" % (T, e))
                    log("T=%-4d moec failed: %s" % (T, e))
                accumulate(num, "moec", out.numpy(), ids.numpy(), r_out, r_ids)
                if device_run and moec_error is None:
                    outd.fill_(float("nan"))
                    idsd.fill_(-7)
                    try:
                        model.run_device(spec["layer"], xd32[i].data_ptr(), T, H, outd.data_ptr(),
                                         idsd.data_ptr(), twd.data_ptr(), stream())
                        torch.cuda.synchronize()
                        accumulate(num, "moec-device", outd.cpu().numpy(), idsd.cpu().numpy(),
                                   r_out, r_ids)
                    except RuntimeError as e:
                        moec_error = str(e)
                        res["errors"].append("T=%d moec-device: %s" % (T, e))
                        log("T=%-4d moec-device failed: %s" % (T, e))
                if hf:
                    hf_ids = hf[2](xd[i])
                    accumulate(num, "hf-eager", hf[1](xd[i]).float().cpu().numpy(),
                               None if hf_ids is None else hf_ids.cpu().numpy(), r_out, r_ids)
        finish_numerics(num, a.tol)
        res["numerics"].append(num)
        log("T=%-4d numerics vs grouped_mm reference: %s" % (T, "; ".join(
            "%s rel_err %s routing %d/%d%s" % (c, fmt(v["rel_err"]), v["agree"], v["tokens"],
                                                 "" if v.get("ok", True) else " WRONG")
            for c, v in num.items() if isinstance(v, dict))))

        weight_bytes = float(np.mean(distinct)) * 3 * H * I * 2 + E * H * 2 + 3 * H * S * 2
        flops = T * flops_per_token

        # Transfers moe_layer_run makes: hidden f32 in, output f32 out (pinned, torch).
        if cuda:
            dbuf = torch.empty(T, H, device=dev)
            h2d = clock.series(lambda i: dbuf.copy_(xh[i], non_blocking=True), INPUT_SETS, 3, 10, 1e9, 10)
            d2h = clock.series(lambda i: out.copy_(dbuf, non_blocking=True), 1, 3, 10, 1e9, 10)
            res["transfers"].append(dict(T=T, bytes_each_way=T * H * 4,
                                         h2d_us=float(np.median(h2d)), d2h_us=float(np.median(d2h))))
            del dbuf

        calls = {"moec": moec_call} if moec_error is None else {}
        if device_run and moec_error is None:
            calls["moec-device"] = moec_device_call
        with torch.inference_mode():
            calls["grouped_mm"] = lambda i: ref(xd[i])
            if cuda:
                try:
                    calls["grouped_mm-graph"] = capture_graphs(torch, ref, xd)
                except Exception as e:  # noqa: BLE001
                    res["errors"].append("T=%d grouped_mm-graph: capture failed: %s" % (T, e))
            if hf:
                calls["hf-eager"] = lambda i: hf[1](xd[i], "eager")
                calls["hf-grouped_mm"] = lambda i: hf[1](xd[i], "grouped_mm")
            for c in CONTENDERS:
                if c not in calls:
                    continue
                try:
                    with (torch.cuda.stream(dstream) if c == "moec-device"
                          else contextlib.nullcontext()):
                        times = clock.series(calls[c], INPUT_SETS, a.warmup, a.iters, a.budget)
                except Exception as e:  # noqa: BLE001
                    res["errors"].append("T=%d %s: %s" % (T, c, e))
                    log("T=%-4d %-16s failed: %s" % (T, c, e))
                    continue
                row = dict(T=T, contender=c, **summarize(times), flops=flops,
                           weight_bytes=weight_bytes, experts_hit=float(np.mean(distinct)))
                s = row["median_us"] * 1e-6
                row.update(tflops=flops / s / 1e12, tbs=weight_bytes / s / 1e12,
                           frac_matmul=flops / s / 1e12 / res["ceilings"]["matmul_tflops"],
                           frac_copy=weight_bytes / s / 1e12 / res["ceilings"]["copy_tbs"])
                res["rows"].append(row)
                log("T=%-4d %-16s %10.1f us  (p10-p90 %.1f-%.1f, n=%d)  %7.2f TFLOP/s  %5.2f TB/s"
                    % (T, c, row["median_us"], row["p10_us"], row["p90_us"], row["iters"],
                       row["tflops"], row["tbs"]))
            calls.pop("grouped_mm-graph", None)  # frees the graphs' memory
            if cuda and not a.no_profile and moec_error is None:
                try:
                    p = profile_moec(torch, moec_call, INPUT_SETS)
                    if p:
                        p["T"] = T
                        res["moec_profile"].append(p)
                        log("T=%-4d moec kernels %.1f us per call (CUPTI), copies %.1f us: %s"
                            % (T, p["kernels_us"], p["memcpy_us"], ", ".join(
                                "%s %.1f" % (n.replace("moe_layer_%d_" % spec["layer"], ""), u)
                                for n, u in p["per_kernel_us"].items())))
                    else:
                        res["errors"].append("T=%d: the profiler saw no moe_layer_ kernels" % T)
                except Exception as e:  # noqa: BLE001
                    res["errors"].append("T=%d: profiler: %s" % (T, e))
        save()

    for T in tokens:
        if time.time() > a.deadline:
            res["errors"].append("T=%d and later: skipped, past the time limit" % T)
            log("past the time limit: T >= %d skipped" % T)
            break
        try:
            bench_tokens(T)
        except Exception as e:  # noqa: BLE001 - e.g. a device fault: report, go on
            res["errors"].append("T=%d: %s: %s" % (T, type(e).__name__, e))
            log("T=%-4d failed: %s: %s" % (T, type(e).__name__, e))
        save()
    if model:
        model.close()
    save()
    log("done")


def accumulate(num, name, out, ids, r_out, r_ids):
    """Adds one input's comparison to num[name]: routing agreement, and the error over
    the rows whose routing agrees (a row routed elsewhere differs wholesale)."""
    v = num.setdefault(name, dict(agree=0, tokens=0, d2=0.0, r2=0.0, nonfinite=0))
    v["nonfinite"] += int((~np.isfinite(out)).sum())
    rows = same_sets(ids, r_ids) if ids is not None else np.ones(len(out), bool)
    if ids is None:
        v["routing"] = "n/a"
    v["agree"] += int(rows.sum())
    v["tokens"] += len(rows)
    d = np.nan_to_num(out[rows].astype(np.float64) - r_out[rows], nan=1e30)
    v["d2"] += float((d * d).sum())
    v["r2"] += float((r_out[rows].astype(np.float64) ** 2).sum())


def finish_numerics(num, tol):
    for name, v in num.items():
        if not isinstance(v, dict):
            continue
        d2, r2 = v.pop("d2"), v.pop("r2")
        v["rel_err"] = float(np.sqrt(d2 / r2)) if v["agree"] and r2 > 0 else None
        if name.startswith("moec"):  # only moec is held to account; baselines are reported
            differ = v["tokens"] - v["agree"]
            v["ok"] = bool(v["nonfinite"] == 0 and v["rel_err"] is not None
                           and v["rel_err"] <= tol and differ <= max(1, v["tokens"] // 100))


def capture_graphs(torch, ref, xd):
    """One CUDA graph of the reference per input set (sharing one memory pool)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for x in xd:
            ref(x)  # warm-up on the side stream, as capture requires
    torch.cuda.current_stream().wait_stream(s)
    pool = torch.cuda.graph_pool_handle()
    graphs = []
    for x in xd:
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, pool=pool):
            ref(x)
        graphs.append(g)
    return lambda i: graphs[i].replay()


# ----------------------------------------------------------------------------------------
# Orchestration (the parent process: no torch, no CUDA context of its own)
# ----------------------------------------------------------------------------------------

class Filler(threading.Thread):
    """Copies each staged shape folder to the work folder and fills its weights, in the
    background while the numerics run; the benchmark waits for each shape in turn."""

    def __init__(self, a, shapes, log):
        super().__init__(daemon=True)
        self.a, self.shapes, self.log = a, shapes, log
        self.done = {s: threading.Event() for s in shapes}
        self.error = {}

    def run(self):
        for s in self.shapes:
            try:
                src = os.path.join(self.a.stage, "shapes", s)
                dst = os.path.join(self.a.work, s)
                with open(os.path.join(src, "weights.layout.json")) as f:
                    want = json.load(f)["weights_hash"]
                try:
                    with open(os.path.join(dst, "manifest.json")) as f:
                        have = json.load(f)["weights_hash"]
                except (OSError, ValueError, KeyError):
                    have = None
                if have != want:  # another compile: start over (the old weights are void)
                    shutil.rmtree(dst, ignore_errors=True)
                os.makedirs(dst, exist_ok=True)
                for name in os.listdir(src):  # everything but weights (small)
                    p = os.path.join(src, name)
                    if name.startswith("weights.safetensors"):
                        continue
                    if os.path.isdir(p):
                        shutil.copytree(p, os.path.join(dst, name), dirs_exist_ok=True)
                    else:
                        shutil.copy2(p, dst)
                p = subprocess.run([sys.executable, os.path.join(HERE, "fill_weights.py"), dst,
                                    "--seed", str(self.a.seed)], capture_output=True, text=True)
                for line in (p.stdout + p.stderr).strip().splitlines():
                    self.log("  [fill] " + line)
                if p.returncode != 0:
                    self.error[s] = "fill_weights.py failed (%d)" % p.returncode
            except Exception as e:  # noqa: BLE001
                self.error[s] = str(e)
            self.done[s].set()


def gpu_facts():
    q = "name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit,temperature.gpu"
    try:
        p = subprocess.run(["nvidia-smi", "--query-gpu=" + q, "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30)
        return dict(zip(q.split(","), [v.strip() for v in p.stdout.strip().split(",")])) \
            if p.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", default=os.path.join(HERE, ".stage"),
                    help="what prepare.sh staged (goldens/, shapes/, libmoe_runtime.so)")
    ap.add_argument("--work", default="/tmp/moec-gpu",
                    help="where the shape folders get their filled weights (~27 GB); a "
                         "second run on the same machine reuses them")
    ap.add_argument("--out", default=os.path.join(HERE, ".stage", "results.json"))
    ap.add_argument("--runtime", default=None, help="libmoe_runtime.so (default: STAGE's)")
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--families", default="", help="comma-separated subset of the goldens")
    ap.add_argument("--shapes", default=",".join(modules.SHAPES))
    ap.add_argument("--tokens", default=",".join(map(str, TOKENS)))
    ap.add_argument("--tol", type=float, default=1e-2,
                    help="bound on moec's relative error (bf16 compute, f32 accumulation)")
    ap.add_argument("--bench-even-if-wrong", action="store_true",
                    help="run the benchmark even when the golden numerics fail")
    ap.add_argument("--skip-numerics", action="store_true")
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=20, help="timed calls per contender and T")
    ap.add_argument("--budget", type=float, default=1.5,
                    help="seconds of timed calls per contender and T (fewer iterations "
                         "when a call is slow; at least 5)")
    ap.add_argument("--time-limit", type=float, default=480,
                    help="seconds for the whole run; later shapes/T are skipped past it")
    ap.add_argument("--family-timeout", type=float, default=60,
                    help="seconds for one golden family's process (20 after one hangs)")
    ap.add_argument("--shape-timeout", type=float, default=300,
                    help="seconds at most for one shape's process (also a fair share of "
                         "the time left)")
    ap.add_argument("--no-profile", action="store_true", help="skip the CUPTI kernel times")
    ap.add_argument("--seed", type=int, default=0, help="fill_weights.py's seed")
    ap.add_argument("--fill-wait", type=float, default=150,
                    help="seconds to wait after the numerics for every shape's weights "
                         "before timing any (then shape by shape)")
    ap.add_argument("--dry-run", action="store_true",
                    help="no GPU: load the runtime's test fake of the CUDA driver "
                         "(--fake-driver) and run torch on the CPU; outputs are the fake's, so "
                         "numerics fail, which shows the failure paths work")
    ap.add_argument("--fake-driver",
                    default=os.path.join(ROOT, "build", "test", "runtime", "fake_cuda", "libcuda.so.1"))
    ap.add_argument("--table", metavar="RESULTS_JSON", help="print a results file's tables")
    # internal: the child processes
    ap.add_argument("--child", choices=["numerics", "shape"], help=argparse.SUPPRESS)
    ap.add_argument("--family", help=argparse.SUPPRESS)
    ap.add_argument("--shape", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--deadline", type=float, default=float("inf"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.stage = os.path.abspath(a.stage)
    a.runtime = os.path.abspath(a.runtime or os.path.join(a.stage, "libmoe_runtime.so"))

    if a.table:
        with open(a.table) as f:
            print(tables(json.load(f)))
        return 0
    if a.child == "numerics":
        numerics_child(a)
        return 0
    if a.child == "shape":
        shape_child(a)
        return 0

    start = time.time()
    deadline = start + a.time_limit
    log_lines = []

    def log(msg):
        print(msg, flush=True)
        log_lines.append(msg)

    def env_for(hidden, k):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if a.dry_run:  # the fake driver writes 1 + T into the output, k ids per token
            env.update(MOE_CUDA_DRIVER=os.path.abspath(a.fake_driver),
                       MOE_FAKE_CUDA_HIDDEN=str(hidden), MOE_FAKE_CUDA_TOPK=str(k))
        return env

    results = dict(date=time.strftime("%Y-%m-%d %H:%M:%S %Z"), host=platform.node(),
                   dry_run=a.dry_run, gpu=None if a.dry_run else gpu_facts(),
                   python=platform.python_version(), numpy=np.__version__,
                   args={k: v for k, v in vars(a).items() if k not in ("child",)},
                   numerics=None, shapes=[], status=None)
    try:
        with open(os.path.join(a.stage, "stage.json")) as f:
            results["stage"] = json.load(f)
    except (OSError, ValueError):
        results["stage"] = None

    def save():
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)

    log("moec GPU check and benchmark, %s%s" % (results["date"], " (DRY RUN: fake driver, "
                                                 "torch on the CPU)" if a.dry_run else ""))
    if results["gpu"]:
        log("GPU: " + ", ".join("%s %s" % kv for kv in results["gpu"].items()))
    shapes = [s for s in a.shapes.split(",") if s] if not a.skip_bench else []
    filler = None
    if shapes:
        os.makedirs(a.work, exist_ok=True)
        filler = Filler(a, shapes, log)
        filler.start()

    failed_numerics = False
    if not a.skip_numerics:
        log("\n== numerics: every golden family, layer and T against transformers' f32 output "
            "(bound %.0e)" % a.tol)
        cases = run_numerics(a, env_for, log, deadline)
        bad = [c for c in cases if not c["ok"]]
        fams = sorted({c["family"] for c in cases})
        bad_fams = sorted({c["family"] for c in bad})
        results["numerics"] = dict(cases=cases, tol=a.tol, passed=len(cases) - len(bad),
                                   failed=len(bad), families=fams, failed_families=bad_fams)
        log("numerics: %d/%d cases passed; %d/%d families all right%s"
            % (len(cases) - len(bad), len(cases), len(fams) - len(bad_fams), len(fams),
               "; failing: " + ", ".join(bad_fams) if bad_fams else ""))
        failed_numerics = bool(bad) or not cases
        save()

    if failed_numerics and not a.bench_even_if_wrong:
        log("golden numerics failed: benchmark skipped (--bench-even-if-wrong runs it anyway)")
        shapes = []
    if shapes:
        # All fills first (up to --fill-wait): a fill still writing GBs while a shape is
        # timed would share the host's memory bandwidth and a core with it. A disk so slow
        # that waiting would starve the benchmark is waited for shape by shape instead.
        t0 = time.time()
        for s in shapes:
            filler.done[s].wait(max(0.0, min(deadline - 60, t0 + a.fill_wait) - time.time()))
        log("\nweights: %d/%d shapes filled (waited %.0f s for the fill after the numerics)"
            % (sum(filler.done[s].is_set() and s not in filler.error for s in shapes),
               len(shapes), time.time() - t0))
    for n_done, s in enumerate(shapes):
        filler.done[s].wait(max(0.0, deadline - 30 - time.time()))
        filling = [x for x in shapes if not filler.done[x].is_set()]
        left = deadline - time.time()
        if left < 30:
            results["shapes"].append(dict(shape=s, errors=["skipped: past the time limit"]))
            log("%s: skipped, past the time limit" % s)
            continue
        # a fair share of the time left, so one slow or hung shape cannot starve the rest
        budget = min(a.shape_timeout, max(60.0, left / (len(shapes) - n_done)))
        log("\n== %s (at most %.0f s)" % (s, budget))
        if not filler.done[s].is_set() or s in filler.error:
            why = filler.error.get(s, "weights not filled in time")
            results["shapes"].append(dict(shape=s, errors=[why]))
            log("%s: %s" % (s, why))
            continue
        folder = os.path.join(a.work, s)
        with open(os.path.join(folder, "manifest.json")) as f:
            lay = json.load(f)["layers"][0]
        result_path = os.path.join(a.work, s + ".result.json")
        if os.path.exists(result_path):
            os.remove(result_path)
        rc, tail = run_child(["--child", "shape", "--shape", s, "--folder", folder,
                              "--stage", a.stage, "--runtime", a.runtime, "--device", a.device,
                              "--result", result_path, "--tokens", a.tokens,
                              "--warmup", str(a.warmup), "--iters", str(a.iters),
                              "--budget", str(a.budget), "--tol", str(a.tol),
                              "--deadline", str(time.time() + budget - 20)]
                             + (["--no-profile"] if a.no_profile else [])
                             + (["--dry-run"] if a.dry_run else []),
                             env_for(lay["hidden_size"], lay["top_k"]),
                             budget, s, lambda line: None)
        try:
            with open(result_path) as f:
                r = json.load(f)
        except (OSError, ValueError):
            r = dict(shape=s, errors=[])
        if filling:
            r.setdefault("errors", []).append(
                "timed while fill_weights.py was still writing %s (disk and memory traffic "
                "beside the benchmark)" % ", ".join(filling))
        if rc != 0:
            r.setdefault("errors", []).append(
                "the benchmark process %s; last output: %s"
                % ("timed out" if rc is None else "exited with %s" % rc, " | ".join(tail[-5:])))
        results["shapes"].append(r)
        save()

    problems = []
    if failed_numerics:
        problems.append("golden numerics failed")
    for r in results["shapes"]:
        if not r.get("rows"):
            problems.append("%s: no timings" % r["shape"])
        wrong = [n["T"] for n in r.get("numerics", [])
                 if not all(n.get(c, {}).get("ok", True) for c in ("moec", "moec-device"))]
        if wrong:
            problems.append("%s: moec disagrees with the reference at T=%s" % (r["shape"], wrong))
    results["status"] = "ok" if not problems else "; ".join(problems)
    results["wall_s"] = time.time() - start
    save()
    md = tables(results)
    with open(os.path.splitext(a.out)[0] + ".md", "w") as f:
        f.write(md + "\n")
    log("\nwrote %s and %s (%.0f s)\n" % (a.out, os.path.splitext(a.out)[0] + ".md",
                                         results["wall_s"]))
    print(md)
    print("\nstatus: %s" % results["status"])
    return 0 if not problems else (1 if failed_numerics else 2)


# ----------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------

def why(case):
    """A golden case's failure in a few words."""
    if "error" in case:
        return case["error"][:80]
    r = []
    if case.get("nonfinite"):
        r.append("%d non-finite" % case["nonfinite"])
    if case["rel_err"] is not None:
        r.append("rel err %.1e" % case["rel_err"])
    if case["routing_agree"] != case["tokens"]:
        r.append("routing %d/%d" % (case["routing_agree"], case["tokens"]))
    return ", ".join(r)


def tables(res):
    out = []
    gpu = res.get("gpu") or {}
    first = next((s for s in res["shapes"] if s.get("ceilings")), None)
    out.append("GPU run of %s: %s%s, torch %s, transformers %s%s." % (
        res["date"], gpu.get("name") or (first or {}).get("gpu", "?"),
        " (driver %s)" % gpu["driver_version"] if gpu.get("driver_version") else "",
        (first or {}).get("torch", "?"), (first or {}).get("transformers", "?"),
        "; DRY RUN (fake driver, CPU torch: numbers mean nothing)" if res.get("dry_run") else ""))
    st = res.get("stage") or {}
    if st:
        out.append("moec %s%s, staged %s." % (st.get("commit", "?"),
                                               " (+ local changes)" if st.get("modified") else "",
                                               st.get("date", "?")))
    n = res.get("numerics")
    if n:
        out += ["", "Numerics on the goldens (moec on the GPU vs transformers' f32 output; bound "
                "%.0e; routing as sets per token): %d/%d cases passed." % (n["tol"], n["passed"],
                                                                           n["passed"] + n["failed"]),
                "", "| family | cases | max rel err | transformers bf16 (for scale) | routing | "
                "max weights err | result |", "|---|---:|---:|---:|---:|---:|---|"]
        for fam in n["families"]:
            cs = [c for c in n["cases"] if c["family"] == fam]
            errs = [c["rel_err"] for c in cs if c.get("rel_err") is not None]
            hf = [c["hf_bf16_rel_err"] for c in cs if "hf_bf16_rel_err" in c]
            we = [c["weights_err"] for c in cs if c.get("weights_err") is not None]
            fails = [c for c in cs if not c["ok"]]
            out.append("| %s | %d | %s | %s | %d/%d | %s | %s |" % (
                fam, len(cs), "%.1e" % max(errs) if errs else "—",
                "%.1e" % max(hf) if hf else "—",
                sum(c.get("routing_agree", 0) for c in cs), sum(c["T"] for c in cs),
                "%.1e" % max(we) if we else "—",
                "ok" if not fails else "FAIL (%d): " % len(fails) + "; ".join(
                    "L%d T%d %s" % (c["layer"], c["T"], why(c)) for c in fails[:2])))
    shapes = [s for s in res["shapes"] if s.get("rows")]
    if shapes:
        out += ["", "Ceilings measured with torch in each shape's process: "
                + "; ".join("%s copy %.2f TB/s, bf16 matmul %.0f TFLOP/s" % (
                    s["shape"], s["ceilings"]["copy_tbs"], s["ceilings"]["matmul_tflops"])
                    for s in shapes) + ".",
                "", "moec µs is moe_layer_run from pinned host buffers, INCLUDING the copies "
                "of hidden (f32) in and the output (f32) out; 'copies' is the pure transfer "
                "time of those bytes (torch, pinned), 'moec kernels' the moec kernels' own "
                "device time (CUPTI). The torch contenders take and return device tensors. "
                "TFLOP/s counts routed + shared experts; TB/s the bf16 expert weights the "
                "routing touches + router + shared.",
                "moec device µs is moe_layer_run_device (torch's device tensors and stream, no "
                "host copies; where the runtime has it): the figure to hold against torch, and "
                "the one the TFLOP/s and TB/s columns use when present.",
                "", "| shape | T | moec µs | moec kernels µs | copies µs | moec device µs | "
                "grouped_mm µs | grouped_mm graph µs | hf eager µs | hf grouped_mm µs | "
                "moec / grouped_mm | moec device / grouped_mm | moec TFLOP/s (% mm) | "
                "moec TB/s (% copy) | moec kernels TB/s | moec check |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for s in shapes:
            for T in sorted({r["T"] for r in s["rows"]}):
                r = {x["contender"]: x for x in s["rows"] if x["T"] == T}
                m = r.get("moec-device") or r.get("moec")
                prof = next((p for p in s.get("moec_profile", []) if p["T"] == T), None)
                tr = next((p for p in s.get("transfers", []) if p["T"] == T), None)
                nums = next((x for x in s.get("numerics", []) if x["T"] == T), {})
                num = nums.get("moec-device") or nums.get("moec")
                us = lambda c: "%.0f" % r[c]["median_us"] if c in r else "—"  # noqa: E731
                ratio = lambda c: ("%.2f" % (r[c]["median_us"] / r["grouped_mm"]["median_us"])  # noqa: E731
                                   if c in r and "grouped_mm" in r else "—")
                out.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    s["shape"], T, us("moec"),
                    "%.0f" % prof["kernels_us"] if prof else "—",
                    "%.0f" % (tr["h2d_us"] + tr["d2h_us"]) if tr else "—", us("moec-device"),
                    us("grouped_mm"), us("grouped_mm-graph"), us("hf-eager"), us("hf-grouped_mm"),
                    ratio("moec"), ratio("moec-device"),
                    "%.1f (%.0f %%)" % (m["tflops"], 100 * m["frac_matmul"]) if m else "—",
                    "%.2f (%.0f %%)" % (m["tbs"], 100 * m["frac_copy"]) if m else "—",
                    "%.2f" % (m["weight_bytes"] / (prof["kernels_us"] * 1e-6) / 1e12)
                    if m and prof else "—",
                    ("ok" if num.get("ok") else "WRONG") + " %s, %d/%d" % (
                        fmt(num["rel_err"], "%.0e"), num["agree"], num["tokens"]) if num else "—"))
        out += ["", "| shape | T | contender | µs (median) | p10–p90 µs | n | TFLOP/s | % matmul | "
                "weights GB/call | TB/s | % copy | rel err vs grouped_mm | routing |",
                "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for s in shapes:
            for x in s["rows"]:
                num = next((v for v in s.get("numerics", []) if v["T"] == x["T"]), {}).get(
                    x["contender"] if x["contender"] != "hf-grouped_mm" else "none")
                out.append("| %s | %d | %s | %.1f | %.1f–%.1f | %d | %.2f | %.1f | %.3f | %.2f | %.0f | %s | %s |" % (
                    s["shape"], x["T"], x["contender"], x["median_us"], x["p10_us"], x["p90_us"],
                    x["iters"], x["tflops"], 100 * x["frac_matmul"], x["weight_bytes"] / 1e9,
                    x["tbs"], 100 * x["frac_copy"],
                    fmt(num["rel_err"], "%.1e") if num else ("(reference)" if x["contender"] == "grouped_mm" else "—"),
                    "%d/%d" % (num["agree"], num["tokens"]) if num else "—"))
        profs = [(s["shape"], p) for s in shapes for p in s.get("moec_profile", [])]
        if profs:
            out += ["", "moec kernels per call (µs, CUPTI):", "",
                    "| shape | T | kernels | " + "by kernel |", "|---|---:|---:|---|"]
            for name, p in profs:
                out.append("| %s | %d | %.1f | %s |" % (name, p["T"], p["kernels_us"], ", ".join(
                    "%s %.1f" % (k.split("_", 3)[-1], v) for k, v in p["per_kernel_us"].items())))
    errs = [(s["shape"], e) for s in res["shapes"] for e in s.get("errors", [])]
    if errs:
        out += ["", "Notes and errors:", ""] + ["- %s: %s" % e for e in errs]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
