/* runtime_test.c - tests of libmoe_runtime through include/moe/runtime.h only.
 *
 * Usage: runtime_test FAKE_MODEL_SO FAKE_MODEL_NOHASH_SO
 *
 * No compiler exists yet to produce real folders, so the test writes them
 * itself into a temporary directory: manifest.json, a weights.safetensors
 * written byte by byte (with the SHA-256 of its data buffer, computed here, in
 * its metadata) and a copy of the fixture library fake_model.c (see
 * fake_model.h for its math). Then it opens them, runs layers and checks every
 * error path. Each check prints one line; the last line is the summary, and the
 * exit status is non-zero if any check failed. */
#define _GNU_SOURCE

#include "moe/runtime.h"

#include "fake_model.h"
#include "sha256.h"
#include "test_support.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*===----------------------------------------------------------------------===*
 * Writing folders
 *===----------------------------------------------------------------------===*/

static char root[4096];      /* the temporary directory holding every folder */
static const char *fake_lib; /* argv[1] */
static const char *fake_lib_nohash; /* argv[2] */
static char good_hash[65];          /* SHA-256 of the default data buffer */
static const float kGoodWeights[4] = FAKE_WEIGHTS;

/* The members of manifest.json, each as JSON text; NULL leaves the member out.
 */
typedef struct {
  const char *format;
  const char *format_version;
  const char *target;
  const char *library;
  const char *weights;
  const char *weights_hash;
  const char *layers;
  const char *extra; /* more members, written verbatim with a trailing comma */
} manifest_spec;

static char good_hash_json[80];
static char good_layers[512];

static manifest_spec default_manifest(void) {
  manifest_spec spec = {"\"moec-compiled\"",
                        "1",
                        "\"cpu\"",
                        "\"libmoe_model.so\"",
                        "\"weights.safetensors\"",
                        good_hash_json,
                        good_layers,
                        NULL};
  return spec;
}

static void write_manifest(const char *folder, const manifest_spec *spec) {
  char text[4096];
  size_t length = 0;
  length += (size_t)snprintf(
      text + length, sizeof(text) - length,
      "{\"compiler\": \"moec 0.1.0\", \"model_type\": \"mixtral\", "
      "\"header\": \"moe_model.h\", \"ir\": \"final.mlir\", %s",
      spec->extra ? spec->extra : "");
  const char *names[] = {"format",  "format_version", "target", "library",
                         "weights", "weights_hash",   "layers"};
  const char *values[] = {
      spec->format,  spec->format_version, spec->target, spec->library,
      spec->weights, spec->weights_hash,   spec->layers};
  int first = 1;
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); ++i) {
    if (!values[i])
      continue;
    length +=
        (size_t)snprintf(text + length, sizeof(text) - length, "%s\"%s\": %s",
                         first ? "" : ", ", names[i], values[i]);
    first = 0;
  }
  length += (size_t)snprintf(text + length, sizeof(text) - length, "}\n");
  char path[4096];
  join(path, sizeof(path), folder, "manifest.json");
  write_bytes(path, text, length);
}

/* Creates a folder under root, named after `name` (made safe as a file name and
 * unique), holding a complete, valid model, and writes its path to `out`. */
static void make_folder(char *out, size_t size, const char *name) {
  static int counter;
  char safe[128];
  int length = snprintf(safe, sizeof(safe), "%02d-", ++counter);
  for (const char *c = name; *c && length < (int)sizeof(safe) - 1; ++c)
    safe[length++] = (isalnum((unsigned char)*c) || *c == '_') ? *c : '-';
  safe[length] = '\0';
  join(out, size, root, safe);
  if (mkdir(out, 0700) != 0)
    die(out);
  manifest_spec manifest = default_manifest();
  write_manifest(out, &manifest);
  weights_spec weights = {0};
  write_weights(out, &weights);
  char library[4096];
  join(library, sizeof(library), out, "libmoe_model.so");
  copy_file(fake_lib, library);
}

/*===----------------------------------------------------------------------===*
 * Expected results
 *===----------------------------------------------------------------------===*/

/* Hidden states whose values are multiples of 1/4 in [-2, 2]: exact in bf16. */
static float hidden_value(int64_t index, int seed) {
  return (float)((index + seed) % 17) * 0.25f - 2.0f;
}

static uint16_t to_bf16(float value) { /* exact for the values above */
  uint32_t bits;
  memcpy(&bits, &value, sizeof(bits));
  return (uint16_t)(bits >> 16);
}

typedef struct {
  int32_t layer;
  int64_t hidden;
  int32_t experts;
  int32_t top_k;
  int offset; /* of w in kGoodWeights, in floats */
} layer_desc;

static const layer_desc kLayerA = {FAKE_A_LAYER, FAKE_A_HIDDEN, FAKE_A_EXPERTS,
                                   FAKE_A_TOPK, FAKE_A_OFFSET / 4};
static const layer_desc kLayerB = {FAKE_B_LAYER, FAKE_B_HIDDEN, FAKE_B_EXPERTS,
                                   FAKE_B_TOPK, FAKE_B_OFFSET / 4};

