/*
 * The vector layer of the fused scan kernel: one set of macros per instruction set, so that
 * scan.h is written once and compiled once per target (scan_avx512.c, scan_avx2.c, scan_neon.c,
 * scan_scalar.c), each object with its own compiler flags (setup.py), never -march=native.
 *
 *   VW                 float lanes per vector
 *   vf                 the vector type
 *   VZERO() VSET1(x) VLOAD(p) VLOADU(p) VSTORE(p, v) VSTOREU(p, v) VADD(a, b)
 *   VFMA(a, b, c)      a * b + c
 *   VHALF(p)           VW float16 values at p (unaligned), converted exactly to float32
 *   VSUM(v)            the sum of the lanes
 *   NB                 most row vectors per register block of the cells kernels
 *   MAXM(n)            most active cells per register block of n row vectors
 *   MAXV               most accumulator vectors (of VW) per pass of the shift kernel
 *   DIRECT_PASSES      most passes over a float16 image the register-only cells kernel may make
 *   VSCORES            defined where the ISA has a vector cosine (score) step
 *   NACC               most accumulator vectors (windows) per tile of the lanes kernel
 *   vtranspose_half(s, stride, d)   VW rows of VW float16 values (row l at s + l*stride) to VW
 *                      float32 vectors d[p*VW + l] = s[l*stride + p]: channels into lanes
 *   VTRANSPOSE2        defined where vtranspose_half2(s, stride, d) transposes VW rows of 2*VW values
 *                      (2*VW cells) at once, more cheaply than two vtranspose_half
 *
 * Select one with ISA_AVX512, ISA_AVX2, ISA_NEON or ISA_SCALAR before including scan.h.
 */
#ifndef VFS_ISA_H
#define VFS_ISA_H

#include <stdint.h>
#include <string.h>
#include <math.h>

#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p) __builtin_prefetch((const void *)(p), 0, 1)
#define ALIGNED(n) __attribute__((aligned(n)))
#else
#define PREFETCH(p) ((void)0)
#define ALIGNED(n)
#endif

#if defined(ISA_AVX512)
/* ---------------------------------------------------------------------------------- AVX-512 */
#include <immintrin.h>
#define SUFFIX avx512
typedef __m512 vf;
#define VW 16
#define VZERO() _mm512_setzero_ps()
#define VSET1(x) _mm512_set1_ps(x)
#define VLOAD(p) _mm512_load_ps(p)
#define VLOADU(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_store_ps((p), (v))
#define VSTOREU(p, v) _mm512_storeu_ps((p), (v))
#define VADD(a, b) _mm512_add_ps((a), (b))
#define VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define VHALF(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define VSUM(v) _mm512_reduce_add_ps(v)
#define NB 4
#define MAXM(n) ((n) <= 3 ? 9 : 6)       /* n*m + n + 1 <= 32 registers */
#define MAXV 8
#define DIRECT_PASSES_DEFAULT 12         /* measured: up to 9 passes (4x4 cells at 14x14) beat the scratch path */
#define HALF1(h) _cvtsh_ss(h)
#define NACC 28                          /* + the query vector: 29 of 32 registers */
/* 16x16: converted rows, then pairs of lanes, quadruples, 128-bit blocks (64 shuffles) */
static inline void vtranspose_half(const uint16_t *s, int64_t stride, float *d) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + i * stride)));
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
        const __m512d c = _mm512_castps_pd(t[i + 2]), e = _mm512_castps_pd(t[i + 3]);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, e));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, e));
    }
    /* r[4g + j]: column j + 4*lane of rows 4g..4g+3, per 128-bit lane */
    for (int j = 0; j < 4; j++) {
        t[j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);       /* columns j, j+8 of rows 0-7 */
        t[4 + j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xdd);   /* columns j+4, j+12 */
        t[8 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
        t[12 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xdd);
    }
    for (int j = 0; j < 4; j++) {
        _mm512_store_ps(d + 16 * j, _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88));
        _mm512_store_ps(d + 16 * (8 + j), _mm512_shuffle_f32x4(t[j], t[8 + j], 0xdd));
        _mm512_store_ps(d + 16 * (4 + j), _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0x88));
        _mm512_store_ps(d + 16 * (12 + j), _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0xdd));
    }
}
/* 16 rows of 32 float16 values to 32 float32 vectors d[p*16 + l] = s[l*stride + p], transposed in
   the 16-bit domain: each 64-byte row is one load, an 8x8 transposition within 128-bit lanes (24
   word/dword/qword unpacks per 8 rows) leaves 8 channels of one cell per lane, a two-source qword
   permutation pairs the two halves of the channels, and the conversion comes last. Per 16x16 block
   that is 28 shuffles and 8 extractions instead of 64 shuffles. On Sapphire Rapids, where every 512-bit
   shuffle and half of each conversion go to port 5, a 320x7x7 image's transposition took 0.65 instead of
   1.27 us (micro-benchmark, data in L1) and the lanes scans 9-12% less time with the data in L2. */
