#!/usr/bin/env python3
"""moec's compiled MoE layer against eager implementations of the same block, on the CPU.

Contenders, all in this one process, on the same inputs and the same rotation of layers:

  moec        the compiled folder (moe-compile CKPT -o OUT) through libmoe_runtime.so
              (ctypes; moe_model_open, moe_layer_run with MOE_DTYPE_F32 hidden states)
  numpy-f32   the block written as eager frameworks do (router, softmax, top-k, renormalise,
              then per expert: gather, x@W1.T, x@W3.T, silu(g)*u @ W2.T, scatter-add);
              weights float32 (numpy has no bf16), numpy's own OpenBLAS
  torch-bf16  the same block with torch ops (transformers' eager Mixtral block), weights and
              activations bfloat16, as transformers runs a bf16 checkpoint
  torch-f32   the same with float32 weights and activations

Every contender is timed call by call over a fixed schedule of (layer, input) pairs: the
layer rotates over the checkpoint's R layers call after call, and the input over P distinct
token batches, so the weights a call reads were last touched R*P-1 calls earlier (the script
reports the bytes one rotation touches against the 32 MB L3); on top of that the caches are
flushed (untimed) before every timed call: cold weights, as in a model whose other layers ran
in between. One untimed rotation warms every contender up; contenders run in blocks (their
thread pools never compete) and the blocks repeat for several rounds in alternating order,
so slow drift of a noisy VM hits everyone alike. A block during which tasks waited for a CPU
(PSI) more than 5 % of the time is repeated. Before every block the read bandwidth is sampled
(bench/peak.c `read`): this VM's bandwidth drifts. Reported: the median over all timed calls.

Usage (bench/run.sh does everything, including the checkpoints and moe-compile):
    bench_cpu.py --data bench/.data --peak bench/.data/peak.json --out bench/.data/results.json
"""

import argparse
import ctypes
import json
import os
import platform
import struct
import subprocess
import sys
import time

# torch first: it brings its own OpenMP (libgomp); the moec library brings LLVM's libomp.
import torch
import torch.nn.functional as F
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MOE_DTYPE_F32 = 15  # include/moe/dtype.h

SHAPES = {  # as in make_checkpoint.py
    "mixtral-like": dict(H=1024, I=2816, E=8, k=2),
    "fine-grained": dict(H=1024, I=384, E=64, k=8),
}
CONTENDERS = ["moec", "numpy-f32", "torch-bf16", "torch-f32"]


# ----------------------------------------------------------------------------------------
# Checkpoint reading (raw safetensors: numpy has no bf16)
# ----------------------------------------------------------------------------------------

def read_safetensors_bf16(path):
    """{name: uint16 array (bf16 bits)} memory-mapped from a safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    base = 8 + n
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "BF16", (name, info["dtype"])
        a, b = info["data_offsets"]
        out[name] = mm[base + a:base + b].view(np.uint16).reshape(info["shape"])
    return out


def bf16_bits_to_f32(bits):
    return (np.asarray(bits).astype(np.uint32) << np.uint32(16)).view(np.float32)


def f32_to_bf16_exact(x):
    """x rounded to the nearest bf16 (ties to even), returned as float32."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    r = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return r.view(np.float32)


class Layer:
    """One decoder layer's MoE weights in every form the contenders use."""

    def __init__(self, tensors, layer, E):
        p = f"model.layers.{layer}.block_sparse_moe."
        self.router_bits = tensors[p + "gate.weight"]
        bits = [(tensors[p + f"experts.{e}.w1.weight"], tensors[p + f"experts.{e}.w3.weight"],
                 tensors[p + f"experts.{e}.w2.weight"]) for e in range(E)]
        # numpy float32 (C-contiguous [out, in] as nn.Linear stores them; x @ W.T is a
        # transposed view, no copy). torch-f32 shares these buffers.
        self.np_router = bf16_bits_to_f32(self.router_bits)
        self.np_experts = [tuple(bf16_bits_to_f32(w) for w in ws) for ws in bits]
        self.t32_router = torch.from_numpy(self.np_router)
        self.t32_experts = [tuple(torch.from_numpy(w) for w in ws) for ws in self.np_experts]

        def bf16(w):
            return torch.from_numpy(np.array(w).view(np.int16)).view(torch.bfloat16).clone()

        self.tbf_router = bf16(self.router_bits)
        self.tbf_experts = [tuple(bf16(w) for w in ws) for ws in bits]


