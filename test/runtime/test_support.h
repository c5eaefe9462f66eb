/* test_support.h - what the C runtime tests (runtime_test.c,
 * cuda_runtime_test.c) share: reporting checks, and writing the files of a
 * compiled folder (the weights of fake_model.h). */
#ifndef MOE_TEST_RUNTIME_TEST_SUPPORT_H
#define MOE_TEST_RUNTIME_TEST_SUPPORT_H

#include "moe/runtime.h"

#include <stddef.h>
#include <stdint.h>

/* Records one check: prints "PASS: name" or "FAIL: name: why" (why formatted
 * from `format`), and returns `ok`. */
int check(int ok, const char *name, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
/* Prints "N passed, M failed" and returns the exit status: 1 if any failed. */
int report_summary(void);

int contains(const char *haystack, const char *needle);
/* Exits with status 2 after printing `what` and errno's message. */
void die(const char *what);
void join(char *out, size_t size, const char *folder, const char *name);
void write_bytes(const char *path, const void *bytes, size_t size);
void copy_file(const char *from, const char *to);

/* The little-endian bytes of four f32 values: a data buffer. */
void encode_weights(const float values[4], uint8_t out[16]);

/* How to write (and spoil) weights.safetensors. */
typedef struct {
  const float *values; /* data buffer values; NULL: FAKE_WEIGHTS */
  const char
      *metadata_hash; /* NULL: the SHA-256 of the data; "": no metadata */
  size_t drop_tail;   /* bytes cut from the end of the file */
  int header_length_past_end; /* write a header length larger than the file */
} weights_spec;

/* Writes `folder`/weights.safetensors holding the two layers' tensors. */
void write_weights(const char *folder, const weights_spec *spec);

/* One thread's share of a concurrency test: what it runs on, its number, and
 * its failures with the first one's reason. */
typedef struct {
  moe_model *model;
  int index;
  int failures;
  char why[1024];
} worker;

/* Runs `work` on `count` (at most 16) threads sharing `model` and records one
 * check, `name`, that passes when every thread started and none failed. */
void run_workers(moe_model *model, void *(*work)(void *), int count,
                 const char *name);

/* Creates a fresh temporary directory named after `name` into `root`. */
void make_temp_root(char *root, size_t size, const char *name);
/* Removes `root` and everything in it, unless MOE_RUNTIME_TEST_KEEP is set. */
void remove_temp_root(const char *root);

#endif