#define VTRANSPOSE2 1
static inline void vtranspose_half2(const uint16_t *s, int64_t stride, float *d) {
    __m512i half[2][8];
    for (int g = 0; g < 2; g++) {
        __m512i r[8], t[8];
        for (int i = 0; i < 8; i++) r[i] = _mm512_loadu_si512((const void *)(s + (8 * g + i) * stride));
        for (int i = 0; i < 8; i += 2) {  /* channel pairs: (i, i+1) of cells 4L..4L+3 | 4L+4..4L+7 per lane */
            t[i] = _mm512_unpacklo_epi16(r[i], r[i + 1]);
            t[i + 1] = _mm512_unpackhi_epi16(r[i], r[i + 1]);
        }
        for (int i = 0; i < 8; i += 4) {  /* channel quadruples: two cells per lane */
            r[i] = _mm512_unpacklo_epi32(t[i], t[i + 2]);
            r[i + 1] = _mm512_unpackhi_epi32(t[i], t[i + 2]);
            r[i + 2] = _mm512_unpacklo_epi32(t[i + 1], t[i + 3]);
            r[i + 3] = _mm512_unpackhi_epi32(t[i + 1], t[i + 3]);
        }
        for (int i = 0; i < 4; i++) {  /* half[g][j], lane L: cell 8L + j, channels 8g..8g+7 */
            half[g][2 * i] = _mm512_unpacklo_epi64(r[i], r[4 + i]);
            half[g][2 * i + 1] = _mm512_unpackhi_epi64(r[i], r[4 + i]);
        }
    }
    const __m512i first = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0), second = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
    for (int j = 0; j < 8; j++) {
        const __m512i u = _mm512_permutex2var_epi64(half[0][j], first, half[1][j]);   /* cells j | 8+j */
        const __m512i v = _mm512_permutex2var_epi64(half[0][j], second, half[1][j]);  /* cells 16+j | 24+j */
        _mm512_store_ps(d + 16 * j, _mm512_cvtph_ps(_mm512_castsi512_si256(u)));
        _mm512_store_ps(d + 16 * (8 + j), _mm512_cvtph_ps(_mm512_extracti64x4_epi64(u, 1)));
        _mm512_store_ps(d + 16 * (16 + j), _mm512_cvtph_ps(_mm512_castsi512_si256(v)));
        _mm512_store_ps(d + 16 * (24 + j), _mm512_cvtph_ps(_mm512_extracti64x4_epi64(v, 1)));
    }
}
#define VSCORES 1
static inline void vscores(float *acc, const float *nrm, int n) {
    const __m512 one = _mm512_set1_ps(1.0f), minus = _mm512_set1_ps(-1.0f), zero = _mm512_setzero_ps();
    for (int q = 0; q + 16 <= n; q += 16) {
        __m512 d = _mm512_loadu_ps(nrm + q), a = _mm512_loadu_ps(acc + q);
        __mmask16 pos = _mm512_cmp_ps_mask(d, zero, _CMP_GT_OQ);  /* false for 0 and NaN: score 0 */
        __m512 s = _mm512_maskz_div_ps(pos, a, _mm512_maskz_sqrt_ps(pos, d));
        s = _mm512_mask_mov_ps(s, _mm512_cmp_ps_mask(s, one, _CMP_GT_OQ), one);  /* NaN stays NaN */
        s = _mm512_mask_mov_ps(s, _mm512_cmp_ps_mask(s, minus, _CMP_LT_OQ), minus);
        _mm512_storeu_ps(acc + q, s);
    }
}

