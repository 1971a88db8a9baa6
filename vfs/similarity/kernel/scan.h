/*
 * The fused region-search scan, written once over the vector layer of isa.h and compiled once
 * per instruction set; the object of each ISA exports vfs_scan_<isa> (see kernel/__init__.py for
 * the algorithm: the cells, shift, lanes and dense correlations, then cosines and the first maximum).
 *
 * Buffers are padded in units of 16 floats whatever the vector width, so every ISA accepts the
 * same query shapes (the limits below, checked by NativePlan.fits on the Python side).
 */
#include <stdlib.h>
#include "isa.h"

#define SCRATCH_FLOATS 6144     /* converted channel rows: stays in L1 */
#define MAXT 16384              /* floats of per-cell accumulators of the cells kernel */
#define MAXL 1024               /* flattened window positions */
#define MAXTACC 4096            /* floats of per-lane accumulators of the tail columns */
#define MAXX 65536              /* floats of one transposed block of 16 channels in lanes mode */
#ifndef LANES_GROUP
#define LANES_GROUP 4096        /* floats of transposed blocks per group in lanes mode (16 KB: L1) */
#endif
#define MAXQ 65536              /* floats of the query's vectors in lanes mode */
#define PREFETCH_BYTES 4096     /* software prefetch distance (measured 10-30% faster than none) */
#define MAXV16 8                /* slack, in 16-float units, after the scratch rows */

#ifndef VFS_PF_NEXT
#define VFS_PF_NEXT 1           /* direct kernel: prefetch the next image's rows during the first pass */
#endif
#ifndef PASS_COST
#define PASS_COST 16            /* per pass over a channel: loop, weight broadcasts, re-reading rows (measured) */
#endif
#ifndef DIRECT_PASSES
#define DIRECT_PASSES DIRECT_PASSES_DEFAULT
#endif

enum { MODE_DENSE = 0, MODE_SHIFT = 1, MODE_CELLS = 2, MODE_LANES = 3 };

static inline float f16_to_f32(uint16_t h) { return HALF1(h); }

/* convert n float16 values to float32 (exact) */
static inline void convert(const uint16_t *src, float *dst, int64_t n, int64_t ahead) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        if ((i & 31) == 0) PREFETCH((const char *)(src + i) + ahead);  /* never faults, even past the end */
        VSTOREU(dst + i, VHALF(src + i));
    }
    for (; i < n; i++) dst[i] = f16_to_f32(src[i]);
}

