/* cuda_runtime_test.c - tests of libmoe_runtime's CUDA backend through
 * include/moe/runtime.h, on any machine: the CUDA driver is the test fake
 * fake_cuda.c (loaded through MOE_CUDA_DRIVER), the folder's host library the
 * fixture fake_cuda_model.c.
 *
 * Usage: cuda_runtime_test FAKE_CUDA_DRIVER FAKE_CUDA_MODEL_SO FAKE_MODEL_SO
 *                          FAKE_CUDA_DRIVER_OLD
 *        cuda_runtime_test --write-folder DIR FAKE_CUDA_MODEL_SO
 *
 * The first form writes cuda folders (manifest.json, the weights of
 * fake_model.h, the fixture library) and cpu folders into a temporary
 * directory, opens them on devices, runs layers and checks the fake driver's
 * log (MOE_FAKE_CUDA_LOG) for the calls the runtime made, the values copied
 * back, and that closing a model (also after failures) released every driver
 * object. Each check prints one line; the last line is the summary. The second
 * form writes one valid cuda folder to DIR, for the moe-run tests. */
#define _GNU_SOURCE

#include "moe/runtime.h"

#include "fake_cuda_model.h"
#include "fake_model.h"
#include "sha256.h"
#include "test_support.h"

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*===----------------------------------------------------------------------===*
 * Setup
 *===----------------------------------------------------------------------===*/

static const char *fake_driver; /* argv[1]: the fake libcuda.so.1 */
/* argv[4]: the fake built without cuTensorMapEncodeTiled */
static const char *fake_driver_old;
static const char *fake_cuda_so; /* argv[2]: the cuda folder's host library */
static const char *fake_cpu_so;  /* argv[3]: a cpu folder's library */
static char root[4096];
static char log_path[4200];
static char good_hash_json[80];
/* fake_cuda.c's report of unreleased objects. */
static int (*fake_live)(char *out, size_t size);

static const char *kFakeVariables[] = {
    "MOE_FAKE_CUDA_NO_DEVICE",  "MOE_FAKE_CUDA_DEVICES",
    "MOE_FAKE_CUDA_CC",         "MOE_FAKE_CUDA_FAIL",
    "MOE_FAKE_CUDA_FAIL_CODE",  "MOE_FAKE_CUDA_MODEL_BAD",
    "MOE_FAKE_CUDA_FAIL_BYTES", "MOE_FAKE_CUDA_TENSOR_MAPS"};

/* The default environment: the fake driver, logging, no failures. */
static void reset_env(void) {
  for (size_t i = 0; i < sizeof(kFakeVariables) / sizeof(kFakeVariables[0]);
       ++i)
    unsetenv(kFakeVariables[i]);
  setenv("MOE_CUDA_DRIVER", fake_driver, 1);
  setenv("MOE_FAKE_CUDA_LOG", log_path, 1);
}

static void clear_log(void) { write_bytes(log_path, "", 0); }

/* The log so far (malloc'd; "" if none). */
static char *read_log(void) {
  FILE *file = fopen(log_path, "rb");
  if (!file)
    return strdup("");
  char *text = NULL;
  size_t size = 0;
  FILE *memory = open_memstream(&text, &size);
  char buffer[4096];
  size_t got;
  while ((got = fread(buffer, 1, sizeof(buffer), file)) > 0)
    fwrite(buffer, 1, got, memory);
  fclose(file);
  fclose(memory);
  return text;
}

/* Lines of `log` starting with `prefix`. */
static int count_lines(const char *log, const char *prefix) {
  int count = 0;
  size_t length = strlen(prefix);
  for (const char *line = log; *line;) {
    if (strncmp(line, prefix, length) == 0)
      ++count;
    const char *end = strchr(line, '\n');
    if (!end)
      break;
    line = end + 1;
  }
  return count;
}

/* The `index`-th line of `log` starting with `prefix`, into `out`. */
static const char *nth_line(const char *log, const char *prefix, int index,
                            char *out, size_t size) {
  size_t length = strlen(prefix);
  out[0] = '\0';
  for (const char *line = log; *line;) {
    const char *end = strchr(line, '\n');
    size_t line_length = end ? (size_t)(end - line) : strlen(line);
    if (strncmp(line, prefix, length) == 0 && index-- == 0) {
      snprintf(out, size, "%.*s", (int)line_length, line);
      return out;
    }
    if (!end)
      break;
    line = end + 1;
  }
  return out;
}

/* Checks that the fake driver holds no object the runtime acquired. */
static void expect_released(const char *name) {
  char what[256];
  int live = fake_live ? fake_live(what, sizeof(what)) : -1;
  char label[256];
  snprintf(label, sizeof(label), "%s: every driver object released", name);
  check(live == 0, label, "%s", fake_live ? what : "fake_cuda_live missing");
}

/*===----------------------------------------------------------------------===*
 * Folders
 *===----------------------------------------------------------------------===*/

static const char *kKernelsA[] = FAKE_CUDA_A_KERNEL_NAMES;
static const char *kKernelsB[] = FAKE_CUDA_B_KERNEL_NAMES;
static const char *kKernelsC[] = FAKE_CUDA_C_KERNEL_NAMES;

static char good_cuda_layers[1024];
static char good_cpu_layers[512];

/* The members of a cuda manifest that tests vary; NULL leaves one out. */
typedef struct {
  const char *target;
  const char *cuda_arch;
  const char *kernels;
  const char *layers;
} cuda_manifest;

static cuda_manifest default_cuda_manifest(void) {
  cuda_manifest m = {"\"cuda\"", "\"" FAKE_CUDA_ARCH "\"", "\"kernels\"",
                     good_cuda_layers};
  return m;
}

static void write_manifest(const char *folder, const cuda_manifest *m) {
  char text[8192];
  size_t length = (size_t)snprintf(
      text, sizeof(text),
      "{\"format\": \"moec-compiled\", \"format_version\": 1, "
      "\"compiler\": \"moec 0.1.0\", \"model_type\": \"mixtral\", "
      "\"cpu\": \"x86-64\", \"cpu_features\": \"\", "
      "\"library\": \"libmoe_model.so\", \"header\": \"moe_model.h\", "
      "\"weights\": \"weights.safetensors\", \"ir\": \"final.mlir\", "
      "\"weights_hash\": %s",
      good_hash_json);
  const char *names[] = {"target", "cuda_arch", "kernels", "layers"};
  const char *values[] = {m->target, m->cuda_arch, m->kernels, m->layers};
  for (size_t i = 0; i < 4; ++i)
    if (values[i])
      length += (size_t)snprintf(text + length, sizeof(text) - length,
                                 ", \"%s\": %s", names[i], values[i]);
  length += (size_t)snprintf(text + length, sizeof(text) - length, "}\n");
  char path[4200];
  join(path, sizeof(path), folder, "manifest.json");
  write_bytes(path, text, length);
}

/* A fresh folder under root named after `name`, with `m`'s manifest, the
 * weights and `library`. */
static void make_folder_with(char *out, size_t size, const char *name,
                             const cuda_manifest *m, const char *library) {
  static int counter;
  char safe[128];
  int length = snprintf(safe, sizeof(safe), "%02d-", ++counter);
  for (const char *c = name; *c && length < (int)sizeof(safe) - 1; ++c)
    safe[length++] = (isalnum((unsigned char)*c) || *c == '_') ? *c : '-';
  safe[length] = '\0';
  join(out, size, root, safe);
  if (mkdir(out, 0700) != 0)
    die(out);
  write_manifest(out, m);
  weights_spec weights = {0};
  write_weights(out, &weights);
  char path[4200];
  join(path, sizeof(path), out, "libmoe_model.so");
  copy_file(library, path);
}

static void make_cuda_folder(char *out, size_t size, const char *name) {
  cuda_manifest m = default_cuda_manifest();
  make_folder_with(out, size, name, &m, fake_cuda_so);
}

static void make_cpu_folder(char *out, size_t size, const char *name) {
  cuda_manifest m = {"\"cpu\"", NULL, NULL, good_cpu_layers};
  make_folder_with(out, size, name, &m, fake_cpu_so);
}

/*===----------------------------------------------------------------------===*
 * Opening
 *===----------------------------------------------------------------------===*/

/* Opening `folder` on `device` (moe_model_open when `device` is "default")
 * must fail with `expected`, leave the model null, say `needle` and `needle2`
 * (when given) and release every driver object. */
static void expect_open_failure(const char *name, const char *folder,
                                const char *device, moe_status expected,
                                const char *needle, const char *needle2) {
  moe_model *model = (moe_model *)&model; /* not null: must be reset */
  moe_status status = device && strcmp(device, "default") == 0
                          ? moe_model_open(folder, &model)
                          : moe_model_open_device(folder, device, &model);
  const char *message = moe_last_error();
  int ok = status == expected && model == NULL && contains(message, needle) &&
           (!needle2 || contains(message, needle2));
  if (check(ok, name,
            "status %d (expected %d), model %p, message '%s' (expected to "
            "contain '%s'%s%s)",
            (int)status, (int)expected, (void *)model, message, needle,
            needle2 ? " and " : "", needle2 ? needle2 : ""))
    printf("    %s\n", message);
  if (status == MOE_OK && model && model != (moe_model *)&model)
    moe_model_close(model);
  if (fake_live)
    expect_released(name);
}

/* Opens `folder` on `device`; NULL (and a FAIL line) if it does not open. */
static moe_model *open_ok(const char *name, const char *folder,
                          const char *device) {
  moe_model *model = NULL;
  moe_status status = moe_model_open_device(folder, device, &model);
  check(status == MOE_OK && model, name, "status %d (%s): %s", (int)status,
        moe_status_string(status), moe_last_error());
  return status == MOE_OK ? model : NULL;
}

static void close_and_check(const char *name, moe_model *model) {
  moe_model_close(model);
  expect_released(name);
}

/*===----------------------------------------------------------------------===*
 * Running
 *===----------------------------------------------------------------------===*/

typedef struct {
  int32_t layer;
  int64_t hidden;
  int32_t top_k;
  int which; /* FAKE_CUDA_LAYER_A, _B or _C */
} layer_desc;

static const layer_desc kA = {FAKE_A_LAYER, FAKE_A_HIDDEN, FAKE_A_TOPK,
                              FAKE_CUDA_LAYER_A};
static const layer_desc kB = {FAKE_B_LAYER, FAKE_B_HIDDEN, FAKE_B_TOPK,
                              FAKE_CUDA_LAYER_B};
static const layer_desc kC = {FAKE_C_LAYER, FAKE_C_HIDDEN, FAKE_C_TOPK,
                              FAKE_CUDA_LAYER_C};

static float hidden_value(int64_t index, int seed) {
  return (float)((index + seed) % 17) * 0.25f - 2.0f; /* exact in bf16 */
}

/* Runs `layer` on `tokens` rows and checks what the fake kernels write:
 * output = 1 + tokens everywhere; topk_ids[i] = i and topk_weights[i] =
 * hidden[i] when asked for (and untouched when not). Returns the status (a
 * wrong value is reported in `why` with MOE_OK returned as -1). */
