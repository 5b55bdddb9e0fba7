/* The dispatched kernels: one table per instruction set, chosen once at run time (isa.c).
 *
 * A dot kernel multiplies one weight row (kept in its quantized format) by one activation row
 * already quantized to the weight type's companion format (the "vec_dot type", as ggml pairs
 * them on CPU):
 *   Q8_0 for Q4_0, Q5_0, Q8_0, IQ4_NL;  Q8_1 for Q4_1, Q5_1;
 *   Q8_K for Q2_K..Q6_K, IQ4_XS, TQ1_0, TQ2_0 and the codebook types IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS,
 *   IQ2_S, IQ3_XXS, IQ3_S;
 *   F32 for F32 and F16 (ggml converts the activation to F16 for F16 weights; qtoolkit keeps it
 *   in F32, which is both faster here and more accurate), BF16 for BF16 (as ggml);
 *   Q8G (qtoolkit's own: a float32 scale, an int32 sum and `group` int8 per group) for CustomQuant.
 * One more pairing is asked for explicitly (qtk_wtype.act = QTK_ACT_F32): BF16 weights with F32
 * activations (vec_dot_bf16_f32, vec_dot_tile_bf16_f32), the full-precision way to run a checkpoint
 * stored in bf16 (bf16 -> f32 is exact: the 16 bits shifted up).
 * Inside a matmul the Q8_0 and Q8_1 activation rows carry a float tail after ggml's blocks, so a
 * dot kernel does not convert the same fp16 scale once per weight row:
 *   Q8_0: nb blocks, then nb floats d (the fp16 d, converted) and nb floats sum(qs);
 *   Q8_1: nb blocks, then nb floats d and nb floats s (both the fp16 fields, converted).
 * The blocks themselves are exactly ggml's.
 * The reference kernels (dot_ref.c) are the specification; SIMD kernels may sum in a different
 * order and are held to a normalised error bound. Dequantize and activation-quantize kernels
 * must give the reference's bits exactly.
 */
#ifndef QTK_KERNELS_H
#define QTK_KERNELS_H

#include <stdint.h>

#include "qtk.h"
#include "ref/ref.h"

/* s[0] = dot(x, y) over n elements: x a weight row, y its companion activation row. */
typedef void (*qtk_vec_dot_fn)(int64_t n, float *s, const void *x, const void *y);

/* s[t] = dot(x, y[t]) for four activation rows at once (a gemm micro-kernel): each s[t] must be
 * bit-identical to what the type's qtk_vec_dot_fn gives for y[t] alone, so a token's result does
 * not depend on the tokens it is batched with. */
typedef void (*qtk_vec_dot4_fn)(int64_t n, float *s, const void *x, const void *const *y);

/* Eight Q8_K activation rows (a gemm micro-kernel's tokens). */
typedef struct {
    const void *y[8];
} qtk_q8k_group;

/* s[t] = dot(x, y[t]) for the eight rows of a Q8_K group; as for qtk_vec_dot4_fn, each s[t] must
 * be bit-identical to the single-row kernel on y[t]. */
typedef void (*qtk_vec_dot8_fn)(int64_t n, float *s, const void *x, const qtk_q8k_group *g);

/* The prompt path of the K-quants and the codebook types: a weight row unpacked once (qtk_unpack_fn,
 * QTK_UNPACKED_BYTES per super-block of 256) and dotted with eight Q8_K rows at a time by
 * vec_dot8u; each result must be bit-identical to the type's single-row kernel. */
#define QTK_UNPACKED_BYTES 640
typedef void (*qtk_unpack_fn)(const void *x, int64_t n, uint8_t *u);

/* A register tile of the float weight types: s[r * ss + t] = dot(row r, y[t]) for r < nr rows
 * (x + r * xs bytes), t < nt tokens, 1 <= nr, nt <= 4; each result must be bit-identical to the
 * type's qtk_vec_dot_fn on that row and token. */
typedef void (*qtk_vec_dot_tile_fn)(int64_t n, float *s, int64_t ss, const void *x, int64_t xs, const void *const *y,
                                    int nr, int nt);

