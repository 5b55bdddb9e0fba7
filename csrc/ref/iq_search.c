/* The grid search shared by the IQ2 and IQ3 quantizers. See iq_search.h. */
#include "ref/iq_search.h"

#include <float.h>

#include "ref/common.h"
#include "ref/iq_lanes.h"
#include "ref/search.h"

uint8_t qtk_iq_signs8(const float *xb, const float *weight, float *xval, int parity) {
    int nflip = 0;
    uint8_t s = 0;
    for (int i = 0; i < 8; ++i) {
        if (xb[i] >= 0) {
            xval[i] = xb[i];
        } else {
            xval[i] = -xb[i];
            ++nflip;
            s |= (uint8_t)(1u << i);
        }
    }
    if (parity && nflip % 2) {
        int imin = 0;
        float min = weight[0] * xb[0] * xb[0];
        for (int i = 1; i < 8; ++i) {
            const float ax = weight[i] * xb[i] * xb[i];
            if (ax < min) {
                min = ax;
                imin = i;
            }
        }
        xval[imin] = -xval[imin];
        s ^= (uint8_t)(1u << imin);
    }
    return s;
}

/* Levels of one group at inverse scale id, clamped to the lattice; returns the key. */
static inline int32_t group_levels(const qtk_iq_lattice *lat, const float *xval, float id, int8_t *L) {
    const int top = lat->nlevels - 1;
    for (int i = 0; i < lat->width; ++i) {
        const int l = qtk_nearest_int(0.5f * (id * xval[i] - 1));
        L[i] = (int8_t)QTK_MAX(0, QTK_MIN(top, l));
    }
    return qtk_iq_key(lat, L);
}

/* The neighbour searches. ggml (iq2/iq3_find_best_neighbour, iq1_find_best_neighbour2) picks the
 * first listed grid point with the smallest sum over elements i, in order, of
 * w[i] * (scale * q[i] - x[i])^2. Two exact ways to get the same float sums faster:
 * - IQ2/IQ3: four neighbours in four vector lanes, each lane running the scalar formula on the
 *   neighbours' values stored lane-wise with the lattice (lane_q);
 * - IQ1 (qtk_iq_nearest8): the terms depend only on the element and the level there, so they are
 *   computed once per (element, level) by the caller and each neighbour sums its own in element
 *   order. Either way the float operations and their order are those of the direct formula. */

/* d2[j] = sum over i < width of term[i * stride + level_i] of candidate j, in element order; four
 * candidates at a time (independent dependency chains, no branches). */
static inline void sums_direct(const int8_t *levels, const int width, const uint16_t *cand, int count,
                               const float *term, const int stride, float *d2) {
    int j = 0;
    for (; j + 4 <= count; j += 4) {
        const int8_t *g0 = levels + (size_t)cand[j] * width;
        const int8_t *g1 = levels + (size_t)cand[j + 1] * width;
        const int8_t *g2 = levels + (size_t)cand[j + 2] * width;
        const int8_t *g3 = levels + (size_t)cand[j + 3] * width;
        float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        _Pragma("GCC unroll 8")
        for (int i = 0; i < width; ++i) {
            const float *t = term + i * stride;
            a0 += t[g0[i]];
            a1 += t[g1[i]];
            a2 += t[g2[i]];
            a3 += t[g3[i]];
        }
        d2[j] = a0;
        d2[j + 1] = a1;
        d2[j + 2] = a2;
        d2[j + 3] = a3;
    }
    for (; j < count; ++j) {
        const int8_t *g = levels + (size_t)cand[j] * width;
        float a = 0;
        _Pragma("GCC unroll 8")
        for (int i = 0; i < width; ++i) {
            a += term[i * stride + g[i]];
        }
        d2[j] = a;
    }
}