/* ---- shift kernel: acc[q] += kern[c*K + k] * x[c*gg + off[k] + q] for q < VW*nv ----------- */
/* two accumulator sets (even and odd active cells) keep enough FMA chains in flight */
#define FMA_(v) a##v = VFMA(wa, VLOADU(pa + VW * v), a##v); b##v = VFMA(wb, VLOADU(pb + VW * v), b##v)
#define FMA1_(v) a##v = VFMA(wa, VLOADU(pa + VW * v), a##v)
/* each channel block sums from zero and is then added: blocked summation, for accuracy */
#define LOAD_(v) vf a##v = VZERO(), b##v = VZERO()
#define STORE_(v) VSTOREU(acc + VW * v, VADD(VLOADU(acc + VW * v), VADD(a##v, b##v)))
#define SHIFT(NV, LOADS, FMAS, FMAS1, STORES)                                                   \
static void shift##NV(const float *x, int cb, int gg, int K, const int32_t *off,                 \
                      const float *kern, float *acc) {                                           \
    LOADS;                                                                                       \
    for (int c = 0; c < cb; c++) {                                                               \
        const float *row = x + (int64_t)c * gg;                                                  \
        const float *kc = kern + (int64_t)c * K;                                                 \
        int k = 0;                                                                               \
        for (; k + 2 <= K; k += 2) {                                                             \
            const vf wa = VSET1(kc[k]), wb = VSET1(kc[k + 1]);                                   \
            const float *pa = row + off[k], *pb = row + off[k + 1];                              \
            FMAS;                                                                                \
        }                                                                                        \
        if (k < K) {                                                                             \
            const vf wa = VSET1(kc[k]);                                                          \
            const float *pa = row + off[k];                                                      \
            FMAS1;                                                                               \
        }                                                                                        \
    }                                                                                            \
    STORES;                                                                                      \
}
#define L1_ LOAD_(0)
#define L2_ L1_; LOAD_(1)
#define L3_ L2_; LOAD_(2)
#define L4_ L3_; LOAD_(3)
#define L5_ L4_; LOAD_(4)
#define L6_ L5_; LOAD_(5)
#define L7_ L6_; LOAD_(6)
#define L8_ L7_; LOAD_(7)
#define F1_ FMA_(0)
#define F2_ F1_; FMA_(1)
#define F3_ F2_; FMA_(2)
#define F4_ F3_; FMA_(3)
#define F5_ F4_; FMA_(4)
#define F6_ F5_; FMA_(5)
#define F7_ F6_; FMA_(6)
#define F8_ F7_; FMA_(7)
#define G1_ FMA1_(0)
#define G2_ G1_; FMA1_(1)
#define G3_ G2_; FMA1_(2)
#define G4_ G3_; FMA1_(3)
#define G5_ G4_; FMA1_(4)
#define G6_ G5_; FMA1_(5)
#define G7_ G6_; FMA1_(6)
#define G8_ G7_; FMA1_(7)
#define S1_ STORE_(0)
#define S2_ S1_; STORE_(1)
#define S3_ S2_; STORE_(2)
#define S4_ S3_; STORE_(3)
#define S5_ S4_; STORE_(4)
#define S6_ S5_; STORE_(5)
#define S7_ S6_; STORE_(6)
#define S8_ S7_; STORE_(7)
SHIFT(1, L1_, F1_, G1_, S1_)
SHIFT(2, L2_, F2_, G2_, S2_)
SHIFT(3, L3_, F3_, G3_, S3_)
SHIFT(4, L4_, F4_, G4_, S4_)
SHIFT(5, L5_, F5_, G5_, S5_)
SHIFT(6, L6_, F6_, G6_, S6_)
#if MAXV >= 8
SHIFT(7, L7_, F7_, G7_, S7_)
SHIFT(8, L8_, F8_, G8_, S8_)
#endif
typedef void (*shift_fn)(const float *, int, int, int, const int32_t *, const float *, float *);
#if MAXV >= 8
static const shift_fn SHIFTS[9] = {0, shift1, shift2, shift3, shift4, shift5, shift6, shift7, shift8};
#else
static const shift_fn SHIFTS[7] = {0, shift1, shift2, shift3, shift4, shift5, shift6};
#endif

/* nv vectors of VW floats */
static void shift(const float *x, int cb, int gg, int K, const int32_t *off, const float *kern,
                  float *acc, int nv) {
    for (int v0 = 0; v0 < nv; v0 += MAXV) {
        int n = nv - v0 < MAXV ? nv - v0 : MAXV;
        SHIFTS[n](x + VW * v0, cb, gg, K, off, kern, acc + VW * v0);
    }
}

#if defined(__GNUC__) && !defined(__clang__)
#define UNROLL _Pragma("GCC unroll 16")
#else
#define UNROLL
#endif

/* ---- cells kernel: T[k*ts + p] += kern[c*K + k] * x[c*gp + p], a register-blocked GEMM over
   aligned rows (N vectors of cells by M active cells per block) ------------------------------- */
#define CELLS(N, M)                                                                              \
static void cells_##N##_##M(const float *x, int cb, int gp, const float *kern, int K, float *T, int ts) { \
    vf a[M][N];                                                                                  \
    UNROLL for (int k = 0; k < M; k++)                                                           \
        UNROLL for (int v = 0; v < N; v++)                                                       \
            a[k][v] = VLOAD(T + (int64_t)k * ts + VW * v);                                       \
    for (int c = 0; c < cb; c++) {                                                               \
        const float *row = x + (int64_t)c * gp;                                                  \
        const float *kc = kern + (int64_t)c * K;                                                 \
        vf xv[N];                                                                                \
        UNROLL for (int v = 0; v < N; v++) xv[v] = VLOAD(row + VW * v);                          \
        UNROLL for (int k = 0; k < M; k++) {                                                     \
            const vf w = VSET1(kc[k]);                                                           \
            UNROLL for (int v = 0; v < N; v++)                                                   \
                a[k][v] = VFMA(w, xv[v], a[k][v]);                                               \
        }                                                                                        \
    }                                                                                            \
    UNROLL for (int k = 0; k < M; k++)                                                           \
        UNROLL for (int v = 0; v < N; v++)                                                       \
            VSTORE(T + (int64_t)k * ts + VW * v, a[k][v]);                                       \
}

/* ---- direct cells kernel for small grids: the float16 rows of a whole image are converted in
   registers and correlated at once, no scratch: N row vectors by M active cells. The tail cells
   of a row (G*G mod VW <= 4 of them) go to col. */
