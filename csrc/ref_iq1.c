/* IQ1_S and IQ1_M: 1.5625 and 1.75 bits per weight (portable reference).
 *
 * Every group of 8 elements stores the 11-bit index of a point of a grid of 2048 vectors with
 * values {-1, 0, 1}; the values are shifted by +-delta (0.125) and scaled by d * (2s + 1).
 * IQ1_S: 3-bit scale s and one delta sign per 32 elements, in a u16 with the high index bits.
 * IQ1_M: 3-bit scale per 16, delta sign per 8; the fp16 d is split in four nibbles over the
 * top bits of the four scale words.
 *
 * The quantizers are ggml's quantize_row_iq1_s_impl / quantize_row_iq1_m_impl: for each
 * sub-block, elements are sorted by value and every split of the sorted order into three runs
 * (levels 0, 1, 2) is scored exactly; groups whose levels are off the grid go to the nearest
 * listed grid point. ggml sorts with qsort, whose order of equal values glibc's merge sort keeps
 * as the element order; here a stable insertion sort gives that same order on every platform.
 * IQ1_S needs importance weights (the caller checks); IQ1_M uses x^2 without them.
 */
#include <float.h>
#include <stddef.h>

#include "common.h"
#include "iq_grids.h"
#include "iq_lattice.h"
#include "ref.h"

#define IQ1S_GROUP_EPS 1e-12f
#define IQ1M_GROUP_EPS 1e-7f

static const float x_p[3] = {-1 + QTK_IQ1_DELTA, QTK_IQ1_DELTA, 1 + QTK_IQ1_DELTA};
static const float x_m[3] = {-1 - QTK_IQ1_DELTA, -QTK_IQ1_DELTA, 1 - QTK_IQ1_DELTA};

static float sum_squares(const float *x, int n) {
    float s = 0;
    for (int i = 0; i < n; ++i) {
        s += x[i] * x[i];
    }
    return s;
}

/* idx[0..n) = element indices ordered by value, equal values in element order (-0 == +0). */
static void sort_by_value(const float *x, int n, int *idx) {
    for (int j = 0; j < n; ++j) {
        int k = j;
        while (k > 0 && x[idx[k - 1]] > x[j]) {
            idx[k] = idx[k - 1];
            --k;
        }
        idx[k] = j;
    }
}

/* Nearest listed grid point to x at `scale`, the levels l valued xx[l] (ggml's
 * iq1_find_best_neighbour2); writes its levels to L and returns its index. */
static int best_neighbour(const qtk_iq_lattice *lat, int32_t u, const float *x, const float *w, float scale,
                          const float *xx, int8_t *L) {
    const uint16_t *list = lat->neighbours - lat->map[u] - 1;
    const int count = list[0];
    float best = FLT_MAX;
    int best_index = -1;
    for (int j = 1; j <= count; ++j) {
        const int8_t *g = lat->levels + (size_t)list[j] * 8;
        float d2 = 0;
        for (int i = 0; i < 8; ++i) {
            const float diff = scale * xx[g[i]] - x[i];
            d2 += w[i] * diff * diff;
        }
        if (d2 < best) {
            best = d2;
            best_index = list[j];
        }
    }
    if (best_index < 0) {   /* all distances NaN or infinite: ggml asserts; take the nearest point */
        best_index = list[1];
    }
    memcpy(L, lat->levels + (size_t)best_index * 8, 8);
    return best_index;
}

/* Grid index of a group of 8 levels; off the grid, the best neighbour (and *on_grid = 0). */
static int group_index(const qtk_iq_lattice *lat, const float *x, const float *w, float scale, const float *xx,
                       int8_t *L, int *on_grid) {
    const int32_t u = qtk_iq_key(lat, L);
    const int32_t g = lat->map[u];
    if (g >= 0) {
        return g;
    }
    *on_grid = 0;
    return best_neighbour(lat, u, x, w, scale, xx, L);
}

/* Levels of the sorted elements: 0 below i1, 1 from i1 below i2, 2 from i2. */
static void split_levels(const int *idx, int n, int i1, int i2, int8_t *L) {
    for (int j = 0; j < n; ++j) {
        L[idx[j]] = (int8_t)(j < i1 ? 0 : j < i2 ? 1 : 2);
    }
}

