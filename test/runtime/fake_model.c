/* fake_model.c - a stand-in for a library moe-compile generates (see
 * fake_model.h). Built twice: as fake_model, and with FAKE_NO_HASH as
 * fake_model_nohash, which lacks the moe_weights_hash symbol. */
#include "fake_model.h"

#include <stdint.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

#ifndef FAKE_NO_HASH
EXPORT const char moe_weights_hash[] = FAKE_WEIGHTS_SHA256;
#endif

static void run(int64_t hidden_size, int32_t experts, int32_t top_k,
                size_t offset, const float *hidden, int64_t tokens,
                float *output, int32_t *topk_ids, float *topk_weights,
                const uint8_t *weights) {
  float w[2];
  memcpy(w, weights + offset,
         sizeof(w)); /* the data buffer need not be aligned */
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < hidden_size; ++h)
      output[t * hidden_size + h] = hidden[t * hidden_size + h] * w[0] + w[1];
    for (int32_t j = 0; j < top_k; ++j) {
      topk_ids[t * top_k + j] = (int32_t)((t + j) % experts);
      topk_weights[t * top_k + j] = 1.0f / (float)top_k;
    }
  }
}

/* The workspace is real memory the runtime provides: the fake layers fill it
 * and read it back, so a bad pointer or size would crash or corrupt. */
static void touch(uint8_t *workspace, int64_t tokens) {
  for (int64_t i = 0; i < 64 * tokens; ++i)
    workspace[i] = (uint8_t)i;
  for (int64_t i = 0; i < 64 * tokens; ++i)
    if (workspace[i] != (uint8_t)i)
      __builtin_trap();
}

EXPORT int64_t moe_layer_1_workspace_bytes(int64_t tokens) {
  return 64 * tokens;
}

EXPORT int64_t moe_layer_3_workspace_bytes(int64_t tokens) {
  return 64 * tokens;
}

EXPORT void moe_layer_1(const float *hidden, int64_t tokens, float *output,
                        int32_t *topk_ids, float *topk_weights,
                        const uint8_t *weights, uint8_t *workspace) {
  touch(workspace, tokens);
  run(FAKE_A_HIDDEN, FAKE_A_EXPERTS, FAKE_A_TOPK, FAKE_A_OFFSET, hidden, tokens,
      output, topk_ids, topk_weights, weights);
}

EXPORT void moe_layer_3(const float *hidden, int64_t tokens, float *output,
                        int32_t *topk_ids, float *topk_weights,
                        const uint8_t *weights, uint8_t *workspace) {
  touch(workspace, tokens);
  run(FAKE_B_HIDDEN, FAKE_B_EXPERTS, FAKE_B_TOPK, FAKE_B_OFFSET, hidden, tokens,
      output, topk_ids, topk_weights, weights);
}
