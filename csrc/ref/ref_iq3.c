/* IQ3_XXS and IQ3_S: 3-bit codebook formats (portable reference).
 *
 * Every group of 4 elements stores the index of a point of a 4-dimensional grid with 8 levels:
 * values {4, 12, 20, 28, 36, 44, 52, 62} (IQ3_XXS, 256 points) or {1, 3, ..., 15} (IQ3_S, 512).
 * IQ3_XXS keeps 7 sign bits per 8 elements (even parity) and a 4-bit scale per 32 in one u32:
 * value d * (0.5 + s) * 0.5 * grid * sign. IQ3_S keeps every sign bit and 4-bit scales per 32:
 * value d * (1 + 2s) * grid * sign.
 *
 * The quantizers are ggml's quantize_row_iq3_xxs_impl / quantize_row_iq3_s_impl. Without
 * importance weights both use x^2 as the weights.
 */
#include "ref/common.h"
#include "ref/iq_grids.h"
#include "ref/iq_search.h"
#include "ref/ref.h"

#define IQ3_KMAXQ 8          /* levels 0..7: values 2l + 1 = 1..15 */
#define IQ3_XXS_GROUP_EPS 1e-8f

static float sum_squares(const float *x, int n) {
    float s = 0;
    for (int i = 0; i < n; ++i) {
        s += x[i] * x[i];
    }
    return s;
}

static inline int scale_code(float id, float scale) {
    const int l = qtk_nearest_int(0.5f * (id * scale - 1));
    return QTK_MAX(0, QTK_MIN(15, l));
}

/* Per-element weights of a 32-element sub-block: qw * sqrt(sigma2 + x^2), or x^2 without qw. */
static void weights32(const float *xb, const float *qw, float sigma2, float *weight) {
    if (qw) {
        for (int i = 0; i < 32; ++i) {
            weight[i] = qw[i] * sqrtf(sigma2 + xb[i] * xb[i]);
        }
    } else {
        for (int i = 0; i < 32; ++i) {
            weight[i] = xb[i] * xb[i];
        }
    }
}

/* Four grid values times db, signed by bits `shift`.. of `signs`. */
static inline void emit4(float *y, float db, uint32_t g, uint8_t signs, int shift) {
    for (int j = 0; j < 4; ++j) {
        const float v = db * (float)(uint8_t)(g >> (8 * j));
        y[j] = signs & (1u << (shift + j)) ? -v : v;   /* a negation, as for IQ2 */
    }
}

/* ---------------------------------------------------------------- IQ3_XXS */

void qtk_quantize_row_iq3_xxs(const float *x, void *vy, int64_t n, const float *qw_row) {
    block_iq3_xxs *y = vy;
    const qtk_iq_lattice *lat = qtk_iq_lattice_get(QTK_LAT_IQ3_XXS);
    const qtk_iq_search_params params = {32, 15, 0.2f, QTK_IQ_RESNAP_OFF_GRID};
    float scales[QK_K / 32], weight[32], xval[32], waux[32];
    int8_t L[32];
    uint8_t signs[4];
    uint32_t scales_and_signs[QK_K / 32];
    for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
        const float *xbl = x + QK_K * ibl;
        uint8_t *qs = y[ibl].qs;
        memset(&y[ibl], 0, sizeof y[ibl]);
        memset(scales_and_signs, 0, sizeof scales_and_signs);
        if (!lat) {   /* unreachable through qtk_quantize */
            continue;
        }
        const float sigma2 = 2 * sum_squares(xbl, QK_K) / QK_K;
        float max_scale = 0;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const float *xb = xbl + 32 * ib;
            weights32(xb, qw_row ? qw_row + QK_K * ibl + 32 * ib : NULL, sigma2, weight);
            for (int i = 0; i < 32; ++i) {
                waux[i] = sqrtf(weight[i]);
            }
            for (int k = 0; k < 4; ++k) {
                signs[k] = qtk_iq_signs8(xb + 8 * k, weight + 8 * k, xval + 8 * k, 1) & 127;
            }
            float max = xval[0];
            for (int i = 1; i < 32; ++i) {
                max = QTK_MAX(max, xval[i]);
            }
            if (max < IQ3_XXS_GROUP_EPS) {
                scales[ib] = 0;
                continue;
            }
            memset(L, 0, sizeof L);
            float scale = qtk_iq_search_scale(lat, &params, xval, weight, waux, max / (2 * IQ3_KMAXQ - 1), max, L);
            if (scale < 0) {
                scale = -scale;
                for (int k = 0; k < 4; ++k) {
                    signs[k] = (uint8_t)(~signs[k] & 127);
                }
            }
            for (int k = 0; k < 8; ++k) {
                qs[8 * ib + k] = (uint8_t)qtk_iq_grid_index(lat, L + 4 * k);
            }
            scales_and_signs[ib] = signs[0] | ((uint32_t)signs[1] << 7) | ((uint32_t)signs[2] << 14) |
                                   ((uint32_t)signs[3] << 21);
            scales[ib] = scale;
            max_scale = QTK_MAX(max_scale, scale);
        }
        if (!max_scale) {
            memset(&y[ibl], 0, sizeof y[ibl]);
            continue;
        }
        const float d = max_scale / 31;
        y[ibl].d = qtk_fp32_to_fp16(d * 1.0125f);
        const float id = 1 / d;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const uint32_t v = scales_and_signs[ib] | ((uint32_t)scale_code(id, scales[ib]) << 28);
            uint8_t *p = qs + QK_K / 4 + 4 * ib;
            p[0] = (uint8_t)v;
            p[1] = (uint8_t)(v >> 8);
            p[2] = (uint8_t)(v >> 16);
            p[3] = (uint8_t)(v >> 24);
        }
    }
}