#define DIRECT(N, M)                                                                             \
static void direct_##N##_##M(const uint16_t *f, int C, int gg, const float *kern, int K,         \
                             float *T, int ts, float *col, int tail, int pf) {                   \
    vf a[M][N];                                                                                  \
    UNROLL for (int k = 0; k < M; k++)                                                           \
        UNROLL for (int v = 0; v < N; v++) a[k][v] = VZERO();                                    \
    const int64_t image = (int64_t)C * gg;                                                       \
    for (int c = 0; c < C; c++) {                                                                \
        const uint16_t *row = f + (int64_t)c * gg;                                               \
        const float *kc = kern + (int64_t)c * K;                                                 \
        /* first pass: the same row of the next image streams in (passes over other columns     \
           of this image then find all of it in cache) */                                        \
        if (VFS_PF_NEXT && pf) for (int b = 0; b < 2 * gg; b += 64) PREFETCH((const char *)(row + image) + b); \
        if (!VFS_PF_NEXT) { PREFETCH((const char *)row + PREFETCH_BYTES); PREFETCH((const char *)row + PREFETCH_BYTES + 64); } \
        vf xv[N];                                                                                \
        UNROLL for (int v = 0; v < N; v++) xv[v] = VHALF(row + VW * v);                          \
        for (int t = 0; t < tail; t++) col[(int64_t)t * C + c] = f16_to_f32(row[VW * N + t]);    \
        UNROLL for (int k = 0; k < M; k++) {                                                     \
            const vf w = VSET1(kc[k]);                                                           \
            UNROLL for (int v = 0; v < N; v++)                                                   \
                a[k][v] = VFMA(w, xv[v], a[k][v]);                                               \
        }                                                                                        \
    }                                                                                            \
    UNROLL for (int k = 0; k < M; k++)                                                           \
        UNROLL for (int v = 0; v < N; v++)                                                       \
            VSTORE(T + (int64_t)k * ts + VW * v, a[k][v]);                                       \
}

#define BOTH(N, M) CELLS(N, M) DIRECT(N, M)
#define BOTH_N(N) BOTH(N, 1) BOTH(N, 2) BOTH(N, 3) BOTH(N, 4) BOTH(N, 5) BOTH(N, 6) BOTH(N, 7) BOTH(N, 8) BOTH(N, 9)
BOTH_N(1) BOTH_N(2) BOTH_N(3) BOTH_N(4)
typedef void (*cells_fn)(const float *, int, int, const float *, int, float *, int);
typedef void (*direct_fn)(const uint16_t *, int, int, const float *, int, float *, int, float *, int, int);
#define CELLS_ROW(N) {0, cells_##N##_1, cells_##N##_2, cells_##N##_3, cells_##N##_4, cells_##N##_5, \
                      cells_##N##_6, cells_##N##_7, cells_##N##_8, cells_##N##_9}
#define DIRECT_ROW(N) {0, direct_##N##_1, direct_##N##_2, direct_##N##_3, direct_##N##_4, direct_##N##_5, \
                       direct_##N##_6, direct_##N##_7, direct_##N##_8, direct_##N##_9}
static const cells_fn CELLS_FNS[5][10] = {{0}, CELLS_ROW(1), CELLS_ROW(2), CELLS_ROW(3), CELLS_ROW(4)};
static const direct_fn DIRECT_FNS[5][10] = {{0}, DIRECT_ROW(1), DIRECT_ROW(2), DIRECT_ROW(3), DIRECT_ROW(4)};

/* The register block of the cells kernels: N row vectors (by up to MAXM(N) active cells) chosen
   for the fewest cycles per channel, counted in FMA-port operations: N conversions per pass where
   the kernel converts float16 itself (direct), N*M FMAs, at least 8 per pass (4-cycle FMA
   latency on 2 ports: fewer independent accumulators leave the ports idle), plus PASS_COST per
   pass. Measured (CPU time, 3,925 images, AMD EPYC): AVX2 3×3 and strokes at 7×7 take 20-35% less
   than with the widest block; AVX-512 3×3 at 14×14 keeps the widest (3 passes, not 4). */
static int block_cost(int nfull, int K, int n, int convert, int *passes) {
    int cost = 0;
    *passes = 0;
    for (int pb = 0; pb < nfull; pb += n) {
        const int bn = nfull - pb < n ? nfull - pb : n, maxm = MAXM(bn);
        for (int kg = 0; kg < K; kg += maxm) {
            const int m = K - kg < maxm ? K - kg : maxm, ops = bn * m + (convert ? bn : 0);
            cost += (ops > 8 ? ops : 8) + PASS_COST;
            ++*passes;
        }
    }
    return cost;
}

