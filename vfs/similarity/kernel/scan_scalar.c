/* The portable fused scan: baseline instructions of any architecture, software float16 conversion. */
#define ISA_SCALAR 1
#include "scan.h"
