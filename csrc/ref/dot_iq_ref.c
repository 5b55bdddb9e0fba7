/* Reference dot products of the IQ1/IQ2/IQ3 formats with a Q8_K activation row (ggml's CPU
 * pairing for all of them).
 *
 * Each kernel sums grid value x sign x activation level exactly in integers per group, weights
 * the groups by their odd integer sub-block scale (2s + 1), and applies the float scales once per
 * super-block: d(weights) * d(activations) * (integer sum) * a power of two, accumulated over
 * super-blocks in float. The signature is that of the dispatched dot kernels
 * (n, result, weight row, activation row).
 */
#include "qtk.h"
#include "qtk_iq.h"
#include "ref/common.h"
#include "ref/iq_grids.h"
#include "ref/ref.h"

static inline int grid8_dot(uint64_t g, uint8_t signs, const int8_t *q8) {
    int sum = 0;
    for (int j = 0; j < 8; ++j) {
        const int v = (int)(uint8_t)(g >> (8 * j)) * q8[j];
        sum += signs & (1u << j) ? -v : v;
    }
    return sum;
}

static inline int grid4_dot(uint32_t g, uint8_t signs, const int8_t *q8) {
    int sum = 0;
    for (int j = 0; j < 4; ++j) {
        const int v = (int)(uint8_t)(g >> (8 * j)) * q8[j];
        sum += signs & (1u << j) ? -v : v;
    }
    return sum;
}

/* sum of the signed IQ1 grid values times the activations, and the sum of the activations */
static inline int grid8_signed_dot(uint64_t g, const int8_t *q8, int *qsum) {
    int sum = 0, s = 0;
    for (int j = 0; j < 8; ++j) {
        sum += (int8_t)(uint8_t)(g >> (8 * j)) * q8[j];
        s += q8[j];
    }
    *qsum = s;
    return sum;
}

void qtk_vec_dot_iq2_xxs_q8_K_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq2_xxs *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d) * y[i].d;
        const int8_t *q8 = y[i].qs;
        int32_t bsum = 0;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const uint32_t idx = x[i].qs[4 * ib] | ((uint32_t)x[i].qs[4 * ib + 1] << 16);
            const uint32_t aux = x[i].qs[4 * ib + 2] | ((uint32_t)x[i].qs[4 * ib + 3] << 16);
            int sumi = 0;
            for (int l = 0; l < 4; ++l) {
                sumi += grid8_dot(qtk_iq2xxs_grid[(idx >> (8 * l)) & 255], qtk_ksigns_iq2xs[(aux >> (7 * l)) & 127], q8);
                q8 += 8;
            }
            bsum += sumi * (int32_t)(2 * (aux >> 28) + 1);
        }
        sumf += d * bsum;
    }
    *s = 0.125f * sumf;
}

void qtk_vec_dot_iq2_xs_q8_K_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq2_xs *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d) * y[i].d;
        const int8_t *q8 = y[i].qs;
        int32_t bsum = 0;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            for (int half = 0; half < 2; ++half) {
                const int ls = 2 * ((x[i].scales[ib] >> (4 * half)) & 0xF) + 1;
                int sumi = 0;
                for (int l = 2 * half; l < 2 * half + 2; ++l) {
                    const uint16_t q = x[i].qs[4 * ib + l];
                    sumi += grid8_dot(qtk_iq2xs_grid[q & 511], qtk_ksigns_iq2xs[q >> 9], q8);
                    q8 += 8;
                }
                bsum += sumi * ls;
            }
        }
        sumf += d * bsum;
    }
    *s = 0.125f * sumf;
}

void qtk_vec_dot_iq2_s_q8_K_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq2_s *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d) * y[i].d;
        const int8_t *q8 = y[i].qs;
        const uint8_t *signs = x[i].qs + QK_K / 8;
        int32_t bsum = 0;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            for (int half = 0; half < 2; ++half) {
                const int ls = 2 * ((x[i].scales[ib] >> (4 * half)) & 0xF) + 1;
                int sumi = 0;
                for (int l = 2 * half; l < 2 * half + 2; ++l) {
                    const int index = x[i].qs[4 * ib + l] | (((x[i].qh[ib] >> (2 * l)) & 3) << 8);
                    sumi += grid8_dot(qtk_iq2s_grid[index], signs[4 * ib + l], q8);
                    q8 += 8;
                }
                bsum += sumi * ls;
            }
        }
        sumf += d * bsum;
    }
    *s = 0.125f * sumf;
}

void qtk_vec_dot_iq3_xxs_q8_K_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq3_xxs *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d) * y[i].d;
        const int8_t *q8 = y[i].qs;
        const uint8_t *qs = x[i].qs;
        int32_t bsum = 0;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const uint8_t *p = x[i].qs + QK_K / 4 + 4 * ib;
            const uint32_t aux = p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
            int sumi = 0;
            for (int l = 0; l < 4; ++l) {
                const uint8_t signs = qtk_ksigns_iq2xs[(aux >> (7 * l)) & 127];
                sumi += grid4_dot(qtk_iq3xxs_grid[qs[2 * l]], signs, q8);
                sumi += grid4_dot(qtk_iq3xxs_grid[qs[2 * l + 1]], (uint8_t)(signs >> 4), q8 + 4);
                q8 += 8;
            }
            qs += 8;
            bsum += sumi * (int32_t)(2 * (aux >> 28) + 1);
        }
        sumf += d * bsum;
    }
    *s = 0.25f * sumf;
}

