/*
 * A test driver for the fused scan without Python: cross-compiled for AArch64 and run under
 * qemu-aarch64 by tests/test_kernel_neon.py, which writes the cases and checks the outputs.
 *
 *   driver ISA IN OUT [IN OUT ...]      ISA: neon or scalar
 *
 * IN: int32 n, C, G, h, w, K, mode, kern_len; then float16 feats[n*C*G*G], float32 norms2[n*G*G],
 *     int32 off[K (1 in dense mode)], float32 msq[K (G*G in dense mode)], float32 kern[kern_len], kern_t[kern_len].
 * OUT: float32 all_scores[n*(G-h+1)*(G-w+1)], float32 best[n], int64 flat[n]. Exit 0, or 1.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int (*scan_fn)(const uint16_t *, const float *, int64_t, int, int, int, int, int, const int32_t *,
                       const float *, const float *, const float *, int, float *, int64_t *, float *);
int vfs_scan_scalar(const uint16_t *, const float *, int64_t, int, int, int, int, int, const int32_t *,
                    const float *, const float *, const float *, int, float *, int64_t *, float *);
#if defined(__aarch64__)
int vfs_scan_neon(const uint16_t *, const float *, int64_t, int, int, int, int, int, const int32_t *,
                  const float *, const float *, const float *, int, float *, int64_t *, float *);
#endif

static void *take(FILE *in, size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p || fread(p, 1, bytes, in) != bytes) { fprintf(stderr, "short input\n"); exit(1); }
    return p;
}

int main(int argc, char **argv) {
    if (argc < 4 || argc % 2) { fprintf(stderr, "usage: driver ISA IN OUT [IN OUT ...]\n"); return 1; }
    scan_fn fn = NULL;
    if (!strcmp(argv[1], "scalar")) fn = vfs_scan_scalar;
#if defined(__aarch64__)
    if (!strcmp(argv[1], "neon")) fn = vfs_scan_neon;
#endif
    if (!fn) { fprintf(stderr, "unknown ISA %s\n", argv[1]); return 1; }
    for (int a = 2; a + 1 < argc; a += 2) {
        FILE *in = fopen(argv[a], "rb");
        if (!in) { perror(argv[a]); return 1; }
        int32_t hd[8];
        if (fread(hd, sizeof hd, 1, in) != 1) { fprintf(stderr, "short header\n"); return 1; }
        const int64_t n = hd[0];
        const int C = hd[1], G = hd[2], h = hd[3], w = hd[4], K = hd[5], mode = hd[6], kl = hd[7];
        const int64_t gg = (int64_t)G * G, windows = (int64_t)(G - h + 1) * (G - w + 1);
        uint16_t *feats = take(in, sizeof(uint16_t) * n * C * gg);
        float *norms = take(in, sizeof(float) * n * gg);
        int32_t *off = take(in, sizeof(int32_t) * (mode == 0 ? 1 : K));
        float *msq = take(in, sizeof(float) * (mode == 0 ? gg : K));
        float *kern = take(in, sizeof(float) * kl), *kern_t = take(in, sizeof(float) * kl);
        fclose(in);
        float *all = malloc(sizeof(float) * n * windows), *best = malloc(sizeof(float) * n);
        int64_t *flat = malloc(sizeof(int64_t) * n);
        if (fn(feats, norms, n, C, G, h, w, K, off, msq, kern, kern_t, mode, best, flat, all) != 0) {
            fprintf(stderr, "%s: the scan rejected the shape\n", argv[a]);
            return 1;
        }
        FILE *out = fopen(argv[a + 1], "wb");
        if (!out || fwrite(all, sizeof(float), n * windows, out) != (size_t)(n * windows) ||
            fwrite(best, sizeof(float), n, out) != (size_t)n || fwrite(flat, sizeof(int64_t), n, out) != (size_t)n) {
            perror(argv[a + 1]);
            return 1;
        }
        fclose(out);
        free(feats); free(norms); free(off); free(msq); free(kern); free(kern_t); free(all); free(best); free(flat);
    }
    return 0;
}
