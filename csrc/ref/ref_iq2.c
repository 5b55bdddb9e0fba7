/* IQ2_XXS, IQ2_XS and IQ2_S: 2-bit codebook formats (portable reference).
 *
 * Every group of 8 elements stores the index of a point of an 8-dimensional grid whose values
 * are {8, 25, 43} (levels 0, 1, 2), and the signs of the 8 elements apart. IQ2_XXS and IQ2_XS store
 * 7 sign bits (an even number of negatives is forced, the 8th sign is the parity), IQ2_S all 8.
 * Element value: d * (0.5 + s) * 0.25 * grid * sign, s a 4-bit scale per 32 (XXS) or 16 (XS, S).
 *
 * The quantizers are ggml's quantize_row_iq2_{xxs,xs,s}_impl, what ggml_quantize_chunk runs:
 * IQ2_XXS and IQ2_XS need importance weights (the caller checks), IQ2_S falls back to the
 * weights sigma^2 / 4 + x^2 without them.
 */
#include "ref/common.h"
#include "ref/iq_grids.h"
#include "ref/iq_search.h"
#include "ref/ref.h"
#include "ref/search.h"

#define IQ2_KMAXQ 3          /* levels 0..2: values 2l + 1 = 1, 3, 5 */
#define IQ2_S_GROUP_EPS 1e-8f

static float sum_squares(const float *x, int n) {
    float s = 0;
    for (int i = 0; i < n; ++i) {
        s += x[i] * x[i];
    }
    return s;
}

/* Sub-block scale -> 4-bit code: nearest_int((scale / d - 1) / 2) clamped to 0..15. */
static inline int scale_code(float id, float scale) {
    const int l = qtk_nearest_int(0.5f * (id * scale - 1));
    return QTK_MAX(0, QTK_MIN(15, l));
}

static inline uint64_t grid_entry(const uint64_t *grid, int index) {
    return grid[index];
}

/* Eight grid values times db, signed by the bits of `signs`. */
static inline void emit8(float *y, float db, uint64_t g, uint8_t signs) {
    for (int j = 0; j < 8; ++j) {
        const float v = db * (float)(uint8_t)(g >> (8 * j));
        y[j] = signs & (1u << j) ? -v : v;   /* ggml's "* -1.f" as the compiler emits it: a negation */
    }
}

/* ---------------------------------------------------------------- IQ2_XXS */

void qtk_quantize_row_iq2_xxs(const float *x, void *vy, int64_t n, const float *qw_row) {
    block_iq2_xxs *y = vy;
    const qtk_iq_lattice *lat = qtk_iq_lattice_get(QTK_LAT_IQ2_XXS);
    const qtk_iq_search_params params = {32, 6, 0.1f, QTK_IQ_RESNAP_ALL};
    float scales[QK_K / 32], weight[32], xval[32], waux[32];
    int8_t L[32];
    uint8_t signs[4];
    uint32_t q2[2 * (QK_K / 32)];
    for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
        const float *xbl = x + QK_K * ibl;
        memset(q2, 0, sizeof q2);
        y[ibl].d = 0;
        if (!lat || !qw_row) {   /* unreachable through qtk_quantize, which checks both */
            memset(y[ibl].qs, 0, sizeof y[ibl].qs);
            continue;
        }
        const float sigma2 = sum_squares(xbl, QK_K) / QK_K;
        float max_scale = 0;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const float *xb = xbl + 32 * ib;
            const float *qw = qw_row + QK_K * ibl + 32 * ib;
            for (int i = 0; i < 32; ++i) {
                weight[i] = qw[i] * sqrtf(sigma2 + xb[i] * xb[i]);
            }
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
            if (max < QTK_GROUP_EPS) {
                scales[ib] = 0;
                continue;
            }
            float scale = qtk_iq_search_positive(32, IQ2_KMAXQ + 1, xval, (uint8_t *)L, weight);
            const float eff_max = scale * IQ2_KMAXQ;
            if (eff_max <= 0) {
                scales[ib] = 0;
                continue;
            }
            scale = qtk_iq_search_scale(lat, &params, xval, weight, waux, scale, eff_max, L);
            if (scale < 0) {   /* cannot happen with finite data; kept as ggml has it */
                scale = -scale;
                for (int k = 0; k < 4; ++k) {
                    signs[k] = (uint8_t)(~signs[k] & 127);
                }
            }
            for (int k = 0; k < 4; ++k) {
                const int g = qtk_iq_grid_index(lat, L + 8 * k);
                q2[2 * ib + 0] |= (uint32_t)g << (8 * k);
                q2[2 * ib + 1] |= (uint32_t)signs[k] << (7 * k);
            }
            scales[ib] = scale;
            max_scale = QTK_MAX(max_scale, scale);
        }
        if (!max_scale) {
            memset(y[ibl].qs, 0, sizeof y[ibl].qs);
            continue;
        }
        const float d = max_scale / 31;
        y[ibl].d = qtk_fp32_to_fp16(d);
        const float id = 1 / d;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            q2[2 * ib + 1] |= (uint32_t)scale_code(id, scales[ib]) << 28;
        }
        for (int i = 0; i < QK_K / 16; ++i) {
            y[ibl].qs[2 * i + 0] = (uint16_t)(q2[i] & 0xFFFF);
            y[ibl].qs[2 * i + 1] = (uint16_t)(q2[i] >> 16);
        }
    }
}