static int run_layer(moe_model *model, const layer_desc *layer, moe_dtype dtype,
                     int64_t tokens, int want_ids, int want_weights, char *why,
                     size_t why_size) {
  char number[32];
  snprintf(number, sizeof(number), "%lld", (long long)layer->hidden);
  setenv("MOE_FAKE_CUDA_HIDDEN", number, 1);
  snprintf(number, sizeof(number), "%d", (int)layer->top_k);
  setenv("MOE_FAKE_CUDA_TOPK", number, 1);
  size_t elements = (size_t)(tokens * layer->hidden);
  size_t routed = (size_t)(tokens * layer->top_k);
  float *hidden = malloc(elements * sizeof(float));
  uint16_t *hidden16 = malloc(elements * sizeof(uint16_t));
  float *output = malloc(elements * sizeof(float));
  int32_t *ids = malloc(routed * sizeof(int32_t));
  float *weights = malloc(routed * sizeof(float));
  int result = -1;
  if (!hidden || !hidden16 || !output || !ids || !weights) {
    snprintf(why, why_size, "out of memory");
    goto done;
  }
  for (size_t i = 0; i < elements; ++i) {
    hidden[i] = hidden_value((int64_t)i, (int)tokens);
    uint32_t bits;
    memcpy(&bits, &hidden[i], sizeof(bits));
    hidden16[i] = (uint16_t)(bits >> 16);
    output[i] = -12345.0f;
  }
  for (size_t i = 0; i < routed; ++i) {
    ids[i] = -7;
    weights[i] = -7.0f;
  }
  moe_status status = moe_layer_run(
      model, layer->layer,
      dtype == MOE_DTYPE_BF16 ? (const void *)hidden16 : (const void *)hidden,
      dtype, tokens, layer->hidden, output, want_ids ? ids : NULL,
      want_weights ? weights : NULL);
  if (status != MOE_OK) {
    snprintf(why, why_size, "status %d (%s): %s", (int)status,
             moe_status_string(status), moe_last_error());
    result = (int)status;
    goto done;
  }
  for (size_t i = 0; i < elements; ++i)
    if (output[i] != 1.0f + (float)tokens) {
      snprintf(why, why_size, "output[%zu] = %g, expected %g", i,
               (double)output[i], (double)(1.0f + (float)tokens));
      goto done;
    }
  for (size_t i = 0; i < routed; ++i) {
    int32_t id = want_ids ? (int32_t)i : -7;
    float weight = want_weights ? hidden[i] : -7.0f;
    if (ids[i] != id || weights[i] != weight) {
      snprintf(why, why_size, "topk[%zu] = (%d, %g), expected (%d, %g)", i,
               (int)ids[i], (double)weights[i], (int)id, (double)weight);
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

/* Runs and expects success and the right values. */
static int run_ok(const char *name, moe_model *model, const layer_desc *layer,
                  moe_dtype dtype, int64_t tokens, int want_ids,
                  int want_weights) {
  char why[1024] = "";
  int result = run_layer(model, layer, dtype, tokens, want_ids, want_weights,
                         why, sizeof(why));
  return check(result == 0, name, "%s", why);
}

/* Runs and expects `expected` with a message saying `needle` and `needle2`. */
static void expect_run_failure(const char *name, moe_model *model,
                               const layer_desc *layer, int64_t tokens,
                               moe_status expected, const char *needle,
                               const char *needle2) {
  char why[1024] = "";
  int result =
      run_layer(model, layer, MOE_DTYPE_F32, tokens, 1, 1, why, sizeof(why));
  const char *message = moe_last_error();
  if (check(result == (int)expected && contains(message, needle) &&
                (!needle2 || contains(message, needle2)),
            name, "got %d (%s), expected status %d saying '%s'%s%s", result,
            why, (int)expected, needle, needle2 ? " and " : "",
            needle2 ? needle2 : ""))
    printf("    %s\n", message);
}

/* The "launch ..." lines the fake logs for `layer`'s table at `tokens`. */
static void expected_launch(const layer_desc *layer, int64_t tokens, int index,
                            char *out, size_t size) {
  fake_cuda_launch table[3];
  fake_cuda_table(layer->which, tokens, table);
  const fake_cuda_launch *r = &table[index];
  const char *kernel = layer->which == FAKE_CUDA_LAYER_C ? kKernelsC[r->kernel]
                       : layer->which == FAKE_CUDA_LAYER_B
                           ? kKernelsB[r->kernel]
                           : kKernelsA[r->kernel];
  snprintf(out, size, "%s grid=%d,%d,%d block=%d,%d,%d smem=%d", kernel,
           r->grid[0], r->grid[1], r->grid[2], r->block[0], r->block[1],
           r->block[2], r->shared_bytes);
}

/* The log's lines starting with `prefix` (e.g. "launch ") are exactly
 * `layer`'s table at `tokens`, in order, `repeats` times over, each line
 * ending in `suffix` (e.g. " on stream 2"). */
static void expect_launch_lines_on(const char *name, const char *log,
                                   const char *prefix, const layer_desc *layer,
                                   int64_t tokens, int repeats,
                                   const char *suffix) {
  fake_cuda_launch table[3];
  int count = fake_cuda_table(layer->which, tokens, table) * repeats;
  int found = count_lines(log, prefix);
  int ok = found == count;
  char want[320] = "", got[300] = "", line[300];
  for (int i = 0; ok && i < count; ++i) {
    char expected[256];
    expected_launch(layer, tokens, i % (count / repeats), expected,
                    sizeof(expected));
    snprintf(want, sizeof(want), "%s%s%s", prefix, expected, suffix);
    nth_line(log, prefix, i, line, sizeof(line));
    snprintf(got, sizeof(got), "%s", line);
    ok = strcmp(want, got) == 0;
  }
  check(ok, name,
        "%d '%s' lines (expected %d); expected '%s', got '%s'; log:\n%s", found,
        prefix, count, want, got, log);
}

static void expect_launch_lines(const char *name, const char *log,
                                const char *prefix, const layer_desc *layer,
                                int64_t tokens, int repeats) {
  expect_launch_lines_on(name, log, prefix, layer, tokens, repeats, "");
}

/*===----------------------------------------------------------------------===*
 * The tests
 *===----------------------------------------------------------------------===*/

static void test_devices_and_targets(void) {
  char cuda[4096], cpu[4096];
  make_cuda_folder(cuda, sizeof(cuda), "device-strings");
  make_cpu_folder(cpu, sizeof(cpu), "cpu-folder");

  /* Bad device strings are refused before anything is read or loaded. */
  setenv("MOE_CUDA_DRIVER", "/nonexistent/libcuda.so.1", 1);
  const char *bad[] = {"cuda",    "cuda:",   "cuda:-1",         "cuda:x",
                       "gpu",     "CPU",     "cuda:0 ",         " cuda:0",
                       "cuda:+1", "cuda:1x", "cuda:1234567890", "",
                       "cuda0",   "cpu:0"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
    char name[96], needle[64];
    snprintf(name, sizeof(name), "device '%s' is invalid", bad[i]);
    snprintf(needle, sizeof(needle), "device '%s' is not valid", bad[i]);
    expect_open_failure(name, cuda, bad[i], MOE_ERROR_INVALID_ARGUMENT, needle,
                        "'cuda:N'");
  }

  /* A folder runs on its own kind of device only; no driver is needed to
   * find out. */
  expect_open_failure("cpu folder on cuda:0", cpu, "cuda:0",
                      MOE_ERROR_UNSUPPORTED, cpu,
                      "target 'cpu', which cannot run on device 'cuda:0'");
  expect_open_failure("cpu folder on cuda:3", cpu, "cuda:3",
                      MOE_ERROR_UNSUPPORTED, "device 'cuda:3'", NULL);
  expect_open_failure("cuda folder on cpu", cuda, "cpu", MOE_ERROR_UNSUPPORTED,
                      cuda,
                      "target 'cuda' (sm_90), which cannot run on "
                      "device 'cpu'");

  /* A cpu folder opens on "cpu", on its default and with a null device. */
  const char *cpu_devices[] = {"cpu", "default", NULL};
  for (int i = 0; i < 3; ++i) {
    moe_model *model = NULL;
    moe_status status =
        cpu_devices[i] && strcmp(cpu_devices[i], "default") == 0
            ? moe_model_open(cpu, &model)
            : moe_model_open_device(cpu, cpu_devices[i], &model);
    float hidden[FAKE_A_HIDDEN] = {1, 2, 3, 4}, output[FAKE_A_HIDDEN];
    static const float w[4] = FAKE_WEIGHTS;
    if (status == MOE_OK)
      status = moe_layer_run(model, FAKE_A_LAYER, hidden, MOE_DTYPE_F32, 1,
                             FAKE_A_HIDDEN, output, NULL, NULL);
    char name[96];
    snprintf(name, sizeof(name), "cpu folder on device %s runs on the cpu",
             cpu_devices[i] ? cpu_devices[i] : "NULL");
    check(status == MOE_OK && output[3] == 4 * w[0] + w[1], name,
          "status %d: %s", (int)status, moe_last_error());
    moe_model_close(model);
  }

  /* Null arguments. */
  moe_model *model = (moe_model *)&model;
  moe_status status = moe_model_open_device(NULL, "cuda:0", &model);
  check(status == MOE_ERROR_INVALID_ARGUMENT && !model &&
            contains(moe_last_error(), "moe_model_open_device: folder"),
        "open_device: null folder", "status %d: %s", (int)status,
        moe_last_error());
  status = moe_model_open_device(cuda, "cuda:0", NULL);
  check(status == MOE_ERROR_INVALID_ARGUMENT &&
            contains(moe_last_error(), "model"),
        "open_device: null out-parameter", "status %d: %s", (int)status,
        moe_last_error());
}

static void expect_manifest_failure(const char *name, const cuda_manifest *m,
                                    moe_status expected, const char *needle) {
  char folder[4096];
  make_folder_with(folder, sizeof(folder), name, m, fake_cuda_so);
  expect_open_failure(name, folder, "cuda:0", expected, needle,
                      "manifest.json");
}

static void test_manifest(void) {
  cuda_manifest m;
  m = default_cuda_manifest();
  m.target = "\"rocm\"";
  expect_manifest_failure("target rocm", &m, MOE_ERROR_UNSUPPORTED,
                          "target 'rocm' is not supported");
  m = default_cuda_manifest();
  m.cuda_arch = NULL;
  expect_manifest_failure("missing cuda_arch", &m, MOE_ERROR_FORMAT,
                          "missing \"cuda_arch\"");
  const char *bad_arches[] = {"\"sm_8\"",   "\"sm_\"",    "\"compute_90\"",
                              "\"sm_90b\"", "\"sm_090\"", "\"sm_1000\"",
                              "\"SM_90\"",  "\"sm_90aa\""};
  for (size_t i = 0; i < sizeof(bad_arches) / sizeof(bad_arches[0]); ++i) {
    char name[64];
    snprintf(name, sizeof(name), "cuda_arch %s", bad_arches[i]);
    m = default_cuda_manifest();
    m.cuda_arch = bad_arches[i];
    expect_manifest_failure(name, &m, MOE_ERROR_FORMAT,
                            "not a CUDA architecture");
  }
  m = default_cuda_manifest();
  m.cuda_arch = "90";
  expect_manifest_failure("cuda_arch not a string", &m, MOE_ERROR_FORMAT,
                          "\"cuda_arch\" is not a string");
  m = default_cuda_manifest();
  m.kernels = "\"../kernels\"";
  expect_manifest_failure("kernels folder outside", &m, MOE_ERROR_FORMAT,
                          "\"kernels\" is '../kernels'");

  const char *layer_prefix =
      "[{\"layer\": 1, \"entry\": \"moe_layer_1\", \"hidden_size\": 4, "
      "\"num_experts\": 4, \"top_k\": 2";
  struct {
    const char *name, *kernels, *needle;
  } bad_kernels[] = {
      {"missing cuda_kernels", "", "missing \"cuda_kernels\""},
      {"cuda_kernels empty", ", \"cuda_kernels\": []", "not a non-empty array"},
      {"cuda_kernels a string", ", \"cuda_kernels\": \"moe_layer_1_route\"",
       "not a non-empty array"},
      {"cuda_kernels element not a name", ", \"cuda_kernels\": [\"a b\"]",
       "\"cuda_kernels\"[0] is \"a b\""},
      {"cuda_kernels element a number",
       ", \"cuda_kernels\": [\"moe_layer_1_route\", 7]",
       "\"cuda_kernels\"[1] is 7"},
  };
  for (size_t i = 0; i < sizeof(bad_kernels) / sizeof(bad_kernels[0]); ++i) {
    char layers[512];
    snprintf(layers, sizeof(layers), "%s%s}]", layer_prefix,
             bad_kernels[i].kernels);
    m = default_cuda_manifest();
    m.layers = layers;
    expect_manifest_failure(bad_kernels[i].name, &m, MOE_ERROR_FORMAT,
                            bad_kernels[i].needle);
  }

  /* What the library must hold. */
  char folder[4096], layers[512];
  snprintf(layers, sizeof(layers),
           "%s, \"cuda_kernels\": [\"moe_layer_1_route\", "
           "\"moe_layer_1_experts\", \"moe_layer_1_combine\", \"extra\"]}]",
           layer_prefix);
  m = default_cuda_manifest();
  m.layers = layers;
  make_folder_with(folder, sizeof(folder), "more-kernels-than-images", &m,
                   fake_cuda_so);
  expect_open_failure("a kernel without an image", folder, "cuda:0",
                      MOE_ERROR_FORMAT, "no symbol 'moe_layer_1_kernel_3_ptx'",
                      "kernel 3 'extra' of layer 1");

  m = default_cuda_manifest();
  make_folder_with(folder, sizeof(folder), "cpu-library", &m, fake_cpu_so);
  expect_open_failure("a cpu library in a cuda folder", folder, "cuda:0",
                      MOE_ERROR_FORMAT, "no symbol 'moe_layer_1_launches'",
                      "launch table of layer 1");

  /* Valid architectures this runtime has never heard of still open (their
   * cubins do not match the fake device: the PTX is loaded). */
  reset_env();
  const char *arches[] = {"\"sm_100a\"", "\"sm_120\"", "\"sm_75\""};
  for (int i = 0; i < 3; ++i) {
    m = default_cuda_manifest();
    m.cuda_arch = arches[i];
    make_folder_with(folder, sizeof(folder), "arch", &m, fake_cuda_so);
    char name[64];
    snprintf(name, sizeof(name), "cuda_arch %s opens", arches[i]);
    moe_model *model = open_ok(name, folder, "cuda:0");
    close_and_check(name, model);
  }
}

static void test_driver_loading(void) {
  char folder[4096], manifest[4200];
  make_cuda_folder(folder, sizeof(folder), "driver-loading");

  setenv("MOE_CUDA_DRIVER", "/nonexistent/libcuda.so.1", 1);
  expect_open_failure("no driver", folder, "cuda:0", MOE_ERROR_UNSUPPORTED,
                      "cannot load the CUDA driver /nonexistent/libcuda.so.1",
                      "No such file");
  expect_open_failure("no driver, default device", folder, "default",
                      MOE_ERROR_UNSUPPORTED, folder,
                      "cannot load the CUDA driver");
  join(manifest, sizeof(manifest), folder, "manifest.json");
  setenv("MOE_CUDA_DRIVER", manifest, 1);
  expect_open_failure("driver not a library", folder, "cuda:0",
                      MOE_ERROR_UNSUPPORTED, "cannot load the CUDA driver",
                      "manifest.json");
  setenv("MOE_CUDA_DRIVER", fake_cpu_so, 1);
  expect_open_failure("driver without cuInit", folder, "cuda:0",
                      MOE_ERROR_UNSUPPORTED, "has no symbol 'cuInit'",
                      fake_cpu_so);

  /* Before the fake driver first loads: a failed cuInit is not remembered. */
  reset_env();
  setenv("MOE_FAKE_CUDA_FAIL", "cuInit", 1);
  expect_open_failure("cuInit fails", folder, "cuda:0", MOE_ERROR_UNSUPPORTED,
                      "cuInit failed: CUDA_ERROR_INSUFFICIENT_DRIVER",
                      "CUDA driver version is insufficient");
  reset_env();

  /* From here on the fake driver is loaded: find its leak report. */
  void *handle = dlopen(fake_driver, RTLD_NOW | RTLD_LOCAL);
  if (handle)
    *(void **)&fake_live = dlsym(handle, "fake_cuda_live");
  check(fake_live != NULL, "the fake driver's fake_cuda_live", "%s", dlerror());

  setenv("MOE_FAKE_CUDA_NO_DEVICE", "1", 1);
  expect_open_failure("no device", folder, "cuda:0", MOE_ERROR_UNSUPPORTED,
                      "no CUDA device is present", folder);
  reset_env();
  expect_open_failure("ordinal out of range", folder, "cuda:1",
                      MOE_ERROR_INVALID_ARGUMENT, "there is no device cuda:1",
                      "1 CUDA device(s), cuda:0 to cuda:0");
  expect_open_failure("ordinal far out of range", folder, "cuda:999999999",
                      MOE_ERROR_INVALID_ARGUMENT, "no device cuda:999999999",
                      NULL);
  setenv("MOE_FAKE_CUDA_DEVICES", "2", 1);
  clear_log();
  moe_model *model = open_ok("open on cuda:1 of 2", folder, "cuda:1");
  char *log = read_log();
  check(count_lines(log, "context retain 1") == 1, "cuda:1 uses device 1",
        "log:\n%s", log);
  free(log);
  close_and_check("cuda:1", model);
  reset_env();

  /* Failures half way through opening release what was acquired. */
  struct {
    const char *call;
    moe_status status;
    const char *needle, *needle2;
  } failures[] = {
      {"cuDeviceGetAttribute", MOE_ERROR_DEVICE,
       "cuDeviceGetAttribute failed: CUDA_ERROR_INVALID_VALUE",
       "compute capability"},
      {"cuDevicePrimaryCtxRetain", MOE_ERROR_OUT_OF_MEMORY,
       "cuDevicePrimaryCtxRetain failed: CUDA_ERROR_OUT_OF_MEMORY", NULL},
      {"cuCtxPushCurrent_v2", MOE_ERROR_DEVICE,
       "cuCtxPushCurrent failed: CUDA_ERROR_INVALID_CONTEXT", NULL},
      {"cuStreamCreate", MOE_ERROR_OUT_OF_MEMORY, "cuStreamCreate failed",
       NULL},
      {"cuModuleLoadDataEx", MOE_ERROR_FORMAT,
       "cuModuleLoadDataEx failed: CUDA_ERROR_INVALID_IMAGE (device kernel "
       "image is invalid) (kernel 'moe_layer_1_route' of layer 1, its PTX for "
       "device Fake CUDA Device 0 (compute 8.0)",
       "the JIT says: fake ptxas: error: the test asked this load to fail)"},
      {"cuModuleGetFunction", MOE_ERROR_FORMAT,
       "cuModuleGetFunction failed: CUDA_ERROR_NOT_FOUND",
       "no function 'moe_layer_1_route'"},
      {"cuMemAlloc_v2", MOE_ERROR_OUT_OF_MEMORY,
       "cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY", "for the weights"},
      {"cuMemcpyHtoDAsync_v2", MOE_ERROR_DEVICE, "cuMemcpyHtoDAsync failed",
       "uploading 16 bytes of weights"},
      {"cuStreamSynchronize", MOE_ERROR_DEVICE,
       "cuStreamSynchronize failed: CUDA_ERROR_LAUNCH_FAILED",
       "uploading the weights"},
  };
  for (size_t i = 0; i < sizeof(failures) / sizeof(failures[0]); ++i) {
    setenv("MOE_FAKE_CUDA_FAIL", failures[i].call, 1);
    char name[96];
    snprintf(name, sizeof(name), "open with a failing %s", failures[i].call);
    expect_open_failure(name, folder, "cuda:0", failures[i].status,
                        failures[i].needle, failures[i].needle2);
  }
  reset_env();
  if (handle)
    dlclose(handle);
}

static void test_images(void) {
  /* Kernel names in the wrong order: each image holds only its own kernel,
   * so the wrong image is noticed. */
  char folder[4096], layers[1024];
  snprintf(layers, sizeof(layers),
           "[{\"layer\": 1, \"entry\": \"moe_layer_1\", \"hidden_size\": 4, "
           "\"num_experts\": 4, \"top_k\": 2, \"cuda_kernels\": "
           "[\"moe_layer_1_experts\", \"moe_layer_1_route\", "
           "\"moe_layer_1_combine\"]}]");
  cuda_manifest m = default_cuda_manifest();
  m.layers = layers;
  make_folder_with(folder, sizeof(folder), "swapped-kernels", &m, fake_cuda_so);
  expect_open_failure("kernel names in the wrong order", folder, "cuda:0",
                      MOE_ERROR_FORMAT,
                      "cuModuleGetFunction failed: CUDA_ERROR_NOT_FOUND",
                      "no function 'moe_layer_1_experts' in kernel "
                      "'moe_layer_1_experts' of layer 1");

  /* The cubin is used exactly when the device's compute capability is the
   * folder's cuda_arch (layer B has cubins, layer A none). */
  struct {
    const char *arch, *cc;
    int cubins;
  } cases[] = {{"\"sm_90\"", "80", 0},   {"\"sm_90\"", "90", 2},
               {"\"sm_90a\"", "90", 2},  {"\"sm_90a\"", "91", 0},
               {"\"sm_86\"", "86", 2},   {"\"sm_80\"", "86", 0},
               {"\"sm_100a\"", "100", 2}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
    m = default_cuda_manifest();
    m.cuda_arch = cases[i].arch;
    make_folder_with(folder, sizeof(folder), "images", &m, fake_cuda_so);
    reset_env();
    setenv("MOE_FAKE_CUDA_CC", cases[i].cc, 1);
    clear_log();
    char name[128];
    snprintf(name, sizeof(name), "cuda_arch %s on compute %s loads %d cubins",
             cases[i].arch, cases[i].cc, cases[i].cubins);
    moe_model *model = open_ok(name, folder, "cuda:0");
    char *log = read_log();
    int cubins = count_lines(log, "module load cubin");
    int ptx = count_lines(log, "module load ptx");
    int functions = count_lines(log, "module function ");
    check(cubins == cases[i].cubins &&
              ptx == FAKE_CUDA_A_KERNELS + FAKE_CUDA_B_KERNELS - cubins &&
              functions == FAKE_CUDA_A_KERNELS + FAKE_CUDA_B_KERNELS,
          name, "%d cubins, %d PTX, %d functions; log:\n%s", cubins, ptx,
          functions, log);
    free(log);
    if (model) {
      char why[512] = "";
      check(run_layer(model, &kB, MOE_DTYPE_F32, 2, 1, 1, why, sizeof(why)) ==
                0,
            "run layer B", "%s", why);
    }
    close_and_check(name, model);
  }
  reset_env();
}

static void test_run(void) {
  char folder[4096];
  make_cuda_folder(folder, sizeof(folder), "run");
  reset_env();
  clear_log();
  moe_model *model =
      open_ok("open a cuda folder (default device)", folder, NULL);
  if (!model)
    return;
  char *log = read_log();
  char line[512];
  int uploads = count_lines(log, "htod 16");
  check(uploads == 1 && count_lines(log, "htod") == 1 &&
            count_lines(log, "context retain 0") == 1 &&
            count_lines(log, "stream create") == 1,
        "open uploads the weights once, retains cuda:0, creates one stream",
        "log:\n%s", log);
  check(strcmp(nth_line(log, "module function ", 0, line, sizeof(line)),
               "module function moe_layer_1_route") == 0 &&
            strcmp(nth_line(log, "module function ", 4, line, sizeof(line)),
                   "module function moe_layer_3_experts") == 0,
        "kernels resolved by name, in order", "log:\n%s", log);
  free(log);

  int32_t count = 0;
  moe_layer_info info;
  check(moe_model_num_layers(model, &count) == MOE_OK && count == 2 &&
            moe_model_layer_info(model, 1, &info) == MOE_OK &&
            info.layer == FAKE_B_LAYER && info.hidden_size == FAKE_B_HIDDEN,
        "layer info of a cuda model", "count %d", (int)count);

  /* Large calls launch kernel by kernel. */
  clear_log();
  run_ok("run layer 1, 100 tokens, with topk", model, &kA, MOE_DTYPE_F32, 100,
         1, 1);
  log = read_log();
  expect_launch_lines("100 tokens: the library's launches, in order", log,
                      "launch ", &kA, 100, 1);
  check(count_lines(log, "htod 1600") == 1 && count_lines(log, "dtoh") == 3 &&
            count_lines(log, "dtoh 1600") == 1 &&
            count_lines(log, "dtoh 800") == 2 && count_lines(log, "graph") == 0,
        "100 tokens: hidden in, output and topk out, no graph", "log:\n%s",
        log);
  free(log);

  clear_log();
  run_ok("run layer 1, 100 tokens, no topk wanted", model, &kA, MOE_DTYPE_F32,
         100, 0, 0);
  log = read_log();
  check(count_lines(log, "dtoh") == 1 && count_lines(log, "alloc") == 0,
        "unwanted topk stays on the device; the pool is reused", "log:\n%s",
        log);
  free(log);
  run_ok("run layer 1, 100 tokens, topk_weights only", model, &kA,
         MOE_DTYPE_F32, 100, 0, 1);
  run_ok("run layer 1, 100 tokens, topk_ids only", model, &kA, MOE_DTYPE_F32,
         100, 1, 0);
  run_ok("run layer 1, bf16, 70 tokens", model, &kA, MOE_DTYPE_BF16, 70, 1, 1);

  clear_log();
  run_ok("run layer 3, 100 tokens", model, &kB, MOE_DTYPE_F32, 100, 1, 1);
  run_ok("run layer 3, 90 tokens", model, &kB, MOE_DTYPE_BF16, 90, 1, 1);
  log = read_log();
  check(count_lines(log, "func attribute moe_layer_3_experts "
                         "max_dynamic_shared=65536") == 1 &&
            count_lines(log, "func attribute") == 1,
        "more than 48 KiB of shared memory is allowed once", "log:\n%s", log);
  free(log);

  /* Decode sizes: captured once, then replayed. */
  clear_log();
  int all = 1;
  for (int i = 0; i < 3; ++i)
    all &=
        run_ok("decode: layer 1, 3 tokens", model, &kA, MOE_DTYPE_F32, 3, 1, 1);
  log = read_log();
  expect_launch_lines("decode: the capture holds the library's launches", log,
                      "capture ", &kA, 3, 1);
  expect_launch_lines("decode: each replay runs them", log, "replay ", &kA, 3,
                      3);
  check(all && count_lines(log, "graph capture begin") == 1 &&
            count_lines(log, "graph capture end 3") == 1 &&
            count_lines(log, "graph instantiate 3") == 1 &&
            count_lines(log, "graph launch 3") == 3 &&
            count_lines(log, "launch ") == 0,
        "decode: one capture, three graph launches, no plain launches",
        "log:\n%s", log);
  free(log);

  clear_log();
  run_ok("decode: layer 1, 5 tokens", model, &kA, MOE_DTYPE_F32, 5, 1, 1);
  run_ok("decode: layer 3, 3 tokens", model, &kB, MOE_DTYPE_F32, 3, 0, 0);
  run_ok("decode: layer 1, 64 tokens", model, &kA, MOE_DTYPE_F32, 64, 1, 1);
  run_ok("decode: layer 1, 3 tokens again", model, &kA, MOE_DTYPE_BF16, 3, 1,
         1);
  run_ok("layer 1, 65 tokens", model, &kA, MOE_DTYPE_F32, 65, 1, 1);
  log = read_log();
  check(count_lines(log, "graph capture begin") == 3 &&
            count_lines(log, "graph launch") == 4 &&
            count_lines(log, "launch ") == 3,
        "a graph per (layer, tokens) up to 64 tokens; 65 launch plainly",
        "log:\n%s", log);
  free(log);

  /* A larger call grows the pool: every graph goes (it holds the old
   * addresses) and the next decode call captures again. The fake checks each
   * replayed pointer, so a stale graph would fail. */
  clear_log();
  run_ok("layer 1, 1000 tokens (the pool grows)", model, &kA, MOE_DTYPE_F32,
         1000, 1, 1);
  run_ok("decode after the pool grew", model, &kA, MOE_DTYPE_F32, 3, 1, 1);
  log = read_log();
  check(count_lines(log, "graph exec destroy") == 4 &&
            count_lines(log, "free") >= 1 &&
            count_lines(log, "graph capture begin") == 1 &&
            count_lines(log, "bad") == 0,
        "growing the pool drops the graphs; decode recaptures", "log:\n%s",
        log);
  free(log);

  /* Capture failures fall back to plain launches. */
  const char *capture_calls[] = {"cuStreamBeginCapture_v2",
                                 "cuStreamEndCapture",
                                 "cuGraphInstantiateWithFlags"};
  for (int i = 0; i < 3; ++i) {
    int64_t tokens = 7 + i;
    setenv("MOE_FAKE_CUDA_FAIL", capture_calls[i], 1);
    clear_log();
    char name[128];
    snprintf(name, sizeof(name), "a failing %s: plain launches",
             capture_calls[i]);
    run_ok(name, model, &kA, MOE_DTYPE_F32, tokens, 1, 1);
    log = read_log();
    expect_launch_lines(name, log, "launch ", &kA, tokens, 1);
    check(count_lines(log, "graph launch") == 0 &&
              count_lines(log, "graph capture begin") ==
                  count_lines(log, "graph destroy") +
                      count_lines(log, "graph capture failed"),
          "no graph launched, no graph left", "log:\n%s", log);
    free(log);
    unsetenv("MOE_FAKE_CUDA_FAIL");
    clear_log();
    run_ok("the same size again", model, &kA, MOE_DTYPE_F32, tokens, 1, 1);
    log = read_log();
    check(count_lines(log, "launch ") == 3 &&
              count_lines(log, "graph capture begin") == 0,
          "a size whose capture failed is not captured again", "log:\n%s", log);
    free(log);
  }

  /* Failures while running. */
  setenv("MOE_FAKE_CUDA_FAIL", "cuLaunchKernel", 1);
  expect_run_failure("a failing cuLaunchKernel", model, &kA, 100,
                     MOE_ERROR_DEVICE,
                     "cuLaunchKernel failed: CUDA_ERROR_LAUNCH_FAILED "
                     "(unspecified launch failure)",
                     "layer 1, launch 0 of 3: kernel 'moe_layer_1_route' grid "
                     "25x1x1 block 128x1x1");
  expect_run_failure("a failing cuLaunchKernel while capturing", model, &kA, 13,
                     MOE_ERROR_DEVICE, "cuLaunchKernel failed", "layer 1");
  unsetenv("MOE_FAKE_CUDA_FAIL");
  run_ok("runs again after a launch failure", model, &kA, MOE_DTYPE_F32, 100, 1,
         1);
  clear_log();
  run_ok("decode runs again after a failed capture", model, &kA, MOE_DTYPE_F32,
         13, 1, 1);
  log = read_log();
  check(count_lines(log, "graph capture begin") == 1 &&
            count_lines(log, "graph launch") == 1,
        "a launch failure does not stop later captures", "log:\n%s", log);
  free(log);

  struct {
    const char *call;
    int64_t tokens;
    moe_status status;
    const char *needle, *needle2;
  } failures[] = {
      {"cuMemcpyHtoDAsync_v2", 100, MOE_ERROR_DEVICE,
       "cuMemcpyHtoDAsync failed", "layer 1: copying the hidden states in"},
      {"cuMemcpyDtoHAsync_v2", 100, MOE_ERROR_DEVICE,
       "cuMemcpyDtoHAsync failed: CUDA_ERROR_LAUNCH_FAILED",
       "copying the output out"},
      {"cuStreamSynchronize", 100, MOE_ERROR_DEVICE,
       "cuStreamSynchronize failed", "layer 1, 100 tokens"},
      {"cuGraphLaunch", 3, MOE_ERROR_DEVICE, "cuGraphLaunch failed",
       "layer 1, 3 tokens"},
      {"cuMemAlloc_v2", 5000, MOE_ERROR_OUT_OF_MEMORY,
       "cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY", "the hidden states"},
      {"cuCtxPushCurrent_v2", 100, MOE_ERROR_DEVICE, "cuCtxPushCurrent failed",
       "layer 1"},
  };
  for (size_t i = 0; i < sizeof(failures) / sizeof(failures[0]); ++i) {
    setenv("MOE_FAKE_CUDA_FAIL", failures[i].call, 1);
    char name[96];
    snprintf(name, sizeof(name), "run with a failing %s", failures[i].call);
    expect_run_failure(name, model, &kA, failures[i].tokens, failures[i].status,
                       failures[i].needle, failures[i].needle2);
    unsetenv("MOE_FAKE_CUDA_FAIL");
    snprintf(name, sizeof(name), "runs again after a failing %s",
             failures[i].call);
    run_ok(name, model, &kA, MOE_DTYPE_F32, failures[i].tokens, 1, 1);
  }

  /* A library that breaks the launch contract. */
  struct {
    const char *bad;
    moe_status status;
    const char *needle, *needle2;
  } tables[] = {
      {"zero", MOE_ERROR_FORMAT, "moe_layer_1_launches(", "returned 0"},
      {"count", MOE_ERROR_FORMAT, "asks for 1025 launches", "at most 1024"},
      {"kernel", MOE_ERROR_FORMAT, "launch 2 names kernel 3",
       "the layer has 3"},
      {"grid", MOE_ERROR_FORMAT, "(kernel 'moe_layer_1_route') has grid",
       "every dimension must be at least 1"},
      {"block", MOE_ERROR_FORMAT, "block 256x1x0",
       "every dimension must be at least 1"},
      {"smem", MOE_ERROR_UNSUPPORTED,
       "needs 1073741824 bytes of dynamic shared memory",
       "allows at most 232448"},
      {"negative_smem", MOE_ERROR_FORMAT, "asks for -4 bytes of shared memory",
       "layer 1"},
      {"workspace", MOE_ERROR_FORMAT, "moe_layer_1_workspace_bytes(",
       "cannot be negative"},
  };
  for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); ++i) {
    for (int decode = 0; decode < 2; ++decode) {
      int64_t tokens = decode ? 21 : 100;
      setenv("MOE_FAKE_CUDA_MODEL_BAD", tables[i].bad, 1);
      char name[96];
      snprintf(name, sizeof(name), "launch table: %s (%lld tokens)",
               tables[i].bad, (long long)tokens);
      expect_run_failure(name, model, &kA, tokens, tables[i].status,
                         tables[i].needle, tables[i].needle2);
      unsetenv("MOE_FAKE_CUDA_MODEL_BAD");
    }
  }
  run_ok("runs again after bad launch tables", model, &kA, MOE_DTYPE_F32, 21, 1,
         1);

  /* The argument checks of the cpu path. */
  float hidden[FAKE_B_HIDDEN] = {0}, output[FAKE_B_HIDDEN + 1];
  struct {
    const char *name;
    int32_t layer;
    const void *hidden;
    int64_t tokens, hidden_size;
    float *output;
    moe_status status;
    const char *needle;
  } arguments[] = {
      {"run: null hidden", FAKE_A_LAYER, NULL, 1, FAKE_A_HIDDEN, output,
       MOE_ERROR_INVALID_ARGUMENT, "hidden is null"},
      {"run: null output", FAKE_A_LAYER, hidden, 1, FAKE_A_HIDDEN, NULL,
       MOE_ERROR_INVALID_ARGUMENT, "output is null"},
      {"run: tokens = 0", FAKE_A_LAYER, hidden, 0, FAKE_A_HIDDEN, output,
       MOE_ERROR_INVALID_ARGUMENT, "tokens is 0"},
      {"run: unknown layer", 2, hidden, 1, FAKE_A_HIDDEN, output,
       MOE_ERROR_UNKNOWN_LAYER, "no layer 2"},
      {"run: hidden size mismatch", FAKE_A_LAYER, hidden, 1, FAKE_B_HIDDEN,
       output, MOE_ERROR_SHAPE, "hidden_size is 8"},
      {"run: misaligned output", FAKE_A_LAYER, hidden, 1, FAKE_A_HIDDEN,
       (float *)((char *)output + 2), MOE_ERROR_INVALID_ARGUMENT,
       "output is not aligned"},
  };
  for (size_t i = 0; i < sizeof(arguments) / sizeof(arguments[0]); ++i) {
    moe_status status = moe_layer_run(
        model, arguments[i].layer, arguments[i].hidden, MOE_DTYPE_F32,
        arguments[i].tokens, arguments[i].hidden_size, arguments[i].output,
        NULL, NULL);
    check(status == arguments[i].status &&
              contains(moe_last_error(), arguments[i].needle),
          arguments[i].name, "status %d: %s", (int)status, moe_last_error());
  }

  /* A second model of the folder shares the primary context; closing one
   * leaves the other working. */
  moe_model *second = open_ok("open the folder again", folder, "cuda:0");
  moe_model_close(model);
  if (second) {
    run_ok("run the second model after closing the first", second, &kA,
           MOE_DTYPE_F32, 4, 1, 1);
    run_ok("run the second model after closing the first (100)", second, &kB,
           MOE_DTYPE_F32, 100, 1, 1);
  }
  close_and_check("close both models", second);

  /* Closing right after a device failure. */
  model = open_ok("open for a failure", folder, "cuda:0");
  if (model) {
    run_ok("decode before the failure", model, &kA, MOE_DTYPE_F32, 2, 1, 1);
    setenv("MOE_FAKE_CUDA_FAIL", "cuStreamSynchronize", 1);
    expect_run_failure("a failing cuStreamSynchronize", model, &kA, 2,
                       MOE_ERROR_DEVICE, "cuStreamSynchronize", NULL);
    moe_model_close(model);
    unsetenv("MOE_FAKE_CUDA_FAIL");
    expect_released("close after a failure");
  }
}

/*===----------------------------------------------------------------------===*
 * Tensor maps
 *===----------------------------------------------------------------------===*/

static char maps_layers[1024]; /* layers A and C (prepare_json) */

/* A sm_90a folder whose layer 5 exports tensor maps, next to layer 1. */
static void make_maps_folder(char *out, size_t size, const char *name) {
  cuda_manifest m = default_cuda_manifest();
  m.cuda_arch = "\"sm_90a\"";
  m.layers = maps_layers;
  make_folder_with(out, size, name, &m, fake_cuda_so);
}

/* The index among all lines of `log` of the `nth` line starting with
 * `prefix`; -1 if there is none. */
static int line_index(const char *log, const char *prefix, int nth) {
  size_t length = strlen(prefix);
  int index = 0;
  for (const char *line = log; *line; ++index) {
    if (strncmp(line, prefix, length) == 0 && nth-- == 0)
      return index;
    const char *end = strchr(line, '\n');
    if (!end)
      break;
    line = end + 1;
  }
  return -1;
}

/* The start of the line the fake logs when it encodes layer C's map `index`
 * for `tokens` rows: everything but the size of the workspace allocation
 * (the weights' 16 bytes take 256, the runtime's unit of allocation). */
static void expected_encode(int64_t tokens, int index, char *out, size_t size) {
  fake_cuda_tensor_map maps[FAKE_C_MAPS];
  fake_cuda_tensor_maps(tokens, maps);
  const fake_cuda_tensor_map *m = &maps[index];
  int n = snprintf(out, size, "tensor map encode rank=%d dims=", m->rank);
  for (int d = 0; d < m->rank; ++d)
    n += snprintf(out + n, size - (size_t)n, "%s%lld", d ? "," : "",
                  (long long)m->dims[d]);
  n += snprintf(out + n, size - (size_t)n, " strides=");
  for (int d = 0; d + 1 < m->rank; ++d)
    n += snprintf(out + n, size - (size_t)n, "%s%lld", d ? "," : "",
                  (long long)m->strides[d]);
  n += snprintf(out + n, size - (size_t)n, " box=");
  for (int d = 0; d < m->rank; ++d)
    n += snprintf(out + n, size - (size_t)n, "%s%d", d ? "," : "",
                  (int)m->box[d]);
  n += snprintf(out + n, size - (size_t)n, " swizzle=%d type=9 at=+%lld/%s",
                (int)m->swizzle, (long long)m->offset,
                m->base == 0 ? "256" : "");
}

/* Tells the fake kernels where layer C's maps are for `tokens` rows. */
static void set_map_slots(int64_t tokens) {
  fake_cuda_tensor_map maps[FAKE_C_MAPS];
  fake_cuda_tensor_maps(tokens, maps);
  char slots[64];
  snprintf(slots, sizeof(slots), "%lld,%lld",
           (long long)maps[0].workspace_offset,
           (long long)maps[1].workspace_offset);
  setenv("MOE_FAKE_CUDA_TENSOR_MAPS", slots, 1);
}

/* After a failed call: the log shows nothing launched, no map copied and,
 * unless the failure came later (`late`), nothing encoded or copied at all. */
static void expect_nothing_queued(const char *name, int late) {
  char *log = read_log();
  check(count_lines(log, "launch ") == 0 && count_lines(log, "graph") == 0 &&
            count_lines(log, "htod 128") == 0 &&
            (late || (count_lines(log, "tensor map encode") == 0 &&
                      count_lines(log, "htod") == 0)),
        name, "log:\n%s", log);
  free(log);
}

static void test_tensor_maps(void) {
  char folder[4096], plain[4096], name[160];
  make_maps_folder(folder, sizeof(folder), "tensor-maps");
  reset_env();
  setenv("MOE_FAKE_CUDA_CC", "90", 1);
  void *handle = dlopen(fake_driver, RTLD_NOW | RTLD_LOCAL);
  void (*clobber)(void) = NULL;
  if (handle)
    *(void **)&clobber = dlsym(handle, "fake_cuda_clobber");
  check(clobber != NULL, "the fake driver's fake_cuda_clobber", "%s",
        dlerror());
  moe_model *model =
      open_ok("open a folder with tensor maps", folder, "cuda:0");
  if (!model || !clobber) {
    moe_model_close(model);
    return;
  }

  /* A large call: both maps encoded for this call's buffers and copied into
   * the workspace before the launches, which check them (the fake kernels
   * read the maps at MOE_FAKE_CUDA_TENSOR_MAPS). */
  clear_log();
  set_map_slots(100);
  run_ok("tensor maps: layer 5, 100 tokens", model, &kC, MOE_DTYPE_F32, 100, 1,
         1);
  char *log = read_log();
  expect_launch_lines("tensor maps: 100 tokens launch the library's kernels",
                      log, "launch ", &kC, 100, 1);
  char want0[256], want1[256], line0[512], line1[512];
  expected_encode(100, 0, want0, sizeof(want0));
  expected_encode(100, 1, want1, sizeof(want1));
  nth_line(log, "tensor map encode", 0, line0, sizeof(line0));
  nth_line(log, "tensor map encode", 1, line1, sizeof(line1));
  check(count_lines(log, "tensor map encode") == 2 &&
            strncmp(line0, want0, strlen(want0)) == 0 &&
            strncmp(line1, want1, strlen(want1)) == 0,
        "tensor maps: map 0 on the weights, map 1 on the workspace, as the "
        "records say",
        "expected '%s' and '%s...'; log:\n%s", want0, want1, log);
  check(count_lines(log, "htod 128") == 2 &&
            line_index(log, "tensor map encode", 1) <
                line_index(log, "htod 128", 0) &&
            line_index(log, "htod 128", 1) < line_index(log, "launch ", 0) &&
            count_lines(log, "bad") == 0,
        "tensor maps: encoded, then copied, then the launches", "log:\n%s",
        log);
  free(log);

  /* Decode: the graph captures the launches only; every call encodes and
   * copies the maps again before replaying it. The fake driver clobbers
   * device memory before each call (as other layers' kernels would), so a
   * replay without fresh maps fails in the fake kernels. */
  clear_log();
  int all = 1;
  for (int i = 0; i < 3; ++i) {
    clobber();
    set_map_slots(3);
    all &= run_ok("tensor maps: decode, 3 tokens, after a clobber", model, &kC,
                  MOE_DTYPE_F32, 3, 1, 1);
  }
  log = read_log();
  int ordered = 1;
  for (int i = 0; i < 3; ++i) {
    int copied = line_index(log, "htod 128", 2 * i + 1);
    ordered &= line_index(log, "clobber", i) <
                   line_index(log, "tensor map encode", 2 * i) &&
               copied >= 0 && copied < line_index(log, "graph launch", i);
  }
  check(all && ordered && count_lines(log, "tensor map encode") == 6 &&
            count_lines(log, "htod 128") == 6 &&
            count_lines(log, "graph capture begin") == 1 &&
            count_lines(log, "graph launch 2") == 3 &&
            count_lines(log, "launch ") == 0 && count_lines(log, "bad") == 0,
        "tensor maps: re-encoded and copied before every graph replay",
        "log:\n%s", log);
  free(log);

  /* Map 1's slot depends on the token count: 128 for 4 tokens, 256 for 3. */
  clobber();
  set_map_slots(4);
  run_ok("tensor maps: 4 tokens (map 1 at workspace offset 128)", model, &kC,
         MOE_DTYPE_BF16, 4, 1, 1);
  clobber();
  set_map_slots(3);
  run_ok("tensor maps: 3 tokens again (map 1 at 256), replayed", model, &kC,
         MOE_DTYPE_F32, 3, 0, 1);
  /* The fake kernels' check has teeth: told to find a map where 3 tokens
   * have none, the replay fails. */
  clobber();
  setenv("MOE_FAKE_CUDA_TENSOR_MAPS", "0,128", 1);
  clear_log();
  expect_run_failure("tensor maps: a kernel finds no map at a stale slot",
                     model, &kC, 3, MOE_ERROR_DEVICE, "cuGraphLaunch failed",
                     "layer 5, 3 tokens");
  log = read_log();
  check(count_lines(log, "bad launch") == 1 &&
            contains(log, "workspace+128 is not an encoded tensor map"),
        "tensor maps: the fake kernel names the stale slot", "log:\n%s", log);
  free(log);

  /* Layer 1 of the same folder has no maps. */
  unsetenv("MOE_FAKE_CUDA_TENSOR_MAPS");
  clear_log();
  run_ok("tensor maps: layer 1 of the folder", model, &kA, MOE_DTYPE_F32, 3, 1,
         1);
  run_ok("tensor maps: layer 1 of the folder, 100 tokens", model, &kA,
         MOE_DTYPE_F32, 100, 1, 1);
  log = read_log();
  check(count_lines(log, "tensor map encode") == 0 &&
            count_lines(log, "htod 128") == 0,
        "tensor maps: a layer without the symbol encodes nothing", "log:\n%s",
        log);
  free(log);

  /* Records that break the contract: refused before anything is queued. */
  struct {
    const char *bad, *needle;
  } records[] = {
      {"map_negative", "returned -1; a count of tensor maps cannot be "
                       "negative"},
      {"map_count", "asks for 65 tensor maps; this runtime takes at most 64"},
      {"map_base", "tensor map 1 has base 2; expected 0 (the weights) or 1 "
                   "(the workspace)"},
      {"map_rank", "tensor map 0 (on the weights) has rank 4; expected 2 or 3"},
      {"map_dims", "tensor map 1 (on the workspace) has dims[1] = 0; every "
                   "dimension must be at least 1"},
      {"map_box", "has box[2] = 257; a box dimension must be 1 to 256"},
      {"map_box_bytes", "tensor map 0 (on the weights) has box[0] = 4, 8 bytes "
                        "of bf16, not a multiple of 16"},
      {"map_swizzle", "has swizzle 4; expected 0 (none), 1 (32B), 2 (64B) or 3 "
                      "(128B)"},
      {"map_swizzle_span", "tensor map 1 (on the workspace) has box[0] = 32, "
                           "64 bytes, wider than its 32-byte swizzle"},
      {"map_offset",
       "has offset 392; it must be a non-negative multiple of 16"},
      {"map_stride", "has strides[1] = 40; strides must be positive multiples "
                     "of 16"},
      {"map_weights_end", "tensor map 0 (on the weights) reaches past the end "
                          "of the weights (16 bytes): dims 8x2 from offset 0 "
                          "end at byte 32"},
      {"map_workspace_end", "tensor map 1 (on the workspace) reaches past the "
                            "end of the workspace ("},
      {"map_slot", "goes to workspace offset 160; it must be a non-negative "
                   "multiple of 64"},
      {"map_slot_end", "workspace bytes of this call"},
      {"map_slot_overlap", "tensor map 1 (on the workspace) goes to workspace "
                           "offset 64, overlapping tensor map 0 at offset 0"},
  };
  for (size_t i = 0; i < sizeof(records) / sizeof(records[0]); ++i) {
    for (int decode = 0; decode < 2; ++decode) {
      int64_t tokens = decode ? 21 : 100;
      char prefix[96];
      snprintf(prefix, sizeof(prefix), "layer 5: moe_layer_5_tensor_maps(%lld)",
               (long long)tokens);
      setenv("MOE_FAKE_CUDA_MODEL_BAD", records[i].bad, 1);
      set_map_slots(tokens);
      clear_log();
      snprintf(name, sizeof(name), "tensor maps: %s (%lld tokens)",
               records[i].bad, (long long)tokens);
      expect_run_failure(name, model, &kC, tokens, MOE_ERROR_FORMAT,
                         records[i].needle, prefix);
      snprintf(name, sizeof(name),
               "tensor maps: %s (%lld tokens): nothing queued", records[i].bad,
               (long long)tokens);
      expect_nothing_queued(name, 0);
      unsetenv("MOE_FAKE_CUDA_MODEL_BAD");
    }
  }
  set_map_slots(21);
  run_ok("tensor maps: runs again after bad records", model, &kC, MOE_DTYPE_F32,
         21, 1, 1);

  /* The driver refuses to encode. */
  setenv("MOE_FAKE_CUDA_FAIL", "cuTensorMapEncodeTiled", 1);
  for (int decode = 0; decode < 2; ++decode) {
    int64_t tokens = decode ? 3 : 100;
    set_map_slots(tokens);
    clear_log();
    snprintf(name, sizeof(name), "tensor maps: a failing encode (%lld tokens)",
             (long long)tokens);
    expect_run_failure(name, model, &kC, tokens, MOE_ERROR_DEVICE,
                       "cuTensorMapEncodeTiled failed: "
                       "CUDA_ERROR_INVALID_VALUE (invalid argument)",
                       "(layer 5, tensor map 0 of 2, rank 2 on the weights at "
                       "offset 0, box 8x1, swizzle 0)");
    snprintf(name, sizeof(name),
             "tensor maps: a failing encode (%lld tokens): nothing queued",
             (long long)tokens);
    expect_nothing_queued(name, 0);
  }
  unsetenv("MOE_FAKE_CUDA_FAIL");

  /* A map's copy fails (the hidden states' copy went first). */
  setenv("MOE_FAKE_CUDA_FAIL", "cuMemcpyHtoDAsync_v2", 1);
  setenv("MOE_FAKE_CUDA_FAIL_BYTES", "128", 1);
  set_map_slots(3);
  clear_log();
  expect_run_failure("tensor maps: a failing copy", model, &kC, 3,
                     MOE_ERROR_DEVICE, "cuMemcpyHtoDAsync failed",
                     "layer 5: copying tensor map 0 to workspace offset 0");
  expect_nothing_queued("tensor maps: a failing copy: nothing launched", 1);
  unsetenv("MOE_FAKE_CUDA_FAIL");
  unsetenv("MOE_FAKE_CUDA_FAIL_BYTES");
  clobber();
  run_ok("tensor maps: runs again after failures", model, &kC, MOE_DTYPE_F32, 3,
         1, 1);
  close_and_check("tensor maps", model);

  /* The fake's own checks, which the runtime never trips: arguments cuda.h
   * rules out are refused and logged. */
  typedef int (*encode_fn)(void *, int, uint32_t, void *, const uint64_t *,
                           const uint64_t *, const uint32_t *, const uint32_t *,
                           int, int, int, int);
  encode_fn encode = NULL;
  if (handle)
    *(void **)&encode = dlsym(handle, "cuTensorMapEncodeTiled");
  if (check(encode != NULL, "the fake driver's cuTensorMapEncodeTiled", "%s",
            dlerror())) {
    static _Alignas(64) uint8_t map[128 + 64];
    static _Alignas(16) uint8_t data[256];
    uint64_t dims[2] = {8, 4}, strides[1] = {16}, wide[2] = {64, 4};
    uint32_t box[2] = {8, 4}, big_box[2] = {257, 4}, inner[2] = {64, 4},
             ones[2] = {1, 1};
    struct {
      const char *name, *why;
      void *map, *address;
      uint32_t rank;
      const uint64_t *dims;
      const uint32_t *box;
      int swizzle;
    } calls[] = {
        {"unaligned map", "tensorMap is not 64-byte aligned", map + 32, data, 2,
         dims, box, 0},
        {"unaligned address", "globalAddress is not aligned", map, data + 8, 2,
         dims, box, 0},
        {"rank 6", "rank is not 1 to 5", map, data, 6, dims, box, 0},
        {"box 257", "boxDim is not 1 to 256", map, data, 2, dims, big_box, 0},
        {"swizzle span", "exceeds the swizzle span", map, data, 2, wide, inner,
         1},
        {"host memory", "not inside one live allocation", map, data, 2, dims,
         box, 0},
    };
    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); ++i) {
      clear_log();
      int result = encode(calls[i].map, 9, calls[i].rank, calls[i].address,
                          calls[i].dims, strides, calls[i].box, ones, 0,
                          calls[i].swizzle, 0, 0);
      log = read_log();
      snprintf(name, sizeof(name), "the fake refuses to encode: %s",
               calls[i].name);
      check(result == 1 && count_lines(log, "bad tensor map encode") == 1 &&
                contains(log, calls[i].why),
            name, "result %d; log:\n%s", result, log);
      free(log);
    }
  }
  if (handle)
    dlclose(handle);

  /* A driver older than CUDA 12.0 has no cuTensorMapEncodeTiled: a folder
   * with tensor maps is refused when it opens, one without still runs. */
  reset_env();
  int (*saved_live)(char *, size_t) = fake_live;
  void *old = dlopen(fake_driver_old, RTLD_NOW | RTLD_LOCAL);
  fake_live = NULL;
  if (old)
    *(void **)&fake_live = dlsym(old, "fake_cuda_live");
  check(old && fake_live && !dlsym(old, "cuTensorMapEncodeTiled"),
        "the old fake driver lacks cuTensorMapEncodeTiled", "%s",
        old ? "it has it" : dlerror());
  if (fake_live) {
    setenv("MOE_CUDA_DRIVER", fake_driver_old, 1);
    clear_log();
    expect_open_failure("old driver: a folder with tensor maps is "
                        "unsupported",
                        folder, "cuda:0", MOE_ERROR_UNSUPPORTED,
                        "layer 5 uses TMA tensor maps (moe_layer_5_tensor_maps)"
                        ", but the CUDA driver ",
                        "has no cuTensorMapEncodeTiled (a CUDA 12.0 or newer "
                        "driver is needed)");
    log = read_log();
    check(count_lines(log, "context retain") == 0 &&
              count_lines(log, "module load") == 0,
          "old driver: refused before the device is touched", "log:\n%s", log);
    free(log);
    make_cuda_folder(plain, sizeof(plain), "old-driver-plain");
    model = open_ok("old driver: a folder without tensor maps opens", plain,
                    "cuda:0");
    if (model) {
      run_ok("old driver: layer 1, 100 tokens", model, &kA, MOE_DTYPE_F32, 100,
             1, 1);
      run_ok("old driver: layer 1, 3 tokens (graph)", model, &kA, MOE_DTYPE_F32,
             3, 1, 1);
      run_ok("old driver: layer 3, 5 tokens", model, &kB, MOE_DTYPE_F32, 5, 1,
             1);
      close_and_check("old driver", model);
    }
  }
  fake_live = saved_live;
  reset_env();
}