static int block_rows(int nfull, int K, int convert, int *cost, int *passes) {
    int best = 1, best_cost = 1 << 30, best_passes = 0;
    for (int n = 1; n <= NB; n++) {
#ifdef VFS_FIXED_NB
        if (n != (nfull < VFS_FIXED_NB ? nfull : VFS_FIXED_NB)) continue;
#endif
        int p, c = block_cost(nfull, K, n, convert, &p);
        if (c <= best_cost) { best = n; best_cost = c; best_passes = p; }  /* ties: fewer passes */
    }
    if (cost) *cost = best_cost;
    if (passes) *passes = best_passes;
    return best;
}

/* gp: row stride, a multiple of VW; T rows of stride ts */
static void cells(const float *x, int cb, int gp, int K, const float *kern, float *T, int tstride, int nb) {
    const int nvg = gp / VW;
    for (int pb = 0; pb < nvg; pb += nb) {
        int n = nvg - pb < nb ? nvg - pb : nb;
        const int maxm = MAXM(n);
        for (int kg = 0; kg < K; kg += maxm) {
            int m = K - kg < maxm ? K - kg : maxm;
            CELLS_FNS[n][m](x + VW * pb, cb, gp, kern + kg, K, T + (int64_t)kg * tstride + VW * pb, tstride);
        }
    }
}

/* ---- lanes kernel: channels in lanes. Each group of blocks of VW channels is transposed into
   X[b][p][l] = F[b*VW + l][p] (float32, cell-major, zero past C; a group fits in L1), then a tile of
   R window rows by XW windows keeps one partial-sum vector per window in registers while the active
   cells' query vectors Q[b][k][l] = kern[b*VW + l, k] stream past: one aligned load and one FMA per
   VW multiply-adds, only the windows' own cells, every lane used. The partial sums wait in V
   (window-major, like X) between groups; each window's lanes are summed once, at the end. Reading
   the image a group at a time, interleaved with the arithmetic, keeps the memory busy throughout. */
#define LANES(R, XW)                                                                             \
static void lanes_##R##_##XW(const float *X, int nb, int gg, int G, int K, const int32_t *off,   \
                             const float *Q, float *V, int first, const char *pf, int64_t pf_lines) { \
    const int64_t gs = (int64_t)G * VW;  /* one window row further */                            \
    int64_t line = 0;                                                                            \
    vf a[R][XW];                                                                                 \
    UNROLL for (int r = 0; r < R; r++)                                                           \
        UNROLL for (int x = 0; x < XW; x++) a[r][x] = first ? VZERO() : VLOAD(V + r * gs + x * VW); \
    for (int b = 0; b < nb; b++) {                                                               \
        const float *xb = X + (int64_t)b * gg * VW, *qb = Q + (int64_t)b * K * VW;              \
        for (int k = 0; k < K; k++) {                                                            \
            if (line < pf_lines) { PREFETCH(pf + 64 * line); PREFETCH(pf + 64 * line + 64); line += 2; } \
            const vf q = VLOAD(qb + (int64_t)k * VW);                                            \
            const float *p = xb + (int64_t)off[k] * VW;                                          \
            /* row pointers first: each load is then one base + constant displacement */         \
            const float *pr[R];                                                                  \
            UNROLL for (int r = 0; r < R; r++) pr[r] = p + r * gs;                               \
            UNROLL for (int r = 0; r < R; r++)                                                   \
                UNROLL for (int x = 0; x < XW; x++)                                              \
                    a[r][x] = VFMA(q, VLOAD(pr[r] + x * VW), a[r][x]);                           \
        }                                                                                        \
    }                                                                                            \
    UNROLL for (int r = 0; r < R; r++)                                                           \
        UNROLL for (int x = 0; x < XW; x++) VSTORE(V + r * gs + x * VW, a[r][x]);                \
}
#define LANES_R(R) LANES(R, 1) LANES(R, 2) LANES(R, 3) LANES(R, 4) LANES(R, 5) LANES(R, 6) LANES(R, 7) LANES(R, 8)
LANES_R(1) LANES_R(2) LANES_R(3) LANES_R(4)
typedef void (*lanes_fn)(const float *, int, int, int, int, const int32_t *, const float *, float *, int,
                         const char *, int64_t);
