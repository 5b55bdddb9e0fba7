/* The K-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and the activation format Q8_K (portable
 * reference). Super-blocks of QK_K = 256 elements with 16 or 8 sub-blocks. Without importance
 * weights each follows ggml's quantize_row_qX_K_ref; with them, ggml's weighted _impl. Both
 * end by re-quantizing every element against the stored fp16 scales. */
#include "ref/common.h"
#include "ref/ref.h"
#include "ref/search.h"

static float sum_squares(const float *x, int n) {
    float s = 0.0f;
    for (int j = 0; j < n; ++j) {
        s += x[j] * x[j];
    }
    return s;
}

/* 2-bit levels of 256 elements into 64 bytes: element 128h + 32k + l -> bits 2k of qs[32h + l]. */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int h = 0; h < 2; ++h) {
        const uint8_t *Lh = L + 128 * h;
        for (int l = 0; l < 32; ++l) {
            qs[32 * h + l] = (uint8_t)(Lh[l] | (Lh[l + 32] << 2) | (Lh[l + 64] << 4) | (Lh[l + 96] << 6));
        }
    }
}

/* Sub-block scale and min of the 12-byte Q4_K/Q5_K packing. */
static inline void get_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void put_scale_min_k4(int j, uint8_t ls, uint8_t lm, uint8_t *q) {
    if (j < 4) {
        q[j] = ls;
        q[j + 4] = lm;
    } else {
        q[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        q[j - 4] |= (uint8_t)((ls >> 4) << 6);
        q[j] |= (uint8_t)((lm >> 4) << 6);
    }
}

/* ---------------------------------------------------------------- Q2_K */

/* Levels 0..3 of every element against the stored scales (the final re-quantization). */
static void q2_K_requantize(const float *x, const block_q2_K *y, uint8_t *L) {
    const float dd = qtk_fp16_to_fp32(y->d);
    const float dm = qtk_fp16_to_fp32(y->dmin);
    for (int j = 0; j < QK_K / 16; ++j) {
        const float d = dd * (y->scales[j] & 0xF);
        if (!d) {
            continue;
        }
        const float m = dm * (y->scales[j] >> 4);
        for (int i = 0; i < 16; ++i) {
            const int l = qtk_nearest_int((x[16 * j + i] + m) / d);
            L[16 * j + i] = (uint8_t)QTK_MAX(0, QTK_MIN(3, l));
        }
    }
}

void qtk_quantize_row_q2_K(const float *x, void *vy, int64_t n, const float *qw) {
    block_q2_K *y = vy;
    uint8_t L[QK_K];
    float scales[QK_K / 16], mins[QK_K / 16], w[16];
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
        if (qw) {
            const float *qwb = qw + i * QK_K;
            const float sigma2 = sum_squares(x, QK_K) / QK_K;
            float sw[QK_K / 16];
            uint8_t Ls[QK_K / 16], Lm[QK_K / 16];
            for (int j = 0; j < QK_K / 16; ++j) {
                for (int l = 0; l < 16; ++l) {
                    w[l] = qwb[16 * j + l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
                }
                sw[j] = 0.0f;
                for (int l = 0; l < 16; ++l) {
                    sw[j] += w[l];
                }
                scales[j] = qtk_search_scale_min(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], -0.9f, 0.05f, 36, 0);
            }
            const float dm = qtk_search_positive(QK_K / 16, 15, scales, Ls, sw);
            const float mm = qtk_search_positive(QK_K / 16, 15, mins, Lm, sw);
            y[i].d = qtk_fp32_to_fp16(dm);
            y[i].dmin = qtk_fp32_to_fp16(mm);
            for (int j = 0; j < QK_K / 16; ++j) {
                y[i].scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
            }
        } else {
            float max_scale = 0.0f, max_min = 0.0f;
            for (int j = 0; j < QK_K / 16; ++j) {
                for (int l = 0; l < 16; ++l) {
                    w[l] = fabsf(x[16 * j + l]);
                }
                scales[j] = qtk_search_scale_min(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, 1);
                if (scales[j] > max_scale) {
                    max_scale = scales[j];
                }
                if (mins[j] > max_min) {
                    max_min = mins[j];
                }
            }
            if (max_scale > 0) {
                const float iscale = 15.0f / max_scale;
                for (int j = 0; j < QK_K / 16; ++j) {
                    y[i].scales[j] = (uint8_t)qtk_nearest_int(iscale * scales[j]);
                }
                y[i].d = qtk_fp32_to_fp16(max_scale / 15.0f);
            } else {
                memset(y[i].scales, 0, sizeof y[i].scales);
                y[i].d = qtk_fp32_to_fp16(0.0f);
            }
            if (max_min > 0) {
                const float iscale = 15.0f / max_min;
                for (int j = 0; j < QK_K / 16; ++j) {
                    y[i].scales[j] |= (uint8_t)(qtk_nearest_int(iscale * mins[j]) << 4);
                }
                y[i].dmin = qtk_fp32_to_fp16(max_min / 15.0f);
            } else {
                y[i].dmin = qtk_fp32_to_fp16(0.0f);
            }
        }
        q2_K_requantize(x, &y[i], L);
        pack_2bit(L, y[i].qs);
    }
}