/*===----------------------------------------------------------------------===*
 * Threads
 *===----------------------------------------------------------------------===*/

static void *work(void *argument) {
  worker *self = argument;
  for (int i = 0; i < 60 && !self->failures; ++i) {
    int64_t tokens = 1 + (i * 13 + self->index * 7) % 90;
    if (run_layer(self->model, &kA, i % 2 ? MOE_DTYPE_BF16 : MOE_DTYPE_F32,
                  tokens, i % 3 != 0, i % 4 != 0, self->why,
                  sizeof(self->why)) != 0)
      self->failures++;
  }
  return NULL;
}

static void test_threads(void) {
  char folder[4096];
  make_cuda_folder(folder, sizeof(folder), "threads");
  reset_env();
  /* The fake kernels' sizes come from the environment, which the threads
   * only read: set them once, for layer A. */
  setenv("MOE_FAKE_CUDA_HIDDEN", "4", 1);
  setenv("MOE_FAKE_CUDA_TOPK", "2", 1);
  unsetenv("MOE_FAKE_CUDA_LOG"); /* 4 x 60 calls of lines: not needed */
  moe_model *model = open_ok("open for threads", folder, "cuda:0");
  if (!model)
    return;
  run_workers(model, work, 4, "4 threads x 60 runs on one cuda model");
  close_and_check("threads", model);
  reset_env();
}