# ----------------------------------------------------------------------------------------
# The eager blocks
# ----------------------------------------------------------------------------------------

def numpy_block(x, layer, k):
    """Eager Mixtral block in numpy float32: returns (output [T, H], ids [T, k])."""
    T = x.shape[0]
    logits = x @ layer.np_router.T                                 # [T, E]
    logits = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    ids = np.argsort(-probs, axis=1, kind="stable")[:, :k]         # top-k
    weights = np.take_along_axis(probs, ids, axis=1)
    weights /= weights.sum(axis=1, keepdims=True)                  # renormalise
    out = np.zeros_like(x)
    for e in np.unique(ids):
        tok, slot = np.nonzero(ids == e)                           # its tokens (each once)
        w1, w3, w2 = layer.np_experts[e]
        xe = x[tok]                                                # gather
        g = xe @ w1.T
        u = xe @ w3.T
        h = g / (1.0 + np.exp(-g)) * u                             # silu(g) * u
        y = h @ w2.T
        out[tok] += y * weights[tok, slot][:, None]                # scatter-add, weighted
    return out, ids


def torch_block(x, router, experts, k):
    """transformers' eager MixtralSparseMoeBlock (per-expert loop), in x's dtype."""
    T, H = x.shape
    E = router.shape[0]
    router_logits = F.linear(x, router)
    routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float)
    routing_weights, selected = torch.topk(routing_weights, k, dim=-1)
    routing_weights /= routing_weights.sum(dim=-1, keepdim=True)
    routing_weights = routing_weights.to(x.dtype)
    final = torch.zeros((T, H), dtype=x.dtype)
    expert_mask = F.one_hot(selected, num_classes=E).permute(2, 1, 0)
    expert_hit = torch.greater(expert_mask.sum(dim=(-1, -2)), 0).nonzero()
    for expert_idx in expert_hit:
        e = int(expert_idx)
        idx, top_x = torch.where(expert_mask[e])
        w1, w3, w2 = experts[e]
        current = x[top_x]
        current = F.silu(F.linear(current, w1)) * F.linear(current, w3)
        current = F.linear(current, w2) * routing_weights[top_x, idx, None]
        final.index_add_(0, top_x, current.to(x.dtype))
    return final, selected


# ----------------------------------------------------------------------------------------
# moec through the runtime's C API
# ----------------------------------------------------------------------------------------

class Moec:
    def __init__(self, lib_path, folder):
        self.lib = ctypes.CDLL(lib_path)
        L = self.lib
        L.moe_last_error.restype = ctypes.c_char_p
        L.moe_model_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
        L.moe_model_open.restype = ctypes.c_int
        L.moe_model_close.argtypes = [ctypes.c_void_p]
        L.moe_model_close.restype = None
        L.moe_layer_run.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p,
                                    ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                                    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        L.moe_layer_run.restype = ctypes.c_int
        self.model = ctypes.c_void_p()
        if L.moe_model_open(folder.encode(), ctypes.byref(self.model)) != 0:
            raise RuntimeError("moe_model_open: " + L.moe_last_error().decode())

    def run(self, layer, x, out, ids, weights):
        status = self.lib.moe_layer_run(self.model, layer, x.ctypes.data, MOE_DTYPE_F32,
                                        x.shape[0], x.shape[1], out.ctypes.data,
                                        ids.ctypes.data, weights.ctypes.data)
        if status != 0:
            raise RuntimeError("moe_layer_run: " + self.lib.moe_last_error().decode())

    def close(self):
        self.lib.moe_model_close(self.model)


# ----------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------