void qtk_dequantize_row_q2_K(const void *vx, float *y, int64_t n) {
    const block_q2_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d);
        const float dmin = qtk_fp16_to_fp32(x[i].dmin);
        for (int e = 0; e < QK_K; ++e) {
            const int h = e / 128, k = (e % 128) / 32, l = e % 32;
            const uint8_t sc = x[i].scales[e / 16];
            const float dl = d * (sc & 0xF);
            const float ml = dmin * (sc >> 4);
            const int q = (x[i].qs[32 * h + l] >> (2 * k)) & 3;
            y[i * QK_K + e] = dl * q - ml;
        }
    }
}

/* ---------------------------------------------------------------- Q3_K */

/* 6-bit value of sub-block j (0..63, offset 32) in the 12-byte Q3_K scale packing. */
static inline int q3_K_scale(const uint8_t *s, int j) {
    const int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
    return lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4);
}

static void q3_K_put_scale(uint8_t *s, int j, int l) {
    if (j < 8) {
        s[j] = (uint8_t)(l & 0xF);
    } else {
        s[j - 8] |= (uint8_t)((l & 0xF) << 4);
    }
    s[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
}

static void q3_K_finish(const float *x, block_q3_K *y, int8_t *L) {
    const float dd = qtk_fp16_to_fp32(y->d);
    for (int j = 0; j < QK_K / 16; ++j) {
        const int8_t sc = (int8_t)(q3_K_scale(y->scales, j) - 32);
        const float d = dd * sc;
        if (!d) {
            continue;
        }
        for (int i = 0; i < 16; ++i) {
            const int l = qtk_nearest_int(x[16 * j + i] / d);
            L[16 * j + i] = (int8_t)(QTK_MAX(-4, QTK_MIN(3, l)) + 4);
        }
    }
    /* High bit of element e goes to bit e/32 of hmask[e % 32]; the low two bits as Q2_K. */
    memset(y->hmask, 0, sizeof y->hmask);
    for (int e = 0; e < QK_K; ++e) {
        if (L[e] > 3) {
            y->hmask[e % 32] |= (uint8_t)(1u << (e / 32));
            L[e] -= 4;
        }
    }
    pack_2bit((const uint8_t *)L, y->qs);
}

void qtk_quantize_row_q3_K(const float *x, void *vy, int64_t n, const float *qw) {
    block_q3_K *y = vy;
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
        memset(y[i].scales, 0, sizeof y[i].scales);
        if (qw) {
            const float *qwb = qw + i * QK_K;
            const float sigma2 = 2 * sum_squares(x, QK_K) / QK_K;
            float w[16], sw[QK_K / 16];
            int8_t Ls[QK_K / 16];
            for (int j = 0; j < QK_K / 16; ++j) {
                for (int l = 0; l < 16; ++l) {
                    w[l] = qwb[16 * j + l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
                }
                float sumw = 0.0f;
                for (int l = 0; l < 16; ++l) {
                    sumw += w[l];
                }
                sw[j] = sumw;
                scales[j] = qtk_search_symmetric(16, 4, x + 16 * j, L + 16 * j, w);
            }
            const float d_block = qtk_search_symmetric(QK_K / 16, 32, scales, Ls, sw);
            for (int j = 0; j < QK_K / 16; ++j) {
                q3_K_put_scale(y[i].scales, j, Ls[j]);
            }
            y[i].d = qtk_fp32_to_fp16(d_block);
        } else {
            float max_scale = 0.0f, amax = 0.0f;
            for (int j = 0; j < QK_K / 16; ++j) {
                scales[j] = qtk_search_symmetric_descent(16, 4, x + 16 * j, L + 16 * j);
                const float a = fabsf(scales[j]);
                if (a > amax) {
                    amax = a;
                    max_scale = scales[j];
                }
            }
            if (max_scale) {
                const float iscale = -32.0f / max_scale;
                for (int j = 0; j < QK_K / 16; ++j) {
                    int8_t l = (int8_t)qtk_nearest_int(iscale * scales[j]);
                    l = (int8_t)(QTK_MAX(-32, QTK_MIN(31, l)) + 32);
                    q3_K_put_scale(y[i].scales, j, l);
                }
                y[i].d = qtk_fp32_to_fp16(1 / iscale);
            } else {
                y[i].d = qtk_fp32_to_fp16(0.0f);
            }
        }
        q3_K_finish(x, &y[i], L);
    }
}

void qtk_dequantize_row_q3_K(const void *vx, float *y, int64_t n) {
    const block_q3_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d_all = qtk_fp16_to_fp32(x[i].d);
        for (int e = 0; e < QK_K; ++e) {
            const int h = e / 128, k = (e % 128) / 32, l = e % 32;
            const float dl = d_all * (q3_K_scale(x[i].scales, e / 16) - 32);
            const int lo = (x[i].qs[32 * h + l] >> (2 * k)) & 3;
            const int hbit = (x[i].hmask[e % 32] >> (e / 32)) & 1;
            y[i * QK_K + e] = dl * (lo - (hbit ? 0 : 4));
        }
    }
}