/* ---------------------------------------------------------------- IQ1_S */

/* One 32-element sub-block: levels split by exhaustive search, scale and shift (+1: x_p, -1: x_m).
 * Returns 0 when the sub-block stores nothing (zero scale). */
static int iq1_s_sub32(const qtk_iq_lattice *lat, const float *xb, const float *weight, uint16_t *index,
                       float *scale_out, int *shift_out) {
    enum { N = 32 };
    float max = fabsf(xb[0]);
    for (int i = 1; i < N; ++i) {
        max = QTK_MAX(max, fabsf(xb[i]));
    }
    if (max < IQ1S_GROUP_EPS) {
        return 0;
    }
    int idx[N];
    sort_by_value(xb, N, idx);
    float sumx[N + 1], sumw[N + 1];
    sumx[0] = sumw[0] = 0;
    for (int j = 0; j < N; ++j) {
        const int i = idx[j];
        sumx[j + 1] = sumx[j] + weight[i] * xb[i];
        sumw[j + 1] = sumw[j] + weight[i];
    }
    float best = -FLT_MAX, scale = max;
    int besti1 = -1, besti2 = -1, shift = 0;
    for (int i1 = 0; i1 <= N; ++i1) {
        for (int i2 = i1; i2 <= N; ++i2) {
            float sumqx = (sumx[i1] - sumx[0]) * x_p[0] + (sumx[i2] - sumx[i1]) * x_p[1] + (sumx[N] - sumx[i2]) * x_p[2];
            float sumq2 = (sumw[i1] - sumw[0]) * x_p[0] * x_p[0] + (sumw[i2] - sumw[i1]) * x_p[1] * x_p[1] +
                          (sumw[N] - sumw[i2]) * x_p[2] * x_p[2];
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                scale = sumqx / sumq2;
                best = scale * sumqx;
                besti1 = i1;
                besti2 = i2;
                shift = 1;
            }
            sumqx = (sumx[i1] - sumx[0]) * x_m[0] + (sumx[i2] - sumx[i1]) * x_m[1] + (sumx[N] - sumx[i2]) * x_m[2];
            sumq2 = (sumw[i1] - sumw[0]) * x_m[0] * x_m[0] + (sumw[i2] - sumw[i1]) * x_m[1] * x_m[1] +
                    (sumw[N] - sumw[i2]) * x_m[2] * x_m[2];
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                scale = sumqx / sumq2;
                best = scale * sumqx;
                besti1 = i1;
                besti2 = i2;
                shift = -1;
            }
        }
    }
    if (besti1 < 0 || besti2 < 0 || shift == 0) {
        return 0;
    }
    int8_t L[N];
    split_levels(idx, N, besti1, besti2, L);
    if (scale < 0) {
        for (int j = 0; j < N; ++j) {
            L[j] = (int8_t)(2 - L[j]);
        }
        scale = -scale;
        shift = -shift;
    }
    const float *xx = shift == 1 ? x_p : x_m;
    int on_grid = 1;
    for (int k = 0; k < N / 8; ++k) {
        index[k] = (uint16_t)group_index(lat, xb + 8 * k, weight + 8 * k, scale, xx, L + 8 * k, &on_grid);
    }
    if (!on_grid) {
        float sumqx = 0, sumq2 = 0;
        for (int k = 0; k < N / 8; ++k) {
            const int8_t *g = lat->levels + (size_t)index[k] * 8;
            for (int j = 0; j < 8; ++j) {
                const float w = weight[8 * k + j];
                const float q = xx[g[j]];
                sumqx += w * q * xb[8 * k + j];
                sumq2 += w * q * q;
            }
        }
        if (sumqx > 0 && sumq2 > 0) {
            scale = sumqx / sumq2;
        }
    }
    *scale_out = scale;
    *shift_out = shift;
    return 1;
}

