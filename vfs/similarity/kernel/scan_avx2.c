/* The fused scan for x86-64 with AVX2 (compiled with its own flags by setup.py; chosen at run time). */
#if defined(__x86_64__) || defined(_M_X64)
#define ISA_AVX2 1
#include "scan.h"
#else
typedef int vfs_scan_avx2_unavailable; /* not this architecture: nothing to build */
#endif