/* Runs `layer` on `tokens` rows (as f32 or bf16) and compares output and
 * routing with the fixture's math exactly. Returns 0 on success or writes why
 * not into `why`. */
static int run_and_compare(moe_model *model, const layer_desc *layer,
                           moe_dtype dtype, int64_t tokens, int seed,
                           int want_ids, int want_weights, char *why,
                           size_t why_size) {
  size_t elements = (size_t)(tokens * layer->hidden);
  size_t routed = (size_t)(tokens * layer->top_k);
  float *hidden = malloc(elements * sizeof(float));
  uint16_t *hidden16 = malloc(elements * sizeof(uint16_t));
  float *output = malloc(elements * sizeof(float));
  int32_t *ids = malloc(routed * sizeof(int32_t));
  float *weights = malloc(routed * sizeof(float));
  int result = 1;
  if (!hidden || !hidden16 || !output || !ids || !weights) {
    snprintf(why, why_size, "out of memory");
    goto done;
  }
  for (size_t i = 0; i < elements; ++i) {
    hidden[i] = hidden_value((int64_t)i, seed);
    hidden16[i] = to_bf16(hidden[i]);
    output[i] = -12345.0f;
  }
  for (size_t i = 0; i < routed; ++i) {
    ids[i] = -7;
    weights[i] = -7.0f;
  }
  const void *input =
      dtype == MOE_DTYPE_BF16 ? (const void *)hidden16 : (const void *)hidden;
  moe_status status = moe_layer_run(
      model, layer->layer, input, dtype, tokens, layer->hidden, output,
      want_ids ? ids : NULL, want_weights ? weights : NULL);
  if (status != MOE_OK) {
    snprintf(why, why_size, "status %d (%s): %s", (int)status,
             moe_status_string(status), moe_last_error());
    goto done;
  }
  float w0 = kGoodWeights[layer->offset], w1 = kGoodWeights[layer->offset + 1];
  for (size_t i = 0; i < elements; ++i) {
    float expected = hidden[i] * w0 + w1;
    if (output[i] != expected) {
      snprintf(why, why_size, "output[%zu] = %g, expected %g", i,
               (double)output[i], (double)expected);
      goto done;
    }
  }
  for (int64_t t = 0; t < tokens; ++t)
    for (int32_t j = 0; j < layer->top_k; ++j) {
      size_t i = (size_t)(t * layer->top_k + j);
      int32_t expected_id = want_ids ? (int32_t)((t + j) % layer->experts) : -7;
      float expected_weight = want_weights ? 1.0f / (float)layer->top_k : -7.0f;
      if (ids[i] != expected_id || weights[i] != expected_weight) {
        snprintf(why, why_size, "topk[%lld, %d] = (%d, %g), expected (%d, %g)",
                 (long long)t, (int)j, (int)ids[i], (double)weights[i],
                 (int)expected_id, (double)expected_weight);
        goto done;
      }
    }
  result = 0;
done:
  free(hidden);
  free(hidden16);
  free(output);
  free(ids);
  free(weights);
  return result;
}

/*===----------------------------------------------------------------------===*
 * Opening folders
 *===----------------------------------------------------------------------===*/

/* moe_model_open(folder) must fail with `expected`, leave the model null and
 * set a message containing `needle` (and, when given, `needle2`). */
static void expect_open_failure(const char *name, const char *folder,
                                moe_status expected, const char *needle,
                                const char *needle2) {
  moe_model *model =
      (moe_model *)&model; /* not null, to see that it is reset */
  moe_status status = moe_model_open(folder, &model);
  const char *message = moe_last_error();
  int ok = status == expected && model == NULL && contains(message, needle) &&
           (!needle2 || contains(message, needle2));
  if (check(ok, name,
            "status %d (expected %d), model %p, message '%s' (expected to "
            "contain '%s'%s%s)",
            (int)status, (int)expected, (void *)model, message, needle,
            needle2 ? " and " : "", needle2 ? needle2 : ""))
    printf("    %s\n", message);
  if (status == MOE_OK && model != (moe_model *)&model)
    moe_model_close(model);
}

/* A valid folder whose manifest is then replaced by `manifest`. */
static void expect_manifest_failure(const char *name,
                                    const manifest_spec *manifest,
                                    moe_status expected, const char *needle) {
  char folder[4096];
  make_folder(folder, sizeof(folder), name);
  write_manifest(folder, manifest);
  expect_open_failure(name, folder, expected, needle, "manifest.json");
}

