/* qtoolkit C core: dequant-matmul (dense and Mixture-of-Experts) and the memory bandwidth probe.
 * The instruction set whose kernels run is chosen and can be forced through qtk_isa.h.
 *
 * Weights stay in their quantized format; each activation row is quantized once per call to the
 * weight type's companion format (see csrc/ref/kernels.h and docs/matmul.md), or kept in float32
 * when the weight type asks for it (qtk_wtype.act = QTK_ACT_F32). Work is spread over a
 * pthread pool by output rows only, so results do not depend on the thread count. Functions
 * return status codes and never print or abort; the pool serves one call at a time (concurrent
 * callers wait their turn).
 */
#ifndef QTK_MATMUL_H
#define QTK_MATMUL_H

#include <stddef.h>
#include <stdint.h>

/* cdef-begin */
/* Weight type of a matmul: a GGUF type id, or QTK_TYPE_CUSTOM with CustomQuant parameters, and the
 * format the activations take.
 *   QTK_ACT_COMPANION  the type's companion format, as ggml pairs them on CPU (BF16 activations for
 *                      BF16 weights, Q8_K for Q4_K, ...): what gives llama.cpp's numbers
 *   QTK_ACT_F32        float32 activations and float32 products, for F32, F16 and BF16 weights (the
 *                      first two take float32 activations anyway); the weights are widened element by
 *                      element inside the kernel, never as a whole. QTK_E_UNSUPPORTED for any other
 *                      type.
 * Every function below that takes a qtk_wtype honours act; any other value of it is QTK_E_ARG. */
enum { QTK_TYPE_CUSTOM = 1000 };
enum { QTK_ACT_COMPANION = 0, QTK_ACT_F32 = 1 };
typedef struct {
    int type;
    int bits;        /* CustomQuant only */
    int group;       /* CustomQuant only */
    int symmetric;   /* CustomQuant only */
    int act;         /* QTK_ACT_*; 0 (the companion format) when left zero */
} qtk_wtype;

/* Bytes of one weight row of n elements; QTK_E_SHAPE when n does not fit the block size. */
int qtk_wtype_row_bytes(const qtk_wtype *wt, int64_t n, int64_t *out);

/* out[t * rows + r] = dot(row r of w, x[t * n ..]) for t < tokens, r < rows.
 * threads <= 0 means one per available core. */
int qtk_matmul(const qtk_wtype *wt, const void *w, int64_t rows, int64_t n, const float *x, int64_t tokens,
               float *out, int threads);

/* Mixture-of-Experts matmul (ggml's mul_mat_id): w holds n_experts stacked [rows, n] matrices;
 * ids is [tokens, k] expert indices; out[(t * k + j) * rows + r] = dot(row r of expert ids[t,j], x[t]).
 * Only routed experts are read; the tokens routed to one expert form one gemm. QTK_E_ARG for an
 * id outside [0, n_experts). */
int qtk_moe_matmul(const qtk_wtype *wt, const void *w, int64_t n_experts, int64_t rows, int64_t n,
                   const float *x, int64_t tokens, const int32_t *ids, int64_t k, float *out, int threads);

/* Fused MoE feed-forward: out[t] = sum_j weights[t,j] * down_e(silu(gate_e x_t) * up_e x_t),
 * e = ids[t,j]; gate and up are [n_experts, n_ff, n_embd], down is [n_experts, n_embd, n_ff].
 * The sum over j runs in order j = 0..k-1. Each projection has its own qtk_wtype (type and act). */
int qtk_moe_ffn(const qtk_wtype *gate_t, const qtk_wtype *up_t, const qtk_wtype *down_t, const void *gate,
                const void *up, const void *down, int64_t n_experts, int64_t n_ff, int64_t n_embd,
                const float *x, int64_t tokens, const int32_t *ids, const float *weights, int64_t k, float *out,
                int threads);

/* Dot products of weight rows with already quantized activation rows (for tests): y holds the
 * activation in the format the weight type takes (the companion format, or float32 for
 * QTK_ACT_F32), as qtk_quantize_activation writes it. */
int qtk_quantize_activation(const qtk_wtype *wt, const float *x, int64_t n, void *y, int64_t y_bytes);
int qtk_activation_row_bytes(const qtk_wtype *wt, int64_t n, int64_t *out);
int qtk_vec_dot(const qtk_wtype *wt, int64_t n, const void *w_row, const void *y, float *out);

/* Memory read bandwidth: streams `bytes` of a fresh buffer `reps` times on `threads` threads
 * and writes the best rate in GB/s (1e9 bytes per second). */
int qtk_read_bandwidth(int64_t bytes, int reps, int threads, double *gbps);
/* cdef-end */

#endif
