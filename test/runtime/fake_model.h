/* fake_model.h - what the test fixture library computes, shared with the test.
 *
 * fake_model.c stands in for a library moe-compile would generate
 * (runtime/FORMAT.md): two layers whose math is simple enough to check exactly.
 * Each layer reads two f32 values w[0], w[1] from the weights data buffer at
 * its byte offset and computes output[t, h] = hidden[t, h] * w[0] + w[1]
 *   topk_ids[t, j] = (t + j) % E,  topk_weights[t, j] = 1 / k. */
#ifndef MOE_TEST_RUNTIME_FAKE_MODEL_H
#define MOE_TEST_RUNTIME_FAKE_MODEL_H

#define FAKE_A_LAYER 1
#define FAKE_A_ENTRY "moe_layer_1"
#define FAKE_A_HIDDEN 4
#define FAKE_A_EXPERTS 4
#define FAKE_A_TOPK 2
#define FAKE_A_OFFSET 0 /* bytes into the data buffer */

#define FAKE_B_LAYER 3
#define FAKE_B_ENTRY "moe_layer_3"
#define FAKE_B_HIDDEN 8
#define FAKE_B_EXPERTS 8
#define FAKE_B_TOPK 3
#define FAKE_B_OFFSET 8

/* The weights data buffer the test writes: layer A's w, then layer B's (16
 * bytes of little-endian f32), and its SHA-256, which the library exports as
 * moe_weights_hash. The test recomputes the hash rather than trusting this
 * constant. */
#define FAKE_WEIGHTS                                                           \
  { 2.0f, 0.5f, -1.0f, 0.25f }
#define FAKE_WEIGHTS_SHA256                                                    \
  "74af3e7eb62d4d384e2d759f55ce727fbe1f618e3719537708239fccd4145661"

#endif
