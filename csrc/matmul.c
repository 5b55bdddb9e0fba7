/* Dequant-matmul: dense (gemv / blocked gemm) and Mixture-of-Experts, on the pthread pool.
 *
 * Every output element is one call of the active dot kernel on one weight row and one quantized
 * activation row, so the result does not depend on the thread count, the schedule, or on whether
 * the row was computed through qtk_matmul, qtk_moe_matmul or qtk_moe_ffn. Work is split over
 * output rows only: a task is (weight matrix, a tile of rows, a list of activation rows); inside a
 * task the tile of rows is swept once per activation row while it stays in cache, which is how a
 * prompt (many tokens) reuses each quantized weight block across tokens.
 */
#include <stdlib.h>

#include "isa.h"
#include "pool.h"
#include "qtk_matmul.h"
#include "ref/common.h"
#include "ref/kernels.h"

/* Target bytes of weights per task tile: small enough to stay in L2 (1 MiB here) while all the
 * tokens of the task sweep over it, large enough that each activation row, read from L3 once per
 * tile, serves many weight rows (a prompt of 512 tokens holds 2.4 MB of Q8_K rows at 4096
 * columns). Prompt 4096 x 4096 x 512 tokens, ns per row-token: 96 KiB tiles Q4_K 53.3, Q6_K 64.7;
 * 256 KiB 51.5, 62.7. The float types' activation rows are as large as their weight rows, so
 * their tiles are taller still (F32 x 64 tokens: 96 KiB 97 ns, 512 KiB 81 ns, 1 MiB 85 ns). */
#define TILE_BYTES (256 * 1024)
#define TILE_BYTES_FLOAT (512 * 1024)

typedef struct {
    const qtk_kernels *k;
    int act_type;             /* companion type id, or QTK_TYPE_CUSTOM for Q8G */
    qtk_vec_dot_fn dot;
    qtk_vec_dot4_fn dot4;     /* may be NULL */
    qtk_vec_dot8_fn dot8;     /* may be NULL (Q8_K types) */
    qtk_vec_dot_tile_fn tile; /* may be NULL (float types) */
    qtk_unpack_fn unpack;     /* NULL except for K-quants, IQ1/IQ2/IQ3 types */
    qtk_vec_dot8_fn dot8u;
    qtk_vec_dot_custom_fn dot_custom;
    qtk_custom_params cp;
    int64_t n, row_bytes, act_bytes;
} plan_t;

static int64_t type_row_bytes(int type, int64_t n) {
    qtk_type_traits t;
    if (qtk_get_type_traits(type, &t) != QTK_OK || n % t.blck_size) {
        return -1;
    }
    return n / t.blck_size * t.type_size;
}

