"""A fused CPU kernel for region search: float16 features in, each image's best window out.

The PyTorch path converts every chunk of float16 features into a float32 buffer and then runs a
matmul over it: two passes over the data and a GEMM over every grid cell. This kernel reads
every feature once and keeps the correlation in registers. With K active mask cells at window
offsets ``o_k = i·G + j``, the numerator of the window at flattened position ``q = y·G + x`` is
``Σ_k T[k, q + o_k]`` with ``T[k, p] = Σ_c K[c, k] · F[c, p]``; three correlations compute it:

* ``cells``: T as a register-blocked GEMM (up to 9 cells × 3 vectors of 16 grid cells, or 6 × 4)
  whose float16 rows are loaded and converted in registers ("direct"; a short tail of 1–4
  cells per row — 49 = 3·16 + 1 at 7×7 — goes through a column buffer), then a shift-and-add
  of K rows of T into the windows. Larger grids with a long tail convert blocks of rows into an
  L1 scratch first. Best for small masks: one cell, 3×3, brush strokes.
* ``shift``: ``num[q] += K[c, k] · F[c, q + o_k]`` directly, vectors over q with unaligned loads
  (positions with ``x ≥ W'`` wrap around and are ignored). Best when few windows remain and many
  cells are active (a 6×6 box on a 7×7 grid).
* ``dense``: the box is the whole grid, one window: a flat dot product of the image with the kernel.

The window norms come from the cached per-cell squared norms the same way, the cosines are
computed in vector form, and the first maximum (row-major) wins, as in the PyTorch path.
Software prefetch keeps the memory streaming while a block is correlated.

Arithmetic is float32 accumulation (blocked) of exactly converted float16 values; it agrees
with a float64 brute force to about 1e-6 (``bench/exactness.py`` and the tests).

The C source is compiled once per machine with the system C compiler (``-O3 -march=native``;
``VFS_KERNEL_CFLAGS`` overrides) into ``$VFS_KERNEL_DIR`` (default ``~/.cache/vfs/kernels``) and
loaded with ctypes; ctypes releases the GIL, so a small thread pool splits the images over the
cores. AVX-512 machines get the vector code; others a portable C version. Without a compiler, or
with ``VFS_NATIVE=0``, :func:`load` returns None and search uses the PyTorch path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

SOURCE = r"""
#include <stdint.h>
#include <string.h>
#include <math.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#define SCRATCH_FLOATS 6144     /* converted channel rows: stays in L1 */
#define MAXV 8                  /* accumulator vectors per pass of the shift kernel */
#define MAXT 16384              /* floats of per-cell accumulators of the cells kernel */
#define MAXL 1024               /* flattened window positions */
#define MAXTACC 4096            /* floats of per-lane accumulators of the tail columns */

#if defined(__SSE__) || defined(__AVX512F__)
#include <xmmintrin.h>
/* software prefetch a few KB ahead of the conversion: measured 10-30% faster than the hardware
   prefetcher alone (whose stream stalls while a block is correlated) and than a burst per block */
#define PREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T2)
#define PREFETCH_BYTES 4096
#else
#define PREFETCH(p) ((void)0)
#endif

enum { MODE_DENSE = 0, MODE_SHIFT = 1, MODE_CELLS = 2 };

static inline float f16_to_f32(uint16_t h) {
#if defined(__F16C__) || defined(__AVX512F__)
    return _cvtsh_ss(h);
#else
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { exp = 127 - 15 + 1; while (!(man & 0x400)) { man <<= 1; exp--; } man &= 0x3ff;
               bits = sign | (exp << 23) | (man << 13); }
    } else if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
    else bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f; memcpy(&f, &bits, 4); return f;
#endif
}

/* convert n float16 values to float32 (exact) */
static inline void convert(const uint16_t *src, float *dst, int64_t n, int64_t ahead) {
    int64_t i = 0;
    (void)ahead;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16) {
        PREFETCH((const char *)(src + i) + ahead);  /* never faults, even past the end */
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    }
    if (i + 8 <= n) {
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
        i += 8;
    }
#endif
    for (; i < n; i++) dst[i] = f16_to_f32(src[i]);
}

/* ---- shift kernel: acc[q] += kern[c*K + k] * x[c*gg + off[k] + q] for q < 16*nv ------------ */
#if defined(__AVX512F__)
/* two accumulator sets (even and odd active cells) keep enough FMA chains in flight */
#define FMA_(v) a##v = _mm512_fmadd_ps(wa, _mm512_loadu_ps(pa + 16 * v), a##v); \
                b##v = _mm512_fmadd_ps(wb, _mm512_loadu_ps(pb + 16 * v), b##v)