static void test_open_errors(void) {
  char folder[4096], path[4096];
  manifest_spec manifest;

  join(folder, sizeof(folder), root, "does-not-exist");
  expect_open_failure("missing folder", folder, MOE_ERROR_IO, folder, NULL);

  make_folder(folder, sizeof(folder), "not-a-folder");
  join(path, sizeof(path), folder, "manifest.json");
  expect_open_failure("folder is a file", path, MOE_ERROR_IO, "not a directory",
                      NULL);

  make_folder(folder, sizeof(folder), "no-manifest");
  join(path, sizeof(path), folder, "manifest.json");
  unlink(path);
  expect_open_failure("missing manifest", folder, MOE_ERROR_IO, path, NULL);

  make_folder(folder, sizeof(folder), "manifest-not-json");
  join(path, sizeof(path), folder, "manifest.json");
  write_bytes(path, "{\"format\": \"moec-compiled\",", 27);
  expect_open_failure("manifest not JSON", folder, MOE_ERROR_FORMAT, path,
                      "not valid JSON");

  make_folder(folder, sizeof(folder), "manifest-array");
  join(path, sizeof(path), folder, "manifest.json");
  write_bytes(path, "[1, 2]", 6);
  expect_open_failure("manifest not an object", folder, MOE_ERROR_FORMAT, path,
                      "not a JSON object");

  make_folder(folder, sizeof(folder), "manifest-duplicate");
  join(path, sizeof(path), folder, "manifest.json");
  const char *duplicate =
      "{\"format\": \"moec-compiled\", \"format\": \"other\"}";
  write_bytes(path, duplicate, strlen(duplicate));
  expect_open_failure("manifest with a duplicate key", folder, MOE_ERROR_FORMAT,
                      path, "duplicate key 'format'");

  manifest = default_manifest();
  manifest.format = "\"moec-something\"";
  expect_manifest_failure("wrong format", &manifest, MOE_ERROR_FORMAT,
                          "moec-something");
  manifest = default_manifest();
  manifest.format = NULL;
  expect_manifest_failure("missing format", &manifest, MOE_ERROR_FORMAT,
                          "\"format\"");
  manifest = default_manifest();
  manifest.format_version = "2";
  expect_manifest_failure("newer format version", &manifest,
                          MOE_ERROR_UNSUPPORTED, "format_version");
  manifest = default_manifest();
  manifest.format_version = "\"1\"";
  expect_manifest_failure("format version not an integer", &manifest,
                          MOE_ERROR_FORMAT, "format_version");
  manifest = default_manifest();
  manifest.format_version = "1.5";
  expect_manifest_failure("format version a fraction", &manifest,
                          MOE_ERROR_FORMAT, "format_version");
  manifest = default_manifest();
  manifest.target = "\"rocm\"";
  expect_manifest_failure("unsupported target", &manifest,
                          MOE_ERROR_UNSUPPORTED, "rocm");
  manifest = default_manifest();
  manifest.target = "7";
  expect_manifest_failure("target not a string", &manifest, MOE_ERROR_FORMAT,
                          "\"target\"");
  manifest = default_manifest();
  manifest.extra = "\"cpu_features\": [\"+avx2\"],";
  expect_manifest_failure("cpu_features not a string", &manifest,
                          MOE_ERROR_FORMAT, "cpu_features");
  manifest = default_manifest();
  manifest.library = "\"sub/libmoe_model.so\"";
  expect_manifest_failure("library name with '/'", &manifest, MOE_ERROR_FORMAT,
                          "sub/libmoe_model.so");
  manifest = default_manifest();
  manifest.library = "\"/tmp/libmoe_model.so\"";
  expect_manifest_failure("absolute library path", &manifest, MOE_ERROR_FORMAT,
                          "/tmp/libmoe_model.so");
  manifest = default_manifest();
  manifest.weights = "\"..\"";
  expect_manifest_failure("weights name '..'", &manifest, MOE_ERROR_FORMAT,
                          "\"weights\"");
  manifest = default_manifest();
  manifest.library = NULL;
  expect_manifest_failure("missing library field", &manifest, MOE_ERROR_FORMAT,
                          "\"library\"");
  manifest = default_manifest();
  manifest.weights_hash = "\"ABC\"";
  expect_manifest_failure("weights_hash not a hex SHA-256", &manifest,
                          MOE_ERROR_FORMAT, "weights_hash");
  manifest = default_manifest();
  manifest.layers = NULL;
  expect_manifest_failure("missing layers", &manifest, MOE_ERROR_FORMAT,
                          "\"layers\"");
  manifest = default_manifest();
  manifest.layers = "{}";
  expect_manifest_failure("layers not an array", &manifest, MOE_ERROR_FORMAT,
                          "\"layers\"");
  manifest = default_manifest();
  manifest.layers = "[7]";
  expect_manifest_failure("layer not an object", &manifest, MOE_ERROR_FORMAT,
                          "layers[0]");
  manifest = default_manifest();
  manifest.layers =
      "[{\"layer\": 1, \"entry\": \"moe_layer_1\", \"hidden_size\": 4, "
      "\"num_experts\": 4, \"top_k\": 5}]";
  expect_manifest_failure("top_k > num_experts", &manifest, MOE_ERROR_FORMAT,
                          "\"top_k\"");
  manifest = default_manifest();
  manifest.layers =
      "[{\"layer\": 1, \"entry\": \"moe_layer_1\", \"hidden_size\": 4, "
      "\"num_experts\": 4, \"top_k\": 0}]";
  expect_manifest_failure("top_k = 0", &manifest, MOE_ERROR_FORMAT,
                          "\"top_k\"");
  manifest = default_manifest();
  manifest.layers =
      "[{\"layer\": 1, \"entry\": \"moe_layer_1\", \"hidden_size\": 0, "
      "\"num_experts\": 4, \"top_k\": 2}]";
  expect_manifest_failure("hidden_size = 0", &manifest, MOE_ERROR_FORMAT,
                          "\"hidden_size\"");
  manifest = default_manifest();
  manifest.layers =
      "[{\"layer\": 1, \"entry\": \"moe_layer_1\", \"hidden_size\": \"4\", "
      "\"num_experts\": 4, \"top_k\": 2}]";
  expect_manifest_failure("hidden_size a string", &manifest, MOE_ERROR_FORMAT,
                          "\"hidden_size\" is not an integer");
  manifest = default_manifest();
  manifest.layers =
      "[{\"layer\": 1, \"entry\": \"moe_layer_1\", \"hidden_size\": 4, "
      "\"num_experts\": 0, \"top_k\": 1}]";
  expect_manifest_failure("num_experts = 0", &manifest, MOE_ERROR_FORMAT,
                          "\"num_experts\"");
  manifest = default_manifest();
  manifest.layers =
      "[{\"layer\": -1, \"entry\": \"moe_layer_1\", \"hidden_size\": 4, "
      "\"num_experts\": 4, \"top_k\": 2}]";
  expect_manifest_failure("negative layer", &manifest, MOE_ERROR_FORMAT,
                          "\"layer\"");
  manifest = default_manifest();
  manifest.layers =
      "[{\"layer\": 1, \"entry\": \"moe_layer_1\", \"hidden_size\": 4, "
      "\"num_experts\": 4, \"top_k\": 2}, {\"layer\": 1, \"entry\": "
      "\"moe_layer_3\", \"hidden_size\": 8, \"num_experts\": 8, \"top_k\": 3}]";
  expect_manifest_failure("duplicate layer", &manifest, MOE_ERROR_FORMAT,
                          "appears twice");
  manifest = default_manifest();
  manifest.layers =
      "[{\"layer\": 1, \"entry\": \"moe layer\", \"hidden_size\": 4, "
      "\"num_experts\": 4, \"top_k\": 2}]";
  expect_manifest_failure("entry not an identifier", &manifest,
                          MOE_ERROR_FORMAT, "moe layer");
  manifest = default_manifest();
  manifest.layers =
      "[{\"layer\": 1, \"hidden_size\": 4, \"num_experts\": 4, \"top_k\": 2}]";
  expect_manifest_failure("missing entry", &manifest, MOE_ERROR_FORMAT,
                          "\"entry\"");

  /* The library. */
  make_folder(folder, sizeof(folder), "missing-library");
  join(path, sizeof(path), folder, "libmoe_model.so");
  unlink(path);
  expect_open_failure("missing library", folder, MOE_ERROR_IO, path, NULL);

  make_folder(folder, sizeof(folder), "library-not-elf");
  join(path, sizeof(path), folder, "libmoe_model.so");
  write_bytes(path, "not a shared library", 20);
  expect_open_failure("library not a shared object", folder, MOE_ERROR_FORMAT,
                      path, "cannot load");

  manifest = default_manifest();
  manifest.layers =
      "[{\"layer\": 1, \"entry\": \"moe_layer_1\", \"hidden_size\": 4, "
      "\"num_experts\": 4, \"top_k\": 2}, {\"layer\": 9, \"entry\": "
      "\"moe_layer_9\", \"hidden_size\": 8, \"num_experts\": 8, \"top_k\": 3}]";
  make_folder(folder, sizeof(folder), "missing-entry");
  write_manifest(folder, &manifest);
  expect_open_failure("library without an entry symbol", folder,
                      MOE_ERROR_FORMAT, "moe_layer_9", "libmoe_model.so");

  make_folder(folder, sizeof(folder), "missing-hash-symbol");
  join(path, sizeof(path), folder, "libmoe_model.so");
  copy_file(fake_lib_nohash, path);
  expect_open_failure("library without moe_weights_hash", folder,
                      MOE_ERROR_FORMAT, "moe_weights_hash", path);

  /* The three hashes. */
  weights_spec weights = {0};
  make_folder(folder, sizeof(folder), "hash-manifest-vs-metadata");
  weights.metadata_hash =
      "0000000000000000000000000000000000000000000000000000000000000000";
  write_weights(folder, &weights);
  expect_open_failure("hash mismatch: manifest vs metadata", folder,
                      MOE_ERROR_MISMATCH, "__metadata__.moec_weights_hash",
                      good_hash);

  /* Other weights, consistently described by manifest and metadata, but not the
   * ones the library was compiled with. */
  const float other[4] = {3.0f, 0.5f, -1.0f, 0.25f};
  uint8_t other_data[16];
  char other_hash[65], other_hash_json[80];
  encode_weights(other, other_data);
  sha256_hex(other_data, sizeof(other_data), other_hash);
  snprintf(other_hash_json, sizeof(other_hash_json), "\"%s\"", other_hash);
  make_folder(folder, sizeof(folder), "hash-vs-library");
  weights_spec other_weights = {other, NULL, 0, 0};
  write_weights(folder, &other_weights);
  manifest = default_manifest();
  manifest.weights_hash = other_hash_json;
  write_manifest(folder, &manifest);
  expect_open_failure("hash mismatch: manifest and metadata vs library", folder,
                      MOE_ERROR_MISMATCH,
                      "moe_weights_hash = " FAKE_WEIGHTS_SHA256, other_hash);

  make_folder(folder, sizeof(folder), "hash-missing-from-metadata");
  weights_spec no_metadata = {NULL, "", 0, 0};
  write_weights(folder, &no_metadata);
  expect_open_failure("no moec_weights_hash in metadata", folder,
                      MOE_ERROR_FORMAT, "weights.safetensors",
                      "moec_weights_hash");

  /* The weights file. */
  make_folder(folder, sizeof(folder), "missing-weights");
  join(path, sizeof(path), folder, "weights.safetensors");
  unlink(path);
  expect_open_failure("missing weights file", folder, MOE_ERROR_IO, path, NULL);

  make_folder(folder, sizeof(folder), "truncated-weights");
  join(path, sizeof(path), folder, "weights.safetensors");
  weights_spec truncated = {NULL, NULL, 4, 0};
  write_weights(folder, &truncated);
  expect_open_failure("truncated weights file", folder, MOE_ERROR_FORMAT, path,
                      "data buffer ends at byte");

  make_folder(folder, sizeof(folder), "weights-header-past-end");
  join(path, sizeof(path), folder, "weights.safetensors");
  weights_spec past_end = {NULL, NULL, 0, 1};
  write_weights(folder, &past_end);
  expect_open_failure("weights header length past the end", folder,
                      MOE_ERROR_FORMAT, path, "exceeds the file size");

  make_folder(folder, sizeof(folder), "empty-weights");
  join(path, sizeof(path), folder, "weights.safetensors");
  write_bytes(path, "", 0);
  expect_open_failure("empty weights file", folder, MOE_ERROR_FORMAT, path,
                      "too short");

  make_folder(folder, sizeof(folder), "weights-not-json");
  join(path, sizeof(path), folder, "weights.safetensors");
  write_bytes(path, "\x08\0\0\0\0\0\0\0{\"a\":   ", 16);
  expect_open_failure("weights header not JSON", folder, MOE_ERROR_FORMAT, path,
                      "header is not valid JSON");

  /* Null arguments. */
  moe_model *model = (moe_model *)&model;
  moe_status status = moe_model_open(NULL, &model);
  check(status == MOE_ERROR_INVALID_ARGUMENT && model == NULL &&
            contains(moe_last_error(), "folder"),
        "open: null folder", "status %d, message '%s'", (int)status,
        moe_last_error());
  make_folder(folder, sizeof(folder), "null-out");
  status = moe_model_open(folder, NULL);
  check(status == MOE_ERROR_INVALID_ARGUMENT &&
            contains(moe_last_error(), "model"),
        "open: null out-parameter", "status %d, message '%s'", (int)status,
        moe_last_error());
  status = moe_model_open("", &model);
  check(status == MOE_ERROR_INVALID_ARGUMENT && model == NULL,
        "open: empty folder name", "status %d, message '%s'", (int)status,
        moe_last_error());
}