static int plan_init(plan_t *p, const qtk_wtype *wt, int64_t n, const qtk_kernels *k) {
    if (!wt || n < 0 || (wt->act != QTK_ACT_COMPANION && wt->act != QTK_ACT_F32)) {
        return QTK_E_ARG;
    }
    memset(p, 0, sizeof *p);
    p->k = k;
    p->n = n;
    if (wt->type == QTK_TYPE_CUSTOM) {
        if (wt->act == QTK_ACT_F32) {
            return QTK_E_UNSUPPORTED;
        }
        if (wt->bits < 2 || wt->bits > 8 || wt->group < 8 || wt->group % 8 || wt->group > 1024) {
            return QTK_E_ARG;
        }
        if (n % wt->group) {
            return QTK_E_SHAPE;
        }
        p->cp.bits = wt->bits;
        p->cp.group = wt->group;
        p->cp.symmetric = wt->symmetric ? 1 : 0;
        p->cp.block_bytes = (p->cp.symmetric ? 2 : 4) + wt->group * wt->bits / 8;
        p->act_type = QTK_TYPE_CUSTOM;
        p->row_bytes = n / wt->group * p->cp.block_bytes;
        p->act_bytes = n / wt->group * QTK_Q8G_BYTES(wt->group);
        p->dot_custom = k->vec_dot_custom ? k->vec_dot_custom : qtk_kernels_ref.vec_dot_custom;
        return QTK_OK;
    }
    qtk_type_traits t;
    if (qtk_get_type_traits(wt->type, &t) != QTK_OK) {
        return QTK_E_TYPE;
    }
    if (wt->act == QTK_ACT_F32 && wt->type == QTK_TYPE_BF16) {
        /* BF16 weights with float32 activations: a pairing of its own, outside the per-type slots */
        p->act_type = QTK_TYPE_F32;
        p->row_bytes = type_row_bytes(wt->type, n);
        p->act_bytes = type_row_bytes(QTK_TYPE_F32, n);
        if (p->row_bytes < 0 || p->act_bytes < 0) {
            return QTK_E_SHAPE;
        }
        p->dot = k->vec_dot_bf16_f32 ? k->vec_dot_bf16_f32 : qtk_kernels_ref.vec_dot_bf16_f32;
        p->tile = k->vec_dot_bf16_f32 ? k->vec_dot_tile_bf16_f32 : NULL;
        return QTK_OK;
    }
    p->act_type = qtk_vec_dot_type(wt->type);
    if (p->act_type < 0 || (wt->act == QTK_ACT_F32 && p->act_type != QTK_TYPE_F32)) {
        /* no dot kernel, or float32 activations asked of a type that has none (QTK_ACT_F32 is the
         * companion format of F32 and F16 weights already) */
        return QTK_E_UNSUPPORTED;
    }
    p->row_bytes = type_row_bytes(wt->type, n);
    p->act_bytes = type_row_bytes(p->act_type, n);
    if (p->row_bytes < 0 || p->act_bytes < 0) {
        return QTK_E_SHAPE;
    }
    if (p->act_type == QTK_TYPE_Q8_0) {
        p->act_bytes = QTK_Q8_0X_BYTES(n / QK8_0);
    } else if (p->act_type == QTK_TYPE_Q8_1) {
        p->act_bytes = QTK_Q8_1X_BYTES(n / QK8_1);
    }
    p->dot = k->vec_dot[wt->type] ? k->vec_dot[wt->type] : qtk_kernels_ref.vec_dot[wt->type];
    p->dot4 = k->vec_dot[wt->type] ? k->vec_dot4[wt->type] : NULL;
    p->dot8 = k->vec_dot[wt->type] && p->act_type == QTK_TYPE_Q8_K ? k->vec_dot8[wt->type] : NULL;
    p->tile = k->vec_dot[wt->type] ? k->vec_dot_tile[wt->type] : NULL;
    p->unpack = k->vec_dot[wt->type] && p->act_type == QTK_TYPE_Q8_K ? k->unpack[wt->type] : NULL;
    p->dot8u = p->unpack ? k->vec_dot8u[wt->type] : NULL;
    return QTK_OK;
}

static void quantize_act(const plan_t *p, const float *x, void *y) {
    const qtk_kernels *k = p->k;
    switch (p->act_type) {
    case QTK_TYPE_F32: memcpy(y, x, (size_t)p->n * sizeof(float)); break;
    case QTK_TYPE_F16: k->quantize_f16(x, y, p->n, NULL); break;
    case QTK_TYPE_BF16: k->quantize_bf16(x, y, p->n, NULL); break;
    case QTK_TYPE_Q8_0: k->quantize_act_q8_0(x, y, p->n); break;
    case QTK_TYPE_Q8_1: k->quantize_act_q8_1(x, y, p->n); break;
    case QTK_TYPE_Q8_K: k->quantize_q8_K(x, y, p->n, NULL); break;
    default: k->quantize_q8g(x, y, p->n, p->cp.group); break;
    }
}

static inline void do_dot(const plan_t *p, float *s, const uint8_t *wrow, const uint8_t *y) {
    if (p->dot) {
        p->dot(p->n, s, wrow, y);
    } else {
        p->dot_custom(&p->cp, p->n, s, wrow, y);
    }
}

static int64_t tile_rows(const plan_t *p, int64_t rows) {
    /* the float types' activation rows are as large as their weight rows: a taller tile reads each
     * activation row from L3 once per more weight rows */
    const int64_t bytes = p->tile ? TILE_BYTES_FLOAT : TILE_BYTES;
    int64_t r = p->row_bytes > 0 ? bytes / p->row_bytes : rows;
    if (r < 4) {
        r = 4;
    }
    return r > rows ? (rows > 0 ? rows : 1) : r;
}

/* ---------------------------------------------------------------- grouped gemm */

/* Columns (activation rows) grouped by weight matrix: columns cols[off[g] .. off[g+1]) use matrix
 * mat[g]; column c reads activation act_idx[c] and writes output row out_idx[c]. */
