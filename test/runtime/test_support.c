/* test_support.c - see test_support.h. */
#define _GNU_SOURCE

#include "test_support.h"

#include <pthread.h>

#include "fake_model.h"
#include "sha256.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int passed, failed;

int check(int ok, const char *name, const char *format, ...) {
  if (ok) {
    ++passed;
    printf("PASS: %s\n", name);
  } else {
    ++failed;
    printf("FAIL: %s: ", name);
    va_list args;
    va_start(args, format);
    vprintf(format, args);
    va_end(args);
    printf("\n");
  }
  fflush(stdout);
  return ok;
}

int report_summary(void) {
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

int contains(const char *haystack, const char *needle) {
  return haystack && needle && strstr(haystack, needle) != NULL;
}

void die(const char *what) {
  fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what,
          strerror(errno));
  exit(2);
}

void join(char *out, size_t size, const char *folder, const char *name) {
  if ((size_t)snprintf(out, size, "%s/%s", folder, name) >= size) {
    fprintf(stderr, "%s: path too long\n", program_invocation_short_name);
    exit(2);
  }
}

void write_bytes(const char *path, const void *bytes, size_t size) {
  FILE *file = fopen(path, "wb");
  if (!file)
    die(path);
  if (size && fwrite(bytes, 1, size, file) != size)
    die(path);
  if (fclose(file) != 0)
    die(path);
}

void copy_file(const char *from, const char *to) {
  FILE *in = fopen(from, "rb");
  if (!in)
    die(from);
  FILE *out = fopen(to, "wb");
  if (!out)
    die(to);
  char buffer[65536];
  size_t got;
  while ((got = fread(buffer, 1, sizeof(buffer), in)) > 0)
    if (fwrite(buffer, 1, got, out) != got)
      die(to);
  if (ferror(in))
    die(from);
  fclose(in);
  if (fclose(out) != 0)
    die(to);
}

void encode_weights(const float values[4], uint8_t out[16]) {
  for (int i = 0; i < 4; ++i) {
    uint32_t bits;
    memcpy(&bits, &values[i], sizeof(bits));
    for (int b = 0; b < 4; ++b)
      out[4 * i + b] = (uint8_t)(bits >> (8 * b));
  }
}

void write_weights(const char *folder, const weights_spec *spec) {
  static const float kDefault[4] = FAKE_WEIGHTS;
  uint8_t data[16];
  encode_weights(spec->values ? spec->values : kDefault, data);
  char hash[65];
  sha256_hex(data, sizeof(data), hash);
  const char *metadata_hash = spec->metadata_hash ? spec->metadata_hash : hash;

  char header[1024];
  int length;
  if (*metadata_hash)
    length = snprintf(header, sizeof(header),
                      "{\"__metadata__\":{\"moec_weights_hash\":\"%s\"},",
                      metadata_hash);
  else
    length = snprintf(header, sizeof(header), "{");
  length += snprintf(header + length, sizeof(header) - (size_t)length,
                     "\"layer%d.w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_"
                     "offsets\":[%d,%d]},"
                     "\"layer%d.w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_"
                     "offsets\":[%d,%d]}}",
                     FAKE_A_LAYER, FAKE_A_OFFSET, FAKE_A_OFFSET + 8,
                     FAKE_B_LAYER, FAKE_B_OFFSET, FAKE_B_OFFSET + 8);
  while (length % 8 != 0) /* pad with spaces, as moec's writer does */
    header[length++] = ' ';

  uint8_t file[8 + sizeof(header) + sizeof(data)];
  size_t size = 0;
  uint64_t declared = (uint64_t)length;
  if (spec->header_length_past_end)
    declared = 8 + (uint64_t)length + sizeof(data) + 1000;
  for (int b = 0; b < 8; ++b)
    file[size++] = (uint8_t)(declared >> (8 * b));
  memcpy(file + size, header, (size_t)length);
  size += (size_t)length;
  memcpy(file + size, data, sizeof(data));
  size += sizeof(data);
  size -= spec->drop_tail < size ? spec->drop_tail : size;

  char path[4096];
  join(path, sizeof(path), folder, "weights.safetensors");
  write_bytes(path, file, size);
}

void make_temp_root(char *root, size_t size, const char *name) {
  const char *tmp = getenv("TMPDIR");
  snprintf(root, size, "%s/%s.XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
  if (!mkdtemp(root))
    die(root);
}

static int remove_entry(const char *path, const struct stat *status, int flag,
                        struct FTW *ftw) {
  (void)status;
  (void)flag;
  (void)ftw;
  return remove(path);
}

void remove_temp_root(const char *root) {
  if (!getenv("MOE_RUNTIME_TEST_KEEP"))
    nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  else
    printf("kept %s\n", root);
}

void run_workers(moe_model *model, void *(*work)(void *), int count,
                 const char *name) {
  enum { kMaxWorkers = 16 };
  worker workers[kMaxWorkers];
  pthread_t threads[kMaxWorkers];
  if (count > kMaxWorkers)
    count = kMaxWorkers;
  int started = 0;
  for (int t = 0; t < count; ++t) {
    workers[t] = (worker){model, t, 0, ""};
    if (pthread_create(&threads[t], NULL, work, &workers[t]) != 0)
      break;
    ++started;
  }
  int failures = started == count ? 0 : 1;
  const char *why = started == count ? "" : "pthread_create failed";
  for (int t = 0; t < started; ++t) {
    pthread_join(threads[t], NULL);
    if (workers[t].failures && !failures)
      why = workers[t].why;
    failures += workers[t].failures;
  }
  check(failures == 0, name, "%s", why);
}
