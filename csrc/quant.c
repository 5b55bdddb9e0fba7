/* The traits table (indexed by GGUF type id) and the tensor-level quantize/dequantize calls. */
#include "fastq/fastq.h"
#include "isa.h"
#include "qtk.h"
#include "qtk_iq.h"
#include "ref/common.h"
#include "ref/iq_lattice.h"
#include "ref/kernels.h"
#include "ref/ref.h"

#ifndef QTK_VERSION
#error "QTK_VERSION must be defined by the build (see qtoolkit/_build.py)"
#endif

typedef struct {
    qtk_type_traits pub;
    qtk_quantize_row_fn quantize_row;
    qtk_dequantize_row_fn dequantize_row;
    /* byte offsets in the block of up to two fp16 scale fields checked for overflow after
     * quantizing (-1: none); BF16_VALUES: every element is a bfloat16 to check */
    int16_t half_at[2];
    int8_t requires_imatrix;  /* ggml asserts without importance weights: refuse with QTK_E_IMATRIX */
    int8_t lattice;           /* the IQ search lattice the quantizer needs (QTK_LAT_*), or NO_LATTICE */
} type_entry;

#define NO_HALF -1
#define BF16_VALUES -2
#define IQ1_M_SCALE -3   /* IQ1_M: the fp16 scale is split over the scale words */
#define NO_LATTICE -1

#define ENTRY(id, nm, blck, size, quantized, imat, fn, h0, h1)                                         \
    [id] = {{nm, blck, size, quantized, imat, 1, 1}, qtk_quantize_row_##fn, qtk_dequantize_row_##fn, {h0, h1}, \
            0, NO_LATTICE}

