/* Four float / int32 lanes for the IQ searches (GCC/Clang vector extension: plain SSE2 on
 * x86-64, NEON on arm64, scalar code elsewhere). Each lane runs exactly the scalar float
 * operations (IEEE, no contraction under -ffp-contract=off), so lane results are bit-identical to
 * the scalar ones; only the number of candidates evaluated at once changes. */
#ifndef QTK_IQ_LANES_H
#define QTK_IQ_LANES_H

#include <stdint.h>
#include <string.h>

typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f load4(const float *p) {
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline v4f splat4(float x) {
    return (v4f){x, x, x, x};
}

static inline v4i splat4i(int32_t x) {
    return (v4i){x, x, x, x};
}

static inline int any4(v4i m) {
    return (m[0] | m[1] | m[2] | m[3]) != 0;
}

/* Index of the first smallest of d[0..count) under `<` (NaN never smaller), or 0 when no value is
 * below FLT_MAX: what a sequential scan `if (d[j] < best)` from best = FLT_MAX picks. d must have
 * room for 3 values past count (they may be overwritten). Long lists run four interleaved scans,
 * each keeping its first minimum, then take the smallest value, ties to the smallest index. */
static inline int qtk_first_min(float *d, int count) {
    const float big = 3.4028234663852886e38f;
    if (count < 16) {
        float best = big;
        int pick = 0;
        for (int j = 0; j < count; ++j) {
            if (d[j] < best) {
                best = d[j];
                pick = j;
            }
        }
        return pick;
    }
    for (int j = count; j < count + 3; ++j) {
        d[j] = big;
    }
    v4f best = splat4(big);
    v4i at = splat4i(-1);
    const v4i lane = {0, 1, 2, 3};
    for (int j = 0; j < count; j += 4) {
        const v4f v = load4(d + j);
        const v4i lt = v < best;
        best = (v4f)(((v4i)v & lt) | ((v4i)best & ~lt));
        at = ((lane + j) & lt) | (at & ~lt);
    }
    int pick = -1;
    float min = big;
    for (int k = 0; k < 4; ++k) {
        if (at[k] >= 0 && (pick < 0 || best[k] < min || (best[k] == min && at[k] < pick))) {
            min = best[k];
            pick = at[k];
        }
    }
    return pick < 0 ? 0 : pick;
}

#endif