#define LANES_ROW(R) {0, lanes_##R##_1, lanes_##R##_2, lanes_##R##_3, lanes_##R##_4, lanes_##R##_5, \
                      lanes_##R##_6, lanes_##R##_7, lanes_##R##_8}
#define LANES_MAXR 4
#define LANES_MAXX 8
static const lanes_fn LANES_FNS[LANES_MAXR + 1][LANES_MAXX + 1] = {{0}, LANES_ROW(1), LANES_ROW(2), LANES_ROW(3), LANES_ROW(4)};

/* The tile of the lanes kernel for Hp x Wp windows: the fewest cycles counted as FMAs (at least 8
   per step: 4-cycle FMA latency on 2 ports) plus a query load and the loop per step, over tiles
   of R rows by XW windows (R*XW <= NACC); windows are cut into near-equal runs of XW. */
static void lanes_tile(int Hp, int Wp, int *rows, int *cols) {
    int best = 1 << 30;
    *rows = *cols = 1;
    for (int xw = 1; xw <= LANES_MAXX && xw <= Wp; xw++)
        for (int r = 1; r <= LANES_MAXR && r <= Hp && r * xw <= NACC; r++) {
            const int nx = (Wp + xw - 1) / xw, ny = (Hp + r - 1) / r;
            const int cx = (Wp + nx - 1) / nx, cy = (Hp + ny - 1) / ny;  /* the widest tile */
            const int cost = nx * ny * ((cx * cy > 8 ? cx * cy : 8) + 2);
            if (cost < best) { best = cost; *rows = cy; *cols = cx; }
        }
}

/* one block: xb[p][l] = fb[l*gg + p] as float32 for l < lanes, zero beyond */
static void lanes_block(const uint16_t *fb, int lanes, int gg, float *xb) {
    const int pfull = gg / VW * VW;
    if (lanes >= VW) {
        int p = 0;
#if defined(VTRANSPOSE2)
        for (; p + 2 * VW <= gg; p += 2 * VW) vtranspose_half2(fb + p, gg, xb + (int64_t)p * VW);
#endif
        for (; p < pfull; p += VW) vtranspose_half(fb + p, gg, xb + (int64_t)p * VW);
        for (int p = pfull; p < gg; p++)
            for (int l = 0; l < VW; l++) xb[(int64_t)p * VW + l] = f16_to_f32(fb[(int64_t)l * gg + p]);
    } else {
        for (int p = 0; p < gg; p++)
            for (int l = 0; l < VW; l++)
                xb[(int64_t)p * VW + l] = l < lanes ? f16_to_f32(fb[(int64_t)l * gg + p]) : 0.0f;
    }
}

