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

#include "ref/common.h"
#include "ref/iq_grids.h"
#include "ref/iq_lanes.h"
#include "ref/iq_lattice.h"
#include "ref/iq_search.h"
#include "ref/ref.h"

#define IQ1S_GROUP_EPS 1e-12f
#define IQ1M_GROUP_EPS 1e-7f

/* The shifted level values (iq_search.h) by short names. */
static const float *const x_p = qtk_iq1_xp;
static const float *const x_m = qtk_iq1_xm;

static float sum_squares(const float *x, int n) {
    float s = 0;
    for (int i = 0; i < n; ++i) {
        s += x[i] * x[i];
    }
    return s;
}

/* idx[0..n) = element indices ordered by value, equal values in element order (-0 == +0): the
 * order ggml gets from glibc's qsort (a stable merge sort). Element i goes to its rank, the count
 * of elements before it in (value, index) order, counted four comparisons at a time; n is a
 * multiple of 4. */
static void sort_by_value(const float *x, int n, int *idx) {
    const v4i lane = {0, 1, 2, 3};
    for (int i = 0; i < n; ++i) {
        const v4f xi = splat4(x[i]);
        const v4i ii = splat4i(i);
        v4i before = splat4i(0);
        for (int j = 0; j < n; j += 4) {
            const v4f xj = load4(x + j);
            before += (xj < xi) | ((xj == xi) & (lane + j < ii));   /* -1 where j precedes i */
        }
        idx[-(before[0] + before[1] + before[2] + before[3])] = i;
    }
}

/* Nearest listed grid point to x at `scale`, the levels l valued xx[l] (ggml's
 * iq1_find_best_neighbour2); writes its levels to L and returns its index. The terms
 * w[i] * (scale * xx[l] - x[i])^2 are computed once per (element, level) and summed per candidate
 * in element order: the same float operations as the direct formula. */