#elif defined(ISA_AVX2)
/* ------------------------------------------------------------------------- AVX2 + FMA + F16C */
#include <immintrin.h>
#define SUFFIX avx2
typedef __m256 vf;
#define VW 8
#define VZERO() _mm256_setzero_ps()
#define VSET1(x) _mm256_set1_ps(x)
#define VLOAD(p) _mm256_load_ps(p)
#define VLOADU(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_store_ps((p), (v))
#define VSTOREU(p, v) _mm256_storeu_ps((p), (v))
#define VADD(a, b) _mm256_add_ps((a), (b))
#define VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define VHALF(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
static inline float vsum_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#define VSUM(v) vsum_avx2(v)
#define NB 4
#define MAXM(n) ((n) == 1 ? 9 : (n) == 2 ? 6 : (n) == 3 ? 4 : 2)   /* n*m + n + 1 <= 16 registers */
#define MAXV 6
#define DIRECT_PASSES_DEFAULT 12
#define HALF1(h) _cvtsh_ss(h)
#define NACC 12                          /* + the query vector: 13 of 16 registers */
/* 8x8: converted rows, then pairs of lanes, quadruples, 128-bit halves (24 shuffles) */
static inline void vtranspose_half(const uint16_t *s, int64_t stride, float *d) {
    __m256 r[8], t[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i * stride)));
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);        /* columns 0 | 4 of rows i..i+3 */
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);    /* 1 | 5 */
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);  /* 2 | 6 */
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);  /* 3 | 7 */
    }
    for (int j = 0; j < 4; j++) {
        _mm256_store_ps(d + 8 * j, _mm256_permute2f128_ps(r[j], r[4 + j], 0x20));
        _mm256_store_ps(d + 8 * (4 + j), _mm256_permute2f128_ps(r[j], r[4 + j], 0x31));
    }
}
/* 8 rows of 16 float16 values to 16 float32 vectors d[p*8 + l] = s[l*stride + p], transposed in the
   16-bit domain as the AVX-512 vtranspose_half2 does: one load per row, an 8x8 transposition within
   each 128-bit lane (24 unpacks) leaves 8 channels of cell j in lane 0 and of cell 8+j in lane 1, then
   the conversions: 12 shuffles and 4 extractions per 8x8 block instead of 24 shuffles. */