/*===----------------------------------------------------------------------===*
 * Running layers
 *===----------------------------------------------------------------------===*/

static void expect_run_failure(const char *name, moe_model *model,
                               int32_t layer, const void *hidden,
                               moe_dtype dtype, int64_t tokens,
                               int64_t hidden_size, float *output,
                               moe_status expected, const char *needle) {
  moe_status status = moe_layer_run(model, layer, hidden, dtype, tokens,
                                    hidden_size, output, NULL, NULL);
  const char *message = moe_last_error();
  if (check(status == expected && contains(message, needle), name,
            "status %d (expected %d), message '%s' (expected to contain '%s')",
            (int)status, (int)expected, message, needle))
    printf("    %s\n", message);
}

static void test_run(moe_model *model, const char *folder) {
  char why[512] = "";
  int32_t count = -1;
  moe_status status = moe_model_num_layers(model, &count);
  check(status == MOE_OK && count == 2, "num_layers", "status %d, count %d",
        (int)status, (int)count);

  const layer_desc *descs[2] = {&kLayerA, &kLayerB};
  for (int i = 0; i < 2; ++i) {
    moe_layer_info info;
    memset(&info, 0xff, sizeof(info));
    status = moe_model_layer_info(model, i, &info);
    char name[64];
    snprintf(name, sizeof(name), "layer_info(%d)", i);
    check(status == MOE_OK && info.layer == descs[i]->layer &&
              info.hidden_size == descs[i]->hidden &&
              info.num_experts == descs[i]->experts &&
              info.top_k == descs[i]->top_k,
          name, "status %d, info {%d, %lld, %d, %d}", (int)status,
          (int)info.layer, (long long)info.hidden_size, (int)info.num_experts,
          (int)info.top_k);
  }

  struct {
    const char *name;
    const layer_desc *layer;
    moe_dtype dtype;
    int64_t tokens;
    int ids, weights;
  } runs[] = {
      {"run layer 1, f32, 3 tokens, with topk", &kLayerA, MOE_DTYPE_F32, 3, 1,
       1},
      {"run layer 1, bf16, 3 tokens, with topk", &kLayerA, MOE_DTYPE_BF16, 3, 1,
       1},
      {"run layer 3, f32, 5 tokens, with topk", &kLayerB, MOE_DTYPE_F32, 5, 1,
       1},
      {"run layer 3, bf16, 1 token, with topk", &kLayerB, MOE_DTYPE_BF16, 1, 1,
       1},
      {"run layer 1, f32, null topk pointers", &kLayerA, MOE_DTYPE_F32, 4, 0,
       0},
      {"run layer 3, bf16, null topk pointers", &kLayerB, MOE_DTYPE_BF16, 7, 0,
       0},
      {"run layer 1, null topk_ids only", &kLayerA, MOE_DTYPE_F32, 2, 0, 1},
      {"run layer 3, null topk_weights only", &kLayerB, MOE_DTYPE_F32, 2, 1, 0},
      {"run layer 3, f32, 1000 tokens", &kLayerB, MOE_DTYPE_F32, 1000, 1, 1},
  };
  for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); ++i) {
    why[0] = 0;
    int bad =
        run_and_compare(model, runs[i].layer, runs[i].dtype, runs[i].tokens,
                        (int)i, runs[i].ids, runs[i].weights, why, sizeof(why));
    check(!bad, runs[i].name, "%s", why);
  }

  /* Argument errors. */
  float hidden[2 * FAKE_B_HIDDEN] = {0};
  float output[2 * FAKE_B_HIDDEN + 1];
  expect_run_failure("run: null model", NULL, FAKE_A_LAYER, hidden,
                     MOE_DTYPE_F32, 1, FAKE_A_HIDDEN, output,
                     MOE_ERROR_INVALID_ARGUMENT, "model");
  expect_run_failure("run: null hidden", model, FAKE_A_LAYER, NULL,
                     MOE_DTYPE_F32, 1, FAKE_A_HIDDEN, output,
                     MOE_ERROR_INVALID_ARGUMENT, "hidden");
  expect_run_failure("run: null output", model, FAKE_A_LAYER, hidden,
                     MOE_DTYPE_F32, 1, FAKE_A_HIDDEN, NULL,
                     MOE_ERROR_INVALID_ARGUMENT, "output");
  expect_run_failure("run: tokens = 0", model, FAKE_A_LAYER, hidden,
                     MOE_DTYPE_F32, 0, FAKE_A_HIDDEN, output,
                     MOE_ERROR_INVALID_ARGUMENT, "tokens");
  expect_run_failure("run: tokens < 0", model, FAKE_A_LAYER, hidden,
                     MOE_DTYPE_F32, -3, FAKE_A_HIDDEN, output,
                     MOE_ERROR_INVALID_ARGUMENT, "tokens");
  expect_run_failure("run: tokens x hidden overflows", model, FAKE_A_LAYER,
                     hidden, MOE_DTYPE_F32, INT64_MAX / 2, FAKE_A_HIDDEN,
                     output, MOE_ERROR_INVALID_ARGUMENT, "overflows");
  expect_run_failure("run: dtype F16", model, FAKE_A_LAYER, hidden,
                     MOE_DTYPE_F16, 1, FAKE_A_HIDDEN, output,
                     MOE_ERROR_INVALID_ARGUMENT, "dtype");
  expect_run_failure("run: dtype INVALID", model, FAKE_A_LAYER, hidden,
                     MOE_DTYPE_INVALID, 1, FAKE_A_HIDDEN, output,
                     MOE_ERROR_INVALID_ARGUMENT, "dtype");
  expect_run_failure("run: dtype out of the enum", model, FAKE_A_LAYER, hidden,
                     (moe_dtype)999, 1, FAKE_A_HIDDEN, output,
                     MOE_ERROR_INVALID_ARGUMENT, "dtype 999");
  expect_run_failure("run: unknown layer", model, 2, hidden, MOE_DTYPE_F32, 1,
                     FAKE_A_HIDDEN, output, MOE_ERROR_UNKNOWN_LAYER, "layer 2");
  expect_run_failure("run: unknown layer names the folder", model, -1, hidden,
                     MOE_DTYPE_F32, 1, FAKE_A_HIDDEN, output,
                     MOE_ERROR_UNKNOWN_LAYER, folder);
  expect_run_failure("run: hidden size mismatch", model, FAKE_A_LAYER, hidden,
                     MOE_DTYPE_F32, 1, FAKE_B_HIDDEN, output, MOE_ERROR_SHAPE,
                     "hidden_size");
  expect_run_failure("run: misaligned output", model, FAKE_A_LAYER, hidden,
                     MOE_DTYPE_F32, 1, FAKE_A_HIDDEN,
                     (float *)((char *)output + 1), MOE_ERROR_INVALID_ARGUMENT,
                     "output");

  /* A bf16 input need not be 4-byte aligned. */
  uint16_t hidden16[FAKE_A_HIDDEN + 1];
  for (int h = 0; h < FAKE_A_HIDDEN + 1; ++h)
    hidden16[h] = to_bf16(hidden_value(h, 0));
  status = moe_layer_run(model, FAKE_A_LAYER, hidden16 + 1, MOE_DTYPE_BF16, 1,
                         FAKE_A_HIDDEN, output, NULL, NULL);
  int exact = status == MOE_OK;
  for (int h = 0; exact && h < FAKE_A_HIDDEN; ++h)
    exact =
        output[h] == hidden_value(h + 1, 0) * kGoodWeights[0] + kGoodWeights[1];
  check(exact, "run: bf16 input at an odd 2-byte address", "status %d: %s",
        (int)status, moe_last_error());

  /* Successes leave the last error alone (documented in runtime/README.md). */
  moe_layer_run(model, 2, hidden, MOE_DTYPE_F32, 1, FAKE_A_HIDDEN, output, NULL,
                NULL);
  status = moe_layer_run(model, FAKE_A_LAYER, hidden, MOE_DTYPE_F32, 1,
                         FAKE_A_HIDDEN, output, NULL, NULL);
  check(status == MOE_OK && contains(moe_last_error(), "no layer 2"),
        "a success leaves moe_last_error unchanged", "status %d, message '%s'",
        (int)status, moe_last_error());

  /* Layer info and count errors. */
  moe_layer_info info;
  status = moe_model_layer_info(model, 2, &info);
  check(status == MOE_ERROR_INVALID_ARGUMENT &&
            contains(moe_last_error(), "i = 2"),
        "layer_info: index = count", "status %d, message '%s'", (int)status,
        moe_last_error());
  status = moe_model_layer_info(model, -1, &info);
  check(status == MOE_ERROR_INVALID_ARGUMENT &&
            contains(moe_last_error(), "i = -1"),
        "layer_info: index < 0", "status %d, message '%s'", (int)status,
        moe_last_error());
  status = moe_model_layer_info(model, 0, NULL);
  check(status == MOE_ERROR_INVALID_ARGUMENT &&
            contains(moe_last_error(), "info"),
        "layer_info: null info", "status %d, message '%s'", (int)status,
        moe_last_error());
  status = moe_model_layer_info(NULL, 0, &info);
  check(status == MOE_ERROR_INVALID_ARGUMENT &&
            contains(moe_last_error(), "model"),
        "layer_info: null model", "status %d, message '%s'", (int)status,
        moe_last_error());
  status = moe_model_num_layers(model, NULL);
  check(status == MOE_ERROR_INVALID_ARGUMENT &&
            contains(moe_last_error(), "count"),
        "num_layers: null count", "status %d, message '%s'", (int)status,
        moe_last_error());
  status = moe_model_num_layers(NULL, &count);
  check(status == MOE_ERROR_INVALID_ARGUMENT &&
            contains(moe_last_error(), "model"),
        "num_layers: null model", "status %d, message '%s'", (int)status,
        moe_last_error());
}