/* CustomQuant parameters, validated by the caller. */
typedef struct {
    int bits;
    int group;
    int symmetric;
    int block_bytes;   /* bytes of one weight group */
} qtk_custom_params;

typedef void (*qtk_vec_dot_custom_fn)(const qtk_custom_params *p, int64_t n, float *s, const void *x,
                                      const void *y);
typedef void (*qtk_dequantize_custom_fn)(const qtk_custom_params *p, const void *x, float *y, int64_t n);
/* Q8G: one activation row of n floats into groups of `group`: [float d][int32 sum][int8 qs[group]]. */
typedef void (*qtk_quantize_q8g_fn)(const float *x, void *y, int64_t n, int group);

#define QTK_Q8G_BYTES(group) (8 + (group))

/* Activation rows with the float tail described above (nb blocks). */
#define QTK_Q8_0X_BYTES(nb) ((nb) * (34 + 8))
#define QTK_Q8_1X_BYTES(nb) ((nb) * (36 + 8))
typedef void (*qtk_quantize_act_fn)(const float *x, void *y, int64_t n);

static inline float qtk_ld_f32(const void *p) {
    float f;
    __builtin_memcpy(&f, p, 4);
    return f;
}

typedef struct {
    const char *name;
    qtk_dequantize_row_fn dequantize[QTK_TYPE_COUNT];  /* NULL: use the reference */
    qtk_vec_dot_fn vec_dot[QTK_TYPE_COUNT];             /* NULL: type has no dot kernel */
    qtk_vec_dot4_fn vec_dot4[QTK_TYPE_COUNT];           /* NULL: four calls of vec_dot */
    qtk_vec_dot8_fn vec_dot8[QTK_TYPE_COUNT];           /* NULL: none (Q8_K types only) */
    qtk_unpack_fn unpack[QTK_TYPE_COUNT];               /* NULL: none (K-quants, IQ1/IQ2/IQ3 only) */
    qtk_vec_dot8_fn vec_dot8u[QTK_TYPE_COUNT];          /* on unpacked rows; with unpack */
    qtk_vec_dot_tile_fn vec_dot_tile[QTK_TYPE_COUNT];   /* NULL: none (float types only) */
    qtk_vec_dot_fn vec_dot_bf16_f32;                    /* BF16 x F32 (QTK_ACT_F32); NULL: the reference */
    qtk_vec_dot_tile_fn vec_dot_tile_bf16_f32;          /* NULL: none; only used with vec_dot_bf16_f32 */
    qtk_quantize_row_fn quantize_q8_0, quantize_q8_1, quantize_q8_K, quantize_f16, quantize_bf16;
    qtk_quantize_q8g_fn quantize_q8g;
    qtk_quantize_act_fn quantize_act_q8_0, quantize_act_q8_1;   /* blocks + float tail */
    int (*has_nonfinite)(const float *x, int64_t n);             /* any NaN/Inf (quantize's input check) */
    qtk_vec_dot_custom_fn vec_dot_custom;
    qtk_dequantize_custom_fn dequantize_custom;
} qtk_kernels;

/* Companion activation type of a weight type (a QTK_TYPE_* id), or -1 without a dot kernel
 * (dot_ref.c, next to the reference table whose kernels take it). */
int qtk_vec_dot_type(int type);

/* The reference table (dot_ref.c); the SIMD tables are declared by their folders under arch/. */
extern const qtk_kernels qtk_kernels_ref;

/* Reference pieces other tables reuse. */
void qtk_extend_q8_0(void *y, int64_t nb);   /* writes the float tail of nb Q8_0 blocks */
void qtk_extend_q8_1(void *y, int64_t nb);
void qtk_quantize_act_q8_0_ref(const float *x, void *y, int64_t n);
void qtk_quantize_act_q8_1_ref(const float *x, void *y, int64_t n);
void qtk_quantize_row_q8g_ref(const float *x, void *y, int64_t n, int group);
void qtk_vec_dot_custom_q8g_ref(const qtk_custom_params *p, int64_t n, float *s, const void *x, const void *y);
void qtk_dequantize_custom_ref(const qtk_custom_params *p, const void *x, float *y, int64_t n);

#endif