/* ---------------------------------------------------------------- Q4_K / Q5_K */

/* Shared scale/min selection for Q4_K (nmax 15) and Q5_K (nmax 31): fills d, dmin, scales of
 * the block (the caller's structs share those fields at the same offsets) and returns the
 * re-quantized levels in L. */
static void q45_K_scales(const float *x, const float *qwb, int nmax, float rmin, float rdelta, int nstep,
                         qtk_half *d_out, qtk_half *dmin_out, uint8_t *packed, uint8_t *L) {
    float scales[QK_K / 32], mins[QK_K / 32], w[32];
    memset(packed, 0, K_SCALE_SIZE);
    if (qwb) {
        const float sigma2 = 2 * sum_squares(x, QK_K) / QK_K;
        float sw[QK_K / 32];
        uint8_t Ls[QK_K / 32], Lm[QK_K / 32];
        for (int j = 0; j < QK_K / 32; ++j) {
            for (int l = 0; l < 32; ++l) {
                w[l] = qwb[32 * j + l] * sqrtf(sigma2 + x[32 * j + l] * x[32 * j + l]);
            }
            float sumw = 0.0f;
            for (int l = 0; l < 32; ++l) {
                sumw += w[l];
            }
            sw[j] = sumw;
            scales[j] = qtk_search_scale_min(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], -0.9f, 0.05f, 36, 0);
        }
        const float d_block = qtk_search_positive(QK_K / 32, 63, scales, Ls, sw);
        const float m_block = qtk_search_positive(QK_K / 32, 63, mins, Lm, sw);
        for (int j = 0; j < QK_K / 32; ++j) {
            put_scale_min_k4(j, (uint8_t)QTK_MIN(63, Ls[j]), (uint8_t)QTK_MIN(63, Lm[j]), packed);
        }
        *d_out = qtk_fp32_to_fp16(d_block);
        *dmin_out = qtk_fp32_to_fp16(m_block);
    } else {
        float max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < QK_K / 32; ++j) {
            const float av_x = sqrtf(sum_squares(x + 32 * j, 32) / 32);
            for (int l = 0; l < 32; ++l) {
                w[l] = av_x + fabsf(x[32 * j + l]);
            }
            scales[j] = qtk_search_scale_min(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], rmin, rdelta, nstep, 0);
            if (scales[j] > max_scale) {
                max_scale = scales[j];
            }
            if (mins[j] > max_min) {
                max_min = mins[j];
            }
        }
        const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
        const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
        for (int j = 0; j < QK_K / 32; ++j) {
            /* the uint8 truncation before the clamp is ggml's and changes bytes on odd inputs */
            const uint8_t ls = (uint8_t)qtk_nearest_int(inv_scale * scales[j]);
            const uint8_t lm = (uint8_t)qtk_nearest_int(inv_min * mins[j]);
            put_scale_min_k4(j, QTK_MIN(63, ls), QTK_MIN(63, lm), packed);
        }
        *d_out = qtk_fp32_to_fp16(max_scale / 63.0f);
        *dmin_out = qtk_fp32_to_fp16(max_min / 63.0f);
    }
    const float dd = qtk_fp16_to_fp32(*d_out);
    const float dm = qtk_fp16_to_fp32(*dmin_out);
    for (int j = 0; j < QK_K / 32; ++j) {
        uint8_t sc, m;
        get_scale_min_k4(j, packed, &sc, &m);
        const float d = dd * sc;
        if (!d) {
            continue;
        }
        const float dmj = dm * m;
        for (int i = 0; i < 32; ++i) {
            const int l = qtk_nearest_int((x[32 * j + i] + dmj) / d);
            L[32 * j + i] = (uint8_t)QTK_MAX(0, QTK_MIN(nmax, l));
        }
    }
}

