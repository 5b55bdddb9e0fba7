/* Search structures over the IQ grids, shared by the IQ1/IQ2/IQ3 quantizers.
 *
 * The quantizers work in "levels": a grid value's position in its grid map (iq_grids.h), 0..2
 * for the 3-value grids, 0..7 for the 8-value IQ3 grids. A group of 8 (or 4) levels is a point,
 * keyed by packing level k at bit bits*k. For every point the map tells either the grid index of
 * that point or, for a point off the grid, where its list of nearest grid points starts.
 *
 * "Nearest" is ggml's: squared distance between the points (2l+1) in level space; the list holds
 * every grid point within the `nwant` smallest distinct distances, ordered by distance and then by
 * grid index (ggml sorts (distance, index) pairs with a total order, so its lists are exactly
 * these). ggml also lists neighbours for keys holding an unused level (3 in a 3-value grid); no
 * quantizer can form such keys, so here they map to grid index 0.
 *
 * Each lattice is built on first use under pthread_once and never changes afterwards, so any
 * number of threads may search it at once.
 */
#ifndef QTK_IQ_LATTICE_H
#define QTK_IQ_LATTICE_H

#include <stdint.h>

enum {
    QTK_LAT_IQ2_XXS = 0,   /* 256 points of 8, nwant 2 */
    QTK_LAT_IQ2_XS,        /* 512 points of 8, nwant 2 */
    QTK_LAT_IQ2_S,         /* 1024 points of 8, nwant 1 */
    QTK_LAT_IQ1,           /* 2048 points of 8, nwant 3 (IQ1_S and IQ1_M) */
    QTK_LAT_IQ3_XXS,       /* 256 points of 4, nwant 2 */
    QTK_LAT_IQ3_S,         /* 512 points of 4, nwant 3 */
    QTK_LAT_COUNT
};

typedef struct {
    int width;                   /* elements per grid point: 8 or 4 */
    int bits;                    /* bits per level in a key: 2 or 3 */
    int nlevels;                 /* levels a quantizer may use: 3 or 8 */
    int grid_size;
    int32_t map_size;            /* 1 << (bits * width) */
    const int8_t *levels;        /* grid_size x width levels */
    const uint8_t *prefix4;      /* 3-level lattices: levels l0..l3 of each point as 27l0 + 9l1 + 3l2 + l3 */
    /* IQ2/IQ3 lattices (NULL for IQ1): for each off-grid key, its neighbours' values 2l + 1 as
     * floats in blocks of four neighbours, [block][element][neighbour], the last block padded with
     * the last neighbour; they start at lane_q + lane_at[key]. */
    const float *lane_q;
    const int32_t *lane_at;
    const int32_t *map;          /* key -> grid index (>= 0), or -(1 + offset into neighbours) */
    const uint16_t *neighbours;  /* at an offset: a count, then that many grid indices */
} qtk_iq_lattice;

/* No neighbour list is longer (the longest, IQ2_XS's, holds 292). */
#define QTK_IQ_MAX_NEIGHBOURS 512

/* The lattice `which` (QTK_LAT_*), built on first use; NULL if its memory could not be allocated
 * (then it stays NULL: the next call does not retry). */
const qtk_iq_lattice *qtk_iq_lattice_get(int which);

/* Key of `width` levels (each already in 0..nlevels-1). */
static inline int32_t qtk_iq_key(const qtk_iq_lattice *lat, const int8_t *L) {
    int32_t u = 0;
    for (int i = 0; i < lat->width; ++i) {
        u |= (int32_t)L[i] << (lat->bits * i);
    }
    return u;
}

#endif