typedef struct {
    int64_t ngroups;
    const int64_t *mat;      /* matrix index per group */
    const int64_t *off;      /* ngroups + 1 */
    const int64_t *act_idx;  /* per column */
    const int64_t *out_idx;  /* per column */
} groups_t;

typedef struct {
    int64_t group, r0, r1;
} item_t;

/* The eight-token kernels take a chunk of at least DOT8_MIN columns (a short chunk repeats its
 * last column and drops those results). */
#define DOT8_MIN 4

/* Rows r0..r1 of one weight matrix against the columns c0..c1 of one group: out row out_idx[c]
 * (out_stride floats apart) gets the dot with activation act_idx[c]. */
static void sweep(const plan_t *p, const uint8_t *w, int64_t r0, int64_t r1, const uint8_t *act,
                  const int64_t *act_idx, const int64_t *out_idx, int64_t c0, int64_t c1, float *out,
                  int64_t out_stride) {
    int64_t col = c0;
    if (p->dot8u && c1 - c0 >= DOT8_MIN) {
        /* K-quants and codebook types: up to 32 rows unpacked at a time, then eight tokens per call */
        const int64_t nb = p->n / QK_K, ub = nb * QTK_UNPACKED_BYTES;
        const int64_t block = 32;
        uint8_t *u = malloc((size_t)(block * ub > 0 ? block * ub : 1));
        if (u) {
            for (int64_t rb = r0; rb < r1; rb += block) {
                const int64_t nr = r1 - rb < block ? r1 - rb : block;
                for (int64_t k = 0; k < nr; ++k) {
                    p->unpack(w + (rb + k) * p->row_bytes, p->n, u + k * ub);
                }
                int64_t cc = c0;
                for (; cc + DOT8_MIN <= c1; cc += 8) {
                    const int cnt = c1 - cc < 8 ? (int)(c1 - cc) : 8;
                    qtk_q8k_group grp;
                    float *o[8];
                    for (int k = 0; k < 8; ++k) {
                        const int64_t c = cc + (k < cnt ? k : cnt - 1);
                        grp.y[k] = act + act_idx[c] * p->act_bytes;
                        o[k] = out + out_idx[c] * out_stride;
                    }
                    for (int64_t k = 0; k < nr; ++k) {
                        float s8[8];
                        p->dot8u(p->n, s8, u + k * ub, &grp);
                        for (int t = 0; t < cnt; ++t) {
                            o[t][rb + k] = s8[t];
                        }
                    }
                }
                for (; cc < c1; ++cc) {
                    const uint8_t *y = act + act_idx[cc] * p->act_bytes;
                    float *o = out + out_idx[cc] * out_stride;
                    for (int64_t r = rb; r < rb + nr; ++r) {
                        do_dot(p, &o[r], w + r * p->row_bytes, y);
                    }
                }
            }
            free(u);
            return;
        }
        /* without the scratch, the single-row kernel below gives the same results */
    }
    if (p->tile) {
        /* register tiles: 4 rows x 1 token (a gemv: four independent chains), 4 x 2, 3 x 3, 3 x 4 */
        for (; col < c1;) {
            const int nt = c1 - col < 4 ? (int)(c1 - col) : 4;
            const int nr_max = nt <= 2 ? 4 : 3;
            const void *y[4];
            float *o[4];
            for (int k = 0; k < nt; ++k) {
                y[k] = act + act_idx[col + k] * p->act_bytes;
                o[k] = out + out_idx[col + k] * out_stride;
            }
            for (int64_t r = r0; r < r1;) {
                const int nr = r1 - r < nr_max ? (int)(r1 - r) : nr_max;
                float s[16];
                p->tile(p->n, s, 4, w + r * p->row_bytes, p->row_bytes, y, nr, nt);
                for (int i = 0; i < nr; ++i) {
                    for (int k = 0; k < nt; ++k) {
                        o[k][r + i] = s[4 * i + k];
                    }
                }
                r += nr;
            }
            col += nt;
        }
        return;
    }
    if (p->dot8) {
        for (; col + DOT8_MIN <= c1; col += 8) {
            const int cnt = c1 - col < 8 ? (int)(c1 - col) : 8;
            qtk_q8k_group grp;
            float *o[8];
            for (int k = 0; k < 8; ++k) {
                const int64_t c = col + (k < cnt ? k : cnt - 1);
                grp.y[k] = act + act_idx[c] * p->act_bytes;
                o[k] = out + out_idx[c] * out_stride;
            }
            for (int64_t r = r0; r < r1; ++r) {
                float s8[8];
                p->dot8(p->n, s8, w + r * p->row_bytes, &grp);
                for (int k = 0; k < cnt; ++k) {
                    o[k][r] = s8[k];
                }
            }
        }
    }
    if (p->dot4) {
        /* four tokens per sweep: each weight row is decoded once for all four */
        for (; col + 4 <= c1; col += 4) {
            const void *y[4];
            float *o[4];
            for (int k = 0; k < 4; ++k) {
                y[k] = act + act_idx[col + k] * p->act_bytes;
                o[k] = out + out_idx[col + k] * out_stride;
            }
            for (int64_t r = r0; r < r1; ++r) {
                float s[4];
                p->dot4(p->n, s, w + r * p->row_bytes, y);
                o[0][r] = s[0];
                o[1][r] = s[1];
                o[2][r] = s[2];
                o[3][r] = s[3];
            }
        }
    }
    for (; col < c1; ++col) {
        const uint8_t *y = act + act_idx[col] * p->act_bytes;
        float *o = out + out_idx[col] * out_stride;
        for (int64_t r = r0; r < r1; ++r) {
            do_dot(p, &o[r], w + r * p->row_bytes, y);
        }
    }
}

