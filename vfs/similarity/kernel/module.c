/*
 * vfs.similarity.kernel._scan: a tiny CPython extension module whose shared object also exports
 * the fused scan of every instruction set built into it (vfs_scan_avx512, vfs_scan_avx2,
 * vfs_scan_neon, vfs_scan_scalar) and the CPU feature detection that picks one at run time.
 * Python loads the same file with ctypes (which releases the GIL during a scan).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(_M_X64)
#if defined(_MSC_VER)
#include <intrin.h>
static void cpuid(int leaf, int sub, unsigned r[4]) { int v[4]; __cpuidex(v, leaf, sub); for (int i = 0; i < 4; i++) r[i] = (unsigned)v[i]; }
static uint64_t xgetbv0(void) { return _xgetbv(0); }
#else
#include <cpuid.h>
static void cpuid(int leaf, int sub, unsigned r[4]) { __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]); }
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));  /* xgetbv */
    return ((uint64_t)hi << 32) | lo;
}
#endif
#endif

/* feature bits reported by vfs_cpu_features (kept in step with kernel/__init__.py) */
enum {
    F_SSE2 = 1 << 0, F_AVX = 1 << 1, F_AVX2 = 1 << 2, F_FMA = 1 << 3, F_F16C = 1 << 4,
    F_AVX512F = 1 << 5, F_AVX512BW = 1 << 6, F_AVX512DQ = 1 << 7, F_AVX512VL = 1 << 8,
    F_OS_YMM = 1 << 9, F_OS_ZMM = 1 << 10, F_OSXSAVE = 1 << 11, F_AVX512FP16 = 1 << 12,
    F_NEON = 1 << 16, F_FP16 = 1 << 17,
};

/* What this CPU can execute, including whether the operating system saves the YMM/ZMM state
   (cpuid alone is not enough: a kernel without XSAVE support for ZMM faults on AVX-512). */
int vfs_cpu_features(void) {
    int f = 0;
#if defined(__x86_64__) || defined(_M_X64)
    unsigned r[4];
    cpuid(0, 0, r);
    const unsigned max_leaf = r[0];
    cpuid(1, 0, r);
    if (r[3] & (1u << 26)) f |= F_SSE2;
    if (r[2] & (1u << 12)) f |= F_FMA;
    if (r[2] & (1u << 28)) f |= F_AVX;
    if (r[2] & (1u << 29)) f |= F_F16C;
    if (r[2] & (1u << 27)) {
        f |= F_OSXSAVE;
        const uint64_t xcr0 = xgetbv0();
        if ((xcr0 & 0x6) == 0x6) f |= F_OS_YMM;             /* SSE and AVX state */
        if ((xcr0 & 0xe6) == 0xe6) f |= F_OS_ZMM;           /* + opmask, ZMM_Hi256, Hi16_ZMM */
    }
    if (max_leaf >= 7) {
        cpuid(7, 0, r);
        if (r[1] & (1u << 5)) f |= F_AVX2;
        if (r[1] & (1u << 16)) f |= F_AVX512F;
        if (r[1] & (1u << 17)) f |= F_AVX512DQ;
        if (r[1] & (1u << 30)) f |= F_AVX512BW;
        if (r[1] & (1u << 31)) f |= F_AVX512VL;
        if (r[3] & (1u << 23)) f |= F_AVX512FP16;
    }
#elif defined(__aarch64__) || defined(_M_ARM64)
    f |= F_NEON | F_FP16;  /* AdvSIMD and float16 <-> float32 conversion are base AArch64 */
#endif
    return f;
}

/* The instruction sets compiled into this object, as bits: 1 avx512, 2 avx2, 4 neon, 8 scalar. */
int vfs_isa_built(void) {
#if defined(__x86_64__) || defined(_M_X64)
    return 1 | 2 | 8;
#elif defined(__aarch64__) || defined(_M_ARM64)
    return 4 | 8;
#else
    return 8;
#endif
}

/* Largest supported sizes (scan.h); the Python side checks them before calling. */
int vfs_limits(int *scratch, int *maxt, int *maxl) { *scratch = 6144; *maxt = 16384; *maxl = 1024; return 0; }


/* The compiler that built this object, for `vfs info`. */
const char *vfs_build_info(void) {
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#elif defined(_MSC_VER)
    return "msvc";
#else
    return "unknown compiler";
#endif
}

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_scan",
    "The fused region-search scan (loaded with ctypes by vfs.similarity.kernel).", -1, NULL,
};

PyMODINIT_FUNC PyInit__scan(void) { return PyModule_Create(&module); }