#define VTRANSPOSE2 1
static inline void vtranspose_half2(const uint16_t *s, int64_t stride, float *d) {
    __m256i r[8], t[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_si256((const __m256i *)(s + i * stride));
    for (int i = 0; i < 8; i += 2) {  /* channel pairs (i, i+1): cells 4L..4L+3 | 4L+4..4L+7 of each lane */
        t[i] = _mm256_unpacklo_epi16(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi16(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {  /* channel quadruples: two cells per lane */
        r[i] = _mm256_unpacklo_epi32(t[i], t[i + 2]);
        r[i + 1] = _mm256_unpackhi_epi32(t[i], t[i + 2]);
        r[i + 2] = _mm256_unpacklo_epi32(t[i + 1], t[i + 3]);
        r[i + 3] = _mm256_unpackhi_epi32(t[i + 1], t[i + 3]);
    }
    for (int i = 0; i < 4; i++) {  /* t[j], lane L: cell 8L + j, channels 0-7 */
        t[2 * i] = _mm256_unpacklo_epi64(r[i], r[4 + i]);
        t[2 * i + 1] = _mm256_unpackhi_epi64(r[i], r[4 + i]);
    }
    for (int j = 0; j < 8; j++) {
        _mm256_store_ps(d + 8 * j, _mm256_cvtph_ps(_mm256_castsi256_si128(t[j])));
        _mm256_store_ps(d + 8 * (8 + j), _mm256_cvtph_ps(_mm256_extracti128_si256(t[j], 1)));
    }
}
#define VSCORES 1
static inline void vscores(float *acc, const float *nrm, int n) {
    const __m256 one = _mm256_set1_ps(1.0f), minus = _mm256_set1_ps(-1.0f), zero = _mm256_setzero_ps();
    for (int q = 0; q + 8 <= n; q += 8) {
        __m256 d = _mm256_loadu_ps(nrm + q), a = _mm256_loadu_ps(acc + q);
        __m256 pos = _mm256_cmp_ps(d, zero, _CMP_GT_OQ);  /* false for 0 and NaN: score 0 */
        __m256 s = _mm256_and_ps(pos, _mm256_div_ps(a, _mm256_sqrt_ps(_mm256_and_ps(pos, d))));
        s = _mm256_blendv_ps(s, one, _mm256_cmp_ps(s, one, _CMP_GT_OQ));  /* NaN stays NaN */
        s = _mm256_blendv_ps(s, minus, _mm256_cmp_ps(s, minus, _CMP_LT_OQ));
        _mm256_storeu_ps(acc + q, s);
    }
}

#elif defined(ISA_NEON)
/* ------------------------------------------------- AArch64 NEON (float16 conversion is base ISA) */
#include <arm_neon.h>
#define SUFFIX neon
typedef float32x4_t vf;
#define VW 4
#define VZERO() vdupq_n_f32(0.0f)
#define VSET1(x) vdupq_n_f32(x)
#define VLOAD(p) vld1q_f32(p)
#define VLOADU(p) vld1q_f32(p)
#define VSTORE(p, v) vst1q_f32((p), (v))
#define VSTOREU(p, v) vst1q_f32((p), (v))
#define VADD(a, b) vaddq_f32((a), (b))
#define VFMA(a, b, c) vfmaq_f32((c), (a), (b))
#define VHALF(p) vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(p))))
#define VSUM(v) vaddvq_f32(v)
#define NB 4
#define MAXM(n) ((n) <= 3 ? 9 : 6)       /* n*m + n + 1 <= 32 registers */
#define MAXV 8
#define DIRECT_PASSES_DEFAULT 24
static inline float half1_neon(uint16_t h) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}
#define HALF1(h) half1_neon(h)
#define NACC 24                          /* + the query and loaded vectors, of 32 registers */
/* 4x4: converted rows, then pairs of lanes and pairs of pairs (8 shuffles) */
static inline void vtranspose_half(const uint16_t *s, int64_t stride, float *d) {
    float32x4_t r[4];
    for (int i = 0; i < 4; i++) r[i] = VHALF(s + i * stride);
    const float64x2_t t0 = vreinterpretq_f64_f32(vtrn1q_f32(r[0], r[1])), t1 = vreinterpretq_f64_f32(vtrn2q_f32(r[0], r[1]));
    const float64x2_t t2 = vreinterpretq_f64_f32(vtrn1q_f32(r[2], r[3])), t3 = vreinterpretq_f64_f32(vtrn2q_f32(r[2], r[3]));
    vst1q_f32(d, vreinterpretq_f32_f64(vtrn1q_f64(t0, t2)));
    vst1q_f32(d + 4, vreinterpretq_f32_f64(vtrn1q_f64(t1, t3)));
    vst1q_f32(d + 8, vreinterpretq_f32_f64(vtrn2q_f64(t0, t2)));
    vst1q_f32(d + 12, vreinterpretq_f32_f64(vtrn2q_f64(t1, t3)));
}
#define VSCORES 1
static inline void vscores(float *acc, const float *nrm, int n) {
    const float32x4_t one = vdupq_n_f32(1.0f), minus = vdupq_n_f32(-1.0f), zero = vdupq_n_f32(0.0f);
    for (int q = 0; q + 4 <= n; q += 4) {
        float32x4_t d = vld1q_f32(nrm + q), a = vld1q_f32(acc + q);
        uint32x4_t pos = vcgtq_f32(d, zero);  /* false for 0 and NaN: score 0 */
        float32x4_t s = vdivq_f32(a, vsqrtq_f32(vbslq_f32(pos, d, one)));
        s = vbslq_f32(pos, s, zero);
        s = vbslq_f32(vcgtq_f32(s, one), one, s);  /* NaN compares false: stays NaN */
        s = vbslq_f32(vcltq_f32(s, minus), minus, s);
        vst1q_f32(acc + q, s);
    }
}

#elif defined(ISA_SCALAR)
/* ---------------------------------------------------------------------- portable C fallback */
#define SUFFIX scalar
#if defined(__GNUC__) || defined(__clang__)
/* GNU vector extensions: 4 lanes, lowered to the baseline SIMD of the target (SSE2 on x86-64,
   NEON on AArch64) or to scalar code elsewhere; no instruction beyond the baseline */
typedef float vf __attribute__((vector_size(16)));
typedef uint32_t vu4 __attribute__((vector_size(16)));
typedef int32_t vi4 __attribute__((vector_size(16)));
#define VW 4
static inline vf vload_sc(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore_sc(float *p, vf v) { memcpy(p, &v, sizeof v); }
#define VZERO() ((vf){0.0f, 0.0f, 0.0f, 0.0f})
#define VSET1(x) ((vf){0.0f, 0.0f, 0.0f, 0.0f} + (x))
#define VLOAD(p) vload_sc(p)
#define VLOADU(p) vload_sc(p)
#define VSTORE(p, v) vstore_sc((p), (v))
#define VSTOREU(p, v) vstore_sc((p), (v))
#define VADD(a, b) ((a) + (b))
#define VFMA(a, b, c) ((a) * (b) + (c))
/* exact float16 -> float32, branch-free (F. Giesen's method: the subnormals through one float
   subtraction of normal numbers, so it is exact whatever the denormal mode) */
static inline vf vhalf_sc(const uint16_t *p) {
    vu4 h = {p[0], p[1], p[2], p[3]};
    const vu4 shifted_exp = {0x7c00u << 13, 0x7c00u << 13, 0x7c00u << 13, 0x7c00u << 13};
    vu4 o = (h & 0x7fffu) << 13;
    vu4 e = o & shifted_exp;
    o += (127u - 15u) << 23;
    vu4 is_inf = (vu4)(e == shifted_exp);
    vu4 is_sub = (vu4)(e == 0u);
    o += is_inf & ((128u - 16u) << 23);
    vu4 sub_bits = o + (1u << 23);
    vf sub_f, magic = {0x1p-14f, 0x1p-14f, 0x1p-14f, 0x1p-14f};
    memcpy(&sub_f, &sub_bits, sizeof sub_f);
    sub_f -= magic;
    vu4 sub_u;
    memcpy(&sub_u, &sub_f, sizeof sub_u);
    o = (is_sub & sub_u) | (~is_sub & o);
    o |= (h & 0x8000u) << 16;
    vf out;
    memcpy(&out, &o, sizeof out);
    return out;
}
/* the conversion through a table of all 65536 float16 values (256 KB, built once when the library
   loads): about 2 operations per value instead of 5 for the bit manipulation above, which stays as
   the table's builder and the reference */
static float half_table_sc[65536];
__attribute__((constructor)) static void half_table_init_sc(void) {
    for (uint32_t i = 0; i < 65536; i += 4) {
        const uint16_t h[4] = {(uint16_t)i, (uint16_t)(i + 1), (uint16_t)(i + 2), (uint16_t)(i + 3)};
        vstore_sc(half_table_sc + i, vhalf_sc(h));
    }
}
static inline vf vhalf_table_sc(const uint16_t *p) {
    return (vf){half_table_sc[p[0]], half_table_sc[p[1]], half_table_sc[p[2]], half_table_sc[p[3]]};
}
#define VHALF(p) vhalf_table_sc((const uint16_t *)(p))
#define VSUM(v) ((v)[0] + (v)[1] + (v)[2] + (v)[3])
#define NB 4
#define MAXM(n) ((n) == 1 ? 9 : (n) == 2 ? 6 : (n) == 3 ? 4 : 2)
#define MAXV 6
#define DIRECT_PASSES_DEFAULT 24
#define NACC 10                          /* SSE2 has 16 registers and no FMA: products need their own */
static inline void vtranspose_half(const uint16_t *s, int64_t stride, float *d) {
    for (int l = 0; l < 4; l++) {
        const vf v = VHALF(s + l * stride);
        for (int p = 0; p < 4; p++) d[4 * p + l] = v[p];
    }
}
#else
#error "the portable kernel needs GCC or clang (vector extensions)"
#endif
#define HALF1(h) half_table_sc[(uint16_t)(h)]

#else
#error "define one of ISA_AVX512, ISA_AVX2, ISA_NEON, ISA_SCALAR"
#endif

#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define EXPORT(name) CAT(name, SUFFIX)

#endif
