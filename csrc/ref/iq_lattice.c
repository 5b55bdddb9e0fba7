/* Building the IQ search lattices (see iq_lattice.h). */
#include "ref/iq_lattice.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ref/iq_grids.h"

#define QTK_IQ_MIN_INT(a, b) ((a) < (b) ? (a) : (b))

typedef struct {
    const uint64_t *grid64;   /* 8-wide grids */
    const uint32_t *grid32;   /* 4-wide grids */
    const int8_t *grid_map;
    int nlevels;
    int grid_size;
    int nwant;                /* distinct distances whose points are listed as neighbours */
} lattice_spec;

static const lattice_spec specs[QTK_LAT_COUNT] = {
    [QTK_LAT_IQ2_XXS] = {qtk_iq2xxs_grid, NULL, qtk_iq2xxs_grid_map, 3, 256, 2},
    [QTK_LAT_IQ2_XS] = {qtk_iq2xs_grid, NULL, qtk_iq2xs_grid_map, 3, 512, 2},
    [QTK_LAT_IQ2_S] = {qtk_iq2s_grid, NULL, qtk_iq2s_grid_map, 3, 1024, 1},
    [QTK_LAT_IQ1] = {qtk_iq1s_grid, NULL, qtk_iq1s_grid_map, 3, 2048, 3},
    [QTK_LAT_IQ3_XXS] = {NULL, qtk_iq3xxs_grid, qtk_iq3xxs_grid_map, 8, 256, 2},
    [QTK_LAT_IQ3_S] = {NULL, qtk_iq3s_grid, qtk_iq3s_grid_map, 8, 512, 3},
};

/* Written once per lattice under its pthread_once, read-only afterwards. */
static qtk_iq_lattice lattices[QTK_LAT_COUNT];
static const qtk_iq_lattice *built[QTK_LAT_COUNT];

static int level_of(const lattice_spec *s, int8_t value) {
    for (int l = 0; l < s->nlevels; ++l) {
        if (s->grid_map[l] == value) {
            return l;
        }
    }
    return -1;
}

/* A growing list of uint16 values. */
typedef struct {
    uint16_t *v;
    size_t n, cap;
} u16_list;

static int push(u16_list *a, uint16_t x) {
    if (a->n == a->cap) {
        const size_t cap = a->cap ? 2 * a->cap : 4096;
        uint16_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) {
            return 0;
        }
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 1;
}

/* Appends the neighbour list of the off-grid point P (levels) to `out`: every grid point within
 * the nwant smallest distinct squared distances, by distance, then by grid index. */
static int list_neighbours(const qtk_iq_lattice *lat, int nwant, const int8_t *P, int *d2, u16_list *out) {
    int shells[4];
    int ns = 0;
    for (int j = 0; j < lat->grid_size; ++j) {
        const int8_t *g = lat->levels + (size_t)j * lat->width;
        int d = 0;
        for (int k = 0; k < lat->width; ++k) {
            d += (g[k] - P[k]) * (g[k] - P[k]);
        }
        d2[j] = d;
        /* keep the nwant smallest distinct distances, ascending */
        int pos = ns;
        while (pos > 0 && shells[pos - 1] > d) {
            --pos;
        }
        if (pos > 0 && shells[pos - 1] == d) {
            continue;
        }
        if (pos >= nwant) {
            continue;
        }
        for (int m = (ns < nwant ? ns : nwant - 1); m > pos; --m) {
            shells[m] = shells[m - 1];
        }
        shells[pos] = d;
        if (ns < nwant) {
            ++ns;
        }
    }
    const size_t at = out->n;
    if (!push(out, 0)) {
        return 0;
    }
    for (int s = 0; s < ns; ++s) {
        for (int j = 0; j < lat->grid_size; ++j) {
            if (d2[j] == shells[s] && !push(out, (uint16_t)j)) {
                return 0;
            }
        }
    }
    const size_t count = out->n - at - 1;
    if (count > QTK_IQ_MAX_NEIGHBOURS) {
        return 0;   /* cannot happen with the format's grids; the searches rely on the bound */
    }
    out->v[at] = (uint16_t)count;
    return 1;
}

/* The lane blocks of a lattice (see lane_q in iq_lattice.h). */
static int build_lanes(const qtk_iq_lattice *lat, const int32_t *map, const uint16_t *nb, float **q_out,
                       int32_t **at_out) {
    const int width = lat->width;
    size_t total = 0;
    for (int32_t u = 0; u < lat->map_size; ++u) {
        if (map[u] < 0) {
            total += (size_t)(nb[-map[u] - 1] + 3) / 4 * 4 * width;
        }
    }
    float *q = malloc((total ? total : 1) * sizeof *q);
    int32_t *at = malloc((size_t)lat->map_size * sizeof *at);
    if (!q || !at) {
        free(q);
        free(at);
        return 0;
    }
    size_t pos = 0;
    for (int32_t u = 0; u < lat->map_size; ++u) {
        at[u] = 0;
        if (map[u] >= 0) {
            continue;
        }
        const uint16_t *list = nb - map[u] - 1;
        const int count = list[0];
        at[u] = (int32_t)pos;
        for (int b = 0; b < (count + 3) / 4; ++b) {
            for (int i = 0; i < width; ++i) {
                for (int k = 0; k < 4; ++k) {
                    const int j = QTK_IQ_MIN_INT(4 * b + k, count - 1);
                    const int l = lat->levels[(size_t)list[1 + j] * width + i];
                    q[pos++] = (float)(2 * l + 1);
                }
            }
        }
    }
    *q_out = q;
    *at_out = at;
    return 1;
}