#define FMA1_(v) a##v = _mm512_fmadd_ps(wa, _mm512_loadu_ps(pa + 16 * v), a##v)
/* each channel block sums from zero and is then added: blocked summation, for accuracy */
#define LOAD_(v) __m512 a##v = _mm512_setzero_ps(), b##v = _mm512_setzero_ps()
#define STORE_(v) _mm512_storeu_ps(acc + 16 * v, _mm512_add_ps(_mm512_loadu_ps(acc + 16 * v), _mm512_add_ps(a##v, b##v)))
#define SHIFT(NV, LOADS, FMAS, FMAS1, STORES)                                                   \
static void shift##NV(const float *x, int cb, int gg, int K, const int32_t *off,                 \
                      const float *kern, float *acc) {                                           \
    LOADS;                                                                                       \
    for (int c = 0; c < cb; c++) {                                                               \
        const float *row = x + (int64_t)c * gg;                                                  \
        const float *kc = kern + (int64_t)c * K;                                                 \
        int k = 0;                                                                               \
        for (; k + 2 <= K; k += 2) {                                                             \
            const __m512 wa = _mm512_set1_ps(kc[k]), wb = _mm512_set1_ps(kc[k + 1]);             \
            const float *pa = row + off[k], *pb = row + off[k + 1];                              \
            FMAS;                                                                                \
        }                                                                                        \
        if (k < K) {                                                                             \
            const __m512 wa = _mm512_set1_ps(kc[k]);                                             \
            const float *pa = row + off[k];                                                      \
            FMAS1;                                                                               \
        }                                                                                        \
    }                                                                                            \
    STORES;                                                                                      \
}
#define L1 LOAD_(0)
#define L2 L1; LOAD_(1)
#define L3 L2; LOAD_(2)
#define L4 L3; LOAD_(3)
#define L5 L4; LOAD_(4)
#define L6 L5; LOAD_(5)
#define L7 L6; LOAD_(6)
#define L8 L7; LOAD_(7)
#define F1 FMA_(0)
#define F2 F1; FMA_(1)
#define F3 F2; FMA_(2)
#define F4 F3; FMA_(3)
#define F5 F4; FMA_(4)
#define F6 F5; FMA_(5)
#define F7 F6; FMA_(6)
#define F8 F7; FMA_(7)
#define G1 FMA1_(0)
#define G2 G1; FMA1_(1)
#define G3 G2; FMA1_(2)
#define G4 G3; FMA1_(3)
#define G5 G4; FMA1_(4)
#define G6 G5; FMA1_(5)
#define G7 G6; FMA1_(6)
#define G8 G7; FMA1_(7)
#define S1 STORE_(0)
#define S2 S1; STORE_(1)
#define S3 S2; STORE_(2)
#define S4 S3; STORE_(3)
#define S5 S4; STORE_(4)
#define S6 S5; STORE_(5)
#define S7 S6; STORE_(6)
#define S8 S7; STORE_(7)
SHIFT(1, L1, F1, G1, S1)
SHIFT(2, L2, F2, G2, S2)
SHIFT(3, L3, F3, G3, S3)
SHIFT(4, L4, F4, G4, S4)
SHIFT(5, L5, F5, G5, S5)
SHIFT(6, L6, F6, G6, S6)
SHIFT(7, L7, F7, G7, S7)
SHIFT(8, L8, F8, G8, S8)
typedef void (*shift_fn)(const float *, int, int, int, const int32_t *, const float *, float *);
static const shift_fn SHIFTS[9] = {0, shift1, shift2, shift3, shift4, shift5, shift6, shift7, shift8};
#endif

static void shift(const float *x, int cb, int gg, int K, const int32_t *off, const float *kern,
                  float *acc, int nv) {
#if defined(__AVX512F__)
    for (int v0 = 0; v0 < nv; v0 += MAXV) {
        int n = nv - v0 < MAXV ? nv - v0 : MAXV;
        SHIFTS[n](x + 16 * v0, cb, gg, K, off, kern, acc + 16 * v0);
    }
#else
    int L = 16 * nv;
    for (int c = 0; c < cb; c++) {
        const float *row = x + (int64_t)c * gg;
        for (int k = 0; k < K; k++) {
            const float w = kern[(int64_t)c * K + k];
            const float *p = row + off[k];
            for (int q = 0; q < L; q++) acc[q] += w * p[q];
        }
    }
#endif
}

/* ---- cells kernel: T[k*gp + p] += kern[c*K + k] * x[c*gp + p], a register-blocked GEMM over
   aligned rows (N vectors of cells by M active cells per block) ------------------------------- */