void qtk_quantize_row_iq1_s(const float *x, void *vy, int64_t n, const float *qw_row) {
    block_iq1_s *y = vy;
    const qtk_iq_lattice *lat = qtk_iq_lattice_get(QTK_LAT_IQ1);
    float scales[QK_K / 32], weight[32];
    int shifts[QK_K / 32];
    for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
        const float *xbl = x + QK_K * ibl;
        memset(&y[ibl], 0, sizeof y[ibl]);
        if (!lat || !qw_row) {   /* unreachable through qtk_quantize, which checks both */
            continue;
        }
        const float sigma2 = 2 * sum_squares(xbl, QK_K) / QK_K;
        float max_scale = 0;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const float *xb = xbl + 32 * ib;
            const float *qw = qw_row + QK_K * ibl + 32 * ib;
            for (int i = 0; i < 32; ++i) {
                weight[i] = qw[i] * sqrtf(sigma2 + xb[i] * xb[i]);
            }
            uint16_t index[4];
            float scale;
            int shift;
            if (!iq1_s_sub32(lat, xb, weight, index, &scale, &shift)) {
                scales[ib] = 0;
                shifts[ib] = 1;
                continue;
            }
            uint16_t h = 0;
            for (int k = 0; k < 4; ++k) {
                y[ibl].qs[4 * ib + k] = (uint8_t)(index[k] & 255);
                h |= (uint16_t)((index[k] >> 8) << (3 * k));
            }
            y[ibl].qh[ib] = h;
            scales[ib] = scale;
            shifts[ib] = shift;
            max_scale = QTK_MAX(max_scale, scale);
        }
        if (!max_scale) {
            continue;
        }
        const float d = max_scale / 15;
        y[ibl].d = qtk_fp32_to_fp16(d * 1.125f);
        const float id = 1 / d;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            int l = qtk_nearest_int(0.5f * (id * scales[ib] - 1));
            l = QTK_MAX(0, QTK_MIN(7, l));
            if (shifts[ib] == -1) {
                l |= 8;
            }
            y[ibl].qh[ib] |= (uint16_t)(l << 12);
        }
    }
}

void qtk_dequantize_row_iq1_s(const void *vx, float *y, int64_t n) {
    const block_iq1_s *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const uint16_t qh = x[i].qh[ib];
            const float dl = d * (2 * ((qh >> 12) & 7) + 1);
            const float delta = qh & 0x8000 ? -QTK_IQ1_DELTA : QTK_IQ1_DELTA;
            for (int l = 0; l < 4; ++l) {
                const uint64_t g = qtk_iq1s_grid[x[i].qs[4 * ib + l] | (((qh >> (3 * l)) & 7) << 8)];
                for (int j = 0; j < 8; ++j) {
                    y[j] = dl * ((int8_t)(uint8_t)(g >> (8 * j)) + delta);
                }
                y += 8;
            }
        }
    }
}

/* ---------------------------------------------------------------- IQ1_M */

/* One 16-element sub-block. Each half (8 elements) has its own shift; k encodes the pair
 * (0: +,+  1: +,-  2: -,+  3: -,-). Returns 0 when the sub-block stores nothing. */