typedef struct {
    const plan_t *p;
    const uint8_t *w;
    int64_t mat_stride;      /* bytes between stacked matrices */
    const uint8_t *act;
    float *out;
    int64_t out_stride;      /* floats between output rows */
    const groups_t *g;
    const item_t *items;
} gemm_ctx;

static void gemm_task(void *vctx, int64_t t) {
    const gemm_ctx *c = vctx;
    const item_t *it = &c->items[t];
    const groups_t *g = c->g;
    sweep(c->p, c->w + g->mat[it->group] * c->mat_stride, it->r0, it->r1, c->act, g->act_idx, g->out_idx,
          g->off[it->group], g->off[it->group + 1], c->out, c->out_stride);
}

/* Items: every group's rows cut into tiles. Returns NULL on allocation failure. */
static item_t *make_items(const groups_t *g, int64_t rows, int64_t tile, int64_t *count) {
    const int64_t per = (rows + tile - 1) / tile;
    item_t *items = malloc((size_t)(g->ngroups * per > 0 ? g->ngroups * per : 1) * sizeof *items);
    if (!items) {
        return NULL;
    }
    int64_t m = 0;
    for (int64_t gi = 0; gi < g->ngroups; ++gi) {
        for (int64_t r0 = 0; r0 < rows; r0 += tile) {
            items[m].group = gi;
            items[m].r0 = r0;
            items[m].r1 = r0 + tile < rows ? r0 + tile : rows;
            ++m;
        }
    }
    *count = m;
    return items;
}

/* Row tile for a call: at most TILE_BYTES of weights, and small enough to give every thread
 * several tasks when there are few groups (decode). */
static int64_t call_tile(const plan_t *p, int64_t rows, int64_t ngroups, int threads) {
    int64_t tile = tile_rows(p, rows);
    const int64_t want_tasks = (int64_t)threads * 8;
    if (ngroups * ((rows + tile - 1) / tile) < want_tasks) {
        int64_t t2 = (rows * ngroups + want_tasks - 1) / want_tasks;
        if (t2 < 4) {
            t2 = 4;
        }
        if (t2 < tile) {
            tile = t2;
        }
    }
    return tile;
}

static int run_gemm(const plan_t *p, const void *w, int64_t mat_stride, int64_t rows, const uint8_t *act, float *out,
                    int64_t out_stride, const groups_t *g, int threads) {
    threads = qtk_pool_threads(threads);
    int64_t nitems;
    item_t *items = make_items(g, rows, call_tile(p, rows, g->ngroups, threads), &nitems);
    if (!items) {
        return QTK_E_NOMEM;
    }
    gemm_ctx c = {p, w, mat_stride, act, out, out_stride, g, items};
    qtk_pool_run(threads, nitems, gemm_task, &c);
    free(items);
    return QTK_OK;
}

/* Quantize `count` activation rows of n floats on the pool. */
typedef struct {
    const plan_t *p;
    const float *x;
    uint8_t *y;
    int64_t count, per_task;
} quant_ctx;