int qtk_iq_nearest8(const qtk_iq_lattice *lat, const uint16_t *list, const float (*term)[4]) {
    const int count = list[0];
    const uint16_t *cand = list + 1;
    float d2[QTK_IQ_MAX_NEIGHBOURS + 3];
    int j = 0;
    if (count >= 16) {
        /* The partial sums over the first four elements, t0 + t1 + t2 + t3 in that order, for all
         * 81 level combinations (each table extends the previous one by one element, four
         * combinations at a time; entry (a, l) at 3a + l, lane 3 spills into the next entry and is
         * overwritten by it). A candidate then adds its last four terms to its entry. */
        float t01[9 + 1], t012[27 + 1], t0123[81 + 1];
        const v4f r1 = load4(term[1]), r2 = load4(term[2]), r3 = load4(term[3]);
        for (int a = 0; a < 3; ++a) {
            const v4f v = splat4(term[0][a]) + r1;
            memcpy(t01 + 3 * a, &v, sizeof v);
        }
        for (int a = 0; a < 9; ++a) {
            const v4f v = splat4(t01[a]) + r2;
            memcpy(t012 + 3 * a, &v, sizeof v);
        }
        for (int a = 0; a < 27; ++a) {
            const v4f v = splat4(t012[a]) + r3;
            memcpy(t0123 + 3 * a, &v, sizeof v);
        }
        const uint8_t *pre = lat->prefix4;
        for (; j + 4 <= count; j += 4) {   /* four independent chains, no branches */
            const int8_t *g0 = lat->levels + (size_t)cand[j] * 8;
            const int8_t *g1 = lat->levels + (size_t)cand[j + 1] * 8;
            const int8_t *g2 = lat->levels + (size_t)cand[j + 2] * 8;
            const int8_t *g3 = lat->levels + (size_t)cand[j + 3] * 8;
            float a0 = t0123[pre[cand[j]]], a1 = t0123[pre[cand[j + 1]]];
            float a2 = t0123[pre[cand[j + 2]]], a3 = t0123[pre[cand[j + 3]]];
            _Pragma("GCC unroll 4")
            for (int i = 4; i < 8; ++i) {
                a0 += term[i][g0[i]];
                a1 += term[i][g1[i]];
                a2 += term[i][g2[i]];
                a3 += term[i][g3[i]];
            }
            d2[j] = a0;
            d2[j + 1] = a1;
            d2[j + 2] = a2;
            d2[j + 3] = a3;
        }
        for (; j < count; ++j) {
            const int8_t *g = lat->levels + (size_t)cand[j] * 8;
            float a = t0123[pre[cand[j]]];
            for (int i = 4; i < 8; ++i) {
                a += term[i][g[i]];
            }
            d2[j] = a;
        }
    } else {
        sums_direct(lat->levels, 8, cand, count, &term[0][0], 4, d2);
    }
    /* the first smallest, as ggml's scan; all NaN or huge (ggml asserts): the nearest point */
    return qtk_first_min(d2, count);
}

/* The 8-wide IQ2 lattices, four neighbours at a time in vector lanes; returns the list position
 * (qtk_iq_ops_lanes.nearest8). */
static int nearest8_lanes(const qtk_iq_lattice *lat, int32_t u, const float *xval, const float *w, float scale) {
    const uint16_t *list = lat->neighbours - lat->map[u] - 1;
    const int count = list[0];
    const float *q = lat->lane_q + lat->lane_at[u];
    float d2[QTK_IQ_MAX_NEIGHBOURS + 3];
    const v4f s = splat4(scale);
    v4f x[8], wv[8];
    for (int i = 0; i < 8; ++i) {
        x[i] = splat4(xval[i]);
        wv[i] = splat4(w[i]);
    }
    for (int j = 0; j < count; j += 4, q += 32) {
        v4f d = splat4(0.0f);
        for (int i = 0; i < 8; ++i) {
            const v4f e = s * load4(q + 4 * i) - x[i];
            d += wv[i] * e * e;
        }
        memcpy(d2 + j, &d, sizeof d);
    }
    return qtk_first_min(d2, count);
}

/* The 4-wide IQ3 lattices, four neighbours at a time in vector lanes; writes the levels of the
 * winner to L and returns its grid index. */
static int best_neighbour4(const qtk_iq_lattice *lat, int32_t u, const uint16_t *list, const float *xval,
                           const float *w, float scale, int8_t *L) {
    const int count = list[0];
    const float *q = lat->lane_q + lat->lane_at[u];
    float d2[QTK_IQ_MAX_NEIGHBOURS + 3];
    const v4f s = splat4(scale);
    const v4f x0 = splat4(xval[0]), x1 = splat4(xval[1]), x2 = splat4(xval[2]), x3 = splat4(xval[3]);
    const v4f w0 = splat4(w[0]), w1 = splat4(w[1]), w2 = splat4(w[2]), w3 = splat4(w[3]);
    for (int j = 0; j < count; j += 4, q += 16) {
        const v4f e0 = s * load4(q) - x0;
        const v4f e1 = s * load4(q + 4) - x1;
        const v4f e2 = s * load4(q + 8) - x2;
        const v4f e3 = s * load4(q + 12) - x3;
        v4f d = splat4(0.0f);
        d += w0 * e0 * e0;
        d += w1 * e1 * e1;
        d += w2 * e2 * e2;
        d += w3 * e3 * e3;
        memcpy(d2 + j, &d, sizeof d);
    }
    const int index = list[1 + qtk_first_min(d2, count)];
    memcpy(L, lat->levels + (size_t)index * 4, 4);
    return index;
}