void qtk_quantize_row_q4_K(const float *x, void *vy, int64_t n, const float *qw) {
    block_q4_K *y = vy;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
        q45_K_scales(x, qw ? qw + i * QK_K : NULL, 15, -1.0f, 0.1f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
        for (int c = 0; c < 4; ++c) {
            for (int l = 0; l < 32; ++l) {
                y[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
            }
        }
    }
}

void qtk_dequantize_row_q4_K(const void *vx, float *y, int64_t n) {
    const block_q4_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d);
        const float dmin = qtk_fp16_to_fp32(x[i].dmin);
        for (int c = 0; c < 4; ++c) {
            uint8_t sc, m;
            get_scale_min_k4(2 * c, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            get_scale_min_k4(2 * c + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            float *out = y + i * QK_K + 64 * c;
            for (int l = 0; l < 32; ++l) {
                out[l] = d1 * (x[i].qs[32 * c + l] & 0xF) - m1;
                out[l + 32] = d2 * (x[i].qs[32 * c + l] >> 4) - m2;
            }
        }
    }
}

void qtk_quantize_row_q5_K(const float *x, void *vy, int64_t n, const float *qw) {
    block_q5_K *y = vy;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
        q45_K_scales(x, qw ? qw + i * QK_K : NULL, 31, -0.5f, 0.1f, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int c = 0; c < 4; ++c) {
            for (int l = 0; l < 32; ++l) {
                int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
                if (lo > 15) {
                    lo -= 16;
                    y[i].qh[l] |= (uint8_t)(1u << (2 * c));
                }
                if (hi > 15) {
                    hi -= 16;
                    y[i].qh[l] |= (uint8_t)(2u << (2 * c));
                }
                y[i].qs[32 * c + l] = (uint8_t)(lo | (hi << 4));
            }
        }
    }
}

void qtk_dequantize_row_q5_K(const void *vx, float *y, int64_t n) {
    const block_q5_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d);
        const float dmin = qtk_fp16_to_fp32(x[i].dmin);
        for (int c = 0; c < 4; ++c) {
            uint8_t sc, m;
            get_scale_min_k4(2 * c, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            get_scale_min_k4(2 * c + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            float *out = y + i * QK_K + 64 * c;
            for (int l = 0; l < 32; ++l) {
                const int h1 = (x[i].qh[l] >> (2 * c)) & 1 ? 16 : 0;
                const int h2 = (x[i].qh[l] >> (2 * c + 1)) & 1 ? 16 : 0;
                out[l] = d1 * ((x[i].qs[32 * c + l] & 0xF) + h1) - m1;
                out[l + 32] = d2 * ((x[i].qs[32 * c + l] >> 4) + h2) - m2;
            }
        }
    }
}

