/* peak.c - this machine's ceilings for the CPU benchmark (bench/run.sh compiles it with
 * clang -O3 -march=native -fopenmp).
 *
 *   FMA peak: every thread runs 12 independent AVX-512 FMA chains (zmm, f32) for a fixed
 *   number of steps; flops = threads * steps * 12 chains * 16 lanes * 2. Reported for 1 and
 *   2 threads (best of 5).
 *   BF16 dot-product peak (where the CPU has AVX512_BF16): the same with vdpbf16ps, which
 *   does 32 bf16 products summed pairwise into 16 f32 lanes: 64 flops an instruction. This is
 *   what oneDNN (torch's bf16 matmul) uses; moec's f32 path is bounded by the FMA peak.
 *   Read bandwidth: sum of a 512 MB float array, 2 threads (and 1), 8 independent vector
 *   accumulators per thread, best of 5 passes after one untimed pass.
 *
 *   peak [MB]        both (array of MB megabytes, default 512)
 *   peak read [MB]   only the read bandwidth (bench_cpu.py samples it around every block:
 *                    this VM's memory bandwidth drifts by tens of percent over minutes)
 *
 * Output: one line of JSON (fma_gflops_1t, fma_gflops_2t, read_gbs_1t, read_gbs_2t, ...).
 */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

#define CHAINS 12
static volatile float sink;

/* steps * CHAINS FMAs of 16 lanes on one thread; the result is kept alive through sink. */
static __attribute__((noinline)) float fma_chains(long steps, float seed) {
  __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  __m512 c0 = _mm512_set1_ps(seed), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0,
         c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
  for (long i = 0; i < steps; ++i) {
    c0 = _mm512_fmadd_ps(c0, a, b);
    c1 = _mm512_fmadd_ps(c1, a, b);
    c2 = _mm512_fmadd_ps(c2, a, b);
    c3 = _mm512_fmadd_ps(c3, a, b);
    c4 = _mm512_fmadd_ps(c4, a, b);
    c5 = _mm512_fmadd_ps(c5, a, b);
    c6 = _mm512_fmadd_ps(c6, a, b);
    c7 = _mm512_fmadd_ps(c7, a, b);
    c8 = _mm512_fmadd_ps(c8, a, b);
    c9 = _mm512_fmadd_ps(c9, a, b);
    c10 = _mm512_fmadd_ps(c10, a, b);
    c11 = _mm512_fmadd_ps(c11, a, b);
    __asm__ volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5));
    __asm__ volatile("" : "+v"(c6), "+v"(c7), "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11));
  }
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                           _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
  return _mm512_reduce_add_ps(s);
}

#ifdef __AVX512BF16__
static __attribute__((noinline)) float dpbf16_chains(long steps, float seed) {
  __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = a; /* 1.0 bf16 */
  __m512 c0 = _mm512_set1_ps(seed), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0,
         c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
  for (long i = 0; i < steps; ++i) {
    c0 = _mm512_dpbf16_ps(c0, a, b);
    c1 = _mm512_dpbf16_ps(c1, a, b);
    c2 = _mm512_dpbf16_ps(c2, a, b);
    c3 = _mm512_dpbf16_ps(c3, a, b);
    c4 = _mm512_dpbf16_ps(c4, a, b);
    c5 = _mm512_dpbf16_ps(c5, a, b);
    c6 = _mm512_dpbf16_ps(c6, a, b);
    c7 = _mm512_dpbf16_ps(c7, a, b);
    c8 = _mm512_dpbf16_ps(c8, a, b);
    c9 = _mm512_dpbf16_ps(c9, a, b);
    c10 = _mm512_dpbf16_ps(c10, a, b);
    c11 = _mm512_dpbf16_ps(c11, a, b);
    __asm__ volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5));
    __asm__ volatile("" : "+v"(c6), "+v"(c7), "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11));
  }
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                           _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
  return _mm512_reduce_add_ps(s);
}
#endif