void qtk_dequantize_row_iq2_xxs(const void *vx, float *y, int64_t n) {
    const block_iq2_xxs *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const uint32_t idx = x[i].qs[4 * ib] | ((uint32_t)x[i].qs[4 * ib + 1] << 16);
            const uint32_t aux = x[i].qs[4 * ib + 2] | ((uint32_t)x[i].qs[4 * ib + 3] << 16);
            const float db = d * (0.5f + (aux >> 28)) * 0.25f;
            for (int l = 0; l < 4; ++l) {
                const uint8_t signs = qtk_ksigns_iq2xs[(aux >> (7 * l)) & 127];
                emit8(y, db, grid_entry(qtk_iq2xxs_grid, (idx >> (8 * l)) & 255), signs);
                y += 8;
            }
        }
    }
}

/* ---------------------------------------------------------------- IQ2_XS and IQ2_S */

/* One 16-element sub-block of IQ2_XS (parity signs) or IQ2_S (plain signs): returns the scale,
 * grid indices in g[2], sign bytes in signs[2]. */
static float iq2_sub16(const qtk_iq_lattice *lat, const float *xb, const float *weight, int parity,
                       float eps, int *g, uint8_t *signs) {
    const qtk_iq_search_params params = {16, 9, 0.1f, QTK_IQ_RESNAP_OFF_GRID};
    float xval[16], waux[16];
    int8_t L[16];
    for (int i = 0; i < 16; ++i) {
        waux[i] = sqrtf(weight[i]);
    }
    for (int k = 0; k < 2; ++k) {
        signs[k] = qtk_iq_signs8(xb + 8 * k, weight + 8 * k, xval + 8 * k, parity);
        if (parity) {
            signs[k] &= 127;
        }
    }
    float max = xval[0];
    for (int i = 1; i < 16; ++i) {
        max = QTK_MAX(max, xval[i]);
    }
    if (max < eps) {
        return -1;   /* an all-zero sub-block: nothing stored */
    }
    memset(L, 0, sizeof L);
    float scale = qtk_iq_search_scale(lat, &params, xval, weight, waux, max / (2 * IQ2_KMAXQ - 1), max, L);
    if (scale < 0) {
        scale = -scale;
        for (int k = 0; k < 2; ++k) {
            signs[k] = (uint8_t)(parity ? ~signs[k] & 127 : ~signs[k]);
        }
    }
    for (int k = 0; k < 2; ++k) {
        g[k] = qtk_iq_grid_index(lat, L + 8 * k);
    }
    return scale;
}

void qtk_quantize_row_iq2_xs(const float *x, void *vy, int64_t n, const float *qw_row) {
    block_iq2_xs *y = vy;
    const qtk_iq_lattice *lat = qtk_iq_lattice_get(QTK_LAT_IQ2_XS);
    float scales[QK_K / 16], weight[16];
    uint16_t q2[QK_K / 8];
    for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
        const float *xbl = x + QK_K * ibl;
        memset(q2, 0, sizeof q2);
        memset(&y[ibl], 0, sizeof y[ibl]);
        if (!lat || !qw_row) {   /* unreachable through qtk_quantize */
            continue;
        }
        const float sigma2 = sum_squares(xbl, QK_K) / QK_K;
        float max_scale = 0;
        for (int ib = 0; ib < QK_K / 16; ++ib) {
            const float *xb = xbl + 16 * ib;
            const float *qw = qw_row + QK_K * ibl + 16 * ib;
            for (int i = 0; i < 16; ++i) {
                weight[i] = qw[i] * sqrtf(sigma2 + xb[i] * xb[i]);
            }
            int g[2];
            uint8_t signs[2];
            const float scale = iq2_sub16(lat, xb, weight, 1, QTK_GROUP_EPS, g, signs);
            if (scale < 0) {
                scales[ib] = 0;
                continue;
            }
            for (int k = 0; k < 2; ++k) {
                q2[2 * ib + k] = (uint16_t)(g[k] | (signs[k] << 9));
            }
            scales[ib] = scale;
            max_scale = QTK_MAX(max_scale, scale);
        }
        if (!max_scale) {
            continue;
        }
        const float d = max_scale / 31;
        y[ibl].d = qtk_fp32_to_fp16(d);
        const float id = 1 / d;
        for (int ib = 0; ib < QK_K / 16; ++ib) {
            y[ibl].scales[ib / 2] |= (uint8_t)(scale_code(id, scales[ib]) << (4 * (ib % 2)));
        }
        memcpy(y[ibl].qs, q2, sizeof q2);
    }
}