def rel_err(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def same_routing(ids_a, ids_b):
    a = np.sort(np.asarray(ids_a), axis=1)
    b = np.sort(np.asarray(ids_b), axis=1)
    return int((a == b).all(axis=1).sum())


def cpu_jiffies():
    """(busy, steal) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return user + nice + system + irq + softirq, steal


HZ = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count()


def wait_quiet(max_wait, threshold=0.10, window=2.0, log=print):
    """Waits (at most max_wait seconds) until other processes use less than `threshold` of
    the machine over a `window`-second sample; returns the last sample's share."""
    start = time.time()
    while True:
        busy0, steal0 = cpu_jiffies()
        cpu0 = time.process_time()
        time.sleep(window)
        busy1, steal1 = cpu_jiffies()
        share = max(0.0, (busy1 - busy0 + steal1 - steal0) / HZ - (time.process_time() - cpu0))
        share /= window * NCPU
        if share <= threshold:
            return share
        if time.time() - start > max_wait:
            log(f"warning: the machine is not quiet (other processes: {share:.0%}); going on")
            return share
        log(f"waiting for a quiet machine (other processes: {share:.0%}, load {loadavg():.2f})")
        time.sleep(10)


FLUSH = None  # a float32 array larger than L3, swept between timed calls (--flush-mb)


def flush_caches():
    """Evicts the weights of earlier calls from L2/L3. Two passes: after one 96 MB read,
    ~15 % of a 35 MB working set that had been read repeatedly was still cached (the L3
    protects reused lines from a single streaming scan); after two, timings equal those
    after two 256 MB passes."""
    if FLUSH is not None:
        FLUSH.sum()
        FLUSH.sum()


def cpu_pressure_us():
    """Microseconds during which some runnable task waited for a cpu (/proc/pressure/cpu,
    "some" total), or None where the kernel has no PSI."""
    try:
        with open("/proc/pressure/cpu") as f:
            return int(f.readline().split("total=")[1])
    except (OSError, IndexError, ValueError):
        return None


def time_block(call, schedule, iterations):
    """Warm-up: one full rotation, untimed. Then `iterations` timed calls following the
    schedule, with the caches flushed (untimed) before each. Returns (per-call seconds,
    our cpu seconds / wall seconds during the calls, contention: the share of the calls'
    wall time during which some task waited for a cpu (PSI; without PSI: the share of the
    machine's cpu time other processes took during the block, from /proc/stat))."""
    for pair in schedule:
        call(*pair)
    times, cpu, waited = [], 0.0, 0
    psi = cpu_pressure_us() is not None
    busy0, steal0 = cpu_jiffies()
    block_cpu0, block_wall0 = time.process_time(), time.perf_counter()
    for i in range(iterations):
        pair = schedule[i % len(schedule)]
        flush_caches()
        w0 = cpu_pressure_us() if psi else 0
        c0 = time.process_time()
        t0 = time.perf_counter_ns()
        call(*pair)
        t1 = time.perf_counter_ns()
        cpu += time.process_time() - c0
        waited += (cpu_pressure_us() - w0) if psi else 0
        times.append((t1 - t0) * 1e-9)
    wall = sum(times)
    if psi:
        contention = waited * 1e-6 / wall
    else:
        busy1, steal1 = cpu_jiffies()
        block_wall = time.perf_counter() - block_wall0
        other = (busy1 - busy0 + steal1 - steal0) / HZ - (time.process_time() - block_cpu0)
        contention = max(0.0, other) / (block_wall * NCPU)
    return times, cpu / wall, contention


def time_block_quiet(call, schedule, iterations, max_contention, retries, log, label):
    """time_block, repeated (up to `retries` more times) while its contention exceeds
    `max_contention`; keeps the least contended attempt."""
    best = None
    for attempt in range(retries + 1):
        t, u, share = time_block(call, schedule, iterations)
        if best is None or share < best[2]:
            best = (t, u, share)
        if share <= max_contention:
            break
        log(f"    {label}: contention {share:.0%} (tasks waiting for a cpu); again")
        time.sleep(2.0 * (attempt + 1))
    return best


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def sample_read_bw(peak_bin):
    """Read bandwidth (GB/s, 2 threads) right now, from `peak read`; None without peak_bin."""
    if not peak_bin:
        return None
    p = subprocess.run([peak_bin, "read", "256"], capture_output=True, text=True, check=True)
    return json.loads(p.stdout)["read_gbs_2t"]


def run_moe_check(moe_run, folder, layer, input_path, out_path):
    """moe-run OUT --layer L --input IN --check: the compiled layer against moec's float64
    reference evaluator; returns (passed, the check line)."""
    p = subprocess.run([moe_run, folder, "--layer", str(layer), "--input", input_path,
                        "--output", out_path, "--check"], capture_output=True, text=True)
    line = (p.stdout.strip().splitlines() or [p.stderr.strip()])[-1]
    return p.returncode == 0 and line.endswith(" ok"), line


def bench_shape(shape, a, peak, log):
    cfg = SHAPES[shape]
    H, I, E, k = cfg["H"], cfg["I"], cfg["E"], cfg["k"]
    base = os.path.join(a.data, shape)
    ckpt, folder = os.path.join(base, "ckpt"), os.path.join(base, "out")
    with open(os.path.join(ckpt, "config.json")) as f:
        config = json.load(f)
    R = config["num_hidden_layers"]
    assert (config["hidden_size"], config["intermediate_size"], config["num_local_experts"],
            config["num_experts_per_tok"]) == (H, I, E, k), "checkpoint does not match " + shape
    tensors = read_safetensors_bf16(os.path.join(ckpt, "model.safetensors"))
    wait_quiet(a.quiet_wait, log=log)
    log(f"[{shape}] loading {R} layers (H {H}, I {I}, E {E}, top-{k})")
    layers = [Layer(tensors, L, E) for L in range(R)]
    moec = Moec(a.runtime, folder)
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)

    expert_bytes_bf16 = 3 * H * I * 2
    router_bytes_bf16 = E * H * 2
    rows = []
    for T in a.tokens:
        decode = T <= 8
        P = a.inputs
        rng = np.random.default_rng([7, T])
        # Unit-variance hidden states, rounded to bf16 values: what a bf16 model's residual
        # stream holds. (moec's reference evaluator reads a bf16 layer's input as bf16, so
        # `moe-run --check` needs bf16-exact inputs; every contender gets these same values.)
        inputs = [f32_to_bf16_exact(rng.standard_normal((T, H), dtype=np.float32))
                  for _ in range(P)]
        inputs_bf16 = [torch.from_numpy(x).to(torch.bfloat16) for x in inputs]
        inputs_t32 = [torch.from_numpy(x) for x in inputs]
        schedule = [(i % R, (i // R) % P) for i in range(R * P)]
        iterations = a.decode_iters if decode else a.prefill_iters
        iterations = max(iterations, len(schedule)) if decode else iterations

        # Reference outputs (numpy f32), routing, bytes.
        ref = {}
        for (L, p) in schedule:
            ref[(L, p)] = numpy_block(inputs[p], layers[L], k)
        hit = {pair: np.unique(ref[pair][1]) for pair in schedule}
        bytes_bf16 = {pair: len(hit[pair]) * expert_bytes_bf16 + router_bytes_bf16
                      for pair in schedule}
        footprint = sum(len(set().union(*[set(hit[(L, p)].tolist()) for p in range(P)]))
                        for L in range(R)) * expert_bytes_bf16 + R * router_bytes_bf16
        mean_bytes_bf16 = float(np.mean([bytes_bf16[pr] for pr in schedule]))
        mean_hit = float(np.mean([len(hit[pr]) for pr in schedule]))

        # Numerics: every contender once on every pair, against numpy f32.
        out = np.empty((T, H), np.float32)
        ids = np.empty((T, k), np.int32)
        tw = np.empty((T, k), np.float32)
        errs = {c: [] for c in CONTENDERS if c != "numpy-f32"}
        agree = {c: 0 for c in errs}
        for (L, p) in schedule:
            ry, rids = ref[(L, p)]
            moec.run(L, inputs[p], out, ids, tw)
            errs["moec"].append(rel_err(out, ry))
            agree["moec"] += same_routing(ids, rids)
            y, sel = torch_block(inputs_bf16[p], layers[L].tbf_router, layers[L].tbf_experts, k)
            errs["torch-bf16"].append(rel_err(y.float().numpy(), ry))
            agree["torch-bf16"] += same_routing(sel.numpy(), rids)
            y, sel = torch_block(inputs_t32[p], layers[L].t32_router, layers[L].t32_experts, k)
            errs["torch-f32"].append(rel_err(y.numpy(), ry))
            agree["torch-f32"] += same_routing(sel.numpy(), rids)
        numerics = {c: dict(rel_err_max=max(errs[c]), rel_err_median=float(np.median(errs[c])),
                            routing_agree=agree[c], routing_total=T * len(schedule))
                    for c in errs}
        log(f"[{shape}] T={T}: rel err vs numpy f32: " + ", ".join(
            f"{c} {numerics[c]['rel_err_max']:.2e} (routing {agree[c]}/{T * len(schedule)})"
            for c in errs))

        # The float64 reference evaluator, through moe-run --check, on the last layer.
        in_path = os.path.join(base, f"input_T{T}.safetensors")
        from safetensors.numpy import save_file
        save_file({"hidden_states": inputs[0]}, in_path)
        check_ok, check_line = run_moe_check(a.moe_run, folder, R - 1, in_path,
                                             os.path.join(base, f"moe_run_T{T}.safetensors"))
        log(f"[{shape}] T={T}: moe-run --layer {R - 1} --check: {check_line}")

        # The timed calls.
        calls = {
            "moec": lambda L, p: moec.run(L, inputs[p], out, ids, tw),
            "numpy-f32": lambda L, p: numpy_block(inputs[p], layers[L], k),
            "torch-bf16": lambda L, p: torch_block(inputs_bf16[p], layers[L].tbf_router,
                                                   layers[L].tbf_experts, k),
            "torch-f32": lambda L, p: torch_block(inputs_t32[p], layers[L].t32_router,
                                                  layers[L].t32_experts, k),
        }
        samples = {c: [] for c in CONTENDERS}
        bw_samples = {c: [] for c in CONTENDERS}
        util = {c: [] for c in CONTENDERS}
        contended = {c: [] for c in CONTENDERS}
        loads = [loadavg()]
        with torch.inference_mode():
            for rnd in range(a.rounds):
                order = CONTENDERS if rnd % 2 == 0 else CONTENDERS[::-1]
                for c in order:
                    bw = sample_read_bw(a.peak_bin)  # this block's ceiling, measured now
                    if bw:
                        bw_samples[c].append(bw)
                    time.sleep(a.pause)  # let the previous contender's pool go idle
                    t, u, fo = time_block_quiet(calls[c], schedule, iterations,
                                                a.max_contention, a.retries, log, f"T={T} {c}")
                    samples[c] += t
                    util[c].append(u)
                    contended[c].append(fo)
                loads.append(loadavg())
        # The VM's memory bandwidth drifts by tens of percent within minutes, so each
        # contender's bandwidth ceiling is the median of the samples taken right before its
        # own blocks (without samples: the figure of --peak).
        read_bw = {c: float(np.median(bw_samples[c])) if bw_samples[c] else peak["read_gbs_2t"]
                   for c in CONTENDERS}
        log(f"[{shape}] T={T}: read bandwidth sampled before the blocks: "
            + ", ".join(f"{b:.1f}" for c in CONTENDERS for b in bw_samples[c]) + " GB/s")

        flops = 2.0 * T * k * 3 * H * I + 2.0 * T * E * H
        med = {c: float(np.median(samples[c])) for c in CONTENDERS}
        for c in CONTENDERS:
            s = med[c]
            wbytes = mean_bytes_bf16 * (2 if c in ("numpy-f32", "torch-f32") else 1)
            rows.append(dict(
                shape=shape, T=T, contender=c, median_us=s * 1e6,
                p10_us=float(np.percentile(samples[c], 10)) * 1e6,
                p90_us=float(np.percentile(samples[c], 90)) * 1e6,
                calls=len(samples[c]), tokens_per_s=T / s, gflops=flops / s / 1e9,
                frac_fma_peak=flops / s / 1e9 / peak["fma_gflops_2t"],
                weight_bytes=wbytes, gbs=wbytes / s / 1e9,
                frac_read_bw=wbytes / s / 1e9 / read_bw[c], read_bw_gbs=read_bw[c],
                read_bw_samples=bw_samples[c],
                moec_speedup=s / med["moec"] if c != "moec" else None,
                cpu_util=float(np.mean(util[c])),
                contention=float(np.max(contended[c])),
                numerics=numerics.get(c),
            ))
            log(f"[{shape}] T={T:4d} {c:11s} {s * 1e6:10.1f} us  {flops / s / 1e9:7.1f} GFLOP/s "
                f"{wbytes / s / 1e9:6.1f} GB/s  cpu {np.mean(util[c]):.2f} "
                f"contention {np.max(contended[c]):.0%}"
                + (f"  moec x{s / med['moec']:.2f}" if c != "moec" else ""))
        for r in rows[-len(CONTENDERS):]:
            r.update(experts_hit_mean=mean_hit, rotation=dict(
                layers=R, inputs=P, schedule_len=len(schedule), iterations=iterations,
                rounds=a.rounds, footprint_bytes_bf16=footprint),
                moe_run_check=dict(ok=check_ok, line=check_line, layer=R - 1),
                loadavg=loads, flops=flops)
    moec.close()
    return dict(shape=shape, H=H, I=I, E=E, k=k, R=R, manifest_layers=manifest["layers"],
                rows=rows)


def table(results):
    """The results as markdown: ceilings, a summary (one row per shape and T) and the
    detail (one row per contender)."""
    pk = results["peak"]
    fma, bw = pk["fma_gflops_2t"], pk["read_gbs_2t"]
    sampled = [b for sh in results["shapes"] for r in sh["rows"] for b in r.get("read_bw_samples", []) if b]
    out = [f"Ceilings (bench/peak.c, 2 threads): FMA {fma:.0f} GFLOP/s "
           f"(1 thread {pk['fma_gflops_1t']:.0f})"
           + (f", AVX512-BF16 dot product {pk['bf16_dp_gflops_2t']:.0f} GFLOP/s"
              if pk.get("bf16_dp_gflops_2t") else "")
           + f"; read {bw:.1f} GB/s before the run "
           f"(1 thread {pk['read_gbs_1t']:.1f})"
           + (f", {min(sampled):.1f}–{max(sampled):.1f} GB/s sampled around the blocks "
              "(each row's % read bw uses the median of the samples taken right before its own "
              "blocks)" if sampled else "")
           + ".", ""]
    out += ["| shape | T | moec µs | numpy-f32 µs | torch-bf16 µs | torch-f32 µs | moec vs numpy | "
            "vs torch-bf16 | vs torch-f32 | moec GFLOP/s (% peak) | moec GB/s (% read bw) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for sh in results["shapes"]:
        for T in sorted({r["T"] for r in sh["rows"]}):
            r = {x["contender"]: x for x in sh["rows"] if x["T"] == T}
            m = r["moec"]
            out.append(
                f"| {sh['shape']} | {T} | {m['median_us']:.0f} | {r['numpy-f32']['median_us']:.0f} | "
                f"{r['torch-bf16']['median_us']:.0f} | {r['torch-f32']['median_us']:.0f} | "
                f"{r['numpy-f32']['moec_speedup']:.2f}x | {r['torch-bf16']['moec_speedup']:.2f}x | "
                f"{r['torch-f32']['moec_speedup']:.2f}x | {m['gflops']:.1f} ({100 * m['frac_fma_peak']:.0f} %) | "
                f"{m['gbs']:.1f} ({100 * m['frac_read_bw']:.0f} %) |")
    out += ["", "| shape | T | contender | µs (median) | p10–p90 µs | tokens/s | GFLOP/s | % FMA peak | "
            "weight MB/call | GB/s | % read bw (ceiling GB/s) | moec speedup | rel. err vs numpy-f32 | routing | "
            "cpu util | contention |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for sh in results["shapes"]:
        for x in sh["rows"]:
            n = x["numerics"]
            err = f"{n['rel_err_max']:.1e}" if n else "(reference)"
            agree = f"{n['routing_agree']}/{n['routing_total']}" if n else "—"
            sp = f"{x['moec_speedup']:.2f}x" if x["moec_speedup"] else "—"
            out.append(
                f"| {x['shape']} | {x['T']} | {x['contender']} | {x['median_us']:.0f} | "
                f"{x['p10_us']:.0f}–{x['p90_us']:.0f} | {x['tokens_per_s']:.0f} | {x['gflops']:.1f} | "
                f"{100 * x['frac_fma_peak']:.1f} | {x['weight_bytes'] / 1e6:.1f} | {x['gbs']:.1f} | "
                f"{100 * x['frac_read_bw']:.0f} ({x.get('read_bw_gbs', bw):.0f}) | {sp} | {err} | {agree} | {x['cpu_util']:.2f} | "
                f"{100 * x['contention']:.0f} % |")
    out += ["", "| shape | T | experts hit / call | rotation (layers x inputs) | bytes one rotation touches "
            "(bf16) | timed calls per contender | moe-run --check |", "|---|---:|---:|---|---:|---:|---|"]
    for sh in results["shapes"]:
        for T in sorted({r["T"] for r in sh["rows"]}):
            x = next(r for r in sh["rows"] if r["T"] == T)
            ro = x["rotation"]
            out.append(f"| {sh['shape']} | {T} | {x['experts_hit_mean']:.2f} | {ro['layers']} x {ro['inputs']} | "
                       f"{ro['footprint_bytes_bf16'] / 1e6:.0f} MB | {x['calls']} | "
                       f"`{x['moe_run_check']['line'].replace('check: ', '')}` |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wait-quiet", type=float, metavar="SECONDS", default=None,
                    help="only wait (at most SECONDS) for other processes to go quiet, then exit")
    ap.add_argument("--quiet-wait", type=float, default=900,
                    help="before each shape: wait at most this long for a quiet machine")
    ap.add_argument("--table", metavar="RESULTS_JSON",
                    help="print the markdown tables of a results file and exit")
    ap.add_argument("--data", default=os.path.join(HERE, ".data"))
    ap.add_argument("--peak", default=os.path.join(HERE, ".data", "peak.json"))
    ap.add_argument("--out", default=os.path.join(HERE, ".data", "results.json"))
    ap.add_argument("--peak-bin", default=os.path.join(HERE, ".data", "peak"),
                    help="bench/peak.c's binary, sampled for read bandwidth around every block "
                         "('' : use --peak's figure throughout)")
    ap.add_argument("--runtime", default=os.path.join(ROOT, "build", "lib", "libmoe_runtime.so"))
    ap.add_argument("--moe-run", default=os.path.join(ROOT, "build", "bin", "moe-run"))
    ap.add_argument("--shapes", default="mixtral-like,fine-grained")
    ap.add_argument("--tokens", default="1,8,512")
    ap.add_argument("--inputs", type=int, default=4, help="P: distinct token batches rotated")
    ap.add_argument("--decode-iters", type=int, default=32, help="timed calls a round, T <= 8")
    ap.add_argument("--prefill-iters", type=int, default=8, help="timed calls a round, T > 8")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--max-contention", type=float, default=0.05,
                    help="repeat a block when tasks waited for a cpu longer than this share "
                         "of its timed calls")
    ap.add_argument("--retries", type=int, default=4)
    ap.add_argument("--flush-mb", type=float, default=96,
                    help="sweep this many MB between timed calls (0: no flush)")
    ap.add_argument("--pause", type=float, default=0.5, help="seconds idle before each block")
    a = ap.parse_args()
    if a.wait_quiet is not None:
        wait_quiet(a.wait_quiet)
        return 0
    if a.table:
        with open(a.table) as f:
            print(table(json.load(f)))
        return 0
    a.tokens = [int(t) for t in a.tokens.split(",")]

    torch.set_num_threads(2)
    global FLUSH
    if a.flush_mb > 0:
        FLUSH = np.ones(int(a.flush_mb * 2**20 / 4), np.float32)
    with open(a.peak) as f:
        peak = json.load(f)

    def log(msg):
        print(msg, flush=True)

    log(f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}, "
        f"load {loadavg():.2f}")
    def git(*args):
        p = subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else None

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    cpu = {k.strip(): v.strip() for k, v in (l.split(":", 1) for l in lscpu.splitlines() if ":" in l)}
    results = dict(
        date=time.strftime("%Y-%m-%d %H:%M:%S"), peak=peak, host=platform.node(),
        compiler=dict(commit=git("rev-parse", "--short", "HEAD"),
                      modified=(git("diff", "--name-only", "HEAD") or "").split(),
                      moe_compile_mtime=time.ctime(os.path.getmtime(
                          os.path.join(os.path.dirname(a.moe_run), "moe-compile")))),
        cpu={k: cpu.get(k) for k in ("Model name", "CPU(s)", "L2 cache", "L3 cache", "Flags")
             if k != "Flags"} | {"avx512_bf16": "avx512_bf16" in cpu.get("Flags", "")},
        torch=torch.__version__, numpy=np.__version__, python=platform.python_version(),
        args={k: v for k, v in vars(a).items()},
        shapes=[bench_shape(s, a, peak, log) for s in a.shapes.split(",")])
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1)
    log(f"wrote {a.out}")
    log("")
    log(table(results))
    bad = [f"{r['shape']} T={r['T']}" for sh in results["shapes"] for r in sh["rows"]
           if r["contender"] == "moec" and (not r["moe_run_check"]["ok"]
                                            or r["numerics"]["rel_err_max"] > 1e-5
                                            or r["numerics"]["routing_agree"] != r["numerics"]["routing_total"])]
    if bad:
        log("FAILED numerics (moec vs numpy-f32 above 1e-5, routing differs, or moe-run --check): "
            + ", ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
