/* The 32-element formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1 (portable reference). */
#include <float.h>

#include "ref/common.h"
#include "ref/ref.h"
#include "ref/search.h"

/* Mean square of a whole row: the sigma^2 of the weighted legacy quantizers. */
static float row_mean_square(const float *x, int64_t n) {
    float sum = 0.0f;
    for (int64_t j = 0; j < n; ++j) {
        sum += x[j] * x[j];
    }
    return sum / n;
}

static void importance(const float *x, const float *qw, float sigma2, float *w, int n) {
    for (int j = 0; j < n; ++j) {
        w[j] = qw[j] * sqrtf(sigma2 + x[j] * x[j]);
    }
}

static float block_signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; ++j) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void block_min_max(const float *x, int n, float *min, float *max) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < n; ++j) {
        if (x[j] < lo) {
            lo = x[j];
        }
        if (x[j] > hi) {
            hi = x[j];
        }
    }
    *min = lo;
    *max = hi;
}

/* Pack 32 five-bit levels: low nibbles pairwise into qs, fifth bits into a little-endian u32. */
static void pack_q5(const uint8_t *L, uint8_t *qs, uint8_t *qh_bytes) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
        qs[j] = (uint8_t)((L[j] & 0x0F) | ((L[j + 16] & 0x0F) << 4));
        qh |= (uint32_t)((L[j] & 0x10u) >> 4) << j;
        qh |= (uint32_t)((L[j + 16] & 0x10u) >> 4) << (j + 16);
    }
    for (int b = 0; b < 4; ++b) {
        qh_bytes[b] = (uint8_t)(qh >> (8 * b));
    }
}

