/* CustomQuant: any bit-width 2..8 with any group size that is a multiple of 8.
 *
 * Block of `group` elements:
 *   asymmetric: [d: fp16][m: fp16][group*bits/8 bytes]   value = d * q + m,             q in 0..2^bits-1
 *   symmetric:  [d: fp16][group*bits/8 bytes]            value = d * (q - 2^(bits-1)), q in 0..2^bits-1
 * Levels are packed as one little-endian bit stream: element i occupies bits i*bits .. i*bits+bits-1.
 *
 * The scale (and min) minimise the weighted squared error sum w_i (x_i - value_i)^2, with
 * w = the importance weights when given and 1 otherwise: a sweep of candidate grids, each
 * refitted by weighted least squares, then alternating re-assignment and refit while the error
 * falls; finally every level is re-chosen against the stored fp16 scale and min.
 * Not a ggml format: it cannot be written to a GGUF file that llama.cpp reads. */
#include <float.h>
#include <stdlib.h>

#include "isa.h"
#include "qtk.h"
#include "ref/common.h"
#include "ref/kernels.h"
#include "ref/ref.h"
#include "ref/search.h"

static int check_params(int bits, int group) {
    if (bits < 2 || bits > 8 || group < 8 || group % 8 != 0 || group > QTK_SEARCH_MAX_N) {
        return QTK_E_ARG;
    }
    return QTK_OK;
}

int qtk_custom_block_bytes(int bits, int group, int symmetric, int64_t *out) {
    const int status = check_params(bits, group);
    if (status != QTK_OK) {
        return status;
    }
    if (!out) {
        return QTK_E_ARG;
    }
    *out = (symmetric ? 2 : 4) + (int64_t)group * bits / 8;
    return QTK_OK;
}

static void pack_bits(const uint8_t *L, int n, int bits, uint8_t *out) {
    memset(out, 0, (size_t)n * bits / 8);
    uint32_t acc = 0;
    int have = 0, pos = 0;
    for (int i = 0; i < n; ++i) {
        acc |= (uint32_t)L[i] << have;
        have += bits;
        while (have >= 8) {
            out[pos++] = (uint8_t)acc;
            acc >>= 8;
            have -= 8;
        }
    }
}

/* Weighted least-squares fit of x ~ d*l + m for fixed levels; returns the weighted error. */
static float fit_affine(int n, const float *x, const float *w, const uint8_t *L, float *d, float *m) {
    float sw = 0, sl = 0, sl2 = 0, sx = 0, slx = 0;
    for (int i = 0; i < n; ++i) {
        const float wl = w[i] * L[i];
        sw += w[i];
        sl += wl;
        sl2 += wl * L[i];
        sx += w[i] * x[i];
        slx += wl * x[i];
    }
    const float D = sw * sl2 - sl * sl;
    if (D > 0) {
        *d = (sw * slx - sx * sl) / D;
        *m = (sl2 * sx - sl * slx) / D;
    } else {
        *d = 0;
        *m = sw > 0 ? sx / sw : 0;
    }
    float err = 0;
    for (int i = 0; i < n; ++i) {
        const float diff = *d * L[i] + *m - x[i];
        err += w[i] * diff * diff;
    }
    return err;
}

static void assign_affine(int n, int nmax, const float *x, float d, float m, uint8_t *L) {
    const float id = d ? 1.0f / d : 0.0f;
    for (int i = 0; i < n; ++i) {
        const int l = qtk_nearest_int((x[i] - m) * id);
        L[i] = (uint8_t)QTK_MAX(0, QTK_MIN(nmax, l));
    }
}

static void quantize_group_asym(int n, int bits, const float *x, const float *w, uint8_t *block) {
    const int nmax = (1 << bits) - 1;
    uint8_t L[QTK_SEARCH_MAX_N], La[QTK_SEARCH_MAX_N];
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; ++i) {
        lo = QTK_MIN(lo, x[i]);
        hi = QTK_MAX(hi, x[i]);
    }
    float best_d = 0, best_m = lo;
    memset(L, 0, (size_t)n);
    if (hi > lo) {
        float best_err = FLT_MAX;
        /* candidate grids: the range split into nmax + delta steps, anchored at the minimum */
        for (int step = -8; step <= 8; ++step) {
            const float d0 = (hi - lo) / (nmax + 0.0625f * step);
            assign_affine(n, nmax, x, d0, lo, La);
            float d, m;
            float err = fit_affine(n, x, w, La, &d, &m);
            /* alternate: re-assign levels to the fitted grid, refit, while the error falls */
            for (int iter = 0; iter < 4 && d > 0; ++iter) {
                uint8_t Lb[QTK_SEARCH_MAX_N];
                assign_affine(n, nmax, x, d, m, Lb);
                float d2, m2;
                const float err2 = fit_affine(n, x, w, Lb, &d2, &m2);
                if (!(err2 < err)) {
                    break;
                }
                memcpy(La, Lb, (size_t)n);
                d = d2;
                m = m2;
                err = err2;
            }
            if (err < best_err) {
                best_err = err;
                best_d = d;
                best_m = m;
            }
        }
    }
    const qtk_half dh = qtk_fp32_to_fp16(best_d), mh = qtk_fp32_to_fp16(best_m);
    memcpy(block, &dh, 2);
    memcpy(block + 2, &mh, 2);
    const float d = qtk_fp16_to_fp32(dh), m = qtk_fp16_to_fp32(mh);
    if (d > 0) {
        assign_affine(n, nmax, x, d, m, L);
    }
    pack_bits(L, n, bits, block + 4);
}