/*===----------------------------------------------------------------------===*
 * Device buffers (moe_layer_run_device)
 *===----------------------------------------------------------------------===*/

/* The fake driver's own entry points, used as a framework uses the driver:
 * the device's primary context, its own streams and device memory (the
 * fake's device memory is host memory, so the test fills and reads it
 * directly, and its kernels run when they are queued, so the results are
 * there when moe_layer_run_device returns). */
typedef unsigned long long test_dptr;
static struct {
  int (*retain)(void **context, int device);
  int (*release)(int device);
  int (*push)(void *context);
  int (*pop)(void **context);
  int (*alloc)(test_dptr *pointer, size_t bytes);
  int (*free)(test_dptr pointer);
  int (*stream_create)(void **stream, unsigned flags);
  int (*stream_destroy)(void *stream);
  int (*stream_id)(void *stream);
  void (*clobber)(void);
} fake;

static int load_fake_api(void *handle) {
  struct {
    void **slot;
    const char *name;
  } symbols[] = {
      {(void **)&fake.retain, "cuDevicePrimaryCtxRetain"},
      {(void **)&fake.release, "cuDevicePrimaryCtxRelease_v2"},
      {(void **)&fake.push, "cuCtxPushCurrent_v2"},
      {(void **)&fake.pop, "cuCtxPopCurrent_v2"},
      {(void **)&fake.alloc, "cuMemAlloc_v2"},
      {(void **)&fake.free, "cuMemFree_v2"},
      {(void **)&fake.stream_create, "cuStreamCreate"},
      {(void **)&fake.stream_destroy, "cuStreamDestroy_v2"},
      {(void **)&fake.stream_id, "fake_cuda_stream_id"},
      {(void **)&fake.clobber, "fake_cuda_clobber"},
  };
  for (size_t i = 0; i < sizeof(symbols) / sizeof(symbols[0]); ++i)
    if (!handle || !(*symbols[i].slot = dlsym(handle, symbols[i].name)))
      return 0;
  return 1;
}

