/* Scale searches shared by the reference quantizers (ggml's make_*_quants family).
 *
 * Each search picks a block scale (and for the asymmetric ones a min) that minimises a
 * weighted squared or absolute error, and leaves the chosen integer levels in L. The float32
 * operations and their order are those of ggml, so the chosen levels are identical.
 */
#ifndef QTK_SEARCH_H
#define QTK_SEARCH_H

#include <stdint.h>

/* Largest group any search is called with (CustomQuant groups are capped to this). */
#define QTK_SEARCH_MAX_N 1024

/* Symmetric levels -nmax..nmax-1, stored in L as l + nmax. Weights qw, or x^2 when qw is NULL.
 * The largest-magnitude element lands on -nmax; 19 nearby scales are tried. (make_qx_quants) */
float qtk_search_symmetric(int n, int nmax, const float *x, int8_t *L, const float *qw);

/* Symmetric levels with x^2 weights refined by coordinate descent (make_q3_quants, do_rmse). */
float qtk_search_symmetric_descent(int n, int nmax, const float *x, int8_t *L);

/* Asymmetric levels 0..nmax with scale and min; weights w are required. Returns the scale;
 * *neg_min receives -min (>= 0). use_mad: absolute instead of squared error.
 * (make_qkx2_quants / make_qkx3_quants) */
float qtk_search_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L,
                           float *neg_min, float rmin, float rdelta, int nstep, int use_mad);

/* Non-negative levels 0..nmax for positive values (sub-block scales), weighted by qw.
 * (make_qp_quants) */
float qtk_search_positive(int n, int nmax, const float *x, uint8_t *L, const float *qw);

/* Its first half (shared with iq_search.c's lane version): levels at nmax / max and their weighted
 * error in *mse; returns max, or 0 (L zeroed) for a group below QTK_GROUP_EPS. */
float qtk_search_positive_start(int n, int nmax, const float *x, uint8_t *L, const float *qw, float *mse);

/* Its second half (shared with iq_search.c's lane version): the levels at inverse scale iscale,
 * refined; returns the scale. */
float qtk_search_positive_refine(int n, int nmax, const float *x, uint8_t *L, const float *qw, float iscale);

#endif