static void build(int which) {
    const lattice_spec *s = &specs[which];
    qtk_iq_lattice *lat = &lattices[which];
    const int width = s->grid64 ? 8 : 4;
    const int bits = s->nlevels == 3 ? 2 : 3;
    const int32_t map_size = (int32_t)1 << (bits * width);
    int8_t *levels = malloc((size_t)s->grid_size * width);
    int32_t *map = malloc((size_t)map_size * sizeof *map);
    int *d2 = malloc((size_t)s->grid_size * sizeof *d2);
    uint8_t *prefix4 = malloc((size_t)s->grid_size);
    float *lane_q = NULL;
    int32_t *lane_at = NULL;
    u16_list nb = {NULL, 0, 0};
    if (!levels || !map || !d2 || !prefix4) {
        goto fail;
    }
    for (int i = 0; i < s->grid_size; ++i) {
        const uint64_t e = s->grid64 ? s->grid64[i] : s->grid32[i];
        for (int k = 0; k < width; ++k) {
            const int l = level_of(s, (int8_t)(uint8_t)(e >> (8 * k)));
            if (l < 0) {
                goto fail;   /* a grid value missing from its map: a broken generated header */
            }
            levels[i * width + k] = (int8_t)l;
        }
    }
    for (int i = 0; i < s->grid_size; ++i) {
        const int8_t *l = levels + i * width;
        prefix4[i] = (uint8_t)(s->nlevels == 3 && width == 8 ? 27 * l[0] + 9 * l[1] + 3 * l[2] + l[3] : 0);
    }
    lat->prefix4 = prefix4;
    lat->width = width;
    lat->bits = bits;
    lat->nlevels = s->nlevels;
    lat->grid_size = s->grid_size;
    lat->map_size = map_size;
    lat->levels = levels;
    /* keys with an unused level (never formed by a quantizer) -> grid index 0; valid keys -> -1
     * until they are found on the grid or given a neighbour list */
    for (int32_t u = 0; u < map_size; ++u) {
        int valid = 1;
        for (int k = 0; k < width; ++k) {
            valid &= ((u >> (bits * k)) & ((1 << bits) - 1)) < s->nlevels;
        }
        map[u] = valid ? -1 : 0;
    }
    for (int i = 0; i < s->grid_size; ++i) {
        map[qtk_iq_key(lat, levels + i * width)] = i;
    }
    for (int32_t u = 0; u < map_size; ++u) {
        if (map[u] != -1) {
            continue;
        }
        int8_t P[8];
        for (int k = 0; k < width; ++k) {
            P[k] = (int8_t)((u >> (bits * k)) & ((1 << bits) - 1));
        }
        const size_t offset = nb.n;
        if (!list_neighbours(lat, s->nwant, P, d2, &nb)) {
            goto fail;
        }
        map[u] = -(int32_t)(offset + 1);
    }
    free(d2);
    d2 = NULL;
    /* lane values 2l + 1 for the IQ2/IQ3 grids. The IQ1 grid's lists are long enough (72
     * neighbours on average, 10 MB of lanes) that its search is faster from the level tables. */
    if (which != QTK_LAT_IQ1 && !build_lanes(lat, map, nb.v, &lane_q, &lane_at)) {
        goto fail;
    }
    lat->lane_q = lane_q;
    lat->lane_at = lane_at;
    lat->map = map;
    lat->neighbours = nb.v;
    built[which] = lat;
    return;
fail:
    free(lane_q);
    free(lane_at);
    free(prefix4);
    free(levels);
    free(map);
    free(d2);
    free(nb.v);
    memset(lat, 0, sizeof *lat);
    built[which] = NULL;
}

static void build_iq2_xxs(void) { build(QTK_LAT_IQ2_XXS); }
static void build_iq2_xs(void) { build(QTK_LAT_IQ2_XS); }
static void build_iq2_s(void) { build(QTK_LAT_IQ2_S); }
static void build_iq1(void) { build(QTK_LAT_IQ1); }
static void build_iq3_xxs(void) { build(QTK_LAT_IQ3_XXS); }
static void build_iq3_s(void) { build(QTK_LAT_IQ3_S); }

static pthread_once_t once[QTK_LAT_COUNT] = {
    PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT,
    PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT,
};

static void (*const builders[QTK_LAT_COUNT])(void) = {
    build_iq2_xxs, build_iq2_xs, build_iq2_s, build_iq1, build_iq3_xxs, build_iq3_s,
};

const qtk_iq_lattice *qtk_iq_lattice_get(int which) {
    if (which < 0 || which >= QTK_LAT_COUNT) {
        return NULL;
    }
    pthread_once(&once[which], builders[which]);
    return built[which];
}