/* A caller's device buffers for one call. */
typedef struct {
  test_dptr hidden, output, ids, weights;
} dev_buffers;

/* Buffers for `tokens` rows of `layer` (0 on failure). */
static int alloc_buffers(dev_buffers *b, const layer_desc *layer,
                         int64_t tokens) {
  size_t elements = (size_t)(tokens * layer->hidden) * sizeof(float);
  size_t routed = (size_t)(tokens * layer->top_k) * sizeof(float);
  memset(b, 0, sizeof(*b));
  return fake.alloc(&b->hidden, elements) == 0 &&
         fake.alloc(&b->output, elements) == 0 &&
         fake.alloc(&b->ids, routed) == 0 &&
         fake.alloc(&b->weights, routed) == 0;
}

static void free_buffers(dev_buffers *b) {
  test_dptr *all[] = {&b->hidden, &b->output, &b->ids, &b->weights};
  for (int i = 0; i < 4; ++i)
    if (*all[i])
      fake.free(*all[i]);
  memset(b, 0, sizeof(*b));
}

#define DEV(pointer) ((void *)(uintptr_t)(pointer))

/* Tells the fake kernels `layer`'s sizes. */
static void set_layer_env(const layer_desc *layer) {
  char number[32];
  snprintf(number, sizeof(number), "%lld", (long long)layer->hidden);
  setenv("MOE_FAKE_CUDA_HIDDEN", number, 1);
  snprintf(number, sizeof(number), "%d", (int)layer->top_k);
  setenv("MOE_FAKE_CUDA_TOPK", number, 1);
}

