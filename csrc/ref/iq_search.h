/* The grid search shared by the IQ2 and IQ3 quantizers (ggml's quantize_row_iq2_*_impl /
 * quantize_row_iq3_*_impl), in ggml's float32 arithmetic and order.
 *
 * A sub-block's elements are quantized as magnitudes xval >= 0 (signs are stored apart) on the
 * levels l of a lattice (iq_lattice.h), whose values are q = 2l + 1 times a sub-block scale.
 *
 * The two searches the IQ quantizers spend most of their time in (the 8-wide neighbour search of
 * IQ2 and IQ1_M's split search) are reached through a small ops table, so that a file of arch/ can
 * offer wider lanes: every version runs the same float operations in the same order and so gives
 * the same bytes. The portable lanes are the default; isa.c switches the table with the quantizer
 * variant (qtk_fastq.h).
 */
#ifndef QTK_IQ_SEARCH_H
#define QTK_IQ_SEARCH_H

#include <stdint.h>

#include "ref/iq_grids.h"
#include "ref/iq_lattice.h"

/* Which groups are snapped again at the fitted scale after the candidate-scale loop. */
enum {
    QTK_IQ_RESNAP_OFF_GRID,   /* those whose best candidate was off the grid (IQ2_XS, IQ2_S, IQ3_XXS) */
    QTK_IQ_RESNAP_ALL_IF_OFF, /* all of them, if any was off the grid or no candidate won (IQ3_S) */
    QTK_IQ_RESNAP_ALL         /* all of them, always (IQ2_XXS) */
};

typedef struct {
    int n;          /* elements in the sub-block (a multiple of the lattice width) */
    int nsteps;     /* candidates is = -nsteps..nsteps */
    float step;     /* inverse scale of candidate is: (2 * nlevels - 1 + is * step) / base */
    int resnap;     /* QTK_IQ_RESNAP_* */
} qtk_iq_search_params;

/* Magnitudes and sign bits of 8 elements. With `parity`, an odd count of negative elements is made
 * even by flipping the element of least weight * x^2 (first on ties): its magnitude turns negative
 * and its sign bit toggles, so 7 stored bits determine the 8th. */
uint8_t qtk_iq_signs8(const float *xb, const float *weight, float *xval, int parity);

/* The candidate-scale search on one sub-block. `scale` is the scale kept when no candidate wins,
 * `base` the denominator of the candidates. L receives the levels (it is read only in
 * QTK_IQ_RESNAP_ALL mode when nothing wins and the scale is not positive: then it is returned as
 * given). waux = sqrt(weight) is the metric of the neighbour search. Returns the fitted scale. */
float qtk_iq_search_scale(const qtk_iq_lattice *lat, const qtk_iq_search_params *p, const float *xval,
                          const float *weight, const float *waux, float scale, float base, int8_t *L);

/* Position (0-based) in the neighbour list `list` of the first point with the smallest sum over
 * i = 0..7 of term[i][level_i], summed in element order (an 8-wide lattice with 3 levels; term[i][3]
 * is unused). All sums NaN or >= FLT_MAX: position 0. */
int qtk_iq_nearest8(const qtk_iq_lattice *lat, const uint16_t *list, const float (*term)[4]);

/* search.c's qtk_search_positive (ggml's make_qp_quants), the same bytes, with the eight trial
 * scales evaluated in vector lanes (each lane the scalar loop: same float operations and order). */
float qtk_iq_search_positive(int n, int nmax, const float *x, uint8_t *L, const float *qw);

/* Grid index of a group of levels; levels off the grid (possible only when ggml would abort)
 * give index 0. */
int qtk_iq_grid_index(const qtk_iq_lattice *lat, const int8_t *L);

/* ---------------------------------------------------------------- IQ1_M's split search */

/* IQ1's level values -1, 0, 1 shifted by +delta (xp) or -delta (xm). */
static const float qtk_iq1_xp[3] = {-1 + QTK_IQ1_DELTA, QTK_IQ1_DELTA, 1 + QTK_IQ1_DELTA};
static const float qtk_iq1_xm[3] = {-1 - QTK_IQ1_DELTA, -QTK_IQ1_DELTA, 1 - QTK_IQ1_DELTA};

/* The running best of an exhaustive split search (ref_iq1.c), updated in ggml's order and arithmetic. */
typedef struct {
    float best, scale;
    int i1, i2, k;
} qtk_iq1_split;

static inline void qtk_iq1_consider(qtk_iq1_split *b, float sumqx, float sumq2, int i1, int i2, int k) {
    if (sumq2 > 0 && sumqx * sumqx > b->best * sumq2) {
        b->scale = sumqx / sumq2;
        b->best = b->scale * sumqx;
        b->i1 = i1;
        b->i2 = i2;
        b->k = k;
    }
}

/* Prefix sums of one 16-element IQ1_M sub-block per half, padded for 8 lanes. */
#define QTK_IQ1_M_PREFIX 24

/* ---------------------------------------------------------------- the ops table */

typedef struct {
    const char *name;
    /* Position (0-based) in the neighbour list of the off-grid key u of an 8-wide lattice of the
     * first point with the smallest sum over i = 0..7, in order, of w[i] * (scale * q[i] - xval[i])^2
     * (q the point's values 2l + 1): ggml's iq2_find_best_neighbour. */
    int (*nearest8)(const qtk_iq_lattice *lat, int32_t u, const float *xval, const float *w, float scale);
    /* IQ1_M's split search of one 16-element sub-block (ref_iq1.c) over the prefix sums px, pw of
     * each half in sorted order and their totals txs, tws: every split and shift pair in ggml's
     * order, updating *b with qtk_iq1_consider. */
    void (*split_m)(qtk_iq1_split *b, const float (*px)[QTK_IQ1_M_PREFIX], const float (*pw)[QTK_IQ1_M_PREFIX],
                    const float *txs, const float *tws);
} qtk_iq_ops;

/* The portable lanes (four at a time, iq_lanes.h), the default. */
extern const qtk_iq_ops qtk_iq_ops_lanes;
void qtk_iq1_m_split_lanes(qtk_iq1_split *b, const float (*px)[QTK_IQ1_M_PREFIX], const float (*pw)[QTK_IQ1_M_PREFIX],
                           const float *txs, const float *tws);

/* The table in use (never NULL). A quantizer reads it once per call and keeps it to the call's end,
 * so switching it while other threads quantize is safe (an atomic pointer, like the kernel table). */
const qtk_iq_ops *qtk_iq_ops_active(void);
/* Switch the table; NULL selects the portable lanes (isa.c, with the quantizer variant). */
void qtk_iq_set_ops(const qtk_iq_ops *ops);

#endif
