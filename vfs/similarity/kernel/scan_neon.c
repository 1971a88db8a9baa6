/* The fused scan for AArch64 NEON (base ISA: float16 conversion and FMA included). */
#if defined(__aarch64__) || defined(_M_ARM64)
#define ISA_NEON 1
#include "scan.h"
#else
typedef int vfs_scan_neon_unavailable; /* not this architecture: nothing to build */
#endif