/* As run_layer, on device buffers: fills `b`'s hidden states, runs `layer`
 * with moe_layer_run_device on `stream` and checks what the fake kernels
 * wrote into the caller's buffers (topk_ids / topk_weights only when passed:
 * otherwise they keep -7). The fake's environment must be set for `layer`. */
static int run_device_noenv(moe_model *model, const layer_desc *layer,
                            int64_t tokens, const dev_buffers *b, int want_ids,
                            int want_weights, void *stream, char *why,
                            size_t why_size) {
  size_t elements = (size_t)(tokens * layer->hidden);
  size_t routed = (size_t)(tokens * layer->top_k);
  float *hidden = DEV(b->hidden), *output = DEV(b->output);
  int32_t *ids = DEV(b->ids);
  float *weights = DEV(b->weights);
  for (size_t i = 0; i < elements; ++i) {
    hidden[i] = hidden_value((int64_t)i, (int)tokens + 1);
    output[i] = -12345.0f;
  }
  for (size_t i = 0; i < routed; ++i) {
    ids[i] = -7;
    weights[i] = -7.0f;
  }
  moe_status status = moe_layer_run_device(
      model, layer->layer, hidden, tokens, layer->hidden, output,
      want_ids ? ids : NULL, want_weights ? weights : NULL, stream);
  if (status != MOE_OK) {
    snprintf(why, why_size, "status %d (%s): %s", (int)status,
             moe_status_string(status), moe_last_error());
    return (int)status;
  }
  for (size_t i = 0; i < elements; ++i)
    if (output[i] != 1.0f + (float)tokens) {
      snprintf(why, why_size, "output[%zu] = %g, expected %g", i,
               (double)output[i], (double)(1.0f + (float)tokens));
      return -1;
    }
  for (size_t i = 0; i < routed; ++i) {
    int32_t id = want_ids ? (int32_t)i : -7;
    float weight = want_weights ? hidden[i] : -7.0f;
    if (ids[i] != id || weights[i] != weight) {
      snprintf(why, why_size, "topk[%zu] = (%d, %g), expected (%d, %g)", i,
               (int)ids[i], (double)weights[i], (int)id, (double)weight);
      return -1;
    }
  }
  return 0;
}

static int device_ok(const char *name, moe_model *model,
                     const layer_desc *layer, int64_t tokens,
                     const dev_buffers *b, int want_ids, int want_weights,
                     void *stream) {
  char why[1024] = "";
  set_layer_env(layer);
  int result = run_device_noenv(model, layer, tokens, b, want_ids, want_weights,
                                stream, why, sizeof(why));
  return check(result == 0, name, "%s", why);
}

/* Runs on device buffers and expects `expected` with a message saying
 * `needle` and `needle2`. */
static void expect_device_failure(const char *name, moe_model *model,
                                  const layer_desc *layer, int64_t tokens,
                                  const dev_buffers *b, void *stream,
                                  moe_status expected, const char *needle,
                                  const char *needle2) {
  char why[1024] = "";
  set_layer_env(layer);
  int result =
      run_device_noenv(model, layer, tokens, b, 1, 1, stream, why, sizeof(why));
  const char *message = moe_last_error();
  if (check(result == (int)expected && contains(message, needle) &&
                (!needle2 || contains(message, needle2)),
            name, "got %d (%s), expected status %d saying '%s'%s%s", result,
            why, (int)expected, needle, needle2 ? " and " : "",
            needle2 ? needle2 : ""))
    printf("    %s\n", message);
}

/* The number at the end of `prefix` in the `index`-th line starting with it
 * ("event record 7 on stream 2" with prefix "event record " is 7); -1 if
 * there is no such line. */
static int number_after(const char *log, const char *prefix, int index) {
  char line[512];
  nth_line(log, prefix, index, line, sizeof(line));
  return line[0] ? atoi(line + strlen(prefix)) : -1;
}

/* Lines of `log` starting with `prefix` and ending with `suffix`. */
static int count_lines_on(const char *log, const char *prefix,
                          const char *suffix) {
  int count = 0;
  char line[512];
  for (int i = 0; i < count_lines(log, prefix); ++i) {
    nth_line(log, prefix, i, line, sizeof(line));
    size_t length = strlen(line), tail = strlen(suffix);
    count += length >= tail && strcmp(line + length - tail, suffix) == 0;
  }
  return count;
}

static void test_device_argument_checks(moe_model *model, const char *cpu,
                                        const dev_buffers *a) {
  /* A model on the cpu has no device memory. */
  moe_model *cpu_model = open_ok("device run: open a cpu folder", cpu, "cpu");
  if (cpu_model) {
    float host[FAKE_A_HIDDEN] = {0}, out[FAKE_A_HIDDEN];
    moe_status status = moe_layer_run_device(
        cpu_model, FAKE_A_LAYER, host, 1, FAKE_A_HIDDEN, out, NULL, NULL, NULL);
    check(status == MOE_ERROR_UNSUPPORTED &&
              contains(moe_last_error(), "moe_layer_run_device: ") &&
              contains(moe_last_error(), cpu) &&
              contains(moe_last_error(),
                       "is open on the cpu, which has no device memory"),
          "device run: a cpu model is unsupported", "status %d: %s",
          (int)status, moe_last_error());
    moe_model_close(cpu_model);
  }

  float *hidden = DEV(a->hidden), *output = DEV(a->output);
  int32_t *ids = DEV(a->ids);
  float *weights = DEV(a->weights);
  struct {
    const char *name;
    moe_model *model;
    int32_t layer;
    const float *hidden;
    int64_t tokens, hidden_size;
    float *output;
    int32_t *ids;
    float *weights;
    moe_status status;
    const char *needle;
  } arguments[] = {
      {"device run: null model", NULL, FAKE_A_LAYER, hidden, 1, FAKE_A_HIDDEN,
       output, ids, weights, MOE_ERROR_INVALID_ARGUMENT, "model is null"},
      {"device run: null hidden", model, FAKE_A_LAYER, NULL, 1, FAKE_A_HIDDEN,
       output, ids, weights, MOE_ERROR_INVALID_ARGUMENT, "hidden is null"},
      {"device run: null output", model, FAKE_A_LAYER, hidden, 1, FAKE_A_HIDDEN,
       NULL, ids, weights, MOE_ERROR_INVALID_ARGUMENT, "output is null"},
      {"device run: tokens = 0", model, FAKE_A_LAYER, hidden, 0, FAKE_A_HIDDEN,
       output, ids, weights, MOE_ERROR_INVALID_ARGUMENT,
       "tokens is 0; it must be at least 1"},
      {"device run: tokens = -3", model, FAKE_A_LAYER, hidden, -3,
       FAKE_A_HIDDEN, output, ids, weights, MOE_ERROR_INVALID_ARGUMENT,
       "tokens is -3"},
      {"device run: unknown layer", model, 2, hidden, 1, FAKE_A_HIDDEN, output,
       ids, weights, MOE_ERROR_UNKNOWN_LAYER, "has no layer 2 (it has 1, 3)"},
      {"device run: hidden size mismatch", model, FAKE_A_LAYER, hidden, 1,
       FAKE_B_HIDDEN, output, ids, weights, MOE_ERROR_SHAPE,
       "hidden_size is 8 but layer 1 of "},
      {"device run: tokens x hidden_size overflow", model, FAKE_A_LAYER, hidden,
       INT64_MAX / 4, FAKE_A_HIDDEN, output, ids, weights,
       MOE_ERROR_INVALID_ARGUMENT,
       "tokens (2305843009213693951) x hidden_size (4) overflows the address "
       "space"},
      {"device run: misaligned hidden", model, FAKE_A_LAYER,
       (const float *)((const char *)hidden + 2), 1, FAKE_A_HIDDEN, output, ids,
       weights, MOE_ERROR_INVALID_ARGUMENT, "hidden is not aligned to 4 bytes"},
      {"device run: misaligned output", model, FAKE_A_LAYER, hidden, 1,
       FAKE_A_HIDDEN, (float *)((char *)output + 1), ids, weights,
       MOE_ERROR_INVALID_ARGUMENT, "output is not aligned to 4 bytes"},
      {"device run: misaligned topk_ids", model, FAKE_A_LAYER, hidden, 1,
       FAKE_A_HIDDEN, output, (int32_t *)((char *)ids + 2), weights,
       MOE_ERROR_INVALID_ARGUMENT, "topk_ids is not aligned to 4 bytes"},
      {"device run: misaligned topk_weights", model, FAKE_A_LAYER, hidden, 1,
       FAKE_A_HIDDEN, output, ids, (float *)((char *)weights + 3),
       MOE_ERROR_INVALID_ARGUMENT, "topk_weights is not aligned to 4 bytes"},
  };
  clear_log();
  for (size_t i = 0; i < sizeof(arguments) / sizeof(arguments[0]); ++i) {
    moe_status status = moe_layer_run_device(
        arguments[i].model, arguments[i].layer, arguments[i].hidden,
        arguments[i].tokens, arguments[i].hidden_size, arguments[i].output,
        arguments[i].ids, arguments[i].weights, NULL);
    char needle[160];
    snprintf(needle, sizeof(needle), "moe_layer_run_device: %s",
             arguments[i].needle);
    check(status == arguments[i].status &&
              (contains(moe_last_error(), needle) ||
               (arguments[i].status != MOE_ERROR_INVALID_ARGUMENT &&
                contains(moe_last_error(), arguments[i].needle))),
          arguments[i].name, "status %d: %s", (int)status, moe_last_error());
  }
  char *log = read_log();
  check(log[0] == '\0', "device run: bad arguments reach no driver call",
        "log:\n%s", log);
  free(log);
}

/* Calls from several threads, each on its own stream and buffers, mixed with
 * host runs: the model's mutex and its event chain keep them apart. */
typedef struct {
  moe_model *model;
  void *stream;
  dev_buffers buffers;
  int index, failures;
  char why[1024];
} device_worker;

/* moe_layer_run of layer A on host buffers, checking the output only; it
 * leaves the environment alone (other threads read it). */
static int host_run_noenv(moe_model *model, int64_t tokens, char *why,
                          size_t why_size) {
  float hidden[100 * FAKE_A_HIDDEN] = {0}, output[100 * FAKE_A_HIDDEN];
  moe_status status = moe_layer_run(model, kA.layer, hidden, MOE_DTYPE_F32,
                                    tokens, kA.hidden, output, NULL, NULL);
  if (status != MOE_OK) {
    snprintf(why, why_size, "host run: status %d: %s", (int)status,
             moe_last_error());
    return (int)status;
  }
  for (int64_t i = 0; i < tokens * kA.hidden; ++i)
    if (output[i] != 1.0f + (float)tokens) {
      snprintf(why, why_size, "host run: output[%lld] = %g", (long long)i,
               (double)output[i]);
      return -1;
    }
  return 0;
}

static void *device_work(void *argument) {
  device_worker *self = argument;
  for (int i = 0; i < 40 && !self->failures; ++i) {
    int64_t tokens = 1 + (i * 11 + self->index * 5) % 90;
    int result =
        i % 5 == 4
            ? host_run_noenv(self->model, tokens, self->why, sizeof(self->why))
            : run_device_noenv(self->model, &kA, tokens, &self->buffers,
                               i % 3 != 0, i % 4 != 0,
                               i % 2 ? self->stream : NULL, self->why,
                               sizeof(self->why));
    if (result != 0)
      self->failures++;
  }
  return NULL;
}

