/* Stand-alone check of the quantizer variants, for machines the Python tests do not run on (e.g.
 * arm64 under qemu, see tools/check/check_arm64.sh): every variant this CPU runs must write the bytes of
 * the reference, and the reference's bytes are summarised by one FNV-1a hash per type, which
 * must be the same on every architecture. The tiny-magnitude kinds (6, 7, 9) are the ones where
 * 1/d overflows and the reference's float->int conversions meet +-Inf/NaN (defined with x86's
 * result by qtk_trunc_f2i / qtk_lroundf, so the same everywhere).
 *
 * Data comes from an integer generator and exact float operations only (no libm), so every
 * machine quantizes the same inputs.
 *
 *   cc -O2 -std=c11 -ffp-contract=off -Icsrc/include -Icsrc -DQTK_VERSION='"selftest"' tests/c/fastq_selftest.c \
 *      $(find csrc -name '*.c') -lm -lpthread
 *   ./a.out   -> one line per type: name, hash, and "ok" or the first mismatch; exit 1 on a mismatch
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qtk.h"
#include "qtk_fastq.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t next_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

static float uniform(void) {   /* [0, 1) on a 2^-24 grid: exact */
    return (float)(next_u32() >> 8) * (1.0f / 16777216.0f);
}

static float normalish(void) {   /* Irwin-Hall(4), centred: exact float adds */
    return (uniform() + uniform() + uniform() + uniform() - 2.0f) * 1.7f;
}

/* kind 0..9: normal, heavy tail, sparse, zeros/-0, constant, ties, subnormal, tiny, large, block mix */
static void fill(float *x, int64_t n, int kind, int64_t blck) {
    for (int64_t i = 0; i < n; ++i) {
        float v = normalish();
        switch (kind) {
        case 1: v = v / (uniform() + 0.01f); break;
        case 2: v = uniform() < 0.1f ? v : 0.0f; break;
        case 3: v = (next_u32() & 1) ? 0.0f : -0.0f; break;
        case 4: v = 3.25f; break;
        case 5: { static const float t[5] = {-2.0f, 2.0f, 0.0f, -0.0f, 1.0f}; v = t[next_u32() % 5]; } break;
        case 6: v = v * 1e-41f; break;
        case 7: v = v * 1e-38f; break;
        case 8: v = v * 2000.0f; break;
        case 9: {
            const int64_t b = i / blck;
            static const float k[6] = {0.0f, -0.0f, 1e-41f, 1e-38f, 5.0f, -5.0f};
            if (b % 3 == 0) {
                v = k[b % 6];
            }
        } break;
        default: break;
        }
        x[i] = v;
    }
}

static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        h = (h ^ p[i]) * 0x100000001B3ull;
    }
    return h;
}

int main(void) {
    static const int types[] = {QTK_TYPE_F32, QTK_TYPE_F16, QTK_TYPE_BF16, QTK_TYPE_Q4_0, QTK_TYPE_Q4_1, QTK_TYPE_Q5_0,
                                QTK_TYPE_Q5_1, QTK_TYPE_Q8_0, QTK_TYPE_Q2_K, QTK_TYPE_Q3_K, QTK_TYPE_Q4_K, QTK_TYPE_Q5_K,
                                QTK_TYPE_Q6_K, QTK_TYPE_IQ4_NL, QTK_TYPE_IQ4_XS, QTK_TYPE_TQ1_0, QTK_TYPE_TQ2_0};
    const int64_t rows = 3;
    int failures = 0;
    for (int v = 0; v < QTK_FASTQ_COUNT; ++v) {
        printf("variant %s: %s\n", qtk_fastq_name(v), qtk_fastq_available(v) ? "available" : "not available");
    }
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ++ti) {
        const int t = types[ti];
        qtk_type_traits tr;
        qtk_get_type_traits(t, &tr);
        const int64_t n = tr.blck_size == 1 ? 1037 : tr.blck_size == 32 ? 32 * 19 : 256 * 3;
        const size_t bytes = (size_t)(rows * (n / tr.blck_size) * tr.type_size);
        float *x = malloc(sizeof(float) * (size_t)(rows * n));
        float *w = malloc(sizeof(float) * (size_t)n);
        uint8_t *ref = malloc(bytes), *got = malloc(bytes);
        uint64_t h = 0xcbf29ce484222325ull;
        const char *first_bad = NULL;
        for (int kind = 0; kind < 10; ++kind) {
            for (int weighted = 0; weighted < 3; ++weighted) {
                fill(x, rows * n, kind, tr.blck_size);
                for (int64_t i = 0; i < n; ++i) {
                    const float u = uniform();
                    w[i] = weighted == 2 && (i % 5 == 0) ? 0.0f : u * u * 3.0f;
                }
                const float *imat = weighted ? w : NULL;
                qtk_fastq_set_variant(QTK_FASTQ_REF);
                int64_t bad_ref = -1;
                const int st_ref = qtk_quantize(t, x, ref, rows, n, imat, &bad_ref);
                h = fnv1a(h, (const uint8_t *)&st_ref, sizeof st_ref);
                if (st_ref == QTK_OK) {
                    h = fnv1a(h, ref, bytes);
                }
                for (int v = 1; v < QTK_FASTQ_COUNT; ++v) {
                    if (qtk_fastq_set_variant(v) != QTK_OK) {
                        continue;
                    }
                    int64_t bad_got = -1;
                    memset(got, 0xAA, bytes);
                    const int st = qtk_quantize(t, x, got, rows, n, imat, &bad_got);
                    if (st != st_ref || bad_got != bad_ref || (st == QTK_OK && memcmp(ref, got, bytes) != 0)) {
                        ++failures;
                        if (!first_bad) {
                            static char msg[96];
                            snprintf(msg, sizeof msg, "MISMATCH %s kind %d weighted %d", qtk_fastq_name(v), kind, weighted);
                            first_bad = msg;
                        }
                    }
                }
            }
        }
        printf("%-7s %016llx %s\n", tr.name, (unsigned long long)h, first_bad ? first_bad : "ok");
        free(x);
        free(w);
        free(ref);
        free(got);
    }
    printf("%d passed, %d failed\n", failures ? 0 : 1, failures ? 1 : 0);
    return failures ? 1 : 0;
}
