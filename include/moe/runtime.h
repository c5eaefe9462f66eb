/*===- moe/runtime.h - run MoE layers compiled by moec ------------*- C -*-===*
 *
 * A compiled output folder (moe-compile CKPT -o OUT) holds a shared library of
 * generated code, the weights file it reads, manifest.json and the final IR.
 * This API opens such a folder and runs its layers, on the CPU or, for a
 * folder compiled with --target cuda, on an NVIDIA GPU through the CUDA driver
 * (loaded when such a model is opened; the library itself needs no CUDA).
 * Every call reports failure as a status code, with a message from
 * moe_last_error(); nothing aborts the process. Calls on one model from
 * several threads are safe as long as they write to different output buffers.
 *
 *===----------------------------------------------------------------------===*/

#ifndef MOE_RUNTIME_H
#define MOE_RUNTIME_H

#include "moe/dtype.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum moe_status {
  MOE_OK = 0,
  MOE_ERROR_INVALID_ARGUMENT =
      1,                  /* null pointer, T = 0, unsupported dtype, ... */
  MOE_ERROR_IO = 2,       /* a file is missing or unreadable */
  MOE_ERROR_FORMAT = 3,   /* manifest, library or weights file is malformed */
  MOE_ERROR_MISMATCH = 4, /* library and weights were not compiled together */
  MOE_ERROR_UNKNOWN_LAYER = 5, /* no such layer in the model */
  MOE_ERROR_SHAPE = 6,         /* hidden size differs from the layer's */
  MOE_ERROR_UNSUPPORTED =
      7, /* e.g. a target this build or machine cannot run */
  MOE_ERROR_OUT_OF_MEMORY = 8,
  MOE_ERROR_DEVICE = 9, /* the GPU or its driver failed (a kernel fault, ...) */
} moe_status;

/* The message of the calling thread's last failed call ("" if none). Successful
 * calls leave it unchanged (as errno); the text stays valid until the thread's
 * next failing call. */
const char *moe_last_error(void);
/* A fixed description of a status code. */
const char *moe_status_string(moe_status status);

typedef struct moe_model moe_model;

/* Opens a compiled folder on the device it was compiled for ("cpu" for
 * --target cpu, "cuda:0" for --target cuda): reads manifest.json, maps the
 * weights file, loads the library and checks that library, weights and
 * manifest belong together (a mismatched or truncated weights file is
 * refused). */
moe_status moe_model_open(const char *folder, moe_model **model);
/* As moe_model_open, on `device`: "cpu", or "cuda:N" with N the decimal
 * ordinal of a CUDA device (as the driver numbers them); null means the
 * folder's own target. Any other string is MOE_ERROR_INVALID_ARGUMENT. A folder
 * runs only on its target's kind of device: a cpu folder on "cuda:N", or a
 * cuda folder on "cpu", is MOE_ERROR_UNSUPPORTED. On "cuda:N" the runtime
 * loads the CUDA driver (libcuda.so.1, or the file named by the environment
 * variable MOE_CUDA_DRIVER), loads the kernels and copies the weights to the
 * device; no driver or no such device is MOE_ERROR_UNSUPPORTED, an ordinal
 * beyond the devices present MOE_ERROR_INVALID_ARGUMENT. */
moe_status moe_model_open_device(const char *folder, const char *device,
                                 moe_model **model);
/* Releases everything moe_model_open acquired; null is ignored. */
void moe_model_close(moe_model *model);

typedef struct moe_layer_info {
  int32_t layer; /* decoder-layer index, as in the checkpoint's tensor names */
  int64_t hidden_size; /* H */
  int32_t num_experts; /* E */
  int32_t top_k;       /* k: columns of topk_ids / topk_weights */
} moe_layer_info;

/* Number of compiled layers, and the i-th one's description (0 <= i < count).
 */
moe_status moe_model_num_layers(const moe_model *model, int32_t *count);
moe_status moe_model_layer_info(const moe_model *model, int32_t i,
                                moe_layer_info *info);

/* Runs decoder layer `layer` on `tokens` rows of hidden states [tokens,
 * hidden_size] of `dtype` (MOE_DTYPE_F32 or MOE_DTYPE_BF16), writing [tokens,
 * hidden_size] f32 to `output`. `topk_ids` ([tokens, k] int32) and
 * `topk_weights` ([tokens, k] float) receive the routing decision when not
 * null; unused top-p slots hold -1 and 0. All pointers are host memory, also
 * for a model on a GPU: the call copies in, runs and copies out before it
 * returns (calls on one GPU model run one at a time). */
moe_status moe_layer_run(moe_model *model, int32_t layer, const void *hidden,
                         moe_dtype dtype, int64_t tokens, int64_t hidden_size,
                         float *output, int32_t *topk_ids, float *topk_weights);

/* Runs decoder layer `layer` of a model opened on a CUDA device on buffers
 * that already live in its device memory (as a framework's GPU tensors do),
 * with no host copies: `hidden` [tokens, hidden_size] f32 (only f32) and
 * `output` [tokens, hidden_size] f32, `topk_ids` [tokens, k] int32 and
 * `topk_weights` [tokens, k] float are device pointers (CUdeviceptr values
 * cast to pointers), 4-byte aligned; null `topk_ids` / `topk_weights` leave
 * the routing decision in the model's device scratch. The work is enqueued on
 * `stream` (a CUstream of the model's device; null means the model's own
 * stream, which is non-blocking: synchronize it with cuCtxSynchronize or
 * cudaDeviceSynchronize) and the call returns once it is enqueued, without
 * waiting: the caller synchronizes the stream before reading `output`, and
 * must keep the buffers alive until then. Launch errors show up here or in
 * that synchronization (a kernel fault is sticky: the context's later calls
 * fail too). The calling thread must have the model's primary context (the
 * device's, as the CUDA runtime uses it) or no context current; the runtime
 * pushes and pops it.
 *
 * Calls on one model are ordered one after another on the GPU, also across
 * streams (a call on another stream waits for the previous call's work: they
 * share the model's workspace); moe_layer_run first waits for them all.
 * Decode sizes (up to 64 tokens) replay a CUDA graph captured for the call's
 * layer, token count and buffers (pointers are baked into it); passing the
 * same buffers every step replays it, new buffers capture another (up to 8
 * sets per layer and token count are kept). A model on the CPU is
 * MOE_ERROR_UNSUPPORTED. */
moe_status moe_layer_run_device(moe_model *model, int32_t layer,
                                const float *hidden, int64_t tokens,
                                int64_t hidden_size, float *output,
                                int32_t *topk_ids, float *topk_weights,
                                void *stream);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MOE_RUNTIME_H */