static int iq1_m_sub16(const qtk_iq_lattice *lat, const float *xb, const float *weight, uint16_t *index,
                       float *scale_out, int *k_out) {
    enum { N = 16 };
    float max = fabsf(xb[0]);
    for (int i = 1; i < N; ++i) {
        max = QTK_MAX(max, fabsf(xb[i]));
    }
    if (max < IQ1M_GROUP_EPS) {
        return 0;
    }
    int idx[N];
    sort_by_value(xb, N, idx);
    /* prefix sums of w*x and w per half, over the sorted order */
    float px[2][N + 1], pw[2][N + 1];
    px[0][0] = px[1][0] = 0;
    pw[0][0] = pw[1][0] = 0;
    for (int j = 0; j < N; ++j) {
        const int i = idx[j];
        const int h = i < N / 2 ? 0 : 1;
        px[h][j + 1] = px[h][j] + weight[i] * xb[i];
        px[1 - h][j + 1] = px[1 - h][j];
        pw[h][j + 1] = pw[h][j] + weight[i];
        pw[1 - h][j + 1] = pw[1 - h][j];
    }
    /* with v0 - v1 = v1 - v2 = -1 a split's sum is T * v2 - px[i1] - px[i2] */
    const float txs[2] = {px[0][N], px[1][N]};
    const float tws[2] = {pw[0][N], pw[1][N]};
    const float p2 = x_p[2], m2 = x_m[2];
    const float cp1 = x_p[0] * x_p[0] - x_p[1] * x_p[1];
    const float cp2 = x_p[1] * x_p[1] - x_p[2] * x_p[2];
    const float cm1 = x_m[0] * x_m[0] - x_m[1] * x_m[1];
    const float cm2 = x_m[1] * x_m[1] - x_m[2] * x_m[2];
    float best = -FLT_MAX, scale = max;
    int besti1 = -1, besti2 = -1, best_k = -1;
    for (int i1 = 0; i1 <= N; ++i1) {
        for (int i2 = i1; i2 <= N; ++i2) {
            float qx_p[2], qx_m[2], q2_p[2], q2_m[2];
            for (int h = 0; h < 2; ++h) {
                const float sx = px[h][i1] + px[h][i2];
                qx_p[h] = txs[h] * p2 - sx;
                qx_m[h] = txs[h] * m2 - sx;
                q2_p[h] = tws[h] * p2 * p2 + pw[h][i1] * cp1 + pw[h][i2] * cp2;
                q2_m[h] = tws[h] * m2 * m2 + pw[h][i1] * cm1 + pw[h][i2] * cm2;
            }
            const float sumqx[4] = {qx_p[0] + qx_p[1], qx_p[0] + qx_m[1], qx_m[0] + qx_p[1], qx_m[0] + qx_m[1]};
            const float sumq2[4] = {q2_p[0] + q2_p[1], q2_p[0] + q2_m[1], q2_m[0] + q2_p[1], q2_m[0] + q2_m[1]};
            for (int k = 0; k < 4; ++k) {
                if (sumq2[k] > 0 && sumqx[k] * sumqx[k] > best * sumq2[k]) {
                    scale = sumqx[k] / sumq2[k];
                    best = scale * sumqx[k];
                    besti1 = i1;
                    besti2 = i2;
                    best_k = k;
                }
            }
        }
    }
    if (besti1 < 0 || besti2 < 0 || best_k < 0) {
        return 0;
    }
    int8_t L[N];
    split_levels(idx, N, besti1, besti2, L);
    if (scale < 0) {
        for (int j = 0; j < N; ++j) {
            L[j] = (int8_t)(2 - L[j]);
        }
        scale = -scale;
        best_k = 3 - best_k;
    }
    const float *xxs[2] = {best_k < 2 ? x_p : x_m, best_k % 2 == 0 ? x_p : x_m};
    int on_grid = 1;
    for (int k = 0; k < 2; ++k) {
        index[k] = (uint16_t)group_index(lat, xb + 8 * k, weight + 8 * k, scale, xxs[k], L + 8 * k, &on_grid);
    }
    if (!on_grid) {
        float sumqx = 0, sumq2 = 0;
        for (int k = 0; k < 2; ++k) {
            const int8_t *g = lat->levels + (size_t)index[k] * 8;
            for (int j = 0; j < 8; ++j) {
                const float w = weight[8 * k + j];
                const float q = xxs[k][g[j]];
                sumqx += w * q * xb[8 * k + j];
                sumq2 += w * q * q;
            }
        }
        if (sumqx > 0 && sumq2 > 0) {
            scale = sumqx / sumq2;
        }
    }
    *scale_out = scale;
    *k_out = best_k;
    return 1;
}

static void weights16(const float *xb, const float *qw, float sigma2, float *weight) {
    if (qw) {
        for (int i = 0; i < 16; ++i) {
            weight[i] = qw[i] * sqrtf(sigma2 + xb[i] * xb[i]);
        }
    } else {
        for (int i = 0; i < 16; ++i) {
            weight[i] = xb[i] * xb[i];
        }
    }
}