void qtk_dequantize_row_iq3_xxs(const void *vx, float *y, int64_t n) {
    const block_iq3_xxs *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d);
        const uint8_t *qs = x[i].qs;
        const uint8_t *ss = x[i].qs + QK_K / 4;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const uint8_t *p = ss + 4 * ib;
            const uint32_t aux = p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
            const float db = d * (0.5f + (aux >> 28)) * 0.5f;
            for (int l = 0; l < 4; ++l) {
                const uint8_t signs = qtk_ksigns_iq2xs[(aux >> (7 * l)) & 127];
                emit4(y, db, qtk_iq3xxs_grid[qs[8 * ib + 2 * l]], signs, 0);
                emit4(y + 4, db, qtk_iq3xxs_grid[qs[8 * ib + 2 * l + 1]], signs, 4);
                y += 8;
            }
        }
    }
}

/* ---------------------------------------------------------------- IQ3_S */

void qtk_quantize_row_iq3_s(const float *x, void *vy, int64_t n, const float *qw_row) {
    block_iq3_s *y = vy;
    const qtk_iq_lattice *lat = qtk_iq_lattice_get(QTK_LAT_IQ3_S);
    const qtk_iq_search_params params = {32, 9, 0.2f, QTK_IQ_RESNAP_ALL_IF_OFF};
    float scales[QK_K / 32], weight[32], xval[32], waux[32];
    int8_t L[32];
    uint8_t signs[4];
    for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
        const float *xbl = x + QK_K * ibl;
        memset(&y[ibl], 0, sizeof y[ibl]);
        if (!lat) {   /* unreachable through qtk_quantize */
            continue;
        }
        /* ggml's quirk, kept for identical bytes: the index and sign bytes of a sub-block go to
         * the next free slot, and an all-zero sub-block takes none, so the sub-blocks after it
         * are stored one slot early (and the last slots stay zero). Scales and qh bits keep
         * their positions. Such blocks do not dequantize to what was meant; they only arise
         * from sub-blocks of 32 exact zeros. */
        int slot = 0;
        const float sigma2 = 2 * sum_squares(xbl, QK_K) / QK_K;
        float max_scale = 0;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const float *xb = xbl + 32 * ib;
            weights32(xb, qw_row ? qw_row + QK_K * ibl + 32 * ib : NULL, sigma2, weight);
            for (int i = 0; i < 32; ++i) {
                waux[i] = sqrtf(weight[i]);
            }
            for (int k = 0; k < 4; ++k) {
                signs[k] = qtk_iq_signs8(xb + 8 * k, weight + 8 * k, xval + 8 * k, 0);
            }
            float max = xval[0];
            for (int i = 1; i < 32; ++i) {
                max = QTK_MAX(max, xval[i]);
            }
            if (!max) {
                scales[ib] = 0;
                continue;
            }
            memset(L, 0, sizeof L);
            float scale = qtk_iq_search_scale(lat, &params, xval, weight, waux, max / (2 * IQ3_KMAXQ - 1), max, L);
            if (scale < 0) {
                scale = -scale;
                for (int k = 0; k < 4; ++k) {
                    signs[k] = (uint8_t)~signs[k];
                }
            }
            for (int k = 0; k < 8; ++k) {
                const int g = qtk_iq_grid_index(lat, L + 4 * k);
                y[ibl].qs[8 * slot + k] = (uint8_t)(g & 255);
                y[ibl].qh[ib] |= (uint8_t)((g >> 8) << k);
            }
            memcpy(y[ibl].signs + 4 * slot, signs, 4);
            ++slot;
            scales[ib] = scale;
            max_scale = QTK_MAX(max_scale, scale);
        }
        if (!max_scale) {
            continue;
        }
        const float d = max_scale / 31;
        y[ibl].d = qtk_fp32_to_fp16(d * 1.033f);
        const float id = 1 / d;
        for (int ib = 0; ib < QK_K / 32; ib += 2) {
            y[ibl].scales[ib / 2] = (uint8_t)(scale_code(id, scales[ib]) | (scale_code(id, scales[ib + 1]) << 4));
        }
    }
}

void qtk_dequantize_row_iq3_s(const void *vx, float *y, int64_t n) {
    const block_iq3_s *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const int s = (x[i].scales[ib / 2] >> (4 * (ib % 2))) & 0xF;
            const float db = d * (1 + 2 * s);
            const uint8_t *qs = x[i].qs + 8 * ib;
            const uint8_t qh = x[i].qh[ib];
            for (int l = 0; l < 4; ++l) {
                const uint8_t signs = x[i].signs[4 * ib + l];
                const int i1 = qs[2 * l] | (((qh >> (2 * l)) & 1) << 8);
                const int i2 = qs[2 * l + 1] | (((qh >> (2 * l + 1)) & 1) << 8);
                emit4(y, db, qtk_iq3s_grid[i1], signs, 0);
                emit4(y + 4, db, qtk_iq3s_grid[i2], signs, 4);
                y += 8;
            }
        }
    }
}
