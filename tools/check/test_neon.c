/* A C test of the dispatched kernels against the reference, built for arm64 and run under
 * qemu-user by tools/check/test_neon.sh (it also builds and runs natively, testing whatever ISA the host
 * has). For every type: dequantize bit-exact; the activation quantizer bit-exact (ties, zeros,
 * subnormals, NaN); matmul within the normalised error bound of the reference; MoE equal to the
 * per-token loop; the IQ codebook types included; BF16 weights with F32 activations (QTK_ACT_F32). Prints one
 * line per failure and a closing "N passed, M failed" line. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qtk.h"
#include "qtk_isa.h"
#include "qtk_matmul.h"

static int passed, failed;

static void check(int ok, const char *what, const char *type, int nb) {
    if (ok) {
        ++passed;
    } else {
        ++failed;
        printf("FAIL %s %s (%d blocks)\n", what, type, nb);
    }
}

static uint64_t rng_state = 88172645463325252ull;
static double urand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}
static float nrand(void) {
    const double u = urand() + 1e-12, v = urand();
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static const int types[] = {QTK_TYPE_F32, QTK_TYPE_F16, QTK_TYPE_BF16, QTK_TYPE_Q4_0, QTK_TYPE_Q4_1, QTK_TYPE_Q5_0,
                            QTK_TYPE_Q5_1, QTK_TYPE_Q8_0, QTK_TYPE_Q2_K, QTK_TYPE_Q3_K, QTK_TYPE_Q4_K, QTK_TYPE_Q5_K,
                            QTK_TYPE_Q6_K, QTK_TYPE_IQ4_NL, QTK_TYPE_IQ4_XS, QTK_TYPE_TQ1_0, QTK_TYPE_TQ2_0,
                            QTK_TYPE_IQ2_XXS, QTK_TYPE_IQ2_XS, QTK_TYPE_IQ2_S, QTK_TYPE_IQ3_XXS, QTK_TYPE_IQ3_S,
                            QTK_TYPE_IQ1_S, QTK_TYPE_IQ1_M};

static double nerr(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; ++i) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)a[i] * a[i];
    }
    return den > 0 ? num / den : (num == 0 ? 0 : 1e9);
}

int main(void) {
    const int simd = QTK_ISA_NEON;
    int isa = qtk_isa_available(simd) ? simd : qtk_isa_available(QTK_ISA_AVX2) ? QTK_ISA_AVX2 : QTK_ISA_REF;
    printf("testing %s against ref\n", qtk_isa_name(isa));
    static const int counts[] = {1, 2, 3, 7, 8, 15, 16, 17, 31, 33};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ++ti) {
        const int type = types[ti];
        qtk_type_traits tr;
        qtk_get_type_traits(type, &tr);
        for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ++ci) {
            const int nb = counts[ci];
            const int64_t n = nb * (tr.blck_size > 1 ? tr.blck_size : 8), rows = 5, tokens = 3;
            const qtk_wtype wt = {type, 0, 0, 0, QTK_ACT_COMPANION};
            int64_t rb, ab;
            qtk_wtype_row_bytes(&wt, n, &rb);
            qtk_activation_row_bytes(&wt, n, &ab);
            float *w = malloc(rows * n * 4), *x = malloc(tokens * n * 4), *d0 = malloc(rows * n * 4),
                  *d1 = malloc(rows * n * 4), *o0 = malloc(rows * tokens * 4), *o1 = malloc(rows * tokens * 4);
            uint8_t *q = malloc(rows * rb), *a0 = malloc(ab), *a1 = malloc(ab);
            for (int64_t i = 0; i < rows * n; ++i) {
                w[i] = nrand() * (float)(0.2 + i % 7);
            }
            for (int64_t i = 0; i < tokens * n; ++i) {
                x[i] = nrand();
            }
            /* awkward activation values in token 0: roundf ties with d = 1, a zero block, a NaN-free tail */
            for (int64_t b = 0; b + 32 <= n; b += 32) {
                x[b] = 127.0f;
                x[b + 1] = 0.5f;
                x[b + 2] = -2.5f;
                x[b + 3] = 126.5f;
                x[b + 4] = 0.49999997f;
            }
            float *imat = malloc((size_t)n * 4);   /* importance weights (IQ2_XXS, IQ2_XS, IQ1_S need them) */
            for (int64_t i = 0; i < n; ++i) {
                imat[i] = 0.5f + (float)(i % 5);
            }
            qtk_set_isa(QTK_ISA_REF);
            qtk_quantize(type, w, q, rows, n, imat, NULL);
            free(imat);
            qtk_dequantize(type, q, d0, rows, n);
            qtk_quantize_activation(&wt, x, n, a0, ab);
            qtk_matmul(&wt, q, rows, n, x, tokens, o0, 1);
            qtk_set_isa(isa);
            qtk_dequantize(type, q, d1, rows, n);
            check(memcmp(d0, d1, rows * n * 4) == 0, "dequantize", tr.name, nb);
            qtk_quantize_activation(&wt, x, n, a1, ab);
            check(memcmp(a0, a1, ab) == 0, "activation quantize", tr.name, nb);
            qtk_matmul(&wt, q, rows, n, x, tokens, o1, 2);
            check(nerr(o0, o1, rows * tokens) < 5e-4, "matmul error", tr.name, nb);
            /* random bytes through the dequantizer (any scale bit pattern) */
            for (int64_t i = 0; i < rows * rb; ++i) {
                q[i] = (uint8_t)(urand() * 256);
            }
            qtk_set_isa(QTK_ISA_REF);
            qtk_dequantize(type, q, d0, rows, n);
            qtk_set_isa(isa);
            qtk_dequantize(type, q, d1, rows, n);
            check(memcmp(d0, d1, rows * n * 4) == 0, "dequantize random bytes", tr.name, nb);
            free(w), free(x), free(d0), free(d1), free(o0), free(o1), free(q), free(a0), free(a1);
        }
    }
    /* the activation formats' own dequantizers, on random bytes and on quantized rows */
    {
        const int act_types[] = {QTK_TYPE_Q8_1, QTK_TYPE_Q8_K};
        for (int a = 0; a < 2; ++a) {
            qtk_type_traits tr;
            qtk_get_type_traits(act_types[a], &tr);
            const int64_t n = 3 * 256, rows = 4, rb = n / tr.blck_size * tr.type_size;
            uint8_t *q = malloc(rows * rb);
            float *w = malloc(rows * n * 4), *d0 = malloc(rows * n * 4), *d1 = malloc(rows * n * 4);
            for (int pass = 0; pass < 2; ++pass) {
                if (pass == 0) {
                    for (int64_t i = 0; i < rows * rb; ++i) {
                        q[i] = (uint8_t)(urand() * 256);
                    }
                } else {
                    for (int64_t i = 0; i < rows * n; ++i) {
                        w[i] = nrand();
                    }
                    qtk_set_isa(QTK_ISA_REF);
                    qtk_quantize(act_types[a], w, q, rows, n, NULL, NULL);
                    uint8_t *q2 = malloc(rows * rb);
                    qtk_set_isa(isa);
                    qtk_quantize(act_types[a], w, q2, rows, n, NULL, NULL);
                    check(memcmp(q, q2, rows * rb) == 0, "quantize", tr.name, 3);
                    free(q2);
                }
                qtk_set_isa(QTK_ISA_REF);
                qtk_dequantize(act_types[a], q, d0, rows, n);
                qtk_set_isa(isa);
                qtk_dequantize(act_types[a], q, d1, rows, n);
                check(memcmp(d0, d1, rows * n * 4) == 0, pass ? "dequantize" : "dequantize random bytes", tr.name, 3);
            }
            free(q), free(w), free(d0), free(d1);
        }
    }
    /* activation quantizers on subnormal / huge / NaN rows */
    for (int kind = 0; kind < 3; ++kind) {
        const int64_t n = 512;
        float x[512];
        for (int i = 0; i < n; ++i) {
            x[i] = kind == 0 ? nrand() * 1e-39f : kind == 1 ? nrand() * 1e30f : (i % 37 == 5 ? NAN : nrand());
        }
        const int acts[] = {QTK_TYPE_Q4_0, QTK_TYPE_Q4_1, QTK_TYPE_Q4_K};
        for (int a = 0; a < 3; ++a) {
            const qtk_wtype wt = {acts[a], 0, 0, 0, QTK_ACT_COMPANION};
            int64_t ab;
            qtk_activation_row_bytes(&wt, n, &ab);
            uint8_t y0[1024], y1[1024];
            qtk_set_isa(QTK_ISA_REF);
            qtk_quantize_activation(&wt, x, n, y0, ab);
            qtk_set_isa(isa);
            qtk_quantize_activation(&wt, x, n, y1, ab);
            check(memcmp(y0, y1, ab) == 0, kind == 0 ? "subnormal activation" : kind == 1 ? "huge activation" : "NaN activation",
                  acts[a] == QTK_TYPE_Q4_0 ? "q8_0" : acts[a] == QTK_TYPE_Q4_1 ? "q8_1" : "q8_K", 2);
        }
    }
    /* MoE equals the per-token loop */
    {
        const int64_t E = 5, rows = 40, n = 512, T = 4, K = 2;
        const qtk_wtype wt = {QTK_TYPE_Q4_K, 0, 0, 0, QTK_ACT_COMPANION};
        int64_t rb;
        qtk_wtype_row_bytes(&wt, n, &rb);
        float *w = malloc(E * rows * n * 4), *x = malloc(T * n * 4), *o = malloc(T * K * rows * 4), *r = malloc(rows * 4);
        uint8_t *q = malloc(E * rows * rb);
        for (int64_t i = 0; i < E * rows * n; ++i) {
            w[i] = nrand();
        }
        for (int64_t i = 0; i < T * n; ++i) {
            x[i] = nrand();
        }
        const int32_t ids[8] = {1, 4, 0, 1, 3, 3, 2, 0};
        qtk_set_isa(isa);
        qtk_quantize(QTK_TYPE_Q4_K, w, q, E * rows, n, NULL, NULL);
        qtk_moe_matmul(&wt, q, E, rows, n, x, T, ids, K, o, 2);
        int ok = 1;
        for (int64_t t = 0; t < T; ++t) {
            for (int64_t j = 0; j < K; ++j) {
                qtk_matmul(&wt, q + ids[t * K + j] * rows * rb, rows, n, x + t * n, 1, r, 1);
                ok &= memcmp(r, o + (t * K + j) * rows, rows * 4) == 0;
            }
        }
        check(ok, "moe_matmul equals per-token matmul", "q4_K", 0);
        free(w), free(x), free(o), free(r), free(q);
    }
    /* BF16 weights with F32 activations (QTK_ACT_F32) on lengths around the 8-wide steps: the kernel
     * against the reference; a token alone, in a batch, through vec_dot and through moe_matmul the
     * same bits; the F32 path on the widened weights within float32 rounding; quantized types refused */
    {
        static const int64_t lens[] = {1, 7, 8, 9, 16, 24, 40, 72, 256, 264, 517};
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; ++li) {
            const int64_t n = lens[li], rows = 7, tokens = 5;
            const int nb = (int)n;
            const qtk_wtype wt = {QTK_TYPE_BF16, 0, 0, 0, QTK_ACT_F32}, wf = {QTK_TYPE_F32, 0, 0, 0, QTK_ACT_COMPANION};
            int64_t rb = 0, ab = 0;
            check(qtk_wtype_row_bytes(&wt, n, &rb) == QTK_OK && rb == 2 * n, "bf16 x f32 row bytes", "bf16", nb);
            check(qtk_activation_row_bytes(&wt, n, &ab) == QTK_OK && ab == 4 * n, "bf16 x f32 activation bytes", "bf16",
                  nb);
            float *w = malloc(rows * n * 4), *wd = malloc(rows * n * 4), *x = malloc(tokens * n * 4),
                  *o0 = malloc(rows * tokens * 4), *o1 = malloc(rows * tokens * 4), *of = malloc(rows * tokens * 4),
                  *om = malloc(2 * rows * tokens * 4), *r = malloc(rows * 4), *a = malloc(n * 4);
            uint8_t *q = malloc(2 * rows * rb);
            for (int64_t i = 0; i < rows * n; ++i) {
                w[i] = nrand() * (float)(0.2 + i % 7);
            }
            for (int64_t i = 0; i < tokens * n; ++i) {
                x[i] = nrand();
            }
            qtk_quantize(QTK_TYPE_BF16, w, q, rows, n, NULL, NULL);
            memcpy(q + rows * rb, q, rows * rb);   /* a second expert, the same matrix */
            qtk_dequantize(QTK_TYPE_BF16, q, wd, rows, n);
            qtk_set_isa(QTK_ISA_REF);
            qtk_matmul(&wt, q, rows, n, x, tokens, o0, 1);
            qtk_set_isa(isa);
            qtk_matmul(&wt, q, rows, n, x, tokens, o1, 2);
            check(nerr(o0, o1, rows * tokens) < 5e-7, "bf16 x f32 matmul error", "bf16", nb);
            int alone = 1, dot = 1, moe = 1;
            for (int64_t t = 0; t < tokens; ++t) {
                qtk_matmul(&wt, q, rows, n, x + t * n, 1, r, 1);
                alone &= memcmp(r, o1 + t * rows, rows * 4) == 0;
            }
            qtk_quantize_activation(&wt, x, n, a, ab);
            check(memcmp(a, x, n * 4) == 0, "bf16 x f32 activation is the float32 row", "bf16", nb);
            for (int64_t i = 0; i < rows; ++i) {
                float s;
                qtk_vec_dot(&wt, n, q + i * rb, a, &s);
                dot &= memcmp(&s, &o1[i], 4) == 0;
            }
            const int32_t ids[10] = {1, 0, 0, 1, 1, 1, 0, 0, 1, 0};
            qtk_moe_matmul(&wt, q, 2, rows, n, x, tokens, ids, 2, om, 2);
            for (int64_t t = 0; t < tokens; ++t) {
                moe &= memcmp(om + 2 * t * rows, o1 + t * rows, rows * 4) == 0 &&
                       memcmp(om + (2 * t + 1) * rows, o1 + t * rows, rows * 4) == 0;
            }
            check(alone, "bf16 x f32 token alone equals the batch", "bf16", nb);
            check(dot, "bf16 x f32 vec_dot equals matmul", "bf16", nb);
            check(moe, "bf16 x f32 moe_matmul equals matmul", "bf16", nb);
            qtk_matmul(&wf, wd, rows, n, x, tokens, of, 2);
            check(nerr(of, o1, rows * tokens) < 1e-10, "bf16 x f32 equals f32 on the widened weights", "bf16", nb);
            free(w), free(wd), free(x), free(o0), free(o1), free(of), free(om), free(r), free(a), free(q);
        }
        const qtk_wtype wq = {QTK_TYPE_Q4_0, 0, 0, 0, QTK_ACT_F32}, wc = {QTK_TYPE_CUSTOM, 4, 32, 0, QTK_ACT_F32},
                        wbad = {QTK_TYPE_BF16, 0, 0, 0, 2};
        int64_t rb;
        check(qtk_wtype_row_bytes(&wq, 256, &rb) == QTK_E_UNSUPPORTED && qtk_wtype_row_bytes(&wc, 256, &rb) ==
              QTK_E_UNSUPPORTED && qtk_wtype_row_bytes(&wbad, 256, &rb) == QTK_E_ARG, "act f32 refused", "q4_0", 0);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
