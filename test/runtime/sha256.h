/* sha256.h - a compact SHA-256 for the runtime test (FIPS 180-4). */
#ifndef MOE_TEST_RUNTIME_SHA256_H
#define MOE_TEST_RUNTIME_SHA256_H

#include <stddef.h>

/* Writes the lowercase hex digest of data[0..size) and a NUL to hex[0..64]. */
void sha256_hex(const void *data, size_t size, char hex[65]);

#endif
