/* The grid search shared by the IQ2 and IQ3 quantizers. See iq_search.h. */
#include "iq_search.h"

#include <float.h>

#include "common.h"

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

/* Nearest of the listed grid points to xval at `scale` under the weights w (ggml's
 * iq2/iq3_find_best_neighbour): smallest sum of w * (scale * q - x)^2, first on ties. */
static int best_neighbour(const qtk_iq_lattice *lat, const uint16_t *list, const float *xval, const float *w,
                          float scale, int8_t *L) {
    const int count = list[0];
    const int width = lat->width;
    float best = FLT_MAX;
    int best_index = -1;
    for (int j = 1; j <= count; ++j) {
        const float *q = lat->pos + (size_t)list[j] * width;
        float d2 = 0;
        for (int i = 0; i < width; ++i) {
            const float diff = scale * q[i] - xval[i];
            d2 += w[i] * diff * diff;
        }
        if (d2 < best) {
            best = d2;
            best_index = list[j];
        }
    }
    if (best_index < 0) {   /* every distance NaN or infinite: ggml asserts; take the nearest point */
        best_index = list[1];
    }
    memcpy(L, lat->levels + (size_t)best_index * width, (size_t)width);
    return best_index;
}

/* Snaps the group's levels (key u) to the grid: unchanged when on it, else the best neighbour.
 * Returns 1 when the levels were on the grid. */
static inline int snap(const qtk_iq_lattice *lat, int32_t u, const float *xval, const float *waux, float scale,
                       int8_t *L) {
    const int32_t g = lat->map[u];
    if (g >= 0) {
        return 1;
    }
    best_neighbour(lat, lat->neighbours - g - 1, xval, waux, scale, L);
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

float qtk_iq_search_scale(const qtk_iq_lattice *lat, const qtk_iq_search_params *p, const float *xval,
                          const float *weight, const float *waux, float scale, float base, int8_t *L) {
    const int width = lat->width;
    const int ngroups = p->n / width;
    const float top = (float)(2 * lat->nlevels - 1);
    int8_t Laux[32];
    uint8_t on_grid[8], on_grid_aux[8];
    for (int k = 0; k < ngroups; ++k) {
        on_grid[k] = p->resnap == QTK_IQ_RESNAP_OFF_GRID;
    }
    float best = 0;
    for (int is = -p->nsteps; is <= p->nsteps; ++is) {
        const float id = (top + is * p->step) / base;
        const float this_scale = 1 / id;
        for (int k = 0; k < ngroups; ++k) {
            const int32_t u = group_levels(lat, xval + width * k, id, Laux + width * k);
            on_grid_aux[k] = (uint8_t)snap(lat, u, xval + width * k, waux + width * k, this_scale, Laux + width * k);
        }
        float sumq2;
        const float sumqx = fit(p->n, weight, xval, Laux, &sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            memcpy(L, Laux, (size_t)p->n);
            memcpy(on_grid, on_grid_aux, (size_t)ngroups);
        }
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
            snap(lat, u, xval + width * k, waux + width * k, scale, L + width * k);
        }
        float sumq2;
        const float sumqx = fit(p->n, weight, xval, L, &sumq2);
        if (sumq2 > 0) {
            scale = sumqx / sumq2;
        }
    }
    return scale;
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