#if defined(__AVX512F__)
#define CELLS(N, M)                                                                              \
static void cells_##N##_##M(const float *x, int cb, int gp, const float *kern, int K, float *T, int ts) { \
    __m512 a[M][N];                                                                              \
    _Pragma("GCC unroll 8") for (int k = 0; k < M; k++)                                          \
        _Pragma("GCC unroll 8") for (int v = 0; v < N; v++)                                      \
            a[k][v] = _mm512_load_ps(T + (int64_t)k * ts + 16 * v);                              \
    for (int c = 0; c < cb; c++) {                                                               \
        const float *row = x + (int64_t)c * gp;                                                  \
        const float *kc = kern + (int64_t)c * K;                                                 \
        __m512 xv[N];                                                                            \
        _Pragma("GCC unroll 8") for (int v = 0; v < N; v++) xv[v] = _mm512_load_ps(row + 16 * v); \
        _Pragma("GCC unroll 8") for (int k = 0; k < M; k++) {                                    \
            const __m512 w = _mm512_set1_ps(kc[k]);                                              \
            _Pragma("GCC unroll 8") for (int v = 0; v < N; v++)                                  \
                a[k][v] = _mm512_fmadd_ps(w, xv[v], a[k][v]);                                    \
        }                                                                                        \
    }                                                                                            \
    _Pragma("GCC unroll 8") for (int k = 0; k < M; k++)                                          \
        _Pragma("GCC unroll 8") for (int v = 0; v < N; v++)                                      \
            _mm512_store_ps(T + (int64_t)k * ts + 16 * v, a[k][v]);                              \
}
#define CELLS_N(N) CELLS(N, 1) CELLS(N, 2) CELLS(N, 3) CELLS(N, 4) CELLS(N, 5) CELLS(N, 6)
CELLS_N(1) CELLS_N(2) CELLS_N(3) CELLS_N(4)
typedef void (*cells_fn)(const float *, int, int, const float *, int, float *, int);
#define CELLS_ROW(N) {0, cells_##N##_1, cells_##N##_2, cells_##N##_3, cells_##N##_4, cells_##N##_5, cells_##N##_6}
static const cells_fn CELLS_FNS[5][7] = {{0}, CELLS_ROW(1), CELLS_ROW(2), CELLS_ROW(3), CELLS_ROW(4)};
#endif

/* ---- direct cells kernel for small grids (G*G <= 64): the float16 rows of a whole image are
   converted in registers and correlated at once, no scratch: N row vectors by M active cells
   (N*M + N + 1 <= 32 registers). The tail cells of a row (G*G mod 16 <= 4 of them) go to col. */
#if defined(__AVX512F__)
#define DIRECT(N, M)                                                                             \
static void direct_##N##_##M(const uint16_t *f, int C, int gg, const float *kern, int K,         \
                             float *T, int ts, float *col, int tail) {                           \
    __m512 a[M][N];                                                                              \
    _Pragma("GCC unroll 16") for (int k = 0; k < M; k++)                                         \
        _Pragma("GCC unroll 8") for (int v = 0; v < N; v++) a[k][v] = _mm512_setzero_ps();       \
    for (int c = 0; c < C; c++) {                                                                \
        const uint16_t *row = f + (int64_t)c * gg;                                               \
        const float *kc = kern + (int64_t)c * K;                                                 \
        PREFETCH((const char *)row + PREFETCH_BYTES);                                            \
        PREFETCH((const char *)row + PREFETCH_BYTES + 64);                                       \
        __m512 xv[N];                                                                            \
        _Pragma("GCC unroll 8") for (int v = 0; v < N; v++)                                      \
            xv[v] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 16 * v)));        \
        for (int t = 0; t < tail; t++) col[(int64_t)t * C + c] = f16_to_f32(row[16 * N + t]);    \
        _Pragma("GCC unroll 16") for (int k = 0; k < M; k++) {                                   \
            const __m512 w = _mm512_set1_ps(kc[k]);                                              \
            _Pragma("GCC unroll 8") for (int v = 0; v < N; v++)                                  \
                a[k][v] = _mm512_fmadd_ps(w, xv[v], a[k][v]);                                    \
        }                                                                                        \
    }                                                                                            \
    _Pragma("GCC unroll 16") for (int k = 0; k < M; k++)                                         \
        _Pragma("GCC unroll 8") for (int v = 0; v < N; v++)                                      \
            _mm512_store_ps(T + (int64_t)k * ts + 16 * v, a[k][v]);                              \
}
#define DIRECT_N(N) DIRECT(N, 1) DIRECT(N, 2) DIRECT(N, 3) DIRECT(N, 4) DIRECT(N, 5) DIRECT(N, 6) \
                    DIRECT(N, 7) DIRECT(N, 8) DIRECT(N, 9)
DIRECT_N(1) DIRECT_N(2) DIRECT_N(3)
DIRECT(4, 1) DIRECT(4, 2) DIRECT(4, 3) DIRECT(4, 4) DIRECT(4, 5) DIRECT(4, 6)
typedef void (*direct_fn)(const uint16_t *, int, int, const float *, int, float *, int, float *, int);
#define DIRECT_ROW(N) {0, direct_##N##_1, direct_##N##_2, direct_##N##_3, direct_##N##_4, direct_##N##_5, \
                       direct_##N##_6, direct_##N##_7, direct_##N##_8, direct_##N##_9}
static const direct_fn DIRECT_FNS[5][10] = {{0}, DIRECT_ROW(1), DIRECT_ROW(2), DIRECT_ROW(3),
    {0, direct_4_1, direct_4_2, direct_4_3, direct_4_4, direct_4_5, direct_4_6, 0, 0, 0}};
#define DIRECT_MAXM(N) ((N) <= 3 ? 9 : 6)
#ifndef DIRECT_PASSES
#define DIRECT_PASSES 12  /* measured: up to 9 passes (4x4 cells at 14x14) still beat the scratch path */
#endif
#ifndef DIRECT_OK
#define DIRECT_OK 1
#endif
#endif