static void quant_task(void *vctx, int64_t t) {
    const quant_ctx *c = vctx;
    const int64_t a = t * c->per_task, b = a + c->per_task < c->count ? a + c->per_task : c->count;
    for (int64_t i = a; i < b; ++i) {
        quantize_act(c->p, c->x + i * c->p->n, c->y + i * c->p->act_bytes);
    }
}

static void quantize_rows(const plan_t *p, const float *x, uint8_t *y, int64_t count, int threads) {
    const int64_t per = count < 64 ? count : 16;
    quant_ctx c = {p, x, y, count, per > 0 ? per : 1};
    qtk_pool_run(count >= 64 ? threads : 1, (count + c.per_task - 1) / c.per_task, quant_task, &c);
}

/* ---------------------------------------------------------------- dense */

int qtk_wtype_row_bytes(const qtk_wtype *wt, int64_t n, int64_t *out) {
    plan_t p;
    const int status = plan_init(&p, wt, n, &qtk_kernels_ref);
    if (status != QTK_OK) {
        return status;
    }
    if (!out) {
        return QTK_E_ARG;
    }
    *out = p.row_bytes;
    return QTK_OK;
}

int qtk_matmul(const qtk_wtype *wt, const void *w, int64_t rows, int64_t n, const float *x, int64_t tokens,
               float *out, int threads) {
    plan_t p;
    int status = plan_init(&p, wt, n, qtk_kernels_active());
    if (status != QTK_OK) {
        return status;
    }
    if (!w || !x || !out || rows < 0 || tokens < 0) {
        return QTK_E_ARG;
    }
    if (rows == 0 || tokens == 0) {
        return QTK_OK;
    }
    uint8_t *act = malloc((size_t)(tokens * p.act_bytes > 0 ? tokens * p.act_bytes : 1));
    int64_t *idx = malloc((size_t)tokens * sizeof *idx);
    if (!act || !idx) {
        free(act);
        free(idx);
        return QTK_E_NOMEM;
    }
    threads = qtk_pool_threads(threads);
    quantize_rows(&p, x, act, tokens, threads);
    for (int64_t t = 0; t < tokens; ++t) {
        idx[t] = t;
    }
    const int64_t zero = 0, off[2] = {0, tokens};
    const groups_t g = {1, &zero, off, idx, idx};
    status = run_gemm(&p, w, 0, rows, act, out, rows, &g, threads);
    free(act);
    free(idx);
    return status;
}

/* ---------------------------------------------------------------- Mixture of Experts */

typedef struct {
    int64_t *mat, *off, *act_idx, *out_idx;
    groups_t g;
} routing_t;

static void routing_free(routing_t *r) {
    free(r->mat);
    free(r->off);
    free(r->act_idx);
    free(r->out_idx);
}

/* Groups the (token, slot) pairs by expert, in token order within an expert. */
static int routing_build(routing_t *r, const int32_t *ids, int64_t tokens, int64_t k, int64_t n_experts) {
    memset(r, 0, sizeof *r);
    const int64_t pairs = tokens * k;
    for (int64_t i = 0; i < pairs; ++i) {
        if (ids[i] < 0 || ids[i] >= n_experts) {
            return QTK_E_ARG;
        }
    }
    int64_t *count = calloc((size_t)n_experts + 1, sizeof *count);
    r->mat = malloc((size_t)(n_experts + 1) * sizeof *r->mat);
    r->off = malloc((size_t)(n_experts + 2) * sizeof *r->off);
    r->act_idx = malloc((size_t)(pairs + 1) * sizeof *r->act_idx);
    r->out_idx = malloc((size_t)(pairs + 1) * sizeof *r->out_idx);
    if (!count || !r->mat || !r->off || !r->act_idx || !r->out_idx) {
        free(count);
        routing_free(r);
        return QTK_E_NOMEM;
    }
    for (int64_t i = 0; i < pairs; ++i) {
        ++count[ids[i]];
    }
    int64_t ng = 0, pos = 0;
    for (int64_t e = 0; e < n_experts; ++e) {
        if (count[e]) {
            r->mat[ng] = e;
            r->off[ng] = pos;
            pos += count[e];
            count[e] = r->off[ng];   /* now the fill cursor */
            ++ng;
        }
    }
    r->off[ng] = pos;
    for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t j = 0; j < k; ++j) {
            const int64_t c = count[ids[t * k + j]]++;
            r->act_idx[c] = t;
            r->out_idx[c] = t * k + j;
        }
    }
    free(count);
    r->g.ngroups = ng;
    r->g.mat = r->mat;
    r->g.off = r->off;
    r->g.act_idx = r->act_idx;
    r->g.out_idx = r->out_idx;
    return QTK_OK;
}

