/* The checks every quantize path shares (declared in ref.h): non-finite input, importance
 * weights, overflowed fp16 fields. qtk_has_nonfinite is also the reference table's has_nonfinite
 * kernel (dot_ref.c), which is why these live in ref/ and not beside their callers in quant.c. */
#include <string.h>

#include "qtk.h"
#include "ref/ref.h"

/* Nonzero when x[0..n) holds a NaN or an infinity (all exponent bits set). */
int qtk_has_nonfinite(const float *x, int64_t n) {
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; ++i) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        bad |= (uint32_t)((u & 0x7f800000u) == 0x7f800000u);
    }
    return bad != 0;
}

/* QTK_OK, or QTK_E_IMATRIX for a negative, NaN or infinite weight; NULL is fine. */
int qtk_check_imatrix(const float *w, int64_t n) {
    if (!w) {
        return QTK_OK;
    }
    for (int64_t i = 0; i < n; ++i) {
        if (!(w[i] >= 0.0f) || w[i] > 3.4028235e38f) {
            return QTK_E_IMATRIX;
        }
    }
    return QTK_OK;
}

/* Nonzero when one of count little-endian fp16 values is an infinity or a NaN. */
int qtk_halves_overflow(const void *p, int64_t count) {
    const uint8_t *b = p;
    for (int64_t i = 0; i < count; ++i) {
        const uint16_t h = (uint16_t)(b[2 * i] | (b[2 * i + 1] << 8));
        if ((h & 0x7c00u) == 0x7c00u) {
            return 1;
        }
    }
    return 0;
}
