#!/usr/bin/env python3
"""Checks bench/gpu's harness HERE, without a GPU, as far as that goes.

    /work/venv-golden/bin/python bench/gpu/selfcheck.py [--keep DIR]

Needs a built moec (build/bin/moe-compile, build/lib/libmoe_runtime.so, the runtime's test
fake of the CUDA driver build/test/runtime/fake_cuda/libcuda.so.1) and torch, transformers,
numpy, safetensors. Each tiny variant of the three shapes (modules.py --tiny), plus one
with odd sizes (padded weight panels, a "__pad" tensor between router and correction bias),
gets a random checkpoint with the family's Hugging Face names and is compiled for
cuda:sm_90a (with weights and --layout-only) and for the CPU. Then:

  unpack     bench_gpu.py's unpacking of moec's panel layout gives back the checkpoint's
             tensors exactly (what lets the GPU benchmark feed moec's synthetic weights to
             the torch contenders)
  layout     the --layout-only folder lists exactly the tensors (names, dtypes, shapes,
             offsets) of the folder compiled with weights
  fill       fill_weights.py's file is a valid safetensors file with exactly the layout's
             tensors and offsets, the layout's hash, zero pads and biases, N(0, 0.02)
             values; a second run keeps it
  runtime    libmoe_runtime.so opens the filled folder (and the one compiled with weights)
             on cuda:0 through the fake driver and runs it (the fake writes 1 + T)
  semantics  moec on the CPU (f32) = bench_gpu.py's grouped_mm reference in f32 =
             transformers' block in f32, to 1e-5 with identical routing: the reference
             implements each family's routing right
  baselines  in bf16: the reference with torch._grouped_mm = with the loop fallback =
             transformers' eager block = transformers' grouped_mm block, to bf16 accuracy
  dry run    bench_gpu.py --dry-run end to end on a small stage (two golden families and
             the tiny shapes, layout only): both phases run, every failure is reported,
             the exit status is non-zero, the JSON and the tables are complete
Prints one line per check and exits non-zero if any fails.
"""

import argparse
import ctypes
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import types

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import bench_gpu as bg  # noqa: E402
import fill_weights as fw  # noqa: E402
import modules  # noqa: E402

MOE_COMPILE = os.path.join(ROOT, "build", "bin", "moe-compile")
RUNTIME = os.path.join(ROOT, "build", "lib", "libmoe_runtime.so")
FAKE = os.path.join(ROOT, "build", "test", "runtime", "fake_cuda", "libcuda.so.1")

# Odd sizes: panels padded (I 48 of 64 gate/up columns, H 96 of 128 down rows), E = 10 so
# router (10x96 f32) + correction bias (10 f32) end off a 16-byte boundary (a "__pad").
PADDED = dict(family="deepseek_v3", H=96, I=48, E=10, k=3, shared=48, n_group=5,
              topk_group=2, scaling=2.5)

failures = []


def check(name, ok, detail=""):
    print("%-10s %s  %s" % (name, "ok  " if ok else "FAIL", detail), flush=True)
    if not ok:
        failures.append("%s: %s" % (name, detail))


def compile_module(mlir, out, target, ckpt=None, layout_only=False):
    cmd = [MOE_COMPILE, mlir, "-o", out, "--target", target]
    cmd += ["--weights-dir", ckpt] if ckpt else []
    cmd += ["--layout-only"] if layout_only else []
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def write_checkpoint(spec, folder, seed):
    """Random weights under the family's Hugging Face names, bf16 as real checkpoints
    (the correction bias f32), scaled so routing is decisive and outputs O(1)."""
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(seed)
    H, I, E, S = spec["H"], spec["I"], spec["E"], spec["shared"]
    n = modules.weight_names(spec)

    def rnd(*shape, std):
        return (torch.randn(*shape, generator=g) * std).to(torch.bfloat16)

    t = {n["router"]: rnd(E, H, std=1.5 / H ** 0.5)}
    for e in range(E):
        t[n["gate"].format(e=e)] = rnd(I, H, std=H ** -0.5)
        t[n["up"].format(e=e)] = rnd(I, H, std=H ** -0.5)
        t[n["down"].format(e=e)] = rnd(H, I, std=I ** -0.5)
    if "correction_bias" in n:
        t[n["correction_bias"]] = torch.randn(E, generator=g) * 0.1
        t[n["shared_gate"]] = rnd(S, H, std=H ** -0.5)
        t[n["shared_up"]] = rnd(S, H, std=H ** -0.5)
        t[n["shared_down"]] = rnd(H, S, std=S ** -0.5)
    os.makedirs(folder, exist_ok=True)
    save_file(t, os.path.join(folder, "model.safetensors"))
    return t