void qtk_quantize_row_iq1_m(const float *x, void *vy, int64_t n, const float *qw_row) {
    static const uint8_t masks[4] = {0x00, 0x80, 0x08, 0x88};
    block_iq1_m *y = vy;
    const qtk_iq_lattice *lat = qtk_iq_lattice_get(QTK_LAT_IQ1);
    float scales[QK_K / 16], weight[16];
    int shifts[QK_K / 16];
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
            weights16(xb, qw_row ? qw_row + QK_K * ibl + 16 * ib : NULL, sigma2, weight);
            uint16_t index[2];
            float scale;
            int k;
            if (!iq1_m_sub16(lat, xb, weight, index, &scale, &k)) {
                scales[ib] = 0;
                shifts[ib] = 0;
                continue;
            }
            y[ibl].qs[2 * ib + 0] = (uint8_t)(index[0] & 255);
            y[ibl].qs[2 * ib + 1] = (uint8_t)(index[1] & 255);
            y[ibl].qh[ib] = (uint8_t)((index[0] >> 8) | ((index[1] >> 8) << 4));
            scales[ib] = scale;
            shifts[ib] = k;
            max_scale = QTK_MAX(max_scale, scale);
        }
        if (!max_scale) {
            continue;
        }
        /* 3-bit sub-block scales against d = max / 15, then d refitted by least squares over
         * the whole super-block with the stored codes */
        uint16_t sc[4] = {0, 0, 0, 0};
        float d = max_scale / 15;
        const float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int ib = 0; ib < QK_K / 16; ++ib) {
            int l = qtk_nearest_int(0.5f * (id * scales[ib] - 1));
            l = QTK_MAX(0, QTK_MIN(7, l));
            sc[ib / 4] |= (uint16_t)(l << (3 * (ib % 4)));
            y[ibl].qh[ib] |= masks[shifts[ib]];
            const float *xb = xbl + 16 * ib;
            weights16(xb, qw_row ? qw_row + QK_K * ibl + 16 * ib : NULL, sigma2, weight);
            for (int k = 0; k < 2; ++k) {
                const float *xx = (k == 0 ? shifts[ib] < 2 : shifts[ib] % 2 == 0) ? x_p : x_m;
                const int g = y[ibl].qs[2 * ib + k] | (((y[ibl].qh[ib] >> (4 * k)) & 7) << 8);
                const int8_t *lv = lat->levels + (size_t)g * 8;
                for (int j = 0; j < 8; ++j) {
                    const float w = weight[8 * k + j];
                    const float q = xx[lv[j]] * (2 * l + 1);
                    sumqx += w * q * xb[8 * k + j];
                    sumq2 += w * q * q;
                }
            }
        }
        if (sumq2 > 0) {
            d = sumqx / sumq2;
        }
        const uint16_t h = qtk_fp32_to_fp16(d * 1.1125f);
        sc[0] |= (uint16_t)((h & 0x000f) << 12);
        sc[1] |= (uint16_t)((h & 0x00f0) << 8);
        sc[2] |= (uint16_t)((h & 0x0f00) << 4);
        sc[3] |= (uint16_t)(h & 0xf000);
        for (int i = 0; i < 4; ++i) {
            y[ibl].scales[2 * i] = (uint8_t)(sc[i] & 0xFF);
            y[ibl].scales[2 * i + 1] = (uint8_t)(sc[i] >> 8);
        }
    }
}

/* The fp16 super-block scale of an IQ1_M block, assembled from its four nibbles. */
uint16_t qtk_iq1_m_scale(const void *block) {
    const uint8_t *s = (const uint8_t *)block + offsetof(block_iq1_m, scales);
    uint16_t sc[4];
    for (int i = 0; i < 4; ++i) {
        sc[i] = (uint16_t)(s[2 * i] | (s[2 * i + 1] << 8));
    }
    return (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
}

void qtk_dequantize_row_iq1_m(const void *vx, float *y, int64_t n) {
    const block_iq1_m *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_fp16_to_fp32(qtk_iq1_m_scale(&x[i]));
        const uint8_t *s = x[i].scales;
        for (int ib = 0; ib < QK_K / 16; ++ib) {
            const uint16_t sc = (uint16_t)(s[2 * (ib / 4)] | (s[2 * (ib / 4) + 1] << 8));
            const float dl = d * (2 * ((sc >> (3 * (ib % 4))) & 7) + 1);
            const uint8_t qh = x[i].qh[ib];
            for (int k = 0; k < 2; ++k) {
                const uint8_t nib = (uint8_t)(qh >> (4 * k));
                const uint64_t g = qtk_iq1s_grid[x[i].qs[2 * ib + k] | ((nib & 7) << 8)];
                const float delta = nib & 0x08 ? -QTK_IQ1_DELTA : QTK_IQ1_DELTA;
                for (int j = 0; j < 8; ++j) {
                    y[j] = dl * ((int8_t)(uint8_t)(g >> (8 * j)) + delta);
                }
                y += 8;
            }
        }
    }
}