static void test_device_run(void) {
  char folder[4096], cpu[4096], maps[4096], name[160];
  make_cuda_folder(folder, sizeof(folder), "device-run");
  make_cpu_folder(cpu, sizeof(cpu), "device-run-cpu");
  make_maps_folder(maps, sizeof(maps), "device-run-maps");
  reset_env();
  void *handle = dlopen(fake_driver, RTLD_NOW | RTLD_LOCAL);
  if (!check(load_fake_api(handle), "device run: the fake driver's API", "%s",
             handle ? "a symbol is missing" : dlerror()))
    return;

  /* The caller's side, as a framework has it: the device's primary context
   * current on this thread, its own streams and buffers. */
  void *context = NULL, *s1 = NULL, *s2 = NULL;
  dev_buffers a, b, big;
  if (!check(fake.retain(&context, 0) == 0 && fake.push(context) == 0 &&
                 fake.stream_create(&s1, 1) == 0 &&
                 fake.stream_create(&s2, 1) == 0 &&
                 alloc_buffers(&a, &kA, 100) && alloc_buffers(&b, &kA, 3) &&
                 alloc_buffers(&big, &kA, 5000),
             "device run: the caller's context, streams and buffers", "%s",
             "a driver call failed"))
    return;

  setenv("MOE_FAKE_CUDA_LOG_STREAMS", "1", 1);
  clear_log();
  moe_model *model = open_ok("device run: open a cuda folder", folder, NULL);
  if (!model)
    return;
  char *log = read_log();
  char on_model[48], on_s1[48], on_s2[48];
  snprintf(on_model, sizeof(on_model), " on stream %d",
           number_after(log, "stream create ", 0));
  snprintf(on_s1, sizeof(on_s1), " on stream %d", fake.stream_id(s1));
  snprintf(on_s2, sizeof(on_s2), " on stream %d", fake.stream_id(s2));
  free(log);

  test_device_argument_checks(model, cpu, &a);

  /* A large call on the caller's stream: the library's launches on that
   * stream with the caller's buffers (the fake kernels wrote the results
   * into them), no copies, no waiting, an event recorded after the work. */
  clear_log();
  device_ok("device run: layer 1, 100 tokens on the caller's stream", model,
            &kA, 100, &a, 1, 1, s1);
  log = read_log();
  expect_launch_lines_on("device run: the launches are on the caller's stream",
                         log, "launch ", &kA, 100, 1, on_s1);
  check(count_lines(log, "htod") == 0 && count_lines(log, "dtoh") == 0 &&
            count_lines(log, "stream sync") == 0 &&
            count_lines(log, "graph") == 0 &&
            count_lines(log, "stream wait event") == 0 &&
            count_lines(log, "event create") == 4 &&
            count_lines(log, "alloc ") == 1 &&
            count_lines_on(log, "event record ", on_s1) == 1 &&
            count_lines(log, "event record ") == 1 &&
            line_index(log, "event record ", 0) > line_index(log, "launch ", 2),
        "device run: no copies, no waiting, only the workspace allocated, "
        "an event recorded after the launches",
        "log:\n%s", log);
  free(log);

  clear_log();
  device_ok("device run: 100 tokens again", model, &kA, 100, &a, 1, 1, s1);
  log = read_log();
  check(count_lines_on(log, "stream wait event ", on_s1) == 1 &&
            line_index(log, "stream wait event ", 0) <
                line_index(log, "launch ", 0) &&
            count_lines(log, "alloc") == 0 &&
            count_lines(log, "event create") == 0,
        "device run: a second call waits for the first one's event, "
        "allocates nothing",
        "log:\n%s", log);
  free(log);

  clear_log();
  device_ok("device run: null topk_ids and topk_weights", model, &kA, 100, &a,
            0, 0, s1);
  log = read_log();
  check(count_lines(log, "alloc ") == 2 &&
            count_lines_on(log, "launch ", on_s1) == 3,
        "device run: null topk goes to the model's scratch", "log:\n%s", log);
  free(log);
  device_ok("device run: topk_ids only", model, &kA, 100, &a, 1, 0, s1);

  /* A null stream is the model's own; a call on another stream waits for
   * the previous call's event first. */
  clear_log();
  device_ok("device run: null stream", model, &kA, 100, &a, 1, 1, NULL);
  log = read_log();
  expect_launch_lines_on("device run: a null stream is the model's stream", log,
                         "launch ", &kA, 100, 1, on_model);
  check(count_lines_on(log, "stream wait event ", on_model) == 1 &&
            count_lines_on(log, "event record ", on_model) == 1,
        "device run: ordered and marked on the model's stream", "log:\n%s",
        log);
  int recorded = number_after(log, "event record ", 0);
  free(log);
  clear_log();
  device_ok("device run: then on a second stream", model, &kA, 100, &a, 1, 1,
            s2);
  log = read_log();
  snprintf(name, sizeof(name), "stream wait event %d%s", recorded, on_s2);
  check(count_lines(log, name) == 1 &&
            line_index(log, "stream wait event ", 0) <
                line_index(log, "launch ", 0) &&
            count_lines_on(log, "launch ", on_s2) == 3,
        "device run: another stream waits for the previous call's event",
        "expected '%s' first; log:\n%s", name, log);
  free(log);

  /* Decode: captured once on the model's stream, replayed on the caller's,
   * into the caller's buffers. */
  clear_log();
  int all = 1;
  for (int i = 0; i < 3; ++i)
    all &=
        device_ok("device run: decode, 3 tokens", model, &kA, 3, &a, 1, 1, s1);
  log = read_log();
  expect_launch_lines_on("device run: captured on the model's stream", log,
                         "capture ", &kA, 3, 1, on_model);
  snprintf(name, sizeof(name), "graph launch 3%s", on_s1);
  check(all && count_lines(log, "graph capture begin") == 1 &&
            count_lines(log, name) == 3 && count_lines(log, "launch ") == 0 &&
            count_lines(log, "replay ") == 9 && count_lines(log, "bad") == 0,
        "device run: one capture, three replays on the caller's stream",
        "log:\n%s", log);
  free(log);

  /* Other buffers: pointers are baked into a graph, so another is captured;
   * the first buffers' graph stays and replays, also on another stream. */
  float *a_output = DEV(a.output);
  a_output[0] = -1.0f;
  clear_log();
  device_ok("device run: decode into other buffers", model, &kA, 3, &b, 1, 1,
            s1);
  check(a_output[0] == -1.0f,
        "device run: the new buffers' graph does not write the old ones",
        "a.output[0] = %g", (double)a_output[0]);
  device_ok("device run: decode into the first buffers again", model, &kA, 3,
            &a, 1, 1, s1);
  device_ok("device run: the first buffers on another stream", model, &kA, 3,
            &a, 1, 1, s2);
  device_ok("device run: null topk is another set of buffers", model, &kA, 3,
            &a, 0, 1, s2);
  log = read_log();
  snprintf(name, sizeof(name), "graph launch 3%s", on_s2);
  check(count_lines(log, "graph capture begin") == 2 &&
            count_lines(log, "graph launch") == 4 &&
            count_lines(log, name) == 2 && count_lines(log, "bad") == 0,
        "device run: one graph per set of buffers, replayed on any stream",
        "log:\n%s", log);
  free(log);

  /* At most 8 sets of buffers per layer and token count: the least recently
   * used graph goes. Nine outputs more for (layer 1, 3 tokens), which has
   * three sets (a, b, a without topk_ids). */
  test_dptr outputs[9];
  int allocated = 1;
  for (int i = 0; i < 9; ++i)
    allocated &= fake.alloc(&outputs[i], 3 * FAKE_A_HIDDEN * 4) == 0;
  clear_log();
  all = allocated;
  for (int i = 0; i < 9; ++i) {
    dev_buffers other = a;
    other.output = outputs[i];
    all &= device_ok("device run: decode into output i", model, &kA, 3, &other,
                     1, 1, s1);
  }
  log = read_log();
  check(all && count_lines(log, "graph capture begin") == 9 &&
            count_lines(log, "graph exec destroy") == 4,
        "device run: nine more sets of buffers drop the four least recently "
        "used graphs",
        "log:\n%s", log);
  free(log);
  clear_log();
  dev_buffers last = a;
  last.output = outputs[8];
  device_ok("device run: the most recent set replays", model, &kA, 3, &last, 1,
            1, s1);
  device_ok("device run: a dropped set captures again", model, &kA, 3, &b, 1, 1,
            s1);
  log = read_log();
  check(count_lines(log, "graph capture begin") == 1 &&
            count_lines(log, "graph exec destroy") == 1 &&
            count_lines(log, "graph launch") == 2,
        "device run: least recently used", "log:\n%s", log);
  free(log);

  /* moe_layer_run waits for the queued work before it touches the pool;
   * then nothing is pending. */
  clear_log();
  run_ok("device run: a host run after device runs", model, &kA, MOE_DTYPE_F32,
         100, 1, 1);
  run_ok("device run: and another", model, &kA, MOE_DTYPE_BF16, 100, 1, 1);
  log = read_log();
  check(count_lines(log, "event sync ") == 1 &&
            line_index(log, "event sync ", 0) < line_index(log, "htod", 0) &&
            count_lines(log, "stream wait event") == 0,
        "device run: moe_layer_run first waits for the last device run",
        "log:\n%s", log);
  free(log);
  clear_log();
  device_ok("device run: after host runs", model, &kA, 100, &a, 1, 1, s1);
  log = read_log();
  check(count_lines(log, "stream wait event") == 0,
        "device run: after a host run there is nothing to wait for", "log:\n%s",
        log);
  free(log);

  /* Growing the pool waits for the queued work before freeing anything
   * (the fake frees at once: a launch still running would use freed
   * memory). */
  device_ok("device run: 3 tokens", model, &kA, 3, &a, 1, 1, s1);
  clear_log();
  device_ok("device run: 1000 tokens grow the workspace", model, &kA, 1000,
            &big, 1, 1, s2);
  log = read_log();
  check(count_lines(log, "event sync ") == 1 &&
            line_index(log, "event sync ", 0) < line_index(log, "free ", 0) &&
            count_lines(log, "stream wait event") == 0 &&
            count_lines(log, "graph exec destroy") > 0,
        "device run: growing the pool waits for queued work, then frees",
        "log:\n%s", log);
  free(log);

  /* Context: the caller's primary context current (as now), or none; the
   * runtime leaves the caller's context stack as it was. */
  void *popped = NULL;
  check(fake.pop(&popped) == 0 && popped == context && fake.pop(&popped) != 0,
        "device run: the caller's context is still current, alone", "%p",
        popped);
  device_ok("device run: no context current", model, &kA, 100, &a, 1, 1, s1);
  check(fake.pop(&popped) != 0, "device run: still no context current", "%s",
        "a context is current");
  fake.push(context);

  /* The driver fails. */
  struct {
    const char *call;
    int64_t tokens;
    moe_status status;
    const char *needle, *needle2;
  } failures[] = {
      {"cuLaunchKernel", 100, MOE_ERROR_DEVICE,
       "cuLaunchKernel failed: CUDA_ERROR_LAUNCH_FAILED",
       "layer 1, launch 0 of 3: kernel 'moe_layer_1_route'"},
      {"cuGraphLaunch", 3, MOE_ERROR_DEVICE, "cuGraphLaunch failed",
       "(layer 1, 3 tokens)"},
      {"cuStreamWaitEvent", 100, MOE_ERROR_DEVICE,
       "cuStreamWaitEvent failed: CUDA_ERROR_INVALID_HANDLE",
       "layer 1: ordering the call after the model's previous one"},
      {"cuEventRecord", 100, MOE_ERROR_DEVICE,
       "cuEventRecord failed: CUDA_ERROR_INVALID_HANDLE",
       "layer 1, 100 tokens: marking the end of the call"},
      {"cuCtxPushCurrent_v2", 100, MOE_ERROR_DEVICE, "cuCtxPushCurrent failed",
       "(layer 1)"},
      {"cuMemAlloc_v2", 5000, MOE_ERROR_OUT_OF_MEMORY,
       "cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY", "for the workspace"},
  };
  for (size_t i = 0; i < sizeof(failures) / sizeof(failures[0]); ++i) {
    dev_buffers *buffers = failures[i].tokens > 100 ? &big : &a;
    setenv("MOE_FAKE_CUDA_FAIL", failures[i].call, 1);
    clear_log();
    snprintf(name, sizeof(name), "device run: a failing %s", failures[i].call);
    expect_device_failure(name, model, &kA, failures[i].tokens, buffers, s1,
                          failures[i].status, failures[i].needle,
                          failures[i].needle2);
    unsetenv("MOE_FAKE_CUDA_FAIL");
    log = read_log();
    if (strcmp(failures[i].call, "cuStreamWaitEvent") == 0)
      check(count_lines(log, "launch ") == 0 && count_lines(log, "graph") == 0,
            "device run: a failing wait queues nothing", "log:\n%s", log);
    if (strcmp(failures[i].call, "cuEventRecord") == 0)
      check(count_lines_on(log, "stream sync", on_s1) == 1,
            "device run: without its event the call waits for its stream",
            "log:\n%s", log);
    free(log);
    snprintf(name, sizeof(name), "device run: runs again after a failing %s",
             failures[i].call);
    clear_log();
    device_ok(name, model, &kA, failures[i].tokens, buffers, 1, 1, s1);
    if (strcmp(failures[i].call, "cuEventRecord") == 0) {
      log = read_log();
      check(count_lines(log, "stream wait event") == 0,
            "device run: nothing to wait for after that", "log:\n%s", log);
      free(log);
    }
  }

  /* The wait of moe_layer_run for earlier device runs fails. */
  device_ok("device run: before a failing wait", model, &kA, 100, &a, 1, 1, s1);
  setenv("MOE_FAKE_CUDA_FAIL", "cuEventSynchronize", 1);
  expect_run_failure("device run: moe_layer_run with a failing wait", model,
                     &kA, 100, MOE_ERROR_DEVICE,
                     "cuEventSynchronize failed: CUDA_ERROR_LAUNCH_FAILED",
                     "waiting for the model's earlier moe_layer_run_device "
                     "work (layer 1)");
  unsetenv("MOE_FAKE_CUDA_FAIL");
  run_ok("device run: moe_layer_run after the failing wait", model, &kA,
         MOE_DTYPE_F32, 100, 1, 1);

  /* A library that breaks the contract: nothing queued. */
  const char *bad_tables[] = {"zero", "workspace"};
  const char *bad_needles[] = {"moe_layer_1_launches(", "cannot be negative"};
  for (int i = 0; i < 2; ++i)
    for (int decode = 0; decode < 2; ++decode) {
      int64_t tokens = decode ? 21 : 100;
      setenv("MOE_FAKE_CUDA_MODEL_BAD", bad_tables[i], 1);
      clear_log();
      snprintf(name, sizeof(name), "device run: launch table %s (%lld tokens)",
               bad_tables[i], (long long)tokens);
      expect_device_failure(name, model, &kA, tokens, &a, s1, MOE_ERROR_FORMAT,
                            bad_needles[i], "layer 1");
      unsetenv("MOE_FAKE_CUDA_MODEL_BAD");
      log = read_log();
      check(count_lines(log, "launch ") == 0 &&
                count_lines(log, "graph launch") == 0 &&
                count_lines(log, "event record") == 0,
            "device run: nothing queued for a bad table", "log:\n%s", log);
      free(log);
    }
  device_ok("device run: runs again after bad tables", model, &kA, 21, &a, 1, 1,
            s1);

  /* Pointers and streams are the caller's: host memory is not device memory
   * to the (fake) driver, a stream that is none is refused. */
  float host_hidden[100 * FAKE_A_HIDDEN], host_output[100 * FAKE_A_HIDDEN];
  int32_t host_ids[100 * FAKE_A_TOPK];
  float host_weights[100 * FAKE_A_TOPK];
  dev_buffers host = {(uintptr_t)host_hidden, (uintptr_t)host_output,
                      (uintptr_t)host_ids, (uintptr_t)host_weights};
  expect_device_failure("device run: host buffers, 100 tokens", model, &kA, 100,
                        &host, s1, MOE_ERROR_DEVICE,
                        "cuLaunchKernel failed: CUDA_ERROR_INVALID_VALUE",
                        "layer 1, launch 0 of 3");
  expect_device_failure("device run: host buffers, 4 tokens (a graph)", model,
                        &kA, 4, &host, s1, MOE_ERROR_DEVICE,
                        "cuGraphLaunch failed: CUDA_ERROR_INVALID_VALUE",
                        "layer 1, 4 tokens");
  int not_a_stream = 0;
  expect_device_failure("device run: not a stream", model, &kA, 100, &a,
                        &not_a_stream, MOE_ERROR_DEVICE,
                        "CUDA_ERROR_INVALID_HANDLE", "layer 1");
  device_ok("device run: runs again after bad pointers", model, &kA, 100, &a, 1,
            1, s1);

  /* Threads, each with its own stream and buffers, and host runs. */
  unsetenv("MOE_FAKE_CUDA_LOG");
  set_layer_env(&kA);
  enum { kThreads = 3 };
  device_worker workers[kThreads];
  pthread_t threads[kThreads];
  int started = 0, failures_total = 0;
  const char *why = "";
  for (int t = 0; t < kThreads; ++t) {
    workers[t] = (device_worker){model, NULL, {0}, t, 0, ""};
    if (fake.stream_create(&workers[t].stream, 1) != 0 ||
        !alloc_buffers(&workers[t].buffers, &kA, 100))
      break;
    if (pthread_create(&threads[t], NULL, device_work, &workers[t]) != 0)
      break;
    ++started;
  }
  if (started != kThreads) {
    why = "could not start the threads";
    failures_total = 1;
  }
  for (int t = 0; t < started; ++t) {
    pthread_join(threads[t], NULL);
    if (workers[t].failures && !failures_total)
      why = workers[t].why;
    failures_total += workers[t].failures;
  }
  for (int t = 0; t < kThreads; ++t) {
    free_buffers(&workers[t].buffers);
    if (workers[t].stream)
      fake.stream_destroy(workers[t].stream);
  }
  check(failures_total == 0,
        "device run: 3 threads x 40 device and host runs on one model", "%s",
        why);
  setenv("MOE_FAKE_CUDA_LOG", log_path, 1);

  /* Closing waits for queued work before it frees the pool. */
  device_ok("device run: before closing", model, &kA, 100, &a, 1, 1, s2);
  clear_log();
  moe_model_close(model);
  log = read_log();
  check(count_lines(log, "event sync ") == 1 &&
            line_index(log, "event sync ", 0) < line_index(log, "free ", 0) &&
            count_lines(log, "event destroy") == 4,
        "device run: closing waits for queued work, destroys the events",
        "log:\n%s", log);
  free(log);

  /* Tensor maps (an sm_90a folder): copied on the caller's stream before
   * the launches, from staging buffers reused only after their call's event
   * completed (four calls in flight). */
  setenv("MOE_FAKE_CUDA_CC", "90", 1);
  model = open_ok("device run: open a folder with tensor maps", maps, NULL);
  if (model) {
    fake.clobber();
    set_map_slots(100);
    clear_log();
    device_ok("device run: tensor maps, 100 tokens", model, &kC, 100, &a, 1, 1,
              s1);
    log = read_log();
    check(count_lines(log, "tensor map encode") == 2 &&
              count_lines_on(log, "htod 128", on_s1) == 2 &&
              count_lines(log, "htod") == 2 &&
              line_index(log, "htod 128", 1) < line_index(log, "launch ", 0) &&
              count_lines_on(log, "launch ", on_s1) == 2 &&
              count_lines(log, "bad") == 0,
          "device run: the maps are copied on the caller's stream, before "
          "the launches",
          "log:\n%s", log);
    free(log);
    clear_log();
    all = 1;
    for (int i = 0; i < 6; ++i) {
      fake.clobber();
      set_map_slots(3);
      all &= device_ok("device run: tensor maps, decode after a clobber", model,
                       &kC, 3, &a, 1, 1, s1);
    }
    log = read_log();
    snprintf(name, sizeof(name), "graph launch 2%s", on_s1);
    /* Calls 1-3 here use staging slots 1-3, calls 4-6 slots 0-2 again. */
    check(all && count_lines(log, "event sync ") == 3 &&
              line_index(log, "event sync ", 0) >
                  line_index(log, "tensor map encode", 5) &&
              line_index(log, "event sync ", 0) <
                  line_index(log, "tensor map encode", 6) &&
              count_lines_on(log, "htod 128", on_s1) == 12 &&
              count_lines(log, "graph capture begin") == 1 &&
              count_lines(log, name) == 6 && count_lines(log, "bad") == 0,
          "device run: re-encoded and copied before every replay; a staging "
          "buffer is reused after its call's event",
          "log:\n%s", log);
    free(log);
    unsetenv("MOE_FAKE_CUDA_TENSOR_MAPS");
    clear_log();
    for (int i = 0; i < 5; ++i)
      device_ok("device run: layer 1 of the folder", model, &kA, 3, &a, 1, 1,
                s1);
    log = read_log();
    check(count_lines(log, "event sync") == 0,
          "device run: a layer without maps never waits on the host",
          "log:\n%s", log);
    free(log);
    set_map_slots(3);
    setenv("MOE_FAKE_CUDA_FAIL", "cuMemcpyHtoDAsync_v2", 1);
    setenv("MOE_FAKE_CUDA_FAIL_BYTES", "128", 1);
    clear_log();
    expect_device_failure("device run: tensor maps, a failing copy", model, &kC,
                          3, &a, s1, MOE_ERROR_DEVICE,
                          "cuMemcpyHtoDAsync failed",
                          "layer 5: copying tensor map 0 to workspace offset "
                          "0");
    unsetenv("MOE_FAKE_CUDA_FAIL");
    unsetenv("MOE_FAKE_CUDA_FAIL_BYTES");
    log = read_log();
    check(count_lines(log, "graph launch") == 0 &&
              count_lines(log, "launch ") == 0,
          "device run: tensor maps, nothing launched after a failing copy",
          "log:\n%s", log);
    free(log);
    fake.clobber();
    device_ok("device run: tensor maps, runs again", model, &kC, 3, &a, 1, 1,
              s1);
    unsetenv("MOE_FAKE_CUDA_TENSOR_MAPS");
    moe_model_close(model);
  }

  /* A fresh model whose events cannot be created. */
  model = open_ok("device run: open again", folder, "cuda:0");
  if (model) {
    setenv("MOE_FAKE_CUDA_FAIL", "cuEventCreate", 1);
    expect_device_failure("device run: a failing cuEventCreate", model, &kA,
                          100, &a, s1, MOE_ERROR_OUT_OF_MEMORY,
                          "cuEventCreate failed: CUDA_ERROR_OUT_OF_MEMORY",
                          "(layer 1)");
    unsetenv("MOE_FAKE_CUDA_FAIL");
    device_ok("device run: runs after a failing cuEventCreate", model, &kA, 100,
              &a, 1, 1, s1);
    moe_model_close(model);
  }

  /* The caller releases its side; then the fake holds nothing. */
  free_buffers(&a);
  free_buffers(&b);
  free_buffers(&big);
  for (int i = 0; i < 9; ++i)
    if (allocated)
      fake.free(outputs[i]);
  fake.stream_destroy(s1);
  fake.stream_destroy(s2);
  fake.pop(&popped);
  fake.release(0);
  expect_released("device run");
  reset_env();
  dlclose(handle);
}

