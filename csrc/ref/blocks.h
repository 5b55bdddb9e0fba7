/* Block layouts of the ggml quantization formats, byte for byte.
 *
 * Every struct is followed by a static_assert on its size: a block that is one byte off
 * would silently corrupt every file we write. Field names follow ggml (d, dmin, qs, qh,
 * scales) so the layouts can be compared against ggml-common.h by eye.
 */
#ifndef QTK_BLOCKS_H
#define QTK_BLOCKS_H

#include <assert.h>
#include <stdint.h>

typedef uint16_t qtk_half;   /* IEEE binary16 bit pattern, little-endian in files */

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK4_NL 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef struct {
    qtk_half d;
    uint8_t qs[QK4_0 / 2];
} block_q4_0;
static_assert(sizeof(block_q4_0) == 18, "block_q4_0 size");

typedef struct {
    qtk_half d;
    qtk_half m;
    uint8_t qs[QK4_1 / 2];
} block_q4_1;
static_assert(sizeof(block_q4_1) == 20, "block_q4_1 size");

typedef struct {
    qtk_half d;
    uint8_t qh[4];
    uint8_t qs[QK5_0 / 2];
} block_q5_0;
static_assert(sizeof(block_q5_0) == 22, "block_q5_0 size");

typedef struct {
    qtk_half d;
    qtk_half m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
} block_q5_1;
static_assert(sizeof(block_q5_1) == 24, "block_q5_1 size");

typedef struct {
    qtk_half d;
    int8_t qs[QK8_0];
} block_q8_0;
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 size");

typedef struct {
    qtk_half d;
    qtk_half s;          /* d * sum(qs) */
    int8_t qs[QK8_1];
} block_q8_1;
static_assert(sizeof(block_q8_1) == 36, "block_q8_1 size");

typedef struct {
    uint8_t scales[QK_K / 16];   /* low nibble scale, high nibble min */
    uint8_t qs[QK_K / 4];
    qtk_half d;
    qtk_half dmin;
} block_q2_K;
static_assert(sizeof(block_q2_K) == 84, "block_q2_K size");

typedef struct {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    qtk_half d;
} block_q3_K;
static_assert(sizeof(block_q3_K) == 110, "block_q3_K size");

typedef struct {
    qtk_half d;
    qtk_half dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
} block_q4_K;
static_assert(sizeof(block_q4_K) == 144, "block_q4_K size");

typedef struct {
    qtk_half d;
    qtk_half dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;
static_assert(sizeof(block_q5_K) == 176, "block_q5_K size");

typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    qtk_half d;
} block_q6_K;
static_assert(sizeof(block_q6_K) == 210, "block_q6_K size");

typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} block_q8_K;
static_assert(sizeof(block_q8_K) == 292, "block_q8_K size");

typedef struct {
    qtk_half d;
    uint8_t qs[QK4_NL / 2];
} block_iq4_nl;
static_assert(sizeof(block_iq4_nl) == 18, "block_iq4_nl size");

typedef struct {
    qtk_half d;
    uint16_t scales_h;
    uint8_t scales_l[QK_K / 64];
    uint8_t qs[QK_K / 2];
} block_iq4_xs;
static_assert(sizeof(block_iq4_xs) == 136, "block_iq4_xs size");

typedef struct {
    uint8_t qs[(QK_K - 4 * QK_K / 64) / 5];   /* 5 trits per byte */
    uint8_t qh[QK_K / 64];                   /* 4 trits per byte */
    qtk_half d;
} block_tq1_0;
static_assert(sizeof(block_tq1_0) == 54, "block_tq1_0 size");

typedef struct {
    uint8_t qs[QK_K / 4];
    qtk_half d;
} block_tq2_0;
static_assert(sizeof(block_tq2_0) == 66, "block_tq2_0 size");

/* The sub-3-bit codebook ("grid") formats. Each group of 8 (IQ3: 4) elements stores an index into
 * a fixed grid (iq_grids.h); signs are stored apart (IQ2/IQ3) or folded into the grid (IQ1). */

typedef struct {
    qtk_half d;
    uint16_t qs[QK_K / 8];     /* per 32: u32 of 4 grid indices, u32 of 4x7 sign bits + 4-bit scale */
} block_iq2_xxs;
static_assert(sizeof(block_iq2_xxs) == 66, "block_iq2_xxs size");

typedef struct {
    qtk_half d;
    uint16_t qs[QK_K / 8];     /* 9-bit grid index | 7-bit sign index << 9 */
    uint8_t scales[QK_K / 32]; /* 4-bit scale per 16 */
} block_iq2_xs;
static_assert(sizeof(block_iq2_xs) == 74, "block_iq2_xs size");

typedef struct {
    qtk_half d;
    uint8_t qs[QK_K / 4];      /* 32 low index bytes, then 32 sign bytes */
    uint8_t qh[QK_K / 32];     /* 2 high index bits per group of 8 */
    uint8_t scales[QK_K / 32]; /* 4-bit scale per 16 */
} block_iq2_s;
static_assert(sizeof(block_iq2_s) == 82, "block_iq2_s size");

typedef struct {
    qtk_half d;
    uint8_t qs[3 * QK_K / 8];  /* 64 grid index bytes, then 8 u32 of 4x7 sign bits + 4-bit scale */
} block_iq3_xxs;
static_assert(sizeof(block_iq3_xxs) == 98, "block_iq3_xxs size");

typedef struct {
    qtk_half d;
    uint8_t qs[QK_K / 4];      /* low 8 bits of the 9-bit grid indices */
    uint8_t qh[QK_K / 32];     /* high index bits, one per group of 4 */
    uint8_t signs[QK_K / 8];   /* one sign bit per element */
    uint8_t scales[QK_K / 64]; /* 4-bit scale per 32 */
} block_iq3_s;
static_assert(sizeof(block_iq3_s) == 110, "block_iq3_s size");

typedef struct {
    qtk_half d;
    uint8_t qs[QK_K / 8];      /* low 8 bits of the 11-bit grid indices */
    uint16_t qh[QK_K / 32];    /* per 32: 4x3 high index bits, 3-bit scale, delta sign (bit 15) */
} block_iq1_s;
static_assert(sizeof(block_iq1_s) == 50, "block_iq1_s size");

typedef struct {
    uint8_t qs[QK_K / 8];      /* low 8 bits of the 11-bit grid indices */
    uint8_t qh[QK_K / 16];     /* per 8: 3 high index bits + delta sign bit (a nibble) */
    uint8_t scales[QK_K / 32]; /* 4 u16: 4x3-bit scales per 16, and one nibble of the fp16 d each */
} block_iq1_m;
static_assert(sizeof(block_iq1_m) == 56, "block_iq1_m size");

/* The non-linear 4-bit codebook shared by IQ4_NL and IQ4_XS. */
extern const int8_t qtk_kvalues_iq4nl[16];

#endif
