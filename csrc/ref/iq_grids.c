/* The IQ grid tables (definitions from the generated iq_grids.h) and their public accessors. */
#define QTK_IQ_GRIDS_DEFINE
#include "ref/iq_grids.h"

#include "qtk.h"
#include "qtk_iq.h"

/* A grid as (packed entries, width, count). IQ1_S and IQ1_M share one grid. */
static int grid_table(int type, const void **grid, int *width, int *entries) {
    switch (type) {
    case QTK_TYPE_IQ2_XXS: *grid = qtk_iq2xxs_grid; *width = 8; *entries = 256; return QTK_OK;
    case QTK_TYPE_IQ2_XS: *grid = qtk_iq2xs_grid; *width = 8; *entries = 512; return QTK_OK;
    case QTK_TYPE_IQ2_S: *grid = qtk_iq2s_grid; *width = 8; *entries = 1024; return QTK_OK;
    case QTK_TYPE_IQ3_XXS: *grid = qtk_iq3xxs_grid; *width = 4; *entries = 256; return QTK_OK;
    case QTK_TYPE_IQ3_S: *grid = qtk_iq3s_grid; *width = 4; *entries = 512; return QTK_OK;
    case QTK_TYPE_IQ1_S:
    case QTK_TYPE_IQ1_M: *grid = qtk_iq1s_grid; *width = 8; *entries = 2048; return QTK_OK;
    default: return QTK_E_TYPE;
    }
}

int qtk_iq_grid(int type, int16_t *out, int64_t capacity, int64_t *entries, int64_t *width) {
    const void *grid;
    int w, count;
    const int status = grid_table(type, &grid, &w, &count);
    if (status != QTK_OK) {
        return status;
    }
    if (entries) {
        *entries = count;
    }
    if (width) {
        *width = w;
    }
    if (!out) {
        return QTK_OK;
    }
    if (capacity < (int64_t)count * w) {
        return QTK_E_ARG;
    }
    const int is_signed = type == QTK_TYPE_IQ1_S || type == QTK_TYPE_IQ1_M;
    for (int i = 0; i < count; ++i) {
        const uint64_t e = w == 8 ? ((const uint64_t *)grid)[i] : ((const uint32_t *)grid)[i];
        for (int j = 0; j < w; ++j) {
            const uint8_t b = (uint8_t)(e >> (8 * j));
            out[(int64_t)i * w + j] = is_signed ? (int16_t)(int8_t)b : (int16_t)b;
        }
    }
    return QTK_OK;
}

int qtk_iq_ksigns(uint8_t *out, int64_t capacity) {
    if (!out || capacity < 128) {
        return QTK_E_ARG;
    }
    for (int i = 0; i < 128; ++i) {
        out[i] = qtk_ksigns_iq2xs[i];
    }
    return QTK_OK;
}

int qtk_iq1_delta(float *out) {
    if (!out) {
        return QTK_E_ARG;
    }
    *out = QTK_IQ1_DELTA;
    return QTK_OK;
}