static uint32_t read_u32le(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* ---------------------------------------------------------------- Q4_0 */

void qtk_quantize_row_q4_0(const float *x, void *vy, int64_t n, const float *qw) {
    block_q4_0 *y = vy;
    const int64_t nb = n / QK4_0;
    if (qw) {
        const float sigma2 = row_mean_square(x, n);
        float w[QK4_0];
        int8_t L[QK4_0];
        for (int64_t i = 0; i < nb; ++i) {
            const float *xb = x + i * QK4_0;
            importance(xb, qw + i * QK4_0, sigma2, w, QK4_0);
            y[i].d = qtk_fp32_to_fp16(qtk_search_symmetric(QK4_0, 8, xb, L, w));
            for (int j = 0; j < 16; ++j) {
                y[i].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
            }
        }
        return;
    }
    for (int64_t i = 0; i < nb; ++i) {
        const float *xb = x + i * QK4_0;
        const float d = block_signed_absmax(xb, QK4_0) / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = qtk_fp32_to_fp16(d);
        for (int j = 0; j < 16; ++j) {
            const int8_t a = (int8_t)qtk_trunc_f2i(xb[j] * id + 8.5f);
            const int8_t b = (int8_t)qtk_trunc_f2i(xb[j + 16] * id + 8.5f);
            const uint8_t qa = (uint8_t)QTK_MIN(15, a);
            const uint8_t qb = (uint8_t)QTK_MIN(15, b);
            y[i].qs[j] = (uint8_t)(qa | (qb << 4));
        }
    }
}

void qtk_dequantize_row_q4_0(const void *vx, float *y, int64_t n) {
    const block_q4_0 *x = vx;
    for (int64_t i = 0; i < n / QK4_0; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d);
        for (int j = 0; j < 16; ++j) {
            y[i * QK4_0 + j] = ((x[i].qs[j] & 0x0F) - 8) * d;
            y[i * QK4_0 + j + 16] = ((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

/* ---------------------------------------------------------------- Q4_1 */

void qtk_quantize_row_q4_1(const float *x, void *vy, int64_t n, const float *qw) {
    block_q4_1 *y = vy;
    const int64_t nb = n / QK4_1;
    if (qw) {
        const float sigma2 = row_mean_square(x, n);
        float w[QK4_1];
        uint8_t L[QK4_1];
        for (int64_t i = 0; i < nb; ++i) {
            const float *xb = x + i * QK4_1;
            importance(xb, qw + i * QK4_1, sigma2, w, QK4_1);
            float neg_min;
            const float d = qtk_search_scale_min(QK4_1, 15, xb, w, L, &neg_min, -0.9f, 0.05f, 36, 0);
            y[i].d = qtk_fp32_to_fp16(d);
            y[i].m = qtk_fp32_to_fp16(-neg_min);
            for (int j = 0; j < 16; ++j) {
                y[i].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
            }
        }
        return;
    }
    for (int64_t i = 0; i < nb; ++i) {
        const float *xb = x + i * QK4_1;
        float min, max;
        block_min_max(xb, QK4_1, &min, &max);
        const float d = (max - min) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = qtk_fp32_to_fp16(d);
        y[i].m = qtk_fp32_to_fp16(min);
        for (int j = 0; j < 16; ++j) {
            const int8_t a = (int8_t)qtk_trunc_f2i((xb[j] - min) * id + 0.5f);
            const int8_t b = (int8_t)qtk_trunc_f2i((xb[j + 16] - min) * id + 0.5f);
            const uint8_t qa = (uint8_t)QTK_MIN(15, a);
            const uint8_t qb = (uint8_t)QTK_MIN(15, b);
            y[i].qs[j] = (uint8_t)(qa | (qb << 4));
        }
    }
}

void qtk_dequantize_row_q4_1(const void *vx, float *y, int64_t n) {
    const block_q4_1 *x = vx;
    for (int64_t i = 0; i < n / QK4_1; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d);
        const float m = qtk_fp16_to_fp32(x[i].m);
        for (int j = 0; j < 16; ++j) {
            y[i * QK4_1 + j] = (x[i].qs[j] & 0x0F) * d + m;
            y[i * QK4_1 + j + 16] = (x[i].qs[j] >> 4) * d + m;
        }
    }
}

/* ---------------------------------------------------------------- Q5_0 */

void qtk_quantize_row_q5_0(const float *x, void *vy, int64_t n, const float *qw) {
    block_q5_0 *y = vy;
    const int64_t nb = n / QK5_0;
    uint8_t L[QK5_0];
    if (qw) {
        const float sigma2 = row_mean_square(x, n);
        float w[QK5_0];
        for (int64_t i = 0; i < nb; ++i) {
            const float *xb = x + i * QK5_0;
            importance(xb, qw + i * QK5_0, sigma2, w, QK5_0);
            y[i].d = qtk_fp32_to_fp16(qtk_search_symmetric(QK5_0, 16, xb, (int8_t *)L, w));
            pack_q5(L, y[i].qs, y[i].qh);
        }
        return;
    }
    for (int64_t i = 0; i < nb; ++i) {
        const float *xb = x + i * QK5_0;
        const float d = block_signed_absmax(xb, QK5_0) / -16;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = qtk_fp32_to_fp16(d);
        for (int j = 0; j < QK5_0; ++j) {
            const int8_t q = (int8_t)qtk_trunc_f2i(xb[j] * id + 16.5f);
            L[j] = (uint8_t)QTK_MIN(31, q);
        }
        pack_q5(L, y[i].qs, y[i].qh);
    }
}

void qtk_dequantize_row_q5_0(const void *vx, float *y, int64_t n) {
    const block_q5_0 *x = vx;
    for (int64_t i = 0; i < n / QK5_0; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d);
        const uint32_t qh = read_u32le(x[i].qh);
        for (int j = 0; j < 16; ++j) {
            const int lo = (x[i].qs[j] & 0x0F) | (int)(((qh >> j) << 4) & 0x10);
            const int hi = (x[i].qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
            y[i * QK5_0 + j] = (lo - 16) * d;
            y[i * QK5_0 + j + 16] = (hi - 16) * d;
        }
    }
}

/* ---------------------------------------------------------------- Q5_1 */

void qtk_quantize_row_q5_1(const float *x, void *vy, int64_t n, const float *qw) {
    block_q5_1 *y = vy;
    const int64_t nb = n / QK5_1;
    uint8_t L[QK5_1];
    if (qw) {
        const float sigma2 = row_mean_square(x, n);
        float w[QK5_1];
        for (int64_t i = 0; i < nb; ++i) {
            const float *xb = x + i * QK5_1;
            importance(xb, qw + i * QK5_1, sigma2, w, QK5_1);
            float neg_min;
            const float d = qtk_search_scale_min(QK5_1, 31, xb, w, L, &neg_min, -0.9f, 0.05f, 36, 0);
            y[i].d = qtk_fp32_to_fp16(d);
            y[i].m = qtk_fp32_to_fp16(-neg_min);
            pack_q5(L, y[i].qs, y[i].qh);
        }
        return;
    }
    for (int64_t i = 0; i < nb; ++i) {
        const float *xb = x + i * QK5_1;
        float min, max;
        block_min_max(xb, QK5_1, &min, &max);
        const float d = (max - min) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = qtk_fp32_to_fp16(d);
        y[i].m = qtk_fp32_to_fp16(min);
        for (int j = 0; j < QK5_1; ++j) {
            L[j] = (uint8_t)qtk_trunc_f2i((xb[j] - min) * id + 0.5f);
        }
        pack_q5(L, y[i].qs, y[i].qh);
    }
}

void qtk_dequantize_row_q5_1(const void *vx, float *y, int64_t n) {
    const block_q5_1 *x = vx;
    for (int64_t i = 0; i < n / QK5_1; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d);
        const float m = qtk_fp16_to_fp32(x[i].m);
        const uint32_t qh = read_u32le(x[i].qh);
        for (int j = 0; j < 16; ++j) {
            const int lo = (x[i].qs[j] & 0x0F) | (int)(((qh >> j) << 4) & 0x10);
            const int hi = (x[i].qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
            y[i * QK5_1 + j] = lo * d + m;
            y[i * QK5_1 + j + 16] = hi * d + m;
        }
    }
}

/* ---------------------------------------------------------------- Q8_0 / Q8_1 */

static float block_absmax(const float *x, int n) {
    float amax = 0.0f;
    for (int j = 0; j < n; ++j) {
        amax = QTK_MAX(amax, fabsf(x[j]));
    }
    return amax;
}

void qtk_quantize_row_q8_0(const float *x, void *vy, int64_t n, const float *qw) {
    (void)qw;   /* Q8_0 ignores importance weights, as ggml does */
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / QK8_0; ++i) {
        const float *xb = x + i * QK8_0;
        const float d = block_absmax(xb, QK8_0) / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = qtk_fp32_to_fp16(d);
        for (int j = 0; j < QK8_0; ++j) {
            y[i].qs[j] = (int8_t)qtk_trunc_f2i(roundf(xb[j] * id));
        }
    }
}

void qtk_dequantize_row_q8_0(const void *vx, float *y, int64_t n) {
    const block_q8_0 *x = vx;
    for (int64_t i = 0; i < n / QK8_0; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d);
        for (int j = 0; j < QK8_0; ++j) {
            y[i * QK8_0 + j] = x[i].qs[j] * d;
        }
    }
}

void qtk_quantize_row_q8_1(const float *x, void *vy, int64_t n, const float *qw) {
    (void)qw;
    block_q8_1 *y = vy;
    for (int64_t i = 0; i < n / QK8_1; ++i) {
        const float *xb = x + i * QK8_1;
        const float d = block_absmax(xb, QK8_1) / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = qtk_fp32_to_fp16(d);
        int sum = 0;
        for (int j = 0; j < QK8_1; ++j) {
            y[i].qs[j] = (int8_t)qtk_trunc_f2i(roundf(xb[j] * id));
            sum += y[i].qs[j];
        }
        y[i].s = qtk_fp32_to_fp16(sum * d);
    }
}

void qtk_dequantize_row_q8_1(const void *vx, float *y, int64_t n) {
    const block_q8_1 *x = vx;
    for (int64_t i = 0; i < n / QK8_1; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d);
        for (int j = 0; j < QK8_1; ++j) {
            y[i * QK8_1 + j] = x[i].qs[j] * d;
        }
    }
}
