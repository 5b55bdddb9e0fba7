/* The grid search shared by the IQ2 and IQ3 quantizers (ggml's quantize_row_iq2_*_impl /
 * quantize_row_iq3_*_impl), in ggml's float32 arithmetic and order.
 *
 * A sub-block's elements are quantized as magnitudes xval >= 0 (signs are stored apart) on the
 * levels l of a lattice (iq_lattice.h), whose values are q = 2l + 1 times a sub-block scale.
 */
#ifndef QTK_IQ_SEARCH_H
#define QTK_IQ_SEARCH_H

#include <stdint.h>

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

/* 1 when the AVX2 versions of the search kernels are to be used (the quantizer variant "avx2",
 * see qtk_fastq.h; same float operations and order as the baseline ones, so the same bytes). */
int qtk_iq_avx2(void);

/* Grid index of a group of levels; levels off the grid (possible only when ggml would abort)
 * give index 0. */
int qtk_iq_grid_index(const qtk_iq_lattice *lat, const int8_t *L);

#endif
