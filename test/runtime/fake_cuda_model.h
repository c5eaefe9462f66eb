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
 * A third layer C (layer 5, which only the folders of the tensor map tests
 * list) stands in for an sm_90a layer with TMA kernels: it also exports
 * moe_layer_5_tensor_maps (FORMAT.md, "Tensor maps"), one map on the weights
 * and one on the workspace whose slot depends on the token count.
 *
 * The environment variable MOE_FAKE_CUDA_MODEL_BAD makes the library break
 * the contract, for the runtime's checks: "zero" (no launches), "count" (more
 * launches than the capacity), "kernel" (a kernel index out of range), "grid"
 * and "block" (a dimension of 0), "smem" (more shared memory than any device
 * has), "negative_smem", "workspace" (a negative workspace size); for layer
 * C's tensor maps the "map_..." values of fake_cuda_tensor_maps_bad(). */
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

/* Layer C: hidden size, experts and top k as layer A. */
#define FAKE_C_LAYER 5
#define FAKE_C_ENTRY "moe_layer_5"
#define FAKE_C_HIDDEN 4
#define FAKE_C_EXPERTS 4
#define FAKE_C_TOPK 2
#define FAKE_CUDA_C_KERNELS 2
#define FAKE_CUDA_C_KERNEL_NAMES                                               \
  { "moe_layer_5_route", "moe_layer_5_tma_experts" }

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

/* The layers of the fixture, as the helpers below number them. */
enum { FAKE_CUDA_LAYER_A = 0, FAKE_CUDA_LAYER_B = 1, FAKE_CUDA_LAYER_C = 2 };

/* The launches of layer A, B or C (`which`) for `tokens` rows: written to
 * `out` (which must hold 3), returns how many. The library and the test both
 * use it: the test checks that the runtime launches exactly these. */
static inline int32_t fake_cuda_table(int which, int64_t tokens,
                                      fake_cuda_launch *out) {
  int32_t t = (int32_t)tokens;
  if (which == FAKE_CUDA_LAYER_C) {
    fake_cuda_launch c[2] = {
        {0, {t, 1, 1}, {128, 1, 1}, 0},
        {1, {FAKE_C_EXPERTS, fake_cuda_ceil(tokens, 64), 1}, {128, 1, 1}, 0}};
    out[0] = c[0];
    out[1] = c[1];
    return 2;
  }
  if (which == FAKE_CUDA_LAYER_A) {
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

/* Device workspace bytes of layer A, B or C. Layer C's first 384 bytes hold
 * its encoded tensor maps; its bf16 tiles follow. */
static inline int64_t fake_cuda_workspace(int which, int64_t tokens) {
  if (which == FAKE_CUDA_LAYER_C)
    return 384 + 64 * tokens;
  return (which == FAKE_CUDA_LAYER_B ? 128 : 64) * tokens;
}

/* A tensor map record (FORMAT.md, moe_cuda_tensor_map). */
typedef struct fake_cuda_tensor_map {
  int32_t base;
  int32_t rank;
  int64_t offset;
  int64_t dims[3];
  int64_t strides[2];
  int32_t box[3];
  int32_t swizzle;
  int64_t workspace_offset;
} fake_cuda_tensor_map;

#define FAKE_C_MAPS 2

/* Layer C's tensor maps for `tokens` rows (into `out`, which must hold 2):
 * map 0 is the 16 bytes of weights as one 8x1 bf16 tile, its encoded map at
 * workspace offset 0; map 1 is [tokens, 2, 8] bf16 in the workspace from byte
 * 384 (8x2x1 tiles, 32-byte swizzle), its encoded map at workspace offset
 * 128 for even token counts and 256 for odd ones. */
static inline int32_t fake_cuda_tensor_maps(int64_t tokens,
                                            fake_cuda_tensor_map *out) {
  fake_cuda_tensor_map maps[FAKE_C_MAPS] = {
      {0, 2, 0, {8, 1, 1}, {16, 0}, {8, 1, 1}, 0, 0},
      {1,
       3,
       384,
       {8, 2, tokens},
       {16, 32},
       {8, 2, 1},
       1,
       128 + 128 * (tokens % 2)}};
  out[0] = maps[0];
  out[1] = maps[1];
  return FAKE_C_MAPS;
}

#endif
