/* Quantization error without materialising the quantized tensor: each row is quantized into a
 * one-row scratch block, dequantized into a one-row scratch vector, and its (weighted) squared
 * error is summed in double precision. The bit allocator calls this for every tensor and
 * candidate type (docs/allocation.md). */
#include <stdlib.h>

#include "qtk.h"
#include "ref/common.h"
#include "ref/ref.h"

int qtk_quant_error(int type, const float *src, int64_t nrows, int64_t n_per_row, const float *imatrix,
                    const float *weights, double *err, int64_t *bad_row) {
    qtk_type_traits tr;
    int status = qtk_get_type_traits(type, &tr);
    if (status != QTK_OK) {
        return status;
    }
    if (!tr.can_quantize || !tr.can_dequantize) {
        return QTK_E_UNSUPPORTED;
    }
    if (!src || !err || nrows < 0 || n_per_row <= 0) {
        return QTK_E_ARG;
    }
    if (n_per_row % tr.blck_size != 0) {
        return QTK_E_SHAPE;
    }
    status = qtk_check_imatrix(weights, n_per_row);
    if (status != QTK_OK) {
        return status;
    }
    const int64_t row_bytes = n_per_row / tr.blck_size * tr.type_size;
    uint8_t *q = malloc((size_t)row_bytes);
    float *y = malloc((size_t)n_per_row * sizeof(float));
    if (!q || !y) {
        free(q);
        free(y);
        return QTK_E_NOMEM;
    }
    for (int64_t r = 0; r < nrows; ++r) {
        const float *x = src + r * n_per_row;
        status = qtk_quantize(type, x, q, 1, n_per_row, imatrix, NULL);
        if (status == QTK_OK) {
            status = qtk_dequantize(type, q, y, 1, n_per_row);
        }
        if (status != QTK_OK) {
            if (bad_row) {
                *bad_row = r;
            }
            break;
        }
        double s = 0.0;
        if (weights) {
            for (int64_t j = 0; j < n_per_row; ++j) {
                const double d = (double)x[j] - (double)y[j];
                s += (double)weights[j] * d * d;
            }
        } else {
            for (int64_t j = 0; j < n_per_row; ++j) {
                const double d = (double)x[j] - (double)y[j];
                s += d * d;
            }
        }
        err[r] = s;
    }
    free(q);
    free(y);
    return status;
}