/* the IQ codebook types: importance weights optional or required, a lattice to search */
#define IQ_ENTRY(id, nm, fn, h0, required, lat) \
    [id] = {{nm, QK_K, sizeof(block_##fn), 1, 1, 1, 1}, qtk_quantize_row_##fn, qtk_dequantize_row_##fn, \
            {h0, NO_HALF}, required, lat}

/* a ggml type this build knows the size of but cannot (de)quantize */
#define KNOWN(id, nm, blck, size, quantized) \
    [id] = {{nm, blck, size, quantized, 0, 0, 0}, NULL, NULL, {NO_HALF, NO_HALF}, 0, NO_LATTICE}

static const type_entry type_table[QTK_TYPE_COUNT] = {
    ENTRY(QTK_TYPE_F32, "f32", 1, 4, 0, 0, f32, NO_HALF, NO_HALF),
    ENTRY(QTK_TYPE_F16, "f16", 1, 2, 0, 0, f16, 0, NO_HALF),
    ENTRY(QTK_TYPE_BF16, "bf16", 1, 2, 0, 0, bf16, BF16_VALUES, NO_HALF),
    ENTRY(QTK_TYPE_Q4_0, "q4_0", QK4_0, sizeof(block_q4_0), 1, 1, q4_0, 0, NO_HALF),
    ENTRY(QTK_TYPE_Q4_1, "q4_1", QK4_1, sizeof(block_q4_1), 1, 1, q4_1, 0, 2),
    ENTRY(QTK_TYPE_Q5_0, "q5_0", QK5_0, sizeof(block_q5_0), 1, 1, q5_0, 0, NO_HALF),
    ENTRY(QTK_TYPE_Q5_1, "q5_1", QK5_1, sizeof(block_q5_1), 1, 1, q5_1, 0, 2),
    ENTRY(QTK_TYPE_Q8_0, "q8_0", QK8_0, sizeof(block_q8_0), 1, 0, q8_0, 0, NO_HALF),
    ENTRY(QTK_TYPE_Q8_1, "q8_1", QK8_1, sizeof(block_q8_1), 1, 0, q8_1, 0, NO_HALF),
    ENTRY(QTK_TYPE_Q2_K, "q2_K", QK_K, sizeof(block_q2_K), 1, 1, q2_K, 80, 82),
    ENTRY(QTK_TYPE_Q3_K, "q3_K", QK_K, sizeof(block_q3_K), 1, 1, q3_K, 108, NO_HALF),
    ENTRY(QTK_TYPE_Q4_K, "q4_K", QK_K, sizeof(block_q4_K), 1, 1, q4_K, 0, 2),
    ENTRY(QTK_TYPE_Q5_K, "q5_K", QK_K, sizeof(block_q5_K), 1, 1, q5_K, 0, 2),
    ENTRY(QTK_TYPE_Q6_K, "q6_K", QK_K, sizeof(block_q6_K), 1, 1, q6_K, 208, NO_HALF),
    ENTRY(QTK_TYPE_Q8_K, "q8_K", QK_K, sizeof(block_q8_K), 1, 0, q8_K, NO_HALF, NO_HALF),
    ENTRY(QTK_TYPE_IQ4_NL, "iq4_nl", QK4_NL, sizeof(block_iq4_nl), 1, 1, iq4_nl, 0, NO_HALF),
    ENTRY(QTK_TYPE_IQ4_XS, "iq4_xs", QK_K, sizeof(block_iq4_xs), 1, 1, iq4_xs, 0, NO_HALF),
    ENTRY(QTK_TYPE_TQ1_0, "tq1_0", QK_K, sizeof(block_tq1_0), 1, 0, tq1_0, 52, NO_HALF),
    ENTRY(QTK_TYPE_TQ2_0, "tq2_0", QK_K, sizeof(block_tq2_0), 1, 0, tq2_0, 64, NO_HALF),
    IQ_ENTRY(QTK_TYPE_IQ2_XXS, "iq2_xxs", iq2_xxs, 0, 1, QTK_LAT_IQ2_XXS),
    IQ_ENTRY(QTK_TYPE_IQ2_XS, "iq2_xs", iq2_xs, 0, 1, QTK_LAT_IQ2_XS),
    IQ_ENTRY(QTK_TYPE_IQ2_S, "iq2_s", iq2_s, 0, 0, QTK_LAT_IQ2_S),
    IQ_ENTRY(QTK_TYPE_IQ3_XXS, "iq3_xxs", iq3_xxs, 0, 0, QTK_LAT_IQ3_XXS),
    IQ_ENTRY(QTK_TYPE_IQ3_S, "iq3_s", iq3_s, 0, 0, QTK_LAT_IQ3_S),
    IQ_ENTRY(QTK_TYPE_IQ1_S, "iq1_s", iq1_s, 0, 1, QTK_LAT_IQ1),
    IQ_ENTRY(QTK_TYPE_IQ1_M, "iq1_m", iq1_m, IQ1_M_SCALE, 0, QTK_LAT_IQ1),
    KNOWN(QTK_TYPE_I8, "i8", 1, 1, 0),
    KNOWN(QTK_TYPE_I16, "i16", 1, 2, 0),
    KNOWN(QTK_TYPE_I32, "i32", 1, 4, 0),
    KNOWN(QTK_TYPE_I64, "i64", 1, 8, 0),
    KNOWN(QTK_TYPE_F64, "f64", 1, 8, 0),
    KNOWN(QTK_TYPE_MXFP4, "mxfp4", 32, 17, 1),
};

const char *qtk_version(void) {
    return QTK_VERSION;
}

const char *qtk_strerror(int status) {
    switch (status) {
    case QTK_OK: return "ok";
    case QTK_E_ARG: return "invalid argument";
    case QTK_E_TYPE: return "unknown or unsupported type";
    case QTK_E_SHAPE: return "row length is not a multiple of the block size";
    case QTK_E_NONFINITE: return "input holds NaN or Inf";
    case QTK_E_NOMEM: return "out of memory";
    case QTK_E_IMATRIX: return "importance weights are required by this type, or are negative or non-finite";
    case QTK_E_UNSUPPORTED: return "not supported by this build";
    case QTK_E_OVERFLOW: return "a value or scale overflows the format's 16-bit float fields";
    default: return "unknown status";
    }
}

static const type_entry *lookup(int type) {
    if (type < 0 || type >= QTK_TYPE_COUNT || type_table[type].pub.name == NULL) {
        return NULL;
    }
    return &type_table[type];
}

/* The entry of a type this build can quantize / dequantize, with the status to return if not. */
static const type_entry *lookup_impl(int type, int *status) {
    const type_entry *e = lookup(type);
    *status = !e ? QTK_E_TYPE : !e->quantize_row ? QTK_E_UNSUPPORTED : QTK_OK;
    return *status == QTK_OK ? e : NULL;
}

int qtk_type_requires_imatrix(int type, int *out) {
    const type_entry *e = lookup(type);
    if (!e) {
        return QTK_E_TYPE;
    }
    if (!out) {
        return QTK_E_ARG;
    }
    *out = e->requires_imatrix;
    return QTK_OK;
}

int qtk_get_type_traits(int type, qtk_type_traits *out) {
    const type_entry *e = lookup(type);
    if (!e) {
        return QTK_E_TYPE;
    }
    if (!out) {
        return QTK_E_ARG;
    }
    *out = e->pub;
    /* from the reference kernel table, which every ISA's table falls back to (matmul.c) */
    out->can_matmul = qtk_vec_dot_type(type) >= 0 && qtk_kernels_ref.vec_dot[type] != NULL;
    return QTK_OK;
}

/* Nonzero when a quantized row stored an infinite scale (or, for F16/BF16, an infinite value):
 * finite input whose magnitude the format cannot hold. */
static int row_overflows(const type_entry *e, const uint8_t *row, int64_t nblocks) {
    if (e->half_at[0] == BF16_VALUES) {
        for (int64_t i = 0; i < nblocks; ++i) {
            const uint16_t v = (uint16_t)(row[2 * i] | (row[2 * i + 1] << 8));
            if ((v & 0x7f80u) == 0x7f80u) {
                return 1;
            }
        }
        return 0;
    }
    if (e->half_at[0] == IQ1_M_SCALE) {
        for (int64_t i = 0; i < nblocks; ++i) {
            const qtk_half h = qtk_iq1_m_scale(row + i * e->pub.type_size);
            if ((h & 0x7c00u) == 0x7c00u) {
                return 1;
            }
        }
        return 0;
    }
    for (int k = 0; k < 2; ++k) {
        if (e->half_at[k] < 0) {
            continue;
        }
        for (int64_t i = 0; i < nblocks; ++i) {
            if (qtk_halves_overflow(row + i * e->pub.type_size + e->half_at[k], 1)) {
                return 1;
            }
        }
    }
    return 0;
}

/* Nonzero when a row holds a magnitude of 2^60 or more. The IQ searches sum squares over 256
 * elements in float32; beyond that the sums overflow and ggml's arithmetic turns to Inf/NaN (it
 * then writes zero blocks or asserts). No fp16 scale could hold such values anyway. */
static int iq_squares_overflow(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        if (fabsf(x[i]) >= 0x1p60f) {
            return 1;
        }
    }
    return 0;
}

/* The activation formats have dispatched (SIMD) quantizers that give the reference's bits. */
static qtk_quantize_row_fn dispatched_quantize(const type_entry *e, int type) {
    const qtk_kernels *k = qtk_kernels_active();
    switch (type) {
    case QTK_TYPE_Q8_0: return k->quantize_q8_0;
    case QTK_TYPE_Q8_1: return k->quantize_q8_1;
    case QTK_TYPE_Q8_K: return k->quantize_q8_K;
    case QTK_TYPE_F16: return k->quantize_f16;
    case QTK_TYPE_BF16: return k->quantize_bf16;
    default: return e->quantize_row;
    }
}

int qtk_quantize(int type, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                 const float *imatrix, int64_t *bad_row) {
    int status;
    const type_entry *e = lookup_impl(type, &status);
    if (!e) {
        return status;
    }
    if (!src || !dst || nrows < 0 || n_per_row < 0) {
        return QTK_E_ARG;
    }
    if (n_per_row % e->pub.blck_size != 0) {
        return QTK_E_SHAPE;
    }
    status = qtk_check_imatrix(imatrix, n_per_row);
    if (status != QTK_OK) {
        return status;
    }
    if (e->requires_imatrix && !imatrix) {
        return QTK_E_IMATRIX;
    }
    if (e->lattice != NO_LATTICE && !qtk_iq_lattice_get(e->lattice)) {
        return QTK_E_NOMEM;
    }
    const int64_t row_bytes = n_per_row / e->pub.blck_size * e->pub.type_size;
    const float *qw = e->pub.uses_imatrix ? imatrix : NULL;
    /* the fast variant, if one is selected and has this type: same bytes, checks fused (fastq.h);
     * otherwise the dispatched row function (SIMD activation quantizers) or the reference */
    const qtk_fastq_table *fast = qtk_fastq_active();
    const qtk_fast_row_fn fast_row = fast ? fast->row[type] : NULL;
    const qtk_quantize_row_fn quantize_row = dispatched_quantize(e, type);
    int (*const nonfinite)(const float *, int64_t) = qtk_kernels_active()->has_nonfinite;
    for (int64_t r = 0; r < nrows; ++r) {
        const float *x = src + r * n_per_row;
        uint8_t *y = (uint8_t *)dst + r * row_bytes;
        if (fast_row) {
            if (fast_row(x, y, n_per_row, qw) == 0) {
                continue;
            }
            /* maybe bad: tell which with the reference checks, in the reference's order */
            if (qtk_has_nonfinite(x, n_per_row)) {
                if (bad_row) {
                    *bad_row = r;
                }
                return QTK_E_NONFINITE;
            }
            if (row_overflows(e, y, n_per_row / e->pub.blck_size)) {
                if (bad_row) {
                    *bad_row = r;
                }
                return QTK_E_OVERFLOW;
            }
            continue;
        }
        if (nonfinite(x, n_per_row)) {
            if (bad_row) {
                *bad_row = r;
            }
            return QTK_E_NONFINITE;
        }
        if (e->lattice != NO_LATTICE && iq_squares_overflow(x, n_per_row)) {
            if (bad_row) {
                *bad_row = r;
            }
            return QTK_E_OVERFLOW;
        }
        quantize_row(x, y, n_per_row, qw);
        if (row_overflows(e, y, n_per_row / e->pub.blck_size)) {
            if (bad_row) {
                *bad_row = r;
            }
            return QTK_E_OVERFLOW;
        }
    }
    return QTK_OK;
}

int qtk_dequantize(int type, const void *src, float *dst, int64_t nrows, int64_t n_per_row) {
    int status;
    const type_entry *e = lookup_impl(type, &status);
    if (!e) {
        return status;
    }
    if (!src || !dst || nrows < 0 || n_per_row < 0) {
        return QTK_E_ARG;
    }
    if (n_per_row % e->pub.blck_size != 0) {
        return QTK_E_SHAPE;
    }
    const int64_t row_bytes = n_per_row / e->pub.blck_size * e->pub.type_size;
    const qtk_kernels *k = qtk_kernels_active();
    const qtk_dequantize_row_fn dequantize_row = k->dequantize[type] ? k->dequantize[type] : e->dequantize_row;
    for (int64_t r = 0; r < nrows; ++r) {
        dequantize_row((const char *)src + r * row_bytes, dst + r * n_per_row, n_per_row);
    }
    return QTK_OK;
}