static int best_neighbour(const qtk_iq_lattice *lat, int32_t u, const float *x, const float *w, float scale,
                          const float *xx, int8_t *L) {
    const uint16_t *list = lat->neighbours - lat->map[u] - 1;
    float term[8][4];   /* levels 0..2, and a spare lane */
    for (int i = 0; i < 8; ++i) {
        for (int l = 0; l < 3; ++l) {
            const float diff = scale * xx[l] - x[i];
            term[i][l] = w[i] * diff * diff;
        }
        term[i][3] = 0;
    }
    const int index = list[1 + qtk_iq_nearest8(lat, list, (const float (*)[4])term)];
    memcpy(L, lat->levels + (size_t)index * 8, 8);
    return index;
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
    float sumx[N + 4], sumw[N + 4];   /* prefix sums over the sorted order, padded for 4 lanes */
    sumx[0] = sumw[0] = 0;
    for (int j = 0; j < N; ++j) {
        const int i = idx[j];
        sumx[j + 1] = sumx[j] + weight[i] * xb[i];
        sumw[j + 1] = sumw[j] + weight[i];
    }
    for (int j = N + 1; j < N + 4; ++j) {
        sumx[j] = sumx[N];
        sumw[j] = sumw[N];
    }
    /* Every split (i1 <= i2) with both shifts, in ggml's order: for each, sumqx =
     * A*v0 + B*v1 + C*v2 and sumq2 = Aw*v0*v0 + Bw*v1*v1 + Cw*v2*v2 over the three runs. Four
     * consecutive i2 are computed at once; when none of their eight candidates beats the running
     * best (the usual case) none would have changed it, else they are taken one by one. */
    qtk_iq1_split b = {-FLT_MAX, max, -1, -1, 0};
    const v4f p1 = splat4(x_p[1]), p2 = splat4(x_p[2]), m1 = splat4(x_m[1]), m2 = splat4(x_m[2]);
    const v4f lane = {0, 1, 2, 3};
    for (int i1 = 0; i1 <= N; ++i1) {
        const float A = sumx[i1] - sumx[0], Aw = sumw[i1] - sumw[0];
        const v4f Ap = splat4(A * x_p[0]), Am = splat4(A * x_m[0]);
        const v4f Awp = splat4(Aw * x_p[0] * x_p[0]), Awm = splat4(Aw * x_m[0] * x_m[0]);
        const v4f s1 = splat4(sumx[i1]), w1 = splat4(sumw[i1]), sN = splat4(sumx[N]), wN = splat4(sumw[N]);
        for (int i2 = i1; i2 <= N; i2 += 4) {
            const v4f s2 = load4(sumx + i2), w2 = load4(sumw + i2);
            const v4f B = s2 - s1, C = sN - s2, Bw = w2 - w1, Cw = wN - w2;
            const v4f qx_p = (Ap + B * p1) + C * p2;
            const v4f q2_p = (Awp + Bw * p1 * p1) + Cw * p2 * p2;
            const v4f qx_m = (Am + B * m1) + C * m2;
            const v4f q2_m = (Awm + Bw * m1 * m1) + Cw * m2 * m2;
            const v4f bestv = splat4(b.best);
            const v4i valid = lane <= splat4((float)(N - i2));
            /* a superset of the hits (the sumq2 > 0 test is left to qtk_iq1_consider) */
            const v4i hit = ((qx_p * qx_p > bestv * q2_p) | (qx_m * qx_m > bestv * q2_m)) & valid;
            if (!any4(hit)) {
                continue;
            }
            int first = 0;   /* lanes before the first hit would not change the best */
            while (!hit[first]) {
                ++first;
            }
            for (int k = first; k < 4 && i2 + k <= N; ++k) {
                qtk_iq1_consider(&b, qx_p[k], q2_p[k], i1, i2 + k, 1);
                qtk_iq1_consider(&b, qx_m[k], q2_m[k], i1, i2 + k, -1);
            }
        }
    }
    float scale = b.scale;
    const int besti1 = b.i1, besti2 = b.i2;
    int shift = b.k;
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

/* IQ1_M's split search (qtk_iq_ops_lanes.split_m; iq_search.h): every split and shift pair k of a
 * 16-element sub-block, in ggml's order; four consecutive i2 at once, taken one by one only when one
 * of their 16 candidates beats the running best. With v0 - v1 = v1 - v2 = -1 a split's sum is
 * T * v2 - px[i1] - px[i2]. */
void qtk_iq1_m_split_lanes(qtk_iq1_split *b, const float (*px)[QTK_IQ1_M_PREFIX], const float (*pw)[QTK_IQ1_M_PREFIX],
                           const float *txs, const float *tws) {
    enum { N = 16 };
    const float p2 = x_p[2], m2 = x_m[2];
    const float cp1 = x_p[0] * x_p[0] - x_p[1] * x_p[1];
    const float cp2 = x_p[1] * x_p[1] - x_p[2] * x_p[2];
    const float cm1 = x_m[0] * x_m[0] - x_m[1] * x_m[1];
    const float cm2 = x_m[1] * x_m[1] - x_m[2] * x_m[2];
    const v4f lane = {0, 1, 2, 3};
    for (int i1 = 0; i1 <= N; ++i1) {
        v4f tp[2], tm[2], kp[2], km[2], sx1[2];
        for (int h = 0; h < 2; ++h) {
            tp[h] = splat4(txs[h] * p2);
            tm[h] = splat4(txs[h] * m2);
            kp[h] = splat4(tws[h] * p2 * p2 + pw[h][i1] * cp1);
            km[h] = splat4(tws[h] * m2 * m2 + pw[h][i1] * cm1);
            sx1[h] = splat4(px[h][i1]);
        }
        for (int i2 = i1; i2 <= N; i2 += 4) {
            v4f qx_p[2], qx_m[2], q2_p[2], q2_m[2];
            for (int h = 0; h < 2; ++h) {
                const v4f sx = sx1[h] + load4(px[h] + i2);
                const v4f w2 = load4(pw[h] + i2);
                qx_p[h] = tp[h] - sx;
                qx_m[h] = tm[h] - sx;
                q2_p[h] = kp[h] + w2 * splat4(cp2);
                q2_m[h] = km[h] + w2 * splat4(cm2);
            }
            const v4f sumqx[4] = {qx_p[0] + qx_p[1], qx_p[0] + qx_m[1], qx_m[0] + qx_p[1], qx_m[0] + qx_m[1]};
            const v4f sumq2[4] = {q2_p[0] + q2_p[1], q2_p[0] + q2_m[1], q2_m[0] + q2_p[1], q2_m[0] + q2_m[1]};
            const v4f bestv = splat4(b->best);
            v4i hit = lane <= splat4((float)(N - i2));
            v4i any = {0, 0, 0, 0};
            for (int k = 0; k < 4; ++k) {   /* a superset of the hits: sumq2 > 0 is left to qtk_iq1_consider */
                any |= sumqx[k] * sumqx[k] > bestv * sumq2[k];
            }
            hit &= any;
            if (!any4(hit)) {
                continue;
            }
            int first = 0;   /* lanes before the first hit would not change the best */
            while (!hit[first]) {
                ++first;
            }
            for (int l = first; l < 4 && i2 + l <= N; ++l) {
                for (int k = 0; k < 4; ++k) {
                    qtk_iq1_consider(b, sumqx[k][l], sumq2[k][l], i1, i2 + l, k);
                }
            }
        }
    }
}

/* One 16-element sub-block. Each half (8 elements) has its own shift; k encodes the pair
 * (0: +,+  1: +,-  2: -,+  3: -,-). Returns 0 when the sub-block stores nothing. */
static int iq1_m_sub16(const qtk_iq_lattice *lat, const float *xb, const float *weight, uint16_t *index,
                       float *scale_out, int *k_out, const qtk_iq_ops *ops) {
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
    /* prefix sums of w*x and w per half, over the sorted order (padded for 8 lanes) */
    float px[2][N + 8], pw[2][N + 8];
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
    for (int h = 0; h < 2; ++h) {
        for (int j = N + 1; j < N + 8; ++j) {
            px[h][j] = px[h][N];
            pw[h][j] = pw[h][N];
        }
    }
    const float txs[2] = {px[0][N], px[1][N]};
    const float tws[2] = {pw[0][N], pw[1][N]};
    qtk_iq1_split b = {-FLT_MAX, max, -1, -1, -1};
    ops->split_m(&b, px, pw, txs, tws);
    float scale = b.scale;
    const int besti1 = b.i1, besti2 = b.i2;
    int best_k = b.k;
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
    const qtk_iq_ops *ops = qtk_iq_ops_active();
    float scales[QK_K / 16], weights[QK_K];
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
            float *weight = weights + 16 * ib;   /* kept for the final refit, which uses the same */
            weights16(xb, qw_row ? qw_row + QK_K * ibl + 16 * ib : NULL, sigma2, weight);
            uint16_t index[2];
            float scale;
            int k;
            if (!iq1_m_sub16(lat, xb, weight, index, &scale, &k, ops)) {
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
            const float *weight = weights + 16 * ib;
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