/* Snaps the group's levels (key u) to the grid: unchanged when on it, else the best neighbour.
 * Returns 1 when the levels were on the grid. */
static inline int snap(const qtk_iq_lattice *lat, int32_t u, const float *xval, const float *waux, float scale,
                       int8_t *L, const qtk_iq_ops *ops) {
    const int32_t g = lat->map[u];
    if (g >= 0) {
        return 1;
    }
    if (lat->width == 8) {
        const uint16_t *list = lat->neighbours - g - 1;
        const int pos = ops->nearest8(lat, u, xval, waux, scale);
        const int index = list[1 + pos];
        memcpy(L, lat->levels + (size_t)index * 8, 8);
    } else {
        best_neighbour4(lat, u, lat->neighbours - g - 1, xval, waux, scale, L);
    }
    return 0;
}

/* sum w * x * q and sum w * q^2 with q = 2l + 1, in element order. */
static inline float fit(int n, const float *weight, const float *xval, const int8_t *L, float *sumq2) {
    float sumqx = 0, s2 = 0;
    for (int i = 0; i < n; ++i) {
        const float w = weight[i];
        const float q = 2 * L[i] + 1;
        sumqx += w * xval[i] * q;
        s2 += w * q * q;
    }
    *sumq2 = s2;
    return sumqx;
}

#define MAX_CANDIDATES 32   /* 2 * nsteps + 1 <= 31, rounded up to the lanes */

float qtk_iq_search_scale(const qtk_iq_lattice *lat, const qtk_iq_search_params *p, const float *xval,
                          const float *weight, const float *waux, float scale, float base, int8_t *L) {
    const int width = lat->width;
    const int n = p->n;
    const int ngroups = n / width;
    const int ncand = 2 * p->nsteps + 1;
    const qtk_iq_ops *ops = qtk_iq_ops_active();
    const float top = (float)(2 * lat->nlevels - 1);
    uint8_t on_grid[8];
    for (int k = 0; k < ngroups; ++k) {
        on_grid[k] = p->resnap == QTK_IQ_RESNAP_OFF_GRID;
    }
    /* Candidate c (is = c - nsteps) has inverse scale id[c]. All candidates are evaluated first
     * (levels and fits four candidates at a time, lanes = candidates), then chosen in ggml's order. */
    float id[MAX_CANDIDATES], this_scale[MAX_CANDIDATES];
    for (int c = 0; c < MAX_CANDIDATES; ++c) {
        id[c] = c < ncand ? (top + (c - p->nsteps) * p->step) / base : id[c - 1];
        this_scale[c] = 1 / id[c];
    }
    int32_t lv[32][MAX_CANDIDATES];   /* lv[i][c]: level of element i under candidate c */
    int32_t keys[8][MAX_CANDIDATES];  /* keys[k][c]: lattice key of group k under candidate c */
    const v4i vtop = splat4i(lat->nlevels - 1);
    for (int c = 0; c < ncand; c += 4) {
        v4f idv;
        memcpy(&idv, id + c, sizeof idv);
        for (int k = 0; k < ngroups; ++k) {
            v4i key = splat4i(0);
            for (int i = 0; i < width; ++i) {
                /* nearest_int(0.5f * (id * x - 1)) clamped to the levels, lane-wise */
                const v4f t = 0.5f * (idv * splat4(xval[width * k + i]) - 1) + 12582912.0f;
                v4i l = ((v4i)t & 0x007fffff) - 0x00400000;
                l &= ~(l < 0);
                const v4i over = l > vtop;
                l = (l & ~over) | (vtop & over);
                memcpy(&lv[width * k + i][c], &l, sizeof l);
                key |= l << (lat->bits * i);
            }
            memcpy(&keys[k][c], &key, sizeof key);
        }
    }
    uint8_t on_grid_c[MAX_CANDIDATES][8];
    for (int c = 0; c < ncand; ++c) {
        for (int k = 0; k < ngroups; ++k) {
            int8_t G[8];
            on_grid_c[c][k] = (uint8_t)snap(lat, keys[k][c], xval + width * k, waux + width * k, this_scale[c], G, ops);
            if (!on_grid_c[c][k]) {
                for (int i = 0; i < width; ++i) {
                    lv[width * k + i][c] = G[i];
                }
            }
        }
    }
    float sumqx[MAX_CANDIDATES], sumq2[MAX_CANDIDATES];
    for (int c = 0; c < ncand; c += 4) {
        v4f sx = splat4(0), s2 = splat4(0);
        for (int i = 0; i < n; ++i) {
            v4i l;
            memcpy(&l, &lv[i][c], sizeof l);
            const v4f q = __builtin_convertvector(2 * l + 1, v4f);
            const float w = weight[i];
            sx += splat4(w * xval[i]) * q;   /* (w * x) * q, as the scalar w * x * q */
            s2 += splat4(w) * q * q;
        }
        memcpy(sumqx + c, &sx, sizeof sx);
        memcpy(sumq2 + c, &s2, sizeof s2);
    }
    float best = 0;
    int chosen = -1;
    for (int c = 0; c < ncand; ++c) {
        if (sumq2[c] > 0 && sumqx[c] * sumqx[c] > best * sumq2[c]) {
            scale = sumqx[c] / sumq2[c];
            best = scale * sumqx[c];
            chosen = c;
        }
    }
    if (chosen >= 0) {
        for (int i = 0; i < n; ++i) {
            L[i] = (int8_t)lv[i][chosen];
        }
        memcpy(on_grid, on_grid_c[chosen], (size_t)ngroups);
    }
    int off_grid = 0;
    for (int k = 0; k < ngroups; ++k) {
        off_grid += !on_grid[k];
    }
    if ((p->resnap == QTK_IQ_RESNAP_ALL || off_grid > 0) && scale > 0) {
        const float id = 1 / scale;
        for (int k = 0; k < ngroups; ++k) {
            if (p->resnap == QTK_IQ_RESNAP_OFF_GRID && on_grid[k]) {
                continue;
            }
            const int32_t u = group_levels(lat, xval + width * k, id, L + width * k);
            snap(lat, u, xval + width * k, waux + width * k, scale, L + width * k, ops);
        }
        float sumq2;
        const float sumqx = fit(p->n, weight, xval, L, &sumq2);
        if (sumq2 > 0) {
            scale = sumqx / sumq2;
        }
    }
    return scale;
}