void qtk_vec_dot_iq3_s_q8_K_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq3_s *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d) * y[i].d;
        const int8_t *q8 = y[i].qs;
        int32_t bsum = 0;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const int ls = 2 * ((x[i].scales[ib / 2] >> (4 * (ib % 2))) & 0xF) + 1;
            const uint8_t *qs = x[i].qs + 8 * ib;
            const uint8_t qh = x[i].qh[ib];
            int sumi = 0;
            for (int l = 0; l < 4; ++l) {
                const uint8_t signs = x[i].signs[4 * ib + l];
                const int i1 = qs[2 * l] | (((qh >> (2 * l)) & 1) << 8);
                const int i2 = qs[2 * l + 1] | (((qh >> (2 * l + 1)) & 1) << 8);
                sumi += grid4_dot(qtk_iq3s_grid[i1], signs, q8);
                sumi += grid4_dot(qtk_iq3s_grid[i2], (uint8_t)(signs >> 4), q8 + 4);
                q8 += 8;
            }
            bsum += sumi * ls;
        }
        sumf += d * bsum;
    }
    *s = sumf;
}

void qtk_vec_dot_iq1_s_q8_K_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq1_s *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const int8_t *q8 = y[i].qs;
        int32_t sumi1 = 0, sumi2 = 0;   /* grid part; delta part in units of delta */
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const uint16_t qh = x[i].qh[ib];
            const int ls = 2 * ((qh >> 12) & 7) + 1;
            int sumi = 0, qsum = 0;
            for (int l = 0; l < 4; ++l) {
                int qs8;
                sumi += grid8_signed_dot(qtk_iq1s_grid[x[i].qs[4 * ib + l] | (((qh >> (3 * l)) & 7) << 8)], q8, &qs8);
                qsum += qs8;
                q8 += 8;
            }
            sumi1 += ls * sumi;
            sumi2 += ls * (qh & 0x8000 ? -qsum : qsum);
        }
        sumf += qtk_fp16_to_fp32(x[i].d) * y[i].d * (sumi1 + QTK_IQ1_DELTA * sumi2);
    }
    *s = sumf;
}

void qtk_vec_dot_iq1_m_q8_K_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq1_m *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const int8_t *q8 = y[i].qs;
        const uint8_t *sc = x[i].scales;
        int32_t sumi1 = 0, sumi2 = 0;
        for (int ib = 0; ib < QK_K / 16; ++ib) {
            const uint16_t w = (uint16_t)(sc[2 * (ib / 4)] | (sc[2 * (ib / 4) + 1] << 8));
            const int ls = 2 * ((w >> (3 * (ib % 4))) & 7) + 1;
            int sumi = 0, dsum = 0;
            for (int k = 0; k < 2; ++k) {
                const uint8_t nib = (uint8_t)(x[i].qh[ib] >> (4 * k));
                int qs8;
                sumi += grid8_signed_dot(qtk_iq1s_grid[x[i].qs[2 * ib + k] | ((nib & 7) << 8)], q8, &qs8);
                dsum += nib & 0x08 ? -qs8 : qs8;
                q8 += 8;
            }
            sumi1 += ls * sumi;
            sumi2 += ls * dsum;
        }
        sumf += qtk_fp16_to_fp32(qtk_iq1_m_scale(&x[i])) * y[i].d * (sumi1 + QTK_IQ1_DELTA * sumi2);
    }
    *s = sumf;
}

int qtk_iq_vec_dot_ref(int type, int64_t n, const void *x, const void *y, float *out) {
    if (!x || !y || !out || n < 0) {
        return QTK_E_ARG;
    }
    if (n % QK_K) {
        return QTK_E_SHAPE;
    }
    switch (type) {
    case QTK_TYPE_IQ2_XXS: qtk_vec_dot_iq2_xxs_q8_K_ref(n, out, x, y); return QTK_OK;
    case QTK_TYPE_IQ2_XS: qtk_vec_dot_iq2_xs_q8_K_ref(n, out, x, y); return QTK_OK;
    case QTK_TYPE_IQ2_S: qtk_vec_dot_iq2_s_q8_K_ref(n, out, x, y); return QTK_OK;
    case QTK_TYPE_IQ3_XXS: qtk_vec_dot_iq3_xxs_q8_K_ref(n, out, x, y); return QTK_OK;
    case QTK_TYPE_IQ3_S: qtk_vec_dot_iq3_s_q8_K_ref(n, out, x, y); return QTK_OK;
    case QTK_TYPE_IQ1_S: qtk_vec_dot_iq1_s_q8_K_ref(n, out, x, y); return QTK_OK;
    case QTK_TYPE_IQ1_M: qtk_vec_dot_iq1_m_q8_K_ref(n, out, x, y); return QTK_OK;
    default: return QTK_E_TYPE;
    }
}
