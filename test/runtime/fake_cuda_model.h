/* fake_cuda_model.h - what the CUDA fixture library fake_cuda_model.c
 * exports, shared with the test (cuda_runtime_test.c).
 *
 * fake_cuda_model.c stands in for the host library of a folder moe-compile
 * writes with --target cuda (runtime/FORMAT.md, "CUDA target"): the same two
 * layers as fake_model.h (same weights and hash), each with a launch table and
 * kernel images. Layer A's kernels have PTX only; layer B's also have (fake)
 * cubins for FAKE_CUDA_ARCH. Each image names only its own kernel, so loading
 * the wrong one makes cuModuleGetFunction fail in the fake driver.
 *
 * The environment variable MOE_FAKE_CUDA_MODEL_BAD makes the library break
 * the contract, for the runtime's checks: "zero" (no launches), "count" (more
 * launches than the capacity), "kernel" (a kernel index out of range), "grid"
 * and "block" (a dimension of 0), "smem" (more shared memory than any device
 * has), "negative_smem", "workspace" (a negative workspace size). */
#ifndef MOE_TEST_RUNTIME_FAKE_CUDA_MODEL_H
#define MOE_TEST_RUNTIME_FAKE_CUDA_MODEL_H

#include "fake_model.h"

#include <stdint.h>

#define FAKE_CUDA_ARCH "sm_90"

#define FAKE_CUDA_A_KERNELS 3
#define FAKE_CUDA_A_KERNEL_NAMES                                               \
  { "moe_layer_1_route", "moe_layer_1_experts", "moe_layer_1_combine" }
#define FAKE_CUDA_B_KERNELS 2
#define FAKE_CUDA_B_KERNEL_NAMES                                               \
  { "moe_layer_3_route", "moe_layer_3_experts" }

/* Layer B's second launch needs more dynamic shared memory than the default
 * 48 KiB, so the runtime must raise the function's limit. */
#define FAKE_CUDA_B_BIG_SHARED 65536

typedef struct fake_cuda_launch {
  int32_t kernel;
  int32_t grid[3];
  int32_t block[3];
  int32_t shared_bytes;
} fake_cuda_launch;

static inline int32_t fake_cuda_ceil(int64_t a, int64_t b) {
  return (int32_t)((a + b - 1) / b);
}

/* The launches of layer A (`layer_b` = 0) or B for `tokens` rows: written to
 * `out` (which must hold 3), returns how many. The library and the test both
 * use it: the test checks that the runtime launches exactly these. */
static inline int32_t fake_cuda_table(int layer_b, int64_t tokens,
                                      fake_cuda_launch *out) {
  int32_t t = (int32_t)tokens;
  if (!layer_b) {
    fake_cuda_launch a[3] = {
        {0, {fake_cuda_ceil(tokens, 4), 1, 1}, {128, 1, 1}, 0},
        {1, {FAKE_A_EXPERTS, fake_cuda_ceil(tokens, 16), 1}, {256, 1, 1}, 0},
        {2, {t, 1, 1}, {64, 1, 1}, 0}};
    for (int i = 0; i < 3; ++i)
      out[i] = a[i];
    return 3;
  }
  fake_cuda_launch b[3] = {
      {0, {t, 1, 1}, {32, 1, 1}, 0},
      {1, {FAKE_B_EXPERTS, t, 1}, {128, 2, 1}, FAKE_CUDA_B_BIG_SHARED},
      {1, {FAKE_B_EXPERTS, 1, 1}, {64, 1, 1}, 1024}};
  for (int i = 0; i < 3; ++i)
    out[i] = b[i];
  return 3;
}

/* Device workspace bytes of layer A or B. */
static inline int64_t fake_cuda_workspace(int layer_b, int64_t tokens) {
  return (layer_b ? 128 : 64) * tokens;
}

#endif