static double fma_peak(int threads, int bf16) {
  const long steps = 200000000L / CHAINS; /* ~0.2 s a run at ~3.6 GHz */
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    double t0 = now();
#pragma omp parallel num_threads(threads)
    {
#ifdef __AVX512BF16__
      if (bf16)
        sink = dpbf16_chains(steps, (float)omp_get_thread_num());
      else
#endif
        sink = fma_chains(steps, (float)omp_get_thread_num());
    }
    double dt = now() - t0;
    double gflops = (double)threads * steps * CHAINS * 16 * (bf16 ? 4 : 2) / dt / 1e9;
    if (gflops > best)
      best = gflops;
  }
  return best;
}

static double read_bw(const float *data, size_t n, int threads) {
  double best = 0;
  for (int rep = 0; rep < 8; ++rep) {
    float total = 0;
    double t0 = now();
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      int id = omp_get_thread_num(), nt = omp_get_num_threads();
      size_t chunk = (n / nt) & ~(size_t)127, begin = id * chunk;
      size_t end = id == nt - 1 ? n : begin + chunk;
      __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0,
             s7 = s0;
      size_t i = begin;
      for (; i + 128 <= end; i += 128) {
        s0 = _mm512_add_ps(s0, _mm512_load_ps(data + i));
        s1 = _mm512_add_ps(s1, _mm512_load_ps(data + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_load_ps(data + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_load_ps(data + i + 48));
        s4 = _mm512_add_ps(s4, _mm512_load_ps(data + i + 64));
        s5 = _mm512_add_ps(s5, _mm512_load_ps(data + i + 80));
        s6 = _mm512_add_ps(s6, _mm512_load_ps(data + i + 96));
        s7 = _mm512_add_ps(s7, _mm512_load_ps(data + i + 112));
      }
      float rest = 0;
      for (; i < end; ++i)
        rest += data[i];
      __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)),
                               _mm512_add_ps(_mm512_add_ps(s4, s5), _mm512_add_ps(s6, s7)));
      total += _mm512_reduce_add_ps(s) + rest;
    }
    double dt = now() - t0;
    sink = total;
    if (rep == 0)
      continue; /* untimed: faults, TLB */
    double gbs = n * sizeof(float) / dt / 1e9;
    if (gbs > best)
      best = gbs;
  }
  return best;
}

int main(int argc, char **argv) {
  int read_only = argc > 1 && strcmp(argv[1], "read") == 0;
  if (read_only)
    --argc, ++argv;
  size_t mb = argc > 1 ? strtoul(argv[1], 0, 10) : 512;
  size_t n = mb * (1 << 20) / sizeof(float);
  float *data = aligned_alloc(64, n * sizeof(float));
  if (!data) {
    fprintf(stderr, "peak: cannot allocate %zu MB\n", mb);
    return 1;
  }
#pragma omp parallel for num_threads(2) schedule(static)
  for (size_t i = 0; i < n; ++i)
    data[i] = (float)(i & 1023) * 1e-3f;

  double r2 = read_bw(data, n, 2), r1 = read_bw(data, n, 1);
  if (read_only) {
    printf("{\"read_gbs_1t\": %.2f, \"read_gbs_2t\": %.2f, \"array_mb\": %zu}\n", r1, r2, mb);
  } else {
    double f1 = fma_peak(1, 0), f2 = fma_peak(2, 0);
#ifdef __AVX512BF16__
    double b2 = fma_peak(2, 1);
#else
    double b2 = 0;
#endif
    printf("{\"fma_gflops_1t\": %.1f, \"fma_gflops_2t\": %.1f, \"bf16_dp_gflops_2t\": %.1f, "
           "\"read_gbs_1t\": %.2f, \"read_gbs_2t\": %.2f, \"array_mb\": %zu, "
           "\"fma_chains\": %d}\n",
           f1, f2, b2, r1, r2, mb, CHAINS);
  }
  free(data);
  return 0;
}
