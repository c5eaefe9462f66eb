/* fake_cuda_model.c - a stand-in for the host library of a CUDA folder (see
 * fake_cuda_model.h). */
#include "fake_cuda_model.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

EXPORT const char moe_weights_hash[] = FAKE_WEIGHTS_SHA256;

static int bad(const char *what) {
  const char *value = getenv("MOE_FAKE_CUDA_MODEL_BAD");
  return value && strcmp(value, what) == 0;
}

/* The table of fake_cuda_model.h, spoiled as MOE_FAKE_CUDA_MODEL_BAD says,
 * written as FORMAT.md asks: min(count, capacity) records, returns count. */
static int32_t launches(int which, int32_t kernels, int64_t tokens,
                        fake_cuda_launch *out, int32_t capacity) {
  fake_cuda_launch table[3];
  int32_t count = fake_cuda_table(which, tokens, table);
  if (bad("kernel"))
    table[count - 1].kernel = kernels;
  if (bad("grid"))
    table[0].grid[1] = 0;
  if (bad("block"))
    table[1].block[2] = 0;
  if (bad("smem"))
    table[0].shared_bytes = 1 << 30;
  if (bad("negative_smem"))
    table[0].shared_bytes = -4;
  for (int32_t i = 0; i < count && i < capacity; ++i)
    out[i] = table[i];
  if (bad("zero"))
    return 0;
  if (bad("count"))
    return capacity + 1;
  return count;
}

EXPORT int64_t moe_layer_1_workspace_bytes(int64_t tokens) {
  return bad("workspace") ? -1 : fake_cuda_workspace(FAKE_CUDA_LAYER_A, tokens);
}

EXPORT int64_t moe_layer_3_workspace_bytes(int64_t tokens) {
  return bad("workspace") ? -1 : fake_cuda_workspace(FAKE_CUDA_LAYER_B, tokens);
}

EXPORT int64_t moe_layer_5_workspace_bytes(int64_t tokens) {
  return bad("workspace") ? -1 : fake_cuda_workspace(FAKE_CUDA_LAYER_C, tokens);
}

EXPORT int32_t moe_layer_1_launches(int64_t tokens, fake_cuda_launch *out,
                                    int32_t capacity) {
  return launches(FAKE_CUDA_LAYER_A, FAKE_CUDA_A_KERNELS, tokens, out,
                  capacity);
}

EXPORT int32_t moe_layer_3_launches(int64_t tokens, fake_cuda_launch *out,
                                    int32_t capacity) {
  return launches(FAKE_CUDA_LAYER_B, FAKE_CUDA_B_KERNELS, tokens, out,
                  capacity);
}

EXPORT int32_t moe_layer_5_launches(int64_t tokens, fake_cuda_launch *out,
                                    int32_t capacity) {
  return launches(FAKE_CUDA_LAYER_C, FAKE_CUDA_C_KERNELS, tokens, out,
                  capacity);
}

/* Layer C's tensor maps (fake_cuda_model.h), spoiled as
 * MOE_FAKE_CUDA_MODEL_BAD says: "map_negative" and "map_count" (a count below
 * 0 or above the capacity), or one field of one record out of the contract. */
EXPORT int32_t moe_layer_5_tensor_maps(int64_t tokens,
                                       fake_cuda_tensor_map *out,
                                       int32_t capacity) {
  fake_cuda_tensor_map maps[FAKE_C_MAPS];
  int32_t count = fake_cuda_tensor_maps(tokens, maps);
  if (bad("map_base"))
    maps[1].base = 2;
  if (bad("map_rank"))
    maps[0].rank = 4;
  if (bad("map_dims"))
    maps[1].dims[1] = 0;
  if (bad("map_box"))
    maps[1].box[2] = 257;
  if (bad("map_box_bytes"))
    maps[0].box[0] = 4;
  if (bad("map_swizzle"))
    maps[1].swizzle = 4;
  if (bad("map_swizzle_span"))
    maps[1].box[0] = 32;
  if (bad("map_offset"))
    maps[1].offset = 392;
  if (bad("map_stride"))
    maps[1].strides[1] = 40;
  if (bad("map_weights_end"))
    maps[0].dims[1] = 2;
  if (bad("map_workspace_end"))
    maps[1].dims[2] = 2 * tokens + 8;
  if (bad("map_slot"))
    maps[1].workspace_offset = 160;
  if (bad("map_slot_end"))
    maps[1].workspace_offset =
        fake_cuda_workspace(FAKE_CUDA_LAYER_C, tokens) - 64;
  if (bad("map_slot_overlap"))
    maps[1].workspace_offset = 64;
  for (int32_t i = 0; i < count && i < capacity; ++i)
    out[i] = maps[i];
  if (bad("map_negative"))
    return -1;
  if (bad("map_count"))
    return capacity + 1;
  return count;
}

/* Layer A: PTX only (cubin size 0, and no cubin symbol at all). */
#define PTX(name)                                                              \
  "//\n// Fake PTX for the tests\n//\n.version 8.0\n.target sm_80\n"           \
  ".address_size 64\n.visible .entry " name "(\n  .param .u64 hidden\n)\n{\n"  \
  "  ret;\n}\n"

EXPORT const char moe_layer_1_kernel_0_ptx[] = PTX("moe_layer_1_route");
EXPORT const char moe_layer_1_kernel_1_ptx[] = PTX("moe_layer_1_experts");
EXPORT const char moe_layer_1_kernel_2_ptx[] = PTX("moe_layer_1_combine");
EXPORT const uint64_t moe_layer_1_kernel_0_cubin_size = 0;
EXPORT const uint64_t moe_layer_1_kernel_1_cubin_size = 0;
EXPORT const uint64_t moe_layer_1_kernel_2_cubin_size = 0;

/* Layer B: PTX and a cubin for FAKE_CUDA_ARCH (the fake driver takes an image
 * starting with the ELF magic as a cubin). */
#define CUBIN(name)                                                            \
  "\x7f"                                                                       \
  "ELF fake cubin for " FAKE_CUDA_ARCH ": " name

EXPORT const char moe_layer_3_kernel_0_ptx[] = PTX("moe_layer_3_route");
EXPORT const char moe_layer_3_kernel_1_ptx[] = PTX("moe_layer_3_experts");
EXPORT const char moe_layer_3_kernel_0_cubin[] = CUBIN("moe_layer_3_route");
EXPORT const char moe_layer_3_kernel_1_cubin[] = CUBIN("moe_layer_3_experts");
EXPORT const uint64_t moe_layer_3_kernel_0_cubin_size =
    sizeof(moe_layer_3_kernel_0_cubin) - 1;
EXPORT const uint64_t moe_layer_3_kernel_1_cubin_size =
    sizeof(moe_layer_3_kernel_1_cubin) - 1;

/* Layer C: PTX only. */
EXPORT const char moe_layer_5_kernel_0_ptx[] = PTX("moe_layer_5_route");
EXPORT const char moe_layer_5_kernel_1_ptx[] = PTX("moe_layer_5_tma_experts");
EXPORT const uint64_t moe_layer_5_kernel_0_cubin_size = 0;
EXPORT const uint64_t moe_layer_5_kernel_1_cubin_size = 0;