def expected_weights(spec, ckpt):
    """The checkpoint's tensors as bench_gpu.LayerWeights holds them."""
    n = modules.weight_names(spec)
    E = spec["E"]
    gate = torch.stack([ckpt[n["gate"].format(e=e)] for e in range(E)])
    up = torch.stack([ckpt[n["up"].format(e=e)] for e in range(E)])
    down = torch.stack([ckpt[n["down"].format(e=e)] for e in range(E)])
    w = dict(router=ckpt[n["router"]].float(), w13=torch.cat([gate, up], dim=1), w2=down)
    if "correction_bias" in n:
        w.update(bias=ckpt[n["correction_bias"]], shared=(ckpt[n["shared_gate"]],
                                                          ckpt[n["shared_up"]],
                                                          ckpt[n["shared_down"]]))
    return w


def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), n


def as_f32(lw):
    return types.SimpleNamespace(router=lw.router, bias=lw.bias, w13=lw.w13.float(),
                                 w2=lw.w2.float(),
                                 shared=tuple(x.float() for x in lw.shared) if lw.shared else None)


def agree(ids_a, ids_b):
    return int(bg.same_sets(ids_a, ids_b).sum())


def device_roundtrip(name, m, spec, x):
    """moe_layer_run_device as bench_gpu.py calls it (device pointers, a stream), on buffers
    allocated in the fake driver the runtime loaded: the fake's kernels write 1 + T into
    `output`, ids[i] = i and weights[i] = hidden[i], so a misplaced argument shows."""
    c = ctypes
    drv = c.CDLL(FAKE)  # dlopen of the same file: the runtime's instance, its allocations
    u64 = c.c_uint64
    drv.cuMemAlloc_v2.argtypes = [c.POINTER(u64), c.c_size_t]
    drv.cuMemFree_v2.argtypes = [u64]
    drv.cuMemcpyHtoDAsync_v2.argtypes = [u64, c.c_void_p, c.c_size_t, c.c_void_p]
    drv.cuMemcpyDtoHAsync_v2.argtypes = [c.c_void_p, u64, c.c_size_t, c.c_void_p]
    drv.cuStreamCreate.argtypes = [c.POINTER(c.c_void_p), c.c_uint]
    drv.cuStreamSynchronize.argtypes = [c.c_void_p]
    drv.cuStreamDestroy_v2.argtypes = [c.c_void_p]
    drv.cuDevicePrimaryCtxRetain.argtypes = [c.POINTER(c.c_void_p), c.c_int]
    drv.cuDevicePrimaryCtxRelease_v2.argtypes = [c.c_int]
    drv.cuCtxPushCurrent_v2.argtypes = [c.c_void_p]
    drv.cuCtxPopCurrent_v2.argtypes = [c.POINTER(c.c_void_p)]
    T, H, k = x.shape[0], spec["H"], spec["k"]
    ctx, stream = c.c_void_p(), c.c_void_p()
    ok = drv.cuDevicePrimaryCtxRetain(c.byref(ctx), 0) == 0
    ok = ok and drv.cuCtxPushCurrent_v2(ctx) == 0
    ok = ok and drv.cuStreamCreate(c.byref(stream), 1) == 0
    bufs = {}
    for key, nbytes in (("x", T * H * 4), ("out", T * H * 4), ("ids", T * k * 4), ("w", T * k * 4)):
        bufs[key] = u64()
        ok = ok and drv.cuMemAlloc_v2(c.byref(bufs[key]), nbytes) == 0
    ok = ok and drv.cuMemcpyHtoDAsync_v2(bufs["x"], x.ctypes.data, x.nbytes, stream) == 0
    out = np.full((T, H), np.nan, np.float32)
    ids = np.full((T, k), -7, np.int32)
    w = np.full((T, k), np.nan, np.float32)
    error = ""
    try:
        m.run_device(0, bufs["x"].value, T, H, bufs["out"].value, bufs["ids"].value,
                     bufs["w"].value, stream)
    except RuntimeError as e:
        ok, error = False, str(e)
    ok = ok and drv.cuStreamSynchronize(stream) == 0
    for key, host in (("out", out), ("ids", ids), ("w", w)):
        ok = ok and drv.cuMemcpyDtoHAsync_v2(host.ctypes.data, bufs[key], host.nbytes, stream) == 0
    for b in bufs.values():
        drv.cuMemFree_v2(b)
    drv.cuStreamDestroy_v2(stream)
    drv.cuCtxPopCurrent_v2(c.byref(c.c_void_p()))
    drv.cuDevicePrimaryCtxRelease_v2(0)
    ok = (ok and (out == 1 + T).all() and np.array_equal(ids.ravel(), np.arange(T * k))
          and np.array_equal(w.ravel(), x.ravel()[:T * k]))
    check("runtime", ok, "%s: moe_layer_run_device on fake-driver buffers and stream: output, "
          "ids and weights where expected%s" % (name, " (%s)" % error if error else ""))