/*===----------------------------------------------------------------------===*
 * Threads
 *===----------------------------------------------------------------------===*/

static void *work(void *argument) {
  worker *self = (worker *)argument;
  /* A new thread starts with no error, and its errors are its own. */
  if (moe_last_error()[0] != '\0') {
    self->failures++;
    snprintf(self->why, sizeof(self->why), "fresh thread sees '%s'",
             moe_last_error());
  }
  for (int i = 0; i < 200; ++i) {
    const layer_desc *layer = (i + self->index) % 2 ? &kLayerB : &kLayerA;
    moe_dtype dtype = (i / 2) % 2 ? MOE_DTYPE_BF16 : MOE_DTYPE_F32;
    int64_t tokens = 1 + (i * 7 + self->index) % 16;
    if (run_and_compare(self->model, layer, dtype, tokens,
                        self->index * 1000 + i, i % 3 != 0, i % 5 != 0,
                        self->why, sizeof(self->why))) {
      self->failures++;
      break;
    }
    if (i % 50 == 0) {
      float out[FAKE_A_HIDDEN];
      float in[FAKE_A_HIDDEN] = {0};
      int32_t bad_layer = 100 + self->index;
      char expected[64];
      snprintf(expected, sizeof(expected), "no layer %d ", (int)bad_layer);
      if (moe_layer_run(self->model, bad_layer, in, MOE_DTYPE_F32, 1,
                        FAKE_A_HIDDEN, out, NULL,
                        NULL) != MOE_ERROR_UNKNOWN_LAYER ||
          !contains(moe_last_error(), expected)) {
        self->failures++;
        snprintf(self->why, sizeof(self->why), "thread %d sees error '%s'",
                 self->index, moe_last_error());
        break;
      }
    }
  }
  return NULL;
}

