#!/usr/bin/env python3
"""moec's quantized experts against its bf16 experts, on the CPU, side by side in one run.

    bench_quant.py --data bench/.data [--shape mixtral-like] [--tokens 1,8,64]

For one synthetic checkpoint (bench/make_checkpoint.py), compiles five folders with
moe-compile: bf16 weights as the checkpoint stores them, and the experts quantized by
`moe-quantize-experts` to int8 and int4 (symmetric, group 128), FP8 (e4m3, 128x128 blocks)
and MXFP4, whose generated matmuls dequantize each level or code in their inner loop. Each folder is checked against moec's float64
reference on its own IR (`moe-run --check`), then all of them are timed in the same process
on the same (layer, input) schedule with cold caches (bench_cpu.py's method: caches flushed
before every call, layers and inputs rotated, alternating block order, PSI-checked
contention). Reports per T the median µs, speedup over bf16, the expert bytes each call reads
(from the weights file: levels, scales and zero points included), GB/s and its share of the
read bandwidth, and the quantized output's error against the bf16 output.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bench_cpu  # noqa: E402  (the timing method and the runtime binding)

VARIANTS = [
    ("bf16", None),
    ("int8", "moe-quantize-experts{bits=8 group-size=128}"),
    ("int4", "moe-quantize-experts{bits=4 group-size=128}"),
    ("fp8", "moe-quantize-experts{format=fp8}"),
    ("mxfp4", "moe-quantize-experts{format=mxfp4}"),
]


def tensor_bytes(path, prefix):
    """Bytes of the tensors of a safetensors file whose names start with `prefix`."""
    with open(path, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    return sum(info["data_offsets"][1] - info["data_offsets"][0]
               for name, info in header.items()
               if name != "__metadata__" and name.startswith(prefix))


def compile_variants(a, ckpt, shape_dir, log):
    folders = {}
    for name, passes in VARIANTS:
        out = os.path.join(shape_dir, "out-" + name)
        cmd = [a.moe_compile, ckpt, "-o", out, "--target", "cpu"]
        if passes:
            cmd += ["--passes", passes]
        t0 = time.time()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        log(f"  moe-compile {name}: {time.time() - t0:.1f}s")
        folders[name] = out
    return folders


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.path.join(HERE, ".data"))
    ap.add_argument("--shape", default="mixtral-like")
    ap.add_argument("--tokens", default="1,8,64")
    ap.add_argument("--inputs", type=int, default=4)
    ap.add_argument("--iters", type=int, default=32, help="timed calls a block")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--max-contention", type=float, default=0.05)
    ap.add_argument("--retries", type=int, default=4)
    ap.add_argument("--flush-mb", type=float, default=96)
    ap.add_argument("--peak-bin", default=os.path.join(HERE, ".data", "peak"))
    ap.add_argument("--runtime", default=os.path.join(ROOT, "build", "lib", "libmoe_runtime.so"))
    ap.add_argument("--moe-compile", default=os.path.join(ROOT, "build", "bin", "moe-compile"))
    ap.add_argument("--moe-run", default=os.path.join(ROOT, "build", "bin", "moe-run"))
    ap.add_argument("--out", default=os.path.join(HERE, ".data", "quant-results.json"))
    a = ap.parse_args()

    def log(msg):
        print(msg, flush=True)

    shape_dir = os.path.join(a.data, a.shape)
    ckpt = os.path.join(shape_dir, "ckpt")
    cfg = json.load(open(os.path.join(ckpt, "config.json")))
    H, I = cfg["hidden_size"], cfg["intermediate_size"]
    E, k, R = cfg["num_local_experts"], cfg["num_experts_per_tok"], cfg["num_hidden_layers"]
    folders = compile_variants(a, ckpt, shape_dir, log)
    bench_cpu.FLUSH = np.ones(int(a.flush_mb * 2**20 / 4), dtype=np.float32)
    peak_bin = a.peak_bin if os.path.exists(a.peak_bin) else None

    rng = np.random.default_rng(7)
    results = {"shape": a.shape, "H": H, "I": I, "E": E, "k": k, "layers": R, "rows": []}
    expert_bytes = {name: tensor_bytes(os.path.join(f, "weights.safetensors"), "layer0.experts")
                    for name, f in folders.items()}
    results["expert_bytes_per_layer"] = expert_bytes
    for T in [int(t) for t in a.tokens.split(",")]:
        inputs = [bench_cpu.f32_to_bf16_exact(rng.standard_normal((T, H), dtype=np.float32))
                  for _ in range(a.inputs)]
        schedule = [(layer % R, inputs[i % a.inputs])
                    for i, layer in enumerate(range(R * a.inputs))]
        # Correctness first: each folder against the reference on its own IR.
        check_in = os.path.join(shape_dir, f"quant-input-T{T}.safetensors")
        from safetensors.numpy import save_file
        save_file({"hidden_states": inputs[0]}, check_in)
        checks = {}
        for name, folder in folders.items():
            ok, line = bench_cpu.run_moe_check(a.moe_run, folder, R - 1, check_in,
                                               os.path.join(shape_dir, "quant-check.safetensors"))
            checks[name] = line
            if not ok:
                log(f"FAILED check {name} T={T}: {line}")
                sys.exit(1)
        runners = {name: bench_cpu.Moec(a.runtime, f) for name, f in folders.items()}
        out = np.zeros((T, H), np.float32)
        ids = np.zeros((T, k), np.int32)
        wts = np.zeros((T, k), np.float32)
        outputs = {}
        distinct = []
        for name, m in runners.items():
            m.run(R - 1, inputs[0], out, ids, wts)
            outputs[name] = out.copy()
        for layer, x in schedule:
            runners["bf16"].run(layer, x, out, ids, wts)
            distinct.append(len(set(ids.reshape(-1).tolist())))
        hit = statistics.mean(distinct)
        times = {name: [] for name in runners}
        bw = {name: [] for name in runners}
        for r in range(a.rounds):
            order = list(runners) if r % 2 == 0 else list(reversed(runners))
            for name in order:
                m = runners[name]
                time.sleep(0.5)
                sample = bench_cpu.sample_read_bw(peak_bin)
                if sample:
                    bw[name].append(sample)
                t, _, _ = bench_cpu.time_block_quiet(
                    lambda layer, x, m=m: m.run(layer, x, out, ids, wts), schedule, a.iters,
                    a.max_contention, a.retries, log, name)
                times[name].extend(t)
        base = statistics.median(times["bf16"])
        for name in runners:
            med = statistics.median(times[name])
            per_expert = expert_bytes[name] / E
            mb = hit * per_expert / 1e6
            row = {
                "T": T, "variant": name, "median_us": med * 1e6,
                "speedup_vs_bf16": base / med, "expert_mb_per_call": mb,
                "gbs": mb / 1e3 / med,
                "read_bw_gbs": statistics.median(bw[name]) if bw[name] else None,
                "rel_err_vs_bf16": bench_cpu.rel_err(outputs[name], outputs["bf16"]),
                "check": checks[name], "distinct_experts": hit,
            }
            results["rows"].append(row)
        for m in runners.values():
            m.close()
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1)
    print_table(results)


def print_table(results):
    print(f"\n{results['shape']}: H={results['H']} I={results['I']} E={results['E']} "
          f"k={results['k']}; expert bytes per layer: "
          + ", ".join(f"{n} {b / 1e6:.1f} MB" for n, b in results["expert_bytes_per_layer"].items()))
    print("| T | variant | µs (median) | speedup vs bf16 | expert MB/call | GB/s | % read bw | rel. err vs bf16 |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in results["rows"]:
        share = f"{100 * r['gbs'] / r['read_bw_gbs']:.0f} %" if r["read_bw_gbs"] else "-"
        print(f"| {r['T']} | {r['variant']} | {r['median_us']:.0f} | {r['speedup_vs_bf16']:.2f} | "
              f"{r['expert_mb_per_call']:.1f} | {r['gbs']:.1f} | {share} | {r['rel_err_vs_bf16']:.2e} |")


if __name__ == "__main__":
    main()