def check_variant(name, spec, work, rt):
    spec = dict(spec, layer=0)
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    mlir = os.path.join(d, "module.mlir")
    with open(mlir, "w") as f:
        f.write(modules.module_text(name, spec))
    ckpt_dir = os.path.join(d, "ckpt")
    ckpt = write_checkpoint(spec, ckpt_dir, seed=len(name))
    cuda_dir, cpu_dir, lay_dir = (os.path.join(d, x) for x in ("cuda", "cpu", "layout"))
    compile_module(mlir, cuda_dir, "cuda:sm_90a", ckpt=ckpt_dir)
    compile_module(mlir, cpu_dir, "cpu", ckpt=ckpt_dir)
    compile_module(mlir, lay_dir, "cuda:sm_90a", layout_only=True)
    cpu = torch.device("cpu")

    # unpack: moec's packed file back to the checkpoint's tensors, exactly
    lw = bg.LayerWeights(torch, cuda_dir, spec, cpu)
    want = expected_weights(spec, ckpt)
    ok = (torch.equal(lw.router, want["router"]) and torch.equal(lw.w13, want["w13"])
          and torch.equal(lw.w2, want["w2"]))
    if "bias" in want:
        ok = ok and torch.equal(lw.bias, want["bias"]) and all(
            torch.equal(a, b) for a, b in zip(lw.shared, want["shared"]))
    check("unpack", ok, "%s: router, experts%s equal the checkpoint's" % (
        name, ", correction bias, shared expert" if "bias" in want else ""))

    # layout: --layout-only lists what the compile with weights wrote
    with open(os.path.join(lay_dir, "weights.layout.json")) as f:
        layout = json.load(f)
    real, _ = header(os.path.join(cuda_dir, "weights.safetensors"))
    real.pop("__metadata__")
    from_layout = {t["name"]: (t["dtype"], t["shape"], t["offset"]) for t in layout["tensors"]}
    from_real = {k: (v["dtype"], v["shape"], v["data_offsets"][0]) for k, v in real.items()}
    pads = [k for k in from_layout if k.startswith("__pad")]
    check("layout", from_layout == from_real,
          "%s: %d tensors%s, same names/dtypes/shapes/offsets as the compile with weights"
          % (name, len(from_layout), " (pads: %s)" % ", ".join(pads) if pads else ""))
    with open(os.path.join(lay_dir, "manifest.json")) as f:
        man = json.load(f)
    check("layout", man["weights_hash"] == layout["weights_hash"] and man.get("synthetic_weights"),
          "%s: manifest hash = layout hash, synthetic_weights set" % name)

    # fill: a valid file with exactly the layout's tensors
    logs = []
    path = fw.fill(lay_dir, seed=3, log=logs.append)
    from safetensors import safe_open
    h, n = header(path)
    meta = h.pop("__metadata__")
    ok = (n % 8 == 0 and meta == {"moec_weights_hash": layout["weights_hash"]}
          and {k: (v["dtype"], v["shape"], v["data_offsets"][0]) for k, v in h.items()} == from_layout)
    with safe_open(path, "np") as f:  # the reference reader accepts it (bf16 via torch)
        keys = set(f.keys())
    ok = ok and keys == set(from_layout)
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    zeros_ok, stats = True, []
    for k, v in h.items():
        a, b = v["data_offsets"]
        raw = mm[8 + n + a:8 + n + b]
        if k.startswith("__pad") or "bias" in k:
            zeros_ok = zeros_ok and not raw.any()
        elif v["dtype"] == "BF16":
            x = fw.bf16_bits_to_f32(raw.view(np.uint16))
            stats.append("%s std %.4f" % (k.split(".", 1)[1], x.std()))
            zeros_ok = zeros_ok and abs(x.std() - 0.02) < 0.002
        elif v["dtype"] == "F32":
            x = raw.view(np.float32)
            zeros_ok = zeros_ok and np.array_equal(fw.bf16_bits_to_f32(fw.f32_to_bf16_bits(x)), x)
    check("fill", ok and zeros_ok, "%s: header, hash, offsets, pads/bias zero, values: %s"
          % (name, ", ".join(stats)))
    mtime = os.path.getmtime(path)
    fw.fill(lay_dir, seed=3, log=logs.append)
    check("fill", os.path.getmtime(path) == mtime and "kept" in logs[-1],
          "%s: a second fill keeps the file (%s)" % (name, logs[-1].split(": ", 1)[1]))

    # runtime: the fake driver opens and runs the filled and the real folders
    os.environ.update(MOE_CUDA_DRIVER=FAKE, MOE_FAKE_CUDA_HIDDEN=str(spec["H"]),
                      MOE_FAKE_CUDA_TOPK=str(spec["k"]))
    for folder in (lay_dir, cuda_dir):
        T = 5
        m = bg.Model(rt, folder, "cuda:0")
        x = np.random.default_rng(0).standard_normal((T, spec["H"])).astype(np.float32)
        out = np.full((T, spec["H"]), np.nan, np.float32)
        m.run(0, x.ctypes.data, T, spec["H"], out.ctypes.data)
        check("runtime", (out == 1 + T).all(), "%s: %s opened on cuda:0 (fake driver), ran T=%d"
              % (name, os.path.basename(folder), T))
        if rt.has_run_device and folder == cuda_dir:
            device_roundtrip(name, m, spec, x)
        m.close()

    # semantics: f32 everywhere, so moec CPU, the reference and transformers agree to ~1e-6
    model = bg.Model(rt, cpu_dir, "cpu")
    ref32 = bg.Reference(torch, spec, as_f32(lw), bg.grouped_mm_loop)
    hf32 = bg.build_hf_block(torch, spec, as_f32(lw))
    gmm = bg.pick_grouped_mm(torch)
    ref16 = bg.Reference(torch, spec, lw, gmm)
    loop16 = bg.Reference(torch, spec, lw, bg.grouped_mm_loop)
    hf16 = bg.build_hf_block(torch, spec, lw)
    for T in (1, 7, 64):
        x = torch.randn(T, spec["H"], generator=torch.Generator().manual_seed(T)).to(torch.bfloat16)
        xf = x.float().numpy()
        out = np.full((T, spec["H"]), np.nan, np.float32)
        ids = np.full((T, spec["k"]), -7, np.int32)
        w = np.full((T, spec["k"]), np.nan, np.float32)
        model.run(0, xf.ctypes.data, T, spec["H"], out.ctypes.data, ids.ctypes.data, w.ctypes.data)
        with torch.inference_mode():
            r, rids, rw = ref32(x.float(), routing=True)
            h = hf32[1](x.float())
            hids = hf32[2](x.float())
        e1, e2 = bg.rel_err(out, r.numpy()), bg.rel_err(h.numpy(), r.numpy())
        a1, a2 = agree(ids, rids.numpy()), agree(hids.numpy(), rids.numpy())
        we = bg.weights_err(ids, w, rids.numpy(), rw.numpy())
        check("semantics", e1 < 1e-5 and e2 < 1e-5 and a1 == a2 == T and we < 1e-5,
              "%s T=%-2d f32: moec-cpu vs reference %.1e (routing %d/%d, weights %.0e), "
              "transformers vs reference %.1e (routing %d/%d)" % (name, T, e1, a1, T, we, e2, a2, T))
        # baselines in bf16: all within bf16 accuracy of the f32 result
        # (transformers' Mixtral and Qwen3 blocks compute router logits in bf16, so a
        # few near-tied tokens route elsewhere: compared on the tokens routed alike)
        with torch.inference_mode():
            b_ref, b_ids, _ = ref16(x, routing=True)
            b_loop = loop16(x)
            b_hf = hf16[1](x, "eager").float()
            b_hfg = hf16[1](x, "grouped_mm").float()
            hf_rows = bg.same_sets(hf16[2](x).numpy(), rids.numpy())
        R = r.numpy()
        errs = dict(grouped_mm=bg.rel_err(b_ref.numpy(), R), loop=bg.rel_err(b_loop.numpy(), R),
                    hf_eager=bg.rel_err(b_hf.numpy()[hf_rows], R[hf_rows]),
                    hf_grouped_mm=bg.rel_err(b_hfg.numpy()[hf_rows], R[hf_rows]),
                    grouped_mm_vs_loop=bg.rel_err(b_ref.numpy(), b_loop.numpy()))
        a3 = agree(b_ids.numpy(), rids.numpy())
        check("baselines", max(errs.values()) < 2e-2 and a3 == T and hf_rows.mean() >= 0.8,
              "%s T=%-2d bf16 vs f32 reference: %s; routing: grouped_mm %d/%d, transformers %d/%d"
              % (name, T, ", ".join("%s %.1e" % kv for kv in errs.items()), a3, T,
                 hf_rows.sum(), T))
    model.close()
    return lay_dir


