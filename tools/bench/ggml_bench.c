/* Benchmark harness around ggml's own CPU mul_mat / mul_mat_id (the graph API with a persistent
 * threadpool), so tools/bench/bench_matmul.py can time ggml side by side with qtoolkit without a
 * per-row Python call. Built by the benchmark against llama-cpp-python's libggml-*.so and the
 * headers of its vendored ggml; not part of the package.
 *
 *   gb_new(type, w, n_experts, rows, n, tokens, k, threads): a graph out = W x (n_experts == 0)
 *     or out = mul_mat_id(W, x, ids) with k experts per token; the weights are copied in.
 *   gb_set(h, x, ids): activations [tokens, n] floats, ids [tokens, k] int32 (or NULL).
 *   gb_run(h, reps, seconds): runs the graph reps times, writing each wall time.
 *   gb_out(h, out): copies the result ([tokens, rows] or [tokens, k, rows]).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ggml-cpu.h"
#include "ggml.h"

typedef struct {
    struct ggml_context *ctx;
    struct ggml_cgraph *gf;
    struct ggml_tensor *w, *x, *ids, *out;
    struct ggml_threadpool *tp;
    struct ggml_cplan plan;
    uint8_t *work;
} gb_t;

void *gb_new(int type, const void *w, int64_t n_experts, int64_t rows, int64_t n, int64_t tokens, int64_t k,
             int threads) {
    ggml_cpu_init();
    const size_t wbytes = ggml_row_size((enum ggml_type)type, n) * rows * (n_experts ? n_experts : 1);
    const size_t xbytes = (size_t)tokens * n * sizeof(float);
    const size_t obytes = (size_t)tokens * (k ? k : 1) * rows * sizeof(float);
    struct ggml_init_params ip = {wbytes + xbytes + obytes + (size_t)tokens * k * 4 + 16 * ggml_tensor_overhead() +
                                      ggml_graph_overhead() + (1u << 20),
                                  NULL, false};
    gb_t *h = calloc(1, sizeof *h);
    if (!h) {
        return NULL;
    }
    h->ctx = ggml_init(ip);
    if (!h->ctx) {
        free(h);
        return NULL;
    }
    if (n_experts) {
        h->w = ggml_new_tensor_3d(h->ctx, (enum ggml_type)type, n, rows, n_experts);
        h->x = ggml_new_tensor_3d(h->ctx, GGML_TYPE_F32, n, 1, tokens);
        h->ids = ggml_new_tensor_2d(h->ctx, GGML_TYPE_I32, k, tokens);
        h->out = ggml_mul_mat_id(h->ctx, h->w, h->x, h->ids);
    } else {
        h->w = ggml_new_tensor_2d(h->ctx, (enum ggml_type)type, n, rows);
        h->x = ggml_new_tensor_2d(h->ctx, GGML_TYPE_F32, n, tokens);
        h->out = ggml_mul_mat(h->ctx, h->w, h->x);
    }
    memcpy(h->w->data, w, wbytes);
    h->gf = ggml_new_graph(h->ctx);
    ggml_build_forward_expand(h->gf, h->out);
    struct ggml_threadpool_params tpp = ggml_threadpool_params_default(threads);
    h->tp = ggml_threadpool_new(&tpp);
    h->plan = ggml_graph_plan(h->gf, threads, h->tp);
    if (h->plan.work_size) {
        h->work = malloc(h->plan.work_size);
        h->plan.work_data = h->work;
    }
    return h;
}

void gb_set(void *vh, const float *x, const int32_t *ids) {
    gb_t *h = vh;
    memcpy(h->x->data, x, ggml_nbytes(h->x));
    if (h->ids && ids) {
        memcpy(h->ids->data, ids, ggml_nbytes(h->ids));
    }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int gb_run(void *vh, int reps, double *seconds) {
    gb_t *h = vh;
    for (int r = 0; r < reps; ++r) {
        const double t0 = now();
        if (ggml_graph_compute(h->gf, &h->plan) != GGML_STATUS_SUCCESS) {
            return 1;
        }
        seconds[r] = now() - t0;
    }
    return 0;
}

void gb_out(void *vh, float *out) {
    gb_t *h = vh;
    memcpy(out, h->out->data, ggml_nbytes(h->out));
}

void gb_free(void *vh) {
    gb_t *h = vh;
    if (!h) {
        return;
    }
    ggml_threadpool_free(h->tp);
    free(h->work);
    ggml_free(h->ctx);
    free(h);
}
