/* IQ4_NL and IQ4_XS: 4-bit indices into a non-linear codebook (portable reference).
 *
 * Both use the search of ggml's quantize_iq4_nl / quantize_iq4_xs (ntry = 7), which is what
 * ggml_quantize_chunk and llama-quantize run, with or without importance weights. */
#include "ref/common.h"
#include "ref/ref.h"

const int8_t qtk_kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

#define IQ4_NTRY 7

/* Best scale for one block of 32 under weights w; levels into L. Returns 0 for an all-zero block
 * (L untouched). */
static float iq4_block_scale(const float *xb, const float *w, uint8_t *L) {
    const int8_t *K = qtk_kvalues_iq4nl;
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j) {
        const float ax = fabsf(xb[j]);
        if (ax > amax) {
            amax = ax;
            max = xb[j];
        }
    }
    if (amax < QTK_GROUP_EPS) {
        return 0.0f;
    }
    float d = -max / K[0];
    float id = 1 / d;
    float sumqx = 0.0f, sumq2 = 0.0f;
    for (int j = 0; j < 32; ++j) {
        const int l = qtk_best_index_int8(16, K, id * xb[j]);
        L[j] = (uint8_t)l;
        const float q = K[l];
        sumqx += w[j] * q * xb[j];
        sumq2 += w[j] * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.0f;
    float best = d * sumqx;
    for (int itry = -IQ4_NTRY; itry <= IQ4_NTRY; ++itry) {
        id = (itry + K[0]) / max;
        sumqx = sumq2 = 0.0f;
        for (int j = 0; j < 32; ++j) {
            const float q = K[qtk_best_index_int8(16, K, id * xb[j])];
            sumqx += w[j] * q * xb[j];
            sumq2 += w[j] * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

/* Per-element weights: qw * sqrt(sigma2 + x^2) with importance, x^2 without. */
static void iq4_weights(const float *xb, const float *qw, float sigma2, float *w) {
    for (int j = 0; j < 32; ++j) {
        w[j] = qw ? qw[j] * sqrtf(sigma2 + xb[j] * xb[j]) : xb[j] * xb[j];
    }
}

static float mean_square_x2(const float *x, int n) {
    float s = 0.0f;
    for (int j = 0; j < n; ++j) {
        s += x[j] * x[j];
    }
    return s * (2.0f / n);
}

static void pack_nibbles32(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < 16; ++j) {
        qs[j] = (uint8_t)(L[j] | (L[16 + j] << 4));
    }
}

void qtk_quantize_row_iq4_nl(const float *x, void *vy, int64_t n, const float *qw) {
    block_iq4_nl *y = vy;
    uint8_t L[32];
    float w[32];
    for (int64_t i = 0; i < n / QK4_NL; ++i) {
        const float *xb = x + i * QK4_NL;
        const float sigma2 = mean_square_x2(xb, 32);
        iq4_weights(xb, qw ? qw + i * QK4_NL : NULL, sigma2, w);
        const float d = iq4_block_scale(xb, w, L);
        y[i].d = qtk_fp32_to_fp16(d);
        const float id = d ? 1 / d : 0;
        for (int j = 0; j < 32; ++j) {
            L[j] = (uint8_t)qtk_best_index_int8(16, qtk_kvalues_iq4nl, id * xb[j]);
        }
        pack_nibbles32(L, y[i].qs);
    }
}

void qtk_dequantize_row_iq4_nl(const void *vx, float *y, int64_t n) {
    const block_iq4_nl *x = vx;
    for (int64_t i = 0; i < n / QK4_NL; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d);
        for (int j = 0; j < 16; ++j) {
            y[i * QK4_NL + j] = d * qtk_kvalues_iq4nl[x[i].qs[j] & 0xF];
            y[i * QK4_NL + j + 16] = d * qtk_kvalues_iq4nl[x[i].qs[j] >> 4];
        }
    }
}

void qtk_quantize_row_iq4_xs(const float *x, void *vy, int64_t n, const float *qw) {
    block_iq4_xs *y = vy;
    uint8_t L[QK_K];
    float w[32], scales[QK_K / 32];
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
        const float sigma2 = mean_square_x2(x, QK_K);
        float max_scale = 0.0f, amax_scale = 0.0f;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const float *xb = x + 32 * ib;
            iq4_weights(xb, qw ? qw + i * QK_K + 32 * ib : NULL, sigma2, w);
            scales[ib] = iq4_block_scale(xb, w, L + 32 * ib);
            if (fabsf(scales[ib]) > amax_scale) {
                amax_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        const float d = -max_scale / 32;
        y[i].d = qtk_fp32_to_fp16(d);
        const float id = d ? 1 / d : 0.0f;
        y[i].scales_h = 0;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            int l = qtk_nearest_int(id * scales[ib]);
            l = QTK_MAX(-32, QTK_MIN(31, l));
            const float dl = d * l;
            const float idl = dl ? 1 / dl : 0.0f;
            for (int j = 0; j < 32; ++j) {
                L[32 * ib + j] = (uint8_t)qtk_best_index_int8(16, qtk_kvalues_iq4nl, idl * x[32 * ib + j]);
            }
            l += 32;
            if (ib % 2 == 0) {
                y[i].scales_l[ib / 2] = (uint8_t)(l & 0xF);
            } else {
                y[i].scales_l[ib / 2] |= (uint8_t)((l & 0xF) << 4);
            }
            y[i].scales_h |= (uint16_t)((l >> 4) << (2 * ib));
        }
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            pack_nibbles32(L + 32 * ib, y[i].qs + 16 * ib);
        }
    }
}

void qtk_dequantize_row_iq4_xs(const void *vx, float *y, int64_t n) {
    const block_iq4_xs *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const int ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((x[i].scales_h >> (2 * ib)) & 3) << 4);
            const float dl = d * (ls - 32);
            const uint8_t *qs = x[i].qs + 16 * ib;
            float *out = y + i * QK_K + 32 * ib;
            for (int j = 0; j < 16; ++j) {
                out[j] = dl * qtk_kvalues_iq4nl[qs[j] & 0xF];
                out[j + 16] = dl * qtk_kvalues_iq4nl[qs[j] >> 4];
            }
        }
    }
}