/*===----------------------------------------------------------------------===*
 * main
 *===----------------------------------------------------------------------===*/

static void prepare_json(void) {
  uint8_t data[16];
  static const float weights[4] = FAKE_WEIGHTS;
  char hash[65];
  encode_weights(weights, data);
  sha256_hex(data, sizeof(data), hash);
  snprintf(good_hash_json, sizeof(good_hash_json), "\"%s\"", hash);
  snprintf(good_cuda_layers, sizeof(good_cuda_layers),
           "[{\"layer\": %d, \"entry\": \"%s\", \"hidden_size\": %d, "
           "\"num_experts\": %d, \"top_k\": %d, \"cuda_kernels\": [\"%s\", "
           "\"%s\", \"%s\"]}, {\"layer\": %d, \"entry\": \"%s\", "
           "\"hidden_size\": %d, \"num_experts\": %d, \"top_k\": %d, "
           "\"cuda_kernels\": [\"%s\", \"%s\"]}]",
           FAKE_A_LAYER, FAKE_A_ENTRY, FAKE_A_HIDDEN, FAKE_A_EXPERTS,
           FAKE_A_TOPK, kKernelsA[0], kKernelsA[1], kKernelsA[2], FAKE_B_LAYER,
           FAKE_B_ENTRY, FAKE_B_HIDDEN, FAKE_B_EXPERTS, FAKE_B_TOPK,
           kKernelsB[0], kKernelsB[1]);
  snprintf(good_cpu_layers, sizeof(good_cpu_layers),
           "[{\"layer\": %d, \"entry\": \"%s\", \"hidden_size\": %d, "
           "\"num_experts\": %d, \"top_k\": %d}, {\"layer\": %d, \"entry\": "
           "\"%s\", \"hidden_size\": %d, \"num_experts\": %d, \"top_k\": %d}]",
           FAKE_A_LAYER, FAKE_A_ENTRY, FAKE_A_HIDDEN, FAKE_A_EXPERTS,
           FAKE_A_TOPK, FAKE_B_LAYER, FAKE_B_ENTRY, FAKE_B_HIDDEN,
           FAKE_B_EXPERTS, FAKE_B_TOPK);
  static const char *kernels_c[] = FAKE_CUDA_C_KERNEL_NAMES;
  snprintf(maps_layers, sizeof(maps_layers),
           "[{\"layer\": %d, \"entry\": \"%s\", \"hidden_size\": %d, "
           "\"num_experts\": %d, \"top_k\": %d, \"cuda_kernels\": [\"%s\", "
           "\"%s\", \"%s\"]}, {\"layer\": %d, \"entry\": \"%s\", "
           "\"hidden_size\": %d, \"num_experts\": %d, \"top_k\": %d, "
           "\"cuda_kernels\": [\"%s\", \"%s\"]}]",
           FAKE_A_LAYER, FAKE_A_ENTRY, FAKE_A_HIDDEN, FAKE_A_EXPERTS,
           FAKE_A_TOPK, kKernelsA[0], kKernelsA[1], kKernelsA[2], FAKE_C_LAYER,
           FAKE_C_ENTRY, FAKE_C_HIDDEN, FAKE_C_EXPERTS, FAKE_C_TOPK,
           kernels_c[0], kernels_c[1]);
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "--write-folder") == 0) {
    fake_cuda_so = argv[3];
    prepare_json();
    if (mkdir(argv[2], 0700) != 0 && errno != EEXIST)
      die(argv[2]);
    cuda_manifest m = default_cuda_manifest();
    write_manifest(argv[2], &m);
    weights_spec weights = {0};
    write_weights(argv[2], &weights);
    char path[4200];
    join(path, sizeof(path), argv[2], "libmoe_model.so");
    copy_file(fake_cuda_so, path);
    return 0;
  }
  if (argc != 5) {
    fprintf(stderr,
            "usage: %s FAKE_CUDA_DRIVER FAKE_CUDA_MODEL_SO FAKE_MODEL_SO "
            "FAKE_CUDA_DRIVER_OLD\n"
            "       %s --write-folder DIR FAKE_CUDA_MODEL_SO\n",
            argv[0], argv[0]);
    return 2;
  }
  fake_driver = argv[1];
  fake_cuda_so = argv[2];
  fake_cpu_so = argv[3];
  fake_driver_old = argv[4];
  prepare_json();
  make_temp_root(root, sizeof(root), "moe-cuda-runtime-test");
  join(log_path, sizeof(log_path), root, "fake-cuda.log");

  test_devices_and_targets();
  test_driver_loading(); /* first to load the fake driver */
  test_manifest();
  test_images();
  test_run();
  test_tensor_maps();
  test_threads();
  test_device_run();

  remove_temp_root(root);
  return report_summary();
}
