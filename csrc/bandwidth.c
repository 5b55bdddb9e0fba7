/* A STREAM-like read probe: how fast this machine streams memory into the cores, the ceiling of
 * any gemv over weights larger than the caches. Each thread sums its own slice with several
 * independent accumulators (the sum is kept so the reads cannot be optimised away). */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pool.h"
#include "qtk.h"
#include "qtk_matmul.h"

typedef struct {
    const uint64_t *buf;
    int64_t words, per_task;
    uint64_t *sums;   /* one per task */
} read_ctx;

static void read_task(void *vctx, int64_t t) {
    const read_ctx *c = vctx;
    const int64_t a = t * c->per_task, b = a + c->per_task < c->words ? a + c->per_task : c->words;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    int64_t i = a;
    for (; i + 8 <= b; i += 8) {
        s0 += c->buf[i];
        s1 += c->buf[i + 1];
        s2 += c->buf[i + 2];
        s3 += c->buf[i + 3];
        s4 += c->buf[i + 4];
        s5 += c->buf[i + 5];
        s6 += c->buf[i + 6];
        s7 += c->buf[i + 7];
    }
    for (; i < b; ++i) {
        s0 += c->buf[i];
    }
    c->sums[t] = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
}

typedef struct {
    uint64_t *buf;
    int64_t words, per_task;
} fill_ctx;

static void fill_task(void *vctx, int64_t t) {
    const fill_ctx *c = vctx;
    const int64_t a = t * c->per_task, b = a + c->per_task < c->words ? a + c->per_task : c->words;
    for (int64_t i = a; i < b; ++i) {
        c->buf[i] = (uint64_t)i * 0x9E3779B97F4A7C15ull;
    }
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int qtk_read_bandwidth(int64_t bytes, int reps, int threads, double *gbps) {
    if (bytes < 4096 || reps < 1 || !gbps) {
        return QTK_E_ARG;
    }
    threads = qtk_pool_threads(threads);
    const int64_t words = bytes / 8;
    uint64_t *buf = malloc((size_t)words * 8);
    uint64_t *sums = calloc((size_t)threads, sizeof *sums);
    if (!buf || !sums) {
        free(buf);
        free(sums);
        return QTK_E_NOMEM;
    }
    const int64_t per = (words + threads - 1) / threads;
    fill_ctx f = {buf, words, per};
    qtk_pool_run(threads, threads, fill_task, &f);   /* first touch by the threads that read */
    read_ctx c = {buf, words, per, sums};
    double best = 0.0;
    volatile uint64_t sink = 0;
    for (int r = 0; r < reps; ++r) {
        const double t0 = now_seconds();
        qtk_pool_run(threads, threads, read_task, &c);
        const double dt = now_seconds() - t0;
        for (int i = 0; i < threads; ++i) {
            sink += sums[i];
        }
        if (dt > 0 && (double)words * 8 / dt / 1e9 > best) {
            best = (double)words * 8 / dt / 1e9;
        }
    }
    (void)sink;
    free(buf);
    free(sums);
    *gbps = best;
    return QTK_OK;
}