float qtk_iq_search_positive(int n, int nmax, const float *x, uint8_t *L, const float *qw) {
    float best_mse;
    const float max = qtk_search_positive_start(n, nmax, x, L, qw, &best_mse);
    if (max == 0.0f) {
        return 0.0f;
    }
    float iscale = nmax / max;
    /* the steps -4..-1 and 1..4 in two groups of four lanes, each lane the scalar loop */
    float ids[8], mse[8];
    for (int k = 0; k < 8; ++k) {
        const int step = k < 4 ? k - 4 : k - 3;
        ids[k] = (0.1f * step + nmax) / max;
    }
    const v4i vmax = splat4i(nmax);
    for (int g = 0; g < 8; g += 4) {
        const v4f is = load4(ids + g);
        const v4f sc = 1 / is;
        v4f acc = splat4(0.0f);
        for (int i = 0; i < n; ++i) {
            const v4f t = is * splat4(x[i]) + 12582912.0f;   /* qtk_nearest_int, lane-wise */
            v4i l = ((v4i)t & 0x007fffff) - 0x00400000;
            const v4i below = l < vmax;
            l = (l & below) | (vmax & ~below);
            const v4f diff = splat4(x[i]) - sc * __builtin_convertvector(l, v4f);
            acc += splat4(qw[i]) * diff * diff;
        }
        memcpy(mse + g, &acc, sizeof acc);
    }
    for (int k = 0; k < 8; ++k) {
        if (mse[k] < best_mse) {
            best_mse = mse[k];
            iscale = ids[k];
        }
    }
    return qtk_search_positive_refine(n, nmax, x, L, qw, iscale);
}

int qtk_iq_grid_index(const qtk_iq_lattice *lat, const int8_t *L) {
    for (int i = 0; i < lat->width; ++i) {
        if (L[i] < 0 || L[i] >= lat->nlevels) {
            return 0;
        }
    }
    const int32_t g = lat->map[qtk_iq_key(lat, L)];
    return g >= 0 ? g : 0;
}

const qtk_iq_ops qtk_iq_ops_lanes = {
    .name = "lanes",
    .nearest8 = nearest8_lanes,
    .split_m = qtk_iq1_m_split_lanes,
};

static const qtk_iq_ops *active_ops = &qtk_iq_ops_lanes;

const qtk_iq_ops *qtk_iq_ops_active(void) {
    return __atomic_load_n(&active_ops, __ATOMIC_ACQUIRE);
}

void qtk_iq_set_ops(const qtk_iq_ops *ops) {
    __atomic_store_n(&active_ops, ops ? ops : &qtk_iq_ops_lanes, __ATOMIC_RELEASE);
}