int qtk_moe_matmul(const qtk_wtype *wt, const void *w, int64_t n_experts, int64_t rows, int64_t n,
                   const float *x, int64_t tokens, const int32_t *ids, int64_t k, float *out, int threads) {
    plan_t p;
    int status = plan_init(&p, wt, n, qtk_kernels_active());
    if (status != QTK_OK) {
        return status;
    }
    if (!w || !x || !ids || !out || n_experts < 1 || rows < 0 || tokens < 0 || k < 1) {
        return QTK_E_ARG;
    }
    routing_t r;
    status = routing_build(&r, ids, tokens, k, n_experts);
    if (status != QTK_OK) {
        return status;
    }
    if (rows == 0 || tokens == 0) {
        routing_free(&r);
        return QTK_OK;
    }
    uint8_t *act = malloc((size_t)(tokens * p.act_bytes > 0 ? tokens * p.act_bytes : 1));
    if (!act) {
        routing_free(&r);
        return QTK_E_NOMEM;
    }
    threads = qtk_pool_threads(threads);
    quantize_rows(&p, x, act, tokens, threads);
    status = run_gemm(&p, w, rows * p.row_bytes, rows, act, out, rows, &r.g, threads);
    free(act);
    routing_free(&r);
    return status;
}

/* Phase 1 of the fused FFN: for the tokens routed to an expert, h = silu(gate x) * up x on a tile
 * of the expert's n_ff rows: the tile is swept for the gate into h and for the up projection into
 * u (each with the multi-token kernels), then combined in place. */
typedef struct {
    const plan_t *pg, *pu;
    const uint8_t *gate, *up;
    int64_t gate_stride, up_stride;
    const uint8_t *act_g, *act_u;
    float *h, *u;
    int64_t n_ff;
    const groups_t *g;
    const item_t *items;
} ffn_ctx;

static void ffn_gate_up_task(void *vctx, int64_t t) {
    const ffn_ctx *c = vctx;
    const item_t *it = &c->items[t];
    const groups_t *g = c->g;
    const int64_t e = g->mat[it->group], c0 = g->off[it->group], c1 = g->off[it->group + 1];
    sweep(c->pg, c->gate + e * c->gate_stride, it->r0, it->r1, c->act_g, g->act_idx, g->out_idx, c0, c1, c->h,
          c->n_ff);
    sweep(c->pu, c->up + e * c->up_stride, it->r0, it->r1, c->act_u, g->act_idx, g->out_idx, c0, c1, c->u, c->n_ff);
    for (int64_t col = c0; col < c1; ++col) {
        float *h = c->h + g->out_idx[col] * c->n_ff;
        const float *u = c->u + g->out_idx[col] * c->n_ff;
        for (int64_t r = it->r0; r < it->r1; ++r) {
            const float gv = h[r], uv = u[r];
            h[r] = gv / (1.0f + expf(-gv)) * uv;
        }
    }
}

static int same_act(const plan_t *a, const plan_t *b) {
    return a->act_type == b->act_type && a->cp.group == b->cp.group;
}