void qtk_dequantize_row_iq2_xs(const void *vx, float *y, int64_t n) {
    const block_iq2_xs *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const float db[2] = {d * (0.5f + (x[i].scales[ib] & 0xF)) * 0.25f,
                                 d * (0.5f + (x[i].scales[ib] >> 4)) * 0.25f};
            for (int l = 0; l < 4; ++l) {
                const uint16_t q = x[i].qs[4 * ib + l];
                emit8(y, db[l / 2], grid_entry(qtk_iq2xs_grid, q & 511), qtk_ksigns_iq2xs[q >> 9]);
                y += 8;
            }
        }
    }
}

void qtk_quantize_row_iq2_s(const float *x, void *vy, int64_t n, const float *qw_row) {
    block_iq2_s *y = vy;
    const qtk_iq_lattice *lat = qtk_iq_lattice_get(QTK_LAT_IQ2_S);
    float scales[QK_K / 16], weight[16];
    for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
        const float *xbl = x + QK_K * ibl;
        memset(&y[ibl], 0, sizeof y[ibl]);
        if (!lat) {   /* unreachable through qtk_quantize */
            continue;
        }
        const float sigma2 = 2 * sum_squares(xbl, QK_K) / QK_K;
        float max_scale = 0;
        for (int ib = 0; ib < QK_K / 16; ++ib) {
            const float *xb = xbl + 16 * ib;
            if (qw_row) {
                const float *qw = qw_row + QK_K * ibl + 16 * ib;
                for (int i = 0; i < 16; ++i) {
                    weight[i] = qw[i] * sqrtf(sigma2 + xb[i] * xb[i]);
                }
            } else {
                for (int i = 0; i < 16; ++i) {
                    weight[i] = 0.25f * sigma2 + xb[i] * xb[i];
                }
            }
            int g[2];
            uint8_t signs[2];
            const float scale = iq2_sub16(lat, xb, weight, 0, IQ2_S_GROUP_EPS, g, signs);
            if (scale < 0) {
                scales[ib] = 0;
                continue;
            }
            for (int k = 0; k < 2; ++k) {
                const int i8 = 2 * ib + k;
                y[ibl].qs[i8] = (uint8_t)(g[k] & 255);
                y[ibl].qh[i8 / 4] |= (uint8_t)((g[k] >> 8) << (2 * (i8 % 4)));
                y[ibl].qs[QK_K / 8 + i8] = signs[k];
            }
            scales[ib] = scale;
            max_scale = QTK_MAX(max_scale, scale);
        }
        if (!max_scale) {
            continue;
        }
        const float d = max_scale / 31;
        y[ibl].d = qtk_fp32_to_fp16(d * 0.9875f);
        const float id = 1 / d;
        for (int ib = 0; ib < QK_K / 16; ++ib) {
            y[ibl].scales[ib / 2] |= (uint8_t)(scale_code(id, scales[ib]) << (4 * (ib % 2)));
        }
    }
}

void qtk_dequantize_row_iq2_s(const void *vx, float *y, int64_t n) {
    const block_iq2_s *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d);
        const uint8_t *qs = x[i].qs;
        const uint8_t *signs = x[i].qs + QK_K / 8;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const float db[2] = {d * (0.5f + (x[i].scales[ib] & 0xF)) * 0.25f,
                                 d * (0.5f + (x[i].scales[ib] >> 4)) * 0.25f};
            for (int l = 0; l < 4; ++l) {
                const int index = qs[4 * ib + l] | (((x[i].qh[ib] >> (2 * l)) & 3) << 8);
                emit8(y, db[l / 2], grid_entry(qtk_iq2s_grid, index), signs[4 * ib + l]);
                y += 8;
            }
        }
    }
}