static void quantize_group_sym(int n, int bits, const float *x, const float *w, uint8_t *block) {
    const int half = 1 << (bits - 1);
    int8_t L[QTK_SEARCH_MAX_N];
    const float d = qtk_search_symmetric(n, half, x, L, w);
    const qtk_half dh = qtk_fp32_to_fp16(d);
    memcpy(block, &dh, 2);
    const float df = qtk_fp16_to_fp32(dh);
    uint8_t U[QTK_SEARCH_MAX_N];
    for (int i = 0; i < n; ++i) {
        int l = L[i];   /* already offset by half */
        if (df) {
            l = QTK_MAX(-half, QTK_MIN(half - 1, qtk_nearest_int(x[i] / df))) + half;
        }
        U[i] = (uint8_t)l;
    }
    pack_bits(U, n, bits, block + 2);
}

int qtk_custom_quantize(int bits, int group, int symmetric, const float *src, void *dst,
                        int64_t nrows, int64_t n_per_row, const float *imatrix, int64_t *bad_row) {
    int status = check_params(bits, group);
    if (status != QTK_OK) {
        return status;
    }
    if (!src || !dst || nrows < 0 || n_per_row < 0) {
        return QTK_E_ARG;
    }
    if (n_per_row % group != 0) {
        return QTK_E_SHAPE;
    }
    status = qtk_check_imatrix(imatrix, n_per_row);
    if (status != QTK_OK) {
        return status;
    }
    int64_t block_bytes;
    qtk_custom_block_bytes(bits, group, symmetric, &block_bytes);
    float ones[QTK_SEARCH_MAX_N];
    for (int i = 0; i < group; ++i) {
        ones[i] = 1.0f;
    }
    const int64_t nb = n_per_row / group;
    for (int64_t r = 0; r < nrows; ++r) {
        const float *x = src + r * n_per_row;
        if (qtk_kernels_active()->has_nonfinite(x, n_per_row)) {
            if (bad_row) {
                *bad_row = r;
            }
            return QTK_E_NONFINITE;
        }
        uint8_t *out = (uint8_t *)dst + r * nb * block_bytes;
        for (int64_t b = 0; b < nb; ++b) {
            const float *w = imatrix ? imatrix + b * group : ones;
            if (symmetric) {
                quantize_group_sym(group, bits, x + b * group, w, out + b * block_bytes);
            } else {
                quantize_group_asym(group, bits, x + b * group, w, out + b * block_bytes);
            }
            if (qtk_halves_overflow(out + b * block_bytes, symmetric ? 1 : 2)) {
                if (bad_row) {
                    *bad_row = r;
                }
                return QTK_E_OVERFLOW;
            }
        }
    }
    return QTK_OK;
}

int qtk_custom_dequantize(int bits, int group, int symmetric, const void *src, float *dst,
                          int64_t nrows, int64_t n_per_row) {
    const int status = check_params(bits, group);
    if (status != QTK_OK) {
        return status;
    }
    if (!src || !dst || nrows < 0 || n_per_row < 0) {
        return QTK_E_ARG;
    }
    if (n_per_row % group != 0) {
        return QTK_E_SHAPE;
    }
    int64_t block_bytes;
    qtk_custom_block_bytes(bits, group, symmetric, &block_bytes);
    const qtk_custom_params p = {bits, group, symmetric ? 1 : 0, (int)block_bytes};
    const qtk_kernels *k = qtk_kernels_active();
    const qtk_dequantize_custom_fn fn = k->dequantize_custom ? k->dequantize_custom : qtk_dequantize_custom_ref;
    /* rows are whole groups, so the tensor is one long row of groups */
    fn(&p, src, dst, nrows * n_per_row);
    return QTK_OK;
}