static void test_threads(moe_model *model) {
  run_workers(model, work, 4, "4 threads x 200 runs on one model");
}

/*===----------------------------------------------------------------------===*
 * main
 *===----------------------------------------------------------------------===*/

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s FAKE_MODEL_SO FAKE_MODEL_NOHASH_SO\n", argv[0]);
    return 2;
  }
  fake_lib = argv[1];
  fake_lib_nohash = argv[2];
  make_temp_root(root, sizeof(root), "moe-runtime-test");

  /* The hash helpers first: everything else relies on them. */
  char hex[65];
  sha256_hex("abc", 3, hex);
  check(
      strcmp(
          hex,
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") ==
          0,
      "sha256(\"abc\")", "got %s", hex);
  char thousand[1000];
  memset(thousand, 'a', sizeof(thousand));
  sha256_hex(thousand, sizeof(thousand), hex);
  check(
      strcmp(
          hex,
          "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3") ==
          0,
      "sha256(1000 x 'a')", "got %s", hex);
  uint8_t data[16];
  encode_weights(kGoodWeights, data);
  sha256_hex(data, sizeof(data), good_hash);
  check(strcmp(good_hash, FAKE_WEIGHTS_SHA256) == 0, "fixture hash",
        "the data buffer hashes to %s, the fixture library says %s", good_hash,
        FAKE_WEIGHTS_SHA256);
  snprintf(good_hash_json, sizeof(good_hash_json), "\"%s\"", good_hash);
  snprintf(
      good_layers, sizeof(good_layers),
      "[{\"layer\": %d, \"entry\": \"%s\", \"hidden_size\": %d, "
      "\"num_experts\": %d, "
      "\"top_k\": %d}, {\"layer\": %d, \"entry\": \"%s\", \"hidden_size\": %d, "
      "\"num_experts\": %d, \"top_k\": %d}]",
      FAKE_A_LAYER, FAKE_A_ENTRY, FAKE_A_HIDDEN, FAKE_A_EXPERTS, FAKE_A_TOPK,
      FAKE_B_LAYER, FAKE_B_ENTRY, FAKE_B_HIDDEN, FAKE_B_EXPERTS, FAKE_B_TOPK);

  check(strcmp(moe_last_error(), "") == 0, "no error before any call", "'%s'",
        moe_last_error());
  int strings_ok = 1;
  for (int s = MOE_OK; s <= MOE_ERROR_DEVICE; ++s)
    strings_ok &= moe_status_string((moe_status)s) != NULL &&
                  moe_status_string((moe_status)s)[0] != '\0';
  strings_ok &= moe_status_string((moe_status)1234) != NULL;
  check(strings_ok, "moe_status_string", "a status has no description");
  moe_model_close(NULL);
  check(1, "close(NULL)", "%s", "");

  /* A good folder. */
  char folder[4096];
  make_folder(folder, sizeof(folder), "good");
  moe_model *model = NULL;
  moe_status status = moe_model_open(folder, &model);
  if (check(status == MOE_OK && model != NULL, "open a valid folder",
            "status %d: %s", (int)status, moe_last_error())) {
    test_run(model, folder);
    test_threads(model);

    /* A second model of the same folder shares the loaded library; closing one
     * must not break the other. */
    moe_model *second = NULL;
    char trailing[4200];
    snprintf(trailing, sizeof(trailing), "%s/", folder);
    status = moe_model_open(trailing, &second);
    check(status == MOE_OK && second != NULL,
          "open the same folder again (trailing '/')", "status %d: %s",
          (int)status, moe_last_error());
    if (second) {
      moe_model_close(model);
      model = NULL;
      char why[512] = "";
      check(!run_and_compare(second, &kLayerA, MOE_DTYPE_F32, 2, 5, 1, 1, why,
                             sizeof(why)),
            "run after closing the other model of the folder", "%s", why);
      moe_model_close(second);
    }
    moe_model_close(model);
  }

  /* A relative folder name. */
  char cwd[4096];
  if (getcwd(cwd, sizeof(cwd)) && chdir(root) == 0) {
    model = NULL;
    status = moe_model_open(strrchr(folder, '/') + 1, &model);
    check(status == MOE_OK, "open a relative folder name", "status %d: %s",
          (int)status, moe_last_error());
    moe_model_close(model);
    if (chdir(cwd) != 0)
      die(cwd);
  }

  /* CPU features the runtime cannot test, and disabled ones, do not stop a
   * folder. */
  make_folder(folder, sizeof(folder), "cpu-features");
  manifest_spec manifest = default_manifest();
  manifest.extra =
      "\"cpu\": \"generic\", \"cpu_features\": \"+no-such-feature,-avx2,,+\",";
  write_manifest(folder, &manifest);
  model = NULL;
  status = moe_model_open(folder, &model);
  check(status == MOE_OK, "unknown and disabled cpu_features are ignored",
        "status %d: %s", (int)status, moe_last_error());
  moe_model_close(model);

  test_open_errors();

  remove_temp_root(root);
  return report_summary();
}