static void cells(const float *x, int cb, int gp, int K, const float *kern, float *T, int tstride) {
    const int nvg = gp / 16;
#if defined(__AVX512F__)
    for (int pb = 0; pb < nvg; pb += 4) {
        int n = nvg - pb < 4 ? nvg - pb : 4;
        for (int kg = 0; kg < K; kg += 6) {
            int m = K - kg < 6 ? K - kg : 6;
            CELLS_FNS[n][m](x + 16 * pb, cb, gp, kern + kg, K, T + (int64_t)kg * tstride + 16 * pb, tstride);
        }
    }
#else
    (void)nvg;
    for (int c = 0; c < cb; c++)
        for (int k = 0; k < K; k++) {
            const float w = kern[(int64_t)c * K + k];
            for (int p = 0; p < gp; p++) T[(int64_t)k * tstride + p] += w * x[(int64_t)c * gp + p];
        }
#endif
}

/* y[i] += a * x[i] for i < n */
static inline void axpy(float *y, float a, const float *x, int n) {
    int i = 0;
#if defined(__AVX512F__)
    const __m512 va = _mm512_set1_ps(a);
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
#endif
    for (; i < n; i++) y[i] += a * x[i];
}

/* sum of a[i] * b[i] for i < n */
static inline float dot(const float *a, const float *b, int n) {
    int i = 0;
    float s = 0.0f;
#if defined(__AVX512F__)
    __m512 v = _mm512_setzero_ps();
    for (; i + 16 <= n; i += 16) v = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), v);
    s = _mm512_reduce_add_ps(v);
#endif
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* acc[l] += sum over i = l (mod 16) of a[i] * b[i], i < n: per-lane partial dot products */
static inline void dot_acc(const float *a, const float *b, int n, float *acc) {
    int i = 0;
#if defined(__AVX512F__)
    __m512 v = _mm512_load_ps(acc);
    for (; i + 16 <= n; i += 16) v = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), v);
    _mm512_store_ps(acc, v);
#endif
    for (; i < n; i++) acc[i & 15] += a[i] * b[i];
}

/* the whole image against the kernel in one pass: float16 loads converted in registers.
   dot_image and dot_image2 do the same operations in the same order for each image, so an
   image's score is bit for bit the same whether it is scanned alone or in a pair (and so
   independent of shard boundaries and of how the images are split over threads). */
static float dot_image(const uint16_t *f, const float *kern, int64_t len) {
    int64_t i = 0;
    float s = 0.0f;
#if defined(__AVX512F__)
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (; i + 32 <= len; i += 32) {
        PREFETCH((const char *)(f + i) + PREFETCH_BYTES);
        a0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(f + i))), _mm512_loadu_ps(kern + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(f + i + 16))), _mm512_loadu_ps(kern + i + 16), a1);
    }
    s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
#endif
    float part[16] = {0};  /* partial sums keep the portable path as accurate as the vector one */
    for (; i < len; i++) part[i & 15] += f16_to_f32(f[i]) * kern[i];
    for (int l = 0; l < 16; l++) s += part[l];
    return s;
}

/* dot_image of two consecutive images at once: the kernel is loaded once for both */
static void dot_image2(const uint16_t *f, const uint16_t *g, const float *kern, int64_t len, float *out) {
#if defined(__AVX512F__)
    int64_t i = 0;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), b0 = _mm512_setzero_ps(),
           b1 = _mm512_setzero_ps();
    for (; i + 32 <= len; i += 32) {
        PREFETCH((const char *)(f + i) + PREFETCH_BYTES);
        PREFETCH((const char *)(g + i) + PREFETCH_BYTES);
        const __m512 k0 = _mm512_loadu_ps(kern + i), k1 = _mm512_loadu_ps(kern + i + 16);
        a0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(f + i))), k0, a0);
        b0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + i))), k0, b0);
        a1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(f + i + 16))), k1, a1);
        b1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + i + 16))), k1, b1);
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)), t = _mm512_reduce_add_ps(_mm512_add_ps(b0, b1));
    float p[16] = {0}, q[16] = {0};
    for (; i < len; i++) {
        p[i & 15] += f16_to_f32(f[i]) * kern[i];
        q[i & 15] += f16_to_f32(g[i]) * kern[i];
    }
    for (int l = 0; l < 16; l++) s += p[l];
    for (int l = 0; l < 16; l++) t += q[l];
    out[0] = s;
    out[1] = t;
#else
    out[0] = dot_image(f, kern, len);
    out[1] = dot_image(g, kern, len);
#endif
}

static inline float cosine(float num, float den2) {
    /* a window whose features are all zero has no direction: score 0, not NaN */
    float r = den2 > 0.0f ? sqrtf(den2) : 0.0f;
    float s = r > 0.0f ? num / r : 0.0f;
    return s > 1.0f ? 1.0f : (s < -1.0f ? -1.0f : s);
}