int qtk_moe_ffn(const qtk_wtype *gate_t, const qtk_wtype *up_t, const qtk_wtype *down_t, const void *gate,
                const void *up, const void *down, int64_t n_experts, int64_t n_ff, int64_t n_embd,
                const float *x, int64_t tokens, const int32_t *ids, const float *weights, int64_t k, float *out,
                int threads) {
    const qtk_kernels *kern = qtk_kernels_active();
    plan_t pg, pu, pd;
    int status = plan_init(&pg, gate_t, n_embd, kern);
    if (status == QTK_OK) {
        status = plan_init(&pu, up_t, n_embd, kern);
    }
    if (status == QTK_OK) {
        status = plan_init(&pd, down_t, n_ff, kern);
    }
    if (status != QTK_OK) {
        return status;
    }
    if (!gate || !up || !down || !x || !ids || !weights || !out || n_experts < 1 || n_ff < 0 || n_embd < 0 ||
        tokens < 0 || k < 1) {
        return QTK_E_ARG;
    }
    routing_t r;
    status = routing_build(&r, ids, tokens, k, n_experts);
    if (status != QTK_OK) {
        return status;
    }
    if (tokens == 0 || n_embd == 0) {
        routing_free(&r);
        return QTK_OK;
    }
    const int64_t pairs = tokens * k;
    const int share = same_act(&pg, &pu);
    uint8_t *act_g = malloc((size_t)(tokens * pg.act_bytes + 1));
    uint8_t *act_u = share ? act_g : malloc((size_t)(tokens * pu.act_bytes + 1));
    float *h = malloc((size_t)(pairs * n_ff + 1) * sizeof *h);
    float *u = malloc((size_t)(pairs * n_ff + 1) * sizeof *u);
    uint8_t *hq = malloc((size_t)(pairs * pd.act_bytes + 1));
    float *dout = malloc((size_t)(pairs * n_embd) * sizeof *dout);
    if (!act_g || !act_u || !h || !u || !hq || !dout) {
        status = QTK_E_NOMEM;
        goto done;
    }
    threads = qtk_pool_threads(threads);
    quantize_rows(&pg, x, act_g, tokens, threads);
    if (!share) {
        quantize_rows(&pu, x, act_u, tokens, threads);
    }
    if (n_ff > 0) {
        int64_t nitems;
        item_t *items = make_items(&r.g, n_ff, call_tile(&pg, n_ff, r.g.ngroups, threads), &nitems);
        if (!items) {
            status = QTK_E_NOMEM;
            goto done;
        }
        ffn_ctx c = {&pg, &pu, gate, up, n_ff * pg.row_bytes, n_ff * pu.row_bytes, act_g, act_u, h, u, n_ff, &r.g,
                     items};
        qtk_pool_run(threads, nitems, ffn_gate_up_task, &c);
        free(items);
    }
    quantize_rows(&pd, h, hq, pairs, threads);
    /* the down projection reads activation row (t, j) = out_idx and writes the same row */
    const groups_t gd = {r.g.ngroups, r.g.mat, r.g.off, r.g.out_idx, r.g.out_idx};
    status = run_gemm(&pd, down, n_embd * pd.row_bytes, n_embd, hq, dout, n_embd, &gd, threads);
    if (status != QTK_OK) {
        goto done;
    }
    for (int64_t t = 0; t < tokens; ++t) {
        float *o = out + t * n_embd;
        for (int64_t i = 0; i < n_embd; ++i) {
            o[i] = 0.0f;
        }
        for (int64_t j = 0; j < k; ++j) {
            const float wj = weights[t * k + j];
            const float *d = dout + (t * k + j) * n_embd;
            for (int64_t i = 0; i < n_embd; ++i) {
                o[i] += wj * d[i];
            }
        }
    }
done:
    free(act_g);
    if (!share) {
        free(act_u);
    }
    free(h);
    free(u);
    free(hq);
    free(dout);
    routing_free(&r);
    return status;
}

/* ---------------------------------------------------------------- single rows (tests) */

int qtk_activation_row_bytes(const qtk_wtype *wt, int64_t n, int64_t *out) {
    plan_t p;
    const int status = plan_init(&p, wt, n, &qtk_kernels_ref);
    if (status != QTK_OK) {
        return status;
    }
    if (!out) {
        return QTK_E_ARG;
    }
    *out = p.act_bytes;
    return QTK_OK;
}

int qtk_quantize_activation(const qtk_wtype *wt, const float *x, int64_t n, void *y, int64_t y_bytes) {
    plan_t p;
    const int status = plan_init(&p, wt, n, qtk_kernels_active());
    if (status != QTK_OK) {
        return status;
    }
    if (!x || !y || y_bytes != p.act_bytes) {
        return QTK_E_ARG;
    }
    quantize_act(&p, x, y);
    return QTK_OK;
}

int qtk_vec_dot(const qtk_wtype *wt, int64_t n, const void *w_row, const void *y, float *out) {
    plan_t p;
    const int status = plan_init(&p, wt, n, qtk_kernels_active());
    if (status != QTK_OK) {
        return status;
    }
    if (!w_row || !y || !out) {
        return QTK_E_ARG;
    }
    do_dot(&p, out, w_row, y);
    return QTK_OK;
}