def dry_run(work, stage_src, tiny_layouts):
    """bench_gpu.py --dry-run on a small stage; returns nothing, records checks."""
    stage = os.path.join(work, "stage")
    shutil.rmtree(stage, ignore_errors=True)
    os.makedirs(os.path.join(stage, "goldens"))
    for fam in ("mixtral", "deepseek_v3"):
        shutil.copytree(os.path.join(stage_src, "goldens", fam), os.path.join(stage, "goldens", fam))
    for name, folder in tiny_layouts.items():
        shutil.copytree(folder, os.path.join(stage, "shapes", name),
                        ignore=shutil.ignore_patterns("weights.safetensors*"))
    shutil.copy(RUNTIME, os.path.join(stage, "libmoe_runtime.so"))
    shutil.copy(os.path.join(stage_src, "stage.json"), stage)
    out = os.path.join(work, "dry", "results.json")
    cmd = [sys.executable, os.path.join(HERE, "bench_gpu.py"), "--dry-run", "--stage", stage,
           "--work", os.path.join(work, "dry", "work"), "--out", out, "--fake-driver", FAKE,
           "--bench-even-if-wrong", "--tokens", "1,16,64", "--iters", "5", "--budget", "0.2"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    with open(os.path.join(work, "dry", "log.txt"), "w") as f:
        f.write(p.stdout + p.stderr)
    check("dry run", p.returncode == 1,
          "bench_gpu.py --dry-run exit status %d (1: golden numerics failed; log in %s)"
          % (p.returncode, os.path.join(work, "dry", "log.txt")))
    with open(out) as f:
        res = json.load(f)
    n = res["numerics"]
    check("dry run", n["failed"] == 9 and n["passed"] == 0 and n["families"] == ["deepseek_v3", "mixtral"],
          "numerics: %d cases, all reported failing (the fake's outputs)" % n["failed"])
    for s in res["shapes"]:
        got = {(r["T"], r["contender"]) for r in s.get("rows", [])}
        want = {(T, c) for T in (1, 16, 64) for c in bg.CONTENDERS
                if c not in ("grouped_mm-graph", "moec-device")}  # (those need CUDA)
        wrong = [x["T"] for x in s.get("numerics", []) if not x["moec"]["ok"]]
        hf_err = max(x["hf-eager"]["rel_err"] for x in s["numerics"])
        check("dry run", got == want and wrong == [1, 16, 64] and hf_err < 2e-2,
              "%s: timed %d contender x T cases; moec flagged WRONG at T=%s; transformers vs "
              "reference %.1e; notes: %s" % (s["shape"], len(got), wrong, hf_err,
                                              "; ".join(s.get("errors", [])) or "none"))
    md = open(os.path.splitext(out)[0] + ".md").read()
    check("dry run", md.count("\n| ") > 20 and "WRONG" in md,
          "markdown tables written (%d rows)" % md.count("\n| "))
    print("\n" + "\n".join(p.stdout.splitlines()[-40:]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", help="work here and keep the files (default: a temporary folder)")
    ap.add_argument("--stage", default=os.path.join(HERE, ".stage"),
                    help="prepare.sh's stage (its goldens feed the dry run)")
    a = ap.parse_args()
    for f in (MOE_COMPILE, RUNTIME, FAKE):
        if not os.path.exists(f):
            sys.exit("missing %s: build moec first (ninja -C build)" % f)
    work = a.keep or tempfile.mkdtemp(prefix="moec-gpu-selfcheck-")
    os.makedirs(work, exist_ok=True)
    torch.manual_seed(0)
    rt = bg.Runtime(RUNTIME)
    layouts = {}
    for name, spec in modules.TINY.items():
        layouts[name] = check_variant(name, spec, work, rt)
    check_variant("padded", PADDED, work, rt)
    if os.path.isdir(os.path.join(a.stage, "goldens")):
        dry_run(work, a.stage, layouts)
    else:
        check("dry run", False, "no stage at %s: run bench/gpu/prepare.sh first" % a.stage)
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    print("\nselfcheck: %s" % ("all passed" if not failures else "%d FAILED:\n  " % len(failures)
                                + "\n  ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