/* acc[q] = cosine(acc[q], nrm[q]) for q < n (n a multiple of 16) */
static void scores(float *acc, const float *nrm, int n) {
    int q = 0;
#if defined(__AVX512F__)
    const __m512 one = _mm512_set1_ps(1.0f), minus = _mm512_set1_ps(-1.0f), zero = _mm512_setzero_ps();
    for (; q + 16 <= n; q += 16) {
        __m512 d = _mm512_loadu_ps(nrm + q), a = _mm512_loadu_ps(acc + q);
        __mmask16 pos = _mm512_cmp_ps_mask(d, zero, _CMP_GT_OQ);  /* false for 0 and NaN: score 0 */
        __m512 s = _mm512_maskz_div_ps(pos, a, _mm512_maskz_sqrt_ps(pos, d));
        s = _mm512_mask_mov_ps(s, _mm512_cmp_ps_mask(s, one, _CMP_GT_OQ), one);  /* NaN stays NaN */
        s = _mm512_mask_mov_ps(s, _mm512_cmp_ps_mask(s, minus, _CMP_LT_OQ), minus);
        _mm512_storeu_ps(acc + q, s);
    }
#endif
    for (; q < n; q++) acc[q] = cosine(acc[q], nrm[q]);
}

/* Largest supported sizes; the Python side checks them before calling. */
int vfs_limits(int *scratch, int *maxt, int *maxl) { *scratch = SCRATCH_FLOATS; *maxt = MAXT; *maxl = MAXL; return 0; }

/*
 * feats (n, C, G, G) float16 and norms2 (n, G, G) float32, C-contiguous.
 * Window h x w; K active cells at flat offsets off[k] = i*G + j, squared weights msq[k];
 * kern (C, K) float32 and its transpose kern_t (K, C) (mode dense: kern (C, G*G), msq (G*G)).
 * Writes best[n] and flat[n] (first maximum, row-major over the (G-h+1) x (G-w+1) windows)
 * and, unless NULL, every window's score into all_scores (n, G-h+1, G-w+1).
 * Returns 0, or -1 where a size limit is exceeded.
 */
