//===- EmitKernels.h - a layer's CUDA kernels and their launch plan -*- C++
//-*-===//
//
// Builds the GPU side of one decomposed layer (runtime/FORMAT.md, "CUDA
// target"): one gpu.module per kernel, written in the gpu, nvgpu, nvvm, scf,
// memref, vector and arith dialects, and two host functions in the LLVM-bound
// host module: `moe_layer_<L>_workspace_bytes(tokens)` (device scratch) and
// `moe_layer_<L>_launches(tokens, records, capacity)` (what to launch, in
// order).
//
// Kernels of a layer, in launch order:
//   scale_input       layers with a smoothed input (moe.scale_channels) only:
//                     one block per token writes x * scales (a constant of the
//                     kernel's module) to the workspace, which every later
//                     kernel reads as the input
//   route_logits      one warp per (token, expert): logits (and the shared
//                     expert's sigmoid gate); also clears the expert counters
//   route_select      one thread per token: scoring and selection (every kind
//                     of #moe.routing), then, when dropless, the per-expert
//                     histogram by atomic increments (a slot's rank)
//   dispatch_rank     capacity-limited layers only: ranks in slot order, so
//                     the slots that overflow an expert are the ones the
//                     reference drops
//   dispatch_offsets  prefix sums of the counts: row offsets and row-tile
//                     offsets of every expert
//   dispatch_scatter  one block per slot: the token's row, in bf16, at its
//                     expert's rows (the permutation)
//   experts_up        grouped x.W1 on tensor cores (mma.sync m16n8k16 bf16,
//                     f32 accumulation, cp.async double buffering, ldmatrix;
//                     on sm_90a wgmma m64n64k16 fed by TMA and mbarriers),
//                     bias, row scale and activation in the epilogue -> h bf16
//   experts_down      grouped h.W2 (+ bias) -> y f32
//   *_decode          the same two projections for T <= kDecodeTokens: no
//                     tiles, each block streams one panel of one expert's
//                     weights once for all of that expert's rows
//   shared_up/down    the shared expert, over all tokens (prefill and decode
//                     forms)
//   combine           one block per token: the weighted sum of its rows and
//                     the (gated) shared expert
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_CODEGEN_GPU_EMITKERNELS_H
#define MOEC_LIB_CODEGEN_GPU_EMITKERNELS_H

#include "lib/Codegen/CPU/LayerPlan.h"
#include "lib/Codegen/CPU/WeightPacking.h"

#include "mlir/IR/BuiltinOps.h"

#include <string>
#include <vector>

namespace mlir::moe::cuda {

/// Calls with at most this many tokens take the decode kernels.
constexpr int64_t kDecodeTokens = 64;
/// The weights layout the kernels read (see WeightPacking.h): 64-column
/// panels, w1's K rows padded to the K tile, 16-byte aligned bf16 tensors.
cpu::PackingOptions packingOptions();

/// Adds the layer's kernels to `container` (a module with
/// gpu.container_module), each in its own gpu.module carrying `target` (an
/// #nvvm.target), and the layer's host functions to `host`. `hopper` (sm_90a)
/// selects the wgmma + TMA form of the prefill projections whose K is a
/// multiple of 64 (the others keep mma.sync) and adds the layer's tensor-map
/// query. Returns the kernel names in the order launch records index them.
FailureOr<std::vector<std::string>>
emitLayerKernels(ModuleOp container, ModuleOp host, const cpu::LayerPlan &plan,
                 const cpu::PackedLayer &packed, Attribute target, bool hopper);

} // namespace mlir::moe::cuda

#endif // MOEC_LIB_CODEGEN_GPU_EMITKERNELS_H