/* ---------------------------------------------------------------- Q6_K */

void qtk_quantize_row_q6_K(const float *x, void *vy, int64_t n, const float *qw) {
    block_q6_K *y = vy;
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
        float max_scale = 0.0f, max_abs = 0.0f;
        for (int j = 0; j < QK_K / 16; ++j) {
            /* ggml passes the raw importance values here (no sigma^2 term) */
            scales[j] = qtk_search_symmetric(16, 32, x + 16 * j, L + 16 * j, qw ? qw + i * QK_K + 16 * j : NULL);
            if (fabsf(scales[j]) > max_abs) {
                max_abs = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        if (max_abs < QTK_GROUP_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -128.0f / max_scale;
        y[i].d = qtk_fp32_to_fp16(1 / iscale);
        for (int j = 0; j < QK_K / 16; ++j) {
            y[i].scales[j] = (int8_t)QTK_MIN(127, qtk_nearest_int(iscale * scales[j]));
        }
        const float dd = qtk_fp16_to_fp32(y[i].d);
        for (int j = 0; j < QK_K / 16; ++j) {
            const float d = dd * y[i].scales[j];
            if (!d) {
                continue;
            }
            for (int l = 0; l < 16; ++l) {
                const int q = qtk_nearest_int(x[16 * j + l] / d);
                L[16 * j + l] = (int8_t)(QTK_MAX(-32, QTK_MIN(31, q)) + 32);
            }
        }
        /* element 128h + 32k + l: low nibble in ql[64h + 32(k&1) + l] (high nibble when k >= 2),
         * top two bits at bits 2k of qh[32h + l] */
        for (int h = 0; h < 2; ++h) {
            const uint8_t *Lh = (const uint8_t *)L + 128 * h;
            for (int l = 0; l < 32; ++l) {
                y[i].ql[64 * h + l] = (uint8_t)((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
                y[i].ql[64 * h + 32 + l] = (uint8_t)((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
                y[i].qh[32 * h + l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                                                ((Lh[l + 96] >> 4) << 6));
            }
        }
    }
}

void qtk_dequantize_row_q6_K(const void *vx, float *y, int64_t n) {
    const block_q6_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d);
        for (int e = 0; e < QK_K; ++e) {
            const int h = e / 128, k = (e % 128) / 32, l = e % 32;
            const uint8_t qlb = x[i].ql[64 * h + 32 * (k & 1) + l];
            const int lo = k < 2 ? (qlb & 0xF) : (qlb >> 4);
            const int hi = (x[i].qh[32 * h + l] >> (2 * k)) & 3;
            const int8_t q = (int8_t)((lo | (hi << 4)) - 32);
            y[i * QK_K + e] = d * x[i].scales[e / 16] * q;
        }
    }
}

/* ---------------------------------------------------------------- Q8_K */

void qtk_quantize_row_q8_K(const float *x, void *vy, int64_t n, const float *qw) {
    (void)qw;
    block_q8_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
        float max = 0.0f, amax = 0.0f;
        for (int j = 0; j < QK_K; ++j) {
            const float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (!amax) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; ++j) {
            y[i].qs[j] = (int8_t)QTK_MIN(127, qtk_nearest_int(iscale * x[j]));
        }
        for (int j = 0; j < QK_K / 16; ++j) {
            int sum = 0;
            for (int l = 0; l < 16; ++l) {
                sum += y[i].qs[16 * j + l];
            }
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

void qtk_dequantize_row_q8_K(const void *vx, float *y, int64_t n) {
    const block_q8_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        for (int j = 0; j < QK_K; ++j) {
            y[i * QK_K + j] = x[i].d * x[i].qs[j];
        }
    }
}