int vfs_scan(const uint16_t *feats, const float *norms2, int64_t n, int C, int G, int h, int w,
             int K, const int32_t *off, const float *msq, const float *kern, const float *kern_t, int mode,
             float *best, int64_t *flat, float *all_scores) {
    const int gg = G * G, Hp = G - h + 1, Wp = G - w + 1;
    const int L = (Hp - 1) * G + Wp;
    const int nv = mode == MODE_DENSE ? 1 : (L + 15) / 16;
    const int ts = (gg + 15) / 16 * 16;  /* row stride of the per-cell accumulators T */
    const int nfull = gg / 16, tail = gg % 16;
    /* cells mode: a short tail of cells (1 at 7x7, 4 at 14x14) is kept out of the vector rows
       and correlated as columns over channels, so no FMA works on a mostly empty vector */
    int direct = 0;  /* small grids: the register-only kernel reads the float16 rows itself */
#if defined(__AVX512F__)
    {   /* passes over the image: blocks of up to 4 row vectors times groups of active cells */
        const int blocks = (nfull + 3) / 4, bn = nfull < 4 ? nfull : 4;
        const int passes = blocks * ((K + DIRECT_MAXM(bn) - 1) / DIRECT_MAXM(bn));
        direct = DIRECT_OK && mode == MODE_CELLS && nfull >= 1 && tail <= 4 && (int64_t)C * tail <= SCRATCH_FLOATS &&
                 passes <= DIRECT_PASSES;
    }
#endif
    const int split = !direct && mode == MODE_CELLS && tail > 0 && tail <= 4 && nfull >= 1 &&
                      16 * K * tail <= MAXTACC;
    const int stride = mode == MODE_CELLS ? (split ? 16 * nfull : ts) : gg;
    if (C < 1 || G < 1 || h < 1 || w < 1 || h > G || w > G || K < 1) return -1;
    if (16 * nv > MAXL || stride + 16 * nv + 16 > SCRATCH_FLOATS) return -1;
    if (mode == MODE_CELLS && (int64_t)K * ts > MAXT) return -1;
    /* scratch rows are padded so vector loads past the last cell stay inside the buffer */
    float scratch[SCRATCH_FLOATS + 16 * MAXV + 16] __attribute__((aligned(64)));
    float T[mode == MODE_CELLS ? MAXT + 16 : 16] __attribute__((aligned(64)));
    float col[4][SCRATCH_FLOATS / 16] __attribute__((aligned(64)));
    float tacc[split ? MAXTACC : 16] __attribute__((aligned(64)));  /* 16 lanes per (cell, tail column) */
    float acc[MAXL + 16] __attribute__((aligned(64)));
    float nrm[MAXL + 16];
    int cb = (SCRATCH_FLOATS - 16 * nv - 16) / stride;
    if (cb > SCRATCH_FLOATS / 16) cb = SCRATCH_FLOATS / 16;
    if (cb < 1) cb = 1;
    if (cb > C) cb = C;
    memset(scratch, 0, sizeof(scratch));
    /* prefetch one block ahead: the next block streams in while this one is correlated */
    const int64_t ahead = (int64_t)cb * gg * 2 > PREFETCH_BYTES ? (int64_t)cb * gg * 2 : PREFETCH_BYTES;
    for (int64_t i = 0; i < n; i++) {
        const uint16_t *f = feats + i * (int64_t)C * gg;
        const float *n2 = norms2 + i * (int64_t)gg;
        memset(acc, 0, sizeof(float) * 16 * nv);
        if (mode == MODE_CELLS && !direct) memset(T, 0, sizeof(float) * (size_t)K * ts);
        if (split) memset(tacc, 0, sizeof(float) * 16 * (size_t)K * tail);
        if (mode == MODE_DENSE) {
            float nums[2];
            const int pair = i + 1 < n;  /* two images per pass share the kernel's loads */
            if (pair) dot_image2(f, f + (int64_t)C * gg, kern, (int64_t)C * gg, nums);
            else nums[0] = dot_image(f, kern, (int64_t)C * gg);
            for (int j = 0; j <= pair; j++) {
                const float *nn = n2 + (int64_t)j * gg;
                float den = 0.0f;
                for (int q = 0; q < gg; q++) den += msq[q] * nn[q];
                float s = cosine(nums[j], den);
                if (all_scores) all_scores[i + j] = s;
                best[i + j] = s;
                flat[i + j] = 0;
            }
            i += pair;
            continue;
        }
#if defined(__AVX512F__)
        if (direct) {
            for (int pb = 0; pb < nfull; pb += 4) {
                const int bn = nfull - pb < 4 ? nfull - pb : 4, maxm = DIRECT_MAXM(bn);
                for (int kg = 0; kg < K; kg += maxm) {
                    const int m = K - kg < maxm ? K - kg : maxm;
                    const int t = kg == 0 && pb + bn == nfull ? tail : 0;  /* the tail follows the last block */
                    DIRECT_FNS[bn][m](f + 16 * pb, C, gg, kern + kg, K, T + (int64_t)kg * ts + 16 * pb, ts, scratch, t);
                }
            }
            for (int k = 0; k < K; k++)
                for (int t = 0; t < tail; t++)
                    T[(int64_t)k * ts + 16 * nfull + t] = dot(kern_t + (int64_t)k * C, scratch + (int64_t)t * C, C);
        } else
#endif
        for (int c0 = 0; c0 < C; c0 += cb) {
            int m = C - c0 < cb ? C - c0 : cb;
            const uint16_t *src = f + (int64_t)c0 * gg;
            if (mode == MODE_SHIFT) {
                convert(src, scratch, (int64_t)m * gg, ahead);
                shift(scratch, m, gg, K, off, kern + (int64_t)c0 * K, acc, nv);
            } else if (split) {
                for (int r = 0; r < m; r++) {
                    const uint16_t *s = src + (int64_t)r * gg;
                    convert(s, scratch + (int64_t)r * stride, 16 * nfull, ahead);
                    for (int t = 0; t < tail; t++) col[t][r] = f16_to_f32(s[16 * nfull + t]);
                }
                cells(scratch, m, stride, K, kern + (int64_t)c0 * K, T, ts);
                for (int k = 0; k < K; k++)
                    for (int t = 0; t < tail; t++)
                        dot_acc(kern_t + (int64_t)k * C + c0, col[t], m, tacc + 16 * (k * tail + t));
            } else {
                for (int r = 0; r < m; r++) convert(src + (int64_t)r * gg, scratch + (int64_t)r * stride, gg, ahead);
                cells(scratch, m, stride, K, kern + (int64_t)c0 * K, T, ts);
            }
        }
        if (split)
            for (int k = 0; k < K; k++)
                for (int t = 0; t < tail; t++) {
                    const float *v = tacc + 16 * (k * tail + t);
                    float sum = 0.0f;
                    for (int l = 0; l < 16; l++) sum += v[l];
                    T[(int64_t)k * ts + 16 * nfull + t] = sum;
                }
        if (mode == MODE_CELLS)  /* shift-and-add the per-cell correlations into the windows */
            for (int k = 0; k < K; k++)  /* T has 16 floats of slack, so whole vectors are safe */
                axpy(acc, 1.0f, T + (int64_t)k * ts + off[k], 16 * nv);
        for (int q = 0; q < 16 * nv; q++) nrm[q] = 0.0f;
        for (int k = 0; k < K; k++)  /* the norms of the last image end the array: no over-read */
            axpy(nrm, msq[k], n2 + off[k], L);
        scores(acc, nrm, 16 * nv);  /* acc becomes the cosines, every flattened position at once */
        float bs = -INFINITY;
        int64_t bq = 0;
        for (int y = 0; y < Hp; y++) {
            for (int x = 0; x < Wp; x++) {
                float s = acc[y * G + x];
                int64_t wi = (int64_t)y * Wp + x;
                if (all_scores) all_scores[i * (int64_t)Hp * Wp + wi] = s;
                if (s > bs || (s != s && bs == bs)) { bs = s; bq = wi; }  /* first maximum; NaN wins, as in torch */
            }
        }
        best[i] = bs;
        flat[i] = bq;
    }
    return 0;
}
"""

_lock = threading.Lock()
_kernel: _Kernel | None = None
_tried = False
error: str | None = None  # why the kernel is unavailable, for diagnostics


def _cpu_key() -> str:
    flags = ""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith(("flags", "Features", "model name")):
                    flags += line
                    if line.startswith(("flags", "Features")):
                        break
    except OSError:
        pass
    return f"{platform.machine()}|{platform.system()}|{flags}"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _flags() -> list[str]:
    """Compiler flags; ``VFS_KERNEL_CFLAGS`` replaces the optimisation flags (e.g. to test the portable path)."""
    extra = os.environ.get("VFS_KERNEL_CFLAGS")
    return (extra.split() if extra else ["-O3", "-march=native"]) + ["-fPIC", "-shared", "-fno-math-errno", "-std=c99"]


def _build(directory: Path) -> Path:
    digest = hashlib.sha256((SOURCE + _cpu_key() + sys.version + " ".join(_flags())).encode()).hexdigest()[:16]
    target = directory / f"vfs_scan-{digest}.so"
    if target.exists():
        return target
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or clang) on PATH")
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        src = Path(tmp) / "vfs_scan.c"
        src.write_text(SOURCE)
        out = Path(tmp) / "vfs_scan.so"
        run = subprocess.run([cc, *_flags(), str(src), "-o", str(out), "-lm"], capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"{cc} failed: {run.stderr.strip()[:500]}")
        os.replace(out, target)  # atomic: a concurrent builder either sees nothing or the whole file
    return target


class _Kernel:
    def __init__(self, path: Path):
        lib = ctypes.CDLL(str(path))
        fn = lib.vfs_scan
        p = ctypes.c_void_p
        fn.argtypes = [p, p, ctypes.c_int64, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, p, p, p, p, ctypes.c_int, p, p, p]
        fn.restype = ctypes.c_int
        self._fn = fn
        self._lib = lib
        self.path = path
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0

    def _executor(self, threads: int) -> ThreadPoolExecutor:
        with _lock:
            if self._pool is None or self._pool_size != threads:
                if self._pool is not None:
                    self._pool.shutdown(wait=False)
                self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vfs-scan")
                self._pool_size = threads
            return self._pool

    def scan(self, segments: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]],
             plan: NativePlan, threads: int = 1) -> None:
        """For each (features, norms2, best, flat, all_scores or None) segment of (n, C, G, G) float16
        features and (n, G, G) float32 norms, fill best (n,), flat (n,) and all_scores (n, H', W').

        The images of all segments are cut into ``threads`` contiguous runs of equal length; the
        calling thread scans the first, pool threads the others (one hand-off each).
        """
        live = []
        for features, norms2, best, flat, all_scores in segments:
            n = len(features)
            if n == 0:
                continue
            if features.dtype != np.float16 or not features.flags.c_contiguous or features.ndim != 4:
                raise ValueError("features must be C-contiguous (n, C, G, G) float16")
            if norms2.dtype != np.float32 or not norms2.flags.c_contiguous or norms2.shape != (n, *features.shape[2:]):
                raise ValueError("cell norms must be C-contiguous (n, G, G) float32")
            live.append((features, norms2, best, flat, all_scores))
        total = sum(len(seg[0]) for seg in live)
        runs = max(1, min(threads, total // 64))
        cuts = [total * i // runs for i in range(runs + 1)]
        chunks: list[list[tuple]] = [[] for _ in range(runs)]
        offset = 0
        for seg in live:  # split the segments at the cuts
            n = len(seg[0])
            for r in range(runs):
                lo, hi = max(cuts[r], offset), min(cuts[r + 1], offset + n)
                if lo < hi:
                    chunks[r].append((*seg, lo - offset, hi - offset))
            offset += n

        def run(chunk: list[tuple]) -> int:
            code = 0
            for features, norms2, best, flat, all_scores, start, stop in chunk:
                _, c, g, _ = features.shape
                out = None if all_scores is None else all_scores[start:].ctypes.data
                code |= self._fn(features[start:].ctypes.data, norms2[start:].ctypes.data, stop - start, c, g,
                                 plan.h, plan.w, plan.k, plan.off.ctypes.data, plan.msq.ctypes.data,
                                 plan.kern.ctypes.data, plan.kern_t.ctypes.data, plan.mode_id,
                                 best[start:].ctypes.data, flat[start:].ctypes.data, out)
            return code

        if runs == 1:
            codes = [run(chunks[0])]
        else:
            futures = [self._executor(runs - 1).submit(run, chunk) for chunk in chunks[1:]]
            codes = [run(chunks[0])] + [f.result() for f in futures]
        if any(codes):
            raise RuntimeError("native scan rejected the query shape")


class NativePlan:
    """A query laid out for :meth:`_Kernel.scan`, with the cheaper of the kernel's two correlations.

    ``dense`` (the box is the whole grid: one window): a flat dot product of each image with the
    kernel. ``cells``: a register-blocked GEMM of the K active cells' kernels against every grid
    cell, then a shift-and-add of K rows into the windows; for grids up to 8×8 the float16 rows
    are converted in registers ("direct"), for larger ones through an L1 scratch. Best for
    small masks (one cell, 3×3, strokes). ``shift``: correlation directly on the flattened grid
    with unaligned loads; best when few windows remain and many cells are active.
    """

    SCRATCH, MAXT, MAXL = 6144, 16384, 1024  # the C source's limits

    def __init__(self, kernel: np.ndarray, weights: np.ndarray, grid: int, mode: str | None = None):
        """``kernel`` (C, h, w) = m²⊙Q/‖m⊙Q‖ over the bounding box; ``weights`` (h, w) the cropped mask."""
        c, h, w = kernel.shape
        self.h, self.w = h, w
        if h == grid and w == grid:
            mode = "dense"
        elif mode is None:
            mode = self.choose(grid, h, w, int((weights > 0).sum()))
        self.mode = mode
        self.mode_id = {"dense": 0, "shift": 1, "cells": 2}[mode]
        if mode == "dense":
            self.k = grid * grid
            self.off = np.zeros(1, np.int32)
            self.kern = np.ascontiguousarray(kernel.reshape(c, -1), dtype=np.float32)
            self.msq = np.ascontiguousarray((weights**2).reshape(-1), dtype=np.float32)
            self.kern_t = self.kern
        else:
            active = np.flatnonzero(weights.reshape(-1) > 0)
            self.k = int(active.size)
            self.off = np.ascontiguousarray((active // w) * grid + active % w, dtype=np.int32)
            self.kern = np.ascontiguousarray(kernel.reshape(c, -1)[:, active], dtype=np.float32)
            self.msq = np.ascontiguousarray((weights.reshape(-1)[active]) ** 2, dtype=np.float32)
            self.kern_t = np.ascontiguousarray(self.kern.T)  # (K, C): the cells kernel's tail columns

    @classmethod
    def fits(cls, mode: str, grid: int, h: int, w: int, active: int) -> bool:
        """Whether the C kernel's fixed buffers hold this query in ``mode``."""
        gg = grid * grid
        padded = -(-gg // 16) * 16
        length = (grid - h) * grid + grid - w + 1
        nv = -(-length // 16)
        if mode == "dense":
            return h == grid and w == grid and gg + 32 <= cls.SCRATCH
        if 16 * nv > cls.MAXL:
            return False
        if mode == "cells":
            return active * padded <= cls.MAXT and padded + 16 * nv + 16 <= cls.SCRATCH
        return gg + 16 * nv + 16 <= cls.SCRATCH

    @classmethod
    def choose(cls, grid: int, h: int, w: int, active: int) -> str:
        """The cheaper correlation by a per-channel cycle estimate, calibrated on this machine class
        (2-core Sapphire Rapids) with A/B runs of every window shape from 1×1 to 6×6 at
        G=7 and G=14 (see bench/RESULTS.md)."""
        gg = grid * grid
        full, tail = divmod(gg, 16)
        length = (grid - h) * grid + grid - w + 1
        shift_cost = active * -(-length // 16) * 0.9  # load-bound: unaligned loads, most split a cache line
        blocks, width = -(-full // 4), min(full, 4)
        passes = blocks * -(-active // (9 if width <= 3 else 6))
        if full >= 1 and tail <= 4 and passes <= 12:  # the register-only direct kernel (float16 read in place)
            cells_cost = (active * full + passes * width) * 0.5
        else:  # rows converted once into an L1 scratch, then a register-blocked GEMM
            cells_cost = active * (full + (tail > 4)) * 0.8
        if not cls.fits("cells", grid, h, w, active):
            return "shift"
        return "cells" if cells_cost <= shift_cost else "shift"

    @classmethod
    def supported(cls, grid: int, h: int, w: int) -> bool:
        return cls.fits("dense" if (h, w) == (grid, grid) else "shift", grid, h, w, 1)


def default_threads() -> int:
    """Threads a scan runs on: torch's intra-op count where torch is loaded (so search and model agree),
    else ``OMP_NUM_THREADS`` (which Ray and job schedulers set), else the CPUs this process may use."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        return max(1, torch.get_num_threads())
    configured = os.environ.get("OMP_NUM_THREADS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_MADV_POPULATE_READ = 22  # Linux >= 5.14
_libc = None


def populate(arrays: list[np.ndarray]) -> bool:
    """Map the pages of memory-mapped ``arrays`` in one system call per array (Linux).

    Faulting a large map in page by page costs about 2 µs per 4 KB page here, which made the
    first query after opening a 3 GB cache take 1.8 s instead of 0.25 s; ``MADV_POPULATE_READ``
    maps the same pages in milliseconds. Harmless where unsupported (returns False).
    """
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    try:
        if _libc is None:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            libc.madvise.restype = ctypes.c_int
            _libc = libc
        page = os.sysconf("SC_PAGE_SIZE")
        ok = True
        for array in arrays:
            if array.nbytes == 0:
                continue
            start = array.ctypes.data // page * page
            ok &= _libc.madvise(start, array.ctypes.data + array.nbytes - start, _MADV_POPULATE_READ) == 0
        return ok
    except (OSError, AttributeError, ValueError):
        return False


def load() -> _Kernel | None:
    """The compiled kernel, or None where it cannot be built (the torch path is used then)."""
    global _kernel, _tried, error
    if _tried:
        return _kernel
    with _lock:
        if _tried:
            return _kernel
        _tried = True
        if os.environ.get("VFS_NATIVE", "1").lower() in ("0", "false", "no", "off"):
            error = "disabled by VFS_NATIVE=0"
            return None
        base = Path(os.environ.get("VFS_KERNEL_DIR") or Path.home() / ".cache" / "vfs" / "kernels")
        try:
            _kernel = _Kernel(_build(base))
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            _kernel = None
        return _kernel