/* y[i] += a * x[i] for i < n */
static inline void axpy(float *y, float a, const float *x, int n) {
    int i = 0;
    const vf va = VSET1(a);
    for (; i + VW <= n; i += VW) VSTOREU(y + i, VFMA(va, VLOADU(x + i), VLOADU(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

/* sum of a[i] * b[i] for i < n */
static inline float dot(const float *a, const float *b, int n) {
    int i = 0;
    vf v = VZERO();
    for (; i + VW <= n; i += VW) v = VFMA(VLOADU(a + i), VLOADU(b + i), v);
    float s = VSUM(v);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* acc[l] += sum over i = l (mod VW) of a[i] * b[i], i < n: per-lane partial dot products */
static inline void dot_acc(const float *a, const float *b, int n, float *acc) {
    int i = 0;
    vf v = VLOAD(acc);
    for (; i + VW <= n; i += VW) v = VFMA(VLOADU(a + i), VLOADU(b + i), v);
    VSTORE(acc, v);
    for (; i < n; i++) acc[i % VW] += a[i] * b[i];
}

/* the whole image against the kernel in one pass: float16 loads converted in registers.
   dot_image and dot_image2 do the same operations in the same order for each image, so an
   image's score is bit for bit the same whether it is scanned alone or in a pair (and so
   independent of shard boundaries and of how the images are split over threads). */
static float dot_image(const uint16_t *f, const float *kern, int64_t len) {
    int64_t i = 0;
    vf a0 = VZERO(), a1 = VZERO();
    for (; i + 2 * VW <= len; i += 2 * VW) {
        if ((i & 31) == 0) PREFETCH((const char *)(f + i) + PREFETCH_BYTES);
        a0 = VFMA(VHALF(f + i), VLOADU(kern + i), a0);
        a1 = VFMA(VHALF(f + i + VW), VLOADU(kern + i + VW), a1);
    }
    float s = VSUM(VADD(a0, a1));
    float part[16] = {0};  /* partial sums keep the tail as accurate as the vector part */
    for (; i < len; i++) part[i & 15] += f16_to_f32(f[i]) * kern[i];
    for (int l = 0; l < 16; l++) s += part[l];
    return s;
}

/* dot_image of two consecutive images at once: the kernel is loaded once for both */
static void dot_image2(const uint16_t *f, const uint16_t *g, const float *kern, int64_t len, float *out) {
    int64_t i = 0;
    vf a0 = VZERO(), a1 = VZERO(), b0 = VZERO(), b1 = VZERO();
    for (; i + 2 * VW <= len; i += 2 * VW) {
        if ((i & 31) == 0) {
            PREFETCH((const char *)(f + i) + PREFETCH_BYTES);
            PREFETCH((const char *)(g + i) + PREFETCH_BYTES);
        }
        const vf k0 = VLOADU(kern + i), k1 = VLOADU(kern + i + VW);
        a0 = VFMA(VHALF(f + i), k0, a0);
        b0 = VFMA(VHALF(g + i), k0, b0);
        a1 = VFMA(VHALF(f + i + VW), k1, a1);
        b1 = VFMA(VHALF(g + i + VW), k1, b1);
    }
    float s = VSUM(VADD(a0, a1)), t = VSUM(VADD(b0, b1));
    float p[16] = {0}, q[16] = {0};
    for (; i < len; i++) {
        p[i & 15] += f16_to_f32(f[i]) * kern[i];
        q[i & 15] += f16_to_f32(g[i]) * kern[i];
    }
    for (int l = 0; l < 16; l++) s += p[l];
    for (int l = 0; l < 16; l++) t += q[l];
    out[0] = s;
    out[1] = t;
}

static inline float cosine(float num, float den2) {
    /* a window whose features are all zero has no direction: score 0, not NaN */
    float r = den2 > 0.0f ? sqrtf(den2) : 0.0f;
    float s = r > 0.0f ? num / r : 0.0f;
    return s > 1.0f ? 1.0f : (s < -1.0f ? -1.0f : s);
}

/* acc[q] = cosine(acc[q], nrm[q]) for q < n (n a multiple of 16) */
static void scores(float *acc, const float *nrm, int n) {
#if defined(VSCORES)
    vscores(acc, nrm, n);
#else
    for (int q = 0; q < n; q++) acc[q] = cosine(acc[q], nrm[q]);
#endif
}

/*
 * feats (n, C, G, G) float16 and norms2 (n, G, G) float32, C-contiguous.
 * Window h x w; K active cells at flat offsets off[k] = i*G + j, squared weights msq[k];
 * kern (C, K) float32 and its transpose kern_t (K, C) (mode dense: kern (C, G*G), msq (G*G)).
 * Writes best[n] and flat[n] (first maximum, row-major over the (G-h+1) x (G-w+1) windows)
 * and, unless NULL, every window's score into all_scores (n, G-h+1, G-w+1).
 * Returns 0, or -1 where a size limit is exceeded (or, in lanes mode, memory is short).
 */
int EXPORT(vfs_scan)(const uint16_t *feats, const float *norms2, int64_t n, int C, int G, int h, int w,
                     int K, const int32_t *off, const float *msq, const float *kern, const float *kern_t,
                     int mode, float *best, int64_t *flat, float *all_scores) {
    const int gg = G * G, Hp = G - h + 1, Wp = G - w + 1;
    const int L = (Hp - 1) * G + Wp;
    const int nv16 = mode == MODE_DENSE ? 1 : (L + 15) / 16;  /* window positions, in 16-float units */
    const int nv = nv16 * 16 / VW;                            /* ... in vectors */
    const int ts = (gg + 15) / 16 * 16;  /* row stride of the per-cell accumulators T */
    const int nfull = gg / VW, tail = gg % VW;
    /* cells mode: a short tail of cells (1 at 7x7, 4 at 14x14 with 16 lanes) is kept out of the
       vector rows and correlated as columns over channels, so no FMA works on a mostly empty vector */
    int direct, direct_cost = 0, passes = 0, scratch_cost = 0;  /* direct: the register-only kernel reads the float16 rows itself */
    const int nb_direct = nfull >= 1 ? block_rows(nfull, K, 1, &direct_cost, &passes) : 1;
    const int nb_scratch = block_rows(mode == MODE_CELLS && tail > 4 ? nfull + 1 : nfull, K, 0, &scratch_cost, NULL);
    /* the scratch path converts each row once (and stores it): 2 operations per vector */
    direct = mode == MODE_CELLS && nfull >= 1 && tail <= 4 && (int64_t)C * tail <= SCRATCH_FLOATS &&
             passes <= DIRECT_PASSES && direct_cost <= scratch_cost + 2 * nfull;
    const int split = !direct && mode == MODE_CELLS && tail > 0 && tail <= 4 && nfull >= 1 &&
                      16 * K * tail <= MAXTACC;
    const int stride = mode == MODE_CELLS ? (split ? VW * nfull : ts) : gg;
    if (C < 1 || G < 1 || h < 1 || w < 1 || h > G || w > G || K < 1) return -1;
    if (16 * nv16 > MAXL || stride + 16 * nv16 + 16 > SCRATCH_FLOATS) return -1;
    if (mode == MODE_CELLS && (int64_t)K * ts > MAXT) return -1;
    const int nbl = (C + VW - 1) / VW;  /* lanes mode: blocks of VW channels */
    if (mode == MODE_LANES && ((int64_t)16 * gg > MAXX || (int64_t)(C + 15) / 16 * 16 * K > MAXQ)) return -1;
    /* blocks per group: the group's transposed rows stay in L1 (at least one block) */
    const int nbg = gg * VW >= LANES_GROUP ? 1 : (LANES_GROUP / (gg * VW) < nbl ? LANES_GROUP / (gg * VW) : nbl);
    float *X = NULL, *Q = NULL, *V = NULL;
    void *lanes_mem = NULL;
    int tile_r = 1, tile_x = 1;
    if (mode == MODE_LANES) {  /* a group's transposed rows, the partial sums and the query's vectors, 64-byte aligned */
        lanes_mem = malloc(sizeof(float) * ((size_t)VW * gg * (nbg + 1) + (size_t)nbl * VW * K + 16));
        if (!lanes_mem) return -1;
        X = (float *)(((uintptr_t)lanes_mem + 63) & ~(uintptr_t)63);
        V = X + (size_t)nbg * VW * gg;
        Q = V + (size_t)VW * gg;
        for (int b = 0; b < nbl; b++)
            for (int k = 0; k < K; k++)
                for (int l = 0; l < VW; l++)
                    Q[((int64_t)b * K + k) * VW + l] = b * VW + l < C ? kern_t[(int64_t)k * C + b * VW + l] : 0.0f;
        lanes_tile(Hp, Wp, &tile_r, &tile_x);
    }
    /* scratch rows are padded so vector loads past the last cell stay inside the buffer */
    float scratch[SCRATCH_FLOATS + 16 * MAXV16 + 16] ALIGNED(64);
    float T[MAXT + 16] ALIGNED(64);
    float col[4][SCRATCH_FLOATS / 16] ALIGNED(64);
    float tacc[MAXTACC] ALIGNED(64);  /* 16 floats per (cell, tail column); VW lanes used */
    float acc[MAXL + 16] ALIGNED(64);
    float nrm[MAXL + 16] ALIGNED(64);
    int cb = (SCRATCH_FLOATS - 16 * nv16 - 16) / stride;
    if (cb > SCRATCH_FLOATS / 16) cb = SCRATCH_FLOATS / 16;
    if (cb < 1) cb = 1;
    if (cb > C) cb = C;
    memset(scratch, 0, sizeof(scratch));
    /* prefetch one block ahead: the next block streams in while this one is correlated */
    const int64_t ahead = (int64_t)cb * gg * 2 > PREFETCH_BYTES ? (int64_t)cb * gg * 2 : PREFETCH_BYTES;
    for (int64_t i = 0; i < n; i++) {
        const uint16_t *f = feats + i * (int64_t)C * gg;
        const float *n2 = norms2 + i * (int64_t)gg;
        memset(acc, 0, sizeof(float) * 16 * nv16);
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
        if (mode == MODE_LANES) {
            /* the next image streams into L2 a few lines at a time, spread over the tiles' arithmetic
               (measured: prefetching it in bursts, or a group ahead, left the transposition waiting
               for memory: 3.3 µs per image at 320x7x7 against 2.0 spread and 1.9 in L2) */
            const int64_t image_lines = ((int64_t)C * gg * 2 + 63) / 64;
            const int64_t calls = (int64_t)((nbl + nbg - 1) / nbg) * ((Hp + tile_r - 1) / tile_r) * ((Wp + tile_x - 1) / tile_x);
            const int64_t per_call = i + 1 < n ? (image_lines + calls - 1) / calls : 0;
            const char *next = (const char *)(f + (int64_t)C * gg);
            int64_t call = 0;
            for (int b0 = 0; b0 < nbl; b0 += nbg) {
                const int m = nbl - b0 < nbg ? nbl - b0 : nbg;
                for (int b = 0; b < m; b++)
                    lanes_block(f + (int64_t)(b0 + b) * VW * gg, C - (b0 + b) * VW, gg, X + (int64_t)b * gg * VW);
                for (int y0 = 0; y0 < Hp; y0 += tile_r)
                    for (int x0 = 0; x0 < Wp; x0 += tile_x) {
                        const int r = Hp - y0 < tile_r ? Hp - y0 : tile_r, xw = Wp - x0 < tile_x ? Wp - x0 : tile_x;
                        const int64_t at = (int64_t)(y0 * G + x0) * VW;
                        LANES_FNS[r][xw](X + at, m, gg, G, K, off, Q + (int64_t)b0 * K * VW, V + at, b0 == 0,
                                         next + 64 * per_call * call, per_call);
                        call++;
                    }
            }
            for (int y = 0; y < Hp; y++)
                for (int x = 0; x < Wp; x++) acc[y * G + x] = VSUM(VLOAD(V + (int64_t)(y * G + x) * VW));
        } else if (direct) {
            for (int pb = 0; pb < nfull; pb += nb_direct) {
                const int bn = nfull - pb < nb_direct ? nfull - pb : nb_direct, maxm = MAXM(bn);
                for (int kg = 0; kg < K; kg += maxm) {
                    const int m = K - kg < maxm ? K - kg : maxm;
                    const int t = kg == 0 && pb + bn == nfull ? tail : 0;  /* the tail follows the last block */
                    DIRECT_FNS[bn][m](f + VW * pb, C, gg, kern + kg, K, T + (int64_t)kg * ts + VW * pb, ts, scratch, t,
                                      pb == 0 && kg == 0);
                }
            }
            for (int k = 0; k < K; k++)
                for (int t = 0; t < tail; t++)
                    T[(int64_t)k * ts + VW * nfull + t] = dot(kern_t + (int64_t)k * C, scratch + (int64_t)t * C, C);
        } else
        for (int c0 = 0; c0 < C; c0 += cb) {
            int m = C - c0 < cb ? C - c0 : cb;
            const uint16_t *src = f + (int64_t)c0 * gg;
            if (mode == MODE_SHIFT) {
                convert(src, scratch, (int64_t)m * gg, ahead);
                shift(scratch, m, gg, K, off, kern + (int64_t)c0 * K, acc, nv);
            } else if (split) {
                for (int r = 0; r < m; r++) {
                    const uint16_t *s = src + (int64_t)r * gg;
                    convert(s, scratch + (int64_t)r * stride, VW * nfull, ahead);
                    for (int t = 0; t < tail; t++) col[t][r] = f16_to_f32(s[VW * nfull + t]);
                }
                cells(scratch, m, stride, K, kern + (int64_t)c0 * K, T, ts, nb_scratch);
                for (int k = 0; k < K; k++)
                    for (int t = 0; t < tail; t++)
                        dot_acc(kern_t + (int64_t)k * C + c0, col[t], m, tacc + 16 * (k * tail + t));
            } else {
                for (int r = 0; r < m; r++) convert(src + (int64_t)r * gg, scratch + (int64_t)r * stride, gg, ahead);
                cells(scratch, m, stride, K, kern + (int64_t)c0 * K, T, ts, nb_scratch);
            }
        }
        if (split)
            for (int k = 0; k < K; k++)
                for (int t = 0; t < tail; t++) {
                    const float *v = tacc + 16 * (k * tail + t);
                    float sum = 0.0f;
                    for (int l = 0; l < VW; l++) sum += v[l];
                    T[(int64_t)k * ts + VW * nfull + t] = sum;
                }
        if (mode == MODE_CELLS)  /* shift-and-add the per-cell correlations into the windows */
            for (int k = 0; k < K; k++)  /* T has 16 floats of slack, so whole vectors are safe */
                axpy(acc, 1.0f, T + (int64_t)k * ts + off[k], 16 * nv16);
        for (int q = 0; q < 16 * nv16; q++) nrm[q] = 0.0f;
        for (int k = 0; k < K; k++)  /* the norms of the last image end the array: no over-read */
            axpy(nrm, msq[k], n2 + off[k], L);
        scores(acc, nrm, 16 * nv16);  /* acc becomes the cosines, every flattened position at once */
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
    free(lanes_mem);
    return 0;
}
